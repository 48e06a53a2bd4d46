/**
 * Reading decoded payloads (activity inputs, results, failure details) and
 * writing times and ids the way every part of the analysis words them.
 */
import type { FailureSummary } from './events';

export const iso = (ms: number) => new Date(ms).toISOString();
/** `06:36:02` (UTC): verdicts compare times within one run. */
export const clock = (ms: number) => iso(ms).slice(11, 19);
/** Digests and boot ids, shortened for sentences. */
export const short = (id: string | undefined) => (id ? id.slice(0, 12) : '?');

export function field(value: unknown, key: string): unknown {
  return value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
}
export function stringField(value: unknown, key: string): string | undefined {
  const found = field(value, key);
  return typeof found === 'string' && found !== '' ? found : undefined;
}
export function numberField(value: unknown, key: string): number | undefined {
  const found = field(value, key);
  return typeof found === 'number' ? found : undefined;
}
/** A list of names or `{ path }` entries, as paths. */
export function stringList(value: unknown, key: string): string[] {
  const found = field(value, key);
  if (!Array.isArray(found)) return [];
  return found.map((item) => (typeof item === 'string' ? item : (stringField(item, 'path') ?? JSON.stringify(item))));
}

/** Drops the keys whose value is undefined, so JSON output and deep comparisons show only what is known. */
export function withoutUndefined<T extends object>(value: T): T {
  for (const key of Object.keys(value) as (keyof T)[]) if (value[key] === undefined) delete value[key];
  return value;
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
