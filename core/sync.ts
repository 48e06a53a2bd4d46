/**
 * Input and result of the sync workflow, and the progress activities report.
 * Plain JSON so `temporal workflow start --input` and the Web UI can start it.
 */
import { unsafePathReason } from './paths';

/** Where files land. Only the embedded local agent exists so far; ECS and SSM join later. */
export type TargetRef = { kind: 'local' };

export interface SyncInput {
  /** The compute session the files are for; names the folder on the target. */
  sessionId: string;
  /** Folder to snapshot, as seen by the worker. */
  source: { path: string };
  /** Folder inside the session to land into. Default `data`. */
  dest?: string;
  /** Default `{ kind: 'local' }`. */
  target?: TargetRef;
}

export interface StepDurations {
  snapshotSource: number;
  uploadBlobs: number;
  landManifest: number;
  verifyLanding: number;
}

export interface SyncResult {
  workflowId: string;
  sessionId: string;
  target: TargetRef;
  dest: string;
  manifestDigest: string;
  manifestKey: string;
  filesTotal: number;
  bytesTotal: number;
  blobsUploaded: number;
  bytesUploaded: number;
  bytesSkipped: number;
  filesLanded: number;
  bytesLanded: number;
  /** Bytes the target fetched from the blob store: chunks of a changed file it already held are copied, not fetched. */
  bytesDownloaded: number;
  bytesReused: number;
  filesVerified: number;
  verified: true;
  /** The target's boot id at landing and at verification (equal, or verification fails). */
  bootId: string;
  /** Source entries left out (vanished while listed, unreadable), with the reason. */
  skipped: SkippedSource[];
  durationsMs: StepDurations;
}

export interface SkippedSource {
  path: string;
  reason: string;
}

/** Heartbeat details of every long activity; `ferry sync` draws its progress bar from them. */
export interface TransferProgress {
  step: 'snapshotSource' | 'uploadBlobs' | 'landManifest' | 'verifyLanding';
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

const SESSION_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const SESSION_ID_RULE = "1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit";

export function sessionIdProblem(sessionId: unknown): string | undefined {
  if (sessionId === undefined) return `sessionId is required (${SESSION_ID_RULE})`;
  if (typeof sessionId !== 'string' || !SESSION_ID.test(sessionId)) return `sessionId ${JSON.stringify(sessionId)} must be ${SESSION_ID_RULE}`;
  return undefined;
}

/** Validates and fills defaults; returns the problems instead of throwing so callers choose the error type. */
export function normalizeSyncInput(
  raw: unknown,
): { ok: true; input: Required<SyncInput> } | { ok: false; problems: string[] } {
  const problems: string[] = [];
  if (typeof raw !== 'object' || raw === null) return { ok: false, problems: ['input must be a JSON object'] };
  const input = raw as Partial<SyncInput>;
  const sessionProblem = sessionIdProblem(input.sessionId);
  if (sessionProblem) problems.push(sessionProblem);
  if (typeof input.source !== 'object' || input.source === null || typeof input.source.path !== 'string' || input.source.path === '')
    problems.push('source.path must be a non-empty string (the folder to sync)');
  const dest = input.dest ?? 'data';
  const destReason = unsafePathReason(dest);
  if (destReason) problems.push(`dest ${JSON.stringify(dest)}: ${destReason}`);
  const target = input.target ?? { kind: 'local' as const };
  if (typeof target !== 'object' || target === null || target.kind !== 'local')
    problems.push(`target ${JSON.stringify(target)}: only {"kind":"local"} is supported`);
  if (problems.length) return { ok: false, problems };
  return { ok: true, input: { sessionId: input.sessionId!, source: { path: input.source!.path }, dest, target } };
}

/** Workflow ids from business keys; a timestamp keeps repeated syncs of a session apart. */
export function syncWorkflowId(sessionId: string, startedAtMs: number): string {
  return `sync-${sessionId}-${startedAtMs}`;
}

/** Folder of a session on its target, relative to the agent root. */
export function sessionRoot(sessionId: string): string {
  return `sessions/${sessionId}`;
}

/** Progress at the start of a step over `files`. */
export function startProgress(step: TransferProgress['step'], files: readonly { size: number }[]): TransferProgress {
  return { step, filesDone: 0, filesTotal: files.length, bytesDone: 0, bytesTotal: files.reduce((sum, f) => sum + f.size, 0) };
}
