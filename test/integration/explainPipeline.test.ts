/**
 * The seed incident replayed on the real pipelineWorkflow (real Temporal dev
 * server, SeaweedFS, session agents), each run explained by the CLI
 * (`ferry explain --json`), which must name the cause:
 *   hypothesis 1  inputs never verified → nothing executes; the missing input is named
 *   hypothesis 2  a reused session whose data vanished → re-landed before execution
 *   the gap       an agent slow to send its first execution → "waiting for the agent";
 *                 no worker on the queue instead → "no worker polling queue …"
 * (Hypotheses 3 and 4 — a target answering errors, a target answering success
 * after a failed download — are in explain.test.ts.)
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { DEMO_CSV } from '../../client/demoAgent';
import { ExecuteRefusedError, PipelineClient } from '../../client/pipelineClient';
import { writeDemoInput } from '../../client/sampleData';
import { repoRoot } from '../../client/tools';
import type { HistoryAnalysis } from '../../core/history/analysis';
import { sessionRoot } from '../../core/sync';
import { startTestStack, type TestStack } from '../support/testStack';

const run = promisify(execFile);
const ferryBin = path.join(repoRoot(), 'bin', 'ferry.js');
const outputDir = path.join(repoRoot(), 'test-output');

let stack: TestStack;
let work: string;
let pipelines: PipelineClient;
let input: string;

before(async () => {
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-explain-pipeline-'));
  await mkdir(outputDir, { recursive: true });
  pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
  input = writeDemoInput(path.join(work, 'input'));
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function ferry(args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [ferryBin, ...args], {
    cwd: work,
    env: { ...process.env, ...stack.settings, FERRY_HOME: path.join(work, 'no-stack') },
    timeout: 60_000,
    maxBuffer: 16 << 20,
  });
  return stdout;
}

async function explain(workflowId: string, gapThreshold: string, saveAs: string): Promise<HistoryAnalysis> {
  const text = await ferry(['explain', workflowId, '--gap-threshold', gapThreshold]);
  await writeFile(path.join(outputDir, saveAs), text);
  return JSON.parse(await ferry(['explain', workflowId, '--json', '--gap-threshold', gapThreshold])) as HistoryAnalysis;
}

async function waitForStatus(workflowId: string, status: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const state = await pipelines.state(workflowId).catch(() => undefined);
    if (state?.status === status) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${workflowId} never reached ${status}`);
}

describe('ferry explain on the real pipeline', () => {
  it('hypothesis 1: inputs that were never verified stop the pipeline before any code runs, and explain names the missing input', async () => {
    const missing = path.join(work, 'not-there');
    const { workflowId } = await pipelines.start({ sessionId: 'h1', inputs: [{ path: missing }], stages: ['coder'] });
    const refused = pipelines.execute(workflowId, { language: 'bash', code: 'ls data/' });
    await assert.rejects(refused, (err: unknown) => {
      assert.ok(err instanceof ExecuteRefusedError, String(err));
      assert.equal(err.type, 'PipelineAborted', err.message);
      assert.match(err.message, /^nothing runs: snapshotSource failed: source folder .*not-there does not exist/);
      return true;
    });
    await assert.rejects(pipelines.result(workflowId), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure, String(err));
      assert.equal(err.cause.type, 'SourceNotFound', err.cause.message);
      return true;
    });
    const diagnosis = await explain(workflowId, '30s', 'explain-pipeline-h1.txt');
    assert.equal(diagnosis.status, 'failed');
    assert.match(diagnosis.verdict, /snapshotSource/);
    assert.ok(diagnosis.verdict.includes(missing), `the verdict names the missing input: ${diagnosis.verdict}`);
    assert.ok(!diagnosis.steps.some((s) => s.name === 'executeCode'), 'no code ran');
    assert.equal(diagnosis.steps.at(-1)?.name, 'releaseSession');
  });

  it('hypothesis 2: a reused session whose data vanished is re-landed and verified before the next execution, shown as such', async () => {
    const { workflowId } = await pipelines.start({ sessionId: 'h2', inputs: [{ path: input }], stages: ['coder'] });
    await pipelines.execute(workflowId, { language: 'bash', code: 'true' });
    await unlink(path.join(stack.agentRoot, sessionRoot('h2'), 'data', DEMO_CSV));
    await pipelines.execute(workflowId, { language: 'bash', code: `wc -l data/${DEMO_CSV}` });
    await pipelines.finishStage(workflowId);
    await pipelines.result(workflowId);
    const diagnosis = await explain(workflowId, '30s', 'explain-pipeline-h2.txt');
    const kinds = diagnosis.session.map((e) => e.kind);
    const reLanded = kinds.lastIndexOf('re-landed');
    assert.ok(reLanded > 0, `re-landed in the session story: ${kinds.join(', ')}`);
    assert.ok(kinds.indexOf('verified', reLanded) > reLanded, 'verified after the re-land');
    assert.ok(kinds.lastIndexOf('executed') > kinds.indexOf('verified', reLanded), 'the second execution came after the re-verification');
    assert.match(diagnosis.verdict, /inputs that vanished from the session were re-landed 1× and verified before the next execution/);
    assert.match(JSON.stringify(diagnosis.session.filter((e) => e.kind === 'checked')), new RegExp(DEMO_CSV.replace(/\./g, '\\.')), 'the check named the vanished file');
  });

  it('an agent slow to send its first execution: the gap is "waiting for the agent"', async () => {
    const { workflowId } = await pipelines.start({ sessionId: 'slow-agent', inputs: [{ path: input }], stages: ['coder'] });
    await waitForStatus(workflowId, 'running');
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    await pipelines.execute(workflowId, { language: 'bash', code: 'true' });
    await pipelines.finishStage(workflowId);
    await pipelines.result(workflowId);
    const diagnosis = await explain(workflowId, '2s', 'explain-pipeline-slow-agent.txt');
    const gap = diagnosis.gaps.find((g) => g.durationMs >= 3_500);
    assert.ok(gap, `a gap of about 4 s: ${JSON.stringify(diagnosis.gaps)}`);
    assert.equal(gap.cause, 'waiting-for-agent');
    assert.match(gap.endedBy ?? '', /execute/);
  });

  it('the same wait with no worker on the queue: "no worker polling queue <name>"', async () => {
    const taskQueue = `ferry-late-${Date.now()}`;
    const late = new PipelineClient(stack.client, taskQueue);
    const { workflowId } = await late.start({ sessionId: 'no-worker', inputs: [{ path: input }], stages: ['coder'] });
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    await stack.startWorker({ taskQueue });
    await late.execute(workflowId, { language: 'bash', code: 'true' });
    await late.finishStage(workflowId);
    await late.result(workflowId);
    const diagnosis = await explain(workflowId, '2s', 'explain-pipeline-no-worker.txt');
    const gap = diagnosis.gaps.find((g) => g.cause === 'waiting-for-worker');
    assert.ok(gap, `a waiting-for-worker gap: ${JSON.stringify(diagnosis.gaps)}`);
    assert.equal(gap.taskQueue, taskQueue);
    assert.match(gap.detail, new RegExp(`no worker polling queue ${taskQueue}`));
  });
});
