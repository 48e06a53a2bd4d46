/**
 * Live progress of a running workflow, read from its pending activities'
 * heartbeat details (the activities report {filesDone, bytesDone, ...}).
 */
import type { WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { SingleBar } from 'cli-progress';
import type { TransferProgress } from '../core/sync';
import { formatBytes } from '../core/duration';

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

/**
 * Draws a progress bar on stderr until `done` settles. Off a terminal it
 * prints one line per step change instead, so logs stay readable.
 */
export async function followProgress<T>(handle: WorkflowHandle, done: Promise<T>, stream: NodeJS.WriteStream = process.stderr): Promise<T> {
  const interactive = Boolean(stream.isTTY);
  const bar = new SingleBar(
    {
      stream,
      format: '{step} [{bar}] {percentage}% | {files} files | {bytes}{retry}',
      barsize: 30,
      hideCursor: true,
      clearOnComplete: true,
      noTTYOutput: false,
    },
  );
  let barStarted = false;
  let lastStep = '';
  let settled = false;
  void done.finally(() => {
    settled = true;
  }).catch(() => undefined);

  while (!settled) {
    await Promise.race([done.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 400))]);
    if (settled) break;
    let steps: PendingStep[];
    try {
      steps = await pendingSteps(handle);
    } catch {
      continue;
    }
    const step = steps[0];
    if (!step) continue;
    const progress = step.progress;
    const retry = step.attempt > 1 ? ` | attempt ${step.attempt}${step.lastFailure ? `: ${step.lastFailure.slice(0, 60)}` : ''}` : '';
    if (!interactive) {
      const label = `${step.activityType}${step.attempt > 1 ? ` (attempt ${step.attempt})` : ''}`;
      if (label !== lastStep) stream.write(`… ${label}\n`);
      lastStep = label;
      continue;
    }
    const total = progress && progress.bytesTotal > 0 ? progress.bytesTotal : 1;
    const value = progress ? Math.min(progress.bytesDone, total) : 0;
    const payload = {
      step: step.activityType.padEnd(14),
      files: progress ? `${progress.filesDone}/${progress.filesTotal}` : '?',
      bytes: progress ? `${formatBytes(progress.bytesDone)}/${formatBytes(progress.bytesTotal)}` : '',
      retry,
    };
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
