/**
 * pipelineWorkflow end to end against a real Temporal dev server, a real S3
 * server and the local runtime agent as its own process (so a test can kill
 * and restart it, as a replaced container would be).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { DEMO_CSV, runDemoAgent } from '../../client/demoAgent';
import { ExecuteRefusedError, PipelineClient } from '../../client/pipelineClient';
import { salesCsv, writeDemoInput } from '../../client/sampleData';
import { repoRoot, resolveTool } from '../../client/tools';
import type { ExecuteResult, PipelineInput, PipelineResult } from '../../core/pipeline';
import { sessionRoot } from '../../core/sync';
import { sha256, writeTree } from '../support/fixtures';
import { assertVerifiedBeforeFirstExecution, stepsFromHistory } from '../support/steps';
import { startTestStack, type TestStack } from '../support/testStack';

const run = promisify(execFile);
let stack: TestStack;
let work: string;
let pipelines: PipelineClient;
let input: string;

before(async () => {
  stack = await startTestStack({ agentProcess: true });
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-pipeline-test-'));
  pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
  input = writeDemoInput(path.join(work, 'input'));
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** The run's steps in history order, with their stage, status and times. */
async function recordedSteps(workflowId: string) {
  const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
  return stepsFromHistory(workflowId, history.events ?? []);
}

/** Activity names in history order (each once per completed or failed run). */
async function activitySteps(workflowId: string): Promise<string[]> {
  return (await recordedSteps(workflowId)).map((s) => s.name);
}

const sessionRootOf = (sessionId: string) => path.join(stack.agentRoot, sessionRoot(sessionId));

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

    const recorded = await recordedSteps(workflowId);
    const steps = recorded.map((s) => s.name);
    // Every stage's first execution comes after the stage checked its session and re-hashed its inputs on the target.
    assertVerifiedBeforeFirstExecution(recorded, ['coder', 'validator', 'reporter']);
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

  it('is driven by the temporal CLI alone: start with --input, update execute, signal finishStage', async () => {
    const temporal = resolveTool('temporal', repoRoot());
    const address = ['--address', stack.config.temporal.address];
    const workflowId = 'pipeline-cli';
    const startInput = JSON.stringify({ sessionId: 'cli', inputs: [{ path: input }], stages: ['coder', 'reporter'] });
    await run(temporal, ['workflow', 'start', ...address, '--type', 'pipelineWorkflow', '--task-queue', stack.config.temporal.taskQueue, '--workflow-id', workflowId, '--input', startInput]);
    const update = async (code: string) => {
      const { stdout } = await run(temporal, ['workflow', 'update', 'execute', ...address, '-w', workflowId, '--name', 'execute', '--input', JSON.stringify({ language: 'bash', code }), '-o', 'json']);
      return JSON.parse(stdout) as { result: ExecuteResult };
    };
    const listing = await update('ls -la ./data/');
    assert.equal(listing.result.exitCode, 0);
    assert.match(listing.result.stdoutTail, /Dat-fresh-food-claude\.csv/);
    await run(temporal, ['workflow', 'signal', ...address, '-w', workflowId, '--name', 'finishStage', '--input', '{"summary":"looked"}']);
    const count = await update('wc -l < data/Dat-fresh-food-claude.csv > artifacts/lines.txt && cat artifacts/lines.txt');
    assert.equal(count.result.stdoutTail.trim(), '1001');
    await run(temporal, ['workflow', 'signal', ...address, '-w', workflowId, '--name', 'finishStage']);
    const result = (await stack.client.workflow.getHandle(workflowId).result()) as PipelineResult;
    assert.deepEqual(result.stages.map((s) => [s.name, s.status, s.executions]), [['coder', 'finished', 1], ['reporter', 'finished', 1]]);
    assert.equal(result.stages[0].summary, 'looked');
    assert.deepEqual(result.stages[1].artifacts!.files.map((f) => f.path), ['lines.txt']);
    assertVerifiedBeforeFirstExecution(await recordedSteps(workflowId), ['coder', 'reporter']);
  });

  it('re-lands and re-verifies before the validator runs when the session restarted after the coder', async () => {
    const { workflowId } = await start('restart', { stages: ['coder', 'validator'] });
    assert.equal((await pipelines.execute(workflowId, { language: 'bash', code: 'true' })).exitCode, 0);
    await pipelines.finishStage(workflowId);
    const before = await pipelines.state(workflowId);
    // The target is replaced: its agent dies, nothing of the session's disk survives, and a new agent (new boot id) answers.
    await stack.agentProcess!.kill();
    await rm(path.join(sessionRootOf('restart'), 'data'), { recursive: true, force: true });
    await stack.agentProcess!.restart();
    const validated = await pipelines.execute(workflowId, { language: 'bash', code: 'sha256sum data/Dat-fresh-food-claude.csv' });
    assert.equal(validated.exitCode, 0);
    assert.equal(validated.stdoutTail.split(' ')[0], sha256(salesCsv()), 'the validator read the verified input');
    assert.notEqual(validated.bootId, before.session!.bootId);
    const state = await pipelines.state(workflowId);
    assert.equal(state.restartsDetected, 1);
    await pipelines.finishStage(workflowId);
    await pipelines.result(workflowId);
    const steps = await activitySteps(workflowId);
    const afterCoder = steps.slice(steps.indexOf('collectArtifacts') + 1);
    assert.deepEqual(afterCoder.slice(0, 4), ['checkSession', 'landManifest', 'verifyLanding', 'executeCode']);
  });

  it('re-lands an input deleted on the target mid-stage before the next execution', async () => {
    const { workflowId } = await start('deleted', { stages: ['coder'] });
    await pipelines.execute(workflowId, { language: 'bash', code: 'true' });
    await unlink(path.join(sessionRootOf('deleted'), 'data', DEMO_CSV));
    const second = await pipelines.execute(workflowId, { language: 'bash', code: `test -f data/${DEMO_CSV} && echo present` });
    assert.equal(second.stdoutTail.trim(), 'present');
    await pipelines.finishStage(workflowId);
    await pipelines.result(workflowId);
    const steps = await activitySteps(workflowId);
    const firstExec = steps.indexOf('executeCode');
    assert.deepEqual(steps.slice(firstExec + 1, firstExec + 5), ['checkSession', 'landManifest', 'verifyLanding', 'executeCode']);
  });

  it('finishStage sent while an execution runs lets it end, then finishes the stage', { timeout: 120_000 }, async () => {
    const { workflowId } = await start('finish-mid', { stages: ['coder', 'reporter'] });
    const running = pipelines.execute(workflowId, { language: 'bash', code: 'sleep 2; echo done' });
    for (let polls = 0; !(await pipelines.state(workflowId)).executions?.some((e) => e.status === 'running'); polls++) {
      assert.ok(polls < 300, 'the execution started within 30 s');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await pipelines.finishStage(workflowId, 'finished mid-run');
    const mid = await running;
    assert.equal(mid.stdoutTail.trim(), 'done');
    assert.equal(mid.stage, 'coder');
    assert.equal((await stack.blobs.getBlob(mid.stderrLogKey.split('/').pop()!)).length, 0, 'the empty stderr is stored without being read from the agent');
    const next = await pipelines.execute(workflowId, { language: 'bash', code: 'true' });
    assert.equal(next.stage, 'reporter', 'an execute after the finish runs in the next stage');
    await pipelines.finishStage(workflowId);
    const result = await pipelines.result(workflowId);
    assert.deepEqual(result.stages.map((s) => [s.name, s.status, s.executions, s.summary]), [['coder', 'finished', 1, 'finished mid-run'], ['reporter', 'finished', 1, undefined]]);
  });

  it('fails a stage left idle with StageIdleTimeout naming it, and releases the session', async () => {
    const { workflowId } = await start('idle', { stageIdleTimeout: '3s' });
    await assert.rejects(pipelines.result(workflowId), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      assert.ok(err.cause instanceof ApplicationFailure);
      assert.equal(err.cause.type, 'StageIdleTimeout');
      assert.match(err.cause.message, /stage coder saw no execute/);
      return true;
    });
    assert.equal((await activitySteps(workflowId)).at(-1), 'releaseSession');
    await assert.rejects(readdir(sessionRootOf('idle')), { code: 'ENOENT' }, 'the session folder went with the session');
  });

  it('abort releases the session and fails with the reason', async () => {
    const { workflowId } = await start('abort');
    await pipelines.execute(workflowId, { language: 'bash', code: 'true' });
    await pipelines.abort(workflowId, 'the agent gave up');
    await assert.rejects(pipelines.result(workflowId), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure);
      assert.equal(err.cause.type, 'PipelineAborted');
      assert.match(err.cause.message, /the agent gave up/);
      return true;
    });
    assert.equal((await activitySteps(workflowId)).at(-1), 'releaseSession');
    await assert.rejects(readdir(sessionRootOf('abort')), { code: 'ENOENT' }, 'the session folder went with the session');
    await assert.rejects(pipelines.execute(workflowId, { language: 'bash', code: 'true' }), (err: unknown) => {
      assert.ok(err instanceof WorkflowNotFoundError, String(err));
      assert.match(err.message, /already completed/);
      return true;
    });
  });

  it('a second start for the same session returns the running pipeline; bad execute requests are refused', async () => {
    const first = await start('dupe', { stages: ['coder'] });
    const second = await start('dupe', { stages: ['coder'] });
    assert.equal(second.runId, first.runId);
    await assert.rejects(pipelines.execute(first.workflowId, { language: 'bash', code: '   ' }), (err: unknown) => err instanceof ExecuteRefusedError && err.type === 'InvalidInput' && /code must be a non-empty string/.test(err.message));
    await assert.rejects(pipelines.execute(first.workflowId, { language: 'ruby' as never, code: 'puts 1' }), (err: unknown) => err instanceof ExecuteRefusedError && err.type === 'InvalidInput' && /language "ruby" is not one of bash, python, node/.test(err.message));
    await pipelines.finishStage(first.workflowId);
    const result = await pipelines.result(first.workflowId);
    assert.equal(result.executionsTotal, 0, 'refused requests ran nothing');
  });

  it('addInputs (a folder and an S3 prefix) are synced and verified into data/ before the next execution', async () => {
    const { workflowId } = await start('more', { stages: ['coder'] });
    await pipelines.execute(workflowId, { language: 'bash', code: 'true' });
    const extra = path.join(work, 'extra');
    await writeTree(extra, { 'notes/extra.txt': 'more data\n' });
    const q1 = Buffer.from('a,b\n1,2\n');
    await stack.blobs.putVerified('incoming/2024/q1.csv', q1, sha256(q1));
    await pipelines.addInputs(workflowId, [{ path: extra }, { s3: `s3://${stack.config.s3.bucket}/incoming/` }]);
    const seen = await pipelines.execute(workflowId, { language: 'bash', code: 'cd data && find . -type f | sort' });
    assert.deepEqual(seen.stdoutTail.trim().split('\n'), ['./2024/q1.csv', `./${DEMO_CSV}`, './README.md', './notes/extra.txt']);
    const state = await pipelines.state(workflowId);
    assert.equal(state.inputs.length, 3);
    await pipelines.finishStage(workflowId);
    await pipelines.result(workflowId);
  });

  it('continues as new past a bounded history without losing an update in flight', async () => {
    const { workflowId } = await start('long', { stages: ['coder'], maxHistoryEvents: 200 });
    const results: ExecuteResult[] = [];
    // Four agents at once, so updates are in flight whenever the run hands over.
    for (let round = 0; round < 6; round++) {
      results.push(...(await Promise.all([0, 1, 2, 3].map((i) => pipelines.execute(workflowId, { language: 'bash', code: `echo ${round}-${i}` })))));
    }
    assert.equal(results.length, 24);
    assert.ok(results.every((r) => r.exitCode === 0));
    assert.equal(new Set(results.map((r) => r.executionId)).size, 24, 'every execution ran once, with its own id');
    const state = await pipelines.state(workflowId);
    assert.ok(state.run >= 2, `continued as new (run ${state.run})`);
    assert.equal(state.executionsTotal, 24);
    await pipelines.finishStage(workflowId);
    const result = await pipelines.result(workflowId);
    assert.equal(result.executionsTotal, 24);
  });
});
