/** The Temporal connection settings the worker and the CLI share. */
import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/client';
import { ConfigError, type FerryConfig } from '../core/config';

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
