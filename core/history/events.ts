/**
 * What core/history reads: a workflow's history events (and, while it runs,
 * its pending activities) as small plain summaries. client/history maps
 * Temporal's events to these and decodes their payloads, so the analysis
 * sees the values the workflow saw: digests, boot ids, failure details.
 *
 * Temporal writes ActivityTaskStarted only when an attempt ends, carrying the
 * attempt number and the previous attempt's failure: history records an
 * activity's last attempt only, and heartbeats only show in a running
 * workflow's pending-activity info.
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
  /**
   * A local activity (run inside the workflow's own worker), from the marker
   * its workflow task recorded once it ended: no scheduled or started event,
   * no input, only the last attempt's end and result or failure.
   */
  | {
      kind: 'localActivity';
      eventId: number;
      timeMs: number;
      activityId: string;
      activityType: string;
      attempt: number;
      /** When its first attempt was scheduled, as the worker recorded it (absent or after `completedMs` in some SDK versions: read with care). */
      originalScheduleMs?: number;
      /** When its last attempt ended, on the worker's clock. */
      completedMs?: number;
      result?: unknown;
      failure?: FailureSummary;
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

/** One pending activity of a running workflow, as DescribeWorkflowExecution reports it. */
export interface PendingActivitySummary {
  activityId: string;
  activityType: string;
  state: 'scheduled' | 'started' | 'cancelRequested';
  attempt: number;
  maximumAttempts?: number;
  scheduledMs?: number;
  lastStartedMs?: number;
  lastHeartbeatMs?: number;
  lastAttemptCompleteMs?: number;
  nextAttemptScheduleMs?: number;
  lastFailure?: FailureSummary;
  heartbeatDetails?: unknown;
  lastWorkerIdentity?: string;
}

/** One workflow run's history, with its child workflows' (a pipeline's syncs) analysed alongside. */
export interface WorkflowHistory {
  workflowId: string;
  runId?: string;
  workflowType?: string;
  events: HistoryEventSummary[];
  pendingActivities?: PendingActivitySummary[];
  /** The time "now" stands for while the workflow is still running. */
  nowMs: number;
  webUiUrl?: string;
  children?: WorkflowHistory[];
}

/** The pipeline stage a search-attribute upsert names (FerryStage), if it names one. */
export function upsertedStage(event: HistoryEventSummary): string | undefined {
  if (event.kind !== 'searchAttributesUpserted') return undefined;
  const value = event.attributes.FerryStage;
  const stage = Array.isArray(value) ? value[0] : value;
  return typeof stage === 'string' && stage !== '' ? stage : undefined;
}
