/**
 * Worker entry point: `node dist/worker/main.js`. Configuration comes from
 * FERRY_* environment variables (core/config); SIGINT/SIGTERM shut it down
 * gracefully (the SDK finishes or cancels running activities first).
 */
import { NativeConnection } from '@temporalio/worker';
import { resolveConfig } from '../core/config';
import { createFerryWorker } from './worker';

// ferry pins AWS SDK releases that support Node 20; the SDK's notice about future releases is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

async function main(): Promise<void> {
  const config = resolveConfig(process.env);
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  try {
    const worker = await createFerryWorker({ config, connection });
    await worker.run();
  } finally {
    await connection.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`ferry worker: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
