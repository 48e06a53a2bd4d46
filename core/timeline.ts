/**
 * Turns a workflow's history into steps and gaps, the view that explains
 * "what happened between 06:31 and 06:36". Pure: the client maps Temporal's
 * history events to {@link HistoryEventSummary} and calls {@link buildTimeline}.
 *
 * Temporal writes ActivityTaskStarted only when an attempt ends, carrying the
 * attempt number and the previous attempt's failure, so retries show up as a
 * started event with attempt > 1 and a long scheduled→started wait.
 */

export type HistoryEventSummary =
  | { kind: 'workflowStarted'; eventId: number; timeMs: number; workflowType?: string; taskQueue?: string; input?: unknown; parentWorkflowId?: string }
  | {
      kind: 'workflowClosed';
      eventId: number;
      timeMs: number;
      status: string;
      failure?: FailureSummary;
      result?: unknown;
      /** For `continuedAsNew`: the run that carries on. */
      newRunId?: string;
    }
  /** A workflow task waiting for a worker of `taskQueue` (sticky queues are reported by their normal name). */
  | { kind: 'workflowTaskScheduled'; eventId: number; timeMs: number; taskQueue: string; attempt: number }
  | { kind: 'workflowTaskStarted'; eventId: number; timeMs: number; scheduledEventId: number }
  | { kind: 'workflowTaskClosed'; eventId: number; timeMs: number; scheduledEventId: number; status: 'completed' | 'failed' | 'timedOut'; failure?: FailureSummary }
  | {
      kind: 'activityScheduled';
      eventId: number;
      timeMs: number;
      activityId: string;
      activityType: string;
      taskQueue?: string;
      /** The activity's first argument, decoded (history holds digests and ids, never secrets). */
      input?: unknown;
      heartbeatTimeoutMs?: number;
      startToCloseTimeoutMs?: number;
      maximumAttempts?: number;
    }
  | { kind: 'activityStarted'; eventId: number; timeMs: number; scheduledEventId: number; attempt: number; lastFailure?: FailureSummary }
  | {
      kind: 'activityClosed';
      eventId: number;
      timeMs: number;
      scheduledEventId: number;
      status: 'completed' | 'failed' | 'timedOut' | 'canceled';
      failure?: FailureSummary;
      result?: unknown;
      /** Why Temporal stopped retrying: `nonRetryableFailure`, `maximumAttemptsReached`, `timeout`, … */
      retryState?: string;
    }
  | { kind: 'timerStarted'; eventId: number; timeMs: number; timerId: string; durationMs?: number; summary?: string }
  | { kind: 'timerFired' | 'timerCanceled'; eventId: number; timeMs: number; timerId: string }
  | { kind: 'signal'; eventId: number; timeMs: number; name: string; input?: unknown }
  /** An update the workflow accepted. */
  | { kind: 'update'; eventId: number; timeMs: number; name: string; updateId?: string; input?: unknown }
  | { kind: 'updateCompleted'; eventId: number; timeMs: number; name: string; updateId?: string; failure?: FailureSummary; result?: unknown }
  | { kind: 'childWorkflowInitiated'; eventId: number; timeMs: number; workflowId: string; workflowType: string; taskQueue?: string }
  | {
      kind: 'childWorkflowStarted' | 'childWorkflowClosed';
      eventId: number;
      timeMs: number;
      workflowId: string;
      workflowType: string;
      initiatedEventId?: number;
      runId?: string;
      /** For `childWorkflowClosed`: completed, failed, canceled, timedOut, terminated; or `startFailed`. */
      status?: string;
      failure?: FailureSummary;
    }
  | { kind: 'searchAttributesUpserted'; eventId: number; timeMs: number; attributes: Record<string, unknown> };

export interface FailureSummary {
  message: string;
  type?: string;
  nonRetryable?: boolean;
  /** The failure's details, decoded: the offending paths, sizes, hashes. */
  details?: unknown;
  /** For timeouts: START_TO_CLOSE, HEARTBEAT, SCHEDULE_TO_START, SCHEDULE_TO_CLOSE. */
  timeoutType?: string;
  /** The innermost cause's message, when it differs from `message`. */
  rootCause?: string;
}

export type StepStatus = 'completed' | 'failed' | 'timedOut' | 'canceled' | 'running' | 'scheduled';

export interface TimelineStep {
  activityId: string;
  name: string;
  /** The pipeline stage (search attribute FerryStage) the step ran in, when there is one. */
  stage?: string;
  status: StepStatus;
  /** Attempts made so far (1 = no retry). For a step still scheduled, the attempts that already failed. */
  attempts: number;
  scheduledAt: string;
  startedAt?: string;
  closedAt?: string;
  /** Scheduled → closed. */
  durationMs?: number;
  /** Scheduled → start of the last attempt: queueing plus any retries. */
  waitMs?: number;
  failure?: FailureSummary;
  /** The failure that made the last retry necessary. */
  lastRetryFailure?: FailureSummary;
}

export type GapCause =
  /** Nothing was scheduled: the workflow waited (for a signal, update, timer or child). */
  | 'workflow-waiting'
  /** An activity was scheduled but no worker picked it up. */
  | 'waiting-for-worker'
  /** An activity failed and waited out its retry backoff. */
  | 'retrying';

export interface TimelineGap {
  from: string;
  to: string;
  durationMs: number;
  cause: GapCause;
  /** The step the gap precedes or belongs to. */
  beforeStep?: string;
  detail: string;
}

export interface Timeline {
  startedAt?: string;
  closedAt?: string;
  status: string;
  failure?: FailureSummary;
  steps: TimelineStep[];
  gaps: TimelineGap[];
  retries: { step: string; attempts: number; lastRetryFailure?: FailureSummary }[];
}

const iso = (ms: number) => new Date(ms).toISOString();

export function buildTimeline(events: HistoryEventSummary[], gapThresholdMs: number, nowMs?: number): Timeline {
  const steps = new Map<number, TimelineStep & { scheduledMs: number; startedMs?: number; closedMs?: number }>();
  const timeline: Timeline = { status: 'running', steps: [], gaps: [], retries: [] };
  let startedMs: number | undefined;
  let closedMs: number | undefined;
  let stage: string | undefined;

  for (const event of events) {
    switch (event.kind) {
      case 'searchAttributesUpserted': {
        const value = event.attributes.FerryStage;
        const upserted = Array.isArray(value) ? value[0] : value;
        if (typeof upserted === 'string') stage = upserted;
        break;
      }
      case 'workflowStarted':
        startedMs = event.timeMs;
        timeline.startedAt = iso(event.timeMs);
        break;
      case 'workflowClosed':
        closedMs = event.timeMs;
        timeline.closedAt = iso(event.timeMs);
        timeline.status = event.status;
        timeline.failure = event.failure;
        break;
      case 'activityScheduled':
        steps.set(event.eventId, {
          activityId: event.activityId,
          name: event.activityType,
          ...(stage ? { stage } : {}),
          status: 'scheduled',
          attempts: 0,
          scheduledAt: iso(event.timeMs),
          scheduledMs: event.timeMs,
        });
        break;
      case 'activityStarted': {
        const step = steps.get(event.scheduledEventId);
        if (!step) break;
        step.status = 'running';
        step.attempts = event.attempt;
        step.startedAt = iso(event.timeMs);
        step.startedMs = event.timeMs;
        step.waitMs = event.timeMs - step.scheduledMs;
        if (event.lastFailure) step.lastRetryFailure = event.lastFailure;
        break;
      }
      case 'activityClosed': {
        const step = steps.get(event.scheduledEventId);
        if (!step) break;
        step.status = event.status;
        step.closedAt = iso(event.timeMs);
        step.closedMs = event.timeMs;
        step.durationMs = event.timeMs - step.scheduledMs;
        if (event.failure) step.failure = event.failure;
        break;
      }
      default:
        break;
    }
  }

  const ordered = [...steps.values()].sort((a, b) => a.scheduledMs - b.scheduledMs);
  const endMs = closedMs ?? nowMs;

  // Gaps between steps: time when no activity was scheduled at all.
  let cursor = startedMs;
  for (const step of ordered) {
    if (cursor !== undefined && step.scheduledMs - cursor > gapThresholdMs) {
      timeline.gaps.push({
        from: iso(cursor),
        to: step.scheduledAt,
        durationMs: step.scheduledMs - cursor,
        cause: 'workflow-waiting',
        beforeStep: step.name,
        detail: `no activity was scheduled for ${Math.round((step.scheduledMs - cursor) / 1000)}s before ${step.name}: the workflow was waiting (signal, update, timer or child workflow)`,
      });
    }
    // Waits inside a step: queueing for a worker, or retry backoff.
    const waitEnd = step.startedMs ?? (step.status === 'scheduled' ? endMs : undefined);
    if (waitEnd !== undefined && waitEnd - step.scheduledMs > gapThresholdMs) {
      const retried = step.attempts > 1;
      timeline.gaps.push({
        from: step.scheduledAt,
        to: iso(waitEnd),
        durationMs: waitEnd - step.scheduledMs,
        cause: retried ? 'retrying' : 'waiting-for-worker',
        beforeStep: step.name,
        detail: retried
          ? `${step.name} needed ${step.attempts} attempts; last retry after: ${step.lastRetryFailure?.message ?? 'unknown failure'}`
          : `${step.name} was scheduled but no worker started it for ${Math.round((waitEnd - step.scheduledMs) / 1000)}s (is a worker polling the task queue?)`,
      });
    }
    const stepEnd = step.closedMs ?? step.startedMs ?? step.scheduledMs;
    cursor = cursor === undefined ? stepEnd : Math.max(cursor, stepEnd);
  }
  if (cursor !== undefined && endMs !== undefined && endMs - cursor > gapThresholdMs && ordered.every((s) => s.closedMs !== undefined)) {
    timeline.gaps.push({
      from: iso(cursor),
      to: iso(endMs),
      durationMs: endMs - cursor,
      cause: 'workflow-waiting',
      detail: `no activity was scheduled for ${Math.round((endMs - cursor) / 1000)}s after the last step`,
    });
  }

  for (const step of ordered) {
    const { scheduledMs: _s, startedMs: _st, closedMs: _c, ...publicStep } = step;
    timeline.steps.push(publicStep);
    if (step.attempts > 1) timeline.retries.push({ step: step.name, attempts: step.attempts, lastRetryFailure: step.lastRetryFailure });
  }
  return timeline;
}
