/**
 * All of ferry's activities, built from configured clients. The worker passes
 * real clients; tests pass real local servers.
 */
import type { SSMClient } from '@aws-sdk/client-ssm';
import type { AgentEndpoint } from './agentClient';
import { createBlobActivities, type UploadTuning } from './blobs';
import { createInputActivities } from './inputs';
import { createLocalSourceActivities } from './localSource';
import type { S3BlobStore } from './s3BlobStore';
import { createSessionActivities, type SessionDeps } from './session';
import { createTargetActivities } from './target';
import { createTrainingActivities } from './training';

export interface ActivityDeps {
  blobs: S3BlobStore;
  localAgent?: AgentEndpoint;
  uploadTuning?: Partial<UploadTuning>;
  /** Session drivers by target kind, and the secret session tokens derive from. */
  sessions?: Omit<SessionDeps, 'blobs'>;
  /** SSM client for `ssm` training targets; default: built from the AWS SDK's default chain when first needed. */
  ssm?: SSMClient;
}

export function createActivities(deps: ActivityDeps) {
  const sessions = deps.sessions ?? { drivers: {} };
  return {
    ...createLocalSourceActivities({ blobs: deps.blobs }),
    ...createBlobActivities({ blobs: deps.blobs, tuning: deps.uploadTuning }),
    ...createTargetActivities({ blobs: deps.blobs, localAgent: deps.localAgent, sessionSecret: sessions.secret }),
    ...createInputActivities({ blobs: deps.blobs }),
    ...createSessionActivities({ blobs: deps.blobs, ...sessions }),
    ...createTrainingActivities({ blobs: deps.blobs, ssm: deps.ssm }),
  };
}

/** The activity interface workflows proxy (`proxyActivities<FerryActivities>`). */
export type FerryActivities = ReturnType<typeof createActivities>;
