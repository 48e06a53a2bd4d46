/**
 * Issue 6's agent fault cases against the real stack (Temporal dev server,
 * SeaweedFS, runtime agents): a lying agent, a full target disk, an agent
 * that accepts connections and hangs, and duplicated updates and signals.
 * The cases are independent (own sessions, task queues and doubles) and run
 * concurrently: two of them mostly wait out retry backoff.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { ExecuteRefusedError, PipelineClient } from '../../client/pipelineClient';
import { repoRoot, resolveTool } from '../../client/tools';
import { parseDurationMs } from '../../core/duration';
import type { ExecuteRequest, ExecuteResult, PipelineResult } from '../../core/pipeline';
import { sessionRoot, type SyncInput, type SyncResult } from '../../core/sync';
import type { Step } from '../../core/history/steps';
import { startAgent } from '../../runtime/agent';
import type { AgentLogger, LogFields } from '../../runtime/log';
import { sessionStep } from '../../workflows/steps';
import { startHangingAgent, startLyingAgent, startTruncatingAgent, type AgentDouble } from '../support/agentDoubles';
import { seededBytes, treeHashes, writeTree } from '../support/fixtures';
import { requireOrSkipTest } from '../support/requirements';
import { stepsFromHistory } from '../support/steps';
import { resultOf, startTestStack, type TestStack } from '../support/testStack';

const run = promisify(execFile);
const temporalBin = resolveTool('temporal', repoRoot());
const ferryBin = path.join(repoRoot(), 'bin', 'ferry.js');

let stack: TestStack;
let work: string;
let pipelines: PipelineClient;
/** Inputs for the pipelines: two small files, one in a subfolder. */
let inputDir: string;
const INPUT_FILES = { 'table.csv': 'region,total\nnorth,120\nsouth,80\n', 'notes/extra.txt': 'notes on the table\n' };
/** Run after the tests, last registered first (before the stack stops). */
const cleanups: (() => Promise<unknown>)[] = [];

before(async () => {
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-agent-faults-'));
  pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
  inputDir = path.join(work, 'input');
  await writeTree(inputDir, INPUT_FILES);
});

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function stepsOf(workflowId: string): Promise<Step[]> {
  return stepsFromHistory(workflowId, await historyEvents(workflowId));
}

async function historyEvents(workflowId: string) {
  return (await stack.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
}

/** Polls `check` (bounded) until it returns true. */
async function waitUntil(what: string, check: () => Promise<boolean>, tries = 200, everyMs = 100): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  assert.fail(`timed out waiting for ${what}`);
}

function startSync(input: SyncInput, taskQueue: string) {
  const workflowId = `sync-fault-${input.sessionId}-${randomUUID()}`;
  return stack.client.workflow.start('syncWorkflow', { taskQueue, workflowId, args: [input] }).then((handle) => ({ workflowId, result: resultOf<SyncResult>(handle) }));
}

/** The pipeline's own failure (WorkflowFailedError → ApplicationFailure), for assertions on type and message. */
async function pipelineFailure(result: Promise<unknown>): Promise<ApplicationFailure> {
  try {
    await result;
  } catch (err) {
    assert.ok(err instanceof WorkflowFailedError, `expected WorkflowFailedError, got ${String(err)}`);
    assert.ok(err.cause instanceof ApplicationFailure);
    return err.cause;
  }
  assert.fail('the workflow was expected to fail');
}

/** Every regular file under `root` (relative path → size), temp files included; a folder that cannot be read throws. */
async function fileSizes(root: string): Promise<Record<string, number>> {
  const sizes: Record<string, number> = {};
  const walk = async (dir: string, prefix: string) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(path.join(dir, entry.name), relative);
      else if (entry.isFile()) sizes[relative] = (await stat(path.join(dir, entry.name))).size;
    }
  };
  await walk(root, '');
  return sizes;
}

const fileExists = (file: string) => stat(file).then(() => true, () => false);

/**
 * Runs a pipeline whose `local` target is the double and checks what a
 * lying agent must lead to: the first sync fails verification naming both
 * input paths, an execute sent meanwhile is refused, executeCode is never
 * scheduled and the code's side effect never happens, the session is released.
 */
async function assertLiarStopsThePipeline(options: { sessionId: string; double: AgentDouble; problem: 'missing' | 'short' }) {
  const taskQueue = `faults-${options.sessionId}`;
  await stack.startWorker({ taskQueue, localAgent: { url: options.double.url, token: stack.agentToken } });
  const client = new PipelineClient(stack.client, taskQueue);
  const { workflowId } = await client.start({ sessionId: options.sessionId, inputs: [{ path: inputDir }], stages: ['coder'], stageIdleTimeout: '2m' });
  const sideEffect = path.join(work, `${options.sessionId}.ran`);
  // Checked now so its refusal, which comes while the pipeline fails, is never an unhandled rejection.
  const refused = assert.rejects(client.execute(workflowId, { language: 'bash', code: `echo ran >> ${sideEffect}` }), (err: unknown) => {
    assert.ok(err instanceof ExecuteRefusedError, String(err));
    assert.equal(err.type, 'PipelineAborted');
    assert.match(err.message, /nothing runs: verifyLanding failed/);
    return true;
  });

  const failure = await pipelineFailure(client.result(workflowId));
  assert.equal(failure.type, 'VerificationFailed');
  assert.match(failure.message, new RegExp(`^verifyLanding failed: .*2 ${options.problem} \\(`));
  for (const file of Object.keys(INPUT_FILES)) assert.ok(failure.message.includes(JSON.stringify(file)), `the failure names ${file}: ${failure.message}`);

  await refused;
  const steps = await stepsOf(workflowId);
  const names = steps.map((s) => s.name);
  assert.ok(!names.includes('executeCode'), `executeCode never scheduled: ${names.join(', ')}`);
  const verify = steps.find((s) => s.name === 'verifyLanding');
  assert.equal(verify?.status, 'failed');
  assert.equal(verify?.attempts, 3, 'verifyLanding retried to its limit');
  assert.equal(names.at(-1), 'releaseSession');
  assert.equal(await fileExists(sideEffect), false, 'the code never ran');
  const double = options.double;
  assert.ok(double.landRequests >= 1, 'the double was asked to land');
  assert.equal(double.execRequests, 0, 'the double was never asked to run code');
  assert.equal(double.removeRequests, 1, 'the session was released once');
  return { steps, double, failure };
}

describe('agent faults against the real stack', { concurrency: true }, () => {
  it('a lying agent that answers every landing with success and writes nothing: verifyLanding fails with the paths, executeCode never runs', async (t) => {
    const liar = await startLyingAgent(randomUUID());
    cleanups.push(() => liar.close());
    const { steps, double, failure } = await assertLiarStopsThePipeline({ sessionId: 'liar-nothing', double: liar, problem: 'missing' });
    const land = steps.find((s) => s.name === 'landManifest');
    assert.equal(land?.status, 'completed', 'the agent claimed the landing succeeded');
    t.diagnostic(`land requests ${double.landRequests}, exec requests ${double.execRequests}, verifyLanding attempts 3; ${failure.message}`);
  });

  it('a lying agent that answers success after writing short files: verifyLanding fails naming them short, executeCode never runs', async (t) => {
    let sizesAtRelease: Record<string, number> = {};
    // Releasing removes the session's folder: record what the liar left on disk first.
    const truncating = await startTruncatingAgent(stack.agent.url, stack.agentRoot, async () => {
      sizesAtRelease = await fileSizes(path.join(stack.agentRoot, sessionRoot('liar-short'), 'data'));
    });
    cleanups.push(() => truncating.close());
    const { double, failure } = await assertLiarStopsThePipeline({ sessionId: 'liar-short', double: truncating, problem: 'short' });
    const expected = Object.fromEntries(Object.entries(INPUT_FILES).map(([file, text]) => [file, Math.floor(Buffer.byteLength(text) / 2)]));
    assert.deepEqual(sizesAtRelease, expected, 'the target held half of each file at its final path');
    t.diagnostic(`land requests ${double.landRequests}, exec requests ${double.execRequests}; sizes on the target ${JSON.stringify(sizesAtRelease)}; ${failure.message}`);
  });

  it('a full target disk (4 MiB tmpfs root): the sync fails at once, not retried, with TargetDiskFull naming landManifest, and no final path holds a partial file', async (t) => {
    const mountDir = path.join(work, 'tmpfs-root');
    await mkdir(mountDir);
    const mountRefused = await run('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mountDir]).then(
      () => undefined,
      (err: unknown) => `mount -t tmpfs failed here${process.getuid?.() === 0 ? '' : ' (it needs root)'}: ${(err as { stderr?: string }).stderr?.trim() || String(err)}`,
    );
    if (!requireOrSkipTest(t, 'the right to mount a tmpfs', mountRefused)) return;
    cleanups.push(() => run('umount', [mountDir]));
    const agentLog: { msg: string; fields: LogFields }[] = [];
    const log: AgentLogger = { log: (_level, msg, fields = {}) => agentLog.push({ msg, fields }) };
    const token = randomBytes(24).toString('hex');
    const agent = await startAgent({ root: mountDir, token, host: '127.0.0.1', port: 0, allowedUrlPrefixes: [await stack.blobs.blobUrlPrefix()], log });
    // Registered after the unmount, so it runs first: the agent lets go of the disk before it goes.
    cleanups.push(() => agent.close());
    const taskQueue = 'faults-disk-full';
    await stack.startWorker({ taskQueue, localAgent: { url: agent.url, token } });

    const source = path.join(work, 'disk-full-source');
    // 5 MiB can never fit in 4 MiB; the small files can.
    await writeTree(source, { 'big.bin': seededBytes(5 << 20, 1), 'small-1.bin': seededBytes(256 << 10, 2), 'small-2.bin': seededBytes(256 << 10, 3), 'small-3.bin': seededBytes(256 << 10, 4) });
    const started = Date.now();
    const { workflowId, result } = await startSync({ sessionId: 'disk-full', source: { path: source } }, taskQueue);
    const failure = await pipelineFailure(result);
    const elapsedMs = Date.now() - started;
    assert.equal(failure.type, 'TargetDiskFull');
    assert.match(failure.message, /^landManifest failed: target disk is full/);

    const steps = await stepsOf(workflowId);
    const land = steps.find((s) => s.name === 'landManifest');
    assert.equal(land?.status, 'failed');
    assert.equal(land?.attempts, 1, 'a full disk is not retried');
    assert.ok(!steps.some((s) => s.name === 'verifyLanding'), 'nothing verified a landing that failed');

    const sourceHashes = await treeHashes(source);
    const onDisk = await fileSizes(mountDir);
    const temps = Object.keys(onDisk).filter((file) => path.basename(file).startsWith('.ferry-tmp-'));
    assert.deepEqual(temps, [], 'no temp file left behind');
    const dataDir = path.join(mountDir, sessionRoot('disk-full'), 'data');
    const landed = await treeHashes(dataDir);
    assert.equal(landed['big.bin'], undefined, 'the file that did not fit is not at its final path');
    for (const [file, hash] of Object.entries(landed)) assert.equal(hash, sourceHashes[file], `${file} at its final path is whole`);
    const diskFullLogs = agentLog.filter((line) => line.msg === 'land failed' && line.fields.errorType === 'TargetDiskFull');
    assert.ok(diskFullLogs.length >= 1, 'the agent logged the full disk');
    t.diagnostic(
      `landManifest attempts ${land?.attempts}, failed after ${Math.round(elapsedMs / 1000)} s; agent logged ${diskFullLogs.length} disk-full landings; ` +
        `whole files at final paths: ${Object.keys(landed).join(', ') || 'none'}; bytes on the tmpfs ${Object.values(onDisk).reduce((a, b) => a + b, 0)}`,
    );
  });

  it('an agent that accepts connections and never answers: the client times out before the heartbeat would, the step is retried, the sync ends verified', async (t) => {
    const hangs = 1;
    const hanging = await startHangingAgent(stack.agent.url, hangs);
    cleanups.push(() => hanging.close());
    const taskQueue = 'faults-hang';
    await stack.startWorker({ taskQueue, localAgent: { url: hanging.url, token: stack.agentToken } });
    const source = path.join(work, 'hang-source');
    await writeTree(source, { 'a.csv': 'x,y\n1,2\n', 'deep/b.bin': seededBytes(64 << 10, 7) });

    const { workflowId, result } = await startSync({ sessionId: 'hang', source: { path: source } }, taskQueue);
    const synced = await result;
    assert.equal(synced.verified, true);
    assert.equal(synced.filesVerified, 2);
    assert.deepEqual(await treeHashes(path.join(stack.agentRoot, sessionRoot('hang'), 'data')), await treeHashes(source), 'every file landed whole');

    const steps = await stepsOf(workflowId);
    // The first step to reach the agent meets the hung connections.
    const provision = steps.find((s) => s.name === 'provisionSession')!;
    assert.equal(provision.status, 'completed');
    assert.equal(provision.attempts, hangs + 1, 'one attempt per hung connection, then one that went through');
    const hung = provision.lastRetryFailure;
    assert.equal(hung?.type, 'TargetUnavailable', JSON.stringify(hung));
    assert.equal(hung?.timeoutType, undefined, 'the attempt was failed by the agent client, not timed out by Temporal');
    const clientTimeoutMs = Number(/did not answer \/v1\/\w+ within (\d+) ms/.exec(hung?.message ?? '')?.[1]);
    const heartbeatTimeoutMs = parseDurationMs(String(sessionStep.heartbeatTimeout));
    assert.ok(clientTimeoutMs > 0 && clientTimeoutMs < heartbeatTimeoutMs, `client timeout ${clientTimeoutMs} ms is shorter than the heartbeat timeout ${heartbeatTimeoutMs} ms`);
    assert.equal(steps.find((s) => s.name === 'landManifest')?.attempts, 1);
    assert.equal(steps.find((s) => s.name === 'verifyLanding')?.attempts, 1);
    assert.equal(hanging.connectionsHung, hangs);
    assert.ok(hanging.connectionsForwarded >= 1);
    t.diagnostic(
      `provisionSession attempts ${provision.attempts}, hung attempts failed by the client after ${clientTimeoutMs} ms (heartbeat timeout ${heartbeatTimeoutMs} ms); ` +
        `scheduled → last attempt ${Math.round((provision.waitMs ?? 0) / 1000)} s; connections hung ${hanging.connectionsHung}, forwarded ${hanging.connectionsForwarded}; ${synced.filesVerified} files verified`,
    );
  });

  it('the same execute update sent twice (typed client, temporal CLI --update-id) runs once and every caller gets the same result', async (t) => {
    const sessionId = 'dupe-update';
    const { workflowId } = await pipelines.start({ sessionId, inputs: [{ path: inputDir }], stages: ['coder'], stageIdleTimeout: '2m' });
    const request: ExecuteRequest = { language: 'bash', code: 'echo ran >> artifacts/ran.txt && wc -l < artifacts/ran.txt' };
    const viaCli = async (updateId: string): Promise<ExecuteResult> => {
      const { stdout } = await run(temporalBin, [
        'workflow', 'update', 'execute', '--address', stack.config.temporal.address, '-w', workflowId,
        '--name', 'execute', '--update-id', updateId, '--input', JSON.stringify(request), '-o', 'json',
      ]);
      return (JSON.parse(stdout) as { result: ExecuteResult }).result;
    };

    // Two agents' resends in flight at once, then a third after it completed, from the CLI.
    const [first, second] = await Promise.all([pipelines.execute(workflowId, request, { requestId: 'agent-call-1' }), pipelines.execute(workflowId, request, { requestId: 'agent-call-1' })]);
    assert.equal(first.stdoutTail.trim(), '1');
    assert.deepEqual(second, first);
    assert.deepEqual(await viaCli('agent-call-1'), first);
    // A new id runs again, once however often it is sent.
    const cliFirst = await viaCli('agent-call-2');
    assert.deepEqual(await viaCli('agent-call-2'), cliFirst);
    assert.equal(cliFirst.stdoutTail.trim(), '2');
    assert.notEqual(cliFirst.executionId, first.executionId);

    const lines = await readFile(path.join(stack.agentRoot, sessionRoot(sessionId), 'artifacts', 'ran.txt'), 'utf8');
    assert.equal(lines, 'ran\nran\n', 'two update ids, two runs');
    const state = await pipelines.state(workflowId);
    assert.equal(state.executionsTotal, 2);
    assert.equal(state.stages[0].executions, 2);
    await pipelines.finishStage(workflowId, 'ran', { stage: 'coder' });
    const result = await pipelines.result(workflowId);
    const collected = result.stages[0].artifacts!.files.find((f) => f.path === 'ran.txt')!;
    assert.equal((await stack.blobs.getBlob(collected.sha256)).toString('utf8'), 'ran\nran\n');
    const events = await historyEvents(workflowId);
    const accepted = events.filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes).map((e) => e.workflowExecutionUpdateAcceptedEventAttributes!.protocolInstanceId);
    assert.deepEqual(accepted, ['agent-call-1', 'agent-call-2'], 'one accepted update per id');
    assert.equal((await stepsOf(workflowId)).filter((s) => s.name === 'executeCode').length, 2);
    t.diagnostic(`5 execute calls (3 with id agent-call-1, 2 with agent-call-2) → ${accepted.length} updates accepted, ${state.executionsTotal} executions (${first.executionId}, ${cliFirst.executionId}); ran.txt has 2 lines`);
  });

  it('a finishStage resent after its stage finished (typed client, ferry CLI, temporal CLI) is ignored: no stage is skipped', async (t) => {
    const { workflowId } = await pipelines.start({ sessionId: 'dupe-finish', stages: ['coder', 'validator', 'reporter'], stageIdleTimeout: '2m' });
    const stageNow = async () => (await pipelines.state(workflowId)).stage;
    const execIn = (stage: string) => pipelines.execute(workflowId, { language: 'bash', code: `echo ${stage} > artifacts/${stage}.txt` });

    assert.equal((await execIn('coder')).stage, 'coder');
    await pipelines.finishStage(workflowId, 'coded', { stage: 'coder' });
    await waitUntil('the validator stage', async () => (await stageNow()) === 'validator');
    // The coder agent's retries arrive after its stage ended: by the typed client, the ferry CLI and the temporal CLI.
    await pipelines.finishStage(workflowId, 'coded', { stage: 'coder' });
    const ferryOut = await run(process.execPath, [ferryBin, 'stage', 'finish', workflowId, '--stage', 'coder', '--summary', 'coded'], {
      env: { ...process.env, ...stack.settings, FERRY_HOME: path.join(work, 'no-stack') },
      timeout: 60_000,
    });
    assert.match(ferryOut.stdout, /finishStage \(stage coder\) sent to pipeline-dupe-finish/);
    await run(temporalBin, ['workflow', 'signal', '--address', stack.config.temporal.address, '-w', workflowId, '--name', 'finishStage', '--input', JSON.stringify({ stage: 'coder', summary: 'coded' })]);
    // An execute after those signals runs in the validator: it is still current.
    assert.equal((await execIn('validator')).stage, 'validator');
    // Without a stage name, finishStage finishes the current stage as before.
    await pipelines.finishStage(workflowId, 'checked');
    assert.equal((await execIn('reporter')).stage, 'reporter');
    await pipelines.finishStage(workflowId, 'reported', { stage: 'reporter' });
    await pipelines.finishStage(workflowId, 'reported', { stage: 'reporter' });
    const result: PipelineResult = await pipelines.result(workflowId);

    assert.deepEqual(
      result.stages.map((s) => [s.name, s.status, s.executions, s.summary]),
      [
        ['coder', 'finished', 1, 'coded'],
        ['validator', 'finished', 1, 'checked'],
        ['reporter', 'finished', 1, 'reported'],
      ],
    );
    for (const stage of result.stages) assert.ok(stage.artifacts?.files.some((f) => f.path === `${stage.name}.txt`), `${stage.name} collected what it wrote`);
    const signals = (await historyEvents(workflowId)).filter((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'finishStage').length;
    assert.equal(signals, 7, 'every finishStage reached the workflow');
    const collected = (await stepsOf(workflowId)).filter((s) => s.name === 'collectArtifacts').length;
    assert.equal(collected, 3);
    t.diagnostic(`${signals} finishStage signals (3 resends for coder after it finished, 1 for reporter while it was collected) → ${collected} stages collected, each with its own execution`);
  });
});
