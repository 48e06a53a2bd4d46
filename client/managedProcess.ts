/**
 * Supervising the server processes ferry starts: spawned with their output
 * in a log file, waited on until ready (a TCP or HTTP probe), killed with
 * their process group when the parent dies, stopped with a grace period.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

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
  // Logs can reveal URLs, paths and errors of a user's runs: its owner's only.
  const fd = fs.openSync(o.logFile, 'a', 0o600);
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

/** Starts of a server tried before giving up when a helper port it picked was taken meanwhile. */
export const START_ATTEMPTS = 3;

export const PORT_CLASH = /address already in use|is not available on .* and cannot be used/i;

export function tcpProbe(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
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

export function httpStatus(url: string, timeoutMs = 2_000): Promise<number | undefined> {
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
export async function waitReady(
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
    let ok: boolean;
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

export function stripInternal(p: SpawnedProcess): ManagedProcess {
  return { name: p.name, pid: p.pid, logFile: p.logFile, stop: p.stop, exited: p.exited };
}
