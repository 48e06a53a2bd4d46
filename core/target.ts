/**
 * Targets and sessions, as every workflow sees them. A target is where a
 * session lives (a runtime agent on this machine, an ECS task, an EC2
 * instance over SSM, a folder reached by shell or ssh); a session is one
 * folder on it that files land in and code runs in. Plain JSON, so
 * `temporal workflow start --input` can name any target.
 *
 * Which kinds exist, what their options mean and how they are reached is the
 * business of the driver of each kind (activities/targets); workflows never
 * branch on the kind.
 */

import { unsafePathReason } from './paths';

/** `{"kind": "<kind>", …the driver's options}`. */
export interface TargetRef {
  kind: string;
  [option: string]: unknown;
}

export const DEFAULT_TARGET: TargetRef = { kind: 'local' };

/** What a session is for. A driver refuses at provisioning a purpose its sessions cannot serve. */
export type SessionPurpose = 'sync' | 'pipeline' | 'training' | 'inspect';

/**
 * A provisioned session, as the workflow keeps it. Everything in it is safe
 * for history: credentials are derived or configured on each worker, never
 * carried here.
 */
export interface SessionHandle {
  sessionId: string;
  /** The reference as the driver normalised it. */
  target: TargetRef;
  /** The target in one line (`ssh:ubuntu@10.0.0.5:22/srv/ferry`), for people. */
  description?: string;
  /** Base URL of the session's runtime agent, for targets reached through one. */
  agentUrl?: string;
  /** The session's machine (or agent process) boot id when provisioned: a different one later means it restarted. */
  bootId: string;
  /** The session folder as the target sees it, for people reading logs. */
  root: string;
  /** Driver facts worth seeing in history (task ARN, instance id, …); never secrets. */
  details: Record<string, string>;
}

/** Folders of a pipeline session. */
export const SESSION_DIRS = { data: 'data', artifacts: 'artifacts', work: 'work' } as const;

/** Folders of a training session: the project lands in one, the command writes to the other. */
export const TRAINING_DIRS = { project: 'project', outputs: 'outputs' } as const;

/** The folders provisioning creates for a purpose (a sync creates its destination when it lands). */
export function sessionFolders(purpose: SessionPurpose): string[] {
  if (purpose === 'pipeline') return Object.values(SESSION_DIRS);
  if (purpose === 'training') return Object.values(TRAINING_DIRS);
  return [];
}

const KIND = /^[a-z][a-z0-9-]{0,31}$/;

/** Why `root` cannot be the root of a target's sessions: it must be absolute, normalised, not `/`, without NUL or newline. */
export function absoluteRootProblem(root: unknown): string | undefined {
  if (typeof root !== 'string' || !root.startsWith('/')) return 'must be an absolute path';
  if (root === '/') return 'must not be /';
  if (/[\0\n]/.test(root)) return 'must not contain NUL or newline';
  const reason = unsafePathReason(root.slice(1).replace(/\/$/, ''));
  return reason ? `is not a normalised path: ${reason}` : undefined;
}

const isJsonObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** The shape every target reference shares; its driver checks the rest when the session is provisioned. */
export function targetRefProblem(raw: unknown, where = 'target'): string | undefined {
  if (!isJsonObject(raw)) return `${where} must be an object like {"kind":"local"}, got ${JSON.stringify(raw)}`;
  if (typeof raw.kind !== 'string' || !KIND.test(raw.kind)) return `${where}.kind ${JSON.stringify(raw.kind)} must be a target kind such as "local", "shell", "ssh", "ssm" or "ecs"`;
  return undefined;
}

/** The target in one line when no handle says it better: `kind` plus its options. */
export function describeTarget(target: TargetRef): string {
  const { kind, ...options } = target;
  const values = Object.values(options).filter((v) => typeof v === 'string' || typeof v === 'number');
  return values.length ? `${kind}:${values.join(':')}` : kind;
}

/** Problems with a session handle carried in workflow state (continue-as-new); empty when it may be used. */
export function sessionHandleProblems(session: unknown, where: string): string[] {
  if (!isJsonObject(session)) return [`${where} must be an object`];
  const problems: string[] = [];
  for (const field of ['sessionId', 'bootId', 'root'] as const) {
    if (typeof session[field] !== 'string' || session[field] === '') problems.push(`${where}.${field} must be a non-empty string`);
  }
  // Activities send the session's credential to this URL.
  if (session.agentUrl !== undefined && (typeof session.agentUrl !== 'string' || !/^https?:\/\/[^\s/]+(\/\S*)?$/.test(session.agentUrl)))
    problems.push(`${where}.agentUrl must be an http(s) URL, got ${JSON.stringify(session.agentUrl)}`);
  const targetProblem = targetRefProblem(session.target, `${where}.target`);
  if (targetProblem) problems.push(targetProblem);
  if (!isJsonObject(session.details) || Object.values(session.details).some((value) => typeof value !== 'string')) problems.push(`${where}.details must be an object of strings`);
  return problems;
}

/** A file a session produced, stored in S3 as a content-addressed blob. */
export interface CollectedFile {
  path: string;
  size: number;
  sha256: string;
  /** The blob's key in the store; absent for a symlink, which has no blob. */
  key?: string;
  /** Set for a symlink: its text (size and sha256 are the text's, as in a manifest's link entry). */
  link?: string;
}

/** Files collected from a session folder (artifacts, training outputs): the manifest lists every one. */
export interface CollectedFiles {
  manifestDigest: string;
  manifestKey: string;
  filesTotal: number;
  bytesTotal: number;
  /** The first files (all, for the usual handful). */
  files: CollectedFile[];
}
