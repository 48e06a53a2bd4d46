/** normalizeTrainingInput: defaults, and every problem named at once. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizeTrainingInput, targetRunDir } from '../../core/training';

describe('normalizeTrainingInput', () => {
  it('fills defaults: run id from the workflow id, /opt/ferry on ssm targets, grace 10 s, poll 15 s', () => {
    const result = normalizeTrainingInput({ project: { path: '/p' }, target: { kind: 'ssm', instanceId: 'i-0123456789abcdef0' }, command: ['python', 'train.py'] }, 'train-x');
    assert.ok(result.ok);
    assert.equal(result.input.runId, 'train-x');
    assert.deepEqual(result.input.target, { kind: 'ssm', instanceId: 'i-0123456789abcdef0', root: '/opt/ferry' });
    assert.equal(result.input.startupGraceSeconds, 10);
    assert.equal(result.input.pollSeconds, 15);
    assert.equal(targetRunDir(result.input.target, 'r1'), '/opt/ferry/runs/r1');
  });

  it('names every problem: run id, root, instance, command, env names and values, timings', () => {
    const result = normalizeTrainingInput(
      {
        runId: '../x',
        project: { path: '', include: [''] },
        target: { kind: 'shell', root: 'relative/root' },
        command: [],
        env: { 'BAD-NAME': 'x', FERRY_RUN_DIR: '/', OK: 'a\0b' },
        pollSeconds: 0,
      },
      'wf',
    );
    assert.ok(!result.ok);
    const text = result.problems.join('\n');
    for (const expected of [/runId "\.\.\/x"/, /project\.path/, /project\.include/, /target\.root must be an absolute path/, /command must be/, /"BAD-NAME"/, /FERRY_\* is reserved/, /env OK must be a string without NUL/, /pollSeconds/]) {
      assert.match(text, expected);
    }
    const ssm = normalizeTrainingInput({ project: { path: '/p' }, target: { kind: 'ssm', instanceId: 'web-1', root: '/' }, command: ['x'] }, 'wf');
    assert.ok(!ssm.ok);
    assert.match(ssm.problems.join('\n'), /instanceId "web-1"[\s\S]*target\.root must not be \//);
  });
});
