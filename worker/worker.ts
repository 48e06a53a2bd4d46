/**
 * Builds a ferry Worker from configuration: real S3 clients, the local
 * runtime agent if one is configured, and the workflow code.
 */
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { createEcsClient, createEcsSessionDriver } from '../activities/ecsSessions';
import { createLocalSessionDriver } from '../activities/localSessions';
import { S3BlobStore, createS3Clients } from '../activities/s3BlobStore';
import type { FerryConfig } from '../core/config';
import { payloadCodecsFor } from './payloadCodec';

/** Everything activities need, from configuration. */
export function activityDepsFromConfig(config: FerryConfig): ActivityDeps {
  const { client, presignClient } = createS3Clients(config.s3);
  const blobs = new S3BlobStore({
    client,
    presignClient,
    bucket: config.s3.bucket,
    prefix: config.s3.prefix,
    presignExpirySeconds: config.s3.presignExpirySeconds,
  });
  const local = createLocalSessionDriver({ sessionsDir: config.sessions.localDir, allowedUrlPrefixes: async () => [await blobs.blobUrlPrefix()] });
  // ECS sessions only where FERRY_ECS_CLUSTER (and the rest of the ECS settings) are configured.
  const ecs = config.ecs ? createEcsSessionDriver({ ecs: createEcsClient(config.ecs), settings: config.ecs, blobs }) : undefined;
  return { blobs, localAgent: config.localAgent, sessions: { secret: config.sessions.secret, drivers: { local, ...(ecs ? { ecs } : {}) } } };
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
