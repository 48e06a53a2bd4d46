/**
 * `/v1/processes`: commands started once per process id, followed by status
 * requests, log reads by byte range and stop requests.
 *
 * The caller picks the id and may repeat a start (an activity retry): the
 * same id never starts twice — while it runs, after it ended (its result is
 * on disk), and after the agent itself restarted in between (the process is
 * then `lost`: its end is unknown; the new agent kills whatever of it still
 * runs rather than let it overlap what comes next). Output goes straight to log files under
 * `<state>/processes/<id>/`, so a chatty command costs the agent no memory
 * and its logs can be shipped while it runs.
 */
import { spawn } from 'node:child_process';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdir, open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXEC_TAIL_BYTES, type ProcessLogStream, type ProcessStatus, type StartProcessRequest, type StopProcessResult } from '../core/agentProtocol';
import { FailureType } from '../core/errors';
import { quotePath, unsafePathReason } from '../core/paths';
import { lstatOrUndefined, requestDirProblem } from './confine';
import { AgentFailure, errorCode, invalid } from './failure';
import { HeldFolders, type HeldFolder, type Owner } from './heldFolders';
import type { AgentLogger } from './log';
import { PROCESS_MARKER, killScope, processMarker, signalGroup } from './processTree';

const PROCESS_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** setTimeout cannot wait longer than about 24.8 days; a week is plenty for one command with a limit. */
const MAX_TIMEOUT_SECONDS = 7 * 24 * 3600;
/** Longest a status request may hold its connection open waiting for the end (below the client's idle timeout). */
export const MAX_WAIT_MS = 15_000;
const MAX_GRACE_SECONDS = 600;

export function isProcessId(value: unknown): value is string {
  return typeof value === 'string' && PROCESS_ID.test(value) && unsafePathReason(value) === undefined;
}

function waitMsProblem(waitMs: unknown): string | undefined {
  if (waitMs === undefined) return undefined;
  return typeof waitMs === 'number' && Number.isInteger(waitMs) && waitMs >= 0 && waitMs <= MAX_WAIT_MS ? undefined : `waitMs must be a whole number from 0 to ${MAX_WAIT_MS}`;
}

export function validateStartRequest(body: unknown): StartProcessRequest {
  if (typeof body !== 'object' || body === null) throw invalid('process request is not an object');
  const { processId, command, cwd, env, timeoutSeconds, output, waitMs } = body as Partial<StartProcessRequest>;
  if (!isProcessId(processId)) throw invalid(`processId ${JSON.stringify(processId)} must match ${PROCESS_ID}`);
  if (!Array.isArray(command) || command.length === 0 || command.some((arg) => typeof arg !== 'string' || arg.includes('\0')) || command[0] === '') {
    throw invalid('command must be a non-empty array of strings without NUL, starting with a program');
  }
  if (cwd !== undefined) {
    const problem = requestDirProblem(cwd);
    if (problem !== undefined) throw new AgentFailure(FailureType.UnsafePath, `cwd ${quotePath(cwd)}: ${problem}`, { path: String(cwd) });
  }
  if (env !== undefined) {
    if (typeof env !== 'object' || env === null || Array.isArray(env)) throw invalid('env must be an object of strings');
    for (const [name, value] of Object.entries(env)) {
      if (name === '' || /[=\0]/.test(name) || typeof value !== 'string' || value.includes('\0')) throw invalid(`env ${JSON.stringify(name)} is not a valid variable`);
    }
  }
  if (timeoutSeconds !== undefined && (typeof timeoutSeconds !== 'number' || !(timeoutSeconds > 0) || timeoutSeconds > MAX_TIMEOUT_SECONDS)) {
    throw invalid(`timeoutSeconds must be a number above 0 and at most ${MAX_TIMEOUT_SECONDS}, or absent for no limit`);
  }
  if (output !== undefined && output !== 'separate' && output !== 'combined') throw invalid(`output must be "separate" or "combined", got ${JSON.stringify(output)}`);
  const waitProblem = waitMsProblem(waitMs);
  if (waitProblem) throw invalid(waitProblem);
  return { processId, command, cwd, env, timeoutSeconds, output, waitMs };
}

export function parseWaitMs(text: string | null): number {
  if (text === null) return 0;
  const waitMs = Number(text);
  const problem = /^\d+$/.test(text) ? waitMsProblem(waitMs) : `waitMs must be a whole number from 0 to ${MAX_WAIT_MS}`;
  if (problem) throw invalid(problem);
  return waitMs;
}

export function validateStopRequest(body: unknown): { graceSeconds: number } {
  const graceSeconds = (body as { graceSeconds?: unknown } | null)?.graceSeconds;
  if (typeof graceSeconds !== 'number' || !(graceSeconds >= 0) || graceSeconds > MAX_GRACE_SECONDS) throw invalid(`graceSeconds must be a number from 0 to ${MAX_GRACE_SECONDS}`);
  return { graceSeconds };
}

/** What is kept on disk once a process ended. */
interface ProcessRecord {
  /** The boot it ran on. */
  bootId: string;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  durationMs: number;
  pid: number | null;
}

/** The user executed code runs as, when it is not the agent's own. */
export interface RunAs extends Owner {
  name: string;
  /** Its home folder, given to the code as HOME. */
  home?: string;
}

export interface ProcessTableOptions {
  /** The agent's root: working folders are under it. */
  root: string;
  /** Absolute folder holding `processes/<id>/`: the agent's alone. */
  stateDir: string;
  bootId: string;
  /** Names this agent's processes among all on the machine, across its restarts (see processTree). */
  agentKey: string;
  /** Signs records on disk: a key only the agent's memory holds, stable across its restarts. */
  recordKey: Buffer;
  runAs?: RunAs;
  log: AgentLogger;
}

interface RunningProcess {
  pid: number | null;
  /** Absolute working folder: removing a folder stops the processes inside it. */
  cwd: string;
  marker: string;
  startedAt: number;
  timedOut: boolean;
  /** Set when the process was reaped: its pid may name another process from then on. */
  exited: boolean;
  /** Resolves with the record once the process ended and the record is on disk. */
  ended: Promise<ProcessRecord>;
  record?: ProcessRecord;
}

/**
 * Processes this agent started, answered from memory for this boot. Records
 * on disk serve only a later boot of the agent, and only when their
 * signature holds: code that can write the state folder (one user for agent
 * and code) cannot make a record the agent trusts, and nothing it writes
 * there changes what this boot answers for its own processes.
 */
export class ProcessTable {
  private readonly running = new Map<string, RunningProcess>();
  /** Starts in flight, so two concurrent requests for one id start one process. */
  private readonly starting = new Map<string, Promise<boolean>>();

  constructor(private readonly options: ProcessTableOptions) {}

  private get log(): AgentLogger {
    return this.options.log;
  }

  private get bootId(): string {
    return this.options.bootId;
  }

  private dirOf(processId: string): string {
    return join(this.options.stateDir, 'processes', processId);
  }

  /** Starts the process unless its id is known; answers its status (after waiting up to `waitMs` for it to end). */
  async start(request: StartProcessRequest): Promise<ProcessStatus> {
    const pending = this.starting.get(request.processId);
    let startedHere = false;
    if (pending) await pending.catch(() => undefined);
    else {
      const starting = this.startOnce(request).finally(() => this.starting.delete(request.processId));
      this.starting.set(request.processId, starting);
      startedHere = await starting;
    }
    return this.status(request.processId, request.waitMs ?? 0, startedHere);
  }

  /** Spawns the process; false when its id is already known (running, ended, or lost). */
  private async startOnce(request: StartProcessRequest): Promise<boolean> {
    if (this.running.has(request.processId) || (await lstatOrUndefined(this.dirOf(request.processId)))) return false;
    const folders = new HeldFolders(this.options.root, { create: true, owner: this.options.runAs });
    try {
      // Before the process's own folder exists, so a refused cwd leaves its id unknown.
      const folder = (await folders.hold(request.cwd ?? '')) as HeldFolder;
      const dir = this.dirOf(request.processId);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const stdout = await open(join(dir, 'stdout.log'), 'w');
      try {
        const stderr = await open(join(dir, 'stderr.log'), 'w');
        try {
          this.running.set(request.processId, this.spawn(request, folder, [stdout, request.output === 'combined' ? stdout : stderr]));
        } finally {
          await stderr.close();
        }
      } finally {
        await stdout.close();
      }
    } finally {
      await folders.close();
    }
    const { pid } = this.running.get(request.processId) as RunningProcess;
    this.log.log('info', 'process started', { processId: request.processId, command: request.command[0], cwd: request.cwd ?? '', pid, user: this.options.runAs?.name });
    return true;
  }

  private spawn(request: StartProcessRequest, folder: HeldFolder, [stdout, stderr]: [FileHandle, FileHandle]): RunningProcess {
    const { runAs } = this.options;
    const marker = processMarker(this.options.agentKey, this.bootId, request.processId);
    const child = spawn(request.command[0], request.command.slice(1), {
      // The folder held open: the child enters exactly the folder that was checked, even if its path was swapped for a link since.
      cwd: folder.path,
      // The marker last, so the command and everything it starts can always be found (runtime/processTree).
      env: { ...process.env, ...(runAs ? runAsEnv(runAs) : {}), ...request.env, [PROCESS_MARKER]: marker },
      // Another user cannot read the agent's state, memory or /proc/<pid>/environ (libuv enters cwd before it drops to that user).
      ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
      stdio: ['ignore', stdout.fd, stderr.fd],
      // Its own process group and session, so a timeout or stop reaches everything the command started.
      detached: true,
    });
    const cwd = request.cwd ? join(this.options.root, request.cwd) : this.options.root;
    const running: RunningProcess = { pid: child.pid ?? null, cwd, marker, startedAt: Date.now(), timedOut: false, exited: child.pid === undefined, ended: Promise.resolve(undefined as never) };
    const timer =
      request.timeoutSeconds !== undefined
        ? setTimeout(() => {
            running.timedOut = true;
            void this.killTree(request.processId, running);
          }, request.timeoutSeconds * 1000)
        : undefined;
    // Listeners before the next await: a spawn error is emitted on the next tick.
    running.ended = new Promise<ProcessRecord>((resolve) => {
      let settled = false;
      const settle = (outcome: { exitCode: number | null; signal: string | null }, spawnError?: string) => {
        running.exited = true;
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        void this.finish(request.processId, running, outcome, spawnError).then(resolve);
      };
      // Shell conventions: 127 for a program that does not exist, 126 for one that cannot run.
      child.once('error', (err) => settle({ exitCode: errorCode(err) === 'ENOENT' ? 127 : 126, signal: null }, `ferry-agent: cannot run ${JSON.stringify(request.command[0])}: ${err.message}\n`));
      child.once('exit', (exitCode, signal) => settle({ exitCode, signal }));
    });
    return running;
  }

  private async finish(processId: string, entry: RunningProcess, outcome: { exitCode: number | null; signal: string | null }, spawnError?: string): Promise<ProcessRecord> {
    const dir = this.dirOf(processId);
    const record: ProcessRecord = { bootId: this.bootId, ...outcome, timedOut: entry.timedOut, durationMs: Date.now() - entry.startedAt, pid: entry.pid };
    entry.record = record;
    try {
      if (spawnError) await writeFile(join(dir, 'stderr.log'), spawnError, { flag: 'a' });
      // Written to a temp name and renamed, so a record is never half a file.
      await writeFile(join(dir, 'result.json.tmp'), JSON.stringify({ ...record, signature: this.sign(processId, record) }));
      await rename(join(dir, 'result.json.tmp'), join(dir, 'result.json'));
    } catch (err) {
      // This boot still answers from memory; after a restart the process reads as lost, never as started again.
      this.log.log('error', 'could not save a process record', { processId, error: String(err) });
    }
    this.log.log('info', 'process ended', { processId, exitCode: record.exitCode, signal: record.signal, timedOut: record.timedOut, ms: record.durationMs });
    return record;
  }

  private sign(processId: string, record: ProcessRecord): string {
    const fields = [processId, record.bootId, record.exitCode, record.signal, record.timedOut, record.durationMs, record.pid];
    return createHmac('sha256', this.options.recordKey).update(JSON.stringify(fields)).digest('hex');
  }

  /** The record an earlier boot left, if its signature holds; a record that fails it is logged and ignored (the process reads as lost). */
  private async readEarlierRecord(processId: string): Promise<ProcessRecord | undefined> {
    let text: string;
    try {
      text = await readFile(join(this.dirOf(processId), 'result.json'), 'utf8');
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return undefined;
      throw err;
    }
    let stored: Partial<ProcessRecord & { signature: unknown }> | undefined;
    try {
      stored = JSON.parse(text) as Partial<ProcessRecord & { signature: unknown }>;
    } catch {
      stored = undefined;
    }
    const { signature, ...rest } = stored ?? {};
    const record = rest as ProcessRecord;
    const expected = stored && Buffer.from(this.sign(processId, record));
    if (expected && typeof signature === 'string' && signature.length === expected.length && timingSafeEqual(Buffer.from(signature), expected)) return record;
    this.log.log('warn', 'a process record failed its signature check; the process reads as lost', { processId });
    return undefined;
  }

  /** The process's status now, or once it ended if that happens within `waitMs`. Unknown ids answer 404. */
  async status(processId: string, waitMs: number, started = false): Promise<ProcessStatus> {
    const entry = this.running.get(processId);
    if (entry && !entry.record && waitMs > 0) await Promise.race([entry.ended, sleep(waitMs)]);
    const dir = this.dirOf(processId);
    // A process of this boot is answered from memory alone, whatever the state folder holds.
    const record = entry ? entry.record : await this.readEarlierRecord(processId);
    if (!entry && !record && !(await lstatOrUndefined(dir))) throw new AgentFailure(FailureType.InvalidInput, `no process ${JSON.stringify(processId)}`, { status: 404 });
    const [out, err] = await Promise.all([readTail(join(dir, 'stdout.log')), readTail(join(dir, 'stderr.log'))]);
    const base = { processId, bootId: this.bootId, started, stdoutBytes: out.bytes, stderrBytes: err.bytes, stdoutTail: out.tail, stderrTail: err.tail };
    if (record) return { ...base, state: 'exited', pid: record.pid, exitCode: record.exitCode, signal: record.signal, timedOut: record.timedOut, durationMs: record.durationMs };
    if (entry) return { ...base, state: 'running', pid: entry.pid, exitCode: null, signal: null, timedOut: false, durationMs: Date.now() - entry.startedAt };
    return { ...base, state: 'lost', pid: null, exitCode: null, signal: null, timedOut: false, durationMs: 0 };
  }

  /** SIGTERM to the group, then SIGKILL to whatever of it is left once `graceSeconds` passed or the command ended; answers what it took. */
  async stop(processId: string, graceSeconds: number): Promise<StopProcessResult> {
    const entry = this.running.get(processId);
    if (!entry || entry.record) return { signal: 'none', status: await this.status(processId, 0) };
    if (!entry.exited) signalGroup(entry.pid, 'SIGTERM');
    const ended = await Promise.race([entry.ended.then(() => true), sleep(graceSeconds * 1000).then(() => false)]);
    // What ignored SIGTERM, or left the group (setsid, a daemon), ends now.
    await this.killTree(processId, entry);
    await entry.ended;
    this.log.log('info', 'process stopped', { processId, signal: ended ? 'TERM' : 'KILL' });
    return { signal: ended ? 'TERM' : 'KILL', status: await this.status(processId, 0) };
  }

  /** The log file, open for reading (empty logs of a process that never wrote exist too); 404 for an unknown id. */
  async openLog(processId: string, stream: ProcessLogStream): Promise<FileHandle> {
    if (!this.running.has(processId) && !(await lstatOrUndefined(this.dirOf(processId)))) throw new AgentFailure(FailureType.InvalidInput, `no process ${JSON.stringify(processId)}`, { status: 404 });
    try {
      return await open(join(this.dirOf(processId), `${stream}.log`), 'r');
    } catch (err) {
      if (errorCode(err) === 'ENOENT') throw new AgentFailure(FailureType.InvalidInput, `no ${stream} log for process ${JSON.stringify(processId)}`, { status: 404 });
      throw err;
    }
  }

  /**
   * Stops every process started in `absolute` or a folder inside it, with
   * everything it started — also what a command that already ended left
   * running (a daemon, a background job); answers how many were running.
   */
  async stopInside(absolute: string): Promise<number> {
    const inside = [...this.running.entries()].filter(([, entry]) => entry.cwd === absolute || entry.cwd.startsWith(`${absolute}/`));
    const running = inside.filter(([, entry]) => !entry.record).length;
    await Promise.all(inside.map(([processId, entry]) => this.killTree(processId, entry)));
    await Promise.all(inside.map(([, entry]) => entry.ended));
    return running;
  }

  /**
   * Kills every process this agent started, in this boot or an earlier one
   * (a predecessor killed without closing leaves them running), with
   * everything they started; answers how many processes it killed.
   */
  async killAll(): Promise<number> {
    const leaders = [...this.running.values()].filter((entry) => !entry.exited && entry.pid !== null).map((entry) => entry.pid as number);
    return killScope({ leaders, marked: (marker) => marker.startsWith(`${this.options.agentKey}/`) });
  }

  /**
   * Kills what earlier boots of this agent started and left running (the
   * agent was killed before it could close): their processes read as lost,
   * and a lost process must not go on writing into a session beside what runs
   * next.
   */
  async killEarlierBoots(): Promise<number> {
    const thisBoot = `${this.options.agentKey}/${this.bootId}/`;
    return killScope({ leaders: [], marked: (marker) => marker.startsWith(`${this.options.agentKey}/`) && !marker.startsWith(thisBoot) });
  }

  private async killTree(processId: string, entry: RunningProcess): Promise<void> {
    try {
      await killScope({ leaders: entry.exited || entry.pid === null ? [] : [entry.pid], marked: (marker) => marker === entry.marker });
    } catch (err) {
      this.log.log('error', 'could not kill a process tree', { processId, error: String(err) });
    }
  }
}

/** The login variables of the user code runs as, so tools do not look in the agent's home. */
function runAsEnv(runAs: RunAs): NodeJS.ProcessEnv {
  return { USER: runAs.name, LOGNAME: runAs.name, ...(runAs.home ? { HOME: runAs.home } : {}) };
}

async function readTail(path: string): Promise<{ bytes: number; tail: string }> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return { bytes: 0, tail: '' };
    throw err;
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, EXEC_TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    // Skip UTF-8 continuation bytes at the cut, so the tail does not start with a broken character.
    let start = 0;
    while (size > length && start < Math.min(3, length) && (buffer[start] & 0xc0) === 0x80) start++;
    return { bytes: size, tail: buffer.subarray(start).toString('utf8') };
  } finally {
    await handle.close();
  }
}
