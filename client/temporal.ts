/** Connecting the CLI to Temporal, with an error that says what to do when it is not there. */
import { readFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import type { TLSConfig } from '@temporalio/client';
import { ConfigError, type FerryConfig } from '../core/config';
import { payloadCodecsFor } from '../worker/payloadCodec';
import { loadConfig } from './config';

/**
 * Address, TLS and API key for a Temporal connection (client or worker):
 * the dev server needs none; a self-hosted cluster with mTLS needs the
 * certificate files; Temporal Cloud needs TLS plus an API key or a client
 * certificate.
 */
export function temporalConnectionOptions(config: FerryConfig): { address: string; tls?: TLSConfig; apiKey?: string } {
  const { tls, apiKey, address } = config.temporal;
  if (!tls) return { address };
  const read = (file: string, variable: 'FERRY_TEMPORAL_TLS_CA' | 'FERRY_TEMPORAL_TLS_CERT' | 'FERRY_TEMPORAL_TLS_KEY') => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ConfigError(variable, `cannot read ${file}: ${(err as Error).message}`);
    }
  };
  return {
    address,
    apiKey,
    tls: {
      serverNameOverride: tls.serverName,
      serverRootCACertificate: tls.caFile ? read(tls.caFile, 'FERRY_TEMPORAL_TLS_CA') : undefined,
      clientCertPair:
        tls.clientCertFile && tls.clientKeyFile
          ? { crt: read(tls.clientCertFile, 'FERRY_TEMPORAL_TLS_CERT'), key: read(tls.clientKeyFile, 'FERRY_TEMPORAL_TLS_KEY') }
          : undefined,
    },
  };
}

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
