/** The embedded S3 server (SeaweedFS `weed mini`) for `ferry up`, the tests and the benchmark, with no unauthenticated side doors. */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { START_ATTEMPTS, spawnManaged, waitReady, ServiceStartError, stripInternal, httpStatus, PORT_CLASH, type StartedServer } from './managedProcess';
import { freePort, PortInUseError, assertPortsFree, hostPort, freePortPair } from './ports';

export interface S3ServerOptions {
  binary: string;
  dataDir: string;
  host: string;
  port: number;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  logFile: string;
  detached?: boolean;
  /** Readiness deadline (default 90 s). */
  readyTimeoutMs?: number;
}

/** S3 bucket naming rules (the subset weed enforces plus the usual ones). */
export function isValidBucketName(name: string): boolean {
  return (
    /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name) &&
    !name.includes('..') &&
    !/^\d+\.\d+\.\d+\.\d+$/.test(name)
  );
}

/** weed's gRPC servers, each of which takes its mTLS certificate from WEED_GRPC_<NAME>_CERT/_KEY. */
const WEED_GRPC_COMPONENTS = ['MASTER', 'VOLUME', 'FILER', 'S3', 'ADMIN', 'WORKER', 'CLIENT', 'MSG_BROKER', 'MSG_AGENT', 'MQ'];

/**
 * The secrets that close weed's side doors, made anew on every start and
 * given to weed through its environment (no security.toml, so none on disk
 * but the key below): every port but S3 answers loopback clients, i.e.
 * every local user, so each must demand something only weed holds.
 * - JWT keys: the volume server refuses reads and writes, and the filer's
 *   HTTP API the same, without a token signed with them.
 * - One self-signed certificate, CA and leaf at once (weed checks no host
 *   names): every gRPC server demands it from its clients (mutual TLS).
 *   Its key is written 0600 in a 0700 folder under the data dir.
 */
async function weedSecretsEnv(dataDir: string): Promise<NodeJS.ProcessEnv> {
  const tlsDir = path.join(path.resolve(dataDir), 'tls');
  fs.mkdirSync(tlsDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(tlsDir, 0o700);
  const cert = path.join(tlsDir, 'grpc.crt');
  const key = path.join(tlsDir, 'grpc.key');
  fs.rmSync(key, { force: true });
  try {
    await promisify(execFile)('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3650',
      '-subj', '/CN=ferry-seaweedfs', '-keyout', key, '-out', cert,
      '-addext', 'basicConstraints=critical,CA:TRUE',
      '-addext', 'keyUsage=critical,digitalSignature,keyCertSign',
      '-addext', 'extendedKeyUsage=serverAuth,clientAuth',
    ], { timeout: 30_000 });
  } catch (err) {
    throw new Error(`cannot make the certificate that guards SeaweedFS's gRPC ports with openssl (is it installed? Debian: apt-get install openssl): ${(err as Error).message}`, { cause: err });
  }
  fs.chmodSync(key, 0o600);
  const secret = () => randomBytes(32).toString('hex');
  const env: NodeJS.ProcessEnv = {
    WEED_JWT_SIGNING_KEY: secret(),
    WEED_JWT_SIGNING_READ_KEY: secret(),
    WEED_JWT_FILER_SIGNING_KEY: secret(),
    WEED_JWT_FILER_SIGNING_READ_KEY: secret(),
    WEED_GRPC_CA: cert,
  };
  for (const component of WEED_GRPC_COMPONENTS) {
    env[`WEED_GRPC_${component}_CERT`] = cert;
    env[`WEED_GRPC_${component}_KEY`] = key;
  }
  return env;
}

/**
 * Builds the `weed mini` arguments. Every port weed would open gets an
 * explicit port (or 0 = disabled for Iceberg and Lance) so parallel
 * instances never collide. The master's and filer's HTTP APIs are off
 * (`-disableHttp`): weed's parts talk gRPC, and those APIs would hand any
 * local user blob locations and the tokens to overwrite them.
 */
async function weedArgs(opts: S3ServerOptions): Promise<{ args: string[]; ports: Record<string, number> }> {
  const [master, masterGrpc] = await freePortPair(opts.host);
  const [volume, volumeGrpc] = await freePortPair(opts.host);
  const [filer, filerGrpc] = await freePortPair(opts.host);
  const [admin, adminGrpc] = await freePortPair(opts.host);
  const s3Grpc = await freePort(opts.host);
  const dataDir = path.resolve(opts.dataDir);
  const s3Socket = path.join(dataDir, 's3.sock');
  const filerSocket = path.join(dataDir, 'filer.sock');
  const ports: Record<string, number> = {
    's3.port': opts.port,
    's3.port.grpc': s3Grpc,
    'master.port': master,
    'master.port.grpc': masterGrpc,
    'volume.port': volume,
    'volume.port.grpc': volumeGrpc,
    'filer.port': filer,
    'filer.port.grpc': filerGrpc,
    'admin.port': admin,
    'admin.port.grpc': adminGrpc,
  };
  const args = [
    'mini',
    `-dir=${dataDir}`,
    `-ip=${opts.host}`,
    `-ip.bind=${opts.host}`,
    ...Object.entries(ports).map(([flag, port]) => `-${flag}=${port}`),
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    // weed leaves its unix sockets behind (default /tmp/seaweedfs-<s3|filer>-<port>.sock,
    // open to every local user): keep them in the 0700 data dir when the path fits a socket address.
    ...(s3Socket.length < 100 ? [`-s3.localSocket=${s3Socket}`, `-filer.localSocket=${filerSocket}`] : []),
    '-disableHttp',
    '-admin.ui=false',
    '-webdav=false',
    '-master.telemetry=false',
    `-bucket=${opts.bucket}`,
  ];
  return { args, ports };
}

/**
 * Runs `weed mini` as an S3 server that requires signed requests (the
 * credentials reach weed only through its environment) and resolves once
 * /healthz answers 200 and a signed HeadBucket on `bucket` succeeds.
 */
export async function startS3Server(opts: S3ServerOptions): Promise<StartedServer> {
  if (!isValidBucketName(opts.bucket)) {
    throw new Error(`"${opts.bucket}" is not a valid S3 bucket name (3-63 chars of a-z, 0-9, '.', '-')`);
  }
  if (!opts.accessKeyId || !opts.secretAccessKey) {
    throw new Error('startS3Server needs an access key id and a secret access key (auth would be off without them)');
  }
  // Only this user may reach the stored data, the unix sockets and the gRPC key.
  fs.mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(opts.dataDir, 0o700);

  // weed reads AWS_* (admin identity), S3_* (buckets, external URL) and
  // WEED_* (security settings) from its environment: give it ours only.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('AWS_') && !k.startsWith('S3_') && !k.startsWith('WEED_')) env[k] = v;
  }
  env.AWS_ACCESS_KEY_ID = opts.accessKeyId;
  env.AWS_SECRET_ACCESS_KEY = opts.secretAccessKey;
  Object.assign(env, await weedSecretsEnv(opts.dataDir));

  const endpoint = `http://${hostPort(opts.host, opts.port)}`;
  for (let attempt = 1; ; attempt++) {
    await assertPortsFree([{ service: 's3', port: opts.port }], opts.host);
    const { args, ports } = await weedArgs(opts);
    const started = Date.now();
    const proc = await spawnManaged({
      name: 'weed',
      binary: opts.binary,
      args,
      env,
      cwd: opts.dataDir,
      logFile: opts.logFile,
      detached: opts.detached ?? false,
    });
    const s3 = new S3Client({
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey },
      maxAttempts: 1,
    });
    let last = '/healthz not answering yet';
    try {
      await waitReady(
        proc,
        's3 (weed)',
        opts.readyTimeoutMs ?? 90_000,
        async () => {
          const status = await httpStatus(`${endpoint}/healthz`);
          if (status !== 200) {
            last = status === undefined ? '/healthz not answering yet' : `/healthz answered ${status}`;
            return false;
          }
          try {
            await s3.send(new HeadBucketCommand({ Bucket: opts.bucket }), { abortSignal: AbortSignal.timeout(3_000) });
            return true;
          } catch (e) {
            const err = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
            last = `HeadBucket ${opts.bucket}: ${err.$metadata?.httpStatusCode ?? ''} ${err.name ?? ''} ${err.message ?? ''}`.trim();
            return false;
          }
        },
        () => last,
      );
    } catch (e) {
      const tail = e instanceof ServiceStartError ? e.logTail : '';
      if (!proc.isRunning() && PORT_CLASH.test(tail)) {
        if (new RegExp(`port ${opts.port} for S3|:${opts.port}: bind`).test(tail)) {
          throw new PortInUseError('s3', opts.port, opts.host);
        }
        if (attempt < START_ATTEMPTS) continue; // one of our internal ports was taken meanwhile
      }
      throw e;
    } finally {
      s3.destroy();
    }
    return Object.assign(stripInternal(proc), { ports, args, readyMs: Date.now() - started });
  }
}
