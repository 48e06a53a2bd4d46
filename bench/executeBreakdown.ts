/**
 * Where the time of one `execute` update goes, from the pipeline's history:
 * each update's events (workflow tasks, activities, the update's completion)
 * are points in time, and the time between consecutive points is a segment
 * named by its two ends (e.g. "checkSession started → checkSession
 * completed"). Together with the client's own send and receive times the
 * segments add up to the round trip. Client and server run on this machine,
 * so their clocks agree.
 */
import { temporal } from '@temporalio/proto';
import { median } from './stats';

const EventType = temporal.api.enums.v1.EventType;
export type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** One timed execute, as the client saw it. */
export interface ExecuteSample {
  updateId: string;
  /** Date.now() before the update was sent and once its result was in. */
  sentAtMs: number;
  resultAtMs: number;
  /** The command's run time inside the agent (ExecuteResult.durationMs). */
  agentCommandMs: number;
}

/** One named segment's time per update, over all samples. */
export interface Segment {
  name: string;
  /** How often it occurs in one update (e.g. one workflow task per activity, plus one). */
  perUpdate: number;
  meanMs: number;
  medianMs: number;
}

const eventMs = (event: HistoryEvent) => Number(event.eventTime?.seconds ?? 0) * 1000 + (event.eventTime?.nanos ?? 0) / 1e6;

/** The point an event marks, or undefined for events that mark none (update accepted, activity scheduled, markers). */
function pointName(event: HistoryEvent, activityNames: Map<string, string>): string | undefined {
  const activity = (scheduledEventId: unknown) => activityNames.get(String(scheduledEventId)) ?? 'activity';
  switch (event.eventType) {
    case EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
      return 'workflow task scheduled';
    case EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
      return 'workflow task started';
    case EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
      return 'workflow task completed';
    case EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
      return 'workflow task failed';
    case EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT:
      return 'workflow task timed out';
    case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
      return `${activity(event.activityTaskStartedEventAttributes?.scheduledEventId)} started`;
    case EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
      return `${activity(event.activityTaskCompletedEventAttributes?.scheduledEventId)} completed`;
    case EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
      return `${activity(event.activityTaskFailedEventAttributes?.scheduledEventId)} failed`;
    case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
      return 'update completed';
    default:
      return undefined;
  }
}

/** Where each update's events are: the run (continue-as-new starts a new one) and the indices of its accepted and completed events. */
interface UpdateEvents {
  run: HistoryEvent[];
  accepted: number;
  completed: number;
  activityNames: Map<string, string>;
}

function findUpdates(runs: HistoryEvent[][]): Map<string, UpdateEvents> {
  const found = new Map<string, UpdateEvents>();
  for (const run of runs) {
    // Event ids restart in every run: activity names are looked up within the run.
    const activityNames = new Map<string, string>();
    const accepted = new Map<string, number>();
    run.forEach((event, index) => {
      if (event.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) activityNames.set(String(event.eventId), event.activityTaskScheduledEventAttributes?.activityType?.name ?? 'activity');
      const acceptedId = event.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.meta?.updateId;
      if (acceptedId) accepted.set(acceptedId, index);
      const completedId = event.workflowExecutionUpdateCompletedEventAttributes?.meta?.updateId;
      const acceptedAt = completedId ? accepted.get(completedId) : undefined;
      if (completedId && acceptedAt !== undefined) found.set(completedId, { run, accepted: acceptedAt, completed: index, activityNames });
    });
  }
  return found;
}

/**
 * Each sample's segments, in order: [name, ms][]. `runs` are the histories
 * of every run of the workflow (a long session continues as new). Throws
 * when an update is not accepted and completed within one of them.
 */
export function updateSegments(runs: HistoryEvent[][], samples: ExecuteSample[]): [string, number][][] {
  const updates = findUpdates(runs);
  return samples.map((sample) => {
    const update = updates.get(sample.updateId);
    if (!update) throw new Error(`update ${sample.updateId} is not accepted and completed in the history`);
    const { run, accepted, completed, activityNames } = update;
    // The update arrives in the workflow task that accepts it: its points start at that task's scheduling.
    let first = accepted;
    while (first > 0 && run[first].eventType !== EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED) first--;
    const points: [string, number][] = [['update sent', sample.sentAtMs]];
    for (const event of run.slice(first, completed + 1)) {
      const name = pointName(event, activityNames);
      if (name) points.push([name, eventMs(event)]);
    }
    points.push(['result at client', sample.resultAtMs]);
    return points.slice(1).map(([name, at], i): [string, number] => [`${points[i][0]} → ${name}`, at - points[i][1]]);
  });
}

/**
 * Per segment name, in the order they first occur: the time one update
 * spends in it (summed when it occurs more than once), mean and median over
 * the samples. The means add up to the mean round trip.
 */
export function summarizeSegments(perSample: [string, number][][]): Segment[] {
  const names: string[] = [];
  const totals = perSample.map((segments) => {
    const total = new Map<string, { ms: number; count: number }>();
    for (const [name, ms] of segments) {
      if (!names.includes(name)) names.push(name);
      const entry = total.get(name) ?? { ms: 0, count: 0 };
      total.set(name, { ms: entry.ms + ms, count: entry.count + 1 });
    }
    return total;
  });
  return names.map((name) => {
    const values = totals.map((total) => total.get(name)?.ms ?? 0);
    const counts = totals.map((total) => total.get(name)?.count ?? 0);
    return {
      name,
      perUpdate: counts.reduce((a, b) => a + b, 0) / totals.length,
      meanMs: values.reduce((a, b) => a + b, 0) / values.length,
      medianMs: median([...values].sort((a, b) => a - b)),
    };
  });
}
