/**
 * Everything a workflow does in a session, the same on every target kind:
 * provision it, land a manifest and verify it there, check it before code
 * runs, run code, start/probe/stop a process, collect files, release it.
 * Where a session lives and how it is reached is its driver's business
 * (activities/targets); these activities speak only SessionReach.
 *
 * Landing and verifying are separate activities on purpose: the target
 * saying "landed" is never taken as proof.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { FailureType } from '../core/errors';
import { blobsOfEntry, createManifest, fileDirectoryConflicts, type ManifestEntry } from '../core/manifest';
import type { ProcessStatus } from '../core/agentProtocol';
import { executionLogChunkKey, executionLogPrefix, type LogStream } from '../core/executionLogs';
import { interpreterCommand, type ExecuteCodeResult, type ExecuteLanguage } from '../core/pipeline';
import { startProgress } from '../core/sync';
import { SESSION_DIRS, describeTarget, type CollectedFile, type CollectedFiles, type SessionHandle, type SessionPurpose, type TargetRef } from '../core/target';
import { lastLines, trainingLogChunkKey } from '../core/training';
import { compareLanding, describeLandingProblems, entriesNotHeld, landingIsComplete, type TargetFile } from '../core/verify';
import { blobStoreFailure } from './blobStore';
import { nonRetryable, retryable } from './failures';
import { throttledHeartbeat } from './heartbeat';
import type { ContentStore } from './blobStore';
import type { LogShipment, SessionReach, TargetBackend } from './targets/driver';
import { TARGET_KINDS, backendOf, normalizeTarget, targetDriver } from './targets';

export interface SessionDeps {
  blobs: ContentStore;
  /** Each target kind on this worker: its backend, or why it cannot run here. */
  targets: Map<string, TargetBackend | string>;
}

export interface ProvisionSessionInput {
  sessionId: string;
  target: TargetRef;
  /** What the session is for; a kind that cannot serve it is refused before anything starts. Default `pipeline`. */
  purpose?: SessionPurpose;
}

export interface LandingInput {
  /** The provisioned session. Histories recorded before sessions were provisioned for syncs omit it; the activity provisions then. */
  session?: SessionHandle;
  sessionId: string;
  target?: TargetRef;
  /** Folder inside the session. */
  dest: string;
  manifestDigest: string;
  /** Leave exactly the manifest: files under `dest` it does not name are removed, and verification fails on any. */
  exact?: boolean;
}

export interface LandManifestResult {
  bootId: string;
  filesLanded: number;
  bytesLanded: number;
  filesAlreadyPresent: number;
  bytesAlreadyPresent: number;
  /** Bytes the target fetched from the blob store. */
  bytesDownloaded: number;
  /** Bytes of chunks the target copied from the previous version of a file instead of fetching them. */
  bytesReused: number;
  filesRemoved: number;
}

export interface VerifyLandingInput extends LandingInput {
  /** Boot id the files were landed on; a different one means the target restarted and must be landed again. */
  expectedBootId: string;
}

export interface VerifyLandingResult {
  bootId: string;
  filesVerified: number;
  bytesVerified: number;
}

export interface CheckSessionInput {
  session: SessionHandle;
  /** The verified data/ manifest whose files must still be there. */
  dataManifestDigest?: string;
}

export interface CheckSessionResult {
  /** The session checked: a local activity's record in history holds its result but not its input. */
  sessionId: string;
  /** False when the session did not answer: it must be provisioned again. */
  reachable: boolean;
  bootId?: string;
  /** True when the boot id differs from the handle's: everything must be landed and verified again. */
  restarted: boolean;
  /** data/ files of the manifest that are gone or have another size (first 50). */
  missing: string[];
  changed: string[];
}

export interface ExecuteCodeInput {
  session: SessionHandle;
  stage: string;
  executionId: string;
  code: string;
  language: ExecuteLanguage;
  timeoutSeconds: number;
  /** Where stdout and stderr are shipped while the code runs, below the store's prefix (core/executionLogs executionLogPrefix). */
  logChunks?: string;
}

export interface CollectFilesInput {
  session: SessionHandle;
  /** The pipeline stage collecting its artifacts; absent for other collections. */
  stage?: string;
  /** Folder of the session to collect (default artifacts). */
  dir?: string;
}

export interface StartProcessInput {
  session: SessionHandle;
  /** Chosen by the workflow; a retried start reports the process the first attempt started. */
  processId: string;
  command: string[];
  env: Record<string, string>;
  /** Folder of the session to run in. */
  cwd: string;
}

export interface StartProcessResult {
  pid: number | null;
  /** False when an earlier attempt already started this process id. */
  started: boolean;
}

export interface ProcessRef {
  session: SessionHandle;
  processId: string;
}

export interface ProcessReport {
  alive: boolean;
  pid: number | null;
  /** Set once the process ended; null while it runs or when its end is unknown. */
  exitCode: number | null;
  logBytes: number;
  lastLines: string[];
}

export interface ConfirmProcessResult extends ProcessReport {
  /** When the log was first seen non-empty (epoch ms), for the time-to-first-log-line figure. */
  firstLogSeenAtMs?: number;
}

export interface ProbeProcessInput extends ProcessRef {
  /** Names the log chunks in S3 (training/<runId>/logs/<processId>/<offset>.log). */
  runId: string;
  /** Log bytes already shipped; the next chunk starts here. */
  logOffset: number;
}

export interface ProbeProcessResult extends ProcessReport {
  /** Bytes shipped by this probe as the chunk at `logOffset` (0: nothing new). */
  chunkBytes: number;
}

export interface ListSessionFilesResult extends CollectedFiles {
  bootId: string;
}

/** Paths named in a result's or failure's details (messages name fewer). */
const DETAIL_PATHS = 50;
/** Files listed in history; the manifest holds them all. */
const FILES_LISTED = 100;
/** Log bytes shipped per probe at most (per stream). */
const LOG_CHUNK_MAX_BYTES = 8 << 20;

/** Stdout and stderr bytes an earlier attempt shipped, from its last heartbeat (none on a first attempt). */
function shippedBefore(details: unknown): Record<LogStream, number> {
  const shipped = (details as { shipped?: Partial<Record<LogStream, unknown>> } | undefined)?.shipped;
  const count = (value: unknown) => (Number.isSafeInteger(value) && (value as number) > 0 ? (value as number) : 0);
  return { stdout: count(shipped?.stdout), stderr: count(shipped?.stderr) };
}

export function createSessionActivities(deps: SessionDeps) {
  const { blobs } = deps;

  const backendFor = (target: TargetRef): TargetBackend => backendOf(deps.targets, target);

  const reachOf = (session: SessionHandle): SessionReach => {
    const context = Context.current();
    return backendFor(session.target).reach(session, { signal: context.cancellationSignal, heartbeat: () => context.heartbeat() });
  };

  const provision = async (input: ProvisionSessionInput): Promise<SessionHandle> => {
    const context = Context.current();
    const purpose = input.purpose ?? 'pipeline';
    const { driver, target } = normalizeTarget(input.target);
    if (driver.lifetime === 'workflow' && (purpose === 'sync' || purpose === 'inspect')) {
      throw nonRetryable(
        FailureType.InvalidInput,
        `a ${purpose === 'sync' ? 'sync' : 'listing'} cannot target kind ${driver.kind}: its sessions are compute started for one workflow and gone when it ends, so nothing would be left to use; land files into one through a pipeline's inputs or a training run, or pick a kind whose sessions persist (${TARGET_KINDS()
          .filter((kind) => targetDriver(kind)?.lifetime === 'persistent')
          .join(', ')})`,
        { target: input.target, purpose },
      );
    }
    const handle = await backendFor(target).provision({
      sessionId: input.sessionId,
      target,
      purpose,
      heartbeat: (details) => context.heartbeat(details),
      signal: context.cancellationSignal,
    });
    context.log.info('session provisioned', { sessionId: input.sessionId, target: handle.description ?? describeTarget(target), bootId: handle.bootId, root: handle.root, ...handle.details });
    return handle;
  };

  /** The manifest's entries; unsafe paths are refused on reading, before any target sees them. */
  const loadEntries = async (manifestDigest: string): Promise<ManifestEntry[]> => {
    const manifest = await blobs.getManifest(manifestDigest).catch((err) => {
      throw blobStoreFailure(err);
    });
    const conflicts = fileDirectoryConflicts(manifest.files);
    if (conflicts.length) {
      throw nonRetryable(FailureType.InvalidInput, `manifest ${manifestDigest} has paths that are both file and folder: ${conflicts.slice(0, 5).join(', ')}`, { conflicts });
    }
    return manifest.files;
  };

  const sessionOf = async (input: LandingInput): Promise<SessionHandle> =>
    input.session ?? (await provision({ sessionId: input.sessionId, target: input.target ?? { kind: 'local' }, purpose: 'sync' }));

  /** A target's listing stored as a manifest (links as link entries), with the first files named for history. */
  const storeListing = async (listed: TargetFile[]): Promise<CollectedFiles> => {
    const entries: ManifestEntry[] = listed.map((f) => ({ path: f.path, size: f.size, mode: f.mode, sha256: f.sha256, ...(f.link === undefined ? {} : { link: f.link }) }));
    const ref = await blobs.putManifest(createManifest(entries));
    const files = entries
      .slice(0, FILES_LISTED)
      .map((f): CollectedFile => (f.link === undefined ? { path: f.path, size: f.size, sha256: f.sha256, key: blobs.blobKey(f.sha256) } : { path: f.path, size: f.size, sha256: f.sha256, link: f.link }));
    return { manifestDigest: ref.manifestDigest, manifestKey: ref.manifestKey, filesTotal: ref.filesTotal, bytesTotal: ref.bytesTotal, files };
  };

  /** Stores every file under `dir` of the session as a content-addressed blob and the set as a manifest. */
  const collect = async (session: SessionHandle, dir: string): Promise<CollectedFiles & { bootId: string }> => {
    const context = Context.current();
    const reach = reachOf(session);
    const heartbeat = throttledHeartbeat(context);
    const listed = await reach.listFiles({ dir, hash: true }, (filesDone, bytesDone) =>
      heartbeat({ step: 'collectArtifacts', filesDone, filesTotal: filesDone, bytesDone, bytesTotal: bytesDone, listing: true }),
    );
    // A symlink is kept as a link entry: its text is in the manifest, and it has no blob (reading it would follow it).
    const regular = listed.files.filter((f) => f.link === undefined);
    // Stored alone: a collected file's key names its own object.
    const stored = await blobs.findStandaloneBlobs(regular.map((f) => f.sha256));
    const missing = new Map<string, TargetFile>();
    for (const file of regular) if (!stored.has(file.sha256) && !missing.has(file.sha256)) missing.set(file.sha256, file);
    const progress = startProgress('collectArtifacts', [...missing.values()]);
    await reach.storeFiles(dir, [...missing.values()], (file) => {
      progress.filesDone++;
      progress.bytesDone += file.size;
      heartbeat(progress);
    });
    return { ...(await storeListing(listed.files)), bootId: listed.bootId };
  };

  /**
   * A target's checksum failure for a file, traced to the store: each blob of
   * the file is read back and hashed here (twice before it counts, so bytes
   * damaged on the way are not blamed on the store). Blobs stored damaged
   * make it BlobCorrupted — landing again would fetch the same bytes, so it is
   * not retried — naming them by sha256, whatever object holds them; bytes
   * damaged only on the way leave the failure as it was, and it is retried.
   */
  const damagedBlobFailure = async (err: unknown, entries: ManifestEntry[]): Promise<unknown> => {
    if (!(err instanceof ApplicationFailure) || err.type !== FailureType.ChecksumMismatch) return err;
    const path = (err.details?.[0] as { path?: unknown } | undefined)?.path;
    const entry = entries.find((candidate) => candidate.path === path);
    if (!entry) return err;
    const damaged: string[] = [];
    for (const blob of blobsOfEntry(entry)) {
      Context.current().heartbeat();
      // Missing counts as damaged: either way the store cannot give the target this blob, and only its source can.
      if ((await blobs.checkStoredBlob(blob.sha256)) !== 'intact') damaged.push(blob.sha256);
    }
    if (damaged.length === 0) return err;
    Context.current().log.warn('the store holds damaged blobs', { path: entry.path, sha256s: damaged });
    return nonRetryable(
      FailureType.BlobCorrupted,
      `the store holds other bytes than ${damaged.length === 1 ? `blob ${damaged[0]}` : `blobs ${damaged.join(', ')}`} of ${JSON.stringify(entry.path)} (${err.message}): landing again would fetch them again; they must be uploaded again from their source`,
      { path: entry.path, sha256s: damaged },
    );
  };

  const report = (status: { state: string; pid: number | null; exitCode: number | null; stdoutBytes: number; stdoutTail: string }): ProcessReport => ({
    alive: status.state === 'running',
    pid: status.pid,
    exitCode: status.exitCode,
    logBytes: status.stdoutBytes,
    lastLines: lastLines(status.stdoutTail),
  });

  return {
    /**
     * Starts the session, or finds the one already there (idempotent on
     * sessionId). The target's options and the purpose are checked first: a
     * kind that cannot serve it fails here, before anything starts.
     */
    provisionSession: provision,

    /**
     * The target pulls what it lacks into the session. It is asked first what
     * it holds (hashed there), so intact files cost a hash, not a transfer.
     */
    async landManifest(input: LandingInput): Promise<LandManifestResult> {
      const context = Context.current();
      const files = await loadEntries(input.manifestDigest);
      const session = await sessionOf(input);
      const reach = reachOf(session);
      const progress = startProgress('landManifest', files);
      context.heartbeat(progress);
      const heartbeat = throttledHeartbeat(context);
      const held = await reach.listFiles({ dir: input.dest, hash: true, paths: input.exact ? undefined : files.map((f) => f.path) }, () => heartbeat(progress));
      const needed = entriesNotHeld(files, held.files);
      const wanted = new Set(files.map((f) => f.path));
      const remove = input.exact ? held.files.filter((f) => !wanted.has(f.path)).map((f) => f.path) : [];
      const neededBytes = needed.reduce((sum, f) => sum + f.size, 0);
      const present = { files: files.length - needed.length, bytes: progress.bytesTotal - neededBytes };
      progress.filesDone = present.files;
      progress.bytesDone = present.bytes;
      context.heartbeat(progress);
      const landed = await reach
        .land({ dir: input.dest, files: needed, remove }, (filesDone, bytesDone) => {
          progress.filesDone = present.files + filesDone;
          progress.bytesDone = present.bytes + bytesDone;
          heartbeat(progress);
        })
        .catch(async (err: unknown) => {
          throw await damagedBlobFailure(err, needed);
        });
      if (landed.bootId !== held.bootId) {
        throw retryable(FailureType.TargetRestarted, `${reach.description} restarted while landing (boot ${held.bootId} → ${landed.bootId})`, { bootId: held.bootId, newBootId: landed.bootId });
      }
      const result: LandManifestResult = {
        bootId: landed.bootId,
        filesLanded: landed.filesLanded,
        bytesLanded: landed.bytesLanded,
        filesAlreadyPresent: present.files,
        bytesAlreadyPresent: present.bytes,
        bytesDownloaded: landed.bytesDownloaded,
        bytesReused: landed.bytesReused,
        filesRemoved: landed.filesRemoved,
      };
      context.log.info('manifest landed', { sessionId: input.sessionId, target: reach.description, manifestDigest: input.manifestDigest, ...result });
      return result;
    },

    /** The target re-hashes every file of the manifest; anything missing, short, different (or, when exact, extra) fails with its paths. */
    async verifyLanding(input: VerifyLandingInput): Promise<VerifyLandingResult> {
      const context = Context.current();
      const files = await loadEntries(input.manifestDigest);
      const reach = reachOf(await sessionOf(input));
      const progress = startProgress('verifyLanding', files);
      const heartbeat = throttledHeartbeat(context);
      heartbeat(progress);
      const listed = await reach.listFiles({ dir: input.dest, hash: true, paths: input.exact ? undefined : files.map((f) => f.path) }, (filesDone, bytesDone) => {
        progress.filesDone = filesDone;
        progress.bytesDone = bytesDone;
        heartbeat(progress);
      });
      if (listed.bootId !== input.expectedBootId) {
        // Not retryable here: only landing again can fix it, and that is the workflow's call.
        throw nonRetryable(FailureType.TargetRestarted, `${reach.description} restarted after landing (boot ${input.expectedBootId} → ${listed.bootId}): files must be landed again`, {
          expectedBootId: input.expectedBootId,
          bootId: listed.bootId,
        });
      }
      const comparison = compareLanding(files, listed.files);
      const wanted = new Set(files.map((f) => f.path));
      const extra = input.exact ? listed.files.filter((f) => !wanted.has(f.path)).map((f) => f.path) : [];
      if (!landingIsComplete(comparison) || extra.length > 0) {
        const problems = [landingIsComplete(comparison) ? '' : describeLandingProblems(comparison), extra.length ? `${extra.length} not in the manifest (${extra.slice(0, 3).join(', ')})` : '']
          .filter(Boolean)
          .join('; ');
        throw retryable(FailureType.VerificationFailed, `${reach.description} does not hold the manifest in ${input.dest}: ${problems}`, {
          sessionId: input.sessionId,
          dir: input.dest,
          bootId: listed.bootId,
          missing: comparison.missing.slice(0, DETAIL_PATHS),
          short: comparison.short.slice(0, DETAIL_PATHS),
          mismatched: comparison.mismatched.slice(0, DETAIL_PATHS),
          extra: extra.slice(0, DETAIL_PATHS),
          verified: comparison.verified,
        });
      }
      context.log.info('landing verified', { sessionId: input.sessionId, target: reach.description, manifestDigest: input.manifestDigest, bootId: listed.bootId, files: comparison.verified });
      return { bootId: listed.bootId, filesVerified: comparison.verified, bytesVerified: comparison.bytesVerified };
    },

    /**
     * The cheap check before an execution: the session answers, on the same
     * boot, and every data/ file of the verified manifest is there with its
     * size. Sizes only — the full re-hash is verifyLanding's job.
     */
    async checkSession(input: CheckSessionInput): Promise<CheckSessionResult> {
      const reach = reachOf(input.session);
      let bootId: string;
      try {
        bootId = await reach.bootId();
      } catch (err) {
        const type = (err as { type?: string }).type;
        if (type === FailureType.TargetUnavailable || type === FailureType.TargetCommandTimedOut) {
          Context.current().log.warn('session unreachable', { sessionId: input.session.sessionId, error: (err as Error).message });
          return { sessionId: input.session.sessionId, reachable: false, restarted: true, missing: [], changed: [] };
        }
        throw err;
      }
      const restarted = bootId !== input.session.bootId;
      if (!input.dataManifestDigest) return { sessionId: input.session.sessionId, reachable: true, bootId, restarted, missing: [], changed: [] };
      const manifest = await blobs.getManifest(input.dataManifestDigest).catch((err) => {
        throw blobStoreFailure(err);
      });
      const listed = await reach.listFiles({ dir: SESSION_DIRS.data, paths: manifest.files.map((f) => f.path), hash: false });
      const sizes = new Map(listed.files.map((f) => [f.path, f.size]));
      const missing = manifest.files.filter((f) => !sizes.has(f.path)).map((f) => f.path);
      const changed = manifest.files.filter((f) => sizes.has(f.path) && sizes.get(f.path) !== f.size).map((f) => f.path);
      return { sessionId: input.session.sessionId, reachable: true, bootId: listed.bootId, restarted: restarted || listed.bootId !== input.session.bootId, missing: missing.slice(0, DETAIL_PATHS), changed: changed.slice(0, DETAIL_PATHS) };
    },

    /**
     * Runs code with cwd at the session root and waits for it, shipping its
     * stdout and stderr to S3 as they grow (core/executionLogs), so callers
     * can follow it while it runs. The execution id makes a retry find the
     * first run instead of starting another; a retry ships on from the
     * offsets the last heartbeat recorded. Full logs go to the blob store;
     * only their tails come back into history.
     */
    async executeCode(input: ExecuteCodeInput): Promise<ExecuteCodeResult> {
      const context = Context.current();
      const reach = reachOf(input.session);
      const ids = { sessionId: input.session.sessionId, stage: input.stage, executionId: input.executionId };
      // Attempts scheduled before executions streamed carry no logChunks; theirs is where the workflow would have put it.
      const logPrefix = blobs.keyPrefix + (input.logChunks ?? executionLogPrefix('', context.info.workflowExecution?.workflowId ?? context.info.activityId, input.executionId));
      const shipped = shippedBefore(context.info.heartbeatDetails);
      context.heartbeat({ ...ids, shipped });
      const shipment = async (stream: LogStream): Promise<LogShipment> => ({
        offset: shipped[stream],
        maxBytes: LOG_CHUNK_MAX_BYTES,
        url: await blobs.presignPut(executionLogChunkKey(logPrefix, stream, shipped[stream])),
      });
      const unshipped = (status: ProcessStatus) => status.stdoutBytes > shipped.stdout || status.stderrBytes > shipped.stderr;
      let lastProbeAt = Date.now();
      /**
       * One status round trip that also ships what is new. It waits for the
       * end until the target's follow interval since the last probe is up:
       * output is shipped at that pace (not a chunk per line), and a process
       * that ends meanwhile is answered at once.
       */
      const probe = async (): Promise<ProcessStatus> => {
        const waitMs = Math.max(0, reach.followEveryMs - (Date.now() - lastProbeAt));
        lastProbeAt = Date.now();
        const outcome = await reach.probeProcess(input.executionId, { waitMs, ship: await shipment('stdout'), shipStderr: await shipment('stderr') });
        shipped.stdout += outcome.shipped;
        shipped.stderr += outcome.shippedStderr;
        context.heartbeat({ ...ids, shipped });
        return outcome.status;
      };
      let status = await reach.startProcess({
        processId: input.executionId,
        command: interpreterCommand(input.language, input.code),
        cwd: '',
        env: {},
        timeoutSeconds: input.timeoutSeconds,
        output: 'separate',
        waitMs: reach.followEveryMs,
      });
      while (status.state === 'running') status = await probe();
      if (status.bootId !== input.session.bootId || status.state === 'lost') {
        // The code ran on a boot whose data/ nobody verified, or its end is unknown; only the workflow can land again, so say so instead of retrying.
        throw nonRetryable(FailureType.TargetRestarted, `session ${input.session.sessionId} restarted ${status.state === 'lost' ? 'while' : 'before'} the code ran (boot ${input.session.bootId} → ${status.bootId}); its inputs must be landed again`, {
          bootId: input.session.bootId,
          newBootId: status.bootId,
          executionId: input.executionId,
        });
      }
      // Readers stop once they hold every byte the result counts, so all of it is shipped before the result exists.
      // An ended process answers at once, whatever the wait.
      while (unshipped(status)) status = await probe();
      const logs = await reach.storeLogs(input.executionId, { stdout: status.stdoutBytes, stderr: status.stderrBytes });
      context.log.info('code executed', { ...ids, exitCode: status.exitCode, durationMs: status.durationMs });
      return {
        executionId: input.executionId,
        stage: input.stage,
        exitCode: status.exitCode,
        signal: status.signal,
        timedOut: status.timedOut,
        stdoutTail: status.stdoutTail,
        stderrTail: status.stderrTail,
        stdoutBytes: status.stdoutBytes,
        stderrBytes: status.stderrBytes,
        logKey: blobs.blobKey(logs.stdout.sha256),
        stderrLogKey: blobs.blobKey(logs.stderr.sha256),
        durationMs: status.durationMs,
        bootId: status.bootId,
      };
    },

    /** Stores every file under a folder of the session (artifacts/ by default) as content-addressed blobs and the set as a manifest. */
    async collectArtifacts(input: CollectFilesInput): Promise<CollectedFiles & { stage?: string }> {
      const dir = input.dir ?? SESSION_DIRS.artifacts;
      const { bootId, ...collected } = await collect(input.session, dir);
      Context.current().log.info('files collected', { sessionId: input.session.sessionId, stage: input.stage, dir, bootId, files: collected.filesTotal, manifestDigest: collected.manifestDigest });
      return input.stage === undefined ? collected : { stage: input.stage, ...collected };
    },

    /** What a folder of the session holds, hashed on the target now, stored as a manifest (`ferry files`). */
    async listSessionFiles(input: { session: SessionHandle; dir: string }): Promise<ListSessionFilesResult> {
      const reach = reachOf(input.session);
      const listed = await reach.listFiles({ dir: input.dir, hash: true });
      return { ...(await storeListing(listed.files)), bootId: listed.bootId };
    },

    /** Starts a command detached, once per process id; its stdout and stderr go to one log. */
    async startProcess(input: StartProcessInput): Promise<StartProcessResult> {
      const status = await reachOf(input.session).startProcess({ processId: input.processId, command: input.command, cwd: input.cwd, env: input.env, output: 'combined' });
      Context.current().log.info(status.started ? 'process started' : 'process already started by an earlier attempt', { sessionId: input.session.sessionId, processId: input.processId, pid: status.pid });
      return { pid: status.pid, started: status.started };
    },

    /**
     * Watches the process for its startup grace period: a non-zero exit
     * fails at once, non-retryably, with the log tail.
     */
    async confirmProcess(input: ProcessRef & { graceSeconds: number }): Promise<ConfirmProcessResult> {
      const context = Context.current();
      const reach = reachOf(input.session);
      const deadline = Date.now() + input.graceSeconds * 1000;
      let firstLogSeenAtMs: number | undefined;
      for (;;) {
        const { status } = await reach.probeProcess(input.processId, { waitMs: Math.max(0, Math.min(1_000, deadline - Date.now())) });
        const current = report(status);
        if (current.logBytes > 0) firstLogSeenAtMs ??= Date.now();
        context.heartbeat({ step: 'confirmProcess', alive: current.alive });
        if (!current.alive && current.exitCode !== 0) {
          const code = current.exitCode === null ? 'without an exit code (killed, or its end is unknown)' : `with code ${current.exitCode}`;
          throw nonRetryable(FailureType.ProcessExitedEarly, `the command exited ${code} within its ${input.graceSeconds} s startup grace period; log tail:\n${current.lastLines.join('\n')}`, {
            processId: input.processId,
            exitCode: current.exitCode,
            lastLines: current.lastLines,
          });
        }
        if (!current.alive || Date.now() >= deadline) return { ...current, firstLogSeenAtMs };
      }
    },

    /** Whether the process lives, and the next log chunk shipped to S3 (keyed by its offset, so a retry overwrites it). */
    async probeProcess(input: ProbeProcessInput): Promise<ProbeProcessResult> {
      const url = await blobs.presignPut(trainingLogChunkKey(blobs.keyPrefix, input.runId, input.processId, input.logOffset));
      const { status, shipped } = await reachOf(input.session).probeProcess(input.processId, { waitMs: 0, ship: { offset: input.logOffset, maxBytes: LOG_CHUNK_MAX_BYTES, url } });
      return { ...report(status), chunkBytes: shipped };
    },

    /** SIGTERM to the process group, SIGKILL after the grace period. */
    async stopProcess(input: ProcessRef & { graceSeconds: number }): Promise<{ signal: 'none' | 'TERM' | 'KILL' }> {
      const { signal } = await reachOf(input.session).stopProcess(input.processId, input.graceSeconds);
      Context.current().log.info('process stopped', { sessionId: input.session.sessionId, processId: input.processId, signal });
      return { signal };
    },

    /** Ends the session: stops what it started, frees its compute and, unless told to keep them, removes its files. A session already gone is fine. */
    async releaseSession(input: { session: SessionHandle; keepFiles?: boolean }): Promise<{ released: boolean; detail: string }> {
      const context = Context.current();
      const result = await backendFor(input.session.target).release(input.session, { removeFiles: !input.keepFiles, signal: context.cancellationSignal });
      context.log.info('session released', { sessionId: input.session.sessionId, ...result });
      return result;
    },
  };
}
