/**
 * The sync every workflow shares: snapshot a source and upload what the
 * store lacks, then land the manifest in a session and verify it there on
 * the same boot. syncWorkflow is exactly this; a pipeline's inputs and a
 * training run's project go through the same calls, so a capability added
 * here (speed, a check) reaches all three and every target kind.
 *
 * The same activities rather than a child workflow: one history per session
 * keeps the session's whole story — and its timeline — in one place, and
 * costs no extra workflow tasks per landing.
 */
import { ApplicationFailure, log, proxyActivities } from '@temporalio/workflow';
import type { FerryActivities } from '../activities';
import type { LandManifestResult, VerifyLandingResult } from '../activities/session';
import { FailureType } from '../core/errors';
import type { SessionHandle, TargetRef } from '../core/target';
import { snapshotStep, transferStep, verifyStep } from './steps';

const { snapshotSource } = proxyActivities<FerryActivities>(snapshotStep);
const { uploadBlobs, landManifest } = proxyActivities<FerryActivities>(transferStep);
const { verifyLanding } = proxyActivities<FerryActivities>(verifyStep);

/** A restarted target means landing again; more restarts than this in one landing is a failure. */
export const MAX_LANDING_ROUNDS = 3;

/** Runs one activity as a named step of the calling workflow (its timeline, durations, failure naming). */
export type StepRunner = <T>(name: string, run: () => Promise<T>, detail?: (result: T) => string) => Promise<T>;

type SnapshotInput = Parameters<FerryActivities['snapshotSource']>[0];

/** Where a manifest's blobs were uploaded from: uploadBlobs can put a damaged one back from there. */
export interface UploadSource {
  manifestDigest: string;
  sourcePath: string;
}

export const uploadSourceOf = (snapshot: UploadSource): UploadSource => ({ manifestDigest: snapshot.manifestDigest, sourcePath: snapshot.sourcePath });

/** Snapshots a folder into a manifest and stores the blobs the store lacks. */
export async function snapshotAndUpload(source: SnapshotInput, step: StepRunner) {
  const snapshot = await step('snapshotSource', () => snapshotSource(source), (r) => `${r.filesTotal} files`);
  const upload = await step('uploadBlobs', () => uploadBlobs({ manifestDigest: snapshot.manifestDigest, sourcePath: snapshot.sourcePath }), (r) => `${r.blobsUploaded} blobs uploaded`);
  return { snapshot, upload };
}

export interface LandingRequest {
  /** Absent only in syncs recorded before sessions were provisioned (the activities provision then). */
  session?: SessionHandle;
  sessionId: string;
  target: TargetRef;
  dest: string;
  manifestDigest: string;
  /** Leave exactly the manifest in `dest` (a training project); otherwise other files there stay. */
  exact?: boolean;
  /** The uploads that stored the manifest's blobs (one per local source folder), to put back a blob the store holds damaged. */
  sources?: UploadSource[];
}

export interface LandingOutcome {
  landed: LandManifestResult;
  verified: VerifyLandingResult;
  /** Land-then-verify rounds; more than one means the target restarted in between. */
  rounds: number;
}

/** Blobs found damaged in the store are put back and landed again this often in one landing; damaged again after that, it fails. */
export const MAX_BLOB_REPAIRS = 3;

/**
 * Lands and verifies on the same boot. A target that restarted between the
 * two (new boot id) is landed again, visibly, up to MAX_LANDING_ROUNDS.
 * A blob the store holds damaged (BlobCorrupted) is uploaded again from the
 * request's sources and the landing repeated, visibly, up to
 * MAX_BLOB_REPAIRS times. `onLanded` sees each landing's boot id (a
 * pipeline counts restarts by it).
 */
export async function landAndVerify(request: LandingRequest, step: StepRunner, onLanded: (landed: LandManifestResult) => void = () => undefined): Promise<LandingOutcome> {
  const { sources = [], ...landing } = request;
  let repairs = 0;
  const land = async (): Promise<LandManifestResult> => {
    for (;;) {
      try {
        return await step('landManifest', () => landManifest(landing), (r) => `${r.filesLanded} landed, ${r.filesAlreadyPresent} present`);
      } catch (err) {
        if (!(err instanceof ApplicationFailure && err.type === FailureType.BlobCorrupted) || repairs >= MAX_BLOB_REPAIRS) throw err;
        repairs++;
        await putBackDamagedBlobs(err, sources, step);
        log.warn('damaged blobs uploaded again from their source; landing again', { sessionId: request.sessionId, repair: repairs });
      }
    }
  };
  for (let rounds = 1; ; rounds++) {
    const landed = await land();
    onLanded(landed);
    try {
      const verified = await step('verifyLanding', () => verifyLanding({ ...landing, expectedBootId: landed.bootId }), (r) => `${r.filesVerified} files verified`);
      return { landed, verified, rounds };
    } catch (err) {
      const restarted = err instanceof ApplicationFailure && err.type === FailureType.TargetRestarted;
      if (!restarted || rounds >= MAX_LANDING_ROUNDS) throw err;
      log.warn('target restarted after landing; landing again', { sessionId: request.sessionId, round: rounds });
    }
  }
}

/** Uploads the damaged blobs again from every source that holds them; fails naming those no source holds. */
async function putBackDamagedBlobs(failure: ApplicationFailure, sources: UploadSource[], step: StepRunner): Promise<void> {
  const { sha256s = [], path } = (failure.details?.[0] ?? {}) as { sha256s?: string[]; path?: string };
  const replaced = new Set<string>();
  for (const source of sources) {
    const upload = await step('uploadBlobs', () => uploadBlobs({ ...source, replace: sha256s }), (r) => `${r.replaced?.length ?? 0} damaged blobs uploaded again`);
    for (const sha256 of upload.replaced ?? []) replaced.add(sha256);
  }
  const left = sha256s.filter((sha256) => !replaced.has(sha256));
  if (left.length === 0) return;
  throw ApplicationFailure.create({
    type: FailureType.BlobCorrupted,
    message: `the store holds damaged bytes for blob ${left.join(', ')} of ${JSON.stringify(path)}, and no local source of this landing holds it (${sources.length ? 'it came from elsewhere: an S3 input, collected files' : 'this landing names no source folder'}): store it again from where it came from, then retry`,
    details: [{ path, sha256s: left }],
    nonRetryable: true,
  });
}
