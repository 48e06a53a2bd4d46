/** Connecting the CLI to Temporal, with an error that says what to do when it is not there. */
import { Client, Connection } from '@temporalio/client';
import { ConfigError, type FerryConfig } from '../core/config';
import { temporalConnectionOptions } from '../temporal/connection';
import { payloadCodecsFor } from '../temporal/payloadCodec';
import { loadConfig } from './config';

export class TemporalUnreachableError extends Error {
  constructor(
    readonly address: string,
    cause: unknown,
  ) {
    super(
      `cannot reach Temporal at ${address} (${(cause as Error).message}): start the embedded stack with \`ferry up --detach\`, or set FERRY_TEMPORAL_ADDRESS`,
      { cause },
    );
    this.name = 'TemporalUnreachableError';
  }
}

export async function connectClient(config: FerryConfig): Promise<{ client: Client; close: () => Promise<void> }> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...temporalConnectionOptions(config), connectTimeout: '5s' });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new TemporalUnreachableError(config.temporal.address, err);
  }
  const client = new Client({ connection, namespace: config.temporal.namespace, dataConverter: payloadCodecsFor(config.codec) });
  return { client, close: () => connection.close() };
}

/** Runs `run` with a client connected per the loaded configuration, and closes the connection after. */
export async function withClient<T>(run: (client: Client, config: FerryConfig) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const { client, close } = await connectClient(config);
  try {
    return await run(client, config);
  } finally {
    await close();
  }
}
