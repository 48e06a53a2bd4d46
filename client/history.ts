/** Maps Temporal's history events to the small shapes core/timeline analyses. */
import { temporal } from '@temporalio/proto';
import type { FailureSummary, HistoryEventSummary } from '../core/timeline';

const EventType = temporal.api.enums.v1.EventType;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

function timeMs(event: HistoryEvent): number {
  const time = event.eventTime;
  return Number(time?.seconds ?? 0) * 1000 + Math.floor((time?.nanos ?? 0) / 1e6);
}

function failureSummary(failure: temporal.api.failure.v1.IFailure | null | undefined): FailureSummary | undefined {
  if (!failure) return undefined;
  // Activity failures reach the workflow wrapped; the cause holds the activity's own type.
  const own = failure.applicationFailureInfo ? failure : (failure.cause ?? failure);
  return { message: failure.message ?? '', type: own.applicationFailureInfo?.type ?? undefined };
}

const CLOSED_STATUS: Partial<Record<number, string>> = {
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED]: 'completed',
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED]: 'failed',
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT]: 'timedOut',
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED]: 'canceled',
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED]: 'terminated',
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW]: 'continuedAsNew',
};

export function summarizeHistory(events: HistoryEvent[]): HistoryEventSummary[] {
  const summaries: HistoryEventSummary[] = [];
  for (const event of events) {
    const eventId = Number(event.eventId ?? 0);
    const base = { eventId, timeMs: timeMs(event) };
    const type = event.eventType ?? 0;
    const closedStatus = CLOSED_STATUS[type];
    if (type === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED) summaries.push({ kind: 'workflowStarted', ...base });
    else if (closedStatus) {
      summaries.push({ kind: 'workflowClosed', ...base, status: closedStatus, failure: failureSummary(event.workflowExecutionFailedEventAttributes?.failure) });
    } else if (type === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) {
      const attributes = event.activityTaskScheduledEventAttributes!;
      summaries.push({ kind: 'activityScheduled', ...base, activityId: attributes.activityId ?? '', activityType: attributes.activityType?.name ?? '' });
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
      summaries.push({ kind: 'activityClosed', ...base, status: 'completed', scheduledEventId: Number(event.activityTaskCompletedEventAttributes!.scheduledEventId ?? 0) });
    } else if (type === EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED) {
      const attributes = event.activityTaskFailedEventAttributes!;
      summaries.push({ kind: 'activityClosed', ...base, status: 'failed', scheduledEventId: Number(attributes.scheduledEventId ?? 0), failure: failureSummary(attributes.failure) });
    } else if (type === EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT) {
      const attributes = event.activityTaskTimedOutEventAttributes!;
      summaries.push({ kind: 'activityClosed', ...base, status: 'timedOut', scheduledEventId: Number(attributes.scheduledEventId ?? 0), failure: failureSummary(attributes.failure) });
    } else if (type === EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED) {
      summaries.push({ kind: 'activityClosed', ...base, status: 'canceled', scheduledEventId: Number(event.activityTaskCanceledEventAttributes!.scheduledEventId ?? 0) });
    } else if (type === EventType.EVENT_TYPE_TIMER_STARTED) {
      summaries.push({ kind: 'timerStarted', ...base, timerId: event.timerStartedEventAttributes?.timerId ?? '' });
    } else if (type === EventType.EVENT_TYPE_TIMER_FIRED) {
      summaries.push({ kind: 'timerFired', ...base, timerId: event.timerFiredEventAttributes?.timerId ?? '' });
    } else if (type === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) {
      summaries.push({ kind: 'signal', ...base, name: event.workflowExecutionSignaledEventAttributes?.signalName ?? '' });
    } else if (type === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) {
      summaries.push({ kind: 'update', ...base, name: event.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name ?? '' });
    }
  }
  return summaries;
}
