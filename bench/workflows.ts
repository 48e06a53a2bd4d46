/** Starting syncs on the stack and waiting for them with a bound, so a hung workflow cannot hang the benchmark. */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { sessionRoot, type SyncResult } from '../core/sync';
import type { TestStack } from '../test/support/testStack';
import type { syncWorkflow } from '../workflows/sync';
import type { S3Settings } from './processes';

/** The failure chain of a ferry run, with Temporal failure types and details, for the report. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current instanceof Error && depth < 8; depth++) {
    let text = `${current.name}: ${current.message}`;
    if (current instanceof ApplicationFailure) {
      const details = current.details?.length ? `, details=${JSON.stringify(current.details)}` : '';
      text += ` [type=${current.type}, nonRetryable=${current.nonRetryable}${details}]`;
    }
    parts.push(text);
    current = current.cause;
  }
  return parts.length ? parts.join('\n    caused by ') : String(err);
}

/** Resolves like `promise`, or rejects with `onTimeout()`'s error when it takes longer than `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Promise<Error>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => void onTimeout().then(reject, reject), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** What a stuck workflow is waiting on: its pending activities with attempt, last heartbeat and last failure. */
async function describePending(handle: WorkflowHandle): Promise<string> {
  const { raw } = await handle.describe();
  const activities = (raw.pendingActivities ?? []).map((a) => {
    const details = (a.heartbeatDetails?.payloads ?? []).map((p) => (p.data ? Buffer.from(p.data).toString('utf8') : '')).join(', ');
    const beat = a.lastHeartbeatTime?.seconds ? new Date(Number(a.lastHeartbeatTime.seconds) * 1000).toISOString() : 'never';
    const failure = a.lastFailure?.message ? `, last failure: ${a.lastFailure.message}` : '';
    return `${a.activityType?.name} (attempt ${a.attempt}, last heartbeat ${beat}: ${details || 'none'}${failure})`;
  });
  return activities.length ? `pending: ${activities.join('; ')}` : 'no pending activities';
}

/** The sync's result; after `timeoutMs`, an error naming what it is stuck on (the workflow is terminated). */
export function syncResult(handle: WorkflowHandle<typeof syncWorkflow>, timeoutMs: number): Promise<SyncResult> {
  // Started without dryRun, so the result is a SyncResult.
  return withTimeout(handle.result() as Promise<SyncResult>, timeoutMs, async () => {
    const pending = await describePending(handle).catch((err: unknown) => `(describe failed: ${String(err)})`);
    await handle.terminate('benchmark timeout').catch(() => undefined);
    return new Error(`workflow ${handle.workflowId}: no result after ${timeoutMs / 1000} s; terminated. ${pending}`);
  });
}

/** Starts a sync on the stack's worker, or on the worker polling `taskQueue`. */
export function startSync(stack: TestStack, workflowId: string, sessionId: string, sourcePath: string, taskQueue = stack.config.temporal.taskQueue): Promise<WorkflowHandle<typeof syncWorkflow>> {
  return stack.client.workflow.start<typeof syncWorkflow>('syncWorkflow', {
    taskQueue,
    workflowId,
    args: [{ sessionId, source: { path: sourcePath } }],
  });
}

/** The stack's S3 server as the peers see it; `endpoint` replaces its URL (the counting proxy). */
export function stackS3Settings(stack: TestStack, endpoint?: string): S3Settings {
  const setting = (name: 'FERRY_S3_ENDPOINT' | 'FERRY_S3_ACCESS_KEY_ID' | 'FERRY_S3_SECRET_ACCESS_KEY') => {
    const value = stack.settings[name];
    if (!value) throw new Error(`the test stack has no ${name}`);
    return value;
  };
  return { endpoint: endpoint ?? setting('FERRY_S3_ENDPOINT'), accessKeyId: setting('FERRY_S3_ACCESS_KEY_ID'), secretAccessKey: setting('FERRY_S3_SECRET_ACCESS_KEY'), bucket: stack.config.s3.bucket };
}

/** Where a session's synced folder lands on the stack's local target. */
export const landedPath = (stack: TestStack, result: SyncResult) => path.join(stack.agentRoot, sessionRoot(result.sessionId), result.dest);

/** Removes a session's folder from the local target, so landed copies do not fill the disk. */
export const removeSession = (stack: TestStack, sessionId: string) => rm(path.join(stack.agentRoot, sessionRoot(sessionId)), { recursive: true, force: true });

/**
 * A tiny sync before timing anything: the first workflow on a fresh worker
 * pays one-off costs (workflow isolate, first polls, S3 client setup) that are
 * not part of syncing the data.
 */
export async function warmUp(stack: TestStack, work: string, timeoutMs: number): Promise<void> {
  const source = path.join(work, 'warmup');
  await mkdir(source, { recursive: true });
  await writeFile(path.join(source, 'hello.txt'), 'warm-up\n');
  const sessionId = `bench-warmup-${Date.now()}`;
  await syncResult(await startSync(stack, sessionId, sessionId, source), timeoutMs);
  await removeSession(stack, sessionId);
}
