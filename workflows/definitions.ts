/**
 * Names shared by workflows, client and tests: search attributes, queries,
 * task queue. Side-effect free, so every side can import it.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey } from '@temporalio/common';
import type { AbortRequest, AddInputsRequest, ExecuteRequest, ExecuteResult, FinishStageRequest, PipelineState, TimelineStep } from '../core/pipeline';

export const FerrySessionId = defineSearchAttributeKey('FerrySessionId', 'KEYWORD');
export const FerryStage = defineSearchAttributeKey('FerryStage', 'KEYWORD');
export const FerryTarget = defineSearchAttributeKey('FerryTarget', 'KEYWORD');

/** Registered on the dev server by `ferry up` and the test harness. */
export const SEARCH_ATTRIBUTES = { FerrySessionId: 'Keyword', FerryStage: 'Keyword', FerryTarget: 'Keyword' } as const;

export type SyncStep = 'validating' | 'provisionSession' | 'snapshotSource' | 'uploadBlobs' | 'landManifest' | 'verifyLanding' | 'done';

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

/** Runs code in the current stage once the session's inputs are verified; returns its exit code and output tails. */
export const executeUpdate = defineUpdate<ExecuteResult, [ExecuteRequest]>('execute');
/** Ends the current stage: its artifacts are collected, then the next stage begins. One naming a stage that is not current is ignored. */
export const finishStageSignal = defineSignal<[FinishStageRequest?]>('finishStage');
/** More inputs for data/, synced and verified before the next execution. */
export const addInputsSignal = defineSignal<[AddInputsRequest]>('addInputs');
/** Releases the session and fails the pipeline with the reason given. */
export const abortSignal = defineSignal<[AbortRequest]>('abort');
export const pipelineStateQuery = defineQuery<PipelineState>('state');
export const pipelineTimelineQuery = defineQuery<TimelineStep[]>('timeline');
