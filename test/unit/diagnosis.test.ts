/**
 * core/diagnosis on synthetic history summaries: every gap cause, failed and
 * retried steps, the session story and the verdict, including the seed's
 * incident (inputs in S3 at 06:31:02, first execution at 06:36:19).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { allGaps, diagnose, type DiagnosisInput, type PendingActivitySummary } from '../../core/diagnosis';
import type { FailureSummary, HistoryEventSummary } from '../../core/timeline';

const T0 = Date.parse('2025-03-01T06:30:50.000Z');
/** Seconds after 06:30:50 → ms since the epoch. */
const at = (seconds: number) => T0 + seconds * 1000;
const DIGEST = 'd'.repeat(64);
const BOOT_A = 'a'.repeat(32);
const BOOT_B = 'b'.repeat(32);

/** Writes history summaries the way client/history produces them, with ids assigned in order. */
class History {
  readonly events: HistoryEventSummary[] = [];
  private nextId = 1;
  private nextActivity = 1;

  private id() {
    return this.nextId++;
  }
  started(seconds: number, workflowType = 'pipelineWorkflow', taskQueue = 'ferry'): this {
    this.events.push({ kind: 'workflowStarted', eventId: this.id(), timeMs: at(seconds), workflowType, taskQueue });
    return this;
  }
  /** A workflow task scheduled at `seconds`, picked up `waitS` later, done 10 ms after that. */
  workflowTask(seconds: number, waitS = 0.005, taskQueue = 'ferry'): this {
    const scheduled = this.id();
    this.events.push({ kind: 'workflowTaskScheduled', eventId: scheduled, timeMs: at(seconds), taskQueue, attempt: 1 });
    this.events.push({ kind: 'workflowTaskStarted', eventId: this.id(), timeMs: at(seconds + waitS), scheduledEventId: scheduled });
    this.events.push({ kind: 'workflowTaskClosed', eventId: this.id(), timeMs: at(seconds + waitS + 0.01), scheduledEventId: scheduled, status: 'completed' });
    return this;
  }
  activity(
    activityType: string,
    times: { scheduled: number; started?: number; closed?: number },
    options: { input?: unknown; result?: unknown; attempt?: number; lastFailure?: FailureSummary; failure?: FailureSummary; status?: 'completed' | 'failed' | 'timedOut'; retryState?: string; taskQueue?: string } = {},
  ): this {
    const scheduled = this.id();
    this.events.push({
      kind: 'activityScheduled',
      eventId: scheduled,
      timeMs: at(times.scheduled),
      activityId: String(this.nextActivity++),
      activityType,
      taskQueue: options.taskQueue ?? 'ferry',
      input: options.input,
      heartbeatTimeoutMs: 30_000,
    });
    if (times.started !== undefined) {
      this.events.push({ kind: 'activityStarted', eventId: this.id(), timeMs: at(times.started), scheduledEventId: scheduled, attempt: options.attempt ?? 1, lastFailure: options.lastFailure });
    }
    if (times.closed !== undefined) {
      this.events.push({
        kind: 'activityClosed',
        eventId: this.id(),
        timeMs: at(times.closed),
        scheduledEventId: scheduled,
        status: options.status ?? 'completed',
        result: options.result,
        failure: options.failure,
        retryState: options.retryState,
      });
    }
    return this;
  }
  timer(timerId: string, from: number, to: number): this {
    this.events.push({ kind: 'timerStarted', eventId: this.id(), timeMs: at(from), timerId, durationMs: (to - from) * 1000 });
    this.events.push({ kind: 'timerFired', eventId: this.id(), timeMs: at(to), timerId });
    return this;
  }
  update(name: string, seconds: number, options: { failure?: FailureSummary; doneS?: number } = {}): this {
    const updateId = `u${this.nextId}`;
    this.events.push({ kind: 'update', eventId: this.id(), timeMs: at(seconds), name, updateId });
    this.events.push({ kind: 'updateCompleted', eventId: this.id(), timeMs: at(options.doneS ?? seconds), name, updateId, failure: options.failure });
    return this;
  }
  signal(name: string, seconds: number): this {
    this.events.push({ kind: 'signal', eventId: this.id(), timeMs: at(seconds), name });
    return this;
  }
  stage(stage: string, seconds: number): this {
    this.events.push({ kind: 'searchAttributesUpserted', eventId: this.id(), timeMs: at(seconds), attributes: { FerryStage: stage } });
    return this;
  }
  child(workflowId: string, from: number, to: number, workflowType = 'syncWorkflow'): this {
    this.events.push({ kind: 'childWorkflowInitiated', eventId: this.id(), timeMs: at(from), workflowId, workflowType });
    this.events.push({ kind: 'childWorkflowStarted', eventId: this.id(), timeMs: at(from + 0.01), workflowId, workflowType });
    this.events.push({ kind: 'childWorkflowClosed', eventId: this.id(), timeMs: at(to), workflowId, workflowType, status: 'completed' });
    return this;
  }
  closed(seconds: number, status = 'completed', failure?: FailureSummary): this {
    this.events.push({ kind: 'workflowClosed', eventId: this.id(), timeMs: at(seconds), status, failure });
    return this;
  }
}

const session = { sessionId: 's1', target: { kind: 'local' }, agentUrl: 'http://127.0.0.1:9', bootId: BOOT_A, root: '/r', details: {} };
const landing = { sessionId: 's1', target: { kind: 'local' }, dest: 'data', manifestDigest: DIGEST };

/** The child syncWorkflow that lands and verifies the pipeline's inputs, finishing at `end`. */
function inputSync(workflowId: string, start: number, end: number, bootId = BOOT_A): DiagnosisInput {
  const h = new History()
    .started(start, 'syncWorkflow')
    .workflowTask(start)
    .activity('snapshotSource', { scheduled: start + 0.1, started: start + 0.1, closed: start + 1 }, { result: { manifestDigest: DIGEST } })
    .activity('uploadBlobs', { scheduled: start + 1, started: start + 1, closed: start + 2 })
    .activity('landManifest', { scheduled: start + 2, started: start + 2, closed: end - 1 }, { input: landing, result: { bootId, filesLanded: 1, bytesLanded: 112_391, filesAlreadyPresent: 0 } })
    .activity('verifyLanding', { scheduled: end - 1, started: end - 1, closed: end - 0.05 }, { input: { ...landing, expectedBootId: bootId }, result: { bootId, filesVerified: 1 } })
    .closed(end);
  return { workflowId, workflowType: 'syncWorkflow', events: h.events, nowMs: at(end) };
}

const gapSummary = (input: DiagnosisInput, thresholdMs = 30_000) =>
  allGaps(diagnose(input, { gapThresholdMs: thresholdMs })).map((g) => [g.cause, g.durationMs, g.taskQueue ?? g.activityType ?? g.timerId ?? g.endedBy ?? '']);

describe('core/diagnosis: gaps attributed to their cause', () => {
  it("the seed's five-minute gap: inputs verified at 06:31:02, the agent's first execute update at 06:36:19 → waiting for the agent", () => {
    const h = new History()
      .started(0)
      .workflowTask(0)
      .activity('provisionSession', { scheduled: 0.1, started: 0.1, closed: 1 }, { result: session })
      .child('sync-s1-inputs', 1, 12)
      // Inputs verified at 06:31:02; then nothing until the agent sends its first `execute` at 06:36:19.
      .stage('coder', 12)
      .workflowTask(329)
      .update('execute', 329.02, { doneS: 331 })
      .activity('executeCode', { scheduled: 329.03, started: 329.03, closed: 331 }, { input: { session, stage: 'coder' }, result: { exitCode: 0, bootId: BOOT_A } });
    const diagnosis = diagnose(
      { workflowId: 'pipeline-s1', events: h.events, nowMs: at(340), children: [inputSync('sync-s1-inputs', 1, 12)] },
      { gapThresholdMs: 30_000 },
    );
    assert.equal(diagnosis.gaps.length, 1);
    const gap = diagnosis.gaps[0];
    assert.equal(gap.cause, 'waiting-for-agent');
    assert.equal(gap.from, '2025-03-01T06:31:02.000Z');
    assert.equal(gap.to, '2025-03-01T06:36:19.000Z');
    assert.equal(gap.durationMs, 317_000);
    assert.equal(gap.endedBy, 'update execute');
    assert.match(gap.detail, /awaited an update or signal until update execute arrived at 06:36:19/);
    assert.match(diagnosis.verdict, /^pipelineWorkflow running for 5m40s/);
    assert.match(diagnosis.verdict, /every execution ran on inputs verified on the same boot/);
    // The story spans parent and child: provisioned, landed and verified (in the child), stage, executed.
    assert.deepEqual(
      diagnosis.session.map((e) => [e.kind, e.workflowId]),
      [
        ['provisioned', 'pipeline-s1'],
        ['landed', 'sync-s1-inputs'],
        ['verified', 'sync-s1-inputs'],
        ['stage', 'pipeline-s1'],
        ['executed', 'pipeline-s1'],
      ],
    );
    const executed = diagnosis.session[4];
    assert.equal(executed.bootId, BOOT_A);
    assert.match(executed.detail, /coder executed on boot aaaaaaaaaaaa \(exit 0\); inputs verified on this boot at 06:31:01/);
    assert.equal(diagnosis.children[0].workflowId, 'sync-s1-inputs');
    assert.deepEqual(diagnosis.children[0].session.map((e) => e.kind), ['landed', 'verified']);
  });

  it('a workflow task nobody picks up → no worker polling queue <name>, and the time below the threshold is not reported', () => {
    const h = new History().started(0, 'syncWorkflow', 'ferry-idle').workflowTask(0, 5, 'ferry-idle').activity('snapshotSource', { scheduled: 5.1, started: 5.1, closed: 5.5 }).closed(5.6);
    const input: DiagnosisInput = { workflowId: 'w', events: h.events, nowMs: at(6) };
    assert.deepEqual(gapSummary(input, 2_000), [['waiting-for-worker', 5_000, 'ferry-idle']]);
    const diagnosis = diagnose(input, { gapThresholdMs: 2_000 });
    assert.match(diagnosis.gaps[0].detail, /^no worker polling queue ferry-idle: a workflow task waited 5\.0s/);
    assert.match(diagnosis.verdict, /longest gap 5\.0s no worker polling queue ferry-idle/);
    assert.deepEqual(gapSummary(input, 10_000), []);
  });

  it('an activity scheduled and never started, still pending → ongoing waiting-for-worker naming its queue', () => {
    const h = new History().started(0).workflowTask(0).activity('landManifest', { scheduled: 1 }, { taskQueue: 'gpu-workers', input: landing });
    const pending: PendingActivitySummary[] = [{ activityId: '1', activityType: 'landManifest', state: 'scheduled', attempt: 1, scheduledMs: at(1) }];
    const diagnosis = diagnose({ workflowId: 'w', events: h.events, pendingActivities: pending, nowMs: at(121) }, { gapThresholdMs: 30_000 });
    assert.deepEqual(diagnosis.gaps.map((g) => [g.cause, g.taskQueue, g.ongoing, g.durationMs]), [['waiting-for-worker', 'gpu-workers', true, 120_000]]);
    assert.equal(diagnosis.status, 'running');
    assert.match(diagnosis.verdict, /running for 2m01s; now no worker polling queue gpu-workers for 2m00s/);
  });

  it('retries: the stretch before the last attempt is retry backoff, the step names the failure that caused it', () => {
    const failure: FailureSummary = { type: 'TargetUnavailable', message: 'runtime agent answered 502 to /v1/land', details: { status: 502 } };
    const h = new History()
      .started(0, 'syncWorkflow')
      .workflowTask(0)
      .activity('landManifest', { scheduled: 1, started: 41, closed: 42 }, { input: landing, attempt: 4, lastFailure: failure, result: { bootId: BOOT_A, filesLanded: 1 } })
      .closed(43);
    const diagnosis = diagnose({ workflowId: 'w', events: h.events, nowMs: at(43) }, { gapThresholdMs: 30_000 });
    assert.deepEqual(diagnosis.gaps.map((g) => [g.cause, g.activityType, g.durationMs]), [['retry-backoff', 'landManifest', 40_000]]);
    assert.match(diagnosis.gaps[0].detail, /attempts 1–3 failed and were retried with backoff \(last failure: TargetUnavailable: runtime agent answered 502/);
    assert.equal(diagnosis.steps.length, 1);
    assert.deepEqual([diagnosis.steps[0].outcome, diagnosis.steps[0].attempts, diagnosis.steps[0].lastRetryFailure?.type], ['retried', 4, 'TargetUnavailable']);
    assert.match(diagnosis.steps[0].summary, /landManifest succeeded on attempt 4 on local session s1 \(boot aaaaaaaaaaaa\); attempt 3 failed with TargetUnavailable/);
    assert.match(diagnosis.verdict, /^syncWorkflow completed in 43\.0s; .*landManifest needed 4 attempts \(TargetUnavailable before\); longest gap 40\.0s retrying \(landManifest\)/);
  });

  it('a pending activity between attempts: earlier attempts, then backoff until the next attempt is due', () => {
    const h = new History().started(0).workflowTask(0).activity('uploadBlobs', { scheduled: 1 });
    const pending: PendingActivitySummary[] = [
      { activityId: '1', activityType: 'uploadBlobs', state: 'scheduled', attempt: 3, scheduledMs: at(1), lastAttemptCompleteMs: at(50), nextAttemptScheduleMs: at(130), lastFailure: { type: 'ChecksumMismatch', message: 'bad sum' } },
    ];
    const diagnosis = diagnose({ workflowId: 'w', events: h.events, pendingActivities: pending, nowMs: at(100) }, { gapThresholdMs: 30_000 });
    assert.deepEqual(diagnosis.gaps.map((g) => [g.cause, g.durationMs, g.ongoing ?? false]), [
      ['retry-backoff', 49_000, false],
      ['retry-backoff', 50_000, true],
    ]);
    assert.match(diagnosis.gaps[1].detail, /uploadBlobs attempt 3 failed \(ChecksumMismatch: bad sum\); backing off before attempt 4/);
    assert.equal(diagnosis.steps[0].outcome, 'retrying');
  });

  it('a durable timer and a slow, heartbeating activity are told apart', () => {
    const h = new History()
      .started(0, 'trainingWorkflow')
      .workflowTask(0)
      .activity('startProcess', { scheduled: 1, started: 1, closed: 2 }, { result: { pid: 4242 } })
      .timer('probe-1', 2, 62)
      .workflowTask(62)
      .activity('probeProcess', { scheduled: 62.1 });
    const pending: PendingActivitySummary[] = [
      { activityId: '2', activityType: 'probeProcess', state: 'started', attempt: 1, scheduledMs: at(62.1), lastStartedMs: at(62.2), lastHeartbeatMs: at(150), heartbeatDetails: { bytesDone: 10, bytesTotal: 20 } },
    ];
    const diagnosis = diagnose({ workflowId: 'train-1', events: h.events, pendingActivities: pending, nowMs: at(160) }, { gapThresholdMs: 30_000 });
    assert.deepEqual(diagnosis.gaps.map((g) => [g.cause, g.timerId ?? g.activityType, g.durationMs]), [
      ['durable-timer', 'probe-1', 60_000],
      ['slow-activity', 'probeProcess', 97_800],
    ]);
    assert.match(diagnosis.gaps[1].detail, /probeProcess attempt 1 has been running for 1m38s, heartbeating \(last heartbeat 10\.0s ago; progress 10\/20 bytes\)/);
    assert.deepEqual(diagnosis.session.map((e) => e.kind), ['process-started']);
    assert.match(diagnosis.session[0].detail, /pid 4242/);
  });
});

describe('core/diagnosis: failures, the session story and the verdict', () => {
  it('a restarted session: restart detected by a new boot id, inputs re-landed and verified before the validator ran', () => {
    const h = new History()
      .started(0)
      .workflowTask(0)
      .activity('provisionSession', { scheduled: 0.1, started: 0.1, closed: 1 }, { result: session })
      .child('sync-s1-1', 1, 12)
      .stage('coder', 12)
      .update('execute', 20, { doneS: 25 })
      .activity('checkSession', { scheduled: 20.1, started: 20.1, closed: 20.5 }, { input: { session }, result: { sessionId: 's1', bootId: BOOT_A } })
      .activity('executeCode', { scheduled: 21, started: 21, closed: 25 }, { input: { session, stage: 'coder' }, result: { exitCode: 0, bootId: BOOT_A } })
      .signal('finishStage', 30)
      .workflowTask(30)
      .stage('validator', 30.1)
      .update('execute', 299, { doneS: 340 })
      .activity('checkSession', { scheduled: 299.1, started: 299.1, closed: 300 }, { input: { session }, result: { sessionId: 's1', bootId: BOOT_B } })
      .child('sync-s1-2', 300, 312.05)
      .activity('executeCode', { scheduled: 313, started: 313, closed: 340 }, { input: { session, stage: 'validator' }, result: { exitCode: 0, bootId: BOOT_B } })
      .activity('releaseSession', { scheduled: 341, started: 341, closed: 342 }, { input: { session } })
      .closed(343);
    const diagnosis = diagnose(
      { workflowId: 'pipeline-s1', events: h.events, nowMs: at(343), children: [inputSync('sync-s1-1', 1, 12), inputSync('sync-s1-2', 300, 312.05, BOOT_B)] },
      { gapThresholdMs: 30_000 },
    );
    assert.deepEqual(diagnosis.session.map((e) => e.kind), [
      'provisioned',
      'landed',
      'verified',
      'stage',
      'checked',
      'executed',
      'stage',
      'restart-detected',
      're-landed',
      'verified',
      'executed',
      'released',
    ]);
    const restart = diagnosis.session[7];
    assert.match(restart.detail, /session s1 restarted: boot aaaaaaaaaaaa → bbbbbbbbbbbb \(seen by checkSession\)/);
    assert.match(diagnosis.session[8].detail, /re-landed manifest dddddddddddd into s1:data on boot bbbbbbbbbbbb: 1 files fetched, 0 already there \(the session restarted/);
    assert.equal(diagnosis.session[9].at, '2025-03-01T06:36:02.000Z');
    assert.equal(diagnosis.verdict, 'pipelineWorkflow completed in 5m43s; validator ran on a restarted session; inputs were re-landed and verified at 06:36:02 before execution; longest gap 4m29s waiting for the agent (until update execute)');
  });

  it('hypothesis 1: an execution refused because inputs were never verified names the missing input', () => {
    const refusal: FailureSummary = { type: 'InputsNotVerified', message: 'no verified inputs in session s1', details: { missing: ['data/Dat-fresh-food-claude.csv'] }, nonRetryable: true };
    const h = new History()
      .started(0)
      .workflowTask(0)
      .activity('provisionSession', { scheduled: 0.1, started: 0.1, closed: 1 }, { result: session })
      .stage('coder', 1)
      .update('execute', 5, { failure: refusal, doneS: 5.1 });
    const diagnosis = diagnose({ workflowId: 'pipeline-s1', events: h.events, nowMs: at(6) }, { gapThresholdMs: 30_000 });
    assert.deepEqual(diagnosis.steps.map((s) => [s.kind, s.name, s.outcome, s.failure?.type]), [['update', 'execute', 'refused', 'InputsNotVerified']]);
    const refused = diagnosis.session.find((e) => e.kind === 'execution-refused');
    assert.match(refused?.detail ?? '', /execution refused in stage coder: InputsNotVerified: .*\(missing: data\/Dat-fresh-food-claude\.csv\)/);
    assert.deepEqual(diagnosis.messages, [{ at: '2025-03-01T06:30:55.000Z', kind: 'update', name: 'execute', failed: true }]);
    assert.equal(diagnosis.verdict, 'pipelineWorkflow running for 6.0s; execute refused 1× (InputsNotVerified: missing data/Dat-fresh-food-claude.csv)');
  });

  it('an execution on a boot with no verified inputs is flagged in the verdict', () => {
    const h = new History()
      .started(0)
      .workflowTask(0)
      .activity('provisionSession', { scheduled: 0.1, started: 0.1, closed: 1 }, { result: session })
      .stage('coder', 1)
      .activity('executeCode', { scheduled: 2, started: 2, closed: 3 }, { input: { session }, result: { exitCode: 0, bootId: BOOT_A } })
      .closed(4);
    const diagnosis = diagnose({ workflowId: 'p', events: h.events, nowMs: at(4) }, { gapThresholdMs: 30_000 });
    assert.match(diagnosis.verdict, /⚠ coder executed on boot aaaaaaaaaaaa without inputs verified on that boot/);
    assert.match(diagnosis.session.find((e) => e.kind === 'executed')?.detail ?? '', /⚠ no input was verified on this boot before it ran/);
  });

  it('hypothesis 4: verification failing after the target answered success names verifyLanding and the missing file', () => {
    const failure: FailureSummary = {
      type: 'VerificationFailed',
      message: 'target sessions/s1/data does not hold the manifest: 1 missing ("input.csv")',
      details: { missing: ['input.csv'], short: [], mismatched: [], bootId: BOOT_A },
    };
    const h = new History()
      .started(0, 'syncWorkflow')
      .workflowTask(0)
      .activity('landManifest', { scheduled: 1, started: 1, closed: 2 }, { input: landing, result: { bootId: BOOT_A, filesLanded: 1, filesAlreadyPresent: 0 } })
      .activity('verifyLanding', { scheduled: 2, started: 8, closed: 8.1 }, { input: { ...landing, expectedBootId: BOOT_A }, attempt: 3, lastFailure: failure, failure, status: 'failed', retryState: 'maximumAttemptsReached' })
      .closed(8.2, 'failed', { ...failure, message: `verifyLanding failed: ${failure.message}` });
    const diagnosis = diagnose({ workflowId: 'w', events: h.events, nowMs: at(9) }, { gapThresholdMs: 30_000 });
    const step = diagnosis.steps[0];
    assert.deepEqual([step.name, step.outcome, step.attempts, step.failure?.type], ['verifyLanding', 'failed', 3, 'VerificationFailed']);
    assert.deepEqual(step.session, { sessionId: 's1', target: 'local', bootId: BOOT_A, dest: 'data', manifestDigest: DIGEST });
    assert.equal(
      diagnosis.verdict,
      'syncWorkflow failed: verifyLanding failed after 3 attempts, retries exhausted on local session s1 (boot aaaaaaaaaaaa): VerificationFailed: target sessions/s1/data does not hold the manifest: 1 missing ("input.csv") — although landManifest had answered success',
    );
    assert.match(diagnosis.session.find((e) => e.kind === 'verification-failed')?.detail ?? '', /failed after 3 attempt\(s\) — missing: input\.csv/);
  });

  it('a restart between landing and verifying (TargetRestarted) shows as a restart and a re-land', () => {
    const restarted: FailureSummary = { type: 'TargetRestarted', message: 'target restarted after landing', details: { expectedBootId: BOOT_A, bootId: BOOT_B }, nonRetryable: true };
    const h = new History()
      .started(0, 'syncWorkflow')
      .workflowTask(0)
      .activity('landManifest', { scheduled: 1, started: 1, closed: 2 }, { input: landing, result: { bootId: BOOT_A, filesLanded: 1 } })
      .activity('verifyLanding', { scheduled: 2, started: 2, closed: 3 }, { input: { ...landing, expectedBootId: BOOT_A }, failure: restarted, status: 'failed', retryState: 'nonRetryableFailure' })
      .activity('landManifest', { scheduled: 3, started: 3, closed: 4 }, { input: landing, result: { bootId: BOOT_B, filesLanded: 1 } })
      .activity('verifyLanding', { scheduled: 4, started: 4, closed: 5 }, { input: { ...landing, expectedBootId: BOOT_B }, result: { bootId: BOOT_B, filesVerified: 1 } })
      .closed(5);
    const diagnosis = diagnose({ workflowId: 'w', events: h.events, nowMs: at(5) }, { gapThresholdMs: 30_000 });
    assert.deepEqual(diagnosis.session.map((e) => e.kind), ['landed', 'restart-detected', 're-landed', 'verified']);
    assert.match(diagnosis.steps[0].summary, /verifyLanding failed after 1 attempt, not retryable/);
  });
});
