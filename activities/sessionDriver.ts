/**
 * The seam between session activities and where sessions run. One driver
 * per target kind (local process, ECS task); the activities in
 * activities/session.ts pick the driver from the session's target.
 */
import { createHmac } from 'node:crypto';
import type { SessionHandle } from '../core/session';

export interface ProvisionRequest {
  sessionId: string;
  /** The token the session's agent must require (see {@link sessionToken}). */
  token: string;
  /** Called while waiting (task pending, agent starting), with details worth showing. */
  heartbeat: (details: Record<string, unknown>) => void;
}

/** What a driver found or started; the activity adds the boot id from the agent's health. */
export interface ProvisionedSession {
  agentUrl: string;
  root: string;
  details: Record<string, string>;
}

export interface SessionDriver {
  /**
   * Starts the session's runtime agent, or finds the one already running for
   * `sessionId` (a retried activity must never start a second), and resolves
   * once the agent's health check answers.
   */
  provision(request: ProvisionRequest): Promise<ProvisionedSession>;
  /** Stops the session's agent and frees its compute; a session already gone is not an error. */
  release(session: SessionHandle): Promise<{ released: boolean; detail: string }>;
}

/**
 * The agent token of a session, derived from a worker secret: every worker
 * computes the same token without storing it, and it never enters history.
 */
export function sessionToken(secret: string, sessionId: string): string {
  return createHmac('sha256', secret).update(`ferry-session:${sessionId}`).digest('hex');
}
