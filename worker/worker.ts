/**
 * Builds a ferry Worker from configuration: real S3 clients, every target
 * kind its settings configure, and the workflow code.
 */
import { type NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { blobStoreFromConfig } from '../activities/s3BlobStore';
import { configureTargets } from '../activities/targets';
import type { FerryConfig } from '../core/config';
import { payloadCodecsFor } from '../temporal/payloadCodec';

/** Everything activities need, from configuration. */
export function activityDepsFromConfig(config: FerryConfig): ActivityDeps {
  const blobs = blobStoreFromConfig(config.s3);
  return { blobs, targets: configureTargets({ settings: config.settings, blobs }) };
}

export interface FerryWorkerOptions {
  config: FerryConfig;
  connection: NativeConnection;
  /** Overrides for tests (e.g. a prebuilt `workflowBundle`) and tuning. */
  workerOptions?: Partial<WorkerOptions>;
  activityDeps?: ActivityDeps;
}

export function createFerryWorker(options: FerryWorkerOptions): Promise<Worker> {
  const deps = options.activityDeps ?? activityDepsFromConfig(options.config);
  const { worker: tuning } = options.config;
  const code = options.workerOptions?.workflowBundle
    ? {}
    : tuning.workflowBundlePath
      ? { workflowBundle: { codePath: tuning.workflowBundlePath } }
      : { workflowsPath: require.resolve('../workflows') };
  return Worker.create({
    connection: options.connection,
    namespace: options.config.temporal.namespace,
    taskQueue: options.config.temporal.taskQueue,
    activities: createActivities(deps),
    // The CLI's progress bar reads heartbeat details; the default throttle (80% of the
    // heartbeat timeout) would refresh it every 24 s. One heartbeat RPC a second per activity is cheap.
    maxHeartbeatThrottleInterval: '1s',
    dataConverter: payloadCodecsFor(options.config.codec),
    maxCachedWorkflows: tuning.maxCachedWorkflows,
    maxConcurrentActivityTaskExecutions: tuning.maxConcurrentActivities,
    maxConcurrentWorkflowTaskExecutions: tuning.maxConcurrentWorkflowTasks,
    ...code,
    ...options.workerOptions,
  });
}
