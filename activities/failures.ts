/**
 * Retryability is decided where an error is thrown: these helpers make the
 * decision explicit and put the offending values into the failure details,
 * where they show up in history and in `ferry timeline`.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { FailureTypeName } from '../core/errors';

/** Bad input or a state retrying cannot fix. */
export function nonRetryable(type: FailureTypeName, message: string, details?: Record<string, unknown>): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true, details: details ? [details] : undefined });
}

/** A fault the next attempt may not meet. */
export function retryable(type: FailureTypeName, message: string, details?: Record<string, unknown>): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: false, details: details ? [details] : undefined });
}
