/**
 * Reaching a session through generated POSIX scripts (core/shellScripts)
 * over a command channel: the `shell`, `ssh` and `ssm` kinds. Nothing is
 * installed on the target beyond sh, GNU coreutils/findutils, tar, curl and
 * setsid. Values reach a script only as environment variables; whatever is
 * too big for a command line or an SSM output (listings, file lists,
 * archives, logs) travels through the blob store by presigned URL, and each
 * script prints one `ferry-report {json}` line of numbers and names ferry
 * chose.
 */
import type { ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ProcessStatus } from '../../core/agentProtocol';
import { FailureType, type FailureTypeName } from '../../core/errors';
import {
  BOOT_SCRIPT,
  LAND_SCRIPT,
  LIST_SCRIPT,
  MalformedListingError,
  PREPARE_SCRIPT,
  PROBE_SCRIPT,
  RELEASE_SCRIPT,
  START_SCRIPT,
  STOP_SCRIPT,
  UPLOAD_SCRIPT,
  UnquotableValueError,
  WRAPPER_SCRIPT,
  exportLines,
  parseReport,
  parseTreeListing,
  quoteCommand,
} from '../../core/shellScripts';
import type { TargetFile } from '../../core/verify';
import { nonRetryable, retryable } from '../failures';
import type { TargetTransfer } from '../blobStore';
import { sessionFolders, type TargetRef } from '../../core/target';
import type { LandOutcome, LandSessionRequest, LogShipment, ProbeOutcome, ReachContext, SessionReach, StartSessionProcess, StoredFile, TargetBackend } from './driver';
import { buildLandingArchive } from './landingArchive';

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

/** How a target runs a script: the one thing a script-reached kind implements. */
export interface CommandChannel {
  /** For messages: `shell:/srv/train`, `ssm:i-0abc…`, `ssh:ubuntu@host:22`. */
  readonly description: string;
  /** How often a followed process is probed through this channel (default 1 s: a script run costs a process or a multiplexed ssh session). */
  readonly followEveryMs?: number;
  run(run: ScriptRun, hooks?: ScriptRunHooks): Promise<ScriptOutcome>;
}

/** Output kept per stream of a channel's process; scripts print one short report line, the rest is diagnostics. */
const MAX_OUTPUT_CHARS = 1 << 20;

/**
 * The outcome of a channel's local process (bash, ssh): its output, bounded,
 * and exit status; killed when the run's time is up or the activity is
 * cancelled, with `onWait` called while it runs. `spawnFailure` words an
 * error starting the process.
 */
export async function childOutcome(child: ChildProcess, run: ScriptRun, hooks: ScriptRunHooks, description: string, spawnFailure: (err: Error) => Error = (err) => err): Promise<ScriptOutcome> {
  let stdout = '';
  let stderr = '';
  let stdoutTruncated = false;
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    if (stdout.length < MAX_OUTPUT_CHARS) stdout += chunk;
    else stdoutTruncated = true;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
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
      child.once('error', (err) => reject(spawnFailure(err)));
      child.once('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    });
    if (timedOut) throw new TargetCommandError('timedOut', `${run.purpose} script did not finish within ${run.timeoutMs} ms on ${description}`, { purpose: run.purpose });
    return { exitCode, stdout, stderr, stdoutTruncated };
  } finally {
    clearTimeout(timer);
    if (beat) clearInterval(beat);
    hooks.signal?.removeEventListener('abort', abort);
  }
}

/** Thrown by a channel when a target did not finish a script: timed out, cancelled, unreachable, refused. */
export class TargetCommandError extends Error {
  constructor(
    readonly kind: 'timedOut' | 'cancelled' | 'undeliverable' | 'unauthorized',
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'TargetCommandError';
  }
}

/** Script failures whose reason no retry can change. */
const NON_RETRYABLE_REASONS: Record<string, FailureTypeName> = {
  unsafe: FailureType.UnsafeArchive,
  'unsafe-path': FailureType.UnsafePath,
  input: FailureType.InvalidInput,
  'not-landed': FailureType.InvalidInput,
  'not-started': FailureType.InvalidInput,
  'not-found': FailureType.InvalidInput,
  tools: FailureType.TargetUnsupported,
  // Retrying the same landing does not free space; minutes of retries would only hide the cause.
  disk: FailureType.TargetDiskFull,
};
const RETRYABLE_REASONS: Record<string, FailureTypeName> = {
  checksum: FailureType.ChecksumMismatch,
  mismatch: FailureType.VerificationFailed,
  download: FailureType.BlobDownloadFailed,
};

const MINUTE = 60_000;

const sha256OfText = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
/** Bytes of each log's tail a status carries (as the agent's). */
const TAIL_BYTES = 4096;

function tail(text: string, chars = 2_000): string {
  return text.length > chars ? `…${text.slice(-chars)}` : text;
}

/** Transport errors as typed failures. */
export function channelFailure(err: unknown, description: string): unknown {
  if (err instanceof TargetCommandError) {
    if (err.kind === 'unauthorized') return nonRetryable(FailureType.TargetUnauthorized, err.message, { target: description, ...err.details });
    const type = err.kind === 'undeliverable' ? FailureType.TargetUnavailable : FailureType.TargetCommandTimedOut;
    return retryable(type, err.message, { target: description, ...err.details });
  }
  if (err instanceof UnquotableValueError) return nonRetryable(FailureType.InvalidInput, err.message);
  return err;
}

interface ScriptStatus {
  state: ProcessStatus['state'];
  pid: number;
  exitCode: number | null;
  timedOut: boolean;
  durationMs: number;
  stdoutBytes: number;
  stderrBytes: number;
  stdoutTail64: string;
  stderrTail64: string;
  stdoutSha256?: string;
  stderrSha256?: string;
}

export interface ScriptReachOptions {
  channel: CommandChannel;
  /** The target's root: absolute, or relative to the login's home. */
  root: string;
  sessionId: string;
  blobs: TargetTransfer;
  signal: AbortSignal;
  /** Called while a script runs, so the activity heartbeats. */
  onWait?: () => void;
}

export class ScriptReach implements SessionReach {
  readonly description: string;
  readonly followEveryMs: number;

  constructor(private readonly options: ScriptReachOptions) {
    this.description = `${options.channel.description} session ${options.sessionId}`;
    this.followEveryMs = options.channel.followEveryMs ?? 1_000;
  }

  /** Runs one script and returns its report, or throws the typed failure its outcome means. */
  private async run<T extends object>(purpose: string, script: string, env: Record<string, string>, timeoutMs: number): Promise<T & { bootId: string }> {
    const { channel } = this.options;
    let outcome: ScriptOutcome;
    try {
      outcome = await channel.run(
        { purpose, script, env: { FERRY_ROOT: this.options.root, FERRY_SESSION: this.options.sessionId, ...env }, timeoutMs },
        { signal: this.options.signal, onWait: this.options.onWait },
      );
    } catch (err) {
      throw channelFailure(err, channel.description);
    }
    const report = parseReport<T & { bootId: string }>(outcome.stdout);
    const details = { purpose, target: channel.description, exitCode: outcome.exitCode, stderr: tail(outcome.stderr) };
    if (!report) {
      const why = outcome.stdoutTruncated ? 'its output was cut by the transport before the report line' : 'it printed no report line';
      throw retryable(FailureType.TargetScriptFailed, `${purpose} script on ${channel.description} exited ${outcome.exitCode} and ${why}: ${tail(outcome.stderr, 300)}`, details);
    }
    if (report.ok) return report as T & { bootId: string };
    const { reason } = report;
    const message = `${purpose} script on ${channel.description} refused (${reason}): ${tail(outcome.stderr.trim(), 500)}`;
    const fixed = NON_RETRYABLE_REASONS[reason];
    if (fixed) throw nonRetryable(fixed, message, { ...details, ...report });
    throw retryable(RETRYABLE_REASONS[reason] ?? FailureType.TargetScriptFailed, message, { ...details, reason });
  }

  /** A key under `tmp/` for an object only this call uses; deleted by `withTemporary`. */
  private temporaryKey(name: string): string {
    return `${this.options.blobs.keyPrefix}tmp/sessions/${this.options.sessionId}/${randomUUID()}-${name}`;
  }

  /** Runs `work` with a temporary object key, deleting the object afterwards (a lifecycle rule on `tmp/` catches what a crash leaves). */
  private async withTemporary<T>(name: string, work: (key: string) => Promise<T>): Promise<T> {
    const key = this.temporaryKey(name);
    try {
      return await work(key);
    } finally {
      await this.options.blobs.deletePrefix(key).catch(() => undefined);
    }
  }

  async bootId(): Promise<string> {
    return (await this.run<object>('boot', BOOT_SCRIPT, {}, 2 * MINUTE)).bootId;
  }

  async makeDirs(dirs: string[]): Promise<void> {
    await this.prepare(dirs);
  }

  /** Creates the session's folders and checks the target's tools; answers the session's absolute path. */
  async prepare(dirs: string[]): Promise<{ bootId: string; session: string }> {
    return this.run<{ session: string }>('prepare', PREPARE_SCRIPT, { FERRY_DIRS: dirs.join(' ') }, 2 * MINUTE);
  }

  async listFiles(request: { dir: string; paths?: string[]; hash: boolean }): Promise<{ bootId: string; files: TargetFile[] }> {
    return this.withTemporary('listing', async (key) => {
      const env = { FERRY_DIR: request.dir, FERRY_HASH: request.hash ? '1' : '0', FERRY_LISTING_URL: await this.options.blobs.presignPut(key) };
      const report = await this.run<{ exists: boolean; listingSha256?: string }>(`list ${request.dir}`, LIST_SCRIPT, env, 60 * MINUTE);
      if (!report.exists) return { bootId: report.bootId, files: [] };
      const listing = await this.options.blobs.getObjectBytes(key);
      if (!listing) throw retryable(FailureType.TargetScriptFailed, `the listing of ${request.dir} on ${this.description} did not reach the blob store`, { key });
      const actual = createHash('sha256').update(listing).digest('hex');
      if (actual !== report.listingSha256) throw retryable(FailureType.ChecksumMismatch, `the listing of ${request.dir} hashes to ${actual}, the target reported ${report.listingSha256}`, { key });
      let files: TargetFile[];
      try {
        files = parseTreeListing(listing, sha256OfText, request.hash);
      } catch (err) {
        if (err instanceof MalformedListingError) throw retryable(FailureType.TargetScriptFailed, err.message, { key });
        throw err;
      }
      const wanted = request.paths && new Set(request.paths);
      return { bootId: report.bootId, files: wanted ? files.filter((f) => wanted.has(f.path)) : files };
    });
  }

  async land(request: LandSessionRequest, onProgress: (filesDone: number, bytesDone: number) => void): Promise<LandOutcome> {
    const workDir = await mkdtemp(path.join(os.tmpdir(), 'ferry-archive-'));
    try {
      let bytesDone = 0;
      const archive = await buildLandingArchive(
        this.options.blobs,
        request.files,
        request.remove,
        workDir,
        (n) => {
          bytesDone += n;
          onProgress(0, bytesDone);
        },
        this.options.signal,
      );
      return await this.withTemporary('archive.tgz', async (key) => {
        // One PUT carries the whole archive: keep heartbeating while it is on the wire.
        const beat = this.options.onWait ? setInterval(this.options.onWait, 5_000) : undefined;
        try {
          await this.options.blobs.putFile(key, archive.file, archive.bytes, archive.sha256, this.options.signal);
        } finally {
          clearInterval(beat);
        }
        const links = request.files.filter((f) => f.link !== undefined).length;
        const report = await this.run<{ files: number; links: number; removed: number }>(
          'land',
          LAND_SCRIPT,
          {
            FERRY_DIR: request.dir,
            FERRY_ARCHIVE_URL: await this.options.blobs.presignGet(key),
            FERRY_ARCHIVE_SHA256: archive.sha256,
            FERRY_FILES: String(request.files.length - links),
            FERRY_LINKS: String(links),
            // The script lands an archive unpacking to exactly the cap and refuses one byte more.
            FERRY_ARCHIVE_MAX_BYTES: String(archive.tarBytes),
          },
          60 * MINUTE,
        );
        const bytesLanded = request.files.reduce((sum, f) => sum + f.size, 0);
        onProgress(request.files.length, bytesLanded);
        return { bootId: report.bootId, filesLanded: report.files + report.links, bytesLanded, bytesDownloaded: archive.bytes, bytesReused: 0, filesRemoved: report.removed };
      });
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  }

  private statusOf(report: ScriptStatus & { bootId: string }, processId: string, started: boolean): ProcessStatus {
    const text = (base64: string) => Buffer.from(base64, 'base64').toString('utf8');
    return {
      processId,
      bootId: report.bootId,
      started,
      state: report.state,
      pid: report.pid > 0 ? report.pid : null,
      exitCode: report.exitCode,
      signal: null,
      timedOut: report.timedOut,
      durationMs: report.durationMs,
      stdoutBytes: report.stdoutBytes,
      stderrBytes: report.stderrBytes,
      stdoutTail: text(report.stdoutTail64),
      stderrTail: text(report.stderrTail64),
    };
  }

  async startProcess(request: StartSessionProcess): Promise<ProcessStatus> {
    let env: Record<string, string>;
    try {
      env = {
        FERRY_PROCESS_ID: request.processId,
        FERRY_CWD: request.cwd,
        FERRY_COMMAND: quoteCommand(request.command),
        FERRY_USER_ENV: exportLines(request.env),
        FERRY_TIMEOUT_SECONDS: request.timeoutSeconds === undefined ? '' : String(Math.ceil(request.timeoutSeconds)),
        FERRY_OUTPUT: request.output,
        FERRY_WRAPPER: WRAPPER_SCRIPT,
        FERRY_TAIL_BYTES: String(TAIL_BYTES),
        FERRY_WAIT_MS: String(request.waitMs ?? 0),
      };
    } catch (err) {
      throw nonRetryable(FailureType.InvalidInput, (err as Error).message);
    }
    const report = await this.run<ScriptStatus & { started: boolean }>('start', START_SCRIPT, env, (request.waitMs ?? 0) + 2 * MINUTE);
    return this.statusOf(report, request.processId, report.started);
  }

  private async probe(processId: string, waitMs: number, ship?: LogShipment, shipStderr?: LogShipment) {
    return this.run<ScriptStatus & { shipped: number; shippedStderr: number }>(
      'probe',
      PROBE_SCRIPT,
      {
        FERRY_PROCESS_ID: processId,
        FERRY_WAIT_MS: String(waitMs),
        FERRY_LOG_OFFSET: String(ship?.offset ?? 0),
        FERRY_CHUNK_MAX: String(Math.max(ship?.maxBytes ?? 0, shipStderr?.maxBytes ?? 0)),
        FERRY_CHUNK_URL: ship?.url ?? '',
        FERRY_ERR_LOG_OFFSET: String(shipStderr?.offset ?? 0),
        FERRY_ERR_CHUNK_URL: shipStderr?.url ?? '',
        FERRY_TAIL_BYTES: String(TAIL_BYTES),
      },
      waitMs + 5 * MINUTE,
    );
  }

  async probeProcess(processId: string, options: { waitMs: number; ship?: LogShipment; shipStderr?: LogShipment }): Promise<ProbeOutcome> {
    const report = await this.probe(processId, options.waitMs, options.ship, options.shipStderr);
    return { status: this.statusOf(report, processId, false), shipped: report.shipped, shippedStderr: report.shippedStderr };
  }

  async stopProcess(processId: string, graceSeconds: number) {
    const report = await this.run<{ signal: 'none' | 'TERM' | 'KILL' }>('stop', STOP_SCRIPT, { FERRY_PROCESS_ID: processId, FERRY_GRACE_SECONDS: String(Math.ceil(graceSeconds)) }, graceSeconds * 1000 + 2 * MINUTE);
    return { signal: report.signal, status: (await this.probeProcess(processId, { waitMs: 0 })).status };
  }

  /** PUTs files (paths relative to `from`) to their blob keys; S3 refuses any that does not hash to its sha256. */
  private async upload(from: Record<string, string>, files: StoredFile[]): Promise<void> {
    if (files.length === 0) return;
    const records = await Promise.all(
      files.map(async (file) => {
        const { url, checksumHeader } = await this.options.blobs.presignBlobPut(file.sha256);
        return `${file.path}\0${url}\0${checksumHeader}\0`;
      }),
    );
    await this.withTemporary('uploads', async (key) => {
      const jobs = Buffer.from(records.join(''), 'utf8');
      await this.options.blobs.putVerified(key, jobs, createHash('sha256').update(jobs).digest('hex'));
      await this.run<{ uploaded: number }>('upload', UPLOAD_SCRIPT, { ...from, FERRY_JOBS_URL: await this.options.blobs.presignGet(key) }, 60 * MINUTE);
    });
  }

  async storeFiles(dir: string, files: StoredFile[], onStored: (file: StoredFile) => void): Promise<void> {
    await this.upload({ FERRY_FROM: 'session', FERRY_DIR: dir, FERRY_PROCESS_ID: '' }, files);
    for (const file of files) onStored(file);
  }

  async storeLogs(processId: string): Promise<{ stdout: StoredFile; stderr: StoredFile }> {
    const report = await this.probe(processId, 0);
    if (report.stdoutSha256 === undefined || report.stderrSha256 === undefined) {
      throw retryable(FailureType.TargetScriptFailed, `process ${processId} on ${this.description} has not ended; its logs are not final`, { processId, state: report.state });
    }
    const stdout = { path: 'stdout.log', size: report.stdoutBytes, sha256: report.stdoutSha256 };
    const stderr = { path: 'stderr.log', size: report.stderrBytes, sha256: report.stderrSha256 };
    const stored = await this.options.blobs.findStandaloneBlobs([stdout.sha256, stderr.sha256]);
    const missing = [stdout, stderr].filter((f, i, both) => !stored.has(f.sha256) && both.findIndex((g) => g.sha256 === f.sha256) === i);
    await this.upload({ FERRY_FROM: 'process', FERRY_DIR: '', FERRY_PROCESS_ID: processId }, missing);
    return { stdout, stderr };
  }

  /** Stops what the session started and, with `removeFiles`, deletes its folder and records. */
  async release(removeFiles: boolean): Promise<{ stopped: number }> {
    return this.run<{ stopped: number }>('release', RELEASE_SCRIPT, { FERRY_REMOVE: removeFiles ? '1' : '0' }, 10 * MINUTE);
  }
}

/** Where a script-reached target's sessions live and how to run scripts there. */
export interface ScriptEndpoint {
  channel: CommandChannel;
  /** The target's root: absolute, or relative to the login's home. */
  root: string;
}

/**
 * The backend of a script-reached kind: its driver supplies only how to
 * reach a target (a channel and a root); provisioning creates the session's
 * folders and checks the tools, release stops what the session started.
 */
export function scriptBackend<Options extends TargetRef>(blobs: TargetTransfer, endpointOf: (target: Options) => ScriptEndpoint): TargetBackend<Options> {
  const reachOf = (target: Options, sessionId: string, context: ReachContext) =>
    new ScriptReach({ ...endpointOf(target), sessionId, blobs, signal: context.signal, onWait: context.heartbeat });
  return {
    async provision(request) {
      const reach = reachOf(request.target, request.sessionId, { signal: request.signal, heartbeat: () => request.heartbeat({ sessionId: request.sessionId, waitingFor: 'the target to prepare the session' }) });
      const { bootId, session } = await reach.prepare(sessionFolders(request.purpose));
      return { sessionId: request.sessionId, target: request.target, description: endpointOf(request.target).channel.description, bootId, root: session, details: {} };
    },
    reach: (session, context) => reachOf(session.target as Options, session.sessionId, context),
    peek: (request, context) => reachOf(request.target, request.sessionId, context),
    async release(session, options) {
      const { stopped } = await reachOf(session.target as Options, session.sessionId, { signal: options.signal, heartbeat: () => undefined }).release(options.removeFiles);
      return { released: true, detail: `${stopped} running processes stopped${options.removeFiles ? ', session folder removed' : ''}` };
    },
  };
}
