/**
 * Steps: every activity a workflow scheduled, with its attempts, times,
 * failures, the session it ran against and the pipeline stage it ran in.
 * The one record the table, the page and the explanation all read.
 */
import { Activity } from '../activityNames';
import type { FailureSummary, HistoryEventSummary, WorkflowHistory } from './events';
import { upsertedStage } from './events';
import { field, iso, stringField, withoutUndefined } from './values';

export type StepStatus = 'completed' | 'failed' | 'timedOut' | 'canceled' | 'running' | 'scheduled';

/** The session an activity ran against, as far as its input, result and failure say. */
export interface SessionRef {
  sessionId?: string;
  target?: string;
  bootId?: string;
  dest?: string;
  manifestDigest?: string;
}

export interface Step {
  workflowId: string;
  activityId: string;
  /** The activity type. */
  name: string;
  /** The pipeline stage the step ran in: the one its input names, else the one the workflow was in (FerryStage); none for the session's release. */
  stage?: string;
  taskQueue?: string;
  status: StepStatus;
  /** Attempts made so far (1 = no retry); 0 while the first attempt waits for a worker. */
  attempts: number;
  maximumAttempts?: number;
  scheduledAt: string;
  /** Start of the last (or current) attempt. */
  startedAt?: string;
  closedAt?: string;
  /** Scheduled → closed. */
  durationMs?: number;
  /** Scheduled → start of the last attempt: queueing plus any retries. */
  waitMs?: number;
  /** End of the previous attempt, for an activity waiting out its backoff. */
  lastAttemptEndedAt?: string;
  lastHeartbeatAt?: string;
  heartbeatTimeoutMs?: number;
  failure?: FailureSummary;
  /** The failure that made the last retry necessary. */
  lastRetryFailure?: FailureSummary;
  retryState?: string;
  session?: SessionRef;
}

/** A step as the analysis works with it: times in ms, the decoded input and result. */
export interface StepRecord {
  workflowId: string;
  scheduledEventId: number;
  activityId: string;
  name: string;
  stage?: string;
  taskQueue?: string;
  input?: unknown;
  result?: unknown;
  heartbeatTimeoutMs?: number;
  maximumAttempts?: number;
  scheduledMs: number;
  startedMs?: number;
  closedMs?: number;
  attempts: number;
  status: StepStatus;
  failure?: FailureSummary;
  lastRetryFailure?: FailureSummary;
  retryState?: string;
  lastHeartbeatMs?: number;
  lastAttemptCompleteMs?: number;
  nextAttemptScheduleMs?: number;
  heartbeatDetails?: unknown;
}

export const isFailedStatus = (status: StepStatus) => status === 'failed' || status === 'timedOut' || status === 'canceled';

/**
 * The steps of one workflow run in the order it scheduled them, completed
 * with a running workflow's pending-activity info (current attempt,
 * backoff, heartbeats), which history does not hold.
 */
export function readSteps(history: WorkflowHistory): StepRecord[] {
  const records = new Map<number, StepRecord>();
  /** The stage the workflow is in: from its FerryStage upsert until that stage's artifacts are collected. */
  let stage: string | undefined;
  /** When the latest workflow task started: a local activity runs within one, after its start. */
  let workflowTaskStartedMs: number | undefined;
  for (const event of history.events) {
    if (event.kind === 'searchAttributesUpserted') {
      stage = upsertedStage(event) ?? stage;
    } else if (event.kind === 'workflowTaskStarted') {
      workflowTaskStartedMs = event.timeMs;
    } else if (event.kind === 'localActivity') {
      records.set(event.eventId, localActivityRecord(history.workflowId, event, stage, workflowTaskStartedMs));
    } else if (event.kind === 'activityScheduled') {
      // Releasing the session ends the pipeline, whichever stage it ended in.
      if (event.activityType === Activity.releaseSession) stage = undefined;
      records.set(event.eventId, {
        workflowId: history.workflowId,
        scheduledEventId: event.eventId,
        activityId: event.activityId,
        name: event.activityType,
        stage: stringField(event.input, 'stage') ?? stage,
        taskQueue: event.taskQueue,
        input: event.input,
        heartbeatTimeoutMs: event.heartbeatTimeoutMs,
        maximumAttempts: event.maximumAttempts,
        scheduledMs: event.timeMs,
        attempts: 0,
        status: 'scheduled',
      });
    } else if (event.kind === 'activityStarted') {
      const record = records.get(event.scheduledEventId);
      if (!record) continue;
      record.startedMs = event.timeMs;
      record.attempts = event.attempt;
      if (record.status === 'scheduled') record.status = 'running';
      if (event.lastFailure) record.lastRetryFailure = event.lastFailure;
    } else if (event.kind === 'activityClosed') {
      const record = records.get(event.scheduledEventId);
      if (!record) continue;
      record.status = event.status;
      record.closedMs = event.timeMs;
      record.failure = event.failure;
      record.result = event.result;
      record.retryState = event.retryState;
      record.attempts = Math.max(record.attempts, 1);
      // A stage ends once its artifacts are collected; what follows (the release) belongs to no stage.
      if (record.name === Activity.collectArtifacts && record.status === 'completed' && record.stage === stage) stage = undefined;
    }
  }
  const open = new Map([...records.values()].filter((r) => r.closedMs === undefined).map((r) => [r.activityId, r]));
  for (const info of history.pendingActivities ?? []) {
    const record = open.get(info.activityId);
    if (!record) continue;
    record.attempts = info.attempt;
    record.maximumAttempts = info.maximumAttempts ?? record.maximumAttempts;
    record.status = info.state === 'scheduled' ? 'scheduled' : 'running';
    record.startedMs = info.state === 'scheduled' ? undefined : (info.lastStartedMs ?? record.startedMs);
    record.lastHeartbeatMs = info.lastHeartbeatMs;
    record.lastAttemptCompleteMs = info.lastAttemptCompleteMs;
    record.nextAttemptScheduleMs = info.nextAttemptScheduleMs;
    record.heartbeatDetails = info.heartbeatDetails;
    if (info.lastFailure) record.lastRetryFailure = info.lastFailure;
  }
  return [...records.values()].sort((a, b) => a.scheduledMs - b.scheduledMs || a.scheduledEventId - b.scheduledEventId);
}

/**
 * A local activity's step. Its marker holds neither a scheduled nor a started
 * time one can trust (the worker may record the first schedule after the
 * end), so it counts from the workflow task it ran in, or from the first
 * schedule when that is earlier (retries spanning workflow tasks); it waits
 * in no queue, so it starts when scheduled.
 */
function localActivityRecord(workflowId: string, event: Extract<HistoryEventSummary, { kind: 'localActivity' }>, stage: string | undefined, workflowTaskStartedMs: number | undefined): StepRecord {
  const closedMs = event.completedMs ?? event.timeMs;
  const scheduledMs = Math.min(closedMs, workflowTaskStartedMs ?? closedMs, event.originalScheduleMs ?? closedMs);
  return {
    workflowId,
    scheduledEventId: event.eventId,
    activityId: event.activityId,
    name: event.activityType,
    stage: stringField(event.result, 'stage') ?? stage,
    scheduledMs,
    startedMs: scheduledMs,
    closedMs,
    attempts: event.attempt,
    status: !event.failure ? 'completed' : event.failure.timeoutType ? 'timedOut' : 'failed',
    failure: event.failure,
    result: event.result,
  };
}

/** The session a step ran against: from its input (`sessionId` or a `session` handle), result and failure details. */
export function sessionOf(record: StepRecord): SessionRef {
  const handle = field(record.input, 'session');
  const target = field(record.input, 'target') ?? field(handle, 'target');
  return withoutUndefined({
    sessionId: stringField(record.input, 'sessionId') ?? stringField(handle, 'sessionId') ?? stringField(record.result, 'sessionId'),
    target: typeof target === 'string' ? target : stringField(target, 'kind'),
    bootId: stringField(record.result, 'bootId') ?? stringField(record.failure?.details, 'bootId') ?? stringField(record.input, 'expectedBootId') ?? stringField(handle, 'bootId'),
    dest: stringField(record.input, 'dest'),
    manifestDigest: stringField(record.input, 'manifestDigest') ?? stringField(record.result, 'manifestDigest'),
  });
}

export function toStep(record: StepRecord): Step {
  const at = (ms: number | undefined) => (ms === undefined ? undefined : iso(ms));
  return withoutUndefined<Step>({
    workflowId: record.workflowId,
    activityId: record.activityId,
    name: record.name,
    stage: record.stage,
    taskQueue: record.taskQueue,
    status: record.status,
    attempts: Math.max(record.attempts, record.status === 'scheduled' ? 0 : 1),
    maximumAttempts: record.maximumAttempts,
    scheduledAt: iso(record.scheduledMs),
    startedAt: at(record.startedMs),
    closedAt: at(record.closedMs),
    durationMs: record.closedMs === undefined ? undefined : record.closedMs - record.scheduledMs,
    waitMs: record.startedMs === undefined ? undefined : record.startedMs - record.scheduledMs,
    lastAttemptEndedAt: at(record.lastAttemptCompleteMs),
    lastHeartbeatAt: at(record.lastHeartbeatMs),
    heartbeatTimeoutMs: record.heartbeatTimeoutMs,
    failure: record.failure,
    lastRetryFailure: record.lastRetryFailure,
    retryState: record.retryState,
    session: sessionOf(record),
  });
}
