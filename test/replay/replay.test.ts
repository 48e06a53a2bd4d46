/**
 * Replays recorded histories against the current workflow code, so a
 * non-deterministic change fails the build instead of failing running
 * workflows after a deploy:
 * - the committed set (test/fixtures/histories), recorded by earlier code;
 * - every history this test run's stacks recorded (FERRY_RECORD_HISTORIES,
 *   set by `npm test`, which runs this suite as its last step).
 * And it shows it can fail: workflow code with a step added without
 * patched() is refused on the same histories that replay cleanly when the
 * step is behind patched().
 */
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { Worker, bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { committedHistoriesDir, readRecordedHistories, retiredHistoriesDir } from '../support/histories';
import { requireOrSkipTest } from '../support/requirements';
import { bundlerLogger, installTestRuntime } from '../support/testLogs';
import { workflowBundle } from '../support/testStack';

installTestRuntime();

interface ReplayOutcome {
  replayed: number;
  types: Set<string>;
  /** `file: ErrorName: message` of each history that failed to replay. */
  failures: string[];
}

/** Replays every history under `dir` (of `workflowType` only, if given) against `bundle`. */
async function replayAll(dir: string, bundle: WorkflowBundleWithSourceMap, workflowType?: string): Promise<ReplayOutcome> {
  const recorded = (await readRecordedHistories(dir)).filter(({ record }) => workflowType === undefined || record.workflowType === workflowType);
  const fileOfRun = new Map(recorded.map(({ file, record }) => [record.runId, file]));
  const types = new Set(recorded.map(({ record }) => record.workflowType));
  const failures: string[] = [];
  let replayed = 0;
  const results = Worker.runReplayHistories(
    { workflowBundle: bundle, replayName: 'ferry-replay' },
    recorded.map(({ record, history }) => ({ workflowId: record.workflowId, history })),
  );
  for await (const result of results) {
    replayed++;
    if (result.error) failures.push(`${fileOfRun.get(result.runId) ?? result.workflowId}: ${result.error.name}: ${result.error.message}`);
  }
  return { replayed, types, failures };
}

/** ferry's workflows with syncWorkflow swapped for one of this folder's variants. */
function variantBundle(module: string): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({ workflowsPath: require.resolve(module), logger: bundlerLogger() });
}

describe('replay of recorded histories', () => {
  it('the committed histories of every workflow type replay against the current workflow code', async (t: TestContext) => {
    const { replayed, types, failures } = await replayAll(committedHistoriesDir(), await workflowBundle());
    assert.deepEqual([...types].sort(), ['pipelineWorkflow', 'sessionFilesWorkflow', 'syncWorkflow', 'trainingWorkflow'], 'the committed set covers every workflow type');
    assert.deepEqual(failures, []);
    t.diagnostic(`${replayed} committed histories replayed`);
  });

  it('training histories from before one target model are refused as non-deterministic: that change is deployed by draining them (README "Upgrading")', async (t: TestContext) => {
    const { replayed, types, failures } = await replayAll(retiredHistoriesDir(), await workflowBundle());
    assert.deepEqual([...types], ['trainingWorkflow']);
    assert.equal(failures.length, replayed, 'every retired history fails to replay');
    for (const failure of failures) assert.match(failure, /DeterminismViolationError: .*Activity type of scheduled event 'snapshotSource' does not match activity type of activity command 'provisionSession'/);
    t.diagnostic(`${replayed} retired histories refused by the replayer`);
  });

  it('a syncWorkflow that runs a step its histories never scheduled, without patched(), is refused on every committed sync history', async (t: TestContext) => {
    const { replayed, failures } = await replayAll(committedHistoriesDir(), await variantBundle('./addedStep'), 'syncWorkflow');
    assert.ok(replayed >= 2, `committed sync histories to replay: ${replayed}`);
    assert.equal(failures.length, replayed, `every sync history is refused:\n${failures.join('\n')}`);
    for (const failure of failures) assert.match(failure, /: DeterminismViolationError: /);
    t.diagnostic(`${replayed} sync histories refused, e.g. ${failures[0]?.slice(0, 300)}`);
  });

  it('the same added step behind patched() replays every committed sync history', async (t: TestContext) => {
    const { replayed, failures } = await replayAll(committedHistoriesDir(), await variantBundle('./patchedAddedStep'), 'syncWorkflow');
    assert.ok(replayed >= 2, `committed sync histories to replay: ${replayed}`);
    assert.deepEqual(failures, []);
    t.diagnostic(`${replayed} sync histories replayed with the patched step`);
  });

  it("this run's recorded histories replay against the code that recorded them", async (t: TestContext) => {
    const dir = process.env.FERRY_RECORD_HISTORIES;
    if (!requireOrSkipTest(t, 'recorded histories', dir ? undefined : 'FERRY_RECORD_HISTORIES is not set: run through npm test, which records them in its earlier steps')) return;
    const { replayed, types, failures } = await replayAll(dir!, await workflowBundle());
    assert.ok(replayed > 0, `the earlier steps recorded histories in ${dir}`);
    assert.deepEqual(failures, []);
    t.diagnostic(`${replayed} histories of ${[...types].sort().join(', ')} replayed`);
  });
});
