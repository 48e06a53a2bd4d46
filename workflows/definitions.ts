/**
 * Names shared by workflows, client and tests: search attributes, queries,
 * task queue. Side-effect free, so every side can import it.
 */
import { defineQuery } from '@temporalio/workflow';
import { defineSearchAttributeKey } from '@temporalio/common';

export const FerrySessionId = defineSearchAttributeKey('FerrySessionId', 'KEYWORD');
export const FerryStage = defineSearchAttributeKey('FerryStage', 'KEYWORD');
export const FerryTarget = defineSearchAttributeKey('FerryTarget', 'KEYWORD');

/** Registered on the dev server by `ferry up` and the test harness. */
export const SEARCH_ATTRIBUTES = { FerrySessionId: 'Keyword', FerryStage: 'Keyword', FerryTarget: 'Keyword' } as const;

export type SyncStep = 'validating' | 'snapshotSource' | 'uploadBlobs' | 'landManifest' | 'verifyLanding' | 'done';

export interface SyncState {
  step: SyncStep;
  manifestDigest?: string;
  filesTotal?: number;
  bytesTotal?: number;
  /** Land-then-verify rounds so far; more than one means the target restarted in between. */
  landingRounds: number;
  bootId?: string;
}

export const syncStateQuery = defineQuery<SyncState>('state');
