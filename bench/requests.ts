/**
 * S3 requests of the cold syncs, counted in a separate, untimed pass: a
 * counting proxy (bench/s3CountingProxy.ts, its own process) in front of the
 * same S3 server, used by a second ferry worker (its own task queue and key
 * prefix, so the store is cold again) with its own runtime agent, and by the
 * peers. Not on the timed path: a proxy there slowed the peers' small-file
 * runs by up to 70% on this machine. Not SeaweedFS's own counters
 * (`weed mini -metricsPort`): they file HEAD under GET and cannot tell the
 * agent's presigned requests from the worker's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { resolveConfig } from '../core/config';
import { sessionRoot, type SyncResult } from '../core/sync';
import { startAgent } from '../runtime/agent';
import { createJsonLogger } from '../runtime/log';
import type { S3Operation } from '../test/support/s3FaultProxy';
import { workflowBundle, type TestStack } from '../test/support/testStack';
import { activityDepsFromConfig, createFerryWorker } from '../worker/worker';
import type { S3Settings } from './processes';
import { COUNTS_PATH, type OperationTally, type RequestCounts, type Signing } from './requestCounts';
import { stackS3Settings, startSync, syncResult } from './workflows';

/** One direction of one run: its requests, by operation, and the bytes it moved. */
export interface DirectionRequests {
  requests: number;
  failed: number;
  byOperation: Partial<Record<S3Operation, number>>;
  /** Body bytes that went this direction: sent to S3 for uploads, received for downloads. */
  bytes: number;
}

export interface RunRequests {
  up: DirectionRequests;
  down: DirectionRequests;
}

export interface S3RequestCounter {
  /** The proxy's URL: the S3 endpoint everyone uses. */
  url: string;
  counts(): Promise<RequestCounts>;
  close(): Promise<void>;
}

/** Starts the proxy process in front of `target` and resolves once it listens. */
export async function startS3RequestCounter(target: string): Promise<S3RequestCounter> {
  const child: ChildProcess = spawn(process.execPath, [path.join(__dirname, 's3CountingProxy.js'), target], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => {
      lines.close();
      resolve((JSON.parse(line) as { url: string }).url);
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`the S3 counting proxy exited with ${code ?? signal} before it listened`)));
  });
  return {
    url,
    async counts() {
      const response = await fetch(`${url}${COUNTS_PATH}`);
      if (!response.ok) throw new Error(`the S3 counting proxy answered ${response.status}`);
      return (await response.json()) as RequestCounts;
    },
    async close() {
      // Closing its stdin ends it (see s3CountingProxy.ts).
      child.stdin?.end();
      await exited;
    },
  };
}

const emptyDirection = (): DirectionRequests => ({ requests: 0, failed: 0, byOperation: {}, bytes: 0 });

/**
 * The requests made between two readings, in one direction: `signings`
 * selects whose, `bytes` which body bytes count as the data moved.
 */
export function requestsBetween(before: RequestCounts, after: RequestCounts, signings: Signing[], bytes: 'requestBytes' | 'responseBytes'): DirectionRequests {
  const direction = emptyDirection();
  for (const signing of signings) {
    for (const [operation, tally] of Object.entries(after[signing]) as [S3Operation, OperationTally][]) {
      const earlier = before[signing][operation];
      const requests = tally.requests - (earlier?.requests ?? 0);
      if (requests === 0) continue;
      direction.requests += requests;
      direction.failed += tally.failed - (earlier?.failed ?? 0);
      direction.byOperation[operation] = (direction.byOperation[operation] ?? 0) + requests;
      direction.bytes += tally[bytes] - (earlier?.[bytes] ?? 0);
    }
  }
  return direction;
}

/** The issue states its packing goal per 8 MiB of data: at most one request for each. */
export const PACK_BYTES = 8 * 2 ** 20;

/** Requests per 8 MiB moved in that direction; null when nothing moved. */
export const requestsPer8MiB = (direction: DirectionRequests): number | null => (direction.bytes > 0 ? direction.requests / (direction.bytes / PACK_BYTES) : null);

/** `2,003 (2,000 PutObject, 3 HeadObject)`. */
export function requestsText(direction: DirectionRequests): string {
  const operations = Object.entries(direction.byOperation)
    .sort(([, a], [, b]) => b - a)
    .map(([operation, n]) => `${n.toLocaleString('en-US')} ${operation}`);
  return `${direction.requests.toLocaleString('en-US')}${operations.length ? ` (${operations.join(', ')})` : ''}`;
}

/** A ferry worker and runtime agent whose every S3 request goes through the counting proxy. */
export interface CountingRig {
  /** The proxy as an S3 endpoint, for peers. */
  s3: S3Settings;
  counts(): Promise<RequestCounts>;
  /** One sync into `sessionId` on the rig's own worker and agent, bounded by `timeoutMs`. */
  sync(sessionId: string, dir: string, timeoutMs: number): Promise<SyncResult>;
  /** Where a sync of the rig landed. */
  landedPath(result: SyncResult): string;
  /** Removes a session's folder from the rig's target. */
  removeSession(sessionId: string): Promise<void>;
  close(): Promise<void>;
}

export async function startCountingRig(stack: TestStack, work: string): Promise<CountingRig> {
  const cleanups: (() => Promise<unknown>)[] = [];
  const close = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  };
  try {
    const proxy = await startS3RequestCounter(stackS3Settings(stack).endpoint);
    cleanups.push(() => proxy.close());
    const taskQueue = 'ferry-bench-counted';
    const agentRoot = path.join(work, 'counted-target');
    const agentToken = randomBytes(24).toString('hex');
    const agentLog = createWriteStream(path.join(work, 'counted-agent.log'));
    cleanups.push(() => new Promise((resolve) => agentLog.end(resolve)));
    const agent = await startAgent({ root: agentRoot, token: agentToken, allowedUrlPrefixes: [`${proxy.url}/${stack.config.s3.bucket}/`], log: createJsonLogger(agentLog) });
    cleanups.push(() => agent.close());
    const config = resolveConfig(
      {},
      {
        ...stack.settings,
        FERRY_TASK_QUEUE: taskQueue,
        FERRY_S3_ENDPOINT: proxy.url,
        // A prefix of its own: nothing the timed runs stored is there, so its syncs are cold.
        FERRY_S3_PREFIX: `counted-${Date.now()}/`,
        FERRY_LOCAL_AGENT_URL: agent.url,
        FERRY_LOCAL_AGENT_TOKEN: agentToken,
      },
    );
    const connection = await NativeConnection.connect({ address: config.temporal.address });
    cleanups.push(() => connection.close());
    const worker: Worker = await createFerryWorker({ config, connection, activityDeps: activityDepsFromConfig(config), workerOptions: { workflowBundle: await workflowBundle() } });
    const running = worker.run();
    cleanups.push(async () => {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
    });
    return {
      s3: stackS3Settings(stack, proxy.url),
      counts: () => proxy.counts(),
      async sync(sessionId, dir, timeoutMs) {
        return syncResult(await startSync(stack, `${sessionId}-${Date.now()}`, sessionId, dir, taskQueue), timeoutMs);
      },
      landedPath: (result) => path.join(agentRoot, sessionRoot(result.sessionId), result.dest),
      removeSession: (sessionId) => rm(path.join(agentRoot, sessionRoot(sessionId)), { recursive: true, force: true }),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
