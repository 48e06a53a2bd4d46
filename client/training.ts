/**
 * `ferry train`, `ferry logs` and `ferry stop`: start a training run, follow
 * its log from the chunks the workflow ships to S3, stop it. Logs are read
 * from S3, not from the workflow, so they can be followed after the run
 * ended and without a worker.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, defaultPayloadConverter } from '@temporalio/common';
import type { StoredObjects } from '../activities/blobStore';
import { blobStoreFromConfig } from '../activities/s3BlobStore';
import { workflowUiUrl, type FerryConfig } from '../core/config';
import { formatBytes, formatDurationMs } from '../core/duration';
import type { LinkPolicy } from '../core/sync';
import { describeTarget, type TargetRef } from '../core/target';
import { runIdProblem, trainingLogPrefix, trainingWorkflowId, type TrainingInput, type TrainingResult } from '../core/training';
import { stopTrainingSignal, trainingProgressQuery } from '../workflows/trainingDefinitions';
import { CommandError } from './errors';

const FOLLOW_INTERVAL_MS = 1_000;

/** Log chunk keys of a run in log order: by start number, then by byte offset (zero-padded in the key). */
export async function listLogChunks(blobs: StoredObjects, runId: string): Promise<{ key: string; size: number }[]> {
  const chunks = await blobs.listKeys(trainingLogPrefix(blobs.keyPrefix, runId));
  const startNumber = (key: string) => Number(/\/start-(\d+)\//.exec(key)?.[1] ?? 0);
  return chunks.sort((a, b) => startNumber(a.key) - startNumber(b.key) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** The run id a training workflow was started with, from the first event of its history (no worker needed). */
export async function trainingRunId(client: Client, workflowId: string): Promise<string> {
  const history = await client.workflowService.getWorkflowExecutionHistory({
    namespace: client.options.namespace,
    execution: { workflowId },
    maximumPageSize: 1,
  });
  const started = history.history?.events?.[0]?.workflowExecutionStartedEventAttributes;
  if (!started) throw new CommandError(`${workflowId} has no history: is it a workflow id?`);
  if (started.workflowType?.name !== 'trainingWorkflow') throw new CommandError(`${workflowId} is a ${started.workflowType?.name ?? 'unknown'} workflow, not a training run`);
  const payload = started.input?.payloads?.[0];
  const input = payload ? (defaultPayloadConverter.fromPayload(payload) as Partial<TrainingInput>) : {};
  return input.runId ?? workflowId;
}

async function isClosed(handle: WorkflowHandle): Promise<boolean> {
  const { status } = await handle.describe();
  return status.name !== 'RUNNING';
}

/**
 * Writes the run's log from S3 to `write`, chunk by chunk; with `follow`,
 * keeps polling until the workflow has closed and every chunk is written.
 */
export async function followLogs(client: Client, blobs: StoredObjects, workflowId: string, follow: boolean, write: (bytes: Buffer) => void): Promise<number> {
  const runId = await trainingRunId(client, workflowId);
  const handle = client.workflow.getHandle(workflowId);
  const written = new Set<string>();
  let bytes = 0;
  for (;;) {
    // Read the status before listing: chunks shipped before the close are then all listed.
    const closed = follow ? await isClosed(handle) : true;
    for (const chunk of await listLogChunks(blobs, runId)) {
      if (written.has(chunk.key)) continue;
      const body = await blobs.getObjectBytes(chunk.key);
      if (!body) continue;
      write(body);
      written.add(chunk.key);
      bytes += body.length;
    }
    if (closed) return bytes;
    await sleep(FOLLOW_INTERVAL_MS);
  }
}

export interface TrainCommandOptions {
  dir: string;
  target: TargetRef;
  command: string[];
  runId?: string;
  env: Record<string, string>;
  include: string[];
  exclude: string[];
  /** The project's link policy; default `skip`. */
  links?: LinkPolicy;
  startupGraceSeconds?: number;
  pollSeconds?: number;
  detach: boolean;
}

/** Starts a training run; unless detached, streams its log to stdout and its state changes to stderr until it ends. */
export async function runTrain(
  client: Client,
  config: FerryConfig,
  options: TrainCommandOptions,
  out: { log: (bytes: Buffer) => void; status: (line: string) => void },
): Promise<{ workflowId: string; result?: TrainingResult }> {
  const runId = options.runId ?? `${path.basename(path.resolve(options.dir)).replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '') || 'run'}-${Date.now()}`;
  const problem = runIdProblem(runId);
  if (problem) throw new CommandError(problem);
  const input: TrainingInput = {
    runId,
    project: { path: path.resolve(options.dir), include: options.include, exclude: options.exclude, ...(options.links ? { links: options.links } : {}) },
    target: options.target,
    command: options.command,
    env: options.env,
    startupGraceSeconds: options.startupGraceSeconds,
    pollSeconds: options.pollSeconds,
  };
  const workflowId = trainingWorkflowId(runId);
  const handle = await client.workflow.start('trainingWorkflow', { taskQueue: config.temporal.taskQueue, workflowId, args: [input] });
  const webUiUrl = workflowUiUrl(config, workflowId, handle.firstExecutionRunId);
  out.status(`training ${workflowId} started on ${describeTarget(options.target)}\n  web ui: ${webUiUrl}`);
  if (options.detach) {
    out.status(`follow it with: ferry logs ${workflowId} -f   stop it with: ferry stop ${workflowId}`);
    return { workflowId };
  }
  const onInterrupt = () => {
    out.status(`\nstopped following; ${workflowId} carries on. Follow it with: ferry logs ${workflowId} -f, stop it with: ferry stop ${workflowId}`);
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  const blobs = blobStoreFromConfig(config.s3);
  let lastState = '';
  const states = (async () => {
    while (!(await isClosed(handle).catch(() => true))) {
      const progress = await handle.query(trainingProgressQuery).catch(() => undefined);
      if (progress && progress.state !== lastState) {
        lastState = progress.state;
        out.status(`… ${progress.state}${progress.pid ? ` (pid ${progress.pid})` : ''}`);
      }
      await sleep(FOLLOW_INTERVAL_MS);
    }
  })();
  try {
    await followLogs(client, blobs, workflowId, true, out.log);
    await states;
    const result = (await handle.result()) as TrainingResult;
    return { workflowId, result };
  } catch (err) {
    if (err instanceof WorkflowFailedError) {
      const cause = err.cause instanceof ApplicationFailure ? err.cause : undefined;
      throw new CommandError(`training ${workflowId} failed${cause?.type ? ` (${cause.type})` : ''}: ${cause?.message ?? err.message}\n  timeline: ferry timeline ${workflowId}`);
    }
    throw err;
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}

export function formatTrainingResult(result: TrainingResult): string {
  const lines = [
    `${result.stopped ? '■ stopped' : '✔ finished'} training run ${result.runId} with exit code ${result.exitCode ?? 'none (killed)'}`,
    `  project    ${result.filesTotal} files (${formatBytes(result.bytesTotal)}), manifest ${result.manifestDigest.slice(0, 16)}…, in ${result.session.root} on ${result.session.description ?? result.session.target.kind}`,
    `  landed     ${formatBytes(result.bytesLanded)} on the first landing${result.resyncs ? `, ${result.resyncs} resyncs` : ''}; verified on the target`,
    `  confirmed  ${formatDurationMs(result.timeToConfirmMs)} after start${result.firstLogLineMs !== undefined ? `; first log line after ${formatDurationMs(result.firstLogLineMs)}` : ''}`,
    `  log        ${formatBytes(result.logBytesShipped)} in ${result.logChunks} chunks, ${result.probes} probes`,
  ];
  if (result.outputs) lines.push(`  outputs    ${result.outputs.filesTotal} files (${formatBytes(result.outputs.bytesTotal)}) in S3, manifest ${result.outputs.manifestDigest.slice(0, 16)}…`);
  return lines.join('\n');
}

/** `ferry stop`: signals the run to stop (SIGTERM, then SIGKILL after the grace) and waits for its result. */
export async function stopTraining(client: Client, workflowId: string, graceSeconds: number | undefined, status: (line: string) => void): Promise<TrainingResult> {
  const handle = client.workflow.getHandle(workflowId);
  await handle.signal(stopTrainingSignal, graceSeconds === undefined ? {} : { graceSeconds });
  status(`stop sent to ${workflowId}; waiting for it to end…`);
  return (await handle.result()) as TrainingResult;
}
