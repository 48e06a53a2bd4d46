/**
 * Reads a workflow's history from Temporal (with its children's, and a
 * running workflow's pending activities) and maps it to the small, plain
 * shapes core/history analyses. Payloads are decoded here, so the analysis
 * sees the values the workflow saw: digests, boot ids, failure details.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { workflowUiUrl, type FerryConfig } from '../core/config';
import { analyseHistory, type HistoryAnalysis } from '../core/history/analysis';
import type { FailureSummary, HistoryEventSummary, PendingActivitySummary, WorkflowHistory } from '../core/history/events';
import { CommandError } from './errors';

const EventType = temporal.api.enums.v1.EventType;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
type Failure = temporal.api.failure.v1.IFailure;
type Payloads = temporal.api.common.v1.IPayloads;
type Timestamp = { seconds?: unknown; nanos?: number | null } | null | undefined;

function timestampMs(time: Timestamp): number | undefined {
  if (!time) return undefined;
  return Number(time.seconds ?? 0) * 1000 + Math.floor((time.nanos ?? 0) / 1e6);
}

function timeMs(event: HistoryEvent): number {
  return timestampMs(event.eventTime) ?? 0;
}

function durationMs(duration: Timestamp): number | undefined {
  const ms = timestampMs(duration);
  return ms ? ms : undefined;
}

/** A payload as the workflow saw it; undefined for encodings this client cannot read (encrypted, binary). */
function decodePayload(payload: temporal.api.common.v1.IPayload | null | undefined): unknown {
  if (!payload) return undefined;
  try {
    return defaultPayloadConverter.fromPayload(payload as Parameters<typeof defaultPayloadConverter.fromPayload>[0]);
  } catch {
    return undefined;
  }
}

/** The first argument or result of a Payloads list. */
function firstPayload(payloads: Payloads | null | undefined): unknown {
  return decodePayload(payloads?.payloads?.[0]);
}

/** `RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED` → `maximumAttemptsReached`. */
function enumName(names: Record<number, string>, value: number | null | undefined, prefix: string): string | undefined {
  const name = value === null || value === undefined ? undefined : names[value];
  if (!name || name.endsWith('_UNSPECIFIED')) return undefined;
  return name
    .slice(prefix.length)
    .toLowerCase()
    .replace(/_([a-z])/g, (_m, letter: string) => letter.toUpperCase());
}

const retryStateName = (value: number | null | undefined) => enumName(temporal.api.enums.v1.RetryState, value, 'RETRY_STATE_');

export function failureSummary(failure: Failure | null | undefined): FailureSummary | undefined {
  if (!failure) return undefined;
  // A workflow's or child's failure wraps the activity's; the innermost typed failure names what went wrong.
  let own: Failure | undefined;
  let innermost: Failure = failure;
  for (let current: Failure | null | undefined = failure; current; current = current.cause) {
    if (!own && current.applicationFailureInfo) own = current;
    innermost = current;
  }
  const timeout = failure.timeoutFailureInfo ?? innermost.timeoutFailureInfo;
  const summary: FailureSummary = { message: failure.message ?? '' };
  const info = own?.applicationFailureInfo;
  if (info?.type) summary.type = info.type;
  if (info?.nonRetryable) summary.nonRetryable = true;
  const details = firstPayload(info?.details);
  if (details !== undefined) summary.details = details;
  if (timeout) summary.timeoutType = temporal.api.enums.v1.TimeoutType[timeout.timeoutType ?? 0]?.replace(/^TIMEOUT_TYPE_/, '');
  if (innermost !== failure && innermost.message && innermost.message !== failure.message) summary.rootCause = innermost.message;
  return summary;
}

/** The marker a workflow task records for each local activity that ended (the SDK's core writes it). */
const LOCAL_ACTIVITY_MARKER = 'core_local_activity';

/** The marker's `data` detail: the SDK core's LocalActivityMarkerData as JSON, field names as the proto spells them. */
interface LocalActivityMarkerData {
  attempt?: number;
  activity_id?: string;
  activity_type?: string;
  complete_time?: Timestamp;
  original_schedule_time?: Timestamp;
}

/** Sticky queues carry a per-worker name; people know the queue by its normal name. */
function queueName(queue: temporal.api.taskqueue.v1.ITaskQueue | null | undefined): string {
  return queue?.normalName || queue?.name || '';
}

const CLOSED_STATUS: Partial<Record<number, string>> = {
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED]: 'completed',
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED]: 'failed',
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT]: 'timedOut',
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED]: 'canceled',
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED]: 'terminated',
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW]: 'continuedAsNew',
};

const CHILD_CLOSED_STATUS: Partial<Record<number, string>> = {
  [EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED]: 'completed',
  [EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED]: 'failed',
  [EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED]: 'canceled',
  [EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT]: 'timedOut',
  [EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED]: 'terminated',
};

function workflowClosed(event: HistoryEvent, base: { eventId: number; timeMs: number }, status: string): HistoryEventSummary {
  const failure =
    event.workflowExecutionFailedEventAttributes?.failure ?? event.workflowExecutionContinuedAsNewEventAttributes?.failure ?? undefined;
  return {
    kind: 'workflowClosed',
    ...base,
    status,
    failure: failureSummary(failure),
    result: firstPayload(event.workflowExecutionCompletedEventAttributes?.result),
    newRunId: event.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId || undefined,
  };
}

function childClosed(event: HistoryEvent, base: { eventId: number; timeMs: number }, status: string, initiated: Map<number, { workflowId: string; workflowType: string }>): HistoryEventSummary {
  const attributes =
    event.childWorkflowExecutionCompletedEventAttributes ??
    event.childWorkflowExecutionFailedEventAttributes ??
    event.childWorkflowExecutionCanceledEventAttributes ??
    event.childWorkflowExecutionTimedOutEventAttributes ??
    event.childWorkflowExecutionTerminatedEventAttributes;
  const initiatedEventId = Number(attributes?.initiatedEventId ?? 0);
  return {
    kind: 'childWorkflowClosed',
    ...base,
    workflowId: attributes?.workflowExecution?.workflowId ?? initiated.get(initiatedEventId)?.workflowId ?? '',
    workflowType: attributes?.workflowType?.name ?? initiated.get(initiatedEventId)?.workflowType ?? '',
    initiatedEventId,
    runId: attributes?.workflowExecution?.runId ?? undefined,
    status,
    failure: failureSummary(event.childWorkflowExecutionFailedEventAttributes?.failure),
  };
}

export function summarizeHistory(events: HistoryEvent[]): HistoryEventSummary[] {
  const summaries: HistoryEventSummary[] = [];
  const updateNames = new Map<string, string>();
  const children = new Map<number, { workflowId: string; workflowType: string }>();
  for (const event of events) {
    const eventId = Number(event.eventId ?? 0);
    const base = { eventId, timeMs: timeMs(event) };
    const type = event.eventType ?? 0;
    const closedStatus = CLOSED_STATUS[type];
    const childStatus = CHILD_CLOSED_STATUS[type];
    if (type === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED) {
      const attributes = event.workflowExecutionStartedEventAttributes;
      summaries.push({
        kind: 'workflowStarted',
        ...base,
        workflowType: attributes?.workflowType?.name ?? undefined,
        taskQueue: queueName(attributes?.taskQueue) || undefined,
        input: firstPayload(attributes?.input),
        parentWorkflowId: attributes?.parentWorkflowExecution?.workflowId || undefined,
      });
    } else if (closedStatus) summaries.push(workflowClosed(event, base, closedStatus));
    else if (type === EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED) {
      const attributes = event.workflowTaskScheduledEventAttributes;
      summaries.push({ kind: 'workflowTaskScheduled', ...base, taskQueue: queueName(attributes?.taskQueue), attempt: attributes?.attempt ?? 1 });
    } else if (type === EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED) {
      summaries.push({ kind: 'workflowTaskStarted', ...base, scheduledEventId: Number(event.workflowTaskStartedEventAttributes?.scheduledEventId ?? 0) });
    } else if (type === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) {
      summaries.push({ kind: 'workflowTaskClosed', ...base, status: 'completed', scheduledEventId: Number(event.workflowTaskCompletedEventAttributes?.scheduledEventId ?? 0) });
    } else if (type === EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED) {
      const attributes = event.workflowTaskFailedEventAttributes;
      summaries.push({ kind: 'workflowTaskClosed', ...base, status: 'failed', scheduledEventId: Number(attributes?.scheduledEventId ?? 0), failure: failureSummary(attributes?.failure) });
    } else if (type === EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT) {
      summaries.push({ kind: 'workflowTaskClosed', ...base, status: 'timedOut', scheduledEventId: Number(event.workflowTaskTimedOutEventAttributes?.scheduledEventId ?? 0) });
    } else if (type === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) {
      const attributes = event.activityTaskScheduledEventAttributes!;
      summaries.push({
        kind: 'activityScheduled',
        ...base,
        activityId: attributes.activityId ?? '',
        activityType: attributes.activityType?.name ?? '',
        taskQueue: queueName(attributes.taskQueue) || undefined,
        input: firstPayload(attributes.input),
        heartbeatTimeoutMs: durationMs(attributes.heartbeatTimeout),
        startToCloseTimeoutMs: durationMs(attributes.startToCloseTimeout),
        maximumAttempts: attributes.retryPolicy?.maximumAttempts || undefined,
      });
    } else if (type === EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED) {
      const attributes = event.activityTaskStartedEventAttributes!;
      summaries.push({
        kind: 'activityStarted',
        ...base,
        scheduledEventId: Number(attributes.scheduledEventId ?? 0),
        attempt: attributes.attempt ?? 1,
        lastFailure: failureSummary(attributes.lastFailure),
      });
    } else if (type === EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) {
      const attributes = event.activityTaskCompletedEventAttributes!;
      summaries.push({ kind: 'activityClosed', ...base, status: 'completed', scheduledEventId: Number(attributes.scheduledEventId ?? 0), result: firstPayload(attributes.result) });
    } else if (type === EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED) {
      const attributes = event.activityTaskFailedEventAttributes!;
      summaries.push({
        kind: 'activityClosed',
        ...base,
        status: 'failed',
        scheduledEventId: Number(attributes.scheduledEventId ?? 0),
        failure: failureSummary(attributes.failure),
        retryState: retryStateName(attributes.retryState),
      });
    } else if (type === EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT) {
      const attributes = event.activityTaskTimedOutEventAttributes!;
      summaries.push({
        kind: 'activityClosed',
        ...base,
        status: 'timedOut',
        scheduledEventId: Number(attributes.scheduledEventId ?? 0),
        failure: failureSummary(attributes.failure),
        retryState: retryStateName(attributes.retryState),
      });
    } else if (type === EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED) {
      summaries.push({ kind: 'activityClosed', ...base, status: 'canceled', scheduledEventId: Number(event.activityTaskCanceledEventAttributes!.scheduledEventId ?? 0) });
    } else if (type === EventType.EVENT_TYPE_MARKER_RECORDED && event.markerRecordedEventAttributes?.markerName === LOCAL_ACTIVITY_MARKER) {
      const attributes = event.markerRecordedEventAttributes;
      const data = firstPayload(attributes.details?.data) as LocalActivityMarkerData | undefined;
      summaries.push({
        kind: 'localActivity',
        ...base,
        activityId: String(data?.activity_id ?? ''),
        activityType: String(data?.activity_type ?? ''),
        attempt: Number(data?.attempt ?? 1),
        originalScheduleMs: timestampMs(data?.original_schedule_time),
        completedMs: timestampMs(data?.complete_time),
        result: firstPayload(attributes.details?.result),
        failure: failureSummary(attributes.failure),
      });
    } else if (type === EventType.EVENT_TYPE_TIMER_STARTED) {
      const attributes = event.timerStartedEventAttributes;
      const summary = decodePayload(event.userMetadata?.summary);
      summaries.push({
        kind: 'timerStarted',
        ...base,
        timerId: attributes?.timerId ?? '',
        durationMs: durationMs(attributes?.startToFireTimeout),
        ...(typeof summary === 'string' ? { summary } : {}),
      });
    } else if (type === EventType.EVENT_TYPE_TIMER_FIRED) {
      summaries.push({ kind: 'timerFired', ...base, timerId: event.timerFiredEventAttributes?.timerId ?? '' });
    } else if (type === EventType.EVENT_TYPE_TIMER_CANCELED) {
      summaries.push({ kind: 'timerCanceled', ...base, timerId: event.timerCanceledEventAttributes?.timerId ?? '' });
    } else if (type === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) {
      const attributes = event.workflowExecutionSignaledEventAttributes;
      summaries.push({ kind: 'signal', ...base, name: attributes?.signalName ?? '', input: firstPayload(attributes?.input) });
    } else if (type === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) {
      const request = event.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest;
      const name = request?.input?.name ?? '';
      const updateId = request?.meta?.updateId ?? undefined;
      if (updateId) updateNames.set(updateId, name);
      summaries.push({ kind: 'update', ...base, name, updateId, input: firstPayload(request?.input?.args) });
    } else if (type === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED) {
      const attributes = event.workflowExecutionUpdateCompletedEventAttributes;
      const updateId = attributes?.meta?.updateId ?? undefined;
      summaries.push({
        kind: 'updateCompleted',
        ...base,
        name: (updateId && updateNames.get(updateId)) || '',
        updateId,
        failure: failureSummary(attributes?.outcome?.failure),
        result: firstPayload(attributes?.outcome?.success),
      });
    } else if (type === EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED) {
      const attributes = event.startChildWorkflowExecutionInitiatedEventAttributes;
      const child = { workflowId: attributes?.workflowId ?? '', workflowType: attributes?.workflowType?.name ?? '' };
      children.set(eventId, child);
      summaries.push({ kind: 'childWorkflowInitiated', ...base, ...child, taskQueue: queueName(attributes?.taskQueue) || undefined });
    } else if (type === EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED) {
      const attributes = event.startChildWorkflowExecutionFailedEventAttributes;
      const initiatedEventId = Number(attributes?.initiatedEventId ?? 0);
      summaries.push({
        kind: 'childWorkflowClosed',
        ...base,
        workflowId: attributes?.workflowId ?? children.get(initiatedEventId)?.workflowId ?? '',
        workflowType: attributes?.workflowType?.name ?? children.get(initiatedEventId)?.workflowType ?? '',
        initiatedEventId,
        status: 'startFailed',
      });
    } else if (type === EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED) {
      const attributes = event.childWorkflowExecutionStartedEventAttributes;
      summaries.push({
        kind: 'childWorkflowStarted',
        ...base,
        workflowId: attributes?.workflowExecution?.workflowId ?? '',
        workflowType: attributes?.workflowType?.name ?? '',
        initiatedEventId: Number(attributes?.initiatedEventId ?? 0),
        runId: attributes?.workflowExecution?.runId ?? undefined,
      });
    } else if (childStatus) summaries.push(childClosed(event, base, childStatus, children));
    else if (type === EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES) {
      const fields = event.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields ?? {};
      const attributes: Record<string, unknown> = {};
      for (const [key, payload] of Object.entries(fields)) attributes[key] = decodePayload(payload);
      summaries.push({ kind: 'searchAttributesUpserted', ...base, attributes });
    }
  }
  return summaries;
}

const PendingState = temporal.api.enums.v1.PendingActivityState;

/** A running workflow's pending activities (from DescribeWorkflowExecution): history shows a start only once an attempt ends. */
export function summarizePendingActivities(pending: temporal.api.workflow.v1.IPendingActivityInfo[]): PendingActivitySummary[] {
  return pending.map((activity) => ({
    activityId: activity.activityId ?? '',
    activityType: activity.activityType?.name ?? '',
    state:
      activity.state === PendingState.PENDING_ACTIVITY_STATE_STARTED
        ? 'started'
        : activity.state === PendingState.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED
          ? 'cancelRequested'
          : 'scheduled',
    attempt: activity.attempt ?? 1,
    maximumAttempts: activity.maximumAttempts || undefined,
    scheduledMs: timestampMs(activity.scheduledTime),
    lastStartedMs: timestampMs(activity.lastStartedTime),
    lastHeartbeatMs: timestampMs(activity.lastHeartbeatTime),
    lastAttemptCompleteMs: timestampMs(activity.lastAttemptCompleteTime),
    nextAttemptScheduleMs: timestampMs(activity.nextAttemptScheduleTime),
    lastFailure: failureSummary(activity.lastFailure),
    heartbeatDetails: firstPayload(activity.heartbeatDetails),
    lastWorkerIdentity: activity.lastWorkerIdentity || undefined,
  }));
}

/** Children deeper than this, or more than this many per workflow, are not fetched: an analysis stays quick. */
const MAX_CHILD_DEPTH = 3;
const MAX_CHILDREN = 50;

/** A workflow's latest run: its history summaries, pending activities and Web UI link, and its children's. */
async function loadWorkflowHistory(client: Client, config: FerryConfig, workflowId: string, runId?: string, depth = 0): Promise<WorkflowHistory> {
  let description;
  try {
    description = await client.workflow.getHandle(workflowId, runId).describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new CommandError(`no workflow ${workflowId}${runId ? ` (run ${runId})` : ''} in namespace ${config.temporal.namespace}`);
    throw err;
  }
  const history = await client.workflow.getHandle(workflowId, description.runId).fetchHistory();
  const events = summarizeHistory(history.events ?? []);
  const loaded: WorkflowHistory = {
    workflowId,
    runId: description.runId,
    workflowType: description.type,
    events,
    pendingActivities: summarizePendingActivities(description.raw.pendingActivities ?? []),
    nowMs: Date.now(),
    webUiUrl: workflowUiUrl(config, workflowId, description.runId),
  };
  if (depth < MAX_CHILD_DEPTH) {
    const started = events.flatMap((e) => (e.kind === 'childWorkflowStarted' ? [{ workflowId: e.workflowId, runId: e.runId }] : [])).slice(0, MAX_CHILDREN);
    loaded.children = await Promise.all(started.map((child) => loadWorkflowHistory(client, config, child.workflowId, child.runId, depth + 1)));
  }
  return loaded;
}

/** What `ferry timeline` (table, JSON and page) and `ferry explain` show: one analysis of the workflow and its children. */
export async function analyseWorkflow(client: Client, config: FerryConfig, workflowId: string, gapThresholdMs: number): Promise<HistoryAnalysis> {
  return analyseHistory(await loadWorkflowHistory(client, config, workflowId), { gapThresholdMs });
}
