/**
 * Input, result and progress of the training workflow: push a project to an
 * instance, start a command there, confirm it runs, follow it to its exit.
 * Plain JSON so `temporal workflow start --input` can start it too.
 */
import { isSha256Hex } from './manifest';
import { unsafePathReason } from './paths';

/**
 * Where training runs. `shell`: generated scripts run with bash on the
 * worker's machine under `root`. `ssm`: the same scripts run on an EC2
 * instance through SSM SendCommand.
 */
export type TrainingTarget = { kind: 'shell'; root: string } | { kind: 'ssm'; instanceId: string; region?: string; root?: string };

export interface TrainingInput {
  /** Names the run's folder on the target and its S3 objects. Default: the workflow id. */
  runId?: string;
  project: {
    /** Folder to snapshot, as the worker sees it. */
    path: string;
    /** Only paths matching one of these gitignore-style patterns are synced. */
    include?: string[];
    /** Paths matching these gitignore-style patterns are left out (on top of .gitignore/.ferryignore). */
    exclude?: string[];
  };
  target: TrainingTarget;
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

/** Where `ssm` targets keep runs unless told otherwise. */
export const DEFAULT_SSM_ROOT = '/opt/ferry';

/** What a monitored run carries over when the workflow continues as new. */
export interface TrainingResume {
  manifestDigest: string;
  release: string;
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
  archiveBytes: number;
  timeToConfirmMs: number;
}

export type TrainingState =
  | 'validating'
  | 'snapshotSource'
  | 'uploadBlobs'
  | 'landArchive'
  | 'verifyInstanceLanding'
  | 'startProcess'
  | 'confirmProcess'
  | 'running'
  | 'resyncing'
  | 'stopping'
  | 'cleanup'
  | 'succeeded'
  | 'failed'
  | 'stopped';

/** What the `progress` query answers. */
export interface TrainingProgress {
  runId: string;
  state: TrainingState;
  target: TrainingTarget;
  manifestDigest?: string;
  /** Release folder on the target the command runs in. */
  release?: string;
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
  release: string;
  filesTotal: number;
  bytesTotal: number;
  /** Bytes of the archive the first landing sent (a delta on later landings). */
  archiveBytes: number;
  logBytesShipped: number;
  logChunks: number;
  probes: number;
  resyncs: number;
  lastLines: string[];
  /** Milliseconds from workflow start until the command was confirmed running. */
  timeToConfirmMs: number;
  firstLogLineMs?: number;
  /** Temporary objects left behind (clean-up failed); a warning, not a failure. */
  cleanupWarning?: string;
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
const INSTANCE_ID = /^(i|mi)-[0-9a-f]{8,32}$/;

const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function runIdProblem(runId: unknown): string | undefined {
  if (typeof runId !== 'string' || !RUN_ID.test(runId)) return `runId ${JSON.stringify(runId)} must be ${RUN_ID_RULE}`;
  return undefined;
}

/** Why `root` cannot be a target root: it must be absolute, normalised, not `/`, without NUL or newline. */
export function targetRootProblem(root: unknown): string | undefined {
  if (typeof root !== 'string' || !root.startsWith('/')) return 'must be an absolute path';
  if (root === '/') return 'must not be /';
  if (/[\0\n]/.test(root)) return 'must not contain NUL or newline';
  const reason = unsafePathReason(root.slice(1).replace(/\/$/, ''));
  return reason ? `is not a normalised path: ${reason}` : undefined;
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

/** Release folders and start ids become path segments in the scripts, which accept [A-Za-z0-9._-]; a leading letter or digit also keeps out `.` and `..`. */
const SCRIPT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const RESUME_COUNTS = ['logOffset', 'logChunks', 'resyncs', 'probes', 'filesTotal', 'bytesTotal', 'archiveBytes', 'timeToConfirmMs'] as const;

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
  if (typeof carried.release !== 'string' || !SCRIPT_NAME.test(carried.release)) problems.push(`resume.release ${JSON.stringify(carried.release)} must match ${SCRIPT_NAME}`);
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

  const target = input.target as Partial<TrainingTarget> | undefined;
  if (typeof target !== 'object' || target === null) problems.push('target is required: {"kind":"shell","root":…} or {"kind":"ssm","instanceId":…}');
  else if (target.kind === 'shell') {
    const problem = targetRootProblem((target as { root?: unknown }).root);
    if (problem) problems.push(`target.root ${problem}`);
  } else if (target.kind === 'ssm') {
    const ssm = target as Partial<Extract<TrainingTarget, { kind: 'ssm' }>>;
    if (typeof ssm.instanceId !== 'string' || !INSTANCE_ID.test(ssm.instanceId)) problems.push(`target.instanceId ${JSON.stringify(ssm.instanceId)} is not an instance id (i-0123456789abcdef0)`);
    if (ssm.region !== undefined && (typeof ssm.region !== 'string' || !/^[a-z]{2}(-[a-z]+)+-\d$/.test(ssm.region))) problems.push(`target.region ${JSON.stringify(ssm.region)} is not a region`);
    if (ssm.root !== undefined) {
      const problem = targetRootProblem(ssm.root);
      if (problem) problems.push(`target.root ${problem}`);
    }
  } else problems.push(`target.kind ${JSON.stringify(target.kind)} is not "shell" or "ssm"`);

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
  const normalizedTarget: TrainingTarget =
    target!.kind === 'shell'
      ? { kind: 'shell', root: (target as { root: string }).root.replace(/\/$/, '') }
      : {
          kind: 'ssm',
          instanceId: (target as { instanceId: string }).instanceId,
          ...((target as { region?: string }).region ? { region: (target as { region: string }).region } : {}),
          root: ((target as { root?: string }).root ?? DEFAULT_SSM_ROOT).replace(/\/$/, ''),
        };
  return {
    ok: true,
    input: {
      runId,
      project: { path: project!.path, include: project!.include ?? [], exclude: project!.exclude ?? [] },
      target: normalizedTarget,
      command: [...input.command!],
      env: { ...env },
      startupGraceSeconds: input.startupGraceSeconds ?? 10,
      pollSeconds: input.pollSeconds ?? 15,
      stopGraceSeconds: input.stopGraceSeconds ?? 10,
      resume: input.resume,
    },
  };
}

/** The run's folder on its target. */
export function targetRunDir(target: TrainingTarget, runId: string): string {
  return `${target.kind === 'shell' ? target.root : (target.root ?? DEFAULT_SSM_ROOT)}/runs/${runId}`;
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

export function trainingTmpPrefix(prefix: string, runId: string): string {
  return `${prefix}tmp/training/${runId}/`;
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
