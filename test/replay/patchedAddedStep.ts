/**
 * The replay test's control for its negative case: the same added step as
 * addedStep.ts, behind patched() as README "What ferry guarantees" asks, so
 * histories recorded without it replay.
 */
import { patched, proxyActivities } from '@temporalio/workflow';
import type { SyncInput } from '../../core/sync';
import { syncWorkflow as recordedSyncWorkflow } from '../../workflows/sync';

export * from '../../workflows';

const { addedStep } = proxyActivities<{ addedStep(): Promise<void> }>({ startToCloseTimeout: '1 minute' });

export async function syncWorkflow(input: SyncInput): ReturnType<typeof recordedSyncWorkflow> {
  if (patched('replay-test-added-step')) await addedStep();
  return recordedSyncWorkflow(input);
}
