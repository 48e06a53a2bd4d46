/**
 * Gaps: every stretch of a workflow's life attributed to one cause, and the
 * stretches longer than a threshold reported. Each step, workflow task,
 * timer and child workflow claims the time it covers; where several
 * overlap, the one that explains the wait best wins; time nothing claims is
 * the workflow waiting for an update or signal.
 */
import { formatDurationMs } from '../duration';
import { AGENT_WAIT_TIMER_SUMMARY } from '../pipeline';
import type { WorkflowHistory } from './events';
import { messageEnding } from './messages';
import type { StepRecord } from './steps';
import { clock, failureText, iso, numberField } from './values';

/** What the workflow was doing during a stretch of time. */
export type GapCause =
  /** Nothing pending (no activity, timer or child): the workflow awaited an update or signal from the agent. */
  | 'waiting-for-agent'
  /** A task (workflow or activity) was scheduled but no worker started it: no worker polled the queue. */
  | 'waiting-for-worker'
  /** Earlier attempts of an activity failed; it waited out backoff between attempts. */
  | 'retry-backoff'
  /** The workflow slept on a durable timer. */
  | 'durable-timer'
  /** An activity was running (and heartbeating, when it has a heartbeat timeout). */
  | 'slow-activity'
  /** A child workflow was running; its own analysis breaks the time down. */
  | 'child-workflow'
  /** A worker was processing a workflow task. */
  | 'workflow-task';

export interface Gap {
  workflowId: string;
  from: string;
  to: string;
  durationMs: number;
  cause: GapCause;
  /** The task queue nobody polled (waiting-for-worker). */
  taskQueue?: string;
  activityType?: string;
  timerId?: string;
  childWorkflowId?: string;
  /** The update or signal that ended a wait for the agent. */
  endedBy?: string;
  /** True when the stretch lasts until now (the workflow is still in it). */
  ongoing?: boolean;
  detail: string;
}

interface Stretch {
  fromMs: number;
  toMs: number;
  cause: GapCause;
  /** Stretches with the same key merge when adjacent. */
  key: string;
  describe: (fromMs: number, toMs: number, ongoing: boolean) => Omit<Gap, 'workflowId' | 'from' | 'to' | 'durationMs' | 'cause' | 'ongoing'>;
}

/** When several things are pending at once, the one that explains the wait best wins. */
const CAUSE_PRIORITY: Record<GapCause, number> = {
  'waiting-for-worker': 7,
  'retry-backoff': 6,
  'slow-activity': 5,
  'child-workflow': 4,
  'durable-timer': 3,
  'workflow-task': 2,
  'waiting-for-agent': 1,
};

export const noWorker = (queue: string | undefined) => `no worker polling queue ${queue ?? '(unknown)'}`;

function progressText(details: unknown): string {
  const filesDone = numberField(details, 'filesDone');
  const filesTotal = numberField(details, 'filesTotal');
  const bytesDone = numberField(details, 'bytesDone');
  const bytesTotal = numberField(details, 'bytesTotal');
  if (filesDone === undefined && bytesDone === undefined) return '';
  const parts = [];
  if (filesDone !== undefined) parts.push(`${filesDone}${filesTotal !== undefined ? `/${filesTotal}` : ''} files`);
  if (bytesDone !== undefined) parts.push(`${bytesDone}${bytesTotal !== undefined ? `/${bytesTotal}` : ''} bytes`);
  return `; progress ${parts.join(', ')}`;
}

function stepStretches(step: StepRecord, endMs: number): Stretch[] {
  const name = step.name;
  const key = `activity:${step.scheduledEventId}`;
  const closedOrEnd = step.closedMs ?? endMs;
  const waitForWorker = (fromMs: number, toMs: number): Stretch => ({
    fromMs,
    toMs,
    cause: 'waiting-for-worker',
    key: `${key}:queue`,
    describe: (from, to, ongoing) => ({
      taskQueue: step.taskQueue,
      activityType: name,
      detail: `${noWorker(step.taskQueue)} (or every worker busy): ${name} ${ongoing ? 'has waited' : 'waited'} ${formatDurationMs(to - from)} to be picked up`,
    }),
  });
  const retrying = (fromMs: number, toMs: number, backoffOnly: boolean): Stretch => ({
    fromMs,
    toMs,
    cause: 'retry-backoff',
    key: `${key}:${backoffOnly ? 'backoff' : 'retry'}`,
    describe: () => ({
      activityType: name,
      detail: backoffOnly
        ? `${name} attempt ${step.attempts} failed (${failureText(step.lastRetryFailure)}); backing off before attempt ${step.attempts + 1}`
        : `${name}: attempt${step.attempts > 2 ? `s 1–${step.attempts - 1}` : ' 1'} failed and ${step.attempts > 2 ? 'were' : 'was'} retried with backoff (last failure: ${failureText(step.lastRetryFailure)})`,
    }),
  });
  const running = (fromMs: number, toMs: number): Stretch => ({
    fromMs,
    toMs,
    cause: 'slow-activity',
    key: `${key}:run`,
    describe: (from, to, ongoing) => {
      const heartbeat =
        step.lastHeartbeatMs !== undefined
          ? `, heartbeating (last heartbeat ${formatDurationMs(Math.max(0, endMs - step.lastHeartbeatMs))} ago${progressText(step.heartbeatDetails)})`
          : step.heartbeatTimeoutMs
            ? `, heartbeating (heartbeat timeout ${formatDurationMs(step.heartbeatTimeoutMs)})`
            : '';
      return {
        activityType: name,
        detail: `${name} attempt ${Math.max(step.attempts, 1)} ${ongoing ? 'has been running' : 'ran'} for ${formatDurationMs(to - from)}${heartbeat}`,
      };
    },
  });

  if (step.startedMs !== undefined) {
    return [step.attempts > 1 ? retrying(step.scheduledMs, step.startedMs, false) : waitForWorker(step.scheduledMs, step.startedMs), running(step.startedMs, closedOrEnd)];
  }
  if (step.attempts > 1 && step.lastAttemptCompleteMs !== undefined) {
    // Pending, between attempts: the earlier attempts, then backoff, then (once due) queueing for a worker.
    const due = Math.min(step.nextAttemptScheduleMs ?? closedOrEnd, closedOrEnd);
    const stretches = [retrying(step.scheduledMs, step.lastAttemptCompleteMs, false), retrying(step.lastAttemptCompleteMs, due, true)];
    if (due < closedOrEnd) stretches.push(waitForWorker(due, closedOrEnd));
    return stretches;
  }
  // Never started: it waited for a worker until it closed (schedule-to-start timeout, cancel) or until now.
  return [waitForWorker(step.scheduledMs, closedOrEnd)];
}

function workflowStretches(history: WorkflowHistory, steps: StepRecord[], endMs: number): Stretch[] {
  const stretches: Stretch[] = steps.flatMap((step) => stepStretches(step, endMs));
  const workflowTasks = new Map<number, { scheduledMs: number; taskQueue: string; startedMs?: number; closedMs?: number }>();
  const timers = new Map<string, { startedMs: number; durationMs?: number; closedMs?: number; summary?: string }>();
  const children = new Map<string, { fromMs: number; workflowType: string; closedMs?: number }>();
  for (const event of history.events) {
    if (event.kind === 'workflowTaskScheduled') workflowTasks.set(event.eventId, { scheduledMs: event.timeMs, taskQueue: event.taskQueue });
    else if (event.kind === 'workflowTaskStarted') {
      const task = workflowTasks.get(event.scheduledEventId);
      if (task) task.startedMs = event.timeMs;
    } else if (event.kind === 'workflowTaskClosed') {
      const task = workflowTasks.get(event.scheduledEventId);
      if (task) task.closedMs = event.timeMs;
    } else if (event.kind === 'timerStarted') timers.set(event.timerId, { startedMs: event.timeMs, durationMs: event.durationMs, summary: event.summary });
    else if (event.kind === 'timerFired' || event.kind === 'timerCanceled') {
      const timer = timers.get(event.timerId);
      if (timer) timer.closedMs = event.timeMs;
    } else if (event.kind === 'childWorkflowInitiated') children.set(event.workflowId, { fromMs: event.timeMs, workflowType: event.workflowType });
    else if (event.kind === 'childWorkflowClosed') {
      const child = children.get(event.workflowId);
      if (child) child.closedMs = event.timeMs;
    }
  }
  for (const [id, task] of workflowTasks) {
    stretches.push({
      fromMs: task.scheduledMs,
      toMs: task.startedMs ?? task.closedMs ?? endMs,
      cause: 'waiting-for-worker',
      key: `workflowTask:${id}:queue`,
      describe: (from, to, ongoing) => ({
        taskQueue: task.taskQueue,
        detail: `${noWorker(task.taskQueue)}: a workflow task ${ongoing ? 'has waited' : 'waited'} ${formatDurationMs(to - from)} for a worker${task.startedMs === undefined ? '' : ' (start one, or check its task queue name)'}`,
      }),
    });
    if (task.startedMs !== undefined) {
      stretches.push({
        fromMs: task.startedMs,
        toMs: task.closedMs ?? endMs,
        cause: 'workflow-task',
        key: `workflowTask:${id}:run`,
        describe: (from, to) => ({ detail: `a worker spent ${formatDurationMs(to - from)} on one workflow task` }),
      });
    }
  }
  for (const [timerId, timer] of timers) {
    // A stage's idle timeout runs while the workflow awaits the agent: that time is the agent's, not a sleep.
    if (timer.summary === AGENT_WAIT_TIMER_SUMMARY) continue;
    stretches.push({
      fromMs: timer.startedMs,
      toMs: timer.closedMs ?? endMs,
      cause: 'durable-timer',
      key: `timer:${timerId}`,
      describe: () => ({
        timerId,
        detail: `durable timer ${timerId}${timer.durationMs !== undefined ? ` (${formatDurationMs(timer.durationMs)})` : ''}: the workflow slept on purpose`,
      }),
    });
  }
  for (const [childWorkflowId, child] of children) {
    stretches.push({
      fromMs: child.fromMs,
      toMs: child.closedMs ?? endMs,
      cause: 'child-workflow',
      key: `child:${childWorkflowId}`,
      describe: () => ({ childWorkflowId, detail: `child ${child.workflowType} ${childWorkflowId} was running (its own gaps are listed with it)` }),
    });
  }
  return stretches;
}

/** The workflow's life from `startMs` to `endMs` cut into stretches of one cause; those longer than `thresholdMs` are the gaps. */
export function findGaps(history: WorkflowHistory, steps: StepRecord[], span: { startMs: number; endMs: number; open: boolean }, thresholdMs: number): Gap[] {
  const { startMs, endMs, open } = span;
  const stretches = workflowStretches(history, steps, endMs).filter((s) => s.toMs > s.fromMs);
  const bounds = [...new Set([startMs, endMs, ...stretches.flatMap((s) => [s.fromMs, s.toMs])])].filter((t) => t >= startMs && t <= endMs).sort((a, b) => a - b);
  const pieces: { fromMs: number; toMs: number; stretch?: Stretch }[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const fromMs = bounds[i];
    const toMs = bounds[i + 1];
    let best: Stretch | undefined;
    for (const stretch of stretches) {
      if (stretch.fromMs <= fromMs && stretch.toMs >= toMs && (!best || CAUSE_PRIORITY[stretch.cause] > CAUSE_PRIORITY[best.cause])) best = stretch;
    }
    const last = pieces[pieces.length - 1];
    if (last && last.toMs === fromMs && (last.stretch?.key ?? 'idle') === (best?.key ?? 'idle')) last.toMs = toMs;
    else pieces.push({ fromMs, toMs, stretch: best });
  }
  const gaps: Gap[] = [];
  for (const piece of pieces) {
    const durationMs = piece.toMs - piece.fromMs;
    if (durationMs <= thresholdMs) continue;
    const ongoing = open && piece.toMs === endMs;
    const base = { workflowId: history.workflowId, from: iso(piece.fromMs), to: iso(piece.toMs), durationMs };
    if (piece.stretch) {
      gaps.push({ ...base, cause: piece.stretch.cause, ...(ongoing ? { ongoing } : {}), ...piece.stretch.describe(piece.fromMs, piece.toMs, ongoing) });
      continue;
    }
    const endedBy = ongoing ? undefined : messageEnding(history.events, piece.fromMs, piece.toMs);
    gaps.push({
      ...base,
      cause: 'waiting-for-agent',
      ...(ongoing ? { ongoing } : {}),
      ...(endedBy ? { endedBy } : {}),
      detail: ongoing
        ? `waiting for the agent: no activity, timer or child pending for ${formatDurationMs(durationMs)} so far; the workflow awaits an update or signal`
        : `waiting for the agent: no activity, timer or child pending for ${formatDurationMs(durationMs)}; the workflow awaited an update or signal${endedBy ? ` until ${endedBy} arrived at ${clock(piece.toMs)}` : ''}`,
    });
  }
  return gaps;
}
