/**
 * The tools `ferry mcp` offers an agent: a pipeline session, each tool a
 * thin call into the typed client the CLI uses (client/pipelineClient),
 * so everything still goes through the workflow: code runs once per
 * request id, only on verified inputs, and is in history.
 *
 * Results are structured and bounded (output tails, at most 100 files, a
 * byte range of a file): a 50 MB stdout stays in S3, and the result says
 * where. Every failure is a tool result with `isError`, its failure type
 * (core/errors) and a one-line cause, never an exception out of the server.
 */
import { createHash, randomUUID } from 'node:crypto';
import { WorkflowFailedError, WorkflowNotFoundError, isGrpcServiceError, ServiceError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { InvalidArgumentError } from 'commander';
import { z } from 'zod';
import type { StoredObjects } from '../activities/blobStore';
import { workflowUiUrl, type FerryConfig } from '../core/config';
import { FailureType } from '../core/errors';
import { LOG_STREAMS, type LogStream } from '../core/executionLogs';
import { unsafePathReason } from '../core/paths';
import { EXECUTE_LANGUAGES, pipelineWorkflowId, type ExecuteResult, type PipelineState } from '../core/pipeline';
import { shellQuote } from '../core/shellScripts';
import { LINK_POLICIES, sessionIdProblem } from '../core/sync';
import type { SessionFilesInput, SessionFilesResult } from '../workflows/files';
import { CommandError } from './errors';
import { formatExplanation } from './explain';
import { analyseWorkflow } from './history';
import { ExecuteRefusedError, FollowError, PipelineClient } from './pipelineClient';
import { parseInputRef } from './pipelineCommands';
import { TARGET_FORMS, targetArgument } from './targets';
import { TemporalUnreachableError } from './temporal';

/** What the tools reach: Temporal (connected on first use), the configuration and the blob store the workflows write to. */
export interface ToolContext {
  temporal: () => Promise<Client>;
  config: FerryConfig;
  blobs: StoredObjects;
}

/** What a tool call may do besides answering: report progress, notice the caller gave up. */
export interface ToolCall {
  progress?: (progress: number, message: string) => Promise<void>;
  signal: AbortSignal;
}

export interface ToolResult {
  [key: string]: unknown;
  content: { type: 'text'; text: string }[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

interface Tool<Shape extends z.ZodRawShape> {
  name: string;
  title: string;
  description: string;
  input: z.ZodObject<Shape>;
  run(args: z.infer<z.ZodObject<Shape>>, context: ToolContext, call: ToolCall): Promise<{ structured: Record<string, unknown>; text?: string }>;
}

/** A tool, its input's type read from its schema. */
function defineTool<Shape extends z.ZodRawShape>(tool: Tool<Shape>): Tool<Shape> {
  return tool;
}

/** Bad tool input the schema cannot see (a session id's rules, a path that leaves the session). */
class ToolInputError extends Error {}

/** Bytes read_file returns at most: enough for a page of a file, never a whole big one into the model's context. */
const READ_MAX_BYTES = 1 << 20;
const READ_DEFAULT_BYTES = 64 << 10;
/** Characters of explain's text: the diagnosis, not every step of a long history. */
const EXPLAIN_MAX_CHARS = 12_000;
/** finish_stage waits this long for the stage's artifacts to be collected before it answers without them. */
const FINISH_WAIT_MS = 120_000;
/** start_session waits this long for the session and its verified inputs (an ECS task can take minutes to start). */
const READY_WAIT_MS = 15 * 60_000;
/** How often a waiting tool asks the workflow again. */
const POLL_MS = 250;
/** Progress notifications at most this often: the model's client shows the latest line, not every one. */
const PROGRESS_EVERY_MS = 250;
const PROGRESS_LINE_CHARS = 200;
/** Executions shown by session_status. */
const STATUS_EXECUTIONS = 10;

const sessionId = z.string().describe('the pipeline session id (its workflow is pipeline-<session_id>)');

function checkedWorkflowId(session: string): string {
  const problem = sessionIdProblem(session);
  if (problem) throw new ToolInputError(problem);
  return pipelineWorkflowId(session);
}

const pipelinesOf = async (context: ToolContext) => new PipelineClient(await context.temporal(), context.config.temporal.taskQueue);

/** The bucket-qualified location of an S3 key, as people and tools name it. */
const s3Url = (context: ToolContext, key: string) => `s3://${context.config.s3.bucket}/${key}`;

function executionResult(context: ToolContext, workflowId: string, requestId: string, result: ExecuteResult): Record<string, unknown> {
  return {
    request_id: result.requestId ?? requestId,
    execution_id: result.executionId,
    stage: result.stage,
    exit_code: result.exitCode,
    signal: result.signal,
    timed_out: result.timedOut,
    duration_ms: result.durationMs,
    inputs_verified: result.inputsVerified ?? false,
    stdout_tail: result.stdoutTail,
    stderr_tail: result.stderrTail,
    stdout_bytes: result.stdoutBytes,
    stderr_bytes: result.stderrBytes,
    output_truncated: Buffer.byteLength(result.stdoutTail) < result.stdoutBytes || Buffer.byteLength(result.stderrTail) < result.stderrBytes,
    logs: {
      stdout: s3Url(context, result.logKey),
      stderr: s3Url(context, result.stderrLogKey),
      ...(result.logChunks ? { chunks: s3Url(context, context.blobs.keyPrefix + result.logChunks) } : {}),
      replay: `ferry exec --attach ${workflowId} ${result.requestId ?? requestId}`,
    },
    boot_id: result.bootId,
  };
}

/**
 * The pipeline's state once its session is provisioned and its inputs are
 * verified (or READY_WAIT_MS passed: then as it is); a pipeline that failed
 * on the way fails the call with its failure.
 */
async function untilReady(pipelines: PipelineClient, workflowId: string, call: ToolCall): Promise<PipelineState> {
  const deadline = Date.now() + READY_WAIT_MS;
  let told = '';
  let notices = 0;
  for (;;) {
    const state = await pipelines.state(workflowId);
    if (state.status === 'failed') await pipelines.result(workflowId);
    if ((state.status !== 'provisioning' && state.status !== 'syncing') || Date.now() >= deadline || call.signal.aborted) return state;
    if (state.status !== told) await call.progress?.(++notices, `session ${state.status}`).catch(() => undefined);
    told = state.status;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** The last complete line of some output, cut to a readable length, for a progress message. */
function lastLine(text: string): string | undefined {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const line = lines.at(-1);
  return line === undefined ? undefined : line.length > PROGRESS_LINE_CHARS ? `${line.slice(0, PROGRESS_LINE_CHARS)}…` : line;
}

/**
 * Progress notifications for a running execution, from the chunks it ships
 * (the same follower `ferry exec --follow` uses): the bytes of output so far
 * and its latest line. Stops when `stop` aborts; its own failures only end
 * the notifications, never the call.
 */
async function reportProgress(context: ToolContext, pipelines: PipelineClient, workflowId: string, requestId: string, call: ToolCall, stop: AbortSignal): Promise<void> {
  const progress = call.progress;
  if (!progress) return;
  let bytes = 0;
  let lastSentAt = 0;
  const latest: Partial<Record<LogStream, string>> = {};
  const write = (stream: LogStream, chunk: Buffer) => {
    bytes += chunk.length;
    const line = lastLine(chunk.toString('utf8'));
    if (line !== undefined) latest[stream] = line;
    if (Date.now() - lastSentAt < PROGRESS_EVERY_MS) return;
    lastSentAt = Date.now();
    const message = LOG_STREAMS.filter((s) => latest[s] !== undefined).map((s) => `${s}: ${latest[s]}`).join(' | ');
    progress(bytes, message || `${bytes} bytes of output`).catch(() => undefined);
  };
  await pipelines.followExecution(workflowId, requestId, context.blobs, { write, signal: stop }).catch(() => undefined);
}

const startSession = defineTool({
  name: 'start_session',
  title: 'Start (or attach to) a pipeline session',
  description:
    "Starts the pipeline of a session: a compute session on the target with the inputs synced into data/ and verified there (sha256 on the target), then the stages (default coder, validator, reporter). If that session's pipeline is already running, attaches to it instead. Answers once the inputs are verified and the first stage can run code, with the inputs' manifest digests.",
  input: z.object({
    session_id: sessionId,
    inputs: z.array(z.string()).default([]).describe('folders (as the worker sees them) or s3://bucket/prefix/ to sync into data/'),
    target: z.string().optional().describe(`where the session runs: ${TARGET_FORMS()}`),
    stages: z.array(z.string()).optional().describe('stage names in order (default coder, validator, reporter)'),
    idle_timeout: z.string().optional().describe('fail a stage that sees no call for this long, e.g. 30m (default)'),
    links: z.enum(LINK_POLICIES).optional().describe('what folder inputs do with symlinks (default skip)'),
  }),
  async run(args, context, call) {
    const workflowId = checkedWorkflowId(args.session_id);
    const inputs = args.inputs.map((input) => parseInputRef(input, args.links));
    const target = args.target === undefined ? undefined : targetArgument(args.target);
    const client = await context.temporal();
    const running = await client.workflow
      .getHandle(workflowId)
      .describe()
      .then((description) => description.status.name === 'RUNNING')
      .catch((err: unknown) => {
        if (err instanceof WorkflowNotFoundError) return false;
        throw err;
      });
    const pipelines = await pipelinesOf(context);
    const started = await pipelines.start({ sessionId: args.session_id, inputs, target, stages: args.stages, stageIdleTimeout: args.idle_timeout });
    const state = await untilReady(pipelines, workflowId, call);
    return {
      structured: {
        ...statusOf(context, workflowId, state),
        session_id: args.session_id,
        run_id: started.runId,
        attached: running,
        web_ui_url: workflowUiUrl(context.config, started.workflowId, started.runId),
      },
    };
  },
});

const executeCode = defineTool({
  name: 'execute_code',
  title: 'Run code in the current stage',
  description:
    "Runs code in the session's current stage, with the session root as working directory (data/ holds the verified inputs, artifacts/ is collected when the stage finishes), once the inputs are verified on the target. Returns the exit code, the last 4 KB of stdout and stderr, the duration, the stage, whether the inputs were re-verified first, and where the full logs are. Progress notifications carry the output as it is produced. Send the same request_id again (after a timeout or a lost connection) to get the same execution's result: it never runs twice.",
  input: z.object({
    session_id: sessionId,
    language: z.enum(EXECUTE_LANGUAGES).describe('interpreter'),
    code: z.string().describe('the program text'),
    timeout_seconds: z.number().positive().max(86_400).optional().describe('kill the code after this long (default 600)'),
    request_id: z.string().min(1).max(200).optional().describe('idempotency key; default: a new one, returned in the result'),
  }),
  async run(args, context, call) {
    const workflowId = checkedWorkflowId(args.session_id);
    const requestId = args.request_id ?? randomUUID();
    const pipelines = await pipelinesOf(context);
    const stop = new AbortController();
    const progress = reportProgress(context, pipelines, workflowId, requestId, call, stop.signal);
    try {
      const result = await pipelines.execute(workflowId, { language: args.language, code: args.code, timeoutSeconds: args.timeout_seconds }, { requestId });
      return { structured: executionResult(context, workflowId, requestId, result) };
    } finally {
      stop.abort();
      await progress;
    }
  },
});

const listFiles = defineTool({
  name: 'list_files',
  title: 'List files in the session',
  description: 'Lists data/ (the verified inputs) or artifacts/ (what the stages wrote) in the session, with each size and sha256 computed on the target now (at most 100 files; the whole listing is stored as a manifest in S3).',
  input: z.object({ session_id: sessionId, dir: z.enum(['data', 'artifacts']).default('data') }),
  async run(args, context) {
    const workflowId = checkedWorkflowId(args.session_id);
    const state = await (await pipelinesOf(context)).state(workflowId);
    if (!state.session) throw new ToolInputError(`session ${args.session_id} is not provisioned yet (the pipeline is ${state.status})`);
    const client = await context.temporal();
    const input: SessionFilesInput = { sessionId: args.session_id, target: state.session.target, dest: args.dir };
    const listing = (await client.workflow.execute('sessionFilesWorkflow', {
      taskQueue: context.config.temporal.taskQueue,
      workflowId: `files-${args.session_id}-${randomUUID()}`,
      args: [input],
    })) as SessionFilesResult;
    return {
      structured: {
        dir: args.dir,
        files_total: listing.filesTotal,
        bytes_total: listing.bytesTotal,
        files: listing.files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256 })),
        truncated: listing.filesTotal > listing.files.length,
        manifest: s3Url(context, listing.manifestKey),
        boot_id: listing.bootId,
      },
    };
  },
});

/** Reads bytes [offset, offset + length) of a session file: its size on stderr, the bytes on stdout (which the workflow stores whole as a blob). */
function readRangeScript(path: string, offset: number, length: number): string {
  return [
    `f=${shellQuote(path)}`,
    `if [ ! -f "$f" ]; then echo "not a regular file: $f" >&2; exit 3; fi`,
    `wc -c < "$f" >&2`,
    `tail -c +${offset + 1} "$f" | head -c ${length}`,
  ].join('\n');
}

const readFile = defineTool({
  name: 'read_file',
  title: 'Read part of a session file',
  description: `Reads a byte range of a file in the session (a path relative to the session root, e.g. data/x.csv or artifacts/report.md), as text or base64, at most ${READ_MAX_BYTES} bytes per call. Runs as an execution of the current stage, so it reads the verified session like the code does. Text that is not valid UTF-8 comes back as base64.`,
  input: z.object({
    session_id: sessionId,
    path: z.string().describe('file path relative to the session root'),
    offset: z.number().int().min(0).default(0).describe('first byte to read'),
    length: z.number().int().min(1).max(READ_MAX_BYTES).default(READ_DEFAULT_BYTES).describe('bytes to read at most'),
    encoding: z.enum(['text', 'base64']).default('text'),
  }),
  async run(args, context) {
    const workflowId = checkedWorkflowId(args.session_id);
    const unsafe = unsafePathReason(args.path);
    if (unsafe) throw new ToolInputError(`path ${JSON.stringify(args.path)}: ${unsafe}`);
    const result = await (await pipelinesOf(context)).execute(workflowId, { language: 'bash', code: readRangeScript(args.path, args.offset, args.length) });
    if (result.exitCode !== 0) throw new ToolInputError(`cannot read ${args.path}: ${result.stderrTail.trim().split('\n').at(-1) ?? `exit ${result.exitCode}`}`);
    const bytes = await context.blobs.getBlob(result.logKey.split('/').at(-1)!);
    const fileSize = Number(result.stderrTail.trim());
    let text: string | undefined;
    if (args.encoding === 'text') {
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        text = undefined;
      }
    }
    return {
      structured: {
        path: args.path,
        offset: args.offset,
        bytes_read: bytes.length,
        file_size: fileSize,
        eof: args.offset + bytes.length >= fileSize,
        encoding: text === undefined ? 'base64' : 'text',
        content: text ?? bytes.toString('base64'),
        sha256_of_range: createHash('sha256').update(bytes).digest('hex'),
        execution_id: result.executionId,
      },
    };
  },
});

const finishStage = defineTool({
  name: 'finish_stage',
  title: 'Finish the current stage',
  description: "Ends a stage (the current one unless named): its artifacts/ are stored in S3 and the next stage begins. Answers once the artifacts are collected (after the last stage, once the session is released and the pipeline completed), with what was collected. Naming the stage makes a resent call harmless.",
  input: z.object({
    session_id: sessionId,
    summary: z.string().max(4000).optional().describe('what the stage did, kept in the result'),
    stage: z.string().optional().describe('the stage to finish (default the current one)'),
  }),
  async run(args, context, call) {
    const workflowId = checkedWorkflowId(args.session_id);
    const pipelines = await pipelinesOf(context);
    const before = await pipelines.state(workflowId);
    const stage = args.stage ?? before.stage;
    if (!stage || !before.stages.some((s) => s.name === stage)) throw new ToolInputError(`pipeline ${workflowId} has no stage ${JSON.stringify(stage ?? null)} to finish (stages: ${before.stages.map((s) => s.name).join(', ')})`);
    await pipelines.finishStage(workflowId, args.summary, { stage });
    const deadline = Date.now() + FINISH_WAIT_MS;
    let state = before;
    // After the last stage the session is released too: answer once the pipeline says how it ended.
    const settled = (current: PipelineState) => current.status === 'failed' || (current.stages.find((s) => s.name === stage)?.status === 'finished' && current.status !== 'collecting' && current.status !== 'releasing');
    while (!settled(state) && Date.now() < deadline && !call.signal.aborted) {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      state = await pipelines.state(workflowId);
    }
    const finished = state.stages.find((s) => s.name === stage)!;
    const artifacts = finished.artifacts;
    return {
      structured: {
        stage,
        stage_status: finished.status,
        pipeline_status: state.status,
        next_stage: state.status === 'running' && state.stage !== stage ? state.stage : null,
        artifacts: artifacts
          ? {
              files_total: artifacts.filesTotal,
              bytes_total: artifacts.bytesTotal,
              manifest: s3Url(context, artifacts.manifestKey),
              files: artifacts.files.slice(0, 20).map((f) => (f.key === undefined ? { path: f.path, size: f.size, sha256: f.sha256, link: f.link } : { path: f.path, size: f.size, sha256: f.sha256, location: s3Url(context, f.key) })),
            }
          : null,
      },
    };
  },
});

function statusOf(context: ToolContext, workflowId: string, state: PipelineState): Record<string, unknown> {
  return {
    workflow_id: workflowId,
    status: state.status,
    stage: state.stage ?? null,
    stages: state.stages.map((s) => ({ name: s.name, status: s.status, executions: s.executions, summary: s.summary ?? null, artifacts_files: s.artifacts?.filesTotal ?? null })),
    inputs: state.inputs.map((i) => ({ input: 'path' in i.ref ? i.ref.path : i.ref.s3, files: i.filesTotal, bytes: i.bytesTotal, manifest_digest: i.manifestDigest })),
    data_manifest_digest: state.dataManifestDigest ?? null,
    session: state.session ? { target: state.session.target.kind, description: state.session.description ?? null, boot_id: state.session.bootId, verified_boot_id: state.verifiedBootId ?? null } : null,
    restarts_detected: state.restartsDetected,
    executions_total: state.executionsTotal,
    recent_executions: (state.executions ?? []).slice(-STATUS_EXECUTIONS).map((e) => ({
      request_id: e.requestId,
      execution_id: e.executionId,
      stage: e.stage,
      status: e.status,
      exit_code: e.exitCode ?? null,
      inputs_verified: e.inputsVerified,
      chunks: s3Url(context, context.blobs.keyPrefix + e.logChunks),
    })),
    web_ui_url: workflowUiUrl(context.config, workflowId),
  };
}

const sessionStatus = defineTool({
  name: 'session_status',
  title: 'Pipeline state',
  description: 'The pipeline of a session: its status and current stage, each stage with its executions and artifacts, the verified inputs with their manifest digests, the session and its boot id, and the latest executions.',
  input: z.object({ session_id: sessionId }),
  async run(args, context) {
    const workflowId = checkedWorkflowId(args.session_id);
    return { structured: statusOf(context, workflowId, await (await pipelinesOf(context)).state(workflowId)) };
  },
});

const explain = defineTool({
  name: 'explain',
  title: 'Diagnose the pipeline from its history',
  description: "What happened to a session's pipeline, read from its workflow history: a one-line verdict, failed or retried steps with their failure types, the stages, gaps longer than gap_seconds and their causes, and the session's story (restarts, re-landings, verifications).",
  input: z.object({ session_id: sessionId, gap_seconds: z.number().positive().default(30).describe('report gaps longer than this') }),
  async run(args, context) {
    const workflowId = checkedWorkflowId(args.session_id);
    const analysis = await analyseWorkflow(await context.temporal(), context.config, workflowId, args.gap_seconds * 1000);
    const full = formatExplanation(analysis);
    const text = full.length > EXPLAIN_MAX_CHARS ? `${full.slice(0, EXPLAIN_MAX_CHARS)}\n… (cut; run ferry explain ${workflowId} for all of it)` : full;
    return {
      text,
      structured: {
        workflow_id: workflowId,
        status: analysis.status,
        verdict: analysis.verdict,
        failed_steps: analysis.problems.slice(0, 20).map((p) => ({ outcome: p.outcome, summary: p.summary })),
        gaps: analysis.gaps.length,
        explanation: text,
      },
    };
  },
});

export const TOOLS: readonly Tool<z.ZodRawShape>[] = [startSession, executeCode, listFiles, readFile, finishStage, sessionStatus, explain];

/** The gRPC codes that mean Temporal (or the workers behind a query) did not answer: UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, RESOURCE_EXHAUSTED. */
const UNANSWERED_GRPC_CODES = new Set([14, 4, 1, 8]);

/** A failure as an agent sees it: its type and one line saying why. */
export function toolFailure(err: unknown): { type: string; message: string } {
  const message = (text: string) => text.split('\n')[0].trim().slice(0, 500);
  if (err instanceof ToolInputError || err instanceof InvalidArgumentError || err instanceof CommandError) return { type: FailureType.InvalidInput, message: message(err.message) };
  if (err instanceof ExecuteRefusedError) {
    // The update validator refuses with a plain error: a request that cannot run (bad, or sent to a pipeline that is ending).
    const type = err.type && err.type !== 'Error' ? err.type : FailureType.InvalidInput;
    return { type, message: message(err.message) };
  }
  if (err instanceof FollowError) return { type: err.type, message: message(err.message) };
  if (err instanceof WorkflowNotFoundError) return { type: FailureType.WorkflowNotFound, message: message(`no pipeline ${err.workflowId}: start it with start_session`) };
  if (err instanceof WorkflowFailedError) {
    const cause = err.cause;
    return { type: cause instanceof ApplicationFailure && cause.type ? cause.type : 'WorkflowFailed', message: message(cause?.message ?? err.message) };
  }
  if (err instanceof ApplicationFailure) return { type: err.type ?? 'ApplicationFailure', message: message(err.message) };
  const grpc = err instanceof ServiceError ? err.cause : err;
  if (err instanceof TemporalUnreachableError || (isGrpcServiceError(grpc) && UNANSWERED_GRPC_CODES.has(grpc.code))) {
    return { type: FailureType.TemporalUnavailable, message: message(`Temporal or its workers did not answer: ${(err as Error).message}`) };
  }
  const error = err instanceof Error ? err : new Error(String(err));
  return { type: error.name, message: message(error.message) };
}

/** Runs a tool by name on raw arguments: bad input, failures and crashes all come back as tool errors. */
export async function callTool(name: string, rawArgs: unknown, context: ToolContext, call: ToolCall): Promise<ToolResult> {
  const tool = TOOLS.find((t) => t.name === name);
  const failed = (failure: { type: string; message: string }): ToolResult => ({
    isError: true,
    content: [{ type: 'text', text: `${failure.type}: ${failure.message}` }],
    structuredContent: { error: failure },
  });
  if (!tool) return failed({ type: FailureType.InvalidInput, message: `no tool ${JSON.stringify(name)}; the tools are ${TOOLS.map((t) => t.name).join(', ')}` });
  const parsed = tool.input.safeParse(rawArgs ?? {});
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(arguments)'}: ${issue.message}`);
    return failed({ type: FailureType.InvalidInput, message: `${name}: ${problems.join('; ')}` });
  }
  try {
    const { structured, text } = await tool.run(parsed.data, context, call);
    return { content: [{ type: 'text', text: text ?? JSON.stringify(structured) }], structuredContent: structured };
  } catch (err) {
    return failed(toolFailure(err));
  }
}

/** The tools as MCP lists them: name, title, description and the JSON Schema of their input. */
export function toolList(): { name: string; title: string; description: string; inputSchema: { type: 'object'; [key: string]: unknown } }[] {
  return TOOLS.map((tool) => {
    const { $schema: _ignored, ...schema } = z.toJSONSchema(tool.input, { io: 'input' }) as Record<string, unknown>;
    return { name: tool.name, title: tool.title, description: tool.description, inputSchema: { ...schema, type: 'object' } };
  });
}
