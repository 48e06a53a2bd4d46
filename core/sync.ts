/**
 * Input and result of the sync workflow, and the progress activities report.
 * Plain JSON so `temporal workflow start --input` and the Web UI can start it.
 */
import { unsafePathReason } from './paths';
import { DEFAULT_TARGET, targetRefProblem, type TargetRef } from './target';

/**
 * What a snapshot does with a symlink. Links that stay inside the source
 * are synced as the file they point to under every policy but `copy`.
 * - `skip` (default): links pointing outside the source, and dangling
 *   ones, are left out and listed in the result.
 * - `follow`: links pointing outside are followed; what they point to is
 *   synced under the link's path (an explicit opt-in).
 * - `copy`: every link is kept as a link (a manifest entry with its text).
 * - `error`: a link pointing outside, or dangling, fails the snapshot
 *   (SymlinkOutsideRoot, non-retryable).
 */
export const LINK_POLICIES = ['skip', 'follow', 'copy', 'error'] as const;
export type LinkPolicy = (typeof LINK_POLICIES)[number];
export const DEFAULT_LINK_POLICY: LinkPolicy = 'skip';

export function linkPolicyProblem(value: unknown, where = 'links'): string | undefined {
  if (value === undefined || LINK_POLICIES.includes(value as LinkPolicy)) return undefined;
  return `${where} ${JSON.stringify(value)} must be one of ${LINK_POLICIES.map((p) => `"${p}"`).join(', ')}`;
}

/** Snapshots over this many bytes name their largest folders (see core/sizeReport); `ferry sync --size-warning` and FERRY_SIZE_WARNING change it. */
export const DEFAULT_SIZE_WARNING_BYTES = 1 << 30;

export function sizeWarningProblem(value: unknown, where = 'sizeWarningBytes'): string | undefined {
  if (value === undefined || (Number.isSafeInteger(value) && (value as number) >= 0)) return undefined;
  return `${where} ${JSON.stringify(value)} must be a whole number of bytes`;
}

export interface SyncInput {
  /** The compute session the files are for; names the folder on the target. */
  sessionId: string;
  /** Folder to snapshot, as seen by the worker. */
  source: { path: string };
  /** Folder inside the session to land into. Default `data`. */
  dest?: string;
  /** Any target whose sessions outlive the workflow (default `{ kind: 'local' }`). */
  target?: TargetRef;
  /** What the snapshot does with symlinks; default `skip`. */
  links?: LinkPolicy;
  /** Over this many bytes the snapshot names its largest folders; default {@link DEFAULT_SIZE_WARNING_BYTES}. */
  sizeWarningBytes?: number;
  /** Snapshot and plan only: nothing is stored, uploaded or landed, and the result is a {@link SyncDryRun}. */
  dryRun?: boolean;
}

export interface StepDurations {
  provisionSession?: number;
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
  /** Symlinks the link policy left out. */
  linksSkipped: SkippedLinks;
  /** Set when the snapshot was large or held folders that are usually ignored. */
  sizeReport?: SizeReport;
  durationsMs: StepDurations;
}

/** What `syncWorkflow` returns for `dryRun: true`: the plan, with nothing stored, uploaded or landed. */
export interface SyncDryRun {
  dryRun: true;
  workflowId: string;
  sessionId: string;
  target: TargetRef;
  dest: string;
  /** The digest the manifest would be stored under; it is not in the store. */
  manifestDigest: string;
  filesTotal: number;
  bytesTotal: number;
  /** What an upload would send. */
  store: StorePlan;
  /** What the target already holds of it, and what a landing would write. */
  landing: LandingPlan;
  skipped: SkippedSource[];
  skippedTotal: number;
  linksSkipped: SkippedLinks;
  sizeReport?: SizeReport;
}

/** The blobs a snapshot is stored as, against what the blob store already holds. */
export interface StorePlan {
  /** Distinct blobs (whole small files and chunks of large ones). */
  blobsTotal: number;
  blobsNew: number;
  bytesNew: number;
}

/** The manifest against what a session already holds, hashed on the target (read only: nothing is provisioned). */
export interface LandingPlan {
  /** The target and session in a few words. */
  description: string;
  filesHeld: number;
  bytesHeld: number;
  filesToLand: number;
  bytesToLand: number;
}

export interface SkippedSource {
  path: string;
  reason: string;
}

/** Links listed by path in a result; the rest are counted. History keeps a count and a few paths, not every link. */
export const SKIPPED_LINKS_LISTED = 20;

export interface SkippedLinks {
  total: number;
  /** The first {@link SKIPPED_LINKS_LISTED}, in listing order. */
  first: SkippedLink[];
}

export interface SkippedLink {
  path: string;
  /** The link text, as readlink gives it. */
  target: string;
  why: 'outside' | 'dangling';
}

/** Why a snapshot names folders before upload, and which. Built by core/sizeReport. */
export interface SizeReport {
  filesTotal: number;
  bytesTotal: number;
  /** The threshold the snapshot was measured against. */
  sizeWarningBytes: number;
  /** bytesTotal is over sizeWarningBytes. */
  large: boolean;
  /** Usually-ignored folders first (largest first), then the largest others. */
  folders: FolderSize[];
}

export interface FolderSize {
  /** Relative to the source. */
  path: string;
  bytes: number;
  files: number;
  /** A line for .ferryignore (or .gitignore) at the source's top that would leave the folder out. */
  ignoreLine: string;
  /** Set for a folder that is usually ignored: what it holds, e.g. "npm packages". */
  usuallyIgnored?: string;
}

/**
 * Heartbeat details of every long activity; `ferry sync` draws its progress
 * bar from them and the Web UI shows them as they are. Files are files of
 * the manifest; a step that moves blobs (uploadBlobs) counts those too.
 */
export interface TransferProgress {
  step: 'snapshotSource' | 'uploadBlobs' | 'landManifest' | 'verifyLanding' | 'collectArtifacts' | 'planSync';
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
  /** Blobs (whole small files and chunks of large ones) moved so far, and in all. */
  blobsDone?: number;
  blobsTotal?: number;
  /** Over the last few seconds (see core/progress); absent until measured. */
  bytesPerSecond?: number;
  /** Seconds left at that rate; absent until measured. */
  etaSeconds?: number;
  /** Set while the step is still finding its files (snapshotSource lists and hashes at once): the totals grow until it is gone. */
  listing?: true;
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
  const target = input.target ?? DEFAULT_TARGET;
  const targetProblem = targetRefProblem(target);
  if (targetProblem) problems.push(targetProblem);
  const optionProblems = [linkPolicyProblem(input.links), sizeWarningProblem(input.sizeWarningBytes), input.dryRun === undefined || typeof input.dryRun === 'boolean' ? undefined : 'dryRun must be true or false'];
  for (const problem of optionProblems) if (problem) problems.push(problem);
  if (problems.length) return { ok: false, problems };
  return {
    ok: true,
    input: {
      sessionId: input.sessionId!,
      source: { path: input.source!.path },
      dest,
      target,
      links: input.links ?? DEFAULT_LINK_POLICY,
      sizeWarningBytes: input.sizeWarningBytes ?? DEFAULT_SIZE_WARNING_BYTES,
      dryRun: input.dryRun ?? false,
    },
  };
}

/** Workflow ids from business keys; a timestamp keeps repeated syncs of a session apart. */
export function syncWorkflowId(sessionId: string, startedAtMs: number): string {
  return `sync-${sessionId}-${startedAtMs}`;
}

/** Folder of a session under the root of a target that holds many sessions (the local agent, a shell, ssh or ssm root). */
export function sessionRoot(sessionId: string): string {
  return `sessions/${sessionId}`;
}

/** Progress at the start of a step over `files`. */
export function startProgress(step: TransferProgress['step'], files: readonly { size: number }[]): TransferProgress {
  return { step, filesDone: 0, filesTotal: files.length, bytesDone: 0, bytesTotal: files.reduce((sum, f) => sum + f.size, 0) };
}
