/**
 * Every error the agent reports is an {@link AgentFailure}: a core/errors
 * type name, an HTTP status, and the path or URL origin it is about. Raw
 * errors are converted at the edge by {@link toAgentFailure}.
 */
import type { AgentError } from '../core/agentProtocol';
import { FailureType, type FailureTypeName } from '../core/errors';

const STATUS_BY_TYPE: Partial<Record<FailureTypeName, number>> = {
  [FailureType.InvalidInput]: 400,
  [FailureType.UnsafePath]: 400,
  [FailureType.UrlNotAllowed]: 400,
  [FailureType.TargetUnauthorized]: 401,
  [FailureType.TargetDiskFull]: 507,
};

export interface FailureSubject {
  path?: string;
  url?: string;
  /** Overrides the status implied by the type (404, 405, 413 have no type of their own). */
  status?: number;
  /** The same request may succeed after this many seconds (sent as retry-after). */
  retryAfterSeconds?: number;
}

export class AgentFailure extends Error {
  readonly status: number;
  readonly path?: string;
  readonly url?: string;
  readonly retryAfterSeconds?: number;

  constructor(
    readonly type: FailureTypeName,
    message: string,
    subject: FailureSubject = {},
  ) {
    super(message);
    this.name = 'AgentFailure';
    this.status = subject.status ?? STATUS_BY_TYPE[type] ?? 500;
    this.path = subject.path;
    this.url = subject.url;
    this.retryAfterSeconds = subject.retryAfterSeconds;
  }

  toBody(): AgentError {
    return { type: 'error', error: { type: this.type, message: this.message, path: this.path, url: this.url } };
  }
}

/** A request of the wrong shape. */
export function invalid(message: string): AgentFailure {
  return new AgentFailure(FailureType.InvalidInput, message);
}

export function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function isDiskFull(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * Anything that is not already an AgentFailure: a full disk is reported as
 * such; everything else is the target's fault and retryable, so
 * TargetUnavailable (core/errors has no "internal error" type).
 */
export function toAgentFailure(err: unknown, path?: string): AgentFailure {
  if (err instanceof AgentFailure) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (isDiskFull(err)) return new AgentFailure(FailureType.TargetDiskFull, `target disk is full: ${message}`, { path });
  return new AgentFailure(FailureType.TargetUnavailable, message, { path });
}
