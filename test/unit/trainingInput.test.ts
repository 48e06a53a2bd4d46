/** normalizeTrainingInput: defaults, and every problem named at once. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizeTrainingInput, startIdFor, trainingResumeProblems, type TrainingResume } from '../../core/training';

describe('normalizeTrainingInput', () => {
  it('fills defaults: run id from the workflow id, grace 10 s, poll 15 s; the target is passed on for its driver to check', () => {
    const result = normalizeTrainingInput({ project: { path: '/p' }, target: { kind: 'ssm', instanceId: 'i-0123456789abcdef0' }, command: ['python', 'train.py'] }, 'train-x');
    assert.ok(result.ok);
    assert.equal(result.input.runId, 'train-x');
    assert.deepEqual(result.input.target, { kind: 'ssm', instanceId: 'i-0123456789abcdef0' });
    assert.equal(result.input.startupGraceSeconds, 10);
    assert.equal(result.input.pollSeconds, 15);
  });

  it('names every problem: run id, target shape, command, env names and values, timings', () => {
    const result = normalizeTrainingInput(
      {
        runId: '../x',
        project: { path: '', include: [''] },
        target: { kind: 'Shell!' },
        command: [],
        env: { 'BAD-NAME': 'x', FERRY_RUN_DIR: '/', OK: 'a\0b' },
        pollSeconds: 0,
      },
      'wf',
    );
    assert.ok(!result.ok);
    const text = result.problems.join('\n');
    for (const expected of [/runId "\.\.\/x"/, /project\.path/, /project\.include/, /target\.kind "Shell!" must be a target kind/, /command must be/, /"BAD-NAME"/, /FERRY_\* is reserved/, /env OK must be a string without NUL/, /pollSeconds/]) {
      assert.match(text, expected);
    }
    const missing = normalizeTrainingInput({ project: { path: '/p' }, command: ['x'] }, 'wf');
    assert.ok(!missing.ok);
    assert.match(missing.problems.join('\n'), /target must be an object like \{"kind":"local"\}/);
  });
});

describe('resume (set by the workflow when it continues as new)', () => {
  const base = { project: { path: '/p' }, target: { kind: 'shell', root: '/srv/train' }, command: ['python', 'train.py'] };
  /** Shaped like what trainingWorkflow carries into its next run. */
  const resume = (): TrainingResume => ({
    manifestDigest: 'b'.repeat(64),
    session: { sessionId: 'r1', target: { kind: 'shell', root: '/srv/train' }, bootId: 'boot-1', root: '/srv/train/sessions/r1', details: {} },
    startId: startIdFor(2),
    starts: 2,
    pid: 4242,
    logOffset: 1_024,
    logChunks: 3,
    resyncs: 1,
    probes: 240,
    startedAtMs: 1_764_578_280_000,
    firstLogLineMs: 1_500,
    filesTotal: 7,
    bytesTotal: 2_097_300,
    bytesLanded: 2_097_300,
    timeToConfirmMs: 2_300,
  });

  it('passes what the workflow carries, with or without a first log line, through normalizeTrainingInput unchanged', () => {
    assert.deepEqual(trainingResumeProblems(resume()), []);
    const { firstLogLineMs: _, ...silent } = resume();
    assert.deepEqual(trainingResumeProblems(silent), []);
    // Measured against an activity's clock: clock skew can make it negative.
    assert.deepEqual(trainingResumeProblems({ ...resume(), firstLogLineMs: -20 }), []);
    const normalized = normalizeTrainingInput({ ...base, resume: resume() }, 'wf');
    assert.ok(normalized.ok, JSON.stringify(normalized));
    assert.deepEqual(normalized.input.resume, resume());
  });

  it('a resume that is not an object fails normalizeTrainingInput, saying callers never set it', () => {
    for (const garbage of ['garbage', 5, null, [resume()]]) {
      const result = normalizeTrainingInput({ ...base, resume: garbage }, 'wf');
      assert.ok(!result.ok);
      assert.deepEqual(result.problems, ['resume must be an object; it is set by the workflow itself when it continues as new, never by callers']);
    }
  });

  it('names every field of the wrong type or format', () => {
    const problems = trainingResumeProblems({
      manifestDigest: 'abc',
      session: { sessionId: 'r1', target: { kind: 'shell' }, bootId: '', root: '/r', details: {} },
      startId: 'start-1;reboot',
      starts: 0,
      pid: -1,
      logOffset: '10',
      logChunks: 1.5,
      probes: 3,
      startedAtMs: 'yesterday',
      firstLogLineMs: 'soon',
      filesTotal: 1,
      bytesTotal: 1,
      bytesLanded: 1,
      timeToConfirmMs: 1,
    });
    const expected = [
      /^resume\.manifestDigest "abc" must be a sha256 hex digest/,
      /^resume\.session\.bootId must be a non-empty string/,
      /^resume\.starts 0 must be a whole number of at least 1/,
      /^resume\.startId "start-1;reboot" must match/,
      /^resume\.pid -1 must be a process id/,
      /^resume\.startedAtMs "yesterday"/,
      /^resume\.firstLogLineMs "soon"/,
      /^resume\.logOffset "10" must be a whole number of at least 0/,
      /^resume\.logChunks 1\.5/,
      /^resume\.resyncs undefined/,
    ];
    assert.equal(problems.length, expected.length, problems.join('\n'));
    expected.forEach((pattern, i) => assert.match(problems[i]!, pattern));
  });

  it('a start id out of step with starts is refused: a restart would reuse an id already started', () => {
    assert.deepEqual(trainingResumeProblems({ ...resume(), startId: 'start-1', starts: 2 }), ['resume.startId "start-1" must be "start-2" (start-<starts>)']);
    assert.match(trainingResumeProblems({ ...resume(), startId: '.' }).join(), /resume\.startId "\." must match/);
  });
});
