/**
 * Child processes the benchmark times: rclone (the performance peer) and
 * cp -r (the local-copy floor). Each run is timed from spawn to exit, because
 * process start-up is part of what a user of either tool waits for.
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';

export interface ProcessRun {
  seconds: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to completion; rejects with its stderr tail on a non-zero
 * exit, or after `timeoutMs` (the process is killed), so a hang cannot hang the benchmark.
 */
export function runProcess(command: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs?: number): Promise<ProcessRun> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => {
            timedOut = true;
            child.kill('SIGKILL');
          }, timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const seconds = (performance.now() - started) / 1000;
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      const tail = stderr.trim().split('\n').slice(-5).join('\n');
      if (code === 0) resolve({ seconds, stdout, stderr });
      else if (timedOut) reject(new Error(`${command} ${args.join(' ')} killed after ${timeoutMs! / 1000} s: ${tail}`));
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code ?? signal}: ${tail}`));
    });
  });
}

export interface S3Settings {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface RcloneRun {
  seconds: number;
  /** Bytes rclone reports as transferred (its final stats), or null if the stats line could not be read. */
  bytes: number | null;
}

/** rclone configured only by environment, with a remote named `s3` pointing at the stack's S3 server. */
export class Rclone {
  private readonly env: NodeJS.ProcessEnv;

  constructor(
    readonly binary: string,
    s3: S3Settings,
  ) {
    const env: NodeJS.ProcessEnv = { ...process.env };
    // A CA bundle meant for real AWS breaks plain-HTTP loopback S3 for rclone.
    delete env.AWS_CA_BUNDLE;
    Object.assign(env, {
      RCLONE_CONFIG_S3_TYPE: 's3',
      RCLONE_CONFIG_S3_PROVIDER: 'SeaweedFS',
      RCLONE_CONFIG_S3_ENDPOINT: s3.endpoint,
      RCLONE_CONFIG_S3_ACCESS_KEY_ID: s3.accessKeyId,
      RCLONE_CONFIG_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
      RCLONE_CONFIG_S3_FORCE_PATH_STYLE: 'true',
    });
    this.env = env;
  }

  /** `rclone sync SRC DST`; the JSON log's final `stats` object gives the bytes transferred. */
  async sync(source: string, destination: string): Promise<RcloneRun> {
    const args = [
      '--config',
      '/dev/null',
      'sync',
      source,
      destination,
      '--transfers',
      '8',
      '--checkers',
      '16',
      // Only the stats lines (at NOTICE), as JSON, so per-file logging costs nothing.
      '--use-json-log',
      '--stats-log-level',
      'NOTICE',
    ];
    const run = await runProcess(this.binary, args, this.env);
    return { seconds: run.seconds, bytes: lastStatsBytes(run.stderr) };
  }
}

function lastStatsBytes(log: string): number | null {
  let bytes: number | null = null;
  for (const line of log.split('\n')) {
    if (!line.includes('"stats"')) continue;
    try {
      const parsed = JSON.parse(line) as { stats?: { bytes?: unknown } };
      if (typeof parsed.stats?.bytes === 'number') bytes = parsed.stats.bytes;
    } catch {
      // not a JSON line: ignore
    }
  }
  return bytes;
}

/** First line of `<binary> <args>` (a tool's version banner), or 'unknown'. */
export async function toolVersion(binary: string, args: string[]): Promise<string> {
  try {
    const run = await runProcess(binary, args);
    return (run.stdout || run.stderr).trim().split('\n')[0] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
