/**
 * Workflow code for the replay test's negative case: ferry's workflows, but
 * syncWorkflow first runs a step its recorded histories never scheduled,
 * without patched(). Deploying this would break every sync in flight; the
 * replayer must refuse it (DeterminismViolationError).
 */
import { proxyActivities } from '@temporalio/workflow';
import type { SyncInput } from '../../core/sync';
import { syncWorkflow as recordedSyncWorkflow } from '../../workflows/sync';

export * from '../../workflows';

const { addedStep } = proxyActivities<{ addedStep(): Promise<void> }>({ startToCloseTimeout: '1 minute' });

export async function syncWorkflow(input: SyncInput): ReturnType<typeof recordedSyncWorkflow> {
  await addedStep();
  return recordedSyncWorkflow(input);
}
