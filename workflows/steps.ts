/**
 * What every ferry workflow shares about its steps: retry and timeout
 * profiles by kind of work, and how an activity's failure becomes the
 * workflow's (step named, the activity's type and details kept).
 */
import { ActivityFailure, ApplicationFailure, type ActivityOptions, type LocalActivityOptions } from '@temporalio/workflow';
import type { RetryPolicy } from '@temporalio/common';

export const retry: RetryPolicy = { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' };

/** Reads and hashes a source: long for big trees, so it heartbeats. */
export const snapshotStep: ActivityOptions = { startToCloseTimeout: '1h', heartbeatTimeout: '30s', retry: { ...retry, maximumAttempts: 5 } };
/** Moves bytes (upload, land, collect); transient network faults are common, so more attempts. */
export const transferStep: ActivityOptions = { startToCloseTimeout: '4h', heartbeatTimeout: '30s', retry: { ...retry, maximumAttempts: 10 } };
/** Session control and cheap checks (provision, check, release): quick, a few attempts. Provisioning an ECS task can take minutes, so it heartbeats. */
export const sessionStep: ActivityOptions = { startToCloseTimeout: '15m', heartbeatTimeout: '60s', retry: { ...retry, maximumAttempts: 5 } };
/**
 * A check before every execution, run as a local activity in the workflow's
 * own worker: no task-queue round trip, no workflow task of its own, its
 * result still in history (a marker). A boot id and a listing of sizes, so
 * two minutes is ample; a few attempts, as sessionStep.
 */
export const cheapCheckStep: LocalActivityOptions = { startToCloseTimeout: '2m', retry: { ...retry, maximumAttempts: 5 } };
/**
 * Running code: code runs once per execution id (the target reports the
 * first run on a retry), so retries only cover transport. The activity
 * heartbeats at every probe (1–5 s, the target's follow pace), so a lost
 * worker shows as a heartbeat timeout after 30 s and another takes over.
 */
export const executeStep: ActivityOptions = { startToCloseTimeout: '25h', heartbeatTimeout: '30s', retry: { ...retry, maximumAttempts: 5 } };
/**
 * One short step on a process (start, confirm, probe, stop); over SSM,
 * delivery alone can take tens of seconds, during which the channel
 * heartbeats, so 30 s without one means the worker is gone.
 */
export const processStep: ActivityOptions = { startToCloseTimeout: '6m', heartbeatTimeout: '30s', retry: { ...retry, maximumAttempts: 10 } };
/** Re-hashing on the target; a mismatch rarely heals by itself, so few attempts before it surfaces. */
export const verifyStep: ActivityOptions = { startToCloseTimeout: '1h', heartbeatTimeout: '30s', retry: { ...retry, initialInterval: '2s', maximumAttempts: 3 } };

/** The ApplicationFailure type of an activity's (or the workflow's own) failure. */
export function failureType(err: unknown): string | undefined {
  if (err instanceof ApplicationFailure) return err.type ?? undefined;
  if (err instanceof ActivityFailure && err.cause instanceof ApplicationFailure) return err.cause.type ?? undefined;
  return undefined;
}

/** Fails the workflow with the step named and the activity's own failure type and details kept. */
export function stepFailure(step: string, err: unknown): unknown {
  if (!(err instanceof ActivityFailure) || !(err.cause instanceof ApplicationFailure)) return err;
  const cause = err.cause;
  return ApplicationFailure.create({
    type: cause.type ?? 'StepFailed',
    message: `${step} failed: ${cause.message}`,
    details: cause.details ? [...cause.details] : undefined,
    nonRetryable: true,
    cause: err,
  });
}
