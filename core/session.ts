/**
 * A compute session: one runtime agent whose root is the session's folder
 * (`data/`, `artifacts/`, `work/`). The workflow keeps the handle; the
 * agent's token is never in it (workers derive it from the session id).
 */

/** Where a session runs. `local`: an agent process on the worker's machine; `ecs`: a Fargate task. */
export type SessionTargetRef = { kind: 'local' } | { kind: 'ecs' };

export const SESSION_TARGET_KINDS: readonly SessionTargetRef['kind'][] = ['local', 'ecs'];

/** Folders every session root holds. */
export const SESSION_DIRS = { data: 'data', artifacts: 'artifacts', work: 'work' } as const;

export interface SessionHandle {
  sessionId: string;
  target: SessionTargetRef;
  /** Base URL of the session's runtime agent. */
  agentUrl: string;
  /** The agent's boot id when provisioned: a different one later means the session restarted. */
  bootId: string;
  /** The session root as the target sees it, for people reading logs. */
  root: string;
  /** Driver facts worth seeing in history (task ARN, pid, …); never secrets. */
  details: Record<string, string>;
}
