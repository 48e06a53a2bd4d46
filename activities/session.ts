/**
 * Compute sessions: provision a session's runtime agent, check it still
 * holds what was verified, run code in it, collect its artifacts, release
 * it. Which machine a session lives on is the driver's business
 * (activities/sessionDriver.ts); everything else speaks the agent protocol.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { FailureType } from '../core/errors';
import { createManifest, type ManifestEntry } from '../core/manifest';
import { interpreterCommand, type ArtifactFile, type ExecuteLanguage, type ExecuteResult, type StageArtifacts } from '../core/pipeline';
import { SESSION_DIRS, type SessionHandle, type SessionTargetRef } from '../core/session';
import { AgentClient, AgentRequestError } from './agentClient';
import { blobStoreFailure } from './blobs';
import { nonRetryable, retryable } from './failures';
import { BlobSourceChangedError, type S3BlobStore } from './s3BlobStore';
import { sessionToken, type SessionDriver } from './sessionDriver';
import { agentFailure } from './target';

export interface SessionDeps {
  blobs: S3BlobStore;
  drivers: Partial<Record<SessionTargetRef['kind'], SessionDriver>>;
  /** FERRY_SESSION_SECRET; without it this worker runs no sessions. */
  secret?: string;
}

export interface CheckSessionInput {
  session: SessionHandle;
  /** The verified data/ manifest whose files must still be there. */
  dataManifestDigest?: string;
}

export interface CheckSessionResult {
  /** False when the agent did not answer: the session must be provisioned again. */
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
}

/** Paths named in a result's details. */
const DETAIL_PATHS = 50;
/** Artifact files listed in history; the manifest holds them all. */
const ARTIFACTS_LISTED = 100;

export function createSessionActivities(deps: SessionDeps) {
  const { blobs } = deps;

  const tokenFor = (sessionId: string): string => {
    if (!deps.secret) {
      throw nonRetryable(FailureType.SessionsNotConfigured, 'this worker cannot run sessions: set FERRY_SESSION_SECRET (the same on every worker)', { sessionId });
    }
    return sessionToken(deps.secret, sessionId);
  };
  const driverFor = (target: SessionTargetRef): SessionDriver => {
    const driver = deps.drivers[target.kind];
    if (!driver) throw nonRetryable(FailureType.UnknownTarget, `this worker has no ${JSON.stringify(target.kind)} session driver configured`, { target });
    return driver;
  };
  const agentFor = (session: SessionHandle, options?: { idleTimeoutMs?: number }): AgentClient =>
    new AgentClient({ url: session.agentUrl, token: tokenFor(session.sessionId) }, options);

  /** Runs `work` with a scratch folder on the worker that is removed afterwards. */
  const withScratch = async <T>(work: (dir: string) => Promise<T>): Promise<T> => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-session-'));
    try {
      return await work(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  /** Copies a file from the session into the blob store; the bytes must hash to `sha256` when given. */
  const storeFromSession = async (scratch: string, name: string, fetchInto: (file: string) => Promise<{ size: number; sha256: string }>, expectedSha256?: string) => {
    const file = path.join(scratch, name);
    const got = await fetchInto(file);
    if (expectedSha256 !== undefined && got.sha256 !== expectedSha256) {
      throw retryable(FailureType.ArtifactChanged, `${name} changed while it was collected (sha256 ${got.sha256}, listed as ${expectedSha256})`, { path: name });
    }
    try {
      await blobs.putFileAsBlob(file, got.sha256, got.size);
    } catch (err) {
      if (err instanceof BlobSourceChangedError) throw retryable(FailureType.ArtifactChanged, err.message, { path: name });
      throw blobStoreFailure(err);
    }
    return { ...got, key: blobs.blobKey(got.sha256) };
  };

  return {
    /** Starts the session's agent, or finds the one already running (idempotent on sessionId). */
    async provisionSession(input: { sessionId: string; target: SessionTargetRef }): Promise<SessionHandle> {
      const context = Context.current();
      const token = tokenFor(input.sessionId);
      const provisioned = await driverFor(input.target).provision({ sessionId: input.sessionId, token, heartbeat: (details) => context.heartbeat(details) });
      let bootId: string;
      try {
        ({ bootId } = await new AgentClient({ url: provisioned.agentUrl, token }).health());
      } catch (err) {
        throw agentFailure(err);
      }
      const handle: SessionHandle = { sessionId: input.sessionId, target: input.target, agentUrl: provisioned.agentUrl, bootId, root: provisioned.root, details: provisioned.details };
      context.log.info('session provisioned', { sessionId: input.sessionId, bootId, agentUrl: provisioned.agentUrl, ...provisioned.details });
      return handle;
    },

    /**
     * The cheap check before an execution: the agent answers, on the same
     * boot, and every data/ file of the verified manifest is there with its
     * size. Sizes only — the full re-hash is verifyLanding's job.
     */
    async checkSession(input: CheckSessionInput): Promise<CheckSessionResult> {
      const agent = agentFor(input.session, { idleTimeoutMs: 10_000 });
      let bootId: string;
      try {
        ({ bootId } = await agent.health());
      } catch (err) {
        if (err instanceof AgentRequestError && err.type === FailureType.TargetUnavailable) {
          Context.current().log.warn('session agent unreachable', { sessionId: input.session.sessionId, error: err.message });
          return { reachable: false, restarted: true, missing: [], changed: [] };
        }
        throw agentFailure(err);
      }
      const restarted = bootId !== input.session.bootId;
      if (!input.dataManifestDigest) return { reachable: true, bootId, restarted, missing: [], changed: [] };
      const manifest = await blobs.getManifest(input.dataManifestDigest).catch((err) => {
        throw blobStoreFailure(err);
      });
      let listed;
      try {
        listed = await agent.statFiles({ dir: SESSION_DIRS.data, paths: manifest.files.map((f) => f.path) });
      } catch (err) {
        throw agentFailure(err);
      }
      const sizes = new Map(listed.files.map((f) => [f.path, f.size]));
      const missing = manifest.files.filter((f) => !sizes.has(f.path)).map((f) => f.path);
      const changed = manifest.files.filter((f) => sizes.has(f.path) && sizes.get(f.path) !== f.size).map((f) => f.path);
      return { reachable: true, bootId: listed.bootId, restarted: restarted || listed.bootId !== input.session.bootId, missing: missing.slice(0, DETAIL_PATHS), changed: changed.slice(0, DETAIL_PATHS) };
    },

    /**
     * Runs code with cwd at the session root. The execution id makes a retry
     * return the first run's result instead of running again. Full logs go to
     * the blob store; only their tails come back into history.
     */
    async executeCode(input: ExecuteCodeInput): Promise<ExecuteResult> {
      const context = Context.current();
      const agent = agentFor(input.session);
      context.heartbeat({ executionId: input.executionId, stage: input.stage });
      // The agent answers only when the command ends; heartbeats meanwhile say the attempt is alive.
      const beating = setInterval(() => context.heartbeat({ executionId: input.executionId, stage: input.stage }), 5_000);
      let result;
      try {
        result = await agent.exec({ executionId: input.executionId, command: interpreterCommand(input.language, input.code), timeoutSeconds: input.timeoutSeconds });
      } catch (err) {
        throw agentFailure(err);
      } finally {
        clearInterval(beating);
      }
      if (result.bootId !== input.session.bootId) {
        // The code ran on a boot whose data/ nobody verified; only the workflow can land again, so say so instead of retrying.
        throw nonRetryable(FailureType.TargetRestarted, `session ${input.session.sessionId} restarted before the code ran (boot ${input.session.bootId} → ${result.bootId}); its inputs must be landed again`, {
          bootId: input.session.bootId,
          newBootId: result.bootId,
        });
      }
      const logs = await withScratch(async (scratch) => ({
        stdout: await storeFromSession(scratch, 'stdout.log', (file) => agent.downloadLog(input.executionId, 'stdout', file)),
        stderr: await storeFromSession(scratch, 'stderr.log', (file) => agent.downloadLog(input.executionId, 'stderr', file)),
      })).catch((err) => {
        throw agentFailure(err);
      });
      context.log.info('code executed', { sessionId: input.session.sessionId, stage: input.stage, executionId: input.executionId, exitCode: result.exitCode, durationMs: result.durationMs });
      return {
        executionId: input.executionId,
        stage: input.stage,
        exitCode: result.exitCode,
        signal: result.signal,
        timedOut: result.timedOut,
        stdoutTail: result.stdoutTail,
        stderrTail: result.stderrTail,
        stdoutBytes: result.stdoutBytes,
        stderrBytes: result.stderrBytes,
        logKey: logs.stdout.key,
        stderrLogKey: logs.stderr.key,
        durationMs: result.durationMs,
        bootId: result.bootId,
      };
    },

    /** Stores every file under artifacts/ as a content-addressed blob and the set as a manifest. */
    async collectArtifacts(input: { session: SessionHandle; stage: string }): Promise<StageArtifacts> {
      const context = Context.current();
      const agent = agentFor(input.session);
      let listed;
      try {
        listed = await agent.hashedFiles({ dir: SESSION_DIRS.artifacts }, (filesDone, bytesDone) => context.heartbeat({ step: 'collectArtifacts', filesDone, bytesDone }));
      } catch (err) {
        throw agentFailure(err);
      }
      const stored = await blobs.findStoredBlobs(listed.files.map((f) => f.sha256));
      await withScratch(async (scratch) => {
        let index = 0;
        for (const file of listed.files) {
          if (stored.has(file.sha256)) continue;
          await storeFromSession(scratch, `artifact-${index++}`, (into) => agent.downloadFile(`${SESSION_DIRS.artifacts}/${file.path}`, into), file.sha256).catch((err) => {
            throw err instanceof AgentRequestError ? agentFailure(err) : err;
          });
          stored.add(file.sha256);
          context.heartbeat({ step: 'collectArtifacts', filesStored: index });
        }
      });
      const entries: ManifestEntry[] = listed.files.map((f) => ({ path: f.path, size: f.size, mode: f.mode, sha256: f.sha256 }));
      const ref = await blobs.putManifest(createManifest(entries));
      const files: ArtifactFile[] = entries.slice(0, ARTIFACTS_LISTED).map((f) => ({ path: f.path, size: f.size, sha256: f.sha256, key: blobs.blobKey(f.sha256) }));
      context.log.info('artifacts collected', { sessionId: input.session.sessionId, stage: input.stage, files: ref.filesTotal, manifestDigest: ref.manifestDigest });
      return { stage: input.stage, manifestDigest: ref.manifestDigest, manifestKey: ref.manifestKey, filesTotal: ref.filesTotal, bytesTotal: ref.bytesTotal, files };
    },

    /** Stops the session's agent and frees its compute; a session already gone is fine. */
    async releaseSession(input: { session: SessionHandle }): Promise<{ released: boolean; detail: string }> {
      const result = await driverFor(input.session.target).release(input.session);
      Context.current().log.info('session released', { sessionId: input.session.sessionId, ...result });
      return result;
    },
  };
}
