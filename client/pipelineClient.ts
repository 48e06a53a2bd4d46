/**
 * A small typed client for agent programs: start a pipeline for a session,
 * run code in its current stage, finish stages, add inputs, read its state.
 *
 *   const pipelines = new PipelineClient(client, 'ferry');
 *   const { workflowId } = await pipelines.start({ sessionId: 'demo', inputs: [{ path: './data' }] });
 *   const run = await pipelines.execute(workflowId, { language: 'bash', code: 'ls -la ./data/' });
 *   await pipelines.finishStage(workflowId, 'analysis written', { stage: 'coder' });
 */
import { WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import {
  pipelineWorkflowId,
  type ExecuteRequest,
  type ExecuteResult,
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
   * Runs code in the current stage and waits for it. `requestId` makes a
   * resend (after a lost connection) return the first result, not run twice.
   */
  async execute(workflowId: string, request: ExecuteRequest, options: { requestId?: string } = {}): Promise<ExecuteResult> {
    try {
      return await this.client.workflow.getHandle(workflowId).executeUpdate(executeUpdate, { args: [request], updateId: options.requestId });
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) {
        const cause = err.cause;
        const type = cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined;
        throw new ExecuteRefusedError(cause?.message ?? err.message, type);
      }
      throw err;
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

  /** Waits for the pipeline to end; throws WorkflowFailedError when it failed. */
  result(workflowId: string): Promise<PipelineResult> {
    return this.client.workflow.getHandle(workflowId).result() as Promise<PipelineResult>;
  }
}
