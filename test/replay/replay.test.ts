/**
 * Replays recorded histories against the current workflow code, so a
 * non-deterministic change fails the build instead of failing running
 * workflows after a deploy:
 * - the committed set (test/fixtures/histories), recorded by earlier code;
 * - every history this test run's stacks recorded (FERRY_RECORD_HISTORIES,
 *   set by `npm test`, which runs this file last).
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import { committedHistoriesDir, readRecordedHistories } from '../support/histories';
import { workflowBundle } from '../support/testStack';

Runtime.install({ logger: new DefaultLogger('WARN') });

/** Replays every history under `dir`; returns how many replayed and the failures by file. */
async function replayAll(dir: string): Promise<{ replayed: number; types: Set<string>; failures: string[] }> {
  const recorded = await readRecordedHistories(dir);
  const fileOfRun = new Map(recorded.map(({ file, record }) => [record.runId, file]));
  const types = new Set(recorded.map(({ record }) => record.workflowType));
  const failures: string[] = [];
  let replayed = 0;
  const results = Worker.runReplayHistories(
    { workflowBundle: await workflowBundle(), replayName: 'ferry-replay' },
    recorded.map(({ record, history }) => ({ workflowId: record.workflowId, history })),
  );
  for await (const result of results) {
    replayed++;
    if (result.error) failures.push(`${fileOfRun.get(result.runId) ?? result.workflowId}: ${result.error.name}: ${result.error.message}`);
  }
  return { replayed, types, failures };
}

describe('replay of recorded histories', () => {
  it('the committed histories of every workflow type replay against the current workflow code', async (t: TestContext) => {
    const { replayed, types, failures } = await replayAll(committedHistoriesDir());
    assert.deepEqual([...types].sort(), ['pipelineWorkflow', 'syncWorkflow', 'trainingWorkflow'], 'the committed set covers every workflow type');
    assert.deepEqual(failures, []);
    t.diagnostic(`${replayed} committed histories replayed`);
  });

  it("this run's recorded histories replay against the code that recorded them", { skip: process.env.FERRY_RECORD_HISTORIES ? false : 'no FERRY_RECORD_HISTORIES: run through npm test' }, async (t: TestContext) => {
    const { replayed, types, failures } = await replayAll(process.env.FERRY_RECORD_HISTORIES!);
    assert.ok(replayed > 0, 'the integration tests recorded histories');
    assert.deepEqual(failures, []);
    t.diagnostic(`${replayed} histories of ${[...types].sort().join(', ')} replayed`);
  });
});
