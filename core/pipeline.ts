/**
 * Input, state and results of the pipeline workflow. Plain JSON so
 * `temporal workflow start --input` and the Web UI can start it.
 */
import { parseDurationMs } from './duration';
import { isSha256Hex } from './manifest';
import { linkPolicyProblem, sessionIdProblem, type LinkPolicy, type SkippedLinks } from './sync';
import { DEFAULT_TARGET, sessionHandleProblems, targetRefProblem, type CollectedFiles, type SessionHandle, type TargetRef } from './target';

/** Summary of the timer a stage waits on for the agent's next update or signal; diagnosis counts that time as waiting for the agent. */
export const AGENT_WAIT_TIMER_SUMMARY = 'waiting for the agent (stage idle timeout)';

export const DEFAULT_STAGES = ['coder', 'validator', 'reporter'] as const;
export const EXECUTE_LANGUAGES = ['bash', 'python', 'node'] as const;
export type ExecuteLanguage = (typeof EXECUTE_LANGUAGES)[number];

/** A folder or file on the worker's machine, or everything under an S3 prefix. */
export type PipelineInputRef = { path: string; links?: LinkPolicy } | { s3: string };

export interface PipelineInput {
  sessionId: string;
  /** Any target (default `{ kind: 'local' }`). */
  target?: TargetRef;
  inputs?: PipelineInputRef[];
  /** Default coder → validator → reporter. */
  stages?: string[];
  /** How long a stage may go without an update or signal, e.g. "30m" (default). */
  stageIdleTimeout?: string;
  /** Continue-as-new once history holds this many events (default 10,000). */
  maxHistoryEvents?: number;
}

export interface NormalizedPipelineInput {
  sessionId: string;
  target: TargetRef;
  inputs: PipelineInputRef[];
  stages: string[];
  stageIdleTimeoutMs: number;
  maxHistoryEvents: number;
}

export interface ExecuteRequest {
  code: string;
  language: ExecuteLanguage;
  /** Default 600 s. */
  timeoutSeconds?: number;
}

export interface ExecuteResult {
  executionId: string;
  stage: string;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** Last bytes (≤ 4 KB) of each stream; the full logs are blobs in S3. */
  stdoutTail: string;
  stderrTail: string;
  stdoutBytes: number;
  stderrBytes: number;
  /** S3 key of the full stdout log (content-addressed blob). */
  logKey: string;
  /** S3 key of the full stderr log. */
  stderrLogKey: string;
  durationMs: number;
  /** Boot id of the session the code ran on. */
  bootId: string;
  /** The execute update's id: resending it returns this result instead of running the code again. Absent in results recorded before streaming. */
  requestId?: string;
  /** True when the session's inputs were re-hashed on the target (or landed and verified again) before this execution; a cheap check otherwise. */
  inputsVerified?: boolean;
  /** Where the output was shipped while it ran (ExecutionRecord.logChunks). */
  logChunks?: string;
}

/** What executeCode returns; the workflow adds what only it knows. */
export type ExecuteCodeResult = Omit<ExecuteResult, 'requestId' | 'inputsVerified' | 'logChunks'>;

/**
 * One execution as the `state` query shows it, from the moment its code is
 * about to start: how a caller holding only the request id finds its output.
 */
export interface ExecutionRecord {
  /** The execute update's id. */
  requestId: string;
  executionId: string;
  stage: string;
  status: 'running' | 'finished' | 'failed';
  startedAt: string;
  endedAt?: string;
  /**
   * Where its stdout and stderr are shipped while it runs: the S3 key prefix
   * below the blob store's prefix (FERRY_S3_PREFIX),
   * `executions/<workflowId>/<executionId>/`, holding `stdout/` and `stderr/`
   * chunks keyed by their byte offset (core/executionLogs).
   */
  logChunks: string;
  inputsVerified: boolean;
  exitCode?: number | null;
  /** Total bytes of each stream, once it finished: a reader has everything when it read this much. */
  stdoutBytes?: number;
  stderrBytes?: number;
  /** The failure type, when the execution failed rather than ran to an exit code. */
  failure?: string;
}

export interface FinishStageRequest {
  summary?: string;
  /**
   * The stage this signal means to finish. When it is not the current stage
   * (a resend after that stage already finished) the signal is ignored;
   * without it the current stage finishes, whichever it is.
   */
  stage?: string;
}

export interface AddInputsRequest {
  inputs: PipelineInputRef[];
}

export interface AbortRequest {
  reason: string;
}

export interface StageArtifacts extends CollectedFiles {
  stage: string;
}

export interface InputState {
  ref: PipelineInputRef;
  manifestDigest: string;
  filesTotal: number;
  bytesTotal: number;
  /** Symlinks the input's link policy left out (a path input with any). */
  linksSkipped?: SkippedLinks;
}

export interface StageState {
  name: string;
  status: 'pending' | 'running' | 'finished';
  executions: number;
  summary?: string;
  artifacts?: StageArtifacts;
}

/** One step the workflow ran, for the `timeline` query and `ferry status`. */
export interface TimelineStep {
  step: string;
  stage?: string;
  startedAt: string;
  endedAt?: string;
  outcome?: 'ok' | 'failed';
  detail?: string;
}

export interface PipelineState {
  sessionId: string;
  status: 'provisioning' | 'syncing' | 'running' | 'collecting' | 'releasing' | 'completed' | 'failed';
  stage?: string;
  stages: StageState[];
  session?: SessionHandle;
  inputs: InputState[];
  /** Composite manifest of everything verified under data/. */
  dataManifestDigest?: string;
  /** Boot id data/ was last verified on. */
  verifiedBootId?: string;
  /** Sessions restarts detected (new boot id) and healed by landing again. */
  restartsDetected: number;
  executionsTotal: number;
  /** Runs of this workflow id so far (continue-as-new). */
  run: number;
  /** The latest executions (at most EXECUTION_RECORDS_KEPT), oldest first. Absent in states recorded before streaming. */
  executions?: ExecutionRecord[];
}

/** Execution records the state keeps: enough to re-attach to any recent execution, small enough for every query and carry-over. */
export const EXECUTION_RECORDS_KEPT = 100;

export interface PipelineResult {
  sessionId: string;
  stages: StageState[];
  inputs: InputState[];
  dataManifestDigest?: string;
  executionsTotal: number;
  restartsDetected: number;
}

/** What one run hands the next on continue-as-new. */
export interface PipelineCarryOver {
  state: PipelineState;
  timeline: TimelineStep[];
  /** Executions per stage so far, so new execution ids never repeat an old one. */
  executionCounter: number;
  pendingInputs: PipelineInputRef[];
  stageIndex: number;
  stageFirstExecutionDone: boolean;
}

export function pipelineWorkflowId(sessionId: string): string {
  return `pipeline-${sessionId}`;
}

const MAX_CODE_BYTES = 100 * 1024;
const MAX_TIMEOUT_SECONDS = 24 * 3600;
const STAGE_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

export function inputRefProblem(ref: unknown, where: string): string | undefined {
  if (typeof ref !== 'object' || ref === null) return `${where} must be {"path": "..."} or {"s3": "s3://bucket/prefix/"}`;
  const { path, s3 } = ref as { path?: unknown; s3?: unknown };
  if ((path === undefined) === (s3 === undefined)) return `${where} must have exactly one of "path" or "s3"`;
  if (path !== undefined && (typeof path !== 'string' || path === '')) return `${where}.path must be a non-empty string`;
  const linksProblem = path !== undefined ? linkPolicyProblem((ref as { links?: unknown }).links, `${where}.links`) : (ref as { links?: unknown }).links !== undefined ? `${where}.links applies to "path" inputs only` : undefined;
  if (linksProblem) return linksProblem;
  if (s3 !== undefined && (typeof s3 !== 'string' || !/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/.test(s3))) return `${where}.s3 must look like s3://bucket/prefix/, got ${JSON.stringify(s3)}`;
  return undefined;
}

export function inputRefsProblems(inputs: unknown, where: string): string[] {
  if (!Array.isArray(inputs)) return [`${where} must be an array`];
  return inputs.map((ref, i) => inputRefProblem(ref, `${where}[${i}]`)).filter((p): p is string => p !== undefined);
}

/** Validates and fills defaults; returns the problems instead of throwing so callers choose the error type. */
export function normalizePipelineInput(raw: unknown): { ok: true; input: NormalizedPipelineInput } | { ok: false; problems: string[] } {
  if (typeof raw !== 'object' || raw === null) return { ok: false, problems: ['input must be a JSON object'] };
  const input = raw as Partial<PipelineInput>;
  const problems: string[] = [];
  const sessionProblem = sessionIdProblem(input.sessionId);
  if (sessionProblem) problems.push(sessionProblem);
  const target = input.target ?? DEFAULT_TARGET;
  const targetProblem = targetRefProblem(target);
  if (targetProblem) problems.push(targetProblem);
  const inputs = input.inputs ?? [];
  problems.push(...inputRefsProblems(inputs, 'inputs'));
  const stages = input.stages ?? [...DEFAULT_STAGES];
  if (!Array.isArray(stages) || stages.length === 0) problems.push('stages must be a non-empty array of names');
  else {
    for (const stage of stages) if (typeof stage !== 'string' || !STAGE_NAME.test(stage)) problems.push(`stage name ${JSON.stringify(stage)} must match ${STAGE_NAME}`);
    if (new Set(stages).size !== stages.length) problems.push('stage names must be unique');
  }
  let stageIdleTimeoutMs = 30 * 60_000;
  if (input.stageIdleTimeout !== undefined) {
    let parsed: number | undefined;
    try {
      parsed = typeof input.stageIdleTimeout === 'string' ? parseDurationMs(input.stageIdleTimeout) : undefined;
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || parsed <= 0) problems.push(`stageIdleTimeout ${JSON.stringify(input.stageIdleTimeout)} must be a duration like "30m", "90s" or "2h"`);
    else stageIdleTimeoutMs = parsed;
  }
  const maxHistoryEvents = input.maxHistoryEvents ?? 10_000;
  if (!Number.isInteger(maxHistoryEvents) || maxHistoryEvents < 200) problems.push('maxHistoryEvents must be a whole number of at least 200');
  if (problems.length) return { ok: false, problems };
  return { ok: true, input: { sessionId: input.sessionId!, target, inputs: inputs as PipelineInputRef[], stages, stageIdleTimeoutMs, maxHistoryEvents } };
}

const PIPELINE_STATUSES: readonly PipelineState['status'][] = ['provisioning', 'syncing', 'running', 'collecting', 'releasing', 'completed', 'failed'];
const STAGE_STATUSES: readonly StageState['status'][] = ['pending', 'running', 'finished'];

const isJsonObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const isCount = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
const countProblem = (value: unknown, where: string) => (isCount(value) ? undefined : `${where} must be a whole number of at least 0, got ${JSON.stringify(value)}`);
const optionalStringProblem = (value: unknown, where: string) => (value === undefined || typeof value === 'string' ? undefined : `${where} must be a string, got ${JSON.stringify(value)}`);

function stageStateProblems(stage: unknown, where: string): string[] {
  if (!isJsonObject(stage)) return [`${where} must be an object`];
  const problems: string[] = [];
  if (typeof stage.name !== 'string' || !STAGE_NAME.test(stage.name)) problems.push(`${where}.name ${JSON.stringify(stage.name)} must match ${STAGE_NAME}`);
  if (!STAGE_STATUSES.includes(stage.status as StageState['status'])) problems.push(`${where}.status ${JSON.stringify(stage.status)} is not one of ${STAGE_STATUSES.join(', ')}`);
  const executions = countProblem(stage.executions, `${where}.executions`);
  if (executions) problems.push(executions);
  return problems;
}

function inputStateProblems(inputState: unknown, where: string): string[] {
  if (!isJsonObject(inputState)) return [`${where} must be an object`];
  const problems = [
    inputRefProblem(inputState.ref, `${where}.ref`),
    isSha256Hex(inputState.manifestDigest) ? undefined : `${where}.manifestDigest must be a sha256 hex digest, got ${JSON.stringify(inputState.manifestDigest)}`,
    countProblem(inputState.filesTotal, `${where}.filesTotal`),
    countProblem(inputState.bytesTotal, `${where}.bytesTotal`),
  ];
  return problems.filter((p): p is string => p !== undefined);
}

function pipelineStateProblems(state: unknown, where: string): string[] {
  if (!isJsonObject(state)) return [`${where} must be an object`];
  const problems: (string | undefined)[] = [];
  if (typeof state.sessionId !== 'string' || state.sessionId === '') problems.push(`${where}.sessionId must be a non-empty string`);
  if (!PIPELINE_STATUSES.includes(state.status as PipelineState['status'])) problems.push(`${where}.status ${JSON.stringify(state.status)} is not one of ${PIPELINE_STATUSES.join(', ')}`);
  problems.push(optionalStringProblem(state.stage, `${where}.stage`));
  if (!Array.isArray(state.stages) || state.stages.length === 0) problems.push(`${where}.stages must be a non-empty array`);
  else problems.push(...state.stages.flatMap((stage, i) => stageStateProblems(stage, `${where}.stages[${i}]`)));
  if (state.session !== undefined) problems.push(...sessionHandleProblems(state.session, `${where}.session`));
  if (!Array.isArray(state.inputs)) problems.push(`${where}.inputs must be an array`);
  else problems.push(...state.inputs.flatMap((inputState, i) => inputStateProblems(inputState, `${where}.inputs[${i}]`)));
  if (state.dataManifestDigest !== undefined && !isSha256Hex(state.dataManifestDigest)) problems.push(`${where}.dataManifestDigest must be a sha256 hex digest, got ${JSON.stringify(state.dataManifestDigest)}`);
  problems.push(optionalStringProblem(state.verifiedBootId, `${where}.verifiedBootId`));
  for (const field of ['restartsDetected', 'executionsTotal', 'run'] as const) problems.push(countProblem(state[field], `${where}.${field}`));
  if (state.executions !== undefined) problems.push(...executionRecordsProblems(state.executions, `${where}.executions`));
  return problems.filter((p): p is string => p !== undefined);
}

const EXECUTION_STATUSES: readonly ExecutionRecord['status'][] = ['running', 'finished', 'failed'];

/** The records a carried-over state holds: the fields readers look executions up by and follow them with. */
function executionRecordsProblems(records: unknown, where: string): string[] {
  if (!Array.isArray(records)) return [`${where} must be an array`];
  if (records.length > EXECUTION_RECORDS_KEPT) return [`${where} holds ${records.length} records; at most ${EXECUTION_RECORDS_KEPT}`];
  const bad = records.findIndex(
    (record) =>
      !isJsonObject(record) ||
      !['requestId', 'executionId', 'stage', 'startedAt', 'logChunks'].every((field) => typeof record[field] === 'string') ||
      !EXECUTION_STATUSES.includes(record.status as ExecutionRecord['status']),
  );
  return bad === -1 ? [] : [`${where}[${bad}] must be an object with string requestId, executionId, stage, startedAt, logChunks and a status of ${EXECUTION_STATUSES.join(', ')}`];
}

function timelineProblems(timeline: unknown, where: string): string[] {
  if (!Array.isArray(timeline)) return [`${where} must be an array`];
  const bad = timeline.findIndex((entry) => !isJsonObject(entry) || typeof entry.step !== 'string' || typeof entry.startedAt !== 'string');
  return bad === -1 ? [] : [`${where}[${bad}] must be an object with string "step" and "startedAt"`];
}

/**
 * Problems with pipelineWorkflow's second argument, which only the workflow
 * passes itself on continue-as-new: the shape of everything the next run
 * reads from it. Anyone can start a workflow with extra arguments, so it is
 * checked like any input; empty when it may be used.
 */
export function pipelineCarryOverProblems(raw: unknown): string[] {
  if (!isJsonObject(raw)) {
    const kind = raw === null ? 'null' : Array.isArray(raw) ? 'an array' : `a ${typeof raw}`;
    return [`the carry-over must be a JSON object (only the workflow itself passes one, on continue-as-new), got ${kind}`];
  }
  const problems: (string | undefined)[] = [
    ...pipelineStateProblems(raw.state, 'state'),
    ...timelineProblems(raw.timeline, 'timeline'),
    countProblem(raw.executionCounter, 'executionCounter'),
    ...inputRefsProblems(raw.pendingInputs, 'pendingInputs'),
    typeof raw.stageFirstExecutionDone === 'boolean' ? undefined : `stageFirstExecutionDone must be true or false, got ${JSON.stringify(raw.stageFirstExecutionDone)}`,
  ];
  const stages = isJsonObject(raw.state) && Array.isArray(raw.state.stages) ? raw.state.stages : [];
  // The run indexes state.stages with it; a run only continues as new while a stage is current.
  if (!isCount(raw.stageIndex) || raw.stageIndex >= stages.length) problems.push(`stageIndex ${JSON.stringify(raw.stageIndex)} must be the index of one of the ${stages.length} stages in state.stages`);
  return problems.filter((p): p is string => p !== undefined);
}

/** Problems with an execute request; empty when it may run. */
export function executeRequestProblems(raw: unknown): string[] {
  if (typeof raw !== 'object' || raw === null) return ['execute needs {"code": "...", "language": "bash"|"python"|"node"}'];
  const { code, language, timeoutSeconds } = raw as Partial<ExecuteRequest>;
  const problems: string[] = [];
  if (typeof code !== 'string' || code.trim() === '') problems.push('code must be a non-empty string');
  else if (code.length > MAX_CODE_BYTES) problems.push(`code is ${code.length} characters; at most ${MAX_CODE_BYTES} (ship bigger programs as inputs)`);
  else if (code.includes('\0')) problems.push('code must not contain NUL characters');
  if (!EXECUTE_LANGUAGES.includes(language as ExecuteLanguage)) problems.push(`language ${JSON.stringify(language)} is not one of ${EXECUTE_LANGUAGES.join(', ')}`);
  if (timeoutSeconds !== undefined && (typeof timeoutSeconds !== 'number' || !(timeoutSeconds > 0) || timeoutSeconds > MAX_TIMEOUT_SECONDS)) {
    problems.push(`timeoutSeconds must be a number above 0 and at most ${MAX_TIMEOUT_SECONDS}`);
  }
  return problems;
}

/** argv running `code` with the language's interpreter. */
export function interpreterCommand(language: ExecuteLanguage, code: string): string[] {
  switch (language) {
    case 'bash':
      return ['bash', '-c', code];
    case 'python':
      return ['python3', '-c', code];
    case 'node':
      return ['node', '-e', code];
  }
}

export function describeInputRef(ref: PipelineInputRef): string {
  return 'path' in ref ? ref.path : ref.s3;
}
