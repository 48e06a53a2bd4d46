/**
 * The names ferry's activities carry in workflow history. Code that reads
 * history (core/history) refers to them through these constants, so a
 * renamed activity is a compile error there instead of a silently empty
 * session story; test/unit/history.test.ts checks that every activity the
 * worker registers is named here.
 */
export const Activity = {
  snapshotSource: 'snapshotSource',
  uploadBlobs: 'uploadBlobs',
  snapshotS3Input: 'snapshotS3Input',
  composeInputs: 'composeInputs',
  provisionSession: 'provisionSession',
  landManifest: 'landManifest',
  verifyLanding: 'verifyLanding',
  checkSession: 'checkSession',
  executeCode: 'executeCode',
  collectArtifacts: 'collectArtifacts',
  startProcess: 'startProcess',
  confirmProcess: 'confirmProcess',
  probeProcess: 'probeProcess',
  stopProcess: 'stopProcess',
  releaseSession: 'releaseSession',
  listSessionFiles: 'listSessionFiles',
  planSync: 'planSync',
} as const;

export type ActivityName = (typeof Activity)[keyof typeof Activity];

/**
 * Names earlier training runs recorded, before one target model: landing
 * and verifying on an instance (landManifest and verifyLanding now serve
 * every target) and deleting temporary objects (each activity now deletes
 * its own). Histories keep them, so readers treat them as the same roles.
 */
export const RetiredActivity = {
  landArchive: 'landArchive',
  verifyInstanceLanding: 'verifyInstanceLanding',
  cleanupTrainingObjects: 'cleanupTrainingObjects',
} as const;

export type RetiredActivityName = (typeof RetiredActivity)[keyof typeof RetiredActivity];
