/**
 * Training on a `shell` or `ssm` target: land a snapshot as a delta archive,
 * verify it there, start the command detached, confirm it, probe it while
 * shipping its log to S3, stop it. Every step runs a constant script from
 * core/shellScripts through a ScriptRunner; the driver is picked by target
 * kind. Presigned URLs go to the target in the script's environment and
 * never into workflow history.
 *
 * What the target holds is learned by hashing it (the inventory script)
 * rather than from a manifest remembered on the target: a file edited or
 * damaged there since the last landing is then simply sent again, and the
 * land script checks every file against the manifest before the swap.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { createGzip } from 'node:zlib';
import { SSMClient, InvalidInstanceId } from '@aws-sdk/client-ssm';
import { Context } from '@temporalio/activity';
import { pack, type Pack } from 'tar-stream';
import { FailureType, fetchFailureDetail } from '../core/errors';
import { blobsOfEntry, fileDirectoryConflicts, type ManifestEntry } from '../core/manifest';
import {
  HASH_TREE_SCRIPT,
  LAND_SCRIPT,
  MalformedListingError,
  PROBE_SCRIPT,
  START_SCRIPT,
  STOP_SCRIPT,
  UnquotableValueError,
  WRAPPER_SCRIPT,
  checksumLine,
  exportLines,
  nulPathList,
  parseReport,
  parseTreeListing,
  quoteCommand,
} from '../core/shellScripts';
import { lastLines, targetRunDir, trainingLogChunkKey, trainingTmpPrefix, type TrainingTarget } from '../core/training';
import { compareLanding, describeLandingProblems, entriesNotHeld, landingIsComplete, type TargetFile } from '../core/verify';
import { blobStoreFailure } from './blobs';
import { nonRetryable, retryable } from './failures';
import type { S3BlobStore } from './s3BlobStore';
import { ShellTarget, TargetCommandError, type ScriptOutcome, type ScriptRunner } from './shellTarget';
import { SsmTarget } from './ssmTarget';

export interface TrainingDeps {
  blobs: S3BlobStore;
  /** SSM client for `ssm` targets without a region of their own; default: the AWS SDK's default region and credentials. */
  ssm?: SSMClient;
  /** SSM document to run scripts with (default AWS-RunShellScript). */
  ssmDocumentName?: string;
  /** Log bytes shipped per probe at most, and bytes of log tail returned (defaults 8 MiB, 2 KiB). */
  logChunkMaxBytes?: number;
  logTailBytes?: number;
}

interface TargetStep {
  runId: string;
  target: TrainingTarget;
}

export interface LandArchiveInput extends TargetStep {
  manifestDigest: string;
}

export interface LandArchiveResult {
  /** Release folder (under `runs/<runId>/releases/`) that is now `current`. */
  release: string;
  /** Release the delta was computed against, or undefined on a first landing. */
  baseRelease?: string;
  filesTotal: number;
  /** Files sent in the archive (the rest were already on the target, intact). */
  filesSent: number;
  bytesSent: number;
  filesKept: number;
  filesDeleted: number;
  /** Compressed archive size. */
  archiveBytes: number;
}

export interface VerifyInstanceLandingInput extends TargetStep {
  manifestDigest: string;
  release: string;
}

export interface VerifyInstanceLandingResult {
  release: string;
  filesVerified: number;
  bytesVerified: number;
}

export interface StartProcessInput extends TargetStep {
  startId: string;
  command: string[];
  env: Record<string, string>;
}

export interface StartProcessResult {
  pid: number;
  /** False when an earlier attempt already started this start id: that process is reported, no second one started. */
  started: boolean;
  release: string;
}

export interface ProcessRef extends TargetStep {
  startId: string;
}

export interface ConfirmProcessInput extends ProcessRef {
  graceSeconds: number;
}

export interface ProcessStatus {
  alive: boolean;
  pid: number;
  /** Set once the process ended; null while it runs or when it vanished without one (SIGKILL of its wrapper). */
  exitCode: number | null;
  logBytes: number;
  lastLines: string[];
}

export interface ConfirmProcessResult extends ProcessStatus {
  /** When the log was first seen non-empty (epoch ms), for the time-to-first-log-line figure. */
  firstLogSeenAtMs?: number;
}

export interface ProbeProcessInput extends ProcessRef {
  /** Log bytes already shipped; the next chunk starts here. */
  logOffset: number;
}

export interface ProbeProcessResult extends ProcessStatus {
  /** Bytes shipped by this probe as the chunk at `logOffset` (0: nothing new). */
  chunkBytes: number;
}

export interface StopProcessInput extends ProcessRef {
  graceSeconds: number;
}

interface HashTreeReport {
  exists: boolean;
  release?: string;
  files?: number;
  others?: number;
  listingSha256?: string;
}

interface ProbeReport {
  alive: boolean;
  pid: number;
  exitCode: number | null;
  logBytes: number;
  chunkBytes: number;
  tailBase64: string;
}

/** Script failures whose reason no retry can change. */
const NON_RETRYABLE_REASONS: Record<string, (typeof FailureType)[keyof typeof FailureType]> = {
  unsafe: FailureType.UnsafeArchive,
  input: FailureType.InvalidInput,
  'not-landed': FailureType.InvalidInput,
  'not-started': FailureType.InvalidInput,
};
const RETRYABLE_REASONS: Record<string, (typeof FailureType)[keyof typeof FailureType]> = {
  checksum: FailureType.ChecksumMismatch,
  mismatch: FailureType.VerificationFailed,
  download: FailureType.BlobDownloadFailed,
};

const MINUTE = 60_000;
/** Files whose names a failure's details list at most. */
const DETAIL_PATHS = 50;

function tail(text: string, chars = 2_000): string {
  return text.length > chars ? `…${text.slice(-chars)}` : text;
}

/** The report of a finished script, or the failure its outcome means. */
function readReport<T extends object>(purpose: string, runner: ScriptRunner, outcome: ScriptOutcome): T {
  const report = parseReport<T>(outcome.stdout);
  const details = { purpose, target: runner.description, exitCode: outcome.exitCode, stderr: tail(outcome.stderr) };
  if (!report) {
    const why = outcome.stdoutTruncated ? 'its output was cut by the transport before the report line' : 'it printed no report line';
    throw retryable(FailureType.TargetScriptFailed, `${purpose} script on ${runner.description} exited ${outcome.exitCode} and ${why}: ${tail(outcome.stderr, 300)}`, details);
  }
  if (report.ok) return report as T;
  const message = `${purpose} script on ${runner.description} refused (${report.reason}): ${tail(outcome.stderr.trim(), 500)}`;
  const fixed = NON_RETRYABLE_REASONS[report.reason];
  if (fixed) throw nonRetryable(fixed, message, { ...details, reason: report.reason });
  throw retryable(RETRYABLE_REASONS[report.reason] ?? FailureType.TargetScriptFailed, message, { ...details, reason: report.reason });
}

/** Transport errors as typed failures. */
function transportFailure(err: unknown, runner: ScriptRunner): unknown {
  if (err instanceof TargetCommandError) {
    const type = err.kind === 'undeliverable' ? FailureType.TargetUnavailable : FailureType.TargetCommandTimedOut;
    return retryable(type, err.message, { target: runner.description, ...err.details });
  }
  if (err instanceof InvalidInstanceId) return retryable(FailureType.TargetUnavailable, `${runner.description} is not a running, SSM-managed instance: ${err.message}`, { target: runner.description });
  if (err instanceof UnquotableValueError) return nonRetryable(FailureType.InvalidInput, err.message);
  return err;
}

const decodeTail = (base64: string) => lastLines(Buffer.from(base64, 'base64').toString('utf8'));

export function createTrainingActivities(deps: TrainingDeps) {
  const { blobs } = deps;
  const chunkMaxBytes = deps.logChunkMaxBytes ?? 8 << 20;
  const tailBytes = deps.logTailBytes ?? 2048;
  const ssmClients = new Map<string, SSMClient>();

  const ssmClientFor = (region: string | undefined): SSMClient => {
    const key = region ?? '';
    let client = ssmClients.get(key) ?? (region === undefined ? deps.ssm : undefined);
    if (!client) {
      client = new SSMClient(region ? { region, maxAttempts: 5 } : { maxAttempts: 5 });
      ssmClients.set(key, client);
    }
    return client;
  };

  const runnerFor = (target: TrainingTarget): ScriptRunner =>
    target.kind === 'shell'
      ? new ShellTarget(target.root)
      : new SsmTarget({ client: ssmClientFor(target.region), instanceId: target.instanceId, documentName: deps.ssmDocumentName });

  /** Runs one script on the step's target, heartbeating while it waits, and returns its report. */
  const runScript = async <T extends object>(
    step: TargetStep,
    purpose: string,
    script: string,
    env: Record<string, string>,
    timeoutMs: number,
    heartbeat?: unknown,
  ): Promise<T> => {
    const context = Context.current();
    const runner = runnerFor(step.target);
    let outcome: ScriptOutcome;
    try {
      outcome = await runner.run(
        { purpose, script, env: { FERRY_RUN_DIR: targetRunDir(step.target, step.runId), ...env }, timeoutMs },
        { signal: context.cancellationSignal, onWait: () => context.heartbeat(heartbeat) },
      );
    } catch (err) {
      throw transportFailure(err, runner);
    }
    return readReport<T>(purpose, runner, outcome);
  };

  const loadEntries = async (manifestDigest: string): Promise<ManifestEntry[]> => {
    const manifest = await blobs.getManifest(manifestDigest).catch((err) => {
      throw blobStoreFailure(err);
    });
    const conflicts = fileDirectoryConflicts(manifest.files);
    if (conflicts.length) throw nonRetryable(FailureType.InvalidInput, `manifest ${manifestDigest} has paths that are both file and folder: ${conflicts.slice(0, 5).join(', ')}`, { conflicts });
    return manifest.files;
  };

  /** Hashes `tree` (inside the run dir) on the target; the listing comes back through S3, checked against the sha256 the script reports. */
  const hashTree = async (step: TargetStep, tree: string, heartbeat?: unknown): Promise<{ report: HashTreeReport; files: TargetFile[] }> => {
    const key = `${trainingTmpPrefix(blobs.keyPrefix, step.runId)}listing-${randomUUID()}`;
    const report = await runScript<HashTreeReport>(step, `hash ${tree}`, HASH_TREE_SCRIPT, { FERRY_TREE: tree, FERRY_LISTING_URL: await blobs.presignPut(key) }, 30 * MINUTE, heartbeat);
    if (!report.exists) return { report, files: [] };
    const listing = await blobs.getObjectBytes(key);
    if (!listing) throw retryable(FailureType.TargetScriptFailed, `the listing of ${tree} did not reach the blob store`, { key });
    const actual = createHash('sha256').update(listing).digest('hex');
    if (actual !== report.listingSha256) throw retryable(FailureType.ChecksumMismatch, `the listing of ${tree} hashes to ${actual}, the target reported ${report.listingSha256}`, { key });
    try {
      return { report, files: parseTreeListing(listing) };
    } catch (err) {
      if (err instanceof MalformedListingError) throw retryable(FailureType.TargetScriptFailed, err.message, { key });
      throw err;
    }
  };

  /** The body of one blob (a whole file or one of its chunks), as a stream. */
  const openBlob = async (sha256: string, entry: ManifestEntry, signal: AbortSignal): Promise<Readable> => {
    const url = await blobs.presignBlobGet(sha256);
    let response: Response;
    try {
      response = await fetch(url, { signal });
    } catch (err) {
      throw retryable(FailureType.BlobDownloadFailed, `cannot read blob ${sha256} for ${JSON.stringify(entry.path)}: ${fetchFailureDetail(err)}`, { path: entry.path });
    }
    if (!response.ok || !response.body) throw retryable(FailureType.BlobDownloadFailed, `blob ${sha256} for ${JSON.stringify(entry.path)} answered HTTP ${response.status}`, { path: entry.path });
    return Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
  };

  /** Appends one file to the archive from its blob (or its chunks, in order), checking its sha256 on the way. */
  const appendBlob = async (tarball: Pack, entry: ManifestEntry, mtime: Date, onBytes: (n: number) => void, signal: AbortSignal): Promise<void> => {
    const hash = createHash('sha256');
    let sinkError: Error | undefined;
    let sink!: ReturnType<Pack['entry']>;
    const written = new Promise<void>((resolve, reject) => {
      sink = tarball.entry({ name: `files/${entry.path}`, size: entry.size, mode: entry.mode, mtime, type: 'file' }, (err) => (err ? reject((sinkError = err)) : resolve()));
    });
    written.catch(() => undefined);
    for (const blob of blobsOfEntry(entry)) {
      const body = await openBlob(blob.sha256, entry, signal);
      await new Promise<void>((resolve, reject) => {
        body.on('data', (chunk: Buffer) => {
          hash.update(chunk);
          onBytes(chunk.length);
          if (!sink.write(chunk)) body.pause();
        });
        const resume = () => body.resume();
        sink.on('drain', resume);
        body.once('end', () => {
          sink.off('drain', resume);
          resolve();
        });
        body.once('error', reject);
      });
      if (sinkError) throw sinkError;
    }
    sink.end(undefined);
    await written;
    const actual = hash.digest('hex');
    if (actual !== entry.sha256) throw nonRetryable(FailureType.ChecksumMismatch, `blob for ${JSON.stringify(entry.path)} hashes to ${actual}, expected ${entry.sha256}`, { path: entry.path });
  };

  return {
    /**
     * Lands a manifest on the target as a new release: asks the target what
     * it holds (hashed there), sends a tar.gz of only the files it lacks plus
     * the lists of files to keep and drop, and runs the land script, which
     * checks everything and swaps `current` atomically.
     */
    async landArchive(input: LandArchiveInput): Promise<LandArchiveResult> {
      const context = Context.current();
      const files = await loadEntries(input.manifestDigest);
      const progress = { step: 'landArchive', filesDone: 0, filesTotal: files.length, bytesDone: 0, bytesTotal: files.reduce((sum, f) => sum + f.size, 0) };
      context.heartbeat(progress);

      const inventory = await hashTree(input, 'current', progress);
      const baseRelease = inventory.report.exists ? inventory.report.release : undefined;
      const needed = entriesNotHeld(files, inventory.files);
      const neededPaths = new Set(needed.map((f) => f.path));
      const manifestPaths = new Set(files.map((f) => f.path));
      const kept = files.filter((f) => !neededPaths.has(f.path)).map((f) => f.path);
      const deleted = inventory.files.filter((f) => !manifestPaths.has(f.path)).map((f) => f.path);
      progress.filesDone = kept.length;
      progress.bytesDone = progress.bytesTotal - needed.reduce((sum, f) => sum + f.size, 0);
      context.heartbeat(progress);

      const release = `${String(Date.now()).padStart(13, '0')}-${input.manifestDigest.slice(0, 12)}`;
      const workDir = await mkdtemp(path.join(os.tmpdir(), 'ferry-archive-'));
      try {
        const archivePath = path.join(workDir, 'archive.tgz');
        const archiveHash = createHash('sha256');
        const tarball = pack();
        // Tar bytes before gzip: the land script's cap, so a landing archive never unpacks to more than ferry packed.
        let tarBytes = 0;
        const written = pipeline(
          tarball as unknown as NodeJS.ReadableStream,
          new Transform({
            transform(chunk: Buffer, _encoding, callback) {
              tarBytes += chunk.length;
              callback(null, chunk);
            },
          }),
          createGzip({ level: 6 }),
          new Transform({
            transform(chunk: Buffer, _encoding, callback) {
              archiveHash.update(chunk);
              callback(null, chunk);
            },
          }),
          createWriteStream(archivePath),
        );
        const mtime = new Date();
        for (const entry of needed) {
          await appendBlob(tarball, entry, mtime, (n) => {
            progress.bytesDone += n;
            context.heartbeat(progress);
          }, context.cancellationSignal);
          progress.filesDone++;
        }
        const meta = (name: string, text: string) => tarball.entry({ name: `meta/${name}`, mode: 0o644, mtime }, Buffer.from(text, 'utf8'));
        meta('keep', nulPathList(kept));
        meta('delete', nulPathList(deleted));
        meta('SHA256SUMS', files.map(checksumLine).join(''));
        tarball.finalize();
        await written;
        const archiveSha256 = archiveHash.digest('hex');
        const archiveBytes = (await stat(archivePath)).size;
        const archiveKey = `${trainingTmpPrefix(blobs.keyPrefix, input.runId)}archive-${release}.tgz`;
        // One PUT carries the whole archive: keep heartbeating while it is on the wire.
        const beat = setInterval(() => context.heartbeat(progress), 5_000);
        try {
          await blobs.putFile(archiveKey, archivePath, archiveBytes, archiveSha256, context.cancellationSignal);
        } finally {
          clearInterval(beat);
        }

        const report = await runScript<{ release: string; files: number; deleted: number }>(
          input,
          'land',
          LAND_SCRIPT,
          {
            FERRY_ARCHIVE_URL: await blobs.presignGet(archiveKey),
            FERRY_ARCHIVE_SHA256: archiveSha256,
            FERRY_RELEASE: release,
            FERRY_BASE: baseRelease ?? '',
            FERRY_FILES_TOTAL: String(files.length),
            // The script lands an archive unpacking to exactly the cap and refuses one byte more.
            FERRY_ARCHIVE_MAX_BYTES: String(tarBytes),
          },
          60 * MINUTE,
          progress,
        );
        const result: LandArchiveResult = {
          release: report.release,
          baseRelease,
          filesTotal: files.length,
          filesSent: needed.length,
          bytesSent: needed.reduce((sum, f) => sum + f.size, 0),
          filesKept: kept.length,
          filesDeleted: report.deleted,
          archiveBytes,
        };
        context.log.info('archive landed', { runId: input.runId, manifestDigest: input.manifestDigest, ...result });
        return result;
      } finally {
        await rm(workDir, { recursive: true, force: true });
      }
    },

    /** The target re-hashes its `current` release; it must be the landed release and hold exactly the manifest. */
    async verifyInstanceLanding(input: VerifyInstanceLandingInput): Promise<VerifyInstanceLandingResult> {
      const context = Context.current();
      const files = await loadEntries(input.manifestDigest);
      const progress = { step: 'verifyInstanceLanding', filesDone: 0, filesTotal: files.length, bytesDone: 0, bytesTotal: files.reduce((sum, f) => sum + f.size, 0) };
      context.heartbeat(progress);
      const { report, files: listed } = await hashTree(input, 'current', progress);
      const details = { runId: input.runId, release: input.release };
      if (!report.exists || report.release !== input.release) {
        throw retryable(FailureType.VerificationFailed, `the target's current release is ${report.release ?? 'missing'}, expected ${input.release}`, { ...details, current: report.release });
      }
      const comparison = compareLanding(files, listed);
      const expected = new Set(files.map((f) => f.path));
      const extra = listed.filter((f) => !expected.has(f.path)).map((f) => f.path);
      if (!landingIsComplete(comparison) || extra.length > 0 || (report.others ?? 0) > 0) {
        const problems = [describeLandingProblems(comparison), extra.length ? `${extra.length} not in the manifest` : '', report.others ? `${report.others} links or special files` : '']
          .filter(Boolean)
          .join('; ');
        throw retryable(FailureType.VerificationFailed, `release ${input.release} does not hold the manifest: ${problems}`, {
          ...details,
          missing: comparison.missing.slice(0, DETAIL_PATHS),
          short: comparison.short.slice(0, DETAIL_PATHS),
          mismatched: comparison.mismatched.slice(0, DETAIL_PATHS),
          extra: extra.slice(0, DETAIL_PATHS),
          verified: comparison.verified,
        });
      }
      context.log.info('landing verified on the instance', { ...details, files: comparison.verified });
      return { release: input.release, filesVerified: comparison.verified, bytesVerified: comparison.bytesVerified };
    },

    /** Starts the command detached in the current release, once per start id. */
    async startProcess(input: StartProcessInput): Promise<StartProcessResult> {
      const context = Context.current();
      let env: Record<string, string>;
      try {
        env = { FERRY_START_ID: input.startId, FERRY_COMMAND: quoteCommand(input.command), FERRY_USER_ENV: exportLines(input.env), FERRY_WRAPPER: WRAPPER_SCRIPT };
      } catch (err) {
        throw nonRetryable(FailureType.InvalidInput, (err as Error).message);
      }
      const report = await runScript<StartProcessResult>(input, 'start', START_SCRIPT, env, 2 * MINUTE);
      context.log.info(report.started ? 'process started' : 'process already started by an earlier attempt', { runId: input.runId, startId: input.startId, pid: report.pid });
      return { pid: report.pid, started: report.started, release: report.release };
    },

    /**
     * Watches the process for its startup grace period, probing every
     * second: a non-zero exit fails at once, non-retryably, with the log tail.
     */
    async confirmProcess(input: ConfirmProcessInput): Promise<ConfirmProcessResult> {
      const context = Context.current();
      const deadline = Date.now() + input.graceSeconds * 1000;
      let firstLogSeenAtMs: number | undefined;
      for (;;) {
        const report = await runScript<ProbeReport>(
          input,
          'confirm',
          PROBE_SCRIPT,
          { FERRY_START_ID: input.startId, FERRY_LOG_OFFSET: '0', FERRY_CHUNK_MAX: '0', FERRY_CHUNK_URL: '', FERRY_TAIL_BYTES: String(tailBytes) },
          2 * MINUTE,
        );
        const status: ProcessStatus = { alive: report.alive, pid: report.pid, exitCode: report.exitCode, logBytes: report.logBytes, lastLines: decodeTail(report.tailBase64) };
        if (status.logBytes > 0) firstLogSeenAtMs ??= Date.now();
        context.heartbeat({ step: 'confirmProcess', alive: status.alive });
        if (!status.alive && status.exitCode !== 0) {
          const code = status.exitCode === null ? 'without an exit code (killed)' : `with code ${status.exitCode}`;
          throw nonRetryable(FailureType.ProcessExitedEarly, `the command exited ${code} within its ${input.graceSeconds} s startup grace period; log tail:\n${status.lastLines.join('\n')}`, {
            runId: input.runId,
            startId: input.startId,
            exitCode: status.exitCode,
            lastLines: status.lastLines,
          });
        }
        if (!status.alive || Date.now() >= deadline) return { ...status, firstLogSeenAtMs };
        await context.sleep(Math.min(1_000, Math.max(0, deadline - Date.now())));
      }
    },

    /** Whether the process lives, and the next log chunk shipped to S3 (keyed by its offset, so a retry overwrites it). */
    async probeProcess(input: ProbeProcessInput): Promise<ProbeProcessResult> {
      const chunkUrl = await blobs.presignPut(trainingLogChunkKey(blobs.keyPrefix, input.runId, input.startId, input.logOffset));
      const report = await runScript<ProbeReport>(
        input,
        'probe',
        PROBE_SCRIPT,
        {
          FERRY_START_ID: input.startId,
          FERRY_LOG_OFFSET: String(input.logOffset),
          FERRY_CHUNK_MAX: String(chunkMaxBytes),
          FERRY_CHUNK_URL: chunkUrl,
          FERRY_TAIL_BYTES: String(tailBytes),
        },
        5 * MINUTE,
      );
      return {
        alive: report.alive,
        pid: report.pid,
        exitCode: report.exitCode,
        logBytes: report.logBytes,
        chunkBytes: report.chunkBytes,
        lastLines: decodeTail(report.tailBase64),
      };
    },

    /** SIGTERM to the process group, SIGKILL after the grace period. */
    async stopProcess(input: StopProcessInput): Promise<{ signal: 'none' | 'TERM' | 'KILL' }> {
      const report = await runScript<{ signal: 'none' | 'TERM' | 'KILL' }>(
        input,
        'stop',
        STOP_SCRIPT,
        { FERRY_START_ID: input.startId, FERRY_GRACE_SECONDS: String(Math.ceil(input.graceSeconds)) },
        input.graceSeconds * 1000 + 2 * MINUTE,
        { step: 'stopProcess' },
      );
      Context.current().log.info('process stopped', { runId: input.runId, startId: input.startId, signal: report.signal });
      return report;
    },

    /** Deletes the run's temporary objects (archives, listings). A failure is returned as a warning: it must not fail the run. */
    async cleanupTrainingObjects(input: { runId: string }): Promise<{ deleted: number; warning?: string }> {
      const prefix = trainingTmpPrefix(blobs.keyPrefix, input.runId);
      try {
        return { deleted: await blobs.deletePrefix(prefix) };
      } catch (err) {
        const warning = `temporary objects under ${prefix} were not deleted: ${(err as Error).message}`;
        Context.current().log.warn(warning, { runId: input.runId });
        return { deleted: 0, warning };
      }
    },
  };
}
