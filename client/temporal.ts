/** Connecting the CLI to Temporal, with an error that says what to do when it is not there. */
import { Client, Connection } from '@temporalio/client';
import type { FerryConfig } from '../core/config';

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
    connection = await Connection.connect({ address: config.temporal.address, connectTimeout: '5s' });
  } catch (err) {
    throw new TemporalUnreachableError(config.temporal.address, err);
  }
  const client = new Client({ connection, namespace: config.temporal.namespace });
  return { client, close: () => connection.close() };
}
