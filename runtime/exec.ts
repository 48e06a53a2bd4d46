/**
 * `POST /v1/exec`: run a command in the root and wait for it.
 *
 * The caller picks the executionId and may repeat a request (an activity
 * retry); the same id never runs twice while its result is on disk or its
 * run is in flight. Output goes straight to log files under
 * `<root>/.ferry-agent/exec/<executionId>/`, so a chatty command costs the
 * agent no memory, and the full logs stay readable through `/v1/logs`.
 */
import { spawn } from 'node:child_process';
import { open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { EXEC_TAIL_BYTES, type ExecRequest, type ExecResult } from '../core/agentProtocol';
import { FailureType } from '../core/errors';
import { quotePath, unsafePathReason } from '../core/paths';
import { ConfinedDirectories, lstatOrUndefined, requestDirProblem, STATE_DIR } from './confine';
import { AgentFailure, errorCode, invalid } from './failure';
import { openRegularFile } from './fileHash';
import type { AgentLogger } from './log';

const EXECUTION_ID = /^[A-Za-z0-9._-]{1,128}$/;
/** setTimeout cannot wait longer than about 24.8 days; a week is plenty for one command. */
const MAX_TIMEOUT_SECONDS = 7 * 24 * 3600;

export type ExecStreamName = 'stdout' | 'stderr';

export function isExecutionId(value: unknown): value is string {
  // '.' and '..' match the character class but would name the parent folders.
  return typeof value === 'string' && EXECUTION_ID.test(value) && unsafePathReason(value) === undefined;
}

function execDir(executionId: string): string {
  return `${STATE_DIR}/exec/${executionId}`;
}

function execLogPath(executionId: string, stream: ExecStreamName): string {
  return `${execDir(executionId)}/${stream}.log`;
}

export function validateExecRequest(body: unknown): ExecRequest {
  if (typeof body !== 'object' || body === null) throw invalid('exec request is not an object');
  const { executionId, command, cwd, env, timeoutSeconds } = body as Partial<ExecRequest>;
  if (!isExecutionId(executionId)) throw invalid(`executionId ${JSON.stringify(executionId)} must match ${EXECUTION_ID}`);
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
  if (typeof timeoutSeconds !== 'number' || !(timeoutSeconds > 0) || timeoutSeconds > MAX_TIMEOUT_SECONDS) {
    throw invalid(`timeoutSeconds must be a number above 0 and at most ${MAX_TIMEOUT_SECONDS}`);
  }
  return { executionId, command, cwd, env, timeoutSeconds };
}

type ProcessOutcome = { exitCode: number | null; signal: string | null } | { spawnError: Error };

export class ExecRunner {
  private readonly inFlight = new Map<string, Promise<ExecResult>>();
  /** Process-group ids of running commands, killed when the agent closes. */
  private readonly runningGroups = new Set<number>();

  constructor(
    private readonly root: string,
    private readonly bootId: string,
    private readonly log: AgentLogger,
  ) {}

  /** The result of `request.executionId`: saved, in flight, or from running it now. */
  run(request: ExecRequest): Promise<ExecResult> {
    const existing = this.inFlight.get(request.executionId);
    if (existing) return existing;
    const run = this.runOnce(request).finally(() => this.inFlight.delete(request.executionId));
    this.inFlight.set(request.executionId, run);
    return run;
  }

  killAll(): void {
    for (const group of this.runningGroups) killGroup(group);
  }

  private async runOnce(request: ExecRequest): Promise<ExecResult> {
    const directories = new ConfinedDirectories(this.root);
    const dir = await directories.ensure(execDir(request.executionId));
    const saved = await readSavedResult(join(dir, 'result.json'));
    if (saved) return saved;
    if (await lstatOrUndefined(join(dir, 'stdout.log'))) {
      this.log.log('warn', 'execution has logs but no result (the agent stopped during it); running it again', { executionId: request.executionId });
    }
    const cwd = await directories.ensure(request.cwd ?? '');

    const started = Date.now();
    this.log.log('info', 'exec started', { executionId: request.executionId, command: request.command[0], cwd: request.cwd ?? '' });
    const { outcome, timedOut } = await this.runProcess(request, cwd, dir);

    const [out, err] = await Promise.all([readTail(join(dir, 'stdout.log')), readTail(join(dir, 'stderr.log'))]);
    const result: ExecResult = {
      executionId: request.executionId,
      bootId: this.bootId,
      // Shell conventions: 127 for a program that does not exist, 126 for one that cannot run.
      exitCode: 'spawnError' in outcome ? (errorCode(outcome.spawnError) === 'ENOENT' ? 127 : 126) : outcome.exitCode,
      signal: 'spawnError' in outcome ? null : outcome.signal,
      timedOut,
      stdoutTail: out.tail,
      stderrTail: err.tail,
      stdoutBytes: out.bytes,
      stderrBytes: err.bytes,
      stdoutPath: execLogPath(request.executionId, 'stdout'),
      stderrPath: execLogPath(request.executionId, 'stderr'),
      durationMs: Date.now() - started,
    };
    await writeResult(join(dir, 'result.json'), result);
    this.log.log('info', 'exec finished', { executionId: result.executionId, exitCode: result.exitCode, signal: result.signal, timedOut, ms: result.durationMs });
    return result;
  }

  /** Spawns the command with its output going to the log files in `dir`, and waits for it (or its timeout). */
  private async runProcess(request: ExecRequest, cwd: string, dir: string): Promise<{ outcome: ProcessOutcome; timedOut: boolean }> {
    const stdout = await open(join(dir, 'stdout.log'), 'w');
    let stderr: FileHandle | undefined;
    try {
      stderr = await open(join(dir, 'stderr.log'), 'w');
      const child = spawn(request.command[0], request.command.slice(1), {
        cwd,
        env: { ...process.env, ...request.env },
        stdio: ['ignore', stdout.fd, stderr.fd],
        // Its own process group, so a timeout kills everything the command started.
        detached: true,
      });
      const pid = child.pid;
      let timedOut = false;
      if (pid !== undefined) this.runningGroups.add(pid);
      const timer = setTimeout(() => {
        timedOut = true;
        if (pid !== undefined) killGroup(pid);
      }, request.timeoutSeconds * 1000);
      const outcome = await new Promise<ProcessOutcome>((resolve) => {
        child.once('error', (spawnError) => resolve({ spawnError }));
        child.once('exit', (exitCode, signal) => resolve({ exitCode, signal }));
      });
      clearTimeout(timer);
      if (pid !== undefined) this.runningGroups.delete(pid);
      if ('spawnError' in outcome) await stderr.write(`ferry-agent: cannot run ${JSON.stringify(request.command[0])}: ${outcome.spawnError.message}\n`);
      return { outcome, timedOut };
    } finally {
      await stdout.close();
      await stderr?.close();
    }
  }
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // ESRCH: the whole group has already exited. Nothing else can fail for our own child's group.
  }
}

async function readSavedResult(path: string): Promise<ExecResult | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  return JSON.parse(text) as ExecResult;
}

/** Written to a temp name and renamed, so a saved result is never half a file. */
async function writeResult(path: string, result: ExecResult): Promise<void> {
  await writeFile(`${path}.tmp`, JSON.stringify(result));
  await rename(`${path}.tmp`, path);
}

async function readTail(path: string): Promise<{ bytes: number; tail: string }> {
  const handle = await open(path, 'r');
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

/** The full log of one execution for `/v1/logs`, or undefined when there is none. */
export async function openExecLog(root: string, executionId: string, stream: ExecStreamName): Promise<FileHandle | undefined> {
  const directories = new ConfinedDirectories(root);
  if ((await directories.inspect(execDir(executionId))) === 'missing') return undefined;
  return openRegularFile(directories.absolute(execLogPath(executionId, stream)));
}
