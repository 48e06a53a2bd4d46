/**
 * syncWorkflow: snapshot → upload → land → verify, one activity per step, so
 * every early return, failure, retry and gap is visible in history. The
 * result says `verified: true` only after the target itself re-hashed every
 * file on the same boot it was landed on.
 */
import { ApplicationFailure, log, proxyActivities, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { FerryActivities } from '../activities';
import { FailureType } from '../core/errors';
import { normalizeSyncInput, type StepDurations, type SyncInput, type SyncResult } from '../core/sync';
import { FerrySessionId, FerryTarget, syncStateQuery, type SyncState } from './definitions';
import { snapshotStep, stepFailure, transferStep, verifyStep } from './steps';

const { snapshotSource } = proxyActivities<FerryActivities>(snapshotStep);
const { uploadBlobs, landManifest } = proxyActivities<FerryActivities>(transferStep);
const { verifyLanding } = proxyActivities<FerryActivities>(verifyStep);

/** A restarted target means landing again; more restarts than this in one sync is a failure. */
const MAX_LANDING_ROUNDS = 3;

async function timed<T>(durations: Partial<StepDurations>, step: keyof StepDurations, run: () => Promise<T>): Promise<T> {
  const started = Date.now();
  try {
    return await run();
  } catch (err) {
    throw stepFailure(step, err);
  } finally {
    durations[step] = (durations[step] ?? 0) + (Date.now() - started);
  }
}

export async function syncWorkflow(rawInput: SyncInput): Promise<SyncResult> {
  const state: SyncState = { step: 'validating', landingRounds: 0 };
  setHandler(syncStateQuery, () => state);

  const normalized = normalizeSyncInput(rawInput);
  if (!normalized.ok) {
    throw ApplicationFailure.create({
      type: FailureType.InvalidInput,
      message: `invalid sync input: ${normalized.problems.join('; ')}`,
      details: [{ problems: normalized.problems }],
      nonRetryable: true,
    });
  }
  const input = normalized.input;
  const { workflowId } = workflowInfo();
  upsertSearchAttributes([
    { key: FerrySessionId, value: input.sessionId },
    { key: FerryTarget, value: input.target.kind },
  ]);
  const durations: Partial<StepDurations> = {};

  state.step = 'snapshotSource';
  const snapshot = await timed(durations, 'snapshotSource', () => snapshotSource({ path: input.source.path }));
  Object.assign(state, { manifestDigest: snapshot.manifestDigest, filesTotal: snapshot.filesTotal, bytesTotal: snapshot.bytesTotal });
  if (snapshot.skippedTotal > 0) log.warn('source entries skipped', { sessionId: input.sessionId, skipped: snapshot.skippedTotal });

  state.step = 'uploadBlobs';
  const upload = await timed(durations, 'uploadBlobs', () => uploadBlobs({ manifestDigest: snapshot.manifestDigest, sourcePath: snapshot.sourcePath }));

  const landing = { sessionId: input.sessionId, target: input.target, dest: input.dest, manifestDigest: snapshot.manifestDigest };
  for (;;) {
    state.landingRounds++;
    state.step = 'landManifest';
    const landed = await timed(durations, 'landManifest', () => landManifest(landing));
    state.bootId = landed.bootId;
    state.step = 'verifyLanding';
    try {
      const verified = await timed(durations, 'verifyLanding', () => verifyLanding({ ...landing, expectedBootId: landed.bootId }));
      state.step = 'done';
      const result: SyncResult = {
        workflowId,
        sessionId: input.sessionId,
        target: input.target,
        dest: input.dest,
        manifestDigest: snapshot.manifestDigest,
        manifestKey: snapshot.manifestKey,
        filesTotal: snapshot.filesTotal,
        bytesTotal: snapshot.bytesTotal,
        blobsUploaded: upload.blobsUploaded,
        bytesUploaded: upload.bytesUploaded,
        bytesSkipped: upload.bytesSkipped,
        filesLanded: landed.filesLanded,
        bytesLanded: landed.bytesLanded,
        // Absent from landManifest results recorded before chunking.
        bytesDownloaded: landed.bytesDownloaded ?? landed.bytesLanded,
        bytesReused: landed.bytesReused ?? 0,
        filesVerified: verified.filesVerified,
        verified: true,
        bootId: verified.bootId,
        skipped: snapshot.skipped,
        durationsMs: { snapshotSource: 0, uploadBlobs: 0, landManifest: 0, verifyLanding: 0, ...durations },
      };
      log.info('sync verified', { sessionId: input.sessionId, manifestDigest: snapshot.manifestDigest, bootId: verified.bootId });
      return result;
    } catch (err) {
      const restarted = err instanceof ApplicationFailure && err.type === FailureType.TargetRestarted;
      if (!restarted || state.landingRounds >= MAX_LANDING_ROUNDS) throw err;
      log.warn('target restarted after landing; landing again', { sessionId: input.sessionId, round: state.landingRounds });
    }
  }
}
