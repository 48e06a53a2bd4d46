/**
 * Every setting ferry reads, in one place: its environment variable, its
 * default, and its validation. Pure — callers pass `process.env` and, when
 * the embedded stack is running, the values `ferry up` recorded for it, which
 * fill in what the environment leaves unset. Target drivers declare their
 * own settings beside them (activities/targets) and read them through
 * `FerryConfig.settings` with the helpers exported here.
 */
import { parseBytes } from './duration';
import { DEFAULT_SIZE_WARNING_BYTES } from './sync';

/** Reads one setting: the environment first, then what `ferry up` recorded; undefined when unset or empty. */
export type SettingsReader = (name: string) => string | undefined;

export interface FerryConfig {
  temporal: {
    address: string;
    namespace: string;
    taskQueue: string;
    webUiUrl: string;
    /** Set → connect over TLS; file paths are read when connecting (this module does no I/O). */
    tls?: TemporalTlsSettings;
    /** Temporal Cloud API key. Never logged or sent through history. */
    apiKey?: string;
  };
  s3: {
    endpoint?: string;
    region: string;
    bucket: string;
    /** Key prefix for everything ferry stores ('' or ending in '/'). */
    prefix: string;
    forcePathStyle: boolean;
    /** Unset → the AWS SDK's default credential chain. Never logged or sent through history. */
    credentials?: { accessKeyId: string; secretAccessKey: string };
    /** Lifetime of presigned blob URLs handed to targets. */
    presignExpirySeconds: number;
  };
  worker: WorkerSettings;
  sync: {
    /** Snapshots over this many bytes name their largest folders before upload (`ferry sync --size-warning` overrides it). */
    sizeWarningBytes: number;
  };
  /** Set → payloads in workflow history are encrypted (AES-256-GCM) with this 32-byte key. */
  codec?: { key: Uint8Array };
  /** Reads any setting, including those target drivers declare. */
  settings: SettingsReader;
}

export interface TemporalTlsSettings {
  /** SNI / host name override. */
  serverName?: string;
  /** PEM file of the CA that signed the server's certificate; unset → system roots (Temporal Cloud). */
  caFile?: string;
  /** PEM files of the client certificate and key for mTLS; both or neither. */
  clientCertFile?: string;
  clientKeyFile?: string;
}

export interface WorkerSettings {
  /** Unset → the SDK's default, which scales with the machine's memory. */
  maxCachedWorkflows?: number;
  maxConcurrentActivities: number;
  maxConcurrentWorkflowTasks: number;
  /** A workflow bundle built ahead of time (`npm run bundle`); unset → workflows are bundled at start. */
  workflowBundlePath?: string;
  /** host:port serving Prometheus metrics at /metrics; unset → no metrics endpoint. */
  metricsAddress?: string;
  /** How long a SIGTERM'd worker lets running activities finish before cancelling them. */
  shutdownGraceSeconds: number;
}

/** Values a running embedded stack provides (see client/stack.ts), by variable name; all optional. */
export type StackSettings = Record<string, string | undefined>;

export const SETTINGS = {
  FERRY_TEMPORAL_ADDRESS: 'Temporal frontend host:port (default 127.0.0.1:7233)',
  FERRY_NAMESPACE: 'Temporal namespace (default "default")',
  FERRY_TASK_QUEUE: 'task queue the worker polls (default "ferry")',
  FERRY_WEB_UI_URL: 'Temporal Web UI base URL for links (default http://127.0.0.1:8233)',
  FERRY_S3_ENDPOINT: 'S3 endpoint URL; unset → AWS S3',
  FERRY_S3_REGION: 'S3 region (default us-east-1)',
  FERRY_S3_BUCKET: 'bucket holding blobs and manifests (default "ferry")',
  FERRY_S3_PREFIX: 'key prefix inside the bucket (default none)',
  FERRY_S3_FORCE_PATH_STYLE: 'true|false; path-style addressing (default true when FERRY_S3_ENDPOINT is set)',
  FERRY_S3_ACCESS_KEY_ID: 'S3 access key id; unset → AWS default credential chain',
  FERRY_S3_SECRET_ACCESS_KEY: 'S3 secret access key (required with FERRY_S3_ACCESS_KEY_ID)',
  FERRY_PRESIGN_EXPIRY_SECONDS: 'lifetime of presigned URLs handed to targets (default 900, 60..3600)',
  FERRY_TEMPORAL_TLS: 'true|false; connect to Temporal over TLS (default false; true when FERRY_TEMPORAL_API_KEY or a client certificate is set)',
  FERRY_TEMPORAL_TLS_CERT: 'PEM file of the client certificate for mTLS (default none; needs FERRY_TEMPORAL_TLS_KEY)',
  FERRY_TEMPORAL_TLS_KEY: 'PEM file of the client private key for mTLS (default none; needs FERRY_TEMPORAL_TLS_CERT)',
  FERRY_TEMPORAL_TLS_CA: "PEM file of the server's CA (default: the system's trusted roots)",
  FERRY_TEMPORAL_TLS_SERVER_NAME: 'TLS server name override (default: the host of FERRY_TEMPORAL_ADDRESS)',
  FERRY_TEMPORAL_API_KEY: 'Temporal Cloud API key (default none; implies TLS)',
  FERRY_WORKER_MAX_CACHED_WORKFLOWS: "workflows a worker keeps in memory (default: the SDK's, scaled to memory)",
  FERRY_WORKER_MAX_CONCURRENT_ACTIVITIES: 'activities a worker runs at once (default 20)',
  FERRY_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: 'workflow tasks a worker runs at once (default 40)',
  FERRY_WORKFLOW_BUNDLE: 'prebuilt workflow bundle (`npm run bundle` → dist/workflow-bundle.js); default: bundle at worker start',
  FERRY_METRICS_ADDRESS: 'host:port where the worker serves Prometheus metrics at /metrics (default: off)',
  FERRY_WORKER_SHUTDOWN_GRACE_SECONDS: 'after SIGTERM, seconds running activities get to finish (default 25, below ECS\'s 30 s stop timeout)',
  FERRY_CODEC_KEY: 'base64 of a 32-byte key; set → payloads in workflow history are AES-256-GCM encrypted (default: off)',
  FERRY_HOME: "folder of the embedded stack's state and logs (default: the nearest .ferry/ holding a stack.json, in the working directory or a parent, else ./.ferry)",
  FERRY_SIZE_WARNING: 'snapshots larger than this name their largest folders before upload, e.g. 500MB or 2GiB (default 1GiB; read by `ferry sync`)',
} as const;

export type SettingName = keyof typeof SETTINGS;

/** A setting with a bad value; the message names the variable. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

/** Reads settings from `env`, then from what `ferry up` recorded in `stack`. */
function settingsReader(env: Record<string, string | undefined>, stack: StackSettings): SettingsReader {
  return (name) => {
    const value = env[name] ?? stack[name];
    return value === undefined || value === '' ? undefined : value;
  };
}

/** FERRY_TASK_QUEUE alone: `ferry up` shows it as a default before any other setting is checked. */
export function taskQueueSetting(env: Record<string, string | undefined>, stack: StackSettings = {}): string {
  return settingsReader(env, stack)('FERRY_TASK_QUEUE') ?? 'ferry';
}

/** FERRY_HOME as given (the client resolves it against the working directory); undefined when unset. */
export function stackHomeSetting(env: Record<string, string | undefined>): string | undefined {
  return settingsReader(env, {})('FERRY_HOME');
}

export function resolveConfig(env: Record<string, string | undefined>, stack: StackSettings = {}): FerryConfig {
  const read = settingsReader(env, stack);

  const address = read('FERRY_TEMPORAL_ADDRESS') ?? '127.0.0.1:7233';
  if (!/^[^\s:/]+:\d{1,5}$/.test(address)) throw new ConfigError('FERRY_TEMPORAL_ADDRESS', `expected host:port, got ${JSON.stringify(address)}`);

  const endpoint = read('FERRY_S3_ENDPOINT');
  if (endpoint !== undefined && !/^https?:\/\/[^\s/]+\/?$/.test(endpoint))
    throw new ConfigError('FERRY_S3_ENDPOINT', `expected an http(s) URL without a path, got ${JSON.stringify(endpoint)}`);

  const pathStyleText = read('FERRY_S3_FORCE_PATH_STYLE');
  if (pathStyleText !== undefined && pathStyleText !== 'true' && pathStyleText !== 'false')
    throw new ConfigError('FERRY_S3_FORCE_PATH_STYLE', `expected true or false, got ${JSON.stringify(pathStyleText)}`);

  const prefix = read('FERRY_S3_PREFIX') ?? '';
  if (prefix !== '' && (!prefix.endsWith('/') || prefix.startsWith('/')))
    throw new ConfigError('FERRY_S3_PREFIX', `must end with "/" and not start with one, got ${JSON.stringify(prefix)}`);

  const bucket = read('FERRY_S3_BUCKET') ?? 'ferry';
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new ConfigError('FERRY_S3_BUCKET', `not a valid bucket name: ${JSON.stringify(bucket)}`);

  const accessKeyId = read('FERRY_S3_ACCESS_KEY_ID');
  const secretAccessKey = read('FERRY_S3_SECRET_ACCESS_KEY');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined))
    throw new ConfigError(accessKeyId === undefined ? 'FERRY_S3_ACCESS_KEY_ID' : 'FERRY_S3_SECRET_ACCESS_KEY', 'set both FERRY_S3_ACCESS_KEY_ID and FERRY_S3_SECRET_ACCESS_KEY, or neither');

  const expiryText = read('FERRY_PRESIGN_EXPIRY_SECONDS') ?? '900';
  const presignExpirySeconds = Number(expiryText);
  if (!Number.isInteger(presignExpirySeconds) || presignExpirySeconds < 60 || presignExpirySeconds > 3600)
    throw new ConfigError('FERRY_PRESIGN_EXPIRY_SECONDS', `expected whole seconds from 60 to 3600, got ${JSON.stringify(expiryText)}`);

  const sizeWarningText = read('FERRY_SIZE_WARNING');
  let sizeWarningBytes = DEFAULT_SIZE_WARNING_BYTES;
  if (sizeWarningText !== undefined) {
    try {
      sizeWarningBytes = parseBytes(sizeWarningText);
    } catch (err) {
      throw new ConfigError('FERRY_SIZE_WARNING', (err as Error).message);
    }
  }

  const { temporalConnection, ...deployment } = resolveDeploymentConfig(read, address);
  return {
    temporal: {
      ...temporalConnection,
      address,
      namespace: read('FERRY_NAMESPACE') ?? 'default',
      taskQueue: taskQueueSetting(env, stack),
      webUiUrl: (read('FERRY_WEB_UI_URL') ?? 'http://127.0.0.1:8233').replace(/\/$/, ''),
    },
    s3: {
      endpoint: endpoint?.replace(/\/$/, ''),
      region: read('FERRY_S3_REGION') ?? 'us-east-1',
      bucket,
      prefix,
      forcePathStyle: pathStyleText === undefined ? endpoint !== undefined : pathStyleText === 'true',
      credentials: accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined,
      presignExpirySeconds,
    },
    sync: { sizeWarningBytes },
    ...deployment,
    settings: read,
  };
}

export function readBoolean(read: SettingsReader, name: string): boolean | undefined {
  const text = read(name);
  if (text === undefined) return undefined;
  if (text !== 'true' && text !== 'false') throw new ConfigError(name, `expected true or false, got ${JSON.stringify(text)}`);
  return text === 'true';
}

export function readInteger(read: SettingsReader, name: string, min: number, max: number): number | undefined {
  const text = read(name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) throw new ConfigError(name, `expected a whole number from ${min} to ${max}, got ${JSON.stringify(text)}`);
  return value;
}

/** A comma-separated list whose items all match `pattern` (empty when unset). */
export function readList(read: SettingsReader, name: string, pattern: RegExp, what: string): string[] {
  const items = (read(name) ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
  const bad = items.find((item) => !pattern.test(item));
  if (bad !== undefined) throw new ConfigError(name, `${JSON.stringify(bad)} is not ${what}`);
  return items;
}

/** Settings for running beyond one machine: Temporal Cloud / TLS, worker tuning, payload encryption. */
function resolveDeploymentConfig(
  read: SettingsReader,
  temporalAddress: string,
): Pick<FerryConfig, 'worker' | 'codec'> & { temporalConnection: Pick<FerryConfig['temporal'], 'tls' | 'apiKey'> } {
  const cert = read('FERRY_TEMPORAL_TLS_CERT');
  const key = read('FERRY_TEMPORAL_TLS_KEY');
  if ((cert === undefined) !== (key === undefined))
    throw new ConfigError(cert === undefined ? 'FERRY_TEMPORAL_TLS_CERT' : 'FERRY_TEMPORAL_TLS_KEY', 'set both FERRY_TEMPORAL_TLS_CERT and FERRY_TEMPORAL_TLS_KEY, or neither');
  const apiKey = read('FERRY_TEMPORAL_API_KEY');
  const tlsFlag = readBoolean(read, 'FERRY_TEMPORAL_TLS');
  if (tlsFlag === false && (apiKey !== undefined || cert !== undefined))
    throw new ConfigError('FERRY_TEMPORAL_TLS', `is false, but ${apiKey !== undefined ? 'FERRY_TEMPORAL_API_KEY' : 'FERRY_TEMPORAL_TLS_CERT'} needs TLS`);
  const useTls = tlsFlag ?? (apiKey !== undefined || cert !== undefined);
  if (!useTls && (read('FERRY_TEMPORAL_TLS_CA') !== undefined || read('FERRY_TEMPORAL_TLS_SERVER_NAME') !== undefined))
    throw new ConfigError(read('FERRY_TEMPORAL_TLS_CA') !== undefined ? 'FERRY_TEMPORAL_TLS_CA' : 'FERRY_TEMPORAL_TLS_SERVER_NAME', `needs TLS: set FERRY_TEMPORAL_TLS=true (address ${temporalAddress})`);

  const metricsAddress = read('FERRY_METRICS_ADDRESS');
  if (metricsAddress !== undefined && !/^[^\s:/]+:\d{1,5}$/.test(metricsAddress))
    throw new ConfigError('FERRY_METRICS_ADDRESS', `expected host:port, got ${JSON.stringify(metricsAddress)}`);

  const codecText = read('FERRY_CODEC_KEY');
  let codec: FerryConfig['codec'];
  if (codecText !== undefined) {
    const key = /^[A-Za-z0-9+/]+={0,2}$/.test(codecText) ? Buffer.from(codecText, 'base64') : Buffer.alloc(0);
    if (key.length !== 32) throw new ConfigError('FERRY_CODEC_KEY', 'expected the base64 of exactly 32 random bytes (e.g. `openssl rand -base64 32`)');
    codec = { key };
  }

  return {
    temporalConnection: {
      tls: useTls
        ? { serverName: read('FERRY_TEMPORAL_TLS_SERVER_NAME'), caFile: read('FERRY_TEMPORAL_TLS_CA'), clientCertFile: cert, clientKeyFile: key }
        : undefined,
      apiKey,
    },
    worker: {
      maxCachedWorkflows: readInteger(read, 'FERRY_WORKER_MAX_CACHED_WORKFLOWS', 0, 100_000),
      maxConcurrentActivities: readInteger(read, 'FERRY_WORKER_MAX_CONCURRENT_ACTIVITIES', 1, 10_000) ?? 20,
      // The SDK requires at least 2 workflow task slots when workflows are cached.
      maxConcurrentWorkflowTasks: readInteger(read, 'FERRY_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS', 2, 10_000) ?? 40,
      workflowBundlePath: read('FERRY_WORKFLOW_BUNDLE'),
      metricsAddress,
      shutdownGraceSeconds: readInteger(read, 'FERRY_WORKER_SHUTDOWN_GRACE_SECONDS', 0, 3600) ?? 25,
    },
    codec,
  };
}

/** Web UI link to one workflow execution. */
export function workflowUiUrl(config: FerryConfig, workflowId: string, runId?: string): string {
  const base = `${config.temporal.webUiUrl}/namespaces/${encodeURIComponent(config.temporal.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
  return runId ? `${base}/${encodeURIComponent(runId)}/history` : base;
}
