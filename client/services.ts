/**
 * Launching and stopping the real servers ferry runs on a developer's
 * machine: the Temporal dev server (`temporal server start-dev`) and a
 * SeaweedFS S3 server (`weed mini`). Used by `ferry up`, the test harness
 * and the benchmark.
 *
 * The binaries come from `.tools/bin/` (made by `npm run tools`, i.e.
 * scripts/install-tools.sh) or from FERRY_<TOOL>_BIN.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';

// ---------------------------------------------------------------------------
// Tools

export type ToolName = 'temporal' | 'weed' | 'rclone' | 'moto';

const TOOL_LABEL: Record<ToolName, string> = {
  temporal: 'the Temporal CLI',
  weed: 'SeaweedFS (weed)',
  rclone: 'rclone',
  moto: "moto's AWS API emulator (moto_server)",
};

/** The executable each tool installs, when it differs from the tool's name. */
const TOOL_BINARY: Partial<Record<ToolName, string>> = { moto: 'moto_server' };

/** A required external binary is not installed (or an override points nowhere). */
export class ToolMissingError extends Error {
  override readonly name = 'ToolMissingError';
  constructor(
    readonly tool: ToolName,
    readonly hint: string,
    message?: string,
  ) {
    super(message ?? `${TOOL_LABEL[tool]} (${tool}) not found: ${hint}`);
  }
}

/** The environment variable that overrides a tool's binary, e.g. FERRY_TEMPORAL_BIN. */
export function toolEnvVar(name: ToolName): string {
  return `FERRY_${name.toUpperCase()}_BIN`;
}

function isExecutableFile(p: string): boolean {
  try {
    const st = fs.statSync(p); // follows symlinks: a dangling link is "missing"
    if (!st.isFile()) return false;
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Path of a tool's binary: FERRY_<NAME>_BIN if set, else
 * `<repoRoot>/.tools/bin/<name>`. Throws ToolMissingError otherwise.
 */
export function resolveTool(name: ToolName, repoRoot: string): string {
  const envVar = toolEnvVar(name);
  const override = process.env[envVar];
  if (override !== undefined && override !== '') {
    const abs = path.resolve(override);
    if (!isExecutableFile(abs)) {
      const hint = `${envVar}=${override} is not an executable file: point it at ${TOOL_LABEL[name]} or unset it`;
      throw new ToolMissingError(name, hint, hint);
    }
    return abs;
  }
  const local = path.join(repoRoot, '.tools', 'bin', TOOL_BINARY[name] ?? name);
  if (isExecutableFile(local)) return local;
  const only = name === 'temporal' || name === 'weed' ? 'temporal,weed' : name;
  const hint =
    `run \`npm run tools\` (scripts/install-tools.sh; \`bash scripts/install-tools.sh --only ${only}\` for just this) ` +
    `to install it into ${path.join(repoRoot, '.tools', 'bin')}, or set ${envVar} to an existing binary`;
  throw new ToolMissingError(name, hint);
}

let cachedRepoRoot: string | undefined;

/**
 * The project root: the nearest directory above this module holding a
 * package.json named "ferry" (works from client/ and from dist/client/).
 */
export function repoRoot(): string {
  if (cachedRepoRoot !== undefined) return cachedRepoRoot;
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    try {
      const parsed = JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: unknown };
      if (parsed.name === 'ferry') {
        cachedRepoRoot = dir;
        return dir;
      }
    } catch {
      // no (readable) package.json here: keep walking up
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`cannot find the ferry project root (a package.json named "ferry") above ${__dirname}`);
    }
    dir = parent;
  }
}

// ---------------------------------------------------------------------------
// Ports

/** A port a server needs is already bound by something else. */
export class PortInUseError extends Error {
  override readonly name = 'PortInUseError';
  constructor(
    readonly service: string,
    readonly port: number,
    readonly host: string = '127.0.0.1',
    flag: string = `--${service}-port`,
  ) {
    super(
      `port ${port} (${service}) is already in use on ${host}: stop what holds it ` +
        `(ss -ltnp 'sport = :${port}') or pick another port with ${flag}`,
    );
  }
}

/** host:port, with brackets for IPv6 literals. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Ports this process handed out recently, so two allocations never return the same port. */
const handedOut = new Map<number, number>();
const HANDED_OUT_TTL_MS = 60_000;

function recentlyHandedOut(port: number): boolean {
  const at = handedOut.get(port);
  if (at === undefined) return false;
  if (Date.now() - at > HANDED_OUT_TTL_MS) {
    handedOut.delete(port);
    return false;
  }
  return true;
}

function listenOnce(port: number, host: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(undefined));
    srv.listen({ port, host, exclusive: true }, () => {
      const addr = srv.address();
      const got = typeof addr === 'object' && addr !== null ? addr.port : undefined;
      srv.close(() => resolve(got));
    });
  });
}

/** True when nothing listens on host:port (we could bind it). */
export async function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return (await listenOnce(port, host)) !== undefined;
}

/** A port the OS says is free on host right now. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await listenOnce(0, host);
    if (port === undefined) throw new Error(`cannot bind any port on ${host}`);
    if (recentlyHandedOut(port)) continue;
    handedOut.set(port, Date.now());
    return port;
  }
  throw new Error(`cannot find a free port on ${host}`);
}

/**
 * A free port P such that P + offset is free too. SeaweedFS derives some
 * gRPC addresses as "HTTP port + 10000" no matter what the -*.port.grpc
 * flag says (its admin worker does), so its services get such pairs.
 * Both ports lie below the usual ephemeral range (32768+), so outgoing
 * connections never occupy them by chance.
 */
export async function freePortPair(host = '127.0.0.1', offset = 10_000): Promise<[number, number]> {
  const lo = 10_000;
  const hi = Math.min(32_767, 65_535) - offset; // P + offset stays <= 32767
  for (let i = 0; i < 500; i++) {
    const p = lo + Math.floor(Math.random() * (hi - lo));
    const q = p + offset;
    if (recentlyHandedOut(p) || recentlyHandedOut(q)) continue;
    if (!(await isPortFree(p, host)) || !(await isPortFree(q, host))) continue;
    const now = Date.now();
    handedOut.set(p, now);
    handedOut.set(q, now);
    return [p, q];
  }
  throw new Error(`cannot find two free ports ${offset} apart on ${host}`);
}

/** Throws PortInUseError for the first port that something already holds. */
export async function assertPortsFree(
  ports: { service: string; port: number; flag?: string }[],
  host = '127.0.0.1',
): Promise<void> {
  for (const p of ports) {
    if (!(await isPortFree(p.port, host))) throw new PortInUseError(p.service, p.port, host, p.flag);
  }
}

// ---------------------------------------------------------------------------
// Processes

export interface ManagedProcess {
  name: string;
  pid: number;
  logFile: string;
  /** SIGTERM, wait up to signalTimeoutMs (default 15 s), then SIGKILL. Idempotent. */
  stop(signalTimeoutMs?: number): Promise<void>;
  /** Resolves with the exit code (null when ended by a signal). */
  exited: Promise<number | null>;
}

/** What the start functions return: a ManagedProcess plus how it was started. */
export interface StartedServer extends ManagedProcess {
  /** Every port given to the server, by flag or role name. */
  readonly ports: Readonly<Record<string, number>>;
  /** Command-line arguments after the binary (no secrets in them). */
  readonly args: readonly string[];
  /** Milliseconds from spawn until the readiness checks passed. */
  readonly readyMs: number;
}

/** A server did not come up; carries the tail of its log. */
export class ServiceStartError extends Error {
  override readonly name = 'ServiceStartError';
  constructor(
    readonly service: string,
    message: string,
    readonly logFile: string,
    readonly logTail: string,
  ) {
    super(logTail ? `${message}\n--- last lines of ${logFile} ---\n${logTail}` : `${message} (log: ${logFile})`);
  }
}

/** True if a process with this pid exists (signal 0 probe). */
export function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}


/** True if `exited` settles within `ms` (the timer is cleared as soon as it does). */
function exitedWithin(exited: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void exited.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * Stops a process we did not spawn ourselves (e.g. one `ferry up --detach`
 * left running): SIGTERM, wait, SIGKILL. Resolves when it is gone.
 */
export async function stopPid(pid: number, signalTimeoutMs = 15_000): Promise<void> {
  const send = (sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  if (!isPidAlive(pid)) return;
  send('SIGTERM');
  const deadline = Date.now() + signalTimeoutMs;
  while (isPidAlive(pid) && Date.now() < deadline) await sleep(100);
  if (!isPidAlive(pid)) return;
  send('SIGKILL');
  const killDeadline = Date.now() + 5_000;
  while (isPidAlive(pid) && Date.now() < killDeadline) await sleep(50);
}

// Non-detached children die with us: on exit they get SIGTERM; on a fatal
// signal nobody else handles, they get it too before we re-raise it.
const attachedChildren = new Set<number>();
let exitHookInstalled = false;
let signalHooksInstalled = false;
const FATAL_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function killAttached(): void {
  for (const pid of attachedChildren) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // gone already
    }
  }
}

function onFatalSignal(sig: NodeJS.Signals): void {
  // Someone else (e.g. the CLI) handles this signal: they own the shutdown.
  if (process.listenerCount(sig) > 1) return;
  killAttached();
  removeSignalHooks();
  process.kill(process.pid, sig);
}

function trackAttached(pid: number): void {
  attachedChildren.add(pid);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', killAttached);
  }
  if (!signalHooksInstalled) {
    signalHooksInstalled = true;
    for (const s of FATAL_SIGNALS) process.on(s, onFatalSignal);
  }
}

function removeSignalHooks(): void {
  if (!signalHooksInstalled) return;
  signalHooksInstalled = false;
  for (const s of FATAL_SIGNALS) process.removeListener(s, onFatalSignal);
}

function untrackAttached(pid: number): void {
  attachedChildren.delete(pid);
  if (attachedChildren.size === 0) removeSignalHooks();
}

export interface SpawnOptions {
  /** Short name for messages and the stack state (e.g. 'agent'). */
  name: string;
  binary: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd?: string;
  logFile: string;
  detached: boolean;
}

export interface SpawnedProcess extends ManagedProcess {
  /** Size of the log file before this process wrote to it. */
  logOffset: number;
  isRunning(): boolean;
}

/**
 * Spawns `binary args` with stdout and stderr appended to `logFile`.
 * `detached: true` puts it in its own process group and lets this process
 * exit without it; otherwise it is stopped when this process exits (or dies
 * of SIGINT/SIGTERM/SIGHUP that nobody else handles).
 */
export async function spawnManaged(o: SpawnOptions): Promise<SpawnedProcess> {
  fs.mkdirSync(path.dirname(o.logFile), { recursive: true });
  const fd = fs.openSync(o.logFile, 'a');
  let logOffset = 0;
  try {
    logOffset = fs.fstatSync(fd).size;
    fs.writeSync(fd, `\n=== ${new Date().toISOString()} ferry starts ${o.name}: ${o.binary} ${o.args.join(' ')}\n`);
    logOffset = fs.fstatSync(fd).size;
  } catch {
    // the log header is best effort
  }
  let child;
  try {
    child = spawn(o.binary, o.args, {
      cwd: o.cwd,
      env: o.env,
      stdio: ['ignore', fd, fd],
      detached: o.detached,
      windowsHide: true,
    });
  } finally {
    fs.closeSync(fd); // the child holds its own copy
  }
  let running = true;
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      running = false;
      if (child.pid !== undefined) untrackAttached(child.pid);
      resolve(code);
    });
    child.once('error', () => {
      // spawn failure (ENOENT, EACCES): no 'exit' will follow
      if (child.pid === undefined) {
        running = false;
        resolve(null);
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', (err) =>
      reject(new Error(`cannot start ${o.name} (${o.binary}): ${(err as Error).message}`)),
    );
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start ${o.name} (${o.binary}): no pid`);
  if (o.detached) child.unref();
  else trackAttached(pid);

  let stopping: Promise<void> | undefined;
  const signal = (sig: NodeJS.Signals) => {
    if (!running) return;
    try {
      // A detached child leads its own process group: signal all of it.
      process.kill(o.detached ? -pid : pid, sig);
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        // gone already
      }
    }
  };
  const stop = (signalTimeoutMs = 15_000): Promise<void> => {
    if (stopping) return stopping;
    stopping = (async () => {
      if (!running) return;
      signal('SIGTERM');
      const timedOut = await exitedWithin(exited, signalTimeoutMs).then((ok) => !ok);
      if (timedOut && running) {
        signal('SIGKILL');
        await exitedWithin(exited, 10_000);
      }
    })();
    return stopping;
  };
  return {
    name: o.name,
    pid,
    logFile: o.logFile,
    stop,
    exited,
    logOffset,
    isRunning: () => running,
  };
}

/** The last `lines` lines the process wrote to its log (from `offset` on). */
export function logTail(logFile: string, lines = 20, offset = 0): string {
  try {
    const fd = fs.openSync(logFile, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const start = Math.max(offset, size - 64 * 1024);
      const buf = Buffer.alloc(Math.max(0, size - start));
      fs.readSync(fd, buf, 0, buf.length, start);
      const text = buf.toString('utf8').replace(/\s+$/, '');
      return text.split('\n').slice(-lines).join('\n');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return '';
  }
}

const PORT_CLASH = /address already in use|is not available on .* and cannot be used/i;

function tcpProbe(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (ok: boolean) => {
      sock.removeAllListeners();
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

function httpStatus(url: string, timeoutMs = 2_000): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(undefined));
  });
}

/**
 * Polls `check` every `intervalMs` until it returns true, the process exits
 * (throws with the log tail) or `timeoutMs` passes (stops it and throws).
 */
async function waitReady(
  proc: SpawnedProcess,
  service: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
  describeLast: () => string,
  intervalMs = 200,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.isRunning()) {
      const code = await proc.exited;
      throw new ServiceStartError(
        service,
        `${service} exited (code ${code}) before it was ready`,
        proc.logFile,
        logTail(proc.logFile, 20, proc.logOffset),
      );
    }
    let ok = false;
    try {
      ok = await check();
    } catch {
      ok = false;
    }
    if (ok && proc.isRunning()) return;
    if (Date.now() >= deadline) {
      await proc.stop(5_000);
      throw new ServiceStartError(
        service,
        `${service} was not ready after ${Math.round(timeoutMs / 1000)} s (${describeLast()}); stopped it`,
        proc.logFile,
        logTail(proc.logFile, 20, proc.logOffset),
      );
    }
    await exitedWithin(proc.exited, intervalMs);
  }
}

// ---------------------------------------------------------------------------
// Temporal dev server

export type SearchAttributeType = 'Keyword' | 'Text' | 'Int' | 'Double' | 'Bool' | 'Datetime' | 'KeywordList';

export interface TemporalDevServerOptions {
  binary: string;
  /** SQLite file for persistent state; omitted: in memory. */
  dbFile?: string;
  host: string;
  port: number;
  /** Web UI port; undefined runs the server with --headless. */
  uiPort?: number;
  namespace: string;
  searchAttributes: Record<string, SearchAttributeType>;
  logFile: string;
  detached?: boolean;
  /** Readiness deadline (default 60 s). */
  readyTimeoutMs?: number;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const START_ATTEMPTS = 3;

/**
 * Runs `temporal server start-dev` and resolves once its gRPC frontend
 * answers a health check, getSystemInfo and DescribeNamespace(namespace).
 */
export async function startTemporalDevServer(opts: TemporalDevServerOptions): Promise<StartedServer> {
  for (const [key, type] of Object.entries(opts.searchAttributes)) {
    if (!IDENTIFIER.test(key)) throw new Error(`search attribute name "${key}" is not an identifier`);
    if (!['Keyword', 'Text', 'Int', 'Double', 'Bool', 'Datetime', 'KeywordList'].includes(type)) {
      throw new Error(`search attribute ${key} has unknown type "${type}"`);
    }
  }
  const wanted: { service: string; port: number; flag?: string }[] = [{ service: 'temporal', port: opts.port }];
  if (opts.uiPort !== undefined) wanted.push({ service: 'temporal-ui', port: opts.uiPort, flag: '--temporal-ui-port' });
  if (opts.dbFile) fs.mkdirSync(path.dirname(path.resolve(opts.dbFile)), { recursive: true });

  for (let attempt = 1; ; attempt++) {
    await assertPortsFree(wanted, opts.host);
    const httpPort = await freePort(opts.host);
    const metricsPort = await freePort(opts.host);
    const args = ['server', 'start-dev', '--ip', opts.host, '--port', String(opts.port)];
    if (opts.uiPort === undefined) args.push('--headless');
    else args.push('--ui-port', String(opts.uiPort), '--ui-disable-news-fetch');
    args.push('--http-port', String(httpPort), '--metrics-port', String(metricsPort));
    if (opts.dbFile) args.push('--db-filename', path.resolve(opts.dbFile));
    args.push('--namespace', opts.namespace);
    for (const [key, type] of Object.entries(opts.searchAttributes)) args.push('--search-attribute', `${key}=${type}`);
    args.push('--log-level', 'warn');

    const ports: Record<string, number> = { grpc: opts.port, http: httpPort, metrics: metricsPort };
    if (opts.uiPort !== undefined) ports.ui = opts.uiPort;

    const started = Date.now();
    const proc = await spawnManaged({
      name: 'temporal',
      binary: opts.binary,
      args,
      env: process.env,
      logFile: opts.logFile,
      detached: opts.detached ?? false,
    });
    const address = hostPort(opts.host, opts.port);
    let last = 'gRPC port not accepting connections yet';
    try {
      await waitReady(
        proc,
        'temporal',
        opts.readyTimeoutMs ?? 60_000,
        async () => {
          if (!(await tcpProbe(opts.host, opts.port))) {
            last = 'gRPC port not accepting connections yet';
            return false;
          }
          let connection: Connection | undefined;
          try {
            connection = await Connection.connect({ address, connectTimeout: 2_000 });
            const health = await connection.healthService.check({});
            // 1 = SERVING (grpc.health.v1)
            if (health.status !== 1) {
              last = `health status ${String(health.status)}`;
              return false;
            }
            await connection.workflowService.getSystemInfo({});
            await connection.workflowService.describeNamespace({ namespace: opts.namespace });
            return true;
          } catch (e) {
            last = (e as Error).message;
            return false;
          } finally {
            await connection?.close().catch(() => undefined);
          }
        },
        () => last,
      );
    } catch (e) {
      const tail = e instanceof ServiceStartError ? e.logTail : '';
      if (!proc.isRunning() && PORT_CLASH.test(tail)) {
        if (tail.includes(`:${opts.port}:`) || tail.includes(`:${opts.port} `)) {
          throw new PortInUseError('temporal', opts.port, opts.host);
        }
        if (opts.uiPort !== undefined && tail.includes(`:${opts.uiPort}`)) {
          throw new PortInUseError('temporal-ui', opts.uiPort, opts.host, '--temporal-ui-port');
        }
        if (attempt < START_ATTEMPTS) continue; // one of our helper ports was taken meanwhile
      }
      throw e;
    }
    return Object.assign(stripInternal(proc), { ports, args, readyMs: Date.now() - started });
  }
}

function stripInternal(p: SpawnedProcess): ManagedProcess {
  return { name: p.name, pid: p.pid, logFile: p.logFile, stop: p.stop, exited: p.exited };
}

// ---------------------------------------------------------------------------
// SeaweedFS S3 server

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

/**
 * Builds the `weed mini` arguments. Every port weed would open gets an
 * explicit port (or 0 = disabled for Iceberg and Lance) so parallel
 * instances never collide.
 */
async function weedArgs(opts: S3ServerOptions): Promise<{ args: string[]; ports: Record<string, number> }> {
  const [master, masterGrpc] = await freePortPair(opts.host);
  const [volume, volumeGrpc] = await freePortPair(opts.host);
  const [filer, filerGrpc] = await freePortPair(opts.host);
  const [admin, adminGrpc] = await freePortPair(opts.host);
  const s3Grpc = await freePort(opts.host);
  const s3Socket = path.join(path.resolve(opts.dataDir), 's3.sock');
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
    `-dir=${path.resolve(opts.dataDir)}`,
    `-ip=${opts.host}`,
    `-ip.bind=${opts.host}`,
    ...Object.entries(ports).map(([flag, port]) => `-${flag}=${port}`),
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    // weed leaves its S3 unix socket behind (default /tmp/seaweedfs-s3-<port>.sock):
    // keep it in the data dir when the path fits a socket address.
    ...(s3Socket.length < 100 ? [`-s3.localSocket=${s3Socket}`] : []),
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
  fs.mkdirSync(opts.dataDir, { recursive: true });

  // weed reads AWS_* (admin identity) and S3_* (buckets, external URL) from
  // its environment: give it ours only.
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('AWS_') && !k.startsWith('S3_')) env[k] = v;
  }
  env.AWS_ACCESS_KEY_ID = opts.accessKeyId;
  env.AWS_SECRET_ACCESS_KEY = opts.secretAccessKey;

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

// ---------------------------------------------------------------------------
// moto (AWS API emulator; tests of the ECS and SSM drivers)

export interface MotoServerOptions {
  binary: string;
  host: string;
  port: number;
  logFile: string;
  /** Readiness deadline (default 60 s). */
  readyTimeoutMs?: number;
}

/**
 * Runs `moto_server` (one port for every AWS service) and resolves once its
 * `/moto-api/` page answers. It checks no signatures: any credentials do.
 */
export async function startMotoServer(opts: MotoServerOptions): Promise<StartedServer & { endpoint: string }> {
  await assertPortsFree([{ service: 'moto', port: opts.port }], opts.host);
  const args = ['-H', opts.host, '-p', String(opts.port)];
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AWS_')) env[k] = v;
  const started = Date.now();
  const proc = await spawnManaged({ name: 'moto', binary: opts.binary, args, env, logFile: opts.logFile, detached: false });
  const endpoint = `http://${hostPort(opts.host, opts.port)}`;
  let last = '/moto-api/ not answering yet';
  await waitReady(
    proc,
    'moto',
    opts.readyTimeoutMs ?? 60_000,
    async () => {
      const status = await httpStatus(`${endpoint}/moto-api/`);
      last = status === undefined ? '/moto-api/ not answering yet' : `/moto-api/ answered ${status}`;
      return status === 200;
    },
    () => last,
  );
  return Object.assign(stripInternal(proc), { ports: { moto: opts.port }, args, readyMs: Date.now() - started, endpoint });
}
