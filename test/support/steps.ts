/** The steps of a recorded workflow run as `ferry timeline` lists them, for tests that check which activities ran. */
import assert from 'node:assert/strict';
import type { temporal } from '@temporalio/proto';
import { summarizeHistory } from '../../client/history';
import { analyseHistory } from '../../core/history/analysis';
import type { Step } from '../../core/history/steps';

export function stepsFromHistory(workflowId: string, events: temporal.api.history.v1.IHistoryEvent[]): Step[] {
  return analyseHistory({ workflowId, events: summarizeHistory(events), nowMs: Date.now() }, { gapThresholdMs: Number.POSITIVE_INFINITY }).steps;
}

/**
 * Verify before execute, stage by stage: in each of `stages`, the session
 * check (checkSession) and a full re-hash on the target (verifyLanding)
 * completed before the stage's first executeCode was scheduled.
 */
export function assertVerifiedBeforeFirstExecution(steps: Step[], stages: string[]): void {
  for (const stage of stages) {
    const inStage = steps.filter((s) => s.stage === stage);
    const listing = inStage.map((s) => `${s.name} ${s.status} ${s.scheduledAt}→${s.closedAt ?? '…'}`).join('; ');
    const firstExecution = inStage.find((s) => s.name === 'executeCode');
    assert.ok(firstExecution, `stage ${stage} executed code (its steps: ${listing})`);
    const executionScheduledMs = Date.parse(firstExecution.scheduledAt);
    for (const check of ['checkSession', 'verifyLanding']) {
      const completedBefore = inStage.some((s) => s.name === check && s.status === 'completed' && s.closedAt !== undefined && Date.parse(s.closedAt) <= executionScheduledMs);
      assert.ok(completedBefore, `stage ${stage}: ${check} completed before its first executeCode, scheduled at ${firstExecution.scheduledAt} (its steps: ${listing})`);
    }
  }
}
