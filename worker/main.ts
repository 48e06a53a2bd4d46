/**
 * Worker entry point: `node dist/worker/main.js`. Configuration comes from
 * FERRY_* environment variables (core/config). In production it loads the
 * workflow bundle built by `npm run bundle` (FERRY_WORKFLOW_BUNDLE) instead
 * of bundling at start, serves Prometheus metrics when
 * FERRY_METRICS_ADDRESS is set, and on SIGTERM/SIGINT stops polling, gives
 * running activities FERRY_WORKER_SHUTDOWN_GRACE_SECONDS to finish, and exits 0.
 */
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { temporalConnectionOptions } from '../temporal/connection';
import { resolveConfig } from '../core/config';
import { activityDepsFromConfig, createFerryWorker } from './worker';

// ferry pins AWS SDK releases that support Node 20; the SDK's notice about future releases is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

async function main(): Promise<void> {
  const config = resolveConfig(process.env);
  const { metricsAddress, shutdownGraceSeconds, workflowBundlePath } = config.worker;
  // The runtime's default shutdown signals (SIGINT, SIGTERM, …) call worker.shutdown(); run() then resolves.
  Runtime.install({
    logger: new DefaultLogger('INFO'),
    telemetryOptions: metricsAddress ? { metrics: { prometheus: { bindAddress: metricsAddress } } } : undefined,
  });
  const connection = await NativeConnection.connect(temporalConnectionOptions(config));
  try {
    const activityDeps = activityDepsFromConfig(config);
    const worker = await createFerryWorker({ config, connection, activityDeps, workerOptions: { shutdownGraceTime: `${shutdownGraceSeconds}s` } });
    const targets = [...activityDeps.targets].map(([kind, backend]) => (typeof backend === 'string' ? `${kind} off (${backend})` : kind));
    Runtime.instance().logger.info('ferry worker polling', {
      address: config.temporal.address,
      namespace: config.temporal.namespace,
      taskQueue: config.temporal.taskQueue,
      workflowBundle: workflowBundlePath ?? '(bundled at start)',
      metrics: metricsAddress ? `http://${metricsAddress}/metrics` : 'off',
      payloadEncryption: config.codec ? 'on' : 'off',
      targets: targets.join('; '),
    });
    await worker.run();
  } finally {
    await connection.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`ferry worker: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
