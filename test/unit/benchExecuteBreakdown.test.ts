/**
 * The benchmark's execute breakdown (bench/executeBreakdown.ts) on
 * hand-built histories: two updates, each a workflow task that accepts it,
 * checkSession, executeCode and the workflow task that completes it, in one
 * run or in two (a pipeline continues as new).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { temporal } from '@temporalio/proto';
import { summarizeSegments, updateSegments, type ExecuteSample } from '../../bench/executeBreakdown';

const EventType = temporal.api.enums.v1.EventType;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** Builds one run's history of `updates` executes; `at` (ms since 0) says when each point happened. */
function history(updates: { id: string; at: number[] }[], [checkName, execName] = ['checkSession', 'executeCode']): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  const add = (eventType: number, atMs: number, attributes: Record<string, unknown> = {}) => {
    const eventId = events.length + 1;
    events.push(temporal.api.history.v1.HistoryEvent.fromObject({ eventId, eventType, eventTime: { seconds: Math.floor(atMs / 1000), nanos: (atMs % 1000) * 1e6 }, ...attributes }));
    return eventId;
  };
  for (const { id, at } of updates) {
    const [wft1Scheduled, wft1Started, wft1Completed, checkStarted, checkCompleted, wft2Started, wft2Completed, execStarted, execCompleted, wft3Started, wft3Completed] = at;
    add(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, wft1Scheduled);
    add(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, wft1Started);
    add(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, wft1Completed);
    add(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, wft1Completed, { workflowExecutionUpdateAcceptedEventAttributes: { acceptedRequest: { meta: { updateId: id } } } });
    const check = add(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, wft1Completed, { activityTaskScheduledEventAttributes: { activityType: { name: checkName } } });
    add(EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED, checkStarted, { activityTaskStartedEventAttributes: { scheduledEventId: check } });
    add(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, checkCompleted, { activityTaskCompletedEventAttributes: { scheduledEventId: check } });
    add(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, checkCompleted);
    add(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, wft2Started);
    add(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, wft2Completed);
    const exec = add(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, wft2Completed, { activityTaskScheduledEventAttributes: { activityType: { name: execName } } });
    add(EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED, execStarted, { activityTaskStartedEventAttributes: { scheduledEventId: exec } });
    add(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED, execCompleted, { activityTaskCompletedEventAttributes: { scheduledEventId: exec } });
    add(EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED, execCompleted);
    add(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED, wft3Started);
    add(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED, wft3Completed);
    add(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED, wft3Completed, { workflowExecutionUpdateCompletedEventAttributes: { meta: { updateId: id } } });
  }
  return events;
}

const first = { id: 'u1', at: [1_000, 1_002, 1_010, 1_011, 1_020, 1_021, 1_025, 1_026, 1_050, 1_051, 1_055] };
const second = { id: 'u2', at: [2_000, 2_004, 2_012, 2_013, 2_030, 2_031, 2_035, 2_036, 2_070, 2_071, 2_075] };
const samples: ExecuteSample[] = [
  { updateId: 'u1', sentAtMs: 998, resultAtMs: 1_060, agentCommandMs: 5 },
  { updateId: 'u2', sentAtMs: 1_997, resultAtMs: 2_080, agentCommandMs: 6 },
];

describe('bench/executeBreakdown', () => {
  it('splits an update into consecutive segments from send to result', () => {
    const [segments] = updateSegments([history([first, second])], samples);
    assert.deepEqual(segments, [
      ['update sent → workflow task scheduled', 2],
      ['workflow task scheduled → workflow task started', 2],
      ['workflow task started → workflow task completed', 8],
      ['workflow task completed → checkSession started', 1],
      ['checkSession started → checkSession completed', 9],
      ['checkSession completed → workflow task scheduled', 0],
      ['workflow task scheduled → workflow task started', 1],
      ['workflow task started → workflow task completed', 4],
      ['workflow task completed → executeCode started', 1],
      ['executeCode started → executeCode completed', 24],
      ['executeCode completed → workflow task scheduled', 0],
      ['workflow task scheduled → workflow task started', 1],
      ['workflow task started → workflow task completed', 4],
      ['workflow task completed → update completed', 0],
      ['update completed → result at client', 5],
    ]);
    assert.equal(
      segments.reduce((sum, [, ms]) => sum + ms, 0),
      samples[0].resultAtMs - samples[0].sentAtMs,
      'the segments add up to the round trip',
    );
  });

  it('sums a segment that recurs within an update and averages over updates', () => {
    const summary = summarizeSegments(updateSegments([history([first, second])], samples));
    const wftRun = summary.find((s) => s.name === 'workflow task started → workflow task completed');
    assert.deepEqual(wftRun, { name: 'workflow task started → workflow task completed', perUpdate: 3, meanMs: 16, medianMs: 16 });
    const exec = summary.find((s) => s.name === 'executeCode started → executeCode completed');
    assert.deepEqual(exec, { name: 'executeCode started → executeCode completed', perUpdate: 1, meanMs: 29, medianMs: 24 });
    const meanRoundTrip = samples.reduce((sum, s) => sum + s.resultAtMs - s.sentAtMs, 0) / samples.length;
    assert.equal(
      summary.reduce((sum, s) => sum + s.meanMs, 0),
      meanRoundTrip,
      'the segment means add up to the mean round trip',
    );
  });

  it('finds updates in every run of a continue-as-new chain, activity names looked up within each run', () => {
    // Event ids restart in the second run, where the first activity has another name.
    const [inFirstRun, inSecondRun] = updateSegments([history([first]), history([second], ['verifyLanding', 'executeCode'])], samples);
    assert.deepEqual(inFirstRun[4], ['checkSession started → checkSession completed', 9]);
    assert.deepEqual(inSecondRun[4], ['verifyLanding started → verifyLanding completed', 17]);
    assert.equal(
      inSecondRun.reduce((sum, [, ms]) => sum + ms, 0),
      samples[1].resultAtMs - samples[1].sentAtMs,
    );
  });

  it('refuses a sample whose update is not in the history', () => {
    assert.throws(() => updateSegments([history([first])], samples), /update u2 is not accepted and completed/);
  });
});
