/**
 * Problems: the steps that failed or needed retries, updates answered with a
 * failure, failed child workflows and workflow tasks, each with its typed
 * failure and the session it ran against.
 */
import type { FailureSummary, WorkflowHistory } from './events';
import { isFailedStatus, sessionOf, type SessionRef, type StepRecord } from './steps';
import { failureText, iso, short } from './values';

export interface Problem {
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

function sessionText(ref: SessionRef | undefined): string {
  if (!ref || (!ref.sessionId && !ref.bootId)) return '';
  const where = [ref.target, ref.sessionId ? `session ${ref.sessionId}` : undefined].filter(Boolean).join(' ');
  return ` on ${where || 'the target'}${ref.bootId ? ` (boot ${short(ref.bootId)})` : ''}`;
}

function stepProblem(step: StepRecord): Problem | undefined {
  const failed = isFailedStatus(step.status);
  const open = step.closedMs === undefined;
  if (!failed && step.attempts <= 1) return undefined;
  const outcome: Problem['outcome'] = failed ? (step.status as 'failed' | 'timedOut' | 'canceled') : open ? 'retrying' : 'retried';
  const session = sessionOf(step);
  const attempts = `${step.attempts} attempt${step.attempts === 1 ? '' : 's'}`;
  let summary: string;
  if (failed) {
    const why = step.failure?.nonRetryable
      ? ', not retryable'
      : step.retryState === 'maximumAttemptsReached'
        ? ', retries exhausted'
        : step.retryState === 'timeout'
          ? ', out of time'
          : '';
    summary = `${step.name} ${step.status} after ${attempts}${why}${sessionText(session)}: ${failureText(step.failure)}`;
  } else {
    summary = `${step.name} ${open ? 'is on attempt' : 'succeeded on attempt'} ${step.attempts}${sessionText(session)}; attempt ${step.attempts - 1} failed with ${failureText(step.lastRetryFailure)}`;
  }
  return {
    workflowId: step.workflowId,
    kind: 'activity',
    name: step.name,
    outcome,
    attempts: step.attempts,
    at: iso(step.closedMs ?? step.startedMs ?? step.scheduledMs),
    failure: step.failure,
    lastRetryFailure: step.lastRetryFailure,
    retryState: step.retryState,
    session,
    summary,
  };
}

export function findProblems(history: WorkflowHistory, steps: StepRecord[]): Problem[] {
  const problems = steps.flatMap((step) => stepProblem(step) ?? []);
  const workflowId = history.workflowId;
  for (const event of history.events) {
    if (event.kind === 'updateCompleted' && event.failure) {
      problems.push({
        workflowId,
        kind: 'update',
        name: event.name,
        outcome: 'refused',
        attempts: 1,
        at: iso(event.timeMs),
        failure: event.failure,
        summary: `update ${event.name || event.updateId} answered with a failure: ${failureText(event.failure)}`,
      });
    } else if (event.kind === 'childWorkflowClosed' && event.status && event.status !== 'completed') {
      problems.push({
        workflowId,
        kind: 'child',
        name: event.workflowType,
        outcome: event.status === 'timedOut' ? 'timedOut' : event.status === 'canceled' ? 'canceled' : 'failed',
        attempts: 1,
        at: iso(event.timeMs),
        failure: event.failure,
        summary: `child ${event.workflowType} ${event.workflowId} ${event.status}${event.failure ? `: ${failureText(event.failure)}` : ''}`,
      });
    } else if (event.kind === 'workflowTaskClosed' && event.status !== 'completed') {
      problems.push({
        workflowId,
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
  return problems.sort((a, b) => a.at.localeCompare(b.at));
}
