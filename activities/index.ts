/**
 * All of ferry's activities, built from configured clients. The worker passes
 * real clients and the target kinds its settings configure; tests pass real
 * local servers.
 */
import { createBlobActivities, type UploadTuning } from './blobs';
import { createInputActivities } from './inputs';
import { LocalSource, createLocalSourceActivities } from './localSource';
import type { S3BlobStore } from './s3BlobStore';
import { createSessionActivities } from './session';
import { createSyncPlanActivities } from './syncPlan';
import type { TargetBackend } from './targets/driver';

export interface ActivityDeps {
  blobs: S3BlobStore;
  /** Each target kind on this worker: its backend, or why it cannot run here (activities/targets configureTargets). */
  targets: Map<string, TargetBackend | string>;
  uploadTuning?: Partial<UploadTuning>;
}

export function createActivities(deps: ActivityDeps) {
  // One per worker: its hash caches make a re-snapshot (a dry run, then the sync) cost a stat per file.
  const source = new LocalSource();
  return {
    ...createLocalSourceActivities({ blobs: deps.blobs, source }),
    ...createSyncPlanActivities({ blobs: deps.blobs, source, targets: deps.targets }),
    ...createBlobActivities({ blobs: deps.blobs, tuning: deps.uploadTuning }),
    ...createInputActivities({ blobs: deps.blobs }),
    ...createSessionActivities({ blobs: deps.blobs, targets: deps.targets }),
  };
}

/** The activity interface workflows proxy (`proxyActivities<FerryActivities>`). */
export type FerryActivities = ReturnType<typeof createActivities>;
