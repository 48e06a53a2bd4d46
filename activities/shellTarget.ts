/**
 * The `shell` target: runs ferry's generated scripts with bash on this
 * machine. It is a real target (training runs here) and the way the scripts
 * are tested: the `ssm` driver sends the very same text to an instance.
 */
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';

/** One script run on a target. */
export interface ScriptRun {
  /** What the script does (`land`, `probe`, …), for logs and SSM comments. */
  purpose: string;
  /** A constant script from core/shellScripts. */
  script: string;
  /** Values the script reads; never spliced into its text. */
  env: Record<string, string>;
  /** The target must finish the script within this time. */
  timeoutMs: number;
}

export interface ScriptOutcome {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** The transport cut stdout (SSM keeps 24,000 characters); the report line may be missing. */
  stdoutTruncated: boolean;
}

export interface ScriptRunHooks {
  signal?: AbortSignal;
  /** Called while waiting, so activities can heartbeat. */
  onWait?: () => void;
}

/** How a target runs a script: the one seam between the training activities and a transport. */
export interface ScriptRunner {
  /** For messages: `shell:/srv/train`, `ssm:i-0abc…`. */
  readonly description: string;
  run(run: ScriptRun, hooks?: ScriptRunHooks): Promise<ScriptOutcome>;
}

/** Thrown when a target did not finish a script: timed out, cancelled, undeliverable. */
export class TargetCommandError extends Error {
  constructor(
    readonly kind: 'timedOut' | 'cancelled' | 'undeliverable',
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'TargetCommandError';
  }
}

/** Variables of the worker's environment a training script may see; S3 and AWS secrets are not among them. */
const PASSED_ENV = ['PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LC_ALL', 'TMPDIR', 'TZ'];
/** Output kept per stream; scripts print one short report line, the rest is diagnostics. */
const MAX_OUTPUT_CHARS = 1 << 20;

export class ShellTarget implements ScriptRunner {
  readonly description: string;

  constructor(
    private readonly root: string,
    private readonly shell = 'bash',
  ) {
    this.description = `shell:${root}`;
  }

  async run(run: ScriptRun, hooks: ScriptRunHooks = {}): Promise<ScriptOutcome> {
    await mkdir(this.root, { recursive: true });
    const env: NodeJS.ProcessEnv = {};
    for (const name of PASSED_ENV) if (process.env[name] !== undefined) env[name] = process.env[name];
    Object.assign(env, run.env);
    const child = spawn(this.shell, ['-c', run.script, `ferry-${run.purpose}`], { cwd: this.root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let stdoutTruncated = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      if (stdout.length < MAX_OUTPUT_CHARS) stdout += chunk;
      else stdoutTruncated = true;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < MAX_OUTPUT_CHARS) stderr += chunk;
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, run.timeoutMs);
    const beat = hooks.onWait ? setInterval(hooks.onWait, 1_000) : undefined;
    const abort = () => child.kill('SIGKILL');
    hooks.signal?.addEventListener('abort', abort, { once: true });
    try {
      const exitCode = await new Promise<number>((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
      });
      if (timedOut) throw new TargetCommandError('timedOut', `${run.purpose} script did not finish within ${run.timeoutMs} ms on ${this.description}`, { purpose: run.purpose });
      return { exitCode, stdout, stderr, stdoutTruncated };
    } finally {
      clearTimeout(timer);
      if (beat) clearInterval(beat);
      hooks.signal?.removeEventListener('abort', abort);
    }
  }
}
