/**
 * Every setting ferry reads, in one place: its environment variable, its
 * default, and its validation. Pure — callers pass `process.env` and, when
 * the embedded stack is running, the values `ferry up` recorded for it, which
 * fill in what the environment leaves unset.
 */

export interface FerryConfig {
  temporal: { address: string; namespace: string; taskQueue: string; webUiUrl: string };
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
  localAgent?: { url: string; token: string };
  sessions: {
    /** Secret session agent tokens are derived from (activities/sessionDriver sessionToken). Unset → this worker cannot run sessions. */
    secret?: string;
    /** Folder holding the roots of `local` sessions, one per session id. */
    localDir: string;
  };
}

/** Values a running embedded stack provides (see client/stack.ts); all optional. */
export type StackSettings = Partial<Record<SettingName, string>>;

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
  FERRY_LOCAL_AGENT_URL: 'URL of the local runtime agent (the "local" target)',
  FERRY_LOCAL_AGENT_TOKEN: 'bearer token of the local runtime agent',
  FERRY_SESSION_SECRET: 'secret (at least 32 characters) session agent tokens are derived from; required to run pipelines',
  FERRY_SESSIONS_DIR: 'folder holding local session roots (default .ferry/sessions under the working directory)',
} as const;

export type SettingName = keyof typeof SETTINGS;

export class ConfigError extends Error {
  constructor(
    readonly variable: SettingName,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

export function resolveConfig(env: Record<string, string | undefined>, stack: StackSettings = {}): FerryConfig {
  const read = (name: SettingName): string | undefined => {
    const value = env[name] ?? stack[name];
    return value === undefined || value === '' ? undefined : value;
  };

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

  const agentUrl = read('FERRY_LOCAL_AGENT_URL');
  const agentToken = read('FERRY_LOCAL_AGENT_TOKEN');
  if (agentUrl !== undefined && !/^https?:\/\/\S+$/.test(agentUrl)) throw new ConfigError('FERRY_LOCAL_AGENT_URL', `expected an http(s) URL, got ${JSON.stringify(agentUrl)}`);
  if (agentUrl !== undefined && agentToken === undefined) throw new ConfigError('FERRY_LOCAL_AGENT_TOKEN', 'required when FERRY_LOCAL_AGENT_URL is set');

  const sessionSecret = read('FERRY_SESSION_SECRET');
  if (sessionSecret !== undefined && sessionSecret.length < 32) throw new ConfigError('FERRY_SESSION_SECRET', `must be at least 32 characters, got ${sessionSecret.length}`);

  return {
    temporal: {
      address,
      namespace: read('FERRY_NAMESPACE') ?? 'default',
      taskQueue: read('FERRY_TASK_QUEUE') ?? 'ferry',
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
    localAgent: agentUrl && agentToken ? { url: agentUrl.replace(/\/$/, ''), token: agentToken } : undefined,
    sessions: { secret: sessionSecret, localDir: read('FERRY_SESSIONS_DIR') ?? '.ferry/sessions' },
  };
}

/** Web UI link to one workflow execution. */
export function workflowUiUrl(config: FerryConfig, workflowId: string, runId?: string): string {
  const base = `${config.temporal.webUiUrl}/namespaces/${encodeURIComponent(config.temporal.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
  return runId ? `${base}/${encodeURIComponent(runId)}/history` : base;
}
