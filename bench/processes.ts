/**
 * Child processes the benchmark times: rclone and s5cmd (the performance
 * peers) and cp -r (the local-copy floor). Each run is timed from spawn to exit, because
 * process start-up is part of what a user of either tool waits for.
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';

export interface ProcessRun {
  seconds: number;
  stdout: string;
  stderr: string;
}

/** A command that exited non-zero or was killed, with everything it printed. */
export class ProcessError extends Error {
  constructor(
    message: string,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'ProcessError';
  }
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
      else if (timedOut) reject(new ProcessError(`${command} ${args.join(' ')} killed after ${timeoutMs! / 1000} s: ${tail}`, stdout, stderr));
      else reject(new ProcessError(`${command} ${args.join(' ')} exited with ${code ?? signal}: ${tail}`, stdout, stderr));
    });
  });
}

export interface S3Settings {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
}

/** One run of a peer in one direction. */
export interface PeerRun {
  seconds: number;
  /** Bytes the tool reports as transferred, or null when its output did not say. */
  bytes: number | null;
}

/** A performance peer: mirrors a folder to an S3 prefix and back, as one process per direction. */
export interface Peer {
  readonly name: PeerName;
  readonly binary: string;
  /** `dir` → s3://bucket/`prefix`/, deleting what the source lacks. */
  upload(dir: string, prefix: string): Promise<PeerRun>;
  /** s3://bucket/`prefix`/ → `dir`, deleting what the source lacks. */
  download(prefix: string, dir: string): Promise<PeerRun>;
}

export type PeerName = 'rclone' | 's5cmd';
export const PEER_NAMES: readonly PeerName[] = ['rclone', 's5cmd'];

/** The environment minus AWS settings meant for real AWS: a CA bundle or profile breaks plain-HTTP loopback S3. */
function peerEnvironment(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of ['AWS_CA_BUNDLE', 'AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_ENDPOINT_URL', 'AWS_ENDPOINT_URL_S3']) delete env[name];
  return Object.assign(env, extra);
}

/** rclone configured only by environment, with a remote named `s3` pointing at the stack's S3 server. */
class Rclone implements Peer {
  readonly name = 'rclone';
  private readonly env: NodeJS.ProcessEnv;

  constructor(
    readonly binary: string,
    private readonly s3: S3Settings,
    private readonly timeoutMs: number,
  ) {
    this.env = peerEnvironment({
      RCLONE_CONFIG_S3_TYPE: 's3',
      RCLONE_CONFIG_S3_PROVIDER: 'SeaweedFS',
      RCLONE_CONFIG_S3_ENDPOINT: s3.endpoint,
      RCLONE_CONFIG_S3_ACCESS_KEY_ID: s3.accessKeyId,
      RCLONE_CONFIG_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
      RCLONE_CONFIG_S3_FORCE_PATH_STYLE: 'true',
    });
  }

  upload(dir: string, prefix: string): Promise<PeerRun> {
    return this.sync(dir, `s3:${this.s3.bucket}/${prefix}`);
  }

  download(prefix: string, dir: string): Promise<PeerRun> {
    return this.sync(`s3:${this.s3.bucket}/${prefix}`, dir);
  }

  /** `rclone sync SRC DST`; the JSON log's final `stats` object gives the bytes transferred. */
  private async sync(source: string, destination: string): Promise<PeerRun> {
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
    const run = await runProcess(this.binary, args, this.env, this.timeoutMs);
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

/**
 * s5cmd with its own defaults (256 workers, 50 MiB parts, 5 parts at once),
 * credentials from the environment. `sync --delete` mirrors, as `rclone sync` does.
 */
class S5cmd implements Peer {
  readonly name = 's5cmd';
  private readonly env: NodeJS.ProcessEnv;

  constructor(
    readonly binary: string,
    private readonly s3: S3Settings,
    private readonly timeoutMs: number,
  ) {
    this.env = peerEnvironment({ AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: 'us-east-1' });
  }

  upload(dir: string, prefix: string): Promise<PeerRun> {
    return this.sync(`${dir}/`, `s3://${this.s3.bucket}/${prefix}/`);
  }

  download(prefix: string, dir: string): Promise<PeerRun> {
    return this.sync(`s3://${this.s3.bucket}/${prefix}/*`, `${dir}/`);
  }

  /** One JSON line per copied object: their sizes add up to the bytes transferred. */
  private async sync(source: string, destination: string): Promise<PeerRun> {
    const run = await runProcess(this.binary, ['--endpoint-url', this.s3.endpoint, '--json', 'sync', '--delete', source, destination], this.env, this.timeoutMs);
    return { seconds: run.seconds, bytes: copiedBytes(run.stdout) };
  }
}

function copiedBytes(output: string): number | null {
  let bytes = 0;
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const parsed = JSON.parse(line) as { operation?: unknown; success?: unknown; object?: { size?: unknown } };
      if (parsed.operation === 'cp' && parsed.success === true && typeof parsed.object?.size === 'number') bytes += parsed.object.size;
    } catch {
      return null;
    }
  }
  return bytes;
}

/** A peer against `s3`; each of its processes is killed after `timeoutMs`, so a hang cannot hang the benchmark. */
export function createPeer(name: PeerName, binary: string, s3: S3Settings, timeoutMs: number): Peer {
  return name === 'rclone' ? new Rclone(binary, s3, timeoutMs) : new S5cmd(binary, s3, timeoutMs);
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
