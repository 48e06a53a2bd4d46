/**
 * Live progress of a running workflow, read from its pending activities'
 * heartbeat details (core/sync TransferProgress: files, blobs, bytes, rate
 * and time left, as the activities measured them).
 */
import type { WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { SingleBar } from 'cli-progress';
import { formatBytes, formatDurationMs } from '../core/duration';
import type { TransferProgress } from '../core/sync';

export interface PendingStep {
  activityType: string;
  attempt: number;
  progress?: TransferProgress;
  lastFailure?: string;
}

export async function pendingSteps(handle: WorkflowHandle): Promise<PendingStep[]> {
  const description = await handle.describe();
  return (description.raw.pendingActivities ?? []).map((pending) => {
    const payload = pending.heartbeatDetails?.payloads?.[0];
    return {
      activityType: pending.activityType?.name ?? '',
      attempt: pending.attempt ?? 1,
      progress: payload ? (defaultPayloadConverter.fromPayload(payload) as TransferProgress) : undefined,
      lastFailure: pending.lastFailure?.message ?? undefined,
    };
  });
}

/** `1 file`, `2 files`, `1,400 files`. */
export function countOf(count: number, noun: string): string {
  return `${count.toLocaleString('en-US')} ${noun}${count === 1 ? '' : 's'}`;
}

/** What moved and how fast: `12/860 blobs · 1,200/1,400 files · 10.0 MiB/800.0 MiB · 35.0 MiB/s · ETA 23s`. */
export function describeProgress(progress: TransferProgress): string {
  const parts: string[] = [];
  if (progress.listing) parts.push(`listing: ${countOf(progress.filesTotal, 'file')} found`);
  if (progress.blobsTotal !== undefined) parts.push(`${(progress.blobsDone ?? 0).toLocaleString('en-US')}/${countOf(progress.blobsTotal, 'blob')}`);
  if (!progress.listing) parts.push(`${progress.filesDone.toLocaleString('en-US')}/${countOf(progress.filesTotal, 'file')}`);
  parts.push(`${formatBytes(progress.bytesDone)}/${formatBytes(progress.bytesTotal)}`);
  if (progress.bytesPerSecond !== undefined) parts.push(`${formatBytes(progress.bytesPerSecond)}/s`);
  if (progress.etaSeconds !== undefined) parts.push(`ETA ${formatDurationMs(progress.etaSeconds * 1000)}`);
  return parts.join(' · ');
}

/** One line per step for logs: `uploadBlobs 45% 12/860 blobs · …`. */
export function progressLine(step: PendingStep): string {
  const label = `${step.activityType}${step.attempt > 1 ? ` (attempt ${step.attempt})` : ''}`;
  const progress = step.progress;
  if (!progress) return label;
  const percent = progress.listing || progress.bytesTotal === 0 ? '' : ` ${Math.floor((100 * Math.min(progress.bytesDone, progress.bytesTotal)) / progress.bytesTotal)}%`;
  return `${label}${percent} ${describeProgress(progress)}`;
}

export interface FollowOptions {
  stream?: NodeJS.WriteStream;
  /** Off a terminal, a progress line at least this often while a step runs (and on every change of step). */
  lineEveryMs?: number;
  /** Called with a step's name when it is first seen running, and a way to print lines above the bar. */
  onStep?: (activityType: string, print: (text: string) => void) => void;
}

const POLL_MS = 400;

/**
 * Draws a progress bar on stderr until `done` settles. Off a terminal it
 * prints a line per step and then one every `lineEveryMs`, so logs stay
 * readable and still show that the sync moves.
 */
export async function followProgress<T>(handle: WorkflowHandle, done: Promise<T>, options: FollowOptions = {}): Promise<T> {
  const stream = options.stream ?? process.stderr;
  const lineEveryMs = options.lineEveryMs ?? 10_000;
  const interactive = Boolean(stream.isTTY);
  const bar = new SingleBar({
    stream,
    format: '{step} [{bar}] {percentage}% | {detail}{retry}',
    barsize: 30,
    hideCursor: true,
    clearOnComplete: true,
    noTTYOutput: false,
  });
  let barStarted = false;
  let lastLabel = '';
  let lastLineAt = 0;
  let settled = false;
  const seen = new Set<string>();
  // On a terminal the bar's line is cleared first; its next redraw comes below what was printed.
  const print = (text: string) => stream.write(`${interactive && barStarted ? '\r\x1b[K' : ''}${text}\n`);
  void done
    .finally(() => {
      settled = true;
    })
    .catch(() => undefined);

  while (!settled) {
    await Promise.race([done.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, POLL_MS))]);
    if (settled) break;
    let steps: PendingStep[];
    try {
      steps = await pendingSteps(handle);
    } catch {
      continue;
    }
    const step = steps[0];
    if (!step) continue;
    if (!seen.has(step.activityType)) {
      seen.add(step.activityType);
      options.onStep?.(step.activityType, print);
    }
    const progress = step.progress;
    if (!interactive) {
      const label = `${step.activityType}#${step.attempt}`;
      const now = Date.now();
      if (label !== lastLabel || now - lastLineAt >= lineEveryMs) {
        stream.write(`… ${progressLine(step)}\n`);
        lastLabel = label;
        lastLineAt = now;
      }
      continue;
    }
    const retry = step.attempt > 1 ? ` | attempt ${step.attempt}${step.lastFailure ? `: ${step.lastFailure.slice(0, 60)}` : ''}` : '';
    const total = progress && progress.bytesTotal > 0 ? progress.bytesTotal : 1;
    const value = progress ? Math.min(progress.bytesDone, total) : 0;
    const payload = { step: step.activityType.padEnd(14), detail: progress ? describeProgress(progress) : '', retry };
    if (!barStarted) {
      bar.start(total, value, payload);
      barStarted = true;
    } else {
      bar.setTotal(total);
      bar.update(value, payload);
    }
  }
  if (barStarted) bar.stop();
  return done;
}
