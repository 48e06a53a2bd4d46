/**
 * Targets: the machines files land on. Every target runs a runtime agent, so
 * landing and verifying speak the same protocol; a target kind only decides
 * how the agent is found. Landing and verifying are separate activities on
 * purpose: the agent saying "landed" is never taken as proof.
 */
import { Context } from '@temporalio/activity';
import type { LandFile } from '../core/agentProtocol';
import { FailureType, knownFailureType, type FailureTypeName } from '../core/errors';
import { fileDirectoryConflicts, type ManifestEntry } from '../core/manifest';
import { joinRelative } from '../core/paths';
import type { SessionHandle, SessionTargetRef } from '../core/session';
import { sessionRoot, startProgress, type TargetRef } from '../core/sync';
import { compareLanding, describeLandingProblems, entriesNotHeld, landingIsComplete, type TargetFile } from '../core/verify';
import { AgentClient, AgentRequestError, type AgentEndpoint } from './agentClient';
import { blobStoreFailure } from './blobs';
import { nonRetryable, retryable } from './failures';
import { throttledHeartbeat } from './heartbeat';
import { sessionToken } from './sessionDriver';
import type { S3BlobStore } from './s3BlobStore';

export interface LandingInput {
  sessionId: string;
  target: TargetRef | SessionTargetRef;
  /** Folder inside the session. */
  dest: string;
  manifestDigest: string;
  /** A provisioned session (pipeline): land into its own agent's root instead of the shared local agent. */
  session?: SessionHandle;
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

/** Blob URLs per land request (a chunked file counts each chunk): bounds request size and presigning work per round trip. */
const LAND_BATCH_BLOBS = 1000;
/** Paths named in a failure's details (the message names fewer). */
const DETAIL_PATHS = 50;

const NON_RETRYABLE_AGENT_ERRORS = new Set<FailureTypeName>([
  FailureType.UnsafePath,
  FailureType.InvalidInput,
  FailureType.UrlNotAllowed,
  FailureType.TargetUnauthorized,
  // Retrying the same landing does not free space; minutes of retries would only hide the cause.
  FailureType.TargetDiskFull,
]);

/** Agent errors become failures of the same type; bad input, auth and a full disk are not retried. */
export function agentFailure(err: unknown): unknown {
  if (!(err instanceof AgentRequestError)) return err;
  const details = { path: err.path, status: err.status };
  const type = knownFailureType(err.type) ?? FailureType.TargetUnavailable;
  return NON_RETRYABLE_AGENT_ERRORS.has(type) ? nonRetryable(type, err.message, details) : retryable(type, err.message, details);
}

/**
 * The batch's entries as land requests: a presigned URL for each entry's
 * blob, or for each of its chunks. Blobs named twice share one URL: a
 * signature costs about a millisecond, and trees of many identical files
 * (empty ones above all) are common. URLs are signed per batch, while the
 * batch before it lands, so none is older than that batch's landing.
 */
export async function landFilesWithUrls(batch: ManifestEntry[], presign: (sha256: string) => Promise<string>): Promise<LandFile[]> {
  const urls = new Map<string, Promise<string>>();
  const urlOf = (sha256: string) => {
    let url = urls.get(sha256);
    if (!url) urls.set(sha256, (url = presign(sha256)));
    return url;
  };
  return Promise.all(
    batch.map(async ({ path, size, mode, sha256, chunks }): Promise<LandFile> => {
      if (!chunks) return { path, size, mode, sha256, url: await urlOf(sha256) };
      return { path, size, mode, sha256, chunks: await Promise.all(chunks.map(async (chunk) => ({ ...chunk, url: await urlOf(chunk.sha256) }))) };
    }),
  );
}

/** Entries split into land requests of at most LAND_BATCH_BLOBS URLs; a file with more chunks than that goes alone. */
export function landBatches(entries: ManifestEntry[]): ManifestEntry[][] {
  const batches: ManifestEntry[][] = [];
  let current: ManifestEntry[] = [];
  let blobs = 0;
  for (const entry of entries) {
    const count = entry.chunks?.length ?? 1;
    if (current.length && blobs + count > LAND_BATCH_BLOBS) {
      batches.push(current);
      current = [];
      blobs = 0;
    }
    current.push(entry);
    blobs += count;
  }
  if (current.length) batches.push(current);
  return batches;
}

export interface TargetDeps {
  blobs: S3BlobStore;
  /** The runtime agent of the `local` target; unset when this worker has none. */
  localAgent?: AgentEndpoint;
  /** FERRY_SESSION_SECRET, for landing into provisioned sessions. */
  sessionSecret?: string;
}

export function createTargetActivities(deps: TargetDeps) {
  /** The agent to land on and the folder under its root. */
  const destinationOf = (input: LandingInput): { agent: AgentClient; dir: string } => {
    if (input.session) {
      if (!deps.sessionSecret) {
        throw nonRetryable(FailureType.SessionsNotConfigured, 'this worker cannot reach sessions: set FERRY_SESSION_SECRET (the same on every worker)', { sessionId: input.sessionId });
      }
      return { agent: new AgentClient({ url: input.session.agentUrl, token: sessionToken(deps.sessionSecret, input.session.sessionId) }), dir: input.dest };
    }
    if (input.target.kind === 'local' && deps.localAgent) return { agent: new AgentClient(deps.localAgent), dir: joinRelative(sessionRoot(input.sessionId), input.dest) };
    throw nonRetryable(FailureType.UnknownTarget, `this worker has no ${JSON.stringify(input.target.kind)} target configured (set FERRY_LOCAL_AGENT_URL)`, {
      target: input.target,
    });
  };

  /** The manifest's entries; unsafe paths are refused on reading, before any target sees them. */
  const loadEntries = async (manifestDigest: string): Promise<ManifestEntry[]> => {
    const manifest = await deps.blobs.getManifest(manifestDigest).catch((err) => {
      throw blobStoreFailure(err);
    });
    const conflicts = fileDirectoryConflicts(manifest.files);
    if (conflicts.length) {
      throw nonRetryable(FailureType.InvalidInput, `manifest ${manifestDigest} has paths that are both file and folder: ${conflicts.slice(0, 5).join(', ')}`, {
        conflicts,
      });
    }
    return manifest.files;
  };

  /** What the target holds of `files`, hashed on the target now, with its boot id; progress goes to `onProgress`. */
  const hashOnTarget = async (
    agent: AgentClient,
    dir: string,
    files: ManifestEntry[],
    onProgress: (filesDone: number, bytesDone: number) => void,
  ): Promise<{ bootId: string; held: TargetFile[] }> => {
    const { bootId, files: held } = await agent.hashedFiles({ dir, paths: files.map((f) => f.path) }, onProgress);
    return { bootId, held };
  };

  return {
    /**
     * The target pulls the blobs it lacks into the session by presigned URL.
     * It is asked first what it holds (hashed there), so intact files cost a
     * hash, not a URL and a request.
     */
    async landManifest(input: LandingInput): Promise<LandManifestResult> {
      const context = Context.current();
      const files = await loadEntries(input.manifestDigest);
      const { agent, dir } = destinationOf(input);
      try {
        const { bootId } = await agent.health();
        const progress = startProgress('landManifest', files);
        context.heartbeat(progress);
        const heartbeat = throttledHeartbeat(context);
        const { held } = await hashOnTarget(agent, dir, files, () => heartbeat(progress));
        const needed = entriesNotHeld(files, held);
        const neededBytes = needed.reduce((sum, f) => sum + f.size, 0);
        const totals = {
          filesLanded: 0,
          bytesLanded: 0,
          filesAlreadyPresent: files.length - needed.length,
          bytesAlreadyPresent: progress.bytesTotal - neededBytes,
          bytesDownloaded: 0,
          bytesReused: 0,
        };
        progress.filesDone = totals.filesAlreadyPresent;
        progress.bytesDone = totals.bytesAlreadyPresent;
        context.heartbeat(progress);
        const batches = landBatches(needed);
        const signBatch = (batch: ManifestEntry[]) => landFilesWithUrls(batch, (sha256) => deps.blobs.presignBlobGet(sha256));
        // The next batch is signed while the target lands this one: signing stays off the critical path.
        let signed = batches.length ? signBatch(batches[0]) : undefined;
        for (const [index, batch] of batches.entries()) {
          const landFiles = await (signed as Promise<LandFile[]>);
          signed = index + 1 < batches.length ? signBatch(batches[index + 1]) : undefined;
          signed?.catch(() => undefined);
          const base = { filesDone: progress.filesDone, bytesDone: progress.bytesDone };
          const result = await agent.land({ dir, files: landFiles }, (event) => {
            if (event.type !== 'progress') return;
            progress.filesDone = base.filesDone + event.filesDone;
            progress.bytesDone = base.bytesDone + event.bytesDone;
            context.heartbeat(progress);
          });
          if (result.bootId !== bootId) {
            throw retryable(FailureType.TargetRestarted, `target restarted while landing (boot ${bootId} → ${result.bootId})`, { bootId, newBootId: result.bootId });
          }
          totals.filesLanded += result.filesLanded;
          totals.bytesLanded += result.bytesLanded;
          totals.filesAlreadyPresent += result.filesAlreadyPresent;
          totals.bytesAlreadyPresent += result.bytesAlreadyPresent;
          // Agents from before chunking download every byte they land.
          totals.bytesDownloaded += result.bytesDownloaded ?? result.bytesLanded;
          totals.bytesReused += result.bytesReused ?? 0;
          progress.filesDone = base.filesDone + batch.length;
          progress.bytesDone = base.bytesDone + batch.reduce((sum, f) => sum + f.size, 0);
          context.heartbeat(progress);
        }
        context.log.info('manifest landed', { sessionId: input.sessionId, manifestDigest: input.manifestDigest, bootId, ...totals });
        return { bootId, ...totals };
      } catch (err) {
        throw agentFailure(err);
      }
    },

    /** The target re-hashes every file of the manifest; anything missing, short or different fails with its paths. */
    async verifyLanding(input: VerifyLandingInput): Promise<VerifyLandingResult> {
      const context = Context.current();
      const files = await loadEntries(input.manifestDigest);
      const { agent, dir } = destinationOf(input);
      const progress = startProgress('verifyLanding', files);
      const heartbeat = throttledHeartbeat(context);
      heartbeat(progress);
      let bootId: string;
      let listed: TargetFile[];
      try {
        ({ bootId, held: listed } = await hashOnTarget(agent, dir, files, (filesDone, bytesDone) => {
          progress.filesDone = filesDone;
          progress.bytesDone = bytesDone;
          heartbeat(progress);
        }));
      } catch (err) {
        throw agentFailure(err);
      }
      if (bootId !== input.expectedBootId) {
        // Not retryable here: only landing again can fix it, and that is the workflow's call.
        throw nonRetryable(FailureType.TargetRestarted, `target restarted after landing (boot ${input.expectedBootId} → ${bootId}): files must be landed again`, {
          expectedBootId: input.expectedBootId,
          bootId,
        });
      }
      const comparison = compareLanding(files, listed);
      if (!landingIsComplete(comparison)) {
        throw retryable(FailureType.VerificationFailed, `target ${dir} does not hold the manifest: ${describeLandingProblems(comparison)}`, {
          sessionId: input.sessionId,
          dir,
          bootId,
          missing: comparison.missing.slice(0, DETAIL_PATHS),
          short: comparison.short.slice(0, DETAIL_PATHS),
          mismatched: comparison.mismatched.slice(0, DETAIL_PATHS),
          verified: comparison.verified,
        });
      }
      context.log.info('landing verified', { sessionId: input.sessionId, manifestDigest: input.manifestDigest, bootId, files: comparison.verified });
      return { bootId, filesVerified: comparison.verified, bytesVerified: comparison.bytesVerified };
    },
  };
}
