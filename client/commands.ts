/**
 * The `ferry sync`, `ferry files` and `ferry timeline` commands. Each returns
 * what it printed as data too, so tests and the demo can reuse it.
 */
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import path from 'node:path';
import { AgentClient } from '../activities/agentClient';
import type { FerryConfig } from '../core/config';
import { workflowUiUrl } from '../core/config';
import { formatBytes, formatDurationMs } from '../core/duration';
import { joinRelative } from '../core/paths';
import { sessionRoot, syncWorkflowId, type SyncInput, type SyncResult } from '../core/sync';
import { buildTimeline, type Timeline } from '../core/timeline';
import type { TargetFile } from '../core/verify';
import { clockTime, renderTable } from './format';
import { summarizeHistory } from './history';
import { followProgress } from './progress';

/** A failure the CLI reports as one line and a non-zero exit. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

export interface SyncCommandOptions {
  dir: string;
  sessionId: string;
  dest: string;
  showProgress: boolean;
}

/** The one-object summary `ferry sync --json` prints. */
export interface SyncSummary extends SyncResult {
  runId: string;
  webUiUrl: string;
}

/** The innermost ApplicationFailure of a failed workflow: its type names what went wrong. */
function rootFailure(err: WorkflowFailedError): { message: string; type?: string } {
  const cause = err.cause;
  if (cause instanceof ApplicationFailure) return { message: cause.message, type: cause.type ?? undefined };
  return { message: cause?.message ?? err.message };
}

/** Whether any worker polls the task queue for workflow tasks right now. */
async function workerIsPolling(client: Client, config: FerryConfig): Promise<boolean> {
  const response = await client.workflowService.describeTaskQueue({
    namespace: config.temporal.namespace,
    taskQueue: { name: config.temporal.taskQueue },
    taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  });
  return (response.pollers?.length ?? 0) > 0;
}

export async function runSync(
  client: Client,
  config: FerryConfig,
  options: SyncCommandOptions,
  warn: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): Promise<SyncSummary> {
  const input: SyncInput = { sessionId: options.sessionId, source: { path: path.resolve(options.dir) }, dest: options.dest, target: { kind: 'local' } };
  const workflowId = syncWorkflowId(options.sessionId, Date.now());
  const handle = await client.workflow.start('syncWorkflow', { taskQueue: config.temporal.taskQueue, workflowId, args: [input] });
  const webUiUrl = workflowUiUrl(config, workflowId, handle.firstExecutionRunId);
  // A sync with no worker waits silently until one comes: say so at once.
  if (!(await workerIsPolling(client, config))) {
    warn(`⚠ no worker is polling task queue ${config.temporal.taskQueue}: ${workflowId} waits until one does (start one with \`ferry up\`)`);
  }
  // The workflow is durable: leaving the CLI does not stop the sync.
  const onInterrupt = () => {
    warn(`\nstopped following; ${workflowId} carries on in Temporal. Follow it with: ferry timeline ${workflowId}`);
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  const resultPromise = handle.result() as Promise<SyncResult>;
  try {
    const result = options.showProgress ? await followProgress(handle, resultPromise) : await resultPromise;
    return { ...result, runId: handle.firstExecutionRunId, webUiUrl };
  } catch (err) {
    if (err instanceof WorkflowFailedError) {
      const failure = rootFailure(err);
      throw new CommandError(`sync ${workflowId} failed${failure.type ? ` (${failure.type})` : ''}: ${failure.message}\n  history: ${webUiUrl}\n  timeline: ferry timeline ${workflowId}`);
    }
    throw err;
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}

export function formatSyncSummary(summary: SyncSummary): string {
  const durations = summary.durationsMs;
  const lines = [
    `✔ synced ${summary.filesTotal} files (${formatBytes(summary.bytesTotal)}) into session ${summary.sessionId}:${summary.dest}, verified on the target`,
    `  manifest   ${summary.manifestDigest}`,
    `  uploaded   ${formatBytes(summary.bytesUploaded)} in ${summary.blobsUploaded} blobs; skipped ${formatBytes(summary.bytesSkipped)} already stored`,
    `  landed     ${formatBytes(summary.bytesLanded)} in ${summary.filesLanded} files; the rest already on the target`,
    `  verified   ${summary.filesVerified} files re-hashed on the target (boot ${summary.bootId})`,
    `  steps      snapshot ${formatDurationMs(durations.snapshotSource)} · upload ${formatDurationMs(durations.uploadBlobs)} · land ${formatDurationMs(durations.landManifest)} · verify ${formatDurationMs(durations.verifyLanding)}`,
  ];
  if (summary.skipped.length) {
    lines.push(`  skipped    ${summary.skipped.length} source entries:`);
    for (const skipped of summary.skipped.slice(0, 10)) lines.push(`             ${skipped.path}: ${skipped.reason}`);
  }
  lines.push(`  workflow   ${summary.workflowId}`, `  web ui     ${summary.webUiUrl}`);
  return lines.join('\n');
}

export async function listTargetFiles(config: FerryConfig, sessionId: string, dest: string): Promise<{ bootId: string; files: TargetFile[] }> {
  if (!config.localAgent) throw new CommandError('no local runtime agent configured: start the stack with `ferry up --detach` or set FERRY_LOCAL_AGENT_URL');
  const agent = new AgentClient(config.localAgent, { idleTimeoutMs: 60_000 });
  return agent.hashedFiles({ dir: joinRelative(sessionRoot(sessionId), dest) });
}

export function formatFiles(sessionId: string, dest: string, listing: { bootId: string; files: TargetFile[] }): string {
  if (listing.files.length === 0) return `session ${sessionId}:${dest} holds no files (target boot ${listing.bootId})`;
  const rows = listing.files.map((f) => [f.sha256.slice(0, 16), formatBytes(f.size), (f.mode & 0o777).toString(8), f.path]);
  const total = listing.files.reduce((sum, f) => sum + f.size, 0);
  return `${renderTable(['SHA256', 'SIZE', 'MODE', 'PATH'], rows)}\n${listing.files.length} files, ${formatBytes(total)}, hashed on the target (boot ${listing.bootId})`;
}

export async function loadTimeline(client: Client, workflowId: string, gapMs: number): Promise<Timeline & { workflowId: string; workflowType: string }> {
  const handle = client.workflow.getHandle(workflowId);
  const [description, history] = await Promise.all([handle.describe(), handle.fetchHistory()]);
  const timeline = buildTimeline(summarizeHistory(history.events ?? []), gapMs, Date.now());
  return { workflowId, workflowType: description.type, ...timeline };
}

export function formatTimeline(timeline: Timeline & { workflowId: string; workflowType: string }, gapMs: number, webUiUrl: string): string {
  const total =
    timeline.startedAt && timeline.closedAt ? ` in ${formatDurationMs(Date.parse(timeline.closedAt) - Date.parse(timeline.startedAt))}` : '';
  const lines = [`${timeline.workflowType} ${timeline.workflowId}: ${timeline.status}${total} (started ${timeline.startedAt ?? '?'})`];
  if (timeline.failure) lines.push(`  failure: ${timeline.failure.type ? `${timeline.failure.type}: ` : ''}${timeline.failure.message}`);
  const staged = timeline.steps.some((step) => step.stage);
  const rows = timeline.steps.map((step) => [
    ...(staged ? [step.stage ?? '-'] : []),
    step.name,
    String(step.attempts),
    clockTime(step.scheduledAt),
    step.waitMs === undefined ? '-' : formatDurationMs(step.waitMs),
    step.durationMs === undefined ? '-' : formatDurationMs(step.durationMs),
    step.status + (step.failure ? `: ${step.failure.message.slice(0, 100)}` : ''),
  ]);
  lines.push('', renderTable([...(staged ? ['STAGE'] : []), 'STEP', 'ATTEMPTS', 'SCHEDULED', 'WAIT', 'DURATION', 'RESULT'], rows));
  for (const retry of timeline.retries) {
    lines.push(`  ↻ ${retry.step} took ${retry.attempts} attempts${retry.lastRetryFailure ? `; last retried after: ${retry.lastRetryFailure.message}` : ''}`);
  }
  if (timeline.gaps.length === 0) lines.push('', `no gaps longer than ${formatDurationMs(gapMs)}`);
  else {
    lines.push('', `gaps longer than ${formatDurationMs(gapMs)}:`);
    for (const gap of timeline.gaps) lines.push(`  ⚠ ${clockTime(gap.from)} → ${clockTime(gap.to)} (${formatDurationMs(gap.durationMs)}) ${gap.cause}: ${gap.detail}`);
  }
  lines.push('', `web ui: ${webUiUrl}`);
  return lines.join('\n');
}
