/**
 * pipelineWorkflow end to end against a real Temporal dev server, a real S3
 * server and real session agents (one runtime-agent process per session).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { DEMO_CSV, runDemoAgent } from '../../client/demoAgent';
import { summarizeHistory } from '../../client/history';
import { ExecuteRefusedError, PipelineClient } from '../../client/pipelineClient';
import { salesCsv, writeDemoInput } from '../../client/sampleData';
import { repoRoot, resolveTool } from '../../client/services';
import type { ExecuteResult, PipelineInput, PipelineResult } from '../../core/pipeline';
import { buildTimeline } from '../../core/timeline';
import { sha256 } from '../support/fixtures';
import { startTestStack, type TestStack } from '../support/testStack';

const run = promisify(execFile);
let stack: TestStack;
let work: string;
let pipelines: PipelineClient;
let input: string;

before(async () => {
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-pipeline-test-'));
  pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
  input = writeDemoInput(path.join(work, 'input'));
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Activity names in history order (each once per completed or failed run). */
async function activitySteps(workflowId: string): Promise<string[]> {
  const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
  return buildTimeline(summarizeHistory(history.events ?? []), 1e9).steps.map((s) => s.name);
}

const sessionRootOf = (sessionId: string) => path.join(stack.config.sessions.localDir, sessionId, 'root');

function start(sessionId: string, extra: Partial<PipelineInput> = {}) {
  return pipelines.start({ sessionId, inputs: [{ path: input }], stageIdleTimeout: '2m', ...extra });
}

describe('pipelineWorkflow', () => {
  it('runs coder → validator → reporter through the typed client, each stage verifying before it executes', async () => {
    const { workflowId } = await start('full');
    assert.equal(workflowId, 'pipeline-full');
    const results: ExecuteResult[] = [];
    const result: PipelineResult = await runDemoAgent(pipelines, workflowId, (_step, r) => results.push(r));

    const ls = results[0];
    assert.equal(ls.exitCode, 0);
    assert.match(ls.stdoutTail, new RegExp(DEMO_CSV.replace(/\./g, '\\.')), 'ls -la ./data/ shows the input');
    assert.equal(result.stages.map((s) => s.status).join(','), 'finished,finished,finished');
    const report = result.stages[2].artifacts!.files.find((f) => f.path === 'report.md');
    assert.ok(report, 'report.md collected');
    const reportText = (await stack.blobs.getBlob(report.sha256)).toString('utf8');
    assert.match(reportText, /totals verified against the data/);
    assert.match(reportText, new RegExp(sha256(salesCsv()).slice(0, 16)), 'the report names the verified input by hash');
    // Full logs are blobs; the tail in history is the end of the same bytes.
    const fullLog = (await stack.blobs.getBlob(ls.logKey.split('/').pop()!)).toString('utf8');
    assert.ok(fullLog.endsWith(ls.stdoutTail));

    const steps = await activitySteps(workflowId);
    // Every stage's first execution is preceded by a full verification on the target.
    for (const stage of ['coder', 'validator', 'reporter']) assert.ok(steps.includes('executeCode'), stage);
    const verifyBeforeEach = steps.reduce<string[]>((acc, s) => (s === 'verifyLanding' || s === 'executeCode' ? [...acc, s] : acc), []);
    assert.deepEqual(verifyBeforeEach.slice(0, 3), ['verifyLanding', 'verifyLanding', 'executeCode'], 'landing verified, then the coder stage verifies again before it runs');
    assert.equal(steps[0], 'provisionSession');
    assert.equal(steps.at(-1), 'releaseSession');
    assert.equal(steps.filter((s) => s === 'collectArtifacts').length, 3);
    const state = await pipelines.state(workflowId);
    assert.equal(state.status, 'completed');
    assert.equal(state.executionsTotal, 4);
    assert.equal(state.inputs.length, 1);
    assert.match(state.inputs[0].manifestDigest, /^[0-9a-f]{64}$/);
  });
});
