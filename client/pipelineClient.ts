/**
 * A small typed client for agent programs: start a pipeline for a session,
 * run code in its current stage, follow its output as it runs, finish
 * stages, add inputs, read its state.
 *
 *   const pipelines = new PipelineClient(client, 'ferry');
 *   const { workflowId } = await pipelines.start({ sessionId: 'demo', inputs: [{ path: './data' }] });
 *   const run = await pipelines.execute(workflowId, { language: 'bash', code: 'ls -la ./data/' });
 *   await pipelines.finishStage(workflowId, 'analysis written', { stage: 'coder' });
 *
 * Output is read from the chunks the workflow ships to S3 (followExecution),
 * not from the workflow: a stream can be re-attached after this process,
 * the worker or the session ended.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ServiceError, WorkflowNotFoundError, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, isGrpcServiceError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { StoredObjects } from '../activities/blobStore';
import { LOG_STREAMS, chunksFromListing, readsFrom, type LogStream } from '../core/executionLogs';
import {
  EXECUTION_RECORDS_KEPT,
  pipelineWorkflowId,
  type ExecuteRequest,
  type ExecuteResult,
  type ExecutionRecord,
  type FinishStageRequest,
  type PipelineInput,
  type PipelineInputRef,
  type PipelineResult,
  type PipelineState,
  type TimelineStep,
} from '../core/pipeline';
import { abortSignal, addInputsSignal, executeUpdate, finishStageSignal, pipelineStateQuery, pipelineTimelineQuery } from '../workflows/definitions';

export interface StartedPipeline {
  workflowId: string;
  runId: string;
}

/** An execute the workflow refused (bad request, pipeline ending) or could not run (session failed verification). */
export class ExecuteRefusedError extends Error {
  constructor(
    message: string,
    readonly type: string | undefined,
  ) {
    super(message);
    this.name = 'ExecuteRefusedError';
  }
}

export interface ExecuteOptions {
  /**
   * The update's id: a resend with the same id returns the first call's
   * result instead of running the code again. Default: a random one, so
   * this client's own resends are safe too.
   */
  requestId?: string;
  /** How long to keep resending after transport failures (Temporal unreachable or restarting). @default 10 minutes */
  retryForMs?: number;
  /** Told of each transport failure before the resend. */
  onRetry?: (failure: Error, attempt: number) => void;
}

/**
 * gRPC codes that say the call may not have reached Temporal, or its answer
 * did not come back: UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, UNKNOWN,
 * RESOURCE_EXHAUSTED, ABORTED, INTERNAL. Resending the update with the same
 * id is safe whatever happened to the first.
 */
const TRANSPORT_GRPC_CODES = new Set([14, 4, 1, 2, 8, 10, 13]);

function isTransportFailure(err: unknown): err is Error {
  if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError) return true;
  const cause = err instanceof ServiceError ? err.cause : err;
  return isGrpcServiceError(cause) && TRANSPORT_GRPC_CODES.has(cause.code);
}

const DEFAULT_EXECUTE_RETRY_MS = 10 * 60_000;
/** How often a follower looks for new chunks: output reaches S3 about once a second, so half that keeps the delay near it. */
const FOLLOW_POLL_MS = 500;
/** Passes a follower makes after the execution ended before it calls the chunks incomplete (listings can lag the writes they follow). */
const PASSES_AFTER_END = 20;

/** Bytes of each stream. */
export type StreamOffsets = Record<LogStream, number>;

/**
 * Reads one execution's log chunks from S3, each byte once and in order
 * within each stream, from a position it keeps. Chunks rewritten by a retry
 * are read from where this reader is, whatever chunk holds those bytes.
 */
export class ExecutionLogReader {
  readonly position: StreamOffsets;

  constructor(
    private readonly blobs: StoredObjects,
    /** Full key prefix of the execution's chunks (the store's prefix and the record's logChunks). */
    readonly logPrefix: string,
    from: Partial<StreamOffsets> = {},
  ) {
    this.position = { stdout: from.stdout ?? 0, stderr: from.stderr ?? 0 };
  }

  /** One pass: what was shipped past each stream's position, written in order; returns the bytes written. */
  async readNew(write: (stream: LogStream, bytes: Buffer) => void, signal?: AbortSignal): Promise<number> {
    const listed = chunksFromListing(this.logPrefix, await this.blobs.listKeys(this.logPrefix, signal));
    let written = 0;
    for (const stream of LOG_STREAMS) {
      for (const read of readsFrom(listed[stream], this.position[stream])) {
        const body = await this.blobs.getObjectBytes(read.chunk.key, signal);
        // A chunk being rewritten may be missing or shorter for a moment: the next pass reads it.
        if (!body || body.length < read.to) break;
        const bytes = body.subarray(read.from, read.to);
        write(stream, bytes);
        this.position[stream] += bytes.length;
        written += bytes.length;
      }
    }
    return written;
  }
}

export interface FollowOptions {
  /** Where each stream starts: bytes before it are not written (default 0, the start). */
  from?: Partial<StreamOffsets>;
  write: (stream: LogStream, bytes: Buffer) => void;
  /** The execute call's own result, when the caller sent it: its end is then known without asking the workflow. */
  ended?: Promise<ExecuteResult>;
  /** Told once when the execution is not there yet (queued behind another, or its inputs being verified) or the workflow does not answer. */
  onWaiting?: (why: string) => void;
  signal?: AbortSignal;
  pollMs?: number;
}

/** How a followed execution ended, and how much of each stream was written. */
export interface FollowedExecution {
  executionId: string;
  stage: string;
  status: 'finished' | 'failed';
  exitCode?: number | null;
  stdoutBytes?: number;
  stderrBytes?: number;
  /** The failure type of an execution that failed rather than ran to an exit code. */
  failure?: string;
  /** Where each stream ended: its offset plus the bytes written. */
  written: StreamOffsets;
}

/** Why following an execution stopped before its output was complete. */
export class FollowError extends Error {
  constructor(
    message: string,
    readonly type: string,
  ) {
    super(message);
    this.name = 'FollowError';
  }
}

/** The record of the execution sent with this request id, the latest when it was sent more than once. */
export function executionRecordOf(state: PipelineState, requestId: string): ExecutionRecord | undefined {
  return state.executions?.filter((record) => record.requestId === requestId).at(-1);
}
export class PipelineClient {
  constructor(
    private readonly client: Client,
    private readonly taskQueue: string,
  ) {}

  /** Starts the session's pipeline, or returns the one already running for it (same workflow id). */
  async start(input: PipelineInput, options: { workflowId?: string } = {}): Promise<StartedPipeline> {
    const workflowId = options.workflowId ?? pipelineWorkflowId(input.sessionId);
    const handle = await this.client.workflow.start('pipelineWorkflow', {
      taskQueue: this.taskQueue,
      workflowId,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
    return { workflowId, runId: handle.firstExecutionRunId };
  }

  /**
   * Runs code in the current stage and waits for its result. Transport
   * failures (Temporal down or restarting, a lost answer) are retried with
   * the same update id, so the code runs once and the result returned is
   * that run's.
   */
  async execute(workflowId: string, request: ExecuteRequest, options: ExecuteOptions = {}): Promise<ExecuteResult> {
    const updateId = options.requestId ?? randomUUID();
    const deadline = Date.now() + (options.retryForMs ?? DEFAULT_EXECUTE_RETRY_MS);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.client.workflow.getHandle(workflowId).executeUpdate(executeUpdate, { args: [request], updateId });
      } catch (err) {
        if (err instanceof WorkflowUpdateFailedError) {
          const cause = err.cause;
          const type = cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined;
          throw new ExecuteRefusedError(cause?.message ?? err.message, type);
        }
        if (!isTransportFailure(err) || Date.now() >= deadline) throw err;
        options.onRetry?.(err, attempt);
        await sleep(Math.min(500 * 2 ** (attempt - 1), 5_000));
      }
    }
  }

  /**
   * Finishes a stage. Name it (`stage`) so a resend after that stage already
   * finished is ignored instead of finishing the next one; without a name the
   * current stage finishes, whichever it is.
   */
  finishStage(workflowId: string, summary?: string, options: { stage?: string } = {}): Promise<void> {
    const request: FinishStageRequest = {};
    if (summary !== undefined) request.summary = summary;
    if (options.stage !== undefined) request.stage = options.stage;
    return this.client.workflow.getHandle(workflowId).signal(finishStageSignal, request);
  }

  addInputs(workflowId: string, inputs: PipelineInputRef[]): Promise<void> {
    return this.client.workflow.getHandle(workflowId).signal(addInputsSignal, { inputs });
  }

  abort(workflowId: string, reason: string): Promise<void> {
    return this.client.workflow.getHandle(workflowId).signal(abortSignal, { reason });
  }

  state(workflowId: string): Promise<PipelineState> {
    return this.client.workflow.getHandle(workflowId).query(pipelineStateQuery);
  }

  timeline(workflowId: string): Promise<TimelineStep[]> {
    return this.client.workflow.getHandle(workflowId).query(pipelineTimelineQuery);
  }

  /**
   * Writes an execution's stdout and stderr as they are shipped, from the
   * start or from `from`, until it ended and every byte of it was written;
   * resolves with its record. Works on a running or finished execution, and
   * carries on through restarts of the worker or of Temporal: the bytes come
   * from S3; only where they are and when the execution ended come from the
   * workflow (or from `ended`, the caller's own execute call).
   */
  async followExecution(workflowId: string, requestId: string, blobs: StoredObjects, options: FollowOptions): Promise<FollowedExecution> {
    const told = new Set<string>();
    const tell = (why: string) => {
      if (told.size === 0) options.onWaiting?.(why);
      told.add(why);
    };
    let record: ExecutionRecord | undefined;
    let result: ExecuteResult | undefined;
    let refused: unknown;
    options.ended?.then(
      (value) => (result = value),
      (err: unknown) => (refused = err),
    );
    let reader: ExecutionLogReader | undefined;
    for (let passesAfterEnd = 0; ; ) {
      if (refused !== undefined) throw refused;
      if (!result && (!record || record.status === 'running')) record = (await this.lookUpExecution(workflowId, requestId, tell)) ?? record;
      const logChunks = result?.logChunks ?? record?.logChunks;
      if (logChunks !== undefined) {
        reader ??= new ExecutionLogReader(blobs, blobs.keyPrefix + logChunks, options.from);
        await reader.readNew(options.write, options.signal);
      }
      // A failed execution has no byte counts: what was shipped is all there is.
      if (reader && record?.status === 'failed') return { executionId: record.executionId, stage: record.stage, status: 'failed', failure: record.failure, written: reader.position };
      const end = result ?? (record?.status === 'finished' ? record : undefined);
      if (end) {
        if (reader && reader.position.stdout >= (end.stdoutBytes ?? 0) && reader.position.stderr >= (end.stderrBytes ?? 0)) {
          return { executionId: end.executionId, stage: end.stage, status: 'finished', exitCode: end.exitCode, stdoutBytes: end.stdoutBytes, stderrBytes: end.stderrBytes, written: reader.position };
        }
        if (++passesAfterEnd > PASSES_AFTER_END) {
          const got = reader?.position ?? { stdout: 0, stderr: 0 };
          throw new FollowError(`the log chunks of request ${requestId} hold ${got.stdout} stdout and ${got.stderr} stderr bytes of ${end.stdoutBytes} and ${end.stderrBytes}`, 'VerificationFailed');
        }
      }
      await sleep(options.pollMs ?? FOLLOW_POLL_MS, undefined, { signal: options.signal });
    }
  }

  /** The execution's record from the workflow's state; undefined while it has not started or the workflow does not answer. */
  private async lookUpExecution(workflowId: string, requestId: string, tell: (why: string) => void): Promise<ExecutionRecord | undefined> {
    let state: PipelineState;
    try {
      state = await this.state(workflowId);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw err;
      tell(`${workflowId} does not answer (${(err as Error).message}); asking again`);
      return undefined;
    }
    const record = executionRecordOf(state, requestId);
    if (!record && (state.status === 'completed' || state.status === 'failed')) {
      throw new FollowError(`${workflowId} is ${state.status} and has no execution with request id ${requestId} among its last ${EXECUTION_RECORDS_KEPT}`, 'InvalidInput');
    }
    if (!record) tell(`request ${requestId} has not started yet (queued behind another execution, or its inputs are being verified)`);
    return record;
  }

  /** Waits for the pipeline to end; throws WorkflowFailedError when it failed. */
  result(workflowId: string): Promise<PipelineResult> {
    return this.client.workflow.getHandle(workflowId).result() as Promise<PipelineResult>;
  }
}
