/**
 * A sync's dry run: snapshot the source in memory, ask the blob store which
 * blobs it lacks and the target which files it already holds, and change
 * nothing anywhere — no manifest stored, nothing uploaded, no session
 * provisioned. One activity, because the manifest exists only in this
 * worker's memory: handing it to a second step would mean storing it, the
 * very change a dry run promises not to make.
 */
import { Context } from '@temporalio/activity';
import { blobsOfEntry, type Manifest } from '../core/manifest';
import { startProgress, type LandingPlan, type SkippedLinks, type SizeReport, type SkippedSource, type StorePlan } from '../core/sync';
import type { TargetRef } from '../core/target';
import { entriesNotHeld } from '../core/verify';
import { nonRetryable } from './failures';
import { FailureType } from '../core/errors';
import { throttledHeartbeat } from './heartbeat';
import { SKIPPED_LISTED, type LocalSource, type SnapshotSourceInput } from './localSource';
import type { ContentStore } from './blobStore';
import { backendOf, normalizeTarget } from './targets';
import type { TargetBackend } from './targets/driver';

export interface PlanSyncInput {
  source: Omit<SnapshotSourceInput, 'requireFiles'>;
  sessionId: string;
  target: TargetRef;
  /** Folder inside the session. */
  dest: string;
}

export interface PlanSyncResult {
  /** The digest the manifest would be stored under; it is not in the store. */
  manifestDigest: string;
  filesTotal: number;
  bytesTotal: number;
  skipped: SkippedSource[];
  skippedTotal: number;
  linksSkipped: SkippedLinks;
  sizeReport?: SizeReport;
  store: StorePlan;
  landing: LandingPlan;
}

/** The blobs of a manifest against what the store holds: what an upload would send. Reads the store, writes nothing. */
async function storePlan(blobs: ContentStore, manifest: Manifest): Promise<StorePlan> {
  const sizes = new Map<string, number>();
  for (const entry of manifest.files) for (const blob of blobsOfEntry(entry)) sizes.set(blob.sha256, blob.size);
  const stored = await blobs.findStoredBlobs([...sizes.keys()]);
  let blobsNew = 0;
  let bytesNew = 0;
  for (const [sha256, size] of sizes) {
    if (stored.has(sha256)) continue;
    blobsNew++;
    bytesNew += size;
  }
  return { blobsTotal: sizes.size, blobsNew, bytesNew };
}

export function createSyncPlanActivities(deps: { blobs: ContentStore; source: LocalSource; targets: Map<string, TargetBackend | string> }) {
  return {
    /** What `syncWorkflow` would do: files, bytes, what the store lacks and what the target already holds; changes nothing. */
    async planSync(input: PlanSyncInput): Promise<PlanSyncResult> {
      const context = Context.current();
      const { driver, target } = normalizeTarget(input.target);
      const peek = backendOf(deps.targets, target).peek;
      if (!peek) {
        throw nonRetryable(FailureType.InvalidInput, `a sync cannot target kind ${driver.kind}: its sessions are compute started for one workflow`, { target: input.target });
      }
      const heartbeat = throttledHeartbeat(context);
      const snapshot = await deps.source.snapshot(input.source, heartbeat);
      const { manifest } = snapshot;
      const ref = deps.blobs.manifestRef(manifest);
      const store = await storePlan(deps.blobs, manifest);

      const reach = peek({ sessionId: input.sessionId, target }, { signal: context.cancellationSignal, heartbeat: () => context.heartbeat() });
      const progress = startProgress('planSync', manifest.files);
      const held = await reach.listFiles({ dir: input.dest, hash: true, paths: manifest.files.map((f) => f.path) }, (filesDone, bytesDone) => {
        progress.filesDone = filesDone;
        progress.bytesDone = bytesDone;
        heartbeat(progress);
      });
      const needed = entriesNotHeld(manifest.files, held.files);
      const bytesToLand = needed.reduce((sum, f) => sum + f.size, 0);
      const landing: LandingPlan = {
        description: reach.description,
        filesHeld: manifest.files.length - needed.length,
        bytesHeld: ref.bytesTotal - bytesToLand,
        filesToLand: needed.length,
        bytesToLand,
      };
      context.log.info('sync planned', { sessionId: input.sessionId, target: reach.description, manifestDigest: ref.manifestDigest, ...store, ...landing });
      return {
        manifestDigest: ref.manifestDigest,
        filesTotal: ref.filesTotal,
        bytesTotal: ref.bytesTotal,
        skipped: snapshot.skipped.slice(0, SKIPPED_LISTED),
        skippedTotal: snapshot.skipped.length,
        linksSkipped: snapshot.linksSkipped,
        ...(snapshot.sizeReport ? { sizeReport: snapshot.sizeReport } : {}),
        store,
        landing,
      };
    },
  };
}
