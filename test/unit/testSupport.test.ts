/**
 * Test helpers that carry a guarantee's assertion, shown to fail for the
 * right reason on steps that break it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Step } from '../../core/history/steps';
import { assertVerifiedBeforeFirstExecution } from '../support/steps';

/** A completed step of `stage` scheduled at second `from` and closed at second `to`. */
function step(name: string, stage: string, from: number, to: number): Step {
  const at = (second: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, second)).toISOString();
  return { workflowId: 'pipeline-s', activityId: `${name}-${from}`, name, stage, status: 'completed', attempts: 1, scheduledAt: at(from), closedAt: at(to) };
}

describe('assertVerifiedBeforeFirstExecution', () => {
  const verifiedStage = (stage: string, start: number) => [step('checkSession', stage, start, start + 1), step('verifyLanding', stage, start + 1, start + 2), step('executeCode', stage, start + 2, start + 3)];

  it('passes when every stage checked its session and re-hashed its inputs before its first execution', () => {
    assertVerifiedBeforeFirstExecution([...verifiedStage('coder', 0), ...verifiedStage('validator', 10)], ['coder', 'validator']);
  });

  it('fails naming the stage whose verification was missing, came after its first execution, or failed', () => {
    const unverified = [...verifiedStage('coder', 0), step('checkSession', 'validator', 10, 11), step('executeCode', 'validator', 11, 12)];
    assert.throws(() => assertVerifiedBeforeFirstExecution(unverified, ['coder', 'validator']), /stage validator: verifyLanding completed before its first executeCode/);
    const late = [step('checkSession', 'coder', 0, 1), step('executeCode', 'coder', 1, 2), step('verifyLanding', 'coder', 2, 3)];
    assert.throws(() => assertVerifiedBeforeFirstExecution(late, ['coder']), /stage coder: verifyLanding completed before/);
    const failed = verifiedStage('coder', 0).map((s) => (s.name === 'checkSession' ? { ...s, status: 'failed' as const } : s));
    assert.throws(() => assertVerifiedBeforeFirstExecution(failed, ['coder']), /stage coder: checkSession completed before/);
    assert.throws(() => assertVerifiedBeforeFirstExecution(verifiedStage('coder', 0), ['coder', 'reporter']), /stage reporter executed code/);
  });
});
