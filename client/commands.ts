/**
 * The `ferry sync` and `ferry files` commands, and the `ferry timeline`
 * table of an analysis client/history loads. Each returns what it printed as
 * data too, so tests and the demo can reuse it.
 */
import { WorkflowFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, type Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import path from 'node:path';
import type { FerryConfig } from '../core/config';
import { workflowUiUrl } from '../core/config';
import type { SnapshotSourceResult } from '../activities/localSource';
import { formatBytes, formatDurationMs } from '../core/duration';
import {
  DEFAULT_LINK_POLICY,
  syncWorkflowId,
  type LinkPolicy,
  type SizeReport,
  type SkippedLinks,
  type SkippedSource,
  type SyncDryRun,
  type SyncInput,
  type SyncResult,
} from '../core/sync';
import type { TargetRef } from '../core/target';
import type { HistoryAnalysis } from '../core/history/analysis';
import { failureText } from '../core/history/values';
import type { SessionFilesInput, SessionFilesResult } from '../workflows/files';
import { clockTime, gapLine, renderTable, stageTable } from './format';
import { CommandError } from './errors';
import { countOf, followProgress } from './progress';

export interface SyncCommandOptions {
  dir: string;
  sessionId: string;
  dest: string;
  target: TargetRef;
  showProgress: boolean;
  /** What the snapshot does with symlinks; default `skip`. */
  links?: LinkPolicy;
  /** Over this many bytes the snapshot names its largest folders; default the FERRY_SIZE_WARNING setting. */
  sizeWarningBytes?: number;
  /** Snapshot and plan only; nothing is stored, uploaded or landed. */
  dryRun?: boolean;
  /** Off a terminal, a progress line at least this often (default 10 s). */
  progressLineEveryMs?: number;
}

/** The one-object summary `ferry sync --json` prints: the sync's result, or a dry run's plan. */
export type SyncSummary = (SyncResult | SyncDryRun) & {
  runId: string;
  webUiUrl: string;
};

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

/** Starts a sync and follows it to its result, writing warnings, the size report and progress to `output`. */
export async function runSync(client: Client, config: FerryConfig, options: SyncCommandOptions, output: NodeJS.WriteStream = process.stderr): Promise<SyncSummary> {
  const warn = (line: string) => output.write(`${line}\n`);
  const input: SyncInput = {
    sessionId: options.sessionId,
    source: { path: path.resolve(options.dir) },
    dest: options.dest,
    target: options.target,
    links: options.links ?? DEFAULT_LINK_POLICY,
    sizeWarningBytes: options.sizeWarningBytes ?? config.sync.sizeWarningBytes,
    ...(options.dryRun ? { dryRun: true } : {}),
  };
  const workflowId = syncWorkflowId(options.sessionId, Date.now());
  const handle = await client.workflow.start('syncWorkflow', { taskQueue: config.temporal.taskQueue, workflowId, args: [input] });
  const webUiUrl = workflowUiUrl(config, workflowId, handle.firstExecutionRunId);
  // A sync with no worker waits silently until one comes: say so at once. Checked while the result is awaited, not
  // before: on a no-change sync the check's round trip was a tenth of the CLI's wall time.
  const workerCheck = workerIsPolling(client, config)
    .then((polling) => {
      if (!polling) warn(`⚠ no worker is polling task queue ${config.temporal.taskQueue}: ${workflowId} waits until one does (start one with \`ferry up\`)`);
    })
    .catch(() => undefined);
  // The workflow is durable: leaving the CLI does not stop the sync.
  const onInterrupt = () => {
    warn(`\nstopped following; ${workflowId} carries on in Temporal. Follow it with: ferry timeline ${workflowId}`);
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  const resultPromise = handle.result() as Promise<SyncResult | SyncDryRun>;
  // Once the upload starts, the snapshot's size report (if any) is worth reading before the upload ends.
  let reported: Promise<void> | undefined;
  const onStep = (step: string, print: (text: string) => void) => {
    if (step === 'snapshotSource' || reported) return;
    // The report is a courtesy: the summary carries it too, so a history that cannot be read only delays it.
    reported = snapshotResult(client, handle)
      .then((snapshot) => {
        if (snapshot?.sizeReport) print(formatSizeReport(snapshot.sizeReport));
      })
      .catch(() => undefined);
  };
  try {
    const result = options.showProgress ? await followProgress(handle, resultPromise, { stream: output, lineEveryMs: options.progressLineEveryMs, onStep }) : await resultPromise;
    await Promise.all([workerCheck, reported]);
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

/** The result of the workflow's snapshotSource, read from its history (decoded as the client decodes results), once it completed. */
async function snapshotResult(client: Client, handle: WorkflowHandle): Promise<SnapshotSourceResult | undefined> {
  const events = (await handle.fetchHistory()).events ?? [];
  const scheduled = events.find((event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'snapshotSource');
  const completed = events.find((event) => scheduled && Number(event.activityTaskCompletedEventAttributes?.scheduledEventId) === Number(scheduled.eventId));
  const payloads = completed?.activityTaskCompletedEventAttributes?.result?.payloads;
  if (!payloads?.length) return undefined;
  const { payloadCodecs, payloadConverter } = client.options.loadedDataConverter;
  let decoded = payloads as Payload[];
  for (const codec of [...payloadCodecs].reverse()) decoded = await codec.decode(decoded);
  return payloadConverter.fromPayload(decoded[0]) as SnapshotSourceResult;
}

/** Why a snapshot is big, folder by folder, with the ignore line that would leave each out. */
export function formatSizeReport(report: SizeReport): string {
  const why = report.large
    ? `over the ${formatBytes(report.sizeWarningBytes)} size warning`
    : 'it holds folders that are usually ignored';
  const rows = report.folders.map((folder) => [
    formatBytes(folder.bytes),
    countOf(folder.files, 'file'),
    `${folder.path}/`,
    folder.usuallyIgnored ? `${folder.usuallyIgnored}, usually ignored` : '',
    folder.ignoreLine,
  ]);
  return [
    `⚠ ${formatBytes(report.bytesTotal)} in ${countOf(report.filesTotal, 'file')}: ${why}`,
    indent(renderTable(['SIZE', 'FILES', 'FOLDER', 'WHAT', 'IGNORE LINE'], rows, { alignRight: [true, true] }), '  '),
    '  to leave a folder out, add its ignore line to .ferryignore (or .gitignore) at the top of the source; --size-warning sets the threshold',
  ].join('\n');
}

function indent(text: string, prefix: string): string {
  return text
    .split('\n')
    .map((line) => prefix + line)
    .join('\n');
}

/** Symlinks the link policy left out, and how to take them. */
function formatLinksSkipped(links: SkippedLinks): string[] {
  if (links.total === 0) return [];
  const lines = [`  links      ${countOf(links.total, 'symlink')} left out, pointing outside the source or to nothing (--links follow syncs what they point to, --links copy keeps them as links):`];
  for (const link of links.first.slice(0, 10)) lines.push(`             ${link.path} -> ${link.target}${link.why === 'dangling' ? ' (dangling)' : ''}`);
  if (links.total > 10) lines.push(`             and ${links.total - 10} more`);
  return lines;
}

function formatSkipped(skipped: SkippedSource[]): string[] {
  if (skipped.length === 0) return [];
  const lines = [`  skipped    ${skipped.length.toLocaleString('en-US')} source ${skipped.length === 1 ? 'entry' : 'entries'}:`];
  for (const entry of skipped.slice(0, 10)) lines.push(`             ${entry.path}: ${entry.reason}`);
  return lines;
}

export function formatSyncSummary(summary: SyncSummary): string {
  if ('dryRun' in summary) return formatDryRun(summary);
  const durations = summary.durationsMs;
  const lines = [
    `✔ synced ${countOf(summary.filesTotal, 'file')} (${formatBytes(summary.bytesTotal)}) into session ${summary.sessionId}:${summary.dest}, verified on the target`,
    `  manifest   ${summary.manifestDigest}`,
    `  uploaded   ${formatBytes(summary.bytesUploaded)} in ${countOf(summary.blobsUploaded, 'blob')}; ${formatBytes(summary.bytesSkipped)} not sent (already stored, or the same content as another file)`,
    `  landed     ${formatBytes(summary.bytesLanded)} in ${countOf(summary.filesLanded, 'file')}; the rest already on the target`,
    `  verified   ${countOf(summary.filesVerified, 'file')} re-hashed on the target (boot ${summary.bootId})`,
    `  steps      snapshot ${formatDurationMs(durations.snapshotSource)} · upload ${formatDurationMs(durations.uploadBlobs)} · land ${formatDurationMs(durations.landManifest)} · verify ${formatDurationMs(durations.verifyLanding)}`,
    ...formatLinksSkipped(summary.linksSkipped),
    ...formatSkipped(summary.skipped),
  ];
  if (summary.sizeReport) lines.push(indent(formatSizeReport(summary.sizeReport), '  '));
  lines.push(`  workflow   ${summary.workflowId}`, `  web ui     ${summary.webUiUrl}`);
  return lines.join('\n');
}

/** What a session folder holds on its target, hashed there now (sessionFilesWorkflow: the workers reach the target, not the CLI). */
export async function listSessionFiles(client: Client, config: FerryConfig, input: SessionFilesInput): Promise<SessionFilesResult> {
  const workflowId = `files-${input.sessionId}-${Date.now()}`;
  try {
    return (await client.workflow.execute('sessionFilesWorkflow', { taskQueue: config.temporal.taskQueue, workflowId, args: [input] })) as SessionFilesResult;
  } catch (err) {
    if (err instanceof WorkflowFailedError) {
      const failure = rootFailure(err);
      throw new CommandError(`listing ${workflowId} failed${failure.type ? ` (${failure.type})` : ''}: ${failure.message}`);
    }
    throw err;
  }
}

export function formatFiles(listing: SessionFilesResult): string {
  const where = `session ${listing.sessionId}:${listing.dest} on ${listing.description}`;
  if (listing.filesTotal === 0) return `${where} holds no files (target boot ${listing.bootId})`;
  const rows = listing.files.map((f) => [f.sha256.slice(0, 16), formatBytes(f.size), f.link === undefined ? f.path : `${f.path} -> ${f.link}`]);
  const more = listing.filesTotal > listing.files.length ? `\n… and ${listing.filesTotal - listing.files.length} more: the whole listing is manifest ${listing.manifestDigest} (${listing.manifestKey})` : '';
  return `${renderTable(['SHA256', 'SIZE', 'PATH'], rows)}${more}\n${listing.filesTotal} files, ${formatBytes(listing.bytesTotal)} in ${where}, hashed on the target (boot ${listing.bootId})`;
}

/** What a dry run found: the files, the bytes, what the store lacks and the target holds; nothing was stored, uploaded or landed. */
export function formatDryRun(plan: SyncDryRun & { webUiUrl: string }): string {
  const lines = [
    `dry run: ${countOf(plan.filesTotal, 'file')} (${formatBytes(plan.bytesTotal)}) would sync into session ${plan.sessionId}:${plan.dest}; nothing was stored, uploaded or landed`,
    `  manifest   ${plan.manifestDigest} (not stored)`,
    `  store      ${countOf(plan.store.blobsNew, 'blob')} of ${plan.store.blobsTotal.toLocaleString('en-US')} new to the store: ${formatBytes(plan.store.bytesNew)} to upload`,
    `  target     ${plan.landing.description} holds ${countOf(plan.landing.filesHeld, 'file')} of ${plan.filesTotal.toLocaleString('en-US')} (${formatBytes(plan.landing.bytesHeld)}): ${countOf(plan.landing.filesToLand, 'file')} (${formatBytes(plan.landing.bytesToLand)}) to land`,
    ...formatLinksSkipped(plan.linksSkipped),
    ...formatSkipped(plan.skipped),
  ];
  if (plan.sizeReport) lines.push(indent(formatSizeReport(plan.sizeReport), '  '));
  lines.push(`  workflow   ${plan.workflowId}`, `  web ui     ${plan.webUiUrl}`);
  return lines.join('\n');
}

function timelineLines(analysis: HistoryAnalysis, indent: string): string[] {
  const took = analysis.durationMs !== undefined ? ` ${analysis.status === 'running' ? 'for' : 'in'} ${formatDurationMs(analysis.durationMs)}` : '';
  const lines = [`${indent}${analysis.workflowType} ${analysis.workflowId}: ${analysis.status}${took} (started ${analysis.startedAt ?? '?'})`, `${indent}verdict: ${analysis.verdict}`];
  if (analysis.failure) lines.push(`${indent}  failure: ${failureText(analysis.failure)}`);
  const staged = analysis.steps.some((step) => step.stage);
  const rows = analysis.steps.map((step) => [
    ...(staged ? [step.stage ?? '-'] : []),
    step.name,
    String(step.attempts),
    clockTime(step.scheduledAt),
    step.waitMs === undefined ? '-' : formatDurationMs(step.waitMs),
    step.durationMs === undefined ? '-' : formatDurationMs(step.durationMs),
    step.status + (step.failure ? `: ${step.failure.message.slice(0, 100)}` : ''),
  ]);
  const table = renderTable([...(staged ? ['STAGE'] : []), 'STEP', 'ATTEMPTS', 'SCHEDULED', 'WAIT', 'DURATION', 'RESULT'], rows);
  lines.push('', ...table.split('\n').map((line) => `${indent}${line}`));
  if (analysis.stages.length) lines.push('', ...stageTable(analysis.stages).split('\n').map((line) => `${indent}${line}`));
  for (const problem of analysis.problems) {
    if (problem.outcome === 'retried' || problem.outcome === 'retrying') lines.push(`${indent}  ↻ ${problem.summary}`);
  }
  const threshold = formatDurationMs(analysis.gapThresholdMs);
  if (analysis.gaps.length === 0) lines.push('', `${indent}no gaps longer than ${threshold}`);
  else {
    lines.push('', `${indent}gaps longer than ${threshold}:`);
    for (const gap of analysis.gaps) lines.push(`${indent}  ${gapLine(gap)}`);
  }
  if (analysis.webUiUrl) lines.push('', `${indent}web ui: ${analysis.webUiUrl}`);
  for (const child of analysis.children) lines.push('', ...timelineLines(child, `${indent}  `));
  return lines;
}

/** `ferry timeline`: every step of the workflow and its children as a table, the stages, retries and the gaps with their causes. */
export function formatTimeline(analysis: HistoryAnalysis): string {
  return timelineLines(analysis, '').join('\n');
}
