/**
 * A test-only stand-in with the pipeline's shape (not ferry's pipeline):
 * sets FerryStage, syncs inputs in a child syncWorkflow, then waits for
 * the agent's `execute` updates and a `finishStage` signal. It lets the
 * explain tests read real child, update and signal events from history.
 */
import { ApplicationFailure, condition, defineSignal, defineUpdate, executeChild, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { SyncInput } from '../../core/sync';
import { FerryStage } from '../../workflows/definitions';

export const executeUpdate = defineUpdate<{ executed: number }, [{ command: string; needs?: string }]>('execute');
export const finishStageSignal = defineSignal('finishStage');

export async function stageStandInWorkflow(input: { sync: SyncInput; syncTaskQueue: string }): Promise<number> {
  let executed = 0;
  let finished = false;
  setHandler(executeUpdate, async ({ needs }) => {
    // Refused inside the handler (not by a validator), so the refusal is written to history.
    if (needs) throw ApplicationFailure.create({ type: 'InputsNotVerified', message: `input ${needs} was never verified in this session`, details: [{ missing: [needs] }], nonRetryable: true });
    return { executed: ++executed };
  });
  setHandler(finishStageSignal, () => {
    finished = true;
  });
  upsertSearchAttributes([{ key: FerryStage, value: 'coder' }]);
  await executeChild('syncWorkflow', { args: [input.sync], taskQueue: input.syncTaskQueue, workflowId: `${workflowInfo().workflowId}-inputs` });
  await condition(() => finished);
  return executed;
}
