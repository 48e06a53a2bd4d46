/** snapshotSource called directly, outside a worker, as the hashing and large-tree sections time it. */
import { performance } from 'node:perf_hooks';
import { DefaultLogger } from '@temporalio/worker';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createLocalSourceActivities, type SnapshotSourceResult } from '../activities/localSource';
import type { S3BlobStore } from '../activities/s3BlobStore';

/**
 * One snapshot of `dir`, timed around the activity call. A new activities
 * instance every time: per-instance caches (the product is gaining a stat
 * cache) must start cold, or the second run would measure the cache.
 */
export async function timedSnapshot(blobs: S3BlobStore, dir: string): Promise<{ seconds: number; result: SnapshotSourceResult }> {
  const { snapshotSource } = createLocalSourceActivities({ blobs });
  // WARN: the activity's "source snapshotted" info line would land in the benchmark's output.
  const environment = new MockActivityEnvironment({}, { logger: new DefaultLogger('WARN') });
  const started = performance.now();
  const result = (await environment.run(snapshotSource, { path: dir })) as SnapshotSourceResult;
  return { seconds: (performance.now() - started) / 1000, result };
}
