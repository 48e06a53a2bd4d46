/** Pure rules of the pipeline: input validation, execute validation, interpreters. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { executeRequestProblems, inputRefProblem, interpreterCommand, normalizePipelineInput, pipelineCarryOverProblems, type PipelineCarryOver } from '../../core/pipeline';

describe('normalizePipelineInput', () => {
  it('fills defaults: local target, the three stages, a 30-minute idle timeout', () => {
    const result = normalizePipelineInput({ sessionId: 's1', inputs: [{ path: '/data' }] });
    assert.ok(result.ok);
    assert.deepEqual(result.input.target, { kind: 'local' });
    assert.deepEqual(result.input.stages, ['coder', 'validator', 'reporter']);
    assert.equal(result.input.stageIdleTimeoutMs, 30 * 60_000);
  });

  it('names every problem of a wrong-shaped input', () => {
    const result = normalizePipelineInput({ sessionId: '../x', target: { kind: 'K8s!' }, inputs: [{ path: '' }, { s3: 'http://x' }, { path: 'a', s3: 's3://b/' }], stages: ['a', 'a'], stageIdleTimeout: 'soon' });
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

describe('pipeline carry-over (the continue-as-new argument)', () => {
  const digest = 'a'.repeat(64);
  /** Shaped like what the workflow passes itself mid-stage. */
  const carryOver = (): PipelineCarryOver => ({
    state: {
      sessionId: 's1',
      status: 'running',
      stage: 'validator',
      stages: [
        { name: 'coder', status: 'finished', executions: 3, summary: 'done' },
        { name: 'validator', status: 'running', executions: 1 },
      ],
      session: { sessionId: 's1', target: { kind: 'local' }, agentUrl: 'http://127.0.0.1:35103', bootId: 'boot-1', root: '/tmp/s1', details: { pid: '42' } },
      inputs: [{ ref: { path: '/data' }, manifestDigest: digest, filesTotal: 2, bytesTotal: 10 }],
      dataManifestDigest: digest,
      verifiedBootId: 'boot-1',
      restartsDetected: 0,
      executionsTotal: 4,
      run: 2,
    },
    timeline: [{ step: 'provisionSession', startedAt: '2026-12-01T08:38:09.568Z', endedAt: '2026-12-01T08:38:09.931Z', outcome: 'ok' }],
    executionCounter: 4,
    pendingInputs: [{ s3: 's3://bucket/more/' }],
    stageIndex: 1,
    stageFirstExecutionDone: true,
  });

  it('accepts what the workflow passes, before provisioning too (no session, nothing synced)', () => {
    assert.deepEqual(pipelineCarryOverProblems(carryOver()), []);
    const early = carryOver();
    delete early.state.session;
    delete early.state.dataManifestDigest;
    delete early.state.verifiedBootId;
    early.state.inputs = [];
    assert.deepEqual(pipelineCarryOverProblems(early), []);
  });

  it('accepts every carry-over in the committed histories', () => {
    const dir = path.resolve(__dirname, '../../../test/fixtures/histories');
    const carried: unknown[] = [];
    for (const file of readdirSync(dir).filter((name) => name.startsWith('pipelineWorkflow-'))) {
      const { history } = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as { history: { events: Record<string, { input?: { payloads?: { data: string }[] } }>[] } };
      for (const event of history.events) {
        const payloads = (event.workflowExecutionStartedEventAttributes ?? event.workflowExecutionContinuedAsNewEventAttributes)?.input?.payloads ?? [];
        if (payloads[1]) carried.push(JSON.parse(Buffer.from(payloads[1].data, 'base64').toString('utf8')));
      }
    }
    assert.ok(carried.length >= 4, `${carried.length} carry-overs found`);
    for (const value of carried) assert.deepEqual(pipelineCarryOverProblems(value), []);
  });

  it('refuses what is not an object, naming what it got', () => {
    assert.match(pipelineCarryOverProblems(5).join(), /must be a JSON object .*continue-as-new.*got a number/);
    assert.match(pipelineCarryOverProblems('carry').join(), /got a string/);
    assert.match(pipelineCarryOverProblems(null).join(), /got null/);
    assert.match(pipelineCarryOverProblems([carryOver()]).join(), /got an array/);
  });

  it('names every missing or wrong-typed field of {"state":5}', () => {
    assert.deepEqual(pipelineCarryOverProblems({ state: 5 }), [
      'state must be an object',
      'timeline must be an array',
      'executionCounter must be a whole number of at least 0, got undefined',
      'pendingInputs must be an array',
      'stageFirstExecutionDone must be true or false, got undefined',
      'stageIndex undefined must be the index of one of the 0 stages in state.stages',
    ]);
  });

  it('names wrong fields deep in the state', () => {
    const bad = JSON.parse(JSON.stringify(carryOver()));
    bad.state.status = 'dancing';
    bad.state.stages[1] = { name: '../x', status: 'done', executions: -1 };
    bad.state.session.agentUrl = 'file:///etc/passwd';
    bad.state.session.target = { kind: 'K8s!' };
    bad.state.inputs[0].manifestDigest = 'abc';
    bad.state.run = 1.5;
    bad.timeline.push('step');
    bad.pendingInputs = [{ s3: 'http://x' }];
    bad.stageIndex = 2;
    const problems = pipelineCarryOverProblems(bad);
    const expected = [
      /^state\.status "dancing" is not one of/,
      /^state\.stages\[1\]\.name "\.\.\/x" must match/,
      /^state\.stages\[1\]\.status "done"/,
      /^state\.stages\[1\]\.executions must be a whole number of at least 0, got -1/,
      /^state\.session\.agentUrl must be an http\(s\) URL, got "file:\/\/\/etc\/passwd"/,
      /^state\.session\.target\.kind "K8s!" must be a target kind/,
      /^state\.inputs\[0\]\.manifestDigest must be a sha256 hex digest, got "abc"/,
      /^state\.run must be a whole number of at least 0, got 1\.5/,
      /^timeline\[1\] must be an object with string "step" and "startedAt"/,
      /^pendingInputs\[0\]\.s3 must look like s3:\/\/bucket\/prefix\//,
      /^stageIndex 2 must be the index of one of the 2 stages/,
    ];
    assert.equal(problems.length, expected.length, problems.join('\n'));
    expected.forEach((pattern, i) => assert.match(problems[i]!, pattern));
  });
});
