/**
 * syncWorkflow: provision the session on its target → snapshot → upload →
 * land → verify, one activity per step, so every early return, failure,
 * retry and gap is visible in history. The result says `verified: true`
 * only after the target itself re-hashed every file on the same boot it was
 * landed on. Any target kind whose sessions outlive the workflow will do;
 * one whose sessions end with it (ecs) is refused before anything starts.
 */
import { ApplicationFailure, log, patched, proxyActivities, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { FerryActivities } from '../activities';
import { FailureType } from '../core/errors';
import { normalizeSyncInput, type StepDurations, type SyncDryRun, type SyncInput, type SyncResult } from '../core/sync';
import type { SessionHandle } from '../core/target';
import { FerrySessionId, FerryTarget, syncStateQuery, type SyncState } from './definitions';
import { landAndVerify, snapshotAndUpload, uploadSourceOf, type StepRunner } from './landing';
import { sessionStep, snapshotStep, stepFailure } from './steps';

const { provisionSession } = proxyActivities<FerryActivities>(sessionStep);
// Snapshots and lists the target: as long as a snapshot, and it heartbeats.
const { planSync } = proxyActivities<FerryActivities>(snapshotStep);

/** Patch id: syncs provision their session first (any target kind); histories from before it land on the local agent directly. */
const PROVISION_SESSIONS = 'sync-provisions-its-session';

export async function syncWorkflow(rawInput: SyncInput): Promise<SyncResult | SyncDryRun> {
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
  const step: StepRunner = async (name, run) => {
    state.step = name as SyncState['step'];
    const started = Date.now();
    try {
      return await run();
    } catch (err) {
      throw stepFailure(name, err);
    } finally {
      const key = name as keyof StepDurations;
      durations[key] = (durations[key] ?? 0) + (Date.now() - started);
    }
  };

  const source = { path: input.source.path, links: input.links, sizeWarningBytes: input.sizeWarningBytes };
  if (input.dryRun) {
    const plan = await step('planSync', () => planSync({ source, sessionId: input.sessionId, target: input.target, dest: input.dest }));
    state.step = 'done';
    return { dryRun: true, workflowId, sessionId: input.sessionId, target: input.target, dest: input.dest, ...plan };
  }

  let session: SessionHandle | undefined;
  if (patched(PROVISION_SESSIONS)) {
    session = await step('provisionSession', () => provisionSession({ sessionId: input.sessionId, target: input.target, purpose: 'sync' }));
  }

  const { snapshot, upload } = await snapshotAndUpload(source, step);
  Object.assign(state, { manifestDigest: snapshot.manifestDigest, filesTotal: snapshot.filesTotal, bytesTotal: snapshot.bytesTotal });
  if (snapshot.skippedTotal > 0) log.warn('source entries skipped', { sessionId: input.sessionId, skipped: snapshot.skippedTotal });

  const { landed, verified } = await landAndVerify(
    { session, sessionId: input.sessionId, target: input.target, dest: input.dest, manifestDigest: snapshot.manifestDigest, sources: [uploadSourceOf(snapshot)] },
    step,
    (result) => {
      state.landingRounds++;
      state.bootId = result.bootId;
    },
  );
  state.step = 'done';
  const result: SyncResult = {
    workflowId,
    sessionId: input.sessionId,
    target: session?.target ?? input.target,
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
    linksSkipped: snapshot.linksSkipped,
    ...(snapshot.sizeReport ? { sizeReport: snapshot.sizeReport } : {}),
    durationsMs: { snapshotSource: 0, uploadBlobs: 0, landManifest: 0, verifyLanding: 0, ...durations },
  };
  log.info('sync verified', { sessionId: input.sessionId, target: session?.description ?? input.target.kind, manifestDigest: snapshot.manifestDigest, bootId: verified.bootId });
  return result;
}
