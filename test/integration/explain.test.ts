/**
 * `ferry explain` on the real stack (Temporal dev server, SeaweedFS, runtime
 * agent), replaying the seed's hypotheses with syncWorkflow: the target's
 * land answering errors, a target answering success after writing nothing,
 * and a sync waiting on a task queue no worker polls. Each run is explained
 * by the CLI (`explain --json`), which must name the cause.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { HistoryAnalysis } from '../../core/history/analysis';
import type { SyncInput, SyncResult } from '../../core/sync';
import { WorkflowFailedError, WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import { summarizeHistory } from '../../client/history';
import { repoRoot } from '../../client/tools';
import { startFlakyAgent, startLyingAgent } from '../support/agentDoubles';
import { writeTree } from '../support/fixtures';
import { executeUpdate, finishStageSignal, stageStandInWorkflow } from '../support/stageStandIn';
import { startTestStack, type TestStack } from '../support/testStack';

const run = promisify(execFile);
const ferryBin = path.join(repoRoot(), 'bin', 'ferry.js');
/** Text outputs land here for people to read (git-ignored). */
const outputDir = path.join(repoRoot(), 'test-output');

let stack: TestStack;
let work: string;

before(async () => {
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-explain-test-'));
  await mkdir(outputDir, { recursive: true });
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Runs the CLI against the test stack; returns stdout (fails the test on a non-zero exit). */
async function ferry(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [ferryBin, ...args], {
    cwd: work,
    env: { ...process.env, ...stack.settings, FERRY_HOME: path.join(work, 'no-stack') },
    timeout: 60_000,
    maxBuffer: 16 << 20,
  });
  return stdout;
}

async function explain(workflowId: string, gapThreshold: string, saveAs?: string): Promise<HistoryAnalysis> {
  const diagnosis = JSON.parse(await ferry(['explain', workflowId, '--json', '--gap-threshold', gapThreshold])) as HistoryAnalysis;
  if (saveAs) await writeFile(path.join(outputDir, saveAs), await ferry(['explain', workflowId, '--gap-threshold', gapThreshold]));
  return diagnosis;
}

/** The result of a child workflow the parent starts shortly (not found until then). */
async function childResult(workflowId: string): Promise<unknown> {
  for (let tries = 0; ; tries++) {
    try {
      return await stack.client.workflow.getHandle(workflowId).result();
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError) || tries > 100) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

function startSync(sessionId: string, source: string, taskQueue: string) {
  const input: SyncInput = { sessionId, source: { path: source } };
  const workflowId = `explain-${sessionId}-${randomUUID().slice(0, 8)}`;
  return stack.client.workflow.start('syncWorkflow', { taskQueue, workflowId, args: [input] });
}

describe('ferry explain on the real stack', () => {
  it("hypothesis 3: the target's land answering errors shows as the typed failure and its retries, not swallowed", async () => {
    const source = path.join(work, 'flaky');
    await writeTree(source, { 'input.csv': '날짜,카테고리\n2025-03-01,fresh\n' });
    const flaky = await startFlakyAgent(stack.agent.url, 2, 'input.csv');
    try {
      const taskQueue = 'ferry-test-flaky';
      await stack.startWorker({ taskQueue, localAgent: { url: flaky.url, token: stack.agentToken } });
      const handle = await startSync('flaky', source, taskQueue);
      const result = (await handle.result()) as SyncResult;
      assert.equal(result.verified, true);
      assert.equal(flaky.landRequests, 3);

      const diagnosis = await explain(handle.workflowId, '1s', 'explain-flaky-land.txt');
      assert.equal(diagnosis.status, 'completed');
      const land = diagnosis.problems.find((s) => s.name === 'landManifest');
      assert.ok(land, 'landManifest is listed as retried');
      assert.equal(land.outcome, 'retried');
      assert.equal(land.attempts, 3);
      assert.equal(land.lastRetryFailure?.type, 'BlobDownloadFailed');
      assert.match(land.lastRetryFailure?.message ?? '', /download of input\.csv failed: S3 answered 503 SlowDown/);
      assert.deepEqual(land.lastRetryFailure?.details, { path: 'input.csv', status: 502 });
      assert.equal(land.session?.sessionId, 'flaky');
      assert.equal(land.session?.bootId, stack.agent.bootId);
      // Backoff between attempts is 1 s then 2 s: history places the last attempt's start after it.
      const backoff = diagnosis.gaps.find((g) => g.cause === 'retry-backoff');
      assert.equal(backoff?.activityType, 'landManifest');
      assert.ok(backoff && backoff.durationMs >= 2_500, `retry stretch ${backoff?.durationMs} ms`);
      assert.match(diagnosis.verdict, /^syncWorkflow completed in .*landManifest needed 3 attempts \(BlobDownloadFailed before\)/);
      assert.deepEqual(diagnosis.session.map((e) => e.kind), ['provisioned', 'landed', 'verified']);
      assert.match(diagnosis.webUiUrl ?? '', new RegExp(`/workflows/${handle.workflowId}/`));

      // The summaries decode real payloads: search attributes, activity inputs and results.
      const events = summarizeHistory((await handle.fetchHistory()).events ?? []);
      const upsert = events.find((e) => e.kind === 'searchAttributesUpserted');
      assert.deepEqual(upsert?.kind === 'searchAttributesUpserted' && upsert.attributes, { FerrySessionId: 'flaky', FerryTarget: 'local' });
      const verified = events.find((e) => e.kind === 'activityClosed' && e.status === 'completed' && (e.result as { filesVerified?: number })?.filesVerified === 1);
      assert.ok(verified, 'verifyLanding result decoded');
      assert.deepEqual(
        events.filter((e) => e.kind === 'workflowTaskScheduled').map((e) => e.kind === 'workflowTaskScheduled' && e.taskQueue),
        events.filter((e) => e.kind === 'workflowTaskScheduled').map(() => taskQueue),
        'sticky queues are reported by their normal name',
      );
    } finally {
      await flaky.close();
    }
  });

  it('hypothesis 4: a target answering success after writing nothing → verifyLanding names the missing file', async () => {
    const source = path.join(work, 'liar');
    await writeTree(source, { 'Dat-fresh-food-claude.csv': '날짜,카테고리,제품명\n' });
    const bootId = randomUUID();
    const liar = await startLyingAgent(bootId);
    try {
      const taskQueue = 'ferry-test-liar';
      await stack.startWorker({ taskQueue, localAgent: { url: liar.url, token: 'liar-token-000000' } });
      const handle = await startSync('liar', source, taskQueue);
      await assert.rejects(handle.result(), (err: unknown) => err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure && err.cause.type === 'VerificationFailed');

      const diagnosis = await explain(handle.workflowId, '30s', 'explain-lying-agent.txt');
      assert.equal(diagnosis.status, 'failed');
      const verify = diagnosis.problems.find((s) => s.name === 'verifyLanding');
      assert.ok(verify, 'verifyLanding is listed as failed');
      assert.equal(verify.outcome, 'failed');
      assert.equal(verify.attempts, 3);
      assert.equal(verify.failure?.type, 'VerificationFailed');
      assert.deepEqual((verify.failure?.details as { missing: string[] }).missing, ['Dat-fresh-food-claude.csv']);
      assert.equal(verify.session?.bootId, bootId);
      assert.match(diagnosis.verdict, /^syncWorkflow failed: verifyLanding failed after 3 attempts, retries exhausted on local session liar .*1 missing \("Dat-fresh-food-claude\.csv"\) — although landManifest had answered success/);
      const story = diagnosis.session.map((e) => [e.kind, e.detail]);
      assert.deepEqual(story.map(([kind]) => kind).slice(0, 2), ['provisioned', 'landed']);
      assert.deepEqual(story[2], ['verification-failed', `verification of manifest ${verify.session?.manifestDigest?.slice(0, 12)} failed after 3 attempt(s) — missing: Dat-fresh-food-claude.csv`]);
    } finally {
      await liar.close();
    }
  });

  it('a sync on a task queue no worker polls → the wait is attributed to "no worker polling queue <name>", while and after', async () => {
    const source = path.join(work, 'late');
    await writeTree(source, { 'a.txt': 'a' });
    const taskQueue = `ferry-test-late-${randomUUID().slice(0, 6)}`;
    const handle = await startSync('late', source, taskQueue);
    await new Promise((resolve) => setTimeout(resolve, 4_000));

    const waiting = await explain(handle.workflowId, '2s');
    assert.equal(waiting.status, 'running');
    assert.deepEqual(
      waiting.gaps.map((g) => [g.cause, g.taskQueue, g.ongoing]),
      [['waiting-for-worker', taskQueue, true]],
    );
    assert.match(waiting.verdict, new RegExp(`running for .*; now no worker polling queue ${taskQueue} for`));

    await stack.startWorker({ taskQueue });
    await handle.result();
    const diagnosis = await explain(handle.workflowId, '2s', 'explain-no-worker.txt');
    assert.equal(diagnosis.status, 'completed');
    const gap = diagnosis.gaps[0];
    assert.equal(diagnosis.gaps.length, 1);
    assert.equal(gap.cause, 'waiting-for-worker');
    assert.equal(gap.taskQueue, taskQueue);
    assert.ok(gap.durationMs >= 3_500, `waited ${gap.durationMs} ms`);
    assert.match(gap.detail, new RegExp(`^no worker polling queue ${taskQueue}: a workflow task waited`));
    assert.match(diagnosis.verdict, new RegExp(`longest gap .* no worker polling queue ${taskQueue}`));
  });

  it('a pipeline-shaped parent: the agent\'s pause before its first execute is "waiting for the agent"; the child sync, stage, updates and a refusal are read from history', async () => {
    const source = path.join(work, 'stage');
    await writeTree(source, { 'Dat-fresh-food-claude.csv': '날짜,카테고리,제품명,수량,단가,금액\n' });
    const taskQueue = 'ferry-test-stage';
    const connection = await NativeConnection.connect({ address: stack.config.temporal.address });
    const worker = await Worker.create({ connection, namespace: stack.config.temporal.namespace, taskQueue, workflowsPath: require.resolve('../support/stageStandIn') });
    const running = worker.run();
    try {
      const workflowId = `explain-stage-${randomUUID().slice(0, 8)}`;
      const handle = await stack.client.workflow.start(stageStandInWorkflow, {
        taskQueue,
        workflowId,
        args: [{ sync: { sessionId: 'stage', source: { path: source } }, syncTaskQueue: stack.config.temporal.taskQueue }],
      });
      await childResult(`${workflowId}-inputs`);
      // The agent thinks for 3 s before its first execution (the seed's five minutes, shortened).
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      assert.deepEqual(await handle.executeUpdate(executeUpdate, { args: [{ command: 'ls -la ./data/' }] }), { executed: 1 });
      await assert.rejects(
        handle.executeUpdate(executeUpdate, { args: [{ command: 'python analyse.py', needs: 'data/extra.csv' }] }),
        (err: unknown) => err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure && err.cause.type === 'InputsNotVerified',
      );
      await handle.signal(finishStageSignal);
      assert.equal(await handle.result(), 1);

      const diagnosis = await explain(workflowId, '2s', 'explain-waiting-for-agent.txt');
      const waits = diagnosis.gaps.filter((g) => g.cause === 'waiting-for-agent');
      assert.equal(waits.length, 1, JSON.stringify(diagnosis.gaps));
      assert.ok(waits[0].durationMs >= 2_500, `waited ${waits[0].durationMs} ms`);
      assert.equal(waits[0].endedBy, 'update execute');
      assert.match(waits[0].detail, /^waiting for the agent: no activity, timer or child pending for .*; the workflow awaited an update or signal until update execute arrived at/);
      assert.match(diagnosis.verdict, /; execute refused 1× \(InputsNotVerified: missing data\/extra\.csv\); longest gap .* waiting for the agent \(until update execute\)/);

      assert.deepEqual(diagnosis.children.map((c) => [c.workflowId, c.workflowType, c.status]), [[`${workflowId}-inputs`, 'syncWorkflow', 'completed']]);
      assert.match(diagnosis.children[0].webUiUrl ?? '', new RegExp(`/workflows/${workflowId}-inputs/`));
      assert.deepEqual(
        diagnosis.session.map((e) => [e.kind, e.workflowId]),
        [
          ['stage', workflowId],
          ['provisioned', `${workflowId}-inputs`],
          ['landed', `${workflowId}-inputs`],
          ['verified', `${workflowId}-inputs`],
          ['execution-refused', workflowId],
        ],
      );
      assert.match(diagnosis.session[4].detail, /execution refused in stage coder: InputsNotVerified: input data\/extra\.csv was never verified in this session \(missing: data\/extra\.csv\)/);
      assert.deepEqual(diagnosis.problems.map((s) => [s.kind, s.name, s.outcome, s.failure?.type]), [['update', 'execute', 'refused', 'InputsNotVerified']]);
      assert.deepEqual(diagnosis.messages.map((m) => [m.kind, m.name, m.failed ?? false]), [
        ['update', 'execute', false],
        ['update', 'execute', true],
        ['signal', 'finishStage', false],
      ]);
    } finally {
      worker.shutdown();
      await running;
      await connection.close();
    }
  });

  it('an unknown workflow id is a one-line error, exit code 1', async () => {
    await assert.rejects(ferry(['explain', 'no-such-workflow']), (err: { code?: number; stderr?: string }) => {
      assert.equal(err.code, 1);
      assert.match(err.stderr ?? '', /^ferry: no workflow no-such-workflow in namespace default\n$/);
      return true;
    });
  });
});
