/**
 * core/history on synthetic history summaries: steps, every gap cause,
 * failed and retried steps, the session story, stages and the verdict,
 * including the seed's incident (inputs in S3 at 06:31:02, first execution
 * at 06:36:19).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { FerryActivities } from '../../activities';
import { formatTimeline } from '../../client/commands';
import { formatExplanation } from '../../client/explain';
import { summarizeHistory } from '../../client/history';
import { renderTimelineHtml } from '../../client/timelineHtml';
import { Activity, RetiredActivity, type ActivityName, type RetiredActivityName } from '../../core/activityNames';
import { allGaps, analyseHistory, type HistoryAnalysis } from '../../core/history/analysis';
import type { FailureSummary, HistoryEventSummary, PendingActivitySummary, WorkflowHistory } from '../../core/history/events';
import { committedHistoriesDir, readRecordedHistories, retiredHistoriesDir } from '../support/histories';

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
    activityType: ActivityName,
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
function inputSync(workflowId: string, start: number, end: number, bootId = BOOT_A): WorkflowHistory {
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

const gapSummary = (input: WorkflowHistory, thresholdMs = 30_000) =>
  allGaps(analyseHistory(input, { gapThresholdMs: thresholdMs })).map((g) => [g.cause, g.durationMs, g.taskQueue ?? g.activityType ?? g.timerId ?? g.endedBy ?? '']);

describe('core/history: gaps attributed to their cause', () => {
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
    const diagnosis = analyseHistory(
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
    const input: WorkflowHistory = { workflowId: 'w', events: h.events, nowMs: at(6) };
    assert.deepEqual(gapSummary(input, 2_000), [['waiting-for-worker', 5_000, 'ferry-idle']]);
    const diagnosis = analyseHistory(input, { gapThresholdMs: 2_000 });
    assert.match(diagnosis.gaps[0].detail, /^no worker polling queue ferry-idle: a workflow task waited 5\.0s/);
    assert.match(diagnosis.verdict, /longest gap 5\.0s no worker polling queue ferry-idle/);
    assert.deepEqual(gapSummary(input, 10_000), []);
  });

  it('an activity scheduled and never started, still pending → ongoing waiting-for-worker naming its queue', () => {
    const h = new History().started(0).workflowTask(0).activity('landManifest', { scheduled: 1 }, { taskQueue: 'gpu-workers', input: landing });
    const pending: PendingActivitySummary[] = [{ activityId: '1', activityType: 'landManifest', state: 'scheduled', attempt: 1, scheduledMs: at(1) }];
    const diagnosis = analyseHistory({ workflowId: 'w', events: h.events, pendingActivities: pending, nowMs: at(121) }, { gapThresholdMs: 30_000 });
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
    const diagnosis = analyseHistory({ workflowId: 'w', events: h.events, nowMs: at(43) }, { gapThresholdMs: 30_000 });
    assert.deepEqual(diagnosis.gaps.map((g) => [g.cause, g.activityType, g.durationMs]), [['retry-backoff', 'landManifest', 40_000]]);
    assert.match(diagnosis.gaps[0].detail, /attempts 1–3 failed and were retried with backoff \(last failure: TargetUnavailable: runtime agent answered 502/);
    assert.equal(diagnosis.problems.length, 1);
    assert.deepEqual([diagnosis.problems[0].outcome, diagnosis.problems[0].attempts, diagnosis.problems[0].lastRetryFailure?.type], ['retried', 4, 'TargetUnavailable']);
    assert.match(diagnosis.problems[0].summary, /landManifest succeeded on attempt 4 on local session s1 \(boot aaaaaaaaaaaa\); attempt 3 failed with TargetUnavailable/);
    assert.match(diagnosis.verdict, /^syncWorkflow completed in 43\.0s; .*landManifest needed 4 attempts \(TargetUnavailable before\); longest gap 40\.0s retrying \(landManifest\)/);
  });

  it('a pending activity between attempts: earlier attempts, then backoff until the next attempt is due', () => {
    const h = new History().started(0).workflowTask(0).activity('uploadBlobs', { scheduled: 1 });
    const pending: PendingActivitySummary[] = [
      { activityId: '1', activityType: 'uploadBlobs', state: 'scheduled', attempt: 3, scheduledMs: at(1), lastAttemptCompleteMs: at(50), nextAttemptScheduleMs: at(130), lastFailure: { type: 'ChecksumMismatch', message: 'bad sum' } },
    ];
    const diagnosis = analyseHistory({ workflowId: 'w', events: h.events, pendingActivities: pending, nowMs: at(100) }, { gapThresholdMs: 30_000 });
    assert.deepEqual(diagnosis.gaps.map((g) => [g.cause, g.durationMs, g.ongoing ?? false]), [
      ['retry-backoff', 49_000, false],
      ['retry-backoff', 50_000, true],
    ]);
    assert.match(diagnosis.gaps[1].detail, /uploadBlobs attempt 3 failed \(ChecksumMismatch: bad sum\); backing off before attempt 4/);
    assert.equal(diagnosis.problems[0].outcome, 'retrying');
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
    const diagnosis = analyseHistory({ workflowId: 'train-1', events: h.events, pendingActivities: pending, nowMs: at(160) }, { gapThresholdMs: 30_000 });
    assert.deepEqual(diagnosis.gaps.map((g) => [g.cause, g.timerId ?? g.activityType, g.durationMs]), [
      ['durable-timer', 'probe-1', 60_000],
      ['slow-activity', 'probeProcess', 97_800],
    ]);
    assert.match(diagnosis.gaps[1].detail, /probeProcess attempt 1 has been running for 1m38s, heartbeating \(last heartbeat 10\.0s ago; progress 10\/20 bytes\)/);
    assert.deepEqual(diagnosis.session.map((e) => e.kind), ['process-started']);
    assert.match(diagnosis.session[0].detail, /pid 4242/);
  });
});

describe('core/history: failures, the session story and the verdict', () => {
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
    const diagnosis = analyseHistory(
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
    const diagnosis = analyseHistory({ workflowId: 'pipeline-s1', events: h.events, nowMs: at(6) }, { gapThresholdMs: 30_000 });
    assert.deepEqual(diagnosis.problems.map((s) => [s.kind, s.name, s.outcome, s.failure?.type]), [['update', 'execute', 'refused', 'InputsNotVerified']]);
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
    const diagnosis = analyseHistory({ workflowId: 'p', events: h.events, nowMs: at(4) }, { gapThresholdMs: 30_000 });
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
    const diagnosis = analyseHistory({ workflowId: 'w', events: h.events, nowMs: at(9) }, { gapThresholdMs: 30_000 });
    const step = diagnosis.problems[0];
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
    const diagnosis = analyseHistory({ workflowId: 'w', events: h.events, nowMs: at(5) }, { gapThresholdMs: 30_000 });
    assert.deepEqual(diagnosis.session.map((e) => e.kind), ['landed', 'restart-detected', 're-landed', 'verified']);
    assert.match(diagnosis.problems[0].summary, /verifyLanding failed after 1 attempt, not retryable/);
  });
});

describe('core/history: steps', () => {
  const t0 = Date.parse('2026-01-01T06:31:02Z');
  const events: HistoryEventSummary[] = [
    { kind: 'workflowStarted', eventId: 1, timeMs: t0 },
    { kind: 'activityScheduled', eventId: 5, timeMs: t0 + 100, activityId: '1', activityType: 'snapshotSource' },
    { kind: 'activityStarted', eventId: 6, timeMs: t0 + 110, scheduledEventId: 5, attempt: 1 },
    { kind: 'activityClosed', eventId: 7, timeMs: t0 + 500, scheduledEventId: 5, status: 'completed' },
    // Five minutes with nothing scheduled: the seed's unexplained gap.
    { kind: 'activityScheduled', eventId: 11, timeMs: t0 + 300_500, activityId: '2', activityType: 'uploadBlobs' },
    // Retried twice: started (last attempt) long after scheduling.
    { kind: 'activityStarted', eventId: 12, timeMs: t0 + 340_500, scheduledEventId: 11, attempt: 3, lastFailure: { message: 'SlowDown', type: 'TargetUnavailable' } },
    { kind: 'activityClosed', eventId: 13, timeMs: t0 + 341_000, scheduledEventId: 11, status: 'completed' },
    { kind: 'activityScheduled', eventId: 17, timeMs: t0 + 341_100, activityId: '3', activityType: 'landManifest' },
    { kind: 'activityStarted', eventId: 18, timeMs: t0 + 341_200, scheduledEventId: 17, attempt: 1 },
    { kind: 'activityClosed', eventId: 19, timeMs: t0 + 342_000, scheduledEventId: 17, status: 'failed', failure: { message: 'boom', type: 'TargetUnavailable' } },
    { kind: 'workflowClosed', eventId: 23, timeMs: t0 + 342_100, status: 'failed', failure: { message: 'landManifest failed: boom' } },
  ];
  const analyse = (thresholdMs: number, history: HistoryEventSummary[] = events, nowMs = t0 + 342_100) => analyseHistory({ workflowId: 'w', events: history, nowMs }, { gapThresholdMs: thresholdMs });

  it('lists steps with attempts, waits and failures', () => {
    const analysis = analyse(30_000);
    assert.deepEqual(analysis.steps.map((s) => [s.name, s.status, s.attempts]), [
      ['snapshotSource', 'completed', 1],
      ['uploadBlobs', 'completed', 3],
      ['landManifest', 'failed', 1],
    ]);
    assert.equal(analysis.steps[1].waitMs, 40_000);
    assert.equal(analysis.steps[1].durationMs, 40_500);
    assert.equal(analysis.steps[2].failure?.type, 'TargetUnavailable');
    assert.equal(analysis.status, 'failed');
    assert.deepEqual(analysis.problems.map((p) => [p.name, p.outcome, p.attempts, p.lastRetryFailure ?? p.failure]), [
      ['uploadBlobs', 'retried', 3, { message: 'SlowDown', type: 'TargetUnavailable' }],
      ['landManifest', 'failed', 1, { message: 'boom', type: 'TargetUnavailable' }],
    ]);
  });

  it('flags and attributes gaps over the threshold', () => {
    assert.deepEqual(analyse(30_000).gaps.map((g) => [g.cause, g.from, g.to, g.activityType]), [
      ['waiting-for-agent', '2026-01-01T06:31:02.500Z', '2026-01-01T06:36:02.500Z', undefined],
      ['retry-backoff', '2026-01-01T06:36:02.500Z', '2026-01-01T06:36:42.500Z', 'uploadBlobs'],
    ]);
    assert.equal(analyse(600_000).gaps.length, 0);
  });

  it('attributes a step no worker picked up', () => {
    const pending: HistoryEventSummary[] = [
      { kind: 'workflowStarted', eventId: 1, timeMs: t0 },
      { kind: 'activityScheduled', eventId: 5, timeMs: t0 + 10, activityId: '1', activityType: 'snapshotSource' },
    ];
    const analysis = analyse(30_000, pending, t0 + 120_000);
    assert.equal(analysis.steps[0].status, 'scheduled');
    assert.equal(analysis.steps[0].attempts, 0);
    assert.deepEqual(analysis.gaps.map((g) => [g.cause, g.activityType, g.durationMs, g.ongoing]), [['waiting-for-worker', 'snapshotSource', 119_990, true]]);
  });

  it('reads a local activity from its marker: named, timed from its workflow task, its session from its result', () => {
    const EventType = temporal.api.enums.v1.EventType;
    const time = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });
    const payloads = (value: unknown) => ({ payloads: [defaultPayloadConverter.toPayload(value)] });
    const marker = (eventId: number, atMs: number, data: Record<string, unknown>, outcome: { result?: unknown; failure?: temporal.api.failure.v1.IFailure }) =>
      temporal.api.history.v1.HistoryEvent.fromObject({
        eventId,
        eventTime: time(atMs),
        eventType: EventType.EVENT_TYPE_MARKER_RECORDED,
        markerRecordedEventAttributes: {
          markerName: 'core_local_activity',
          details: { data: payloads(data), ...(outcome.result ? { result: payloads(outcome.result) } : {}) },
          failure: outcome.failure,
        },
      });
    const raw = [
      temporal.api.history.v1.HistoryEvent.fromObject({ eventId: 1, eventTime: time(t0), eventType: EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED }),
      temporal.api.history.v1.HistoryEvent.fromObject({ eventId: 2, eventTime: time(t0), eventType: EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED }),
      temporal.api.history.v1.HistoryEvent.fromObject({ eventId: 3, eventTime: time(t0 + 5), eventType: EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, workflowTaskStartedEventAttributes: { scheduledEventId: 2 } }),
      temporal.api.history.v1.HistoryEvent.fromObject({ eventId: 4, eventTime: time(t0 + 20), eventType: EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, workflowTaskCompletedEventAttributes: { scheduledEventId: 2 } }),
      // The SDK's core may record the first schedule after the end: the workflow task's start counts then.
      marker(5, t0 + 20, { seq: 1, attempt: 1, activity_id: '1', activity_type: 'checkSession', complete_time: time(t0 + 15), original_schedule_time: time(t0 + 18) }, { result: { sessionId: 's1', reachable: true, bootId: BOOT_A, restarted: false, missing: [], changed: [] } }),
      temporal.api.history.v1.HistoryEvent.fromObject({ eventId: 6, eventTime: time(t0 + 1_000), eventType: EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED }),
      temporal.api.history.v1.HistoryEvent.fromObject({ eventId: 7, eventTime: time(t0 + 1_002), eventType: EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, workflowTaskStartedEventAttributes: { scheduledEventId: 6 } }),
      temporal.api.history.v1.HistoryEvent.fromObject({ eventId: 8, eventTime: time(t0 + 9_000), eventType: EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, workflowTaskCompletedEventAttributes: { scheduledEventId: 6 } }),
      // Retried across workflow tasks: its first schedule is the earlier time.
      marker(9, t0 + 9_000, { seq: 2, attempt: 3, activity_id: '2', activity_type: 'checkSession', complete_time: time(t0 + 8_990), original_schedule_time: time(t0 + 500) }, {
        failure: { message: 'agent down', applicationFailureInfo: { type: 'TargetUnavailable' } },
      }),
    ];
    const steps = analyse(Number.POSITIVE_INFINITY, summarizeHistory(raw), t0 + 9_000).steps;
    assert.deepEqual(
      steps.map((s) => [s.name, s.status, s.attempts, s.scheduledAt, s.durationMs, s.waitMs, s.failure?.type]),
      [
        ['checkSession', 'completed', 1, new Date(t0 + 5).toISOString(), 10, 0, undefined],
        ['checkSession', 'failed', 3, new Date(t0 + 500).toISOString(), 8_490, 0, 'TargetUnavailable'],
      ],
    );
    assert.deepEqual(steps[0].session, { sessionId: 's1', bootId: BOOT_A });
  });
});

/** A pipeline: coder finishes with its artifacts; validator runs code that exits 1, then the agent goes quiet until the idle timeout fails it. */
function pipelineWithFailedValidator(until?: number): WorkflowHistory {
  const h = new History()
    .started(0)
    .workflowTask(0)
    .activity('provisionSession', { scheduled: 0.1, started: 0.1, closed: 1 }, { result: session })
    .activity('landManifest', { scheduled: 1, started: 1, closed: 2 }, { input: landing, result: { bootId: BOOT_A, filesLanded: 1 } })
    .activity('verifyLanding', { scheduled: 2, started: 2, closed: 3 }, { input: { ...landing, expectedBootId: BOOT_A }, result: { bootId: BOOT_A, filesVerified: 1 } })
    .stage('coder', 12)
    .update('execute', 20, { doneS: 25 })
    .activity('checkSession', { scheduled: 20.1, started: 20.1, closed: 20.5 }, { input: { session }, result: { sessionId: 's1', bootId: BOOT_A } })
    .activity('executeCode', { scheduled: 21, started: 21, closed: 25 }, { input: { session, stage: 'coder' }, result: { exitCode: 0, bootId: BOOT_A } })
    .signal('finishStage', 30)
    .workflowTask(30)
    .activity('collectArtifacts', { scheduled: 30.1, started: 30.1, closed: 31 }, { input: { session, stage: 'coder' }, result: { filesTotal: 2 } })
    .stage('validator', 31.1)
    .update('execute', 40, { doneS: 50 })
    .activity('checkSession', { scheduled: 40.1, started: 40.1, closed: 40.5 }, { input: { session }, result: { sessionId: 's1', bootId: BOOT_A } })
    .activity('executeCode', { scheduled: 41, started: 41, closed: 50 }, { input: { session, stage: 'validator' }, result: { exitCode: 1, bootId: BOOT_A } });
  if (until !== undefined) return { workflowId: 'pipeline-s1', events: h.events, nowMs: at(until) };
  h.activity('releaseSession', { scheduled: 650, started: 650, closed: 651 }, { input: { session } }).closed(652, 'failed', {
    type: 'StageIdleTimeout',
    message: 'stage validator saw no execute, finishStage or other signal for 600 s',
    nonRetryable: true,
  });
  return { workflowId: 'pipeline-s1', events: h.events, nowMs: at(652) };
}

describe('core/history: stages', () => {
  it('groups steps by stage, with each stage’s span, duration and outcome; a stage never begun is “not reached”', () => {
    const analysis = analyseHistory(pipelineWithFailedValidator(), { gapThresholdMs: 30_000 });
    assert.deepEqual(
      analysis.steps.map((s) => [s.name, s.stage]),
      [
        ['provisionSession', undefined],
        ['landManifest', undefined],
        ['verifyLanding', undefined],
        ['checkSession', 'coder'],
        ['executeCode', 'coder'],
        ['collectArtifacts', 'coder'],
        ['checkSession', 'validator'],
        ['executeCode', 'validator'],
        ['releaseSession', undefined],
      ],
    );
    assert.deepEqual(
      analysis.stages.map((lane) => [lane.name, lane.outcome, lane.startedAt, lane.endedAt, lane.durationMs, lane.steps, lane.executions, lane.failedExecutions]),
      [
        ['coder', 'finished', '2025-03-01T06:31:02.000Z', '2025-03-01T06:31:21.000Z', 19_000, 3, 1, 0],
        // Ends when the workflow gives up on it and releases the session.
        ['validator', 'failed', '2025-03-01T06:31:21.100Z', '2025-03-01T06:41:40.000Z', 618_900, 2, 1, 1],
        ['reporter', 'not-reached', undefined, undefined, undefined, 0, 0, 0],
      ],
    );
    assert.equal(analysis.stages[0].detail, '1 execution; artifacts collected (2 files)');
    assert.equal(analysis.stages[1].failure?.type, 'StageIdleTimeout');
    assert.equal(analysis.stages[1].detail, '1 execution; 1 failed or exited non-zero; failed: StageIdleTimeout: stage validator saw no execute, finishStage or other signal for 600 s');
    assert.equal(analysis.stages[2].detail, 'not reached: the workflow failed in validator');
    assert.match(analysis.verdict, /^pipelineWorkflow failed: StageIdleTimeout: stage validator saw no execute, finishStage or other signal for 600 s; stage validator failed after 10m19s; /);
  });

  it('a stage still running lasts until now; the stages after it are not begun yet', () => {
    const analysis = analyseHistory(pipelineWithFailedValidator(100), { gapThresholdMs: 30_000 });
    assert.deepEqual(
      analysis.stages.map((lane) => [lane.name, lane.outcome, lane.durationMs, lane.ongoing ?? false, lane.endedAt]),
      [
        ['coder', 'finished', 19_000, false, '2025-03-01T06:31:21.000Z'],
        ['validator', 'running', 68_900, true, undefined],
        ['reporter', 'pending', undefined, false, undefined],
      ],
    );
  });

  it('a workflow without stages has no lanes', () => {
    assert.deepEqual(analyseHistory(inputSync('sync-1', 0, 10), { gapThresholdMs: 30_000 }).stages, []);
  });

  it('a recorded pipeline (committed history): one lane per stage, each verifying before it executes and ending with its artifacts', async () => {
    const analysis = await analyseCommitted('pipelineWorkflow-completed-183-events-pipeline-full');
    assert.equal(analysis.status, 'completed');
    assert.deepEqual(analysis.stages.map((lane) => [lane.name, lane.outcome]), [
      ['coder', 'finished'],
      ['validator', 'finished'],
      ['reporter', 'finished'],
    ]);
    for (const lane of analysis.stages) {
      const names = analysis.steps.filter((s) => s.stage === lane.name).map((s) => s.name);
      assert.deepEqual(names.slice(0, 3), ['checkSession', 'verifyLanding', 'executeCode'], lane.name);
      assert.equal(names.at(-1), 'collectArtifacts', lane.name);
      assert.ok(lane.durationMs! > 0 && Date.parse(lane.endedAt!) - Date.parse(lane.startedAt!) === lane.durationMs, lane.name);
    }
    assert.deepEqual(analysis.steps.filter((s) => !s.stage).map((s) => s.name), ['provisionSession', 'snapshotSource', 'uploadBlobs', 'composeInputs', 'landManifest', 'verifyLanding', 'releaseSession']);
  });
});

/** A committed history (test/fixtures/histories, or a retired one) whose file name holds `name`, analysed. */
async function analyseCommitted(name: string, gapThresholdMs = 30_000): Promise<HistoryAnalysis> {
  const all = [...(await readRecordedHistories(committedHistoriesDir())), ...(await readRecordedHistories(retiredHistoriesDir()))];
  const found = all.filter(({ file }) => file.includes(name));
  assert.equal(found.length, 1, `one committed history named ${name}`);
  const { record, history } = found[0];
  return analyseHistory({ workflowId: record.workflowId, runId: record.runId, events: summarizeHistory(history.events ?? []), nowMs: Date.now() }, { gapThresholdMs });
}

describe('core/activityNames', () => {
  it('names every activity the worker registers (checked by the compiler) and every activity the committed histories hold', async () => {
    // A compile error here names an activity core/activityNames does not know.
    type Unnamed = Exclude<keyof FerryActivities, ActivityName | RetiredActivityName>;
    const everyRegisteredActivityNamed: [Unnamed] extends [never] ? true : Unnamed = true;
    assert.equal(everyRegisteredActivityNamed, true);
    const known = new Set<string>([...Object.values(Activity), ...Object.values(RetiredActivity)]);
    const recorded = await readRecordedHistories(committedHistoriesDir());
    const types = new Set(recorded.flatMap(({ history }) => summarizeHistory(history.events ?? []).flatMap((e) => (e.kind === 'activityScheduled' ? [e.activityType] : []))));
    assert.ok(types.size >= 10, `the committed histories hold ${types.size} activity types`);
    assert.deepEqual([...types].filter((type) => !known.has(type)), []);
  });

  it('reads landArchive and verifyInstanceLanding in earlier training histories as landing and verifying', async () => {
    const analysis = await analyseCommitted('trainingWorkflow-completed-54-events-train-test');
    assert.deepEqual(analysis.steps.slice(2, 4).map((s) => s.name), [RetiredActivity.landArchive, RetiredActivity.verifyInstanceLanding]);
    assert.deepEqual(analysis.session.map((e) => e.kind), ['landed', 'verified', 'process-started', 'process-confirmed']);
    assert.match(analysis.verdict, /^trainingWorkflow completed in .*; verified manifest [0-9a-f]{12} .*: 16 files re-hashed on the target$/);
  });
});

describe('one analysis, three renderings', () => {
  /** Each gap as `from → to cause`, read back from the text the table and the explanation print. */
  const gapsInText = (text: string) => [...text.matchAll(/⚠ (\d\d:\d\d:\d\d\.\d{3}) → (\S+) \([^)]*\) ([a-z-]+): /g)].map((m) => `${m[1]} → ${m[2]} ${m[3]}`);
  /** Each shaded gap of the page as `from → to cause`. */
  const gapsInPage = (html: string) =>
    [...html.matchAll(/data-gap-cause="([a-z-]+)" data-gap-from="([^"]+)" data-gap-to="([^"]+)"/g)].map((m) => `${m[2].slice(11, 23)} → ${m[3].slice(11, 23)} ${m[1]}`);

  function assertSameGaps(analysis: HistoryAnalysis, minimumCauses: number) {
    const expected = allGaps(analysis).map((g) => `${g.from.slice(11, 23)} → ${g.to.slice(11, 23)} ${g.cause}`);
    assert.ok(new Set(allGaps(analysis).map((g) => g.cause)).size >= minimumCauses, `at least ${minimumCauses} causes: ${expected.join('; ')}`);
    const table = formatTimeline(analysis);
    const explanation = formatExplanation(analysis);
    const page = renderTimelineHtml(analysis);
    assert.deepEqual(gapsInText(table), expected, 'ferry timeline');
    assert.deepEqual(gapsInText(explanation), expected, 'ferry explain');
    assert.deepEqual(gapsInPage(page), expected, 'ferry timeline --html');
    for (const text of [table, explanation]) assert.ok(text.includes(`verdict: ${analysis.verdict}`));
    const pageVerdict = /<div class="verdict \w+">([^<]*)<\/div>/.exec(page)?.[1];
    assert.equal(pageVerdict?.replace(/&#39;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&'), analysis.verdict, 'the page shows the same verdict');
  }

  it('a pipeline with a child sync, a retry, a durable timer, a queue no worker polled and an agent that went quiet', () => {
    const failure: FailureSummary = { type: 'TargetUnavailable', message: 'runtime agent answered 502', details: { status: 502 } };
    const h = new History()
      .started(0)
      .workflowTask(0)
      .activity('provisionSession', { scheduled: 0.1, started: 40, closed: 41 }, { result: session, taskQueue: 'ferry-sessions' })
      .child('sync-s1-inputs', 41, 52)
      .stage('coder', 52)
      .update('execute', 400, { doneS: 460 })
      .activity('checkSession', { scheduled: 400.1, started: 445, closed: 446 }, { input: { session }, result: { sessionId: 's1', bootId: BOOT_A }, attempt: 3, lastFailure: failure })
      .timer('settle', 446, 500)
      .activity('executeCode', { scheduled: 500, started: 500, closed: 560 }, { input: { session, stage: 'coder' }, result: { exitCode: 0, bootId: BOOT_A } })
      .activity('releaseSession', { scheduled: 561, started: 561, closed: 562 }, { input: { session } })
      .closed(563);
    const analysis = analyseHistory(
      { workflowId: 'pipeline-s1', events: h.events, nowMs: at(563), children: [inputSync('sync-s1-inputs', 41, 52)] },
      { gapThresholdMs: 30_000 },
    );
    assert.deepEqual(
      allGaps(analysis).map((g) => g.cause),
      ['waiting-for-worker', 'waiting-for-agent', 'retry-backoff', 'durable-timer', 'slow-activity'],
    );
    assertSameGaps(analysis, 5);
  });

  it('a recorded pipeline (committed history) with every stretch over 100 ms reported', async () => {
    assertSameGaps(await analyseCommitted('pipelineWorkflow-completed-183-events-pipeline-full', 100), 2);
  });
});
