/**
 * Diagnosis: what a workflow's history says happened, in the terms people
 * ask about after an incident. Every failed or retried step with its typed
 * failure; every stretch longer than a threshold attributed to its cause;
 * the session's story (provisioned, landed, verified, restarted, re-landed,
 * executed, released); and one line that sums it up.
 *
 * Pure: the client maps Temporal's history (and, for a running workflow, its
 * pending activities) to summaries and calls {@link diagnose}. Child
 * workflows (a pipeline's syncs) are diagnosed with their parent, so the
 * session story spans both.
 *
 * What history can and cannot tell: Temporal records an activity's last
 * attempt only (ActivityTaskStarted carries the attempt number and the
 * previous attempt's failure), so earlier attempts and their backoff form one
 * stretch; heartbeats are not in history, only in a running workflow's
 * pending-activity info.
 */
import { formatDurationMs } from './duration';
import { AGENT_WAIT_TIMER_SUMMARY } from './pipeline';
import type { FailureSummary, HistoryEventSummary, StepStatus } from './timeline';

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

export interface DiagnosisInput {
  workflowId: string;
  runId?: string;
  workflowType?: string;
  events: HistoryEventSummary[];
  pendingActivities?: PendingActivitySummary[];
  /** The time "now" stands for while the workflow is still running. */
  nowMs: number;
  webUiUrl?: string;
  /** Child workflows (their own histories), diagnosed with this one. */
  children?: DiagnosisInput[];
}

export interface DiagnosisOptions {
  /** Stretches shorter than this are not reported as gaps. */
  gapThresholdMs: number;
}

/** What the workflow was doing during a stretch of time. */
export type WaitCause =
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
  /** A child workflow was running; its own diagnosis breaks the time down. */
  | 'child-workflow'
  /** A worker was processing a workflow task. */
  | 'workflow-task';

export interface DiagnosedGap {
  workflowId: string;
  from: string;
  to: string;
  durationMs: number;
  cause: WaitCause;
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

/** The session an activity ran against, as far as its input, result and failure say. */
export interface SessionRef {
  sessionId?: string;
  target?: string;
  bootId?: string;
  dest?: string;
  manifestDigest?: string;
}

export interface ActivityRun {
  workflowId: string;
  activityId: string;
  activityType: string;
  taskQueue?: string;
  status: StepStatus;
  attempts: number;
  maximumAttempts?: number;
  scheduledAt: string;
  /** Start of the last (or current) attempt. */
  startedAt?: string;
  closedAt?: string;
  /** End of the previous attempt, for an activity waiting out its backoff. */
  lastAttemptEndedAt?: string;
  lastHeartbeatAt?: string;
  heartbeatTimeoutMs?: number;
  failure?: FailureSummary;
  lastRetryFailure?: FailureSummary;
  retryState?: string;
  session?: SessionRef;
}

export interface ProblemStep {
  workflowId: string;
  kind: 'activity' | 'update' | 'child' | 'workflowTask';
  name: string;
  /** failed / timedOut / canceled: the final outcome; retried: succeeded after retries; retrying: still at it; refused: an update answered with a failure. */
  outcome: 'failed' | 'timedOut' | 'canceled' | 'retried' | 'retrying' | 'refused';
  attempts: number;
  at: string;
  failure?: FailureSummary;
  /** The failure that made the last retry necessary. */
  lastRetryFailure?: FailureSummary;
  retryState?: string;
  session?: SessionRef;
  summary: string;
}

export type SessionEventKind =
  | 'provisioned'
  | 'checked'
  | 'restart-detected'
  | 'landed'
  | 're-landed'
  | 'land-failed'
  | 'verified'
  | 'verification-failed'
  | 'stage'
  | 'executed'
  | 'execution-failed'
  | 'execution-refused'
  | 'artifacts-collected'
  | 'process-started'
  | 'process-confirmed'
  | 'released';

export interface SessionEvent {
  at: string;
  workflowId: string;
  kind: SessionEventKind;
  sessionId?: string;
  bootId?: string;
  manifestDigest?: string;
  dest?: string;
  stage?: string;
  detail: string;
}

/** A signal or update the workflow received, for the timeline picture. */
export interface MessageMark {
  at: string;
  kind: 'signal' | 'update';
  name: string;
  failed?: boolean;
}

export interface Diagnosis {
  workflowId: string;
  runId?: string;
  workflowType: string;
  status: string;
  startedAt?: string;
  closedAt?: string;
  /** Start to close, or to now while running. */
  durationMs?: number;
  webUiUrl?: string;
  failure?: FailureSummary;
  /** One line summing up the whole tree (this workflow and its children). */
  verdict: string;
  gapThresholdMs: number;
  steps: ProblemStep[];
  gaps: DiagnosedGap[];
  /** The session's story across this workflow and its children, in time order (on the root only). */
  session: SessionEvent[];
  activities: ActivityRun[];
  messages: MessageMark[];
  children: Diagnosis[];
}

const iso = (ms: number) => new Date(ms).toISOString();
/** `06:36:02` (UTC): verdicts compare times within one run. */
const clock = (ms: number) => iso(ms).slice(11, 19);
const short = (id: string | undefined) => (id ? id.slice(0, 12) : '?');

function field(value: unknown, key: string): unknown {
  return value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
}
function stringField(value: unknown, key: string): string | undefined {
  const found = field(value, key);
  return typeof found === 'string' && found !== '' ? found : undefined;
}
function numberField(value: unknown, key: string): number | undefined {
  const found = field(value, key);
  return typeof found === 'number' ? found : undefined;
}
function stringList(value: unknown, key: string): string[] {
  const found = field(value, key);
  if (!Array.isArray(found)) return [];
  return found.map((item) => (typeof item === 'string' ? item : (stringField(item, 'path') ?? JSON.stringify(item))));
}

export function failureText(failure: FailureSummary | undefined): string {
  if (!failure) return 'unknown failure';
  const kind = failure.type ?? (failure.timeoutType ? `${failure.timeoutType} timeout` : undefined);
  return `${kind ? `${kind}: ` : ''}${failure.message}`;
}

/** The paths a failure's details name (missing, short, mismatched), for one-line summaries. */
export function failurePaths(failure: FailureSummary | undefined): { missing: string[]; short: string[]; mismatched: string[] } {
  const details = failure?.details;
  return { missing: stringList(details, 'missing'), short: stringList(details, 'short'), mismatched: stringList(details, 'mismatched') };
}

// ---------------------------------------------------------------------------
// Activities from history (plus pending info)

interface RunState {
  scheduledEventId: number;
  activityId: string;
  activityType: string;
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

function activityRuns(events: HistoryEventSummary[], pending: PendingActivitySummary[]): RunState[] {
  const runs = new Map<number, RunState>();
  for (const event of events) {
    if (event.kind === 'activityScheduled') {
      runs.set(event.eventId, {
        scheduledEventId: event.eventId,
        activityId: event.activityId,
        activityType: event.activityType,
        taskQueue: event.taskQueue,
        input: event.input,
        heartbeatTimeoutMs: event.heartbeatTimeoutMs,
        maximumAttempts: event.maximumAttempts,
        scheduledMs: event.timeMs,
        attempts: 0,
        status: 'scheduled',
      });
    } else if (event.kind === 'activityStarted') {
      const run = runs.get(event.scheduledEventId);
      if (!run) continue;
      run.startedMs = event.timeMs;
      run.attempts = event.attempt;
      if (run.status === 'scheduled') run.status = 'running';
      if (event.lastFailure) run.lastRetryFailure = event.lastFailure;
    } else if (event.kind === 'activityClosed') {
      const run = runs.get(event.scheduledEventId);
      if (!run) continue;
      run.status = event.status;
      run.closedMs = event.timeMs;
      run.failure = event.failure;
      run.result = event.result;
      run.retryState = event.retryState;
      run.attempts = Math.max(run.attempts, 1);
    }
  }
  const byActivityId = new Map([...runs.values()].filter((r) => r.closedMs === undefined).map((r) => [r.activityId, r]));
  for (const info of pending) {
    const run = byActivityId.get(info.activityId);
    if (!run) continue;
    run.attempts = info.attempt;
    run.maximumAttempts = info.maximumAttempts ?? run.maximumAttempts;
    run.status = info.state === 'scheduled' ? 'scheduled' : 'running';
    run.startedMs = info.state === 'scheduled' ? undefined : (info.lastStartedMs ?? run.startedMs);
    run.lastHeartbeatMs = info.lastHeartbeatMs;
    run.lastAttemptCompleteMs = info.lastAttemptCompleteMs;
    run.nextAttemptScheduleMs = info.nextAttemptScheduleMs;
    run.heartbeatDetails = info.heartbeatDetails;
    if (info.lastFailure) run.lastRetryFailure = info.lastFailure;
  }
  return [...runs.values()].sort((a, b) => a.scheduledMs - b.scheduledMs || a.scheduledEventId - b.scheduledEventId);
}

/** The session an activity ran against: from its input (`sessionId` or a `session` handle), result and failure details. */
function sessionOf(run: RunState): SessionRef {
  const handle = field(run.input, 'session');
  const target = field(run.input, 'target') ?? field(handle, 'target');
  const failureBoot = stringField(run.failure?.details, 'bootId');
  const ref: SessionRef = {
    sessionId: stringField(run.input, 'sessionId') ?? stringField(handle, 'sessionId') ?? stringField(run.result, 'sessionId'),
    target: typeof target === 'string' ? target : stringField(target, 'kind'),
    bootId: stringField(run.result, 'bootId') ?? failureBoot ?? stringField(run.input, 'expectedBootId') ?? stringField(handle, 'bootId'),
    dest: stringField(run.input, 'dest'),
    manifestDigest: stringField(run.input, 'manifestDigest') ?? stringField(run.result, 'manifestDigest'),
  };
  for (const key of Object.keys(ref) as (keyof SessionRef)[]) if (ref[key] === undefined) delete ref[key];
  return ref;
}

function sessionText(ref: SessionRef | undefined): string {
  if (!ref || (!ref.sessionId && !ref.bootId)) return '';
  const where = [ref.target, ref.sessionId ? `session ${ref.sessionId}` : undefined].filter(Boolean).join(' ');
  return ` on ${where || 'the target'}${ref.bootId ? ` (boot ${short(ref.bootId)})` : ''}`;
}

// ---------------------------------------------------------------------------
// Failed and retried steps

function activityStep(workflowId: string, run: RunState): ProblemStep | undefined {
  const failed = run.status === 'failed' || run.status === 'timedOut' || run.status === 'canceled';
  const open = run.closedMs === undefined;
  if (!failed && run.attempts <= 1) return undefined;
  const outcome: ProblemStep['outcome'] = failed ? (run.status as 'failed' | 'timedOut' | 'canceled') : open ? 'retrying' : 'retried';
  const session = sessionOf(run);
  const attempts = `${run.attempts} attempt${run.attempts === 1 ? '' : 's'}`;
  let summary: string;
  if (failed) {
    const why = run.failure?.nonRetryable
      ? ', not retryable'
      : run.retryState === 'maximumAttemptsReached'
        ? ', retries exhausted'
        : run.retryState === 'timeout'
          ? ', out of time'
          : '';
    summary = `${run.activityType} ${run.status} after ${attempts}${why}${sessionText(session)}: ${failureText(run.failure)}`;
  } else {
    summary = `${run.activityType} ${open ? 'is on attempt' : 'succeeded on attempt'} ${run.attempts}${sessionText(session)}; attempt ${run.attempts - 1} failed with ${failureText(run.lastRetryFailure)}`;
  }
  return {
    workflowId,
    kind: 'activity',
    name: run.activityType,
    outcome,
    attempts: run.attempts,
    at: iso(run.closedMs ?? run.startedMs ?? run.scheduledMs),
    failure: run.failure,
    lastRetryFailure: run.lastRetryFailure,
    retryState: run.retryState,
    session,
    summary,
  };
}

function problemSteps(input: DiagnosisInput, runs: RunState[]): ProblemStep[] {
  const steps: ProblemStep[] = [];
  for (const run of runs) {
    const step = activityStep(input.workflowId, run);
    if (step) steps.push(step);
  }
  for (const event of input.events) {
    if (event.kind === 'updateCompleted' && event.failure) {
      steps.push({
        workflowId: input.workflowId,
        kind: 'update',
        name: event.name,
        outcome: 'refused',
        attempts: 1,
        at: iso(event.timeMs),
        failure: event.failure,
        summary: `update ${event.name || event.updateId} answered with a failure: ${failureText(event.failure)}`,
      });
    } else if (event.kind === 'childWorkflowClosed' && event.status && event.status !== 'completed') {
      steps.push({
        workflowId: input.workflowId,
        kind: 'child',
        name: event.workflowType,
        outcome: event.status === 'timedOut' ? 'timedOut' : event.status === 'canceled' ? 'canceled' : 'failed',
        attempts: 1,
        at: iso(event.timeMs),
        failure: event.failure,
        summary: `child ${event.workflowType} ${event.workflowId} ${event.status}${event.failure ? `: ${failureText(event.failure)}` : ''}`,
      });
    } else if (event.kind === 'workflowTaskClosed' && event.status !== 'completed') {
      steps.push({
        workflowId: input.workflowId,
        kind: 'workflowTask',
        name: 'workflow task',
        outcome: event.status === 'timedOut' ? 'timedOut' : 'failed',
        attempts: 1,
        at: iso(event.timeMs),
        failure: event.failure,
        summary:
          event.status === 'timedOut'
            ? 'a workflow task timed out (a worker took it and did not answer in time: crashed or blocked)'
            : `a workflow task failed (the workflow code threw or is non-deterministic): ${failureText(event.failure)}`,
      });
    }
  }
  return steps.sort((a, b) => a.at.localeCompare(b.at));
}

// ---------------------------------------------------------------------------
// Gaps: every stretch of the workflow's life attributed to one cause

interface Stretch {
  fromMs: number;
  toMs: number;
  cause: WaitCause;
  /** Stretches with the same key merge when adjacent. */
  key: string;
  describe: (fromMs: number, toMs: number, ongoing: boolean) => Omit<DiagnosedGap, 'workflowId' | 'from' | 'to' | 'durationMs' | 'cause' | 'ongoing'>;
}

/** When several things are pending at once, the one that explains the wait best wins. */
const CAUSE_PRIORITY: Record<WaitCause, number> = {
  'waiting-for-worker': 7,
  'retry-backoff': 6,
  'slow-activity': 5,
  'child-workflow': 4,
  'durable-timer': 3,
  'workflow-task': 2,
  'waiting-for-agent': 1,
};

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

const noWorker = (queue: string | undefined) => `no worker polling queue ${queue ?? '(unknown)'}`;

function activityStretches(run: RunState, endMs: number): Stretch[] {
  const stretches: Stretch[] = [];
  const name = run.activityType;
  const key = `activity:${run.scheduledEventId}`;
  const closedOrEnd = run.closedMs ?? endMs;
  const waitForWorker = (fromMs: number, toMs: number): Stretch => ({
    fromMs,
    toMs,
    cause: 'waiting-for-worker',
    key: `${key}:queue`,
    describe: (from, to, ongoing) => ({
      taskQueue: run.taskQueue,
      activityType: name,
      detail: `${noWorker(run.taskQueue)} (or every worker busy): ${name} ${ongoing ? 'has waited' : 'waited'} ${formatDurationMs(to - from)} to be picked up`,
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
        ? `${name} attempt ${run.attempts} failed (${failureText(run.lastRetryFailure)}); backing off before attempt ${run.attempts + 1}`
        : `${name}: attempt${run.attempts > 2 ? `s 1–${run.attempts - 1}` : ' 1'} failed and ${run.attempts > 2 ? 'were' : 'was'} retried with backoff (last failure: ${failureText(run.lastRetryFailure)})`,
    }),
  });
  const running = (fromMs: number, toMs: number): Stretch => ({
    fromMs,
    toMs,
    cause: 'slow-activity',
    key: `${key}:run`,
    describe: (from, to, ongoing) => {
      const heartbeat =
        run.lastHeartbeatMs !== undefined
          ? `, heartbeating (last heartbeat ${formatDurationMs(Math.max(0, endMs - run.lastHeartbeatMs))} ago${progressText(run.heartbeatDetails)})`
          : run.heartbeatTimeoutMs
            ? `, heartbeating (heartbeat timeout ${formatDurationMs(run.heartbeatTimeoutMs)})`
            : '';
      return {
        activityType: name,
        detail: `${name} attempt ${Math.max(run.attempts, 1)} ${ongoing ? 'has been running' : 'ran'} for ${formatDurationMs(to - from)}${heartbeat}`,
      };
    },
  });

  if (run.startedMs !== undefined) {
    if (run.attempts > 1) stretches.push(retrying(run.scheduledMs, run.startedMs, false));
    else stretches.push(waitForWorker(run.scheduledMs, run.startedMs));
    stretches.push(running(run.startedMs, closedOrEnd));
  } else if (run.attempts > 1 && run.lastAttemptCompleteMs !== undefined) {
    // Pending, between attempts: the earlier attempts, then backoff, then (once due) queueing for a worker.
    stretches.push(retrying(run.scheduledMs, run.lastAttemptCompleteMs, false));
    const due = Math.min(run.nextAttemptScheduleMs ?? closedOrEnd, closedOrEnd);
    stretches.push(retrying(run.lastAttemptCompleteMs, due, true));
    if (due < closedOrEnd) stretches.push(waitForWorker(due, closedOrEnd));
  } else {
    // Never started: it waited for a worker until it closed (schedule-to-start timeout, cancel) or until now.
    stretches.push(waitForWorker(run.scheduledMs, closedOrEnd));
  }
  return stretches;
}

function workflowStretches(input: DiagnosisInput, runs: RunState[], endMs: number): Stretch[] {
  const stretches: Stretch[] = runs.flatMap((run) => activityStretches(run, endMs));
  const workflowTasks = new Map<number, { scheduledMs: number; taskQueue: string; startedMs?: number; closedMs?: number }>();
  const timers = new Map<string, { startedMs: number; durationMs?: number; closedMs?: number; summary?: string }>();
  const children = new Map<string, { fromMs: number; workflowType: string; closedMs?: number }>();
  for (const event of input.events) {
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
    const startedOrEnd = task.startedMs ?? task.closedMs ?? endMs;
    stretches.push({
      fromMs: task.scheduledMs,
      toMs: startedOrEnd,
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

/** The signal or update that ended a wait at `toMs` (an update is accepted a few ms after its workflow task is scheduled). */
function messageEnding(events: HistoryEventSummary[], fromMs: number, toMs: number): string | undefined {
  const messages = events.filter((e) => (e.kind === 'signal' || e.kind === 'update') && e.timeMs >= fromMs);
  const ending = messages.find((e) => e.timeMs >= toMs - 1 && e.timeMs <= toMs + 10_000) ?? messages.filter((e) => e.timeMs <= toMs).pop();
  return ending && (ending.kind === 'signal' || ending.kind === 'update') ? `${ending.kind} ${ending.name}` : undefined;
}

function diagnoseGaps(input: DiagnosisInput, runs: RunState[], startMs: number, endMs: number, open: boolean, thresholdMs: number): DiagnosedGap[] {
  const stretches = workflowStretches(input, runs, endMs).filter((s) => s.toMs > s.fromMs);
  const bounds = [...new Set([startMs, endMs, ...stretches.flatMap((s) => [s.fromMs, s.toMs])])]
    .filter((t) => t >= startMs && t <= endMs)
    .sort((a, b) => a - b);
  type Piece = { fromMs: number; toMs: number; stretch?: Stretch };
  const pieces: Piece[] = [];
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
  const gaps: DiagnosedGap[] = [];
  for (const piece of pieces) {
    const durationMs = piece.toMs - piece.fromMs;
    if (durationMs <= thresholdMs) continue;
    const ongoing = open && piece.toMs === endMs;
    const base = { workflowId: input.workflowId, from: iso(piece.fromMs), to: iso(piece.toMs), durationMs };
    if (piece.stretch) {
      gaps.push({ ...base, cause: piece.stretch.cause, ...(ongoing ? { ongoing } : {}), ...piece.stretch.describe(piece.fromMs, piece.toMs, ongoing) });
      continue;
    }
    const endedBy = ongoing ? undefined : messageEnding(input.events, piece.fromMs, piece.toMs);
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

// ---------------------------------------------------------------------------
// The session's story, across the workflow tree

type Role = 'provision' | 'check' | 'land' | 'verify' | 'execute' | 'collect' | 'release' | 'processStart' | 'processConfirm';

/** Activity names of the sync, pipeline and training workflows, by what they do to a session. */
const ROLES: Record<string, Role> = {
  provisionSession: 'provision',
  checkSession: 'check',
  landManifest: 'land',
  landArchive: 'land',
  verifyLanding: 'verify',
  verifyInstanceLanding: 'verify',
  executeCode: 'execute',
  collectArtifacts: 'collect',
  releaseSession: 'release',
  startProcess: 'processStart',
  confirmProcess: 'processConfirm',
};

type Fact =
  | { timeMs: number; workflowId: string; kind: 'activity'; run: RunState }
  | { timeMs: number; workflowId: string; kind: 'stage'; stage: string }
  | { timeMs: number; workflowId: string; kind: 'refused'; name: string; failure: FailureSummary };

function collectFacts(input: DiagnosisInput, runsOf: Map<DiagnosisInput, RunState[]>): Fact[] {
  const facts: Fact[] = [];
  for (const run of runsOf.get(input) ?? []) {
    if (ROLES[run.activityType] && run.closedMs !== undefined) facts.push({ timeMs: run.closedMs, workflowId: input.workflowId, kind: 'activity', run });
  }
  for (const event of input.events) {
    if (event.kind === 'searchAttributesUpserted') {
      const stage = event.attributes.FerryStage;
      const value = Array.isArray(stage) ? stage[0] : stage;
      if (typeof value === 'string' && value) facts.push({ timeMs: event.timeMs, workflowId: input.workflowId, kind: 'stage', stage: value });
    } else if (event.kind === 'updateCompleted' && event.failure && event.name === 'execute') {
      facts.push({ timeMs: event.timeMs, workflowId: input.workflowId, kind: 'refused', name: event.name, failure: event.failure });
    }
  }
  for (const child of input.children ?? []) facts.push(...collectFacts(child, runsOf));
  return facts;
}

interface StoryResult {
  events: SessionEvent[];
  /** Executions that ran on a boot whose inputs were never verified. */
  unverifiedExecutions: SessionEvent[];
  /** Executions on a boot other than the first one seen, with inputs verified again on that boot. */
  executionsAfterRestart: { execution: SessionEvent; verifiedAtMs: number; relanded: boolean }[];
}

function sessionStory(facts: Fact[]): StoryResult {
  const events: SessionEvent[] = [];
  const unverifiedExecutions: SessionEvent[] = [];
  const executionsAfterRestart: StoryResult['executionsAfterRestart'] = [];
  const boots = new Map<string, string>();
  const firstBoot = new Map<string, string>();
  /** Boot each manifest (session|dest|digest) was last landed on, and whether that landing was a repeat. */
  const landed = new Map<string, { bootId?: string; again: boolean }>();
  const verified = new Map<string, { bootId?: string; atMs: number; relanded: boolean; manifestDigest?: string }[]>();
  let stage: string | undefined;

  const push = (fact: Fact, kind: SessionEventKind, ref: SessionRef & { stage?: string }, detail: string) => {
    const { target: _target, ...where } = ref;
    const event: SessionEvent = { at: iso(fact.timeMs), workflowId: fact.workflowId, kind, ...(stage ? { stage } : {}), ...where, detail };
    events.push(event);
    return event;
  };
  /** Records a boot id seen for a session; a different one than before is a restart. */
  const seeBoot = (fact: Fact, ref: SessionRef, bootId: string | undefined, seenBy: string) => {
    if (!bootId) return;
    const session = ref.sessionId ?? '';
    const known = boots.get(session);
    if (!firstBoot.has(session)) firstBoot.set(session, bootId);
    if (known && known !== bootId) {
      push(fact, 'restart-detected', { ...ref, bootId }, `session ${session || '?'} restarted: boot ${short(known)} → ${short(bootId)} (seen by ${seenBy}); its inputs must be landed and verified again`);
    }
    boots.set(session, bootId);
  };

  for (const fact of facts.sort((a, b) => a.timeMs - b.timeMs)) {
    if (fact.kind === 'stage') {
      if (fact.stage !== stage) {
        stage = fact.stage;
        push(fact, 'stage', {}, `stage ${fact.stage} began`);
      }
      continue;
    }
    if (fact.kind === 'refused') {
      const { missing } = failurePaths(fact.failure);
      push(fact, 'execution-refused', {}, `execution refused${stage ? ` in stage ${stage}` : ''}: ${failureText(fact.failure)}${missing.length ? ` (missing: ${missing.join(', ')})` : ''}`);
      continue;
    }
    const run = fact.run;
    const ref = sessionOf(run);
    const session = ref.sessionId ?? '';
    const ok = run.status === 'completed';
    const restart = run.failure?.type === 'TargetRestarted';
    if (restart) {
      const details = run.failure?.details;
      seeBoot(fact, ref, stringField(details, 'expectedBootId') ?? stringField(details, 'bootId'), run.activityType);
      seeBoot(fact, ref, stringField(details, 'newBootId') ?? stringField(details, 'bootId'), run.activityType);
    }
    const key = `${session}|${ref.dest ?? ''}|${ref.manifestDigest ?? ''}`;
    switch (ROLES[run.activityType]) {
      case 'provision':
        if (!ok) break;
        push(fact, 'provisioned', ref, `session ${session || '?'} provisioned${ref.target ? ` on ${ref.target}` : ''} (boot ${short(ref.bootId)}${stringField(run.result, 'agentUrl') ? `, agent ${stringField(run.result, 'agentUrl')}` : ''})`);
        seeBoot(fact, ref, ref.bootId, run.activityType);
        break;
      case 'check': {
        if (!ok) break;
        const before = boots.get(session);
        seeBoot(fact, ref, ref.bootId, run.activityType);
        const gone = stringList(run.result, 'missing');
        if (!before || before === ref.bootId || gone.length) {
          push(fact, 'checked', ref, `session ${session || '?'} checked on boot ${short(ref.bootId)}${gone.length ? `: inputs gone (${gone.join(', ')})` : before === ref.bootId ? ': same boot' : ''}`);
        }
        break;
      }
      case 'land': {
        if (!ok) {
          if (!restart) push(fact, 'land-failed', ref, `${run.activityType} failed after ${run.attempts} attempt(s): ${failureText(run.failure)}`);
          break;
        }
        seeBoot(fact, ref, ref.bootId, run.activityType);
        const previous = landed.get(key);
        landed.set(key, { bootId: ref.bootId, again: previous !== undefined });
        const filesLanded = numberField(run.result, 'filesLanded');
        const present = numberField(run.result, 'filesAlreadyPresent');
        const counts = filesLanded !== undefined ? `: ${filesLanded} files fetched${present !== undefined ? `, ${present} already there` : ''}` : '';
        const why = !previous
          ? ''
          : previous.bootId && ref.bootId && previous.bootId !== ref.bootId
            ? ` (the session restarted: boot ${short(previous.bootId)} → ${short(ref.bootId)})`
            : ' (same boot: the earlier landing no longer held)';
        push(fact, previous ? 're-landed' : 'landed', ref, `${previous ? 're-landed' : 'landed'} manifest ${short(ref.manifestDigest)} into ${session || '?'}:${ref.dest ?? '?'} on boot ${short(ref.bootId)}${counts}${why}`);
        break;
      }
      case 'verify': {
        if (!ok) {
          if (restart) break;
          const { missing, short: shortFiles, mismatched } = failurePaths(run.failure);
          const named = [
            missing.length ? `missing: ${missing.join(', ')}` : '',
            shortFiles.length ? `short: ${shortFiles.join(', ')}` : '',
            mismatched.length ? `different bytes: ${mismatched.join(', ')}` : '',
          ].filter(Boolean);
          push(fact, 'verification-failed', ref, `verification of manifest ${short(ref.manifestDigest)} failed after ${run.attempts} attempt(s)${named.length ? ` — ${named.join('; ')}` : `: ${failureText(run.failure)}`}`);
          break;
        }
        seeBoot(fact, ref, ref.bootId, run.activityType);
        const list = verified.get(session) ?? [];
        list.push({ bootId: ref.bootId, atMs: fact.timeMs, relanded: landed.get(key)?.again ?? false, manifestDigest: ref.manifestDigest });
        verified.set(session, list);
        const files = numberField(run.result, 'filesVerified');
        push(fact, 'verified', ref, `verified manifest ${short(ref.manifestDigest)} in ${session || '?'}:${ref.dest ?? '?'} on boot ${short(ref.bootId)}${files !== undefined ? `: ${files} files re-hashed on the target` : ''}`);
        break;
      }
      case 'execute': {
        const bootId = ref.bootId ?? boots.get(session);
        if (ref.bootId) seeBoot(fact, ref, ref.bootId, run.activityType);
        const stageName = stringField(run.input, 'stage') ?? stage;
        const proof = [...(verified.get(session) ?? [])].reverse().find((v) => v.bootId === bootId && v.atMs <= fact.timeMs);
        const exitCode = numberField(run.result, 'exitCode');
        const outcome = ok ? (exitCode !== undefined ? `exit ${exitCode}` : 'completed') : `failed: ${failureText(run.failure)}`;
        const detail = `${stageName ? `${stageName} ` : ''}executed on boot ${short(bootId)} (${outcome}); ${proof ? `inputs verified on this boot at ${clock(proof.atMs)}` : '⚠ no input was verified on this boot before it ran'}`;
        const event = push(fact, ok ? 'executed' : 'execution-failed', { ...ref, ...(bootId ? { bootId } : {}), ...(stageName ? { stage: stageName } : {}) }, detail);
        if (!proof) unverifiedExecutions.push(event);
        else if (bootId && firstBoot.get(session) !== bootId) executionsAfterRestart.push({ execution: event, verifiedAtMs: proof.atMs, relanded: proof.relanded });
        break;
      }
      case 'collect':
        if (ok) push(fact, 'artifacts-collected', ref, `artifacts collected${stringField(run.result, 'manifestDigest') ? ` as manifest ${short(stringField(run.result, 'manifestDigest'))}` : ''}${numberField(run.result, 'filesTotal') !== undefined ? ` (${numberField(run.result, 'filesTotal')} files)` : ''}`);
        break;
      case 'processStart':
        if (ok) push(fact, 'process-started', ref, `process started${numberField(run.result, 'pid') !== undefined ? ` (pid ${numberField(run.result, 'pid')})` : ''}`);
        break;
      case 'processConfirm':
        if (ok) push(fact, 'process-confirmed', ref, 'process confirmed alive');
        break;
      case 'release':
        if (ok) push(fact, 'released', ref, `session ${session || '?'} released`);
        break;
      default:
        break;
    }
  }
  return { events, unverifiedExecutions, executionsAfterRestart };
}

// ---------------------------------------------------------------------------
// Putting it together

interface Analysed {
  diagnosis: Omit<Diagnosis, 'verdict' | 'session' | 'children'> & { children: Analysed[] };
  input: DiagnosisInput;
}

function analyse(input: DiagnosisInput, options: DiagnosisOptions, runsOf: Map<DiagnosisInput, RunState[]>): Analysed {
  const runs = activityRuns(input.events, input.pendingActivities ?? []);
  runsOf.set(input, runs);
  const started = input.events.find((e) => e.kind === 'workflowStarted');
  const closed = input.events.find((e) => e.kind === 'workflowClosed');
  const startMs = started?.timeMs ?? input.events[0]?.timeMs ?? input.nowMs;
  const open = !closed;
  const endMs = closed?.timeMs ?? Math.max(input.nowMs, startMs);
  const workflowType = input.workflowType ?? (started?.kind === 'workflowStarted' ? started.workflowType : undefined) ?? 'workflow';
  const activities: ActivityRun[] = runs.map((run) => {
    const activity: ActivityRun = {
      workflowId: input.workflowId,
      activityId: run.activityId,
      activityType: run.activityType,
      taskQueue: run.taskQueue,
      status: run.status,
      attempts: Math.max(run.attempts, run.status === 'scheduled' ? 0 : 1),
      maximumAttempts: run.maximumAttempts,
      scheduledAt: iso(run.scheduledMs),
      startedAt: run.startedMs === undefined ? undefined : iso(run.startedMs),
      closedAt: run.closedMs === undefined ? undefined : iso(run.closedMs),
      lastAttemptEndedAt: run.lastAttemptCompleteMs === undefined ? undefined : iso(run.lastAttemptCompleteMs),
      lastHeartbeatAt: run.lastHeartbeatMs === undefined ? undefined : iso(run.lastHeartbeatMs),
      heartbeatTimeoutMs: run.heartbeatTimeoutMs,
      failure: run.failure,
      lastRetryFailure: run.lastRetryFailure,
      retryState: run.retryState,
      session: sessionOf(run),
    };
    for (const key of Object.keys(activity) as (keyof ActivityRun)[]) if (activity[key] === undefined) delete activity[key];
    return activity;
  });
  const completions = new Map(input.events.filter((e) => e.kind === 'updateCompleted').map((e) => [e.kind === 'updateCompleted' ? e.updateId : '', e]));
  const messages: MessageMark[] = input.events.flatMap((event): MessageMark[] => {
    if (event.kind === 'signal') return [{ at: iso(event.timeMs), kind: 'signal', name: event.name }];
    if (event.kind !== 'update') return [];
    const completion = event.updateId ? completions.get(event.updateId) : undefined;
    const failed = completion?.kind === 'updateCompleted' && completion.failure !== undefined;
    return [{ at: iso(event.timeMs), kind: 'update', name: event.name, ...(failed ? { failed } : {}) }];
  });
  return {
    input,
    diagnosis: {
      workflowId: input.workflowId,
      runId: input.runId,
      workflowType,
      status: closed?.kind === 'workflowClosed' ? closed.status : 'running',
      startedAt: iso(startMs),
      closedAt: closed ? iso(closed.timeMs) : undefined,
      durationMs: endMs - startMs,
      webUiUrl: input.webUiUrl,
      failure: closed?.kind === 'workflowClosed' ? closed.failure : undefined,
      gapThresholdMs: options.gapThresholdMs,
      steps: problemSteps(input, runs),
      gaps: diagnoseGaps(input, runs, startMs, endMs, open, options.gapThresholdMs),
      activities,
      messages,
      children: (input.children ?? []).map((child) => analyse(child, options, runsOf)),
    },
  };
}

function flatten(analysed: Analysed): Analysed['diagnosis'][] {
  return [analysed.diagnosis, ...analysed.diagnosis.children.flatMap(flatten)];
}

const CAUSE_PHRASE: Record<WaitCause, string> = {
  'waiting-for-agent': 'waiting for the agent',
  'waiting-for-worker': 'waiting for a worker',
  'retry-backoff': 'retrying',
  'durable-timer': 'on a durable timer',
  'slow-activity': 'in a running activity',
  'child-workflow': 'in a child workflow',
  'workflow-task': 'in a workflow task',
};

function gapPhrase(gap: DiagnosedGap): string {
  if (gap.cause === 'waiting-for-worker') return `${noWorker(gap.taskQueue)}`;
  if (gap.cause === 'waiting-for-agent') return `waiting for the agent${gap.endedBy ? ` (until ${gap.endedBy})` : ''}`;
  if (gap.cause === 'slow-activity' || gap.cause === 'retry-backoff') return `${CAUSE_PHRASE[gap.cause]} (${gap.activityType})`;
  return CAUSE_PHRASE[gap.cause];
}

/** The step whose failure ended the workflow: the last failed activity or refused update in the tree. */
/** The step that failed the workflow: the last failed or timed-out step, else the last refused update (a refusal alone fails nothing). */
function decisiveFailure(all: Analysed['diagnosis'][]): ProblemStep | undefined {
  const byTime = (a: ProblemStep, b: ProblemStep) => a.at.localeCompare(b.at);
  const steps = all.flatMap((d) => d.steps).filter((s) => s.kind !== 'child');
  const failed = steps.filter((s) => s.outcome === 'failed' || s.outcome === 'timedOut').sort(byTime);
  return failed.at(-1) ?? steps.filter((s) => s.outcome === 'refused').sort(byTime).at(-1);
}

/** What the session's story says about executions (or, with none, about the last verification). */
function storyClause(story: StoryResult, includeVerification: boolean): string | undefined {
  const unverified = story.unverifiedExecutions[0];
  const afterRestart = story.executionsAfterRestart[0];
  if (unverified) return `⚠ ${unverified.stage ?? 'code'} executed on boot ${short(unverified.bootId)} without inputs verified on that boot`;
  if (afterRestart) {
    return `${afterRestart.execution.stage ?? 'code'} ran on a restarted session; inputs were ${afterRestart.relanded ? 're-landed and ' : ''}verified at ${clock(afterRestart.verifiedAtMs)} before execution`;
  }
  if (story.events.some((e) => e.kind === 'executed' || e.kind === 'execution-failed')) {
    const reLanded = story.events.filter((e) => e.kind === 're-landed');
    const healed = reLanded.length ? `; inputs that vanished from the session were re-landed ${reLanded.length}× and verified before the next execution (last at ${reLanded.at(-1)!.at.slice(11, 19)})` : '';
    return `every execution ran on inputs verified on the same boot${healed}`;
  }
  return includeVerification ? story.events.filter((e) => e.kind === 'verified').pop()?.detail : undefined;
}

function verdictFor(root: Analysed['diagnosis'], all: Analysed['diagnosis'][], story: StoryResult): string {
  const parts: string[] = [];
  const gaps = all.flatMap((d) => d.gaps).filter((g) => g.cause !== 'child-workflow' && g.cause !== 'workflow-task');
  const longest = [...gaps].sort((a, b) => b.durationMs - a.durationMs)[0];
  const retried = all.flatMap((d) => d.steps).filter((s) => s.outcome === 'retried' || s.outcome === 'retrying');
  const took = root.durationMs !== undefined ? ` ${root.status === 'running' ? 'for' : 'in'} ${formatDurationMs(root.durationMs)}` : '';

  if (root.status === 'running') {
    const now = gaps.filter((g) => g.ongoing).sort((a, b) => b.durationMs - a.durationMs)[0];
    parts.push(`${root.workflowType} running${took}${now ? `; now ${gapPhrase(now)} for ${formatDurationMs(now.durationMs)}: ${now.detail}` : ''}`);
  } else if (root.status !== 'completed' && root.status !== 'continuedAsNew') {
    const step = decisiveFailure(all);
    if (step) {
      let line = `${root.workflowType} ${root.status}: ${step.summary}`;
      const { missing } = failurePaths(step.failure);
      if (step.name.startsWith('verify') && missing.length) {
        const land = all.flatMap((d) => d.activities).filter((a) => a.activityType.startsWith('land') && a.status === 'completed').pop();
        if (land) line += ` — although ${land.activityType} had answered success`;
      }
      parts.push(line);
    } else parts.push(`${root.workflowType} ${root.status}${root.failure ? `: ${failureText(root.failure)}` : ''}`);
  } else parts.push(`${root.workflowType} ${root.status === 'completed' ? 'completed' : 'continued as new'}${took}`);
  const clause = storyClause(story, root.status === 'completed' || root.status === 'continuedAsNew');
  if (clause) parts.push(clause);
  const decisive = root.status === 'running' || root.status === 'completed' || root.status === 'continuedAsNew' ? undefined : decisiveFailure(all);
  const refused = all.flatMap((d) => d.steps).filter((s) => s.outcome === 'refused' && s !== decisive);
  if (refused.length) {
    const { missing } = failurePaths(refused[0].failure);
    parts.push(`${refused[0].name} refused ${refused.length}× (${refused[0].failure?.type ?? 'failure'}${missing.length ? `: missing ${missing.join(', ')}` : ''})`);
  }
  for (const step of retried.slice(0, 3)) parts.push(`${step.name} needed ${step.attempts} attempts (${step.lastRetryFailure?.type ?? 'failure'} before)`);
  if (longest && !(root.status === 'running' && longest.ongoing)) parts.push(`longest gap ${formatDurationMs(longest.durationMs)} ${gapPhrase(longest)}`);
  return parts.join('; ');
}

function finish(analysed: Analysed, story: StoryResult): Diagnosis {
  const { children, ...rest } = analysed.diagnosis;
  const own = flatten(analysed);
  const ids = new Set(own.map((d) => d.workflowId));
  const mine = (event: SessionEvent) => ids.has(event.workflowId);
  const ownStory: StoryResult = {
    events: story.events.filter(mine),
    unverifiedExecutions: story.unverifiedExecutions.filter(mine),
    executionsAfterRestart: story.executionsAfterRestart.filter((e) => mine(e.execution)),
  };
  return {
    ...rest,
    verdict: verdictFor(analysed.diagnosis, own, ownStory),
    session: ownStory.events,
    children: children.map((child) => finish(child, story)),
  };
}

/** Diagnoses a workflow and its children from their history summaries. */
export function diagnose(input: DiagnosisInput, options: DiagnosisOptions): Diagnosis {
  const runsOf = new Map<DiagnosisInput, RunState[]>();
  const analysed = analyse(input, options, runsOf);
  return finish(analysed, sessionStory(collectFacts(input, runsOf)));
}

/** Every gap of a diagnosis tree, parent first. */
export function allGaps(diagnosis: Diagnosis): DiagnosedGap[] {
  return [...diagnosis.gaps, ...diagnosis.children.flatMap(allGaps)];
}

