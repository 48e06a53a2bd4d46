/** Pure rules of the pipeline: input validation, execute validation, interpreters. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { executeRequestProblems, inputRefProblem, interpreterCommand, normalizePipelineInput } from '../../core/pipeline';

describe('normalizePipelineInput', () => {
  it('fills defaults: local target, the three stages, a 30-minute idle timeout', () => {
    const result = normalizePipelineInput({ sessionId: 's1', inputs: [{ path: '/data' }] });
    assert.ok(result.ok);
    assert.deepEqual(result.input.target, { kind: 'local' });
    assert.deepEqual(result.input.stages, ['coder', 'validator', 'reporter']);
    assert.equal(result.input.stageIdleTimeoutMs, 30 * 60_000);
  });

  it('names every problem of a wrong-shaped input', () => {
    const result = normalizePipelineInput({ sessionId: '../x', target: { kind: 'k8s' }, inputs: [{ path: '' }, { s3: 'http://x' }, { path: 'a', s3: 's3://b/' }], stages: ['a', 'a'], stageIdleTimeout: 'soon' });
    assert.ok(!result.ok);
    assert.equal(result.problems.length, 7, result.problems.join('\n'));
    assert.match(result.problems.join('\n'), /sessionId "\.\.\/x"/);
    assert.match(result.problems.join('\n'), /stageIdleTimeout "soon"/);
    assert.match(result.problems.join('\n'), /exactly one of "path" or "s3"/);
  });

  it('refuses a non-object', () => {
    assert.deepEqual(normalizePipelineInput('x'), { ok: false, problems: ['input must be a JSON object'] });
  });
});

describe('execute requests', () => {
  it('rejects empty code, unknown languages and bad timeouts; accepts the three interpreters', () => {
    assert.deepEqual(executeRequestProblems({ code: 'ls', language: 'bash' }), []);
    assert.match(executeRequestProblems({ code: '  ', language: 'bash' }).join(), /non-empty/);
    assert.match(executeRequestProblems({ code: 'x', language: 'ruby' }).join(), /not one of bash, python, node/);
    assert.match(executeRequestProblems({ code: 'x', language: 'node', timeoutSeconds: 0 }).join(), /timeoutSeconds/);
    assert.match(executeRequestProblems({ code: 'x'.repeat(200_000), language: 'node' }).join(), /at most/);
    assert.deepEqual(interpreterCommand('python', 'print(1)'), ['python3', '-c', 'print(1)']);
    assert.deepEqual(interpreterCommand('node', '1'), ['node', '-e', '1']);
  });

  it('input refs: folders and s3 prefixes', () => {
    assert.equal(inputRefProblem({ s3: 's3://bucket/prefix/' }, 'x'), undefined);
    assert.match(inputRefProblem({ s3: 's3://B/' }, 'x') ?? '', /s3:\/\/bucket\/prefix/);
  });
});
