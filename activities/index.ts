/**
 * All of ferry's activities, built from configured clients. The worker passes
 * real clients; tests pass real local servers.
 */
import type { AgentEndpoint } from './agentClient';
import { createBlobActivities, type UploadTuning } from './blobs';
import { createLocalSourceActivities } from './localSource';
import type { S3BlobStore } from './s3BlobStore';
import { createTargetActivities } from './target';

export interface ActivityDeps {
  blobs: S3BlobStore;
  localAgent?: AgentEndpoint;
  uploadTuning?: Partial<UploadTuning>;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createLocalSourceActivities({ blobs: deps.blobs }),
    ...createBlobActivities({ blobs: deps.blobs, tuning: deps.uploadTuning }),
    ...createTargetActivities({ blobs: deps.blobs, localAgent: deps.localAgent }),
  };
}

/** The activity interface workflows proxy (`proxyActivities<FerryActivities>`). */
export type FerryActivities = ReturnType<typeof createActivities>;
