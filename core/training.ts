/**
 * Input, result and progress of the training workflow: push a project to an
 * instance, start a command there, confirm it runs, follow it to its exit.
 * Plain JSON so `temporal workflow start --input` can start it too.
 */
import { isSha256Hex } from './manifest';
import { linkPolicyProblem, type LinkPolicy } from './sync';
import { sessionHandleProblems, targetRefProblem, type CollectedFiles, type SessionHandle, type TargetRef } from './target';

export interface TrainingInput {
  /** Names the run's session on the target and its S3 objects. Default: the workflow id. */
  runId?: string;
  project: {
    /** Folder to snapshot, as the worker sees it. */
    path: string;
    /** Only paths matching one of these gitignore-style patterns are synced. */
    include?: string[];
    /** Paths matching these gitignore-style patterns are left out (on top of .gitignore/.ferryignore). */
    exclude?: string[];
    /** What the snapshot does with symlinks (core/sync LinkPolicy); default `skip`. */
    links?: LinkPolicy;
  };
  /** Any target; the project lands in the session's `project/`, the command writes to `outputs/` (FERRY_OUTPUT_DIR). */
  target: TargetRef;
  /** argv of the training command, run with cwd at the landed project. */
  command: string[];
  /** Extra environment variables for the command. */
  env?: Record<string, string>;
  /** The process must still be alive (or have exited 0) this long after start. Default 10. */
  startupGraceSeconds?: number;
  /** Seconds between probes of the running process. Default 15. */
  pollSeconds?: number;
  /** Seconds between SIGTERM and SIGKILL when stopping. Default 10. */
  stopGraceSeconds?: number;
  /** Set by the workflow itself when it continues as new; never by callers. */
  resume?: TrainingResume;
}

export type NormalizedTrainingInput = Required<Omit<TrainingInput, 'resume'>> & { resume?: TrainingResume };

/** What a monitored run carries over when the workflow continues as new. */
export interface TrainingResume {
  manifestDigest: string;
  /** The session the run lives in (continue-as-new keeps it). */
  session: SessionHandle;
  startId: string;
  starts: number;
  pid: number;
  logOffset: number;
  logChunks: number;
  resyncs: number;
  probes: number;
  startedAtMs: number;
  firstLogLineMs?: number;
  filesTotal: number;
  bytesTotal: number;
  bytesLanded: number;
  timeToConfirmMs: number;
}

export type TrainingState =
  | 'validating'
  | 'provisionSession'
  | 'snapshotSource'
  | 'uploadBlobs'
  | 'landManifest'
  | 'verifyLanding'
  | 'startProcess'
  | 'confirmProcess'
  | 'running'
  | 'resyncing'
  | 'stopping'
  | 'collectOutputs'
  | 'releasing'
  | 'succeeded'
  | 'failed'
  | 'stopped';

/** What the `progress` query answers. */
export interface TrainingProgress {
  runId: string;
  state: TrainingState;
  target: TargetRef;
  /** The session the run lives in, once provisioned. */
  session?: SessionHandle;
  manifestDigest?: string;
  /** Id of the current start (a restart after resync gets a new one); names the log's S3 prefix. */
  startId?: string;
  pid?: number;
  exitCode?: number | null;
  /** Last lines of training.log, as of the latest probe. */
  lastLines: string[];
  logBytesShipped: number;
  logChunks: number;
  probes: number;
  resyncs: number;
  /** Milliseconds from workflow start to the first log byte seen. */
  firstLogLineMs?: number;
}

export interface TrainingResult {
  runId: string;
  exitCode: number | null;
  /** True when the run ended because of a `stop` signal. */
  stopped: boolean;
  manifestDigest: string;
  /** Where the run lived: the session's target and folder. */
  session: SessionHandle;
  filesTotal: number;
  bytesTotal: number;
  /** Bytes the first landing moved to the target (later landings send only what changed). */
  bytesLanded: number;
  logBytesShipped: number;
  logChunks: number;
  probes: number;
  resyncs: number;
  lastLines: string[];
  /** Milliseconds from workflow start until the command was confirmed running. */
  timeToConfirmMs: number;
  firstLogLineMs?: number;
  /** What the command left in `outputs/`, stored in S3 as content-addressed blobs when the run ended. */
  outputs?: CollectedFiles;
}

export interface StopSignalInput {
  /** Seconds between SIGTERM and SIGKILL; default the run's stopGraceSeconds. */
  graceSeconds?: number;
}

export interface ResyncSignalInput {
  /** Restart the command in the new snapshot (stop, then start). Default false: the running process keeps its files. */
  restart?: boolean;
}

const RUN_ID_RULE = "1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit";
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function runIdProblem(runId: unknown): string | undefined {
  if (typeof runId !== 'string' || !RUN_ID.test(runId)) return `runId ${JSON.stringify(runId)} must be ${RUN_ID_RULE}`;
  return undefined;
}

function patternsProblem(name: string, patterns: unknown): string | undefined {
  if (patterns === undefined) return undefined;
  if (!Array.isArray(patterns) || patterns.some((p) => typeof p !== 'string' || p.trim() === '' || p.includes('\n')))
    return `project.${name} must be a list of non-empty single-line patterns`;
  return undefined;
}

function secondsProblem(name: string, value: unknown, min: number, max: number): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) return `${name} must be a number of seconds from ${min} to ${max}`;
  return undefined;
}

/** Start ids become path segments on the target, which accept [A-Za-z0-9._-]; a leading letter or digit also keeps out `.` and `..`. */
const SCRIPT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const RESUME_COUNTS = ['logOffset', 'logChunks', 'resyncs', 'probes', 'filesTotal', 'bytesTotal', 'bytesLanded', 'timeToConfirmMs'] as const;

/**
 * Problems with `resume`, which only the workflow sets when it continues as
 * new: a caller could otherwise skip landing and probe a process that was
 * never started. Checks every field the resumed run reads.
 */
export function trainingResumeProblems(resume: unknown): string[] {
  if (typeof resume !== 'object' || resume === null || Array.isArray(resume)) return ['resume must be an object; it is set by the workflow itself when it continues as new, never by callers'];
  const carried = resume as Partial<Record<keyof TrainingResume, unknown>>;
  const problems: string[] = [];
  const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
  if (!isSha256Hex(carried.manifestDigest)) problems.push(`resume.manifestDigest ${JSON.stringify(carried.manifestDigest)} must be a sha256 hex digest`);
  problems.push(...sessionHandleProblems(carried.session, 'resume.session'));
  const startsValid = isCount(carried.starts) && carried.starts >= 1;
  if (!startsValid) problems.push(`resume.starts ${JSON.stringify(carried.starts)} must be a whole number of at least 1`);
  if (typeof carried.startId !== 'string' || !SCRIPT_NAME.test(carried.startId)) problems.push(`resume.startId ${JSON.stringify(carried.startId)} must match ${SCRIPT_NAME}`);
  // A restart takes start-<starts + 1>: a start id out of step with starts could name one already used, which the start script would not start again.
  else if (startsValid && carried.startId !== startIdFor(carried.starts as number)) problems.push(`resume.startId ${JSON.stringify(carried.startId)} must be "${startIdFor(carried.starts as number)}" (start-<starts>)`);
  if (!isCount(carried.pid) || carried.pid < 1) problems.push(`resume.pid ${JSON.stringify(carried.pid)} must be a process id (a whole number of at least 1)`);
  if (!isCount(carried.startedAtMs)) problems.push(`resume.startedAtMs ${JSON.stringify(carried.startedAtMs)} must be a time in epoch milliseconds`);
  // Measured against an activity's clock, so it can come out negative under clock skew.
  if (carried.firstLogLineMs !== undefined && !Number.isSafeInteger(carried.firstLogLineMs)) problems.push(`resume.firstLogLineMs ${JSON.stringify(carried.firstLogLineMs)} must be a whole number of milliseconds`);
  for (const field of RESUME_COUNTS) if (!isCount(carried[field])) problems.push(`resume.${field} ${JSON.stringify(carried[field])} must be a whole number of at least 0`);
  return problems;
}

/** Validates and fills defaults; returns problems instead of throwing so the caller picks the error type. */
export function normalizeTrainingInput(
  raw: unknown,
  defaultRunId: string,
): { ok: true; input: NormalizedTrainingInput } | { ok: false; problems: string[] } {
  if (typeof raw !== 'object' || raw === null) return { ok: false, problems: ['input must be a JSON object'] };
  const input = raw as Partial<TrainingInput>;
  const problems: string[] = [];

  const runId = input.runId ?? defaultRunId;
  const runProblem = runIdProblem(runId);
  if (runProblem) problems.push(runProblem);

  const project = input.project;
  if (typeof project !== 'object' || project === null || typeof project.path !== 'string' || project.path === '')
    problems.push('project.path must be a non-empty string (the folder to train from)');
  for (const name of ['include', 'exclude'] as const) {
    const problem = patternsProblem(name, project?.[name]);
    if (problem) problems.push(problem);
  }
  const linksProblem = linkPolicyProblem(project?.links, 'project.links');
  if (linksProblem) problems.push(linksProblem);

  const targetProblem = targetRefProblem(input.target);
  if (targetProblem) problems.push(targetProblem);

  if (!Array.isArray(input.command) || input.command.length === 0 || input.command.some((word) => typeof word !== 'string' || word.includes('\0')))
    problems.push('command must be a non-empty list of strings without NUL, e.g. ["python","train.py"]');

  const env = input.env ?? {};
  if (typeof env !== 'object' || env === null || Array.isArray(env)) problems.push('env must be an object of strings');
  else {
    for (const [name, value] of Object.entries(env)) {
      if (!ENV_NAME.test(name)) problems.push(`env name ${JSON.stringify(name)} is not a shell variable name`);
      else if (name.startsWith('FERRY_')) problems.push(`env name ${name}: FERRY_* is reserved`);
      if (typeof value !== 'string' || value.includes('\0')) problems.push(`env ${name} must be a string without NUL`);
    }
  }

  for (const problem of [
    secondsProblem('startupGraceSeconds', input.startupGraceSeconds, 0, 3600),
    secondsProblem('pollSeconds', input.pollSeconds, 1, 3600),
    secondsProblem('stopGraceSeconds', input.stopGraceSeconds, 0, 600),
  ])
    if (problem) problems.push(problem);

  if (input.resume !== undefined) problems.push(...trainingResumeProblems(input.resume));

  if (problems.length) return { ok: false, problems };
  return {
    ok: true,
    input: {
      runId,
      project: { path: project!.path, include: project!.include ?? [], exclude: project!.exclude ?? [], ...(project!.links ? { links: project!.links } : {}) },
      target: input.target!,
      command: [...input.command!],
      env: { ...env },
      startupGraceSeconds: input.startupGraceSeconds ?? 10,
      pollSeconds: input.pollSeconds ?? 15,
      stopGraceSeconds: input.stopGraceSeconds ?? 10,
      resume: input.resume,
    },
  };
}

export function trainingWorkflowId(runId: string): string {
  return `train-${runId}`;
}

/** S3 keys of a run (under the store's prefix): log chunks stay, `tmp/` is removed when the run ends. */
export function trainingLogPrefix(prefix: string, runId: string, startId?: string): string {
  return `${prefix}training/${runId}/logs/${startId ? `${startId}/` : ''}`;
}

/** A log chunk is keyed by its byte offset, so keys sort in log order and a retried probe overwrites the same chunk. */
export function trainingLogChunkKey(prefix: string, runId: string, startId: string, offset: number): string {
  return `${trainingLogPrefix(prefix, runId, startId)}${String(offset).padStart(15, '0')}.log`;
}

/** Start ids are chosen by the workflow: `start-1`, `start-2` after a restart. */
export function startIdFor(starts: number): string {
  return `start-${starts}`;
}

/** Keeps the last `limit` lines of `text`, each cut to a readable length. */
export function lastLines(text: string, limit = 20): string[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines.slice(-limit).map((line) => (line.length > 500 ? `${line.slice(0, 500)}…` : line));
}
