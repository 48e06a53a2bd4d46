/**
 * Process failures of issue 6, against the real stack (Temporal dev server,
 * SeaweedFS, runtime agents, worker processes): the server stopped and
 * restarted mid-pipeline, the agent SIGKILLed mid-landing, a worker
 * SIGKILLed between "the target started the trainer" and "the activity
 * completed". Each case checks nothing ran twice and nothing was lost.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { accessSync, constants, createReadStream, existsSync, openSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { PipelineClient } from '../../client/pipelineClient';
import { writeDemoInput } from '../../client/sampleData';
import { repoRoot } from '../../client/tools';
import type { ExecuteResult } from '../../core/pipeline';
import { shellQuote } from '../../core/shellScripts';
import { sessionRoot, type SyncResult } from '../../core/sync';
import type { Step } from '../../core/history/steps';
import type { TrainingInput, TrainingResult } from '../../core/training';
import { isLandTempName } from '../../runtime/land';
import { seededBytes, treeHashes, waitFor, writeTree } from '../support/fixtures';
import { stepsFromHistory } from '../support/steps';
import { startTestStack, type TestStack } from '../support/testStack';

const EventType = temporal.api.enums.v1.EventType;

let stack: TestStack;
let work: string;

before(async () => {
  // The agent runs as its own process so it can be SIGKILLed and restarted.
  stack = await startTestStack({ agentProcess: true });
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-faults-test-'));
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function historyEvents(workflowId: string) {
  return (await stack.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
}

async function timelineSteps(workflowId: string): Promise<Step[]> {
  return stepsFromHistory(workflowId, await historyEvents(workflowId));
}

/** Results of every completed activity of one type, in order. */
async function activityResults<T>(workflowId: string, activityType: string): Promise<T[]> {
  const types = new Map<number, string>();
  const results: T[] = [];
  for (const event of await historyEvents(workflowId)) {
    if (event.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) types.set(Number(event.eventId), event.activityTaskScheduledEventAttributes?.activityType?.name ?? '');
    const completed = event.activityTaskCompletedEventAttributes;
    if (completed && types.get(Number(completed.scheduledEventId)) === activityType) results.push(defaultPayloadConverter.fromPayload(completed.result!.payloads![0]!) as T);
  }
  return results;
}

/**
 * Event ids run 1, 2, 3, … with no gap or repeat. (Event times may step
 * back: an activity's started event is written when it closes, with the
 * time it started.)
 */
function assertConsecutive(events: temporal.api.history.v1.IHistoryEvent[]): void {
  assert.deepEqual(events.map((e) => Number(e.eventId)), events.map((_, index) => index + 1), 'event ids are consecutive');
}

const linesOf = async (file: string) => (await readFile(file, 'utf8').catch(() => '')).split('\n').filter((line) => line !== '');

describe('process failures against the real stack', () => {
  it('Temporal dev server stopped for 20 s mid-pipeline and restarted on the same SQLite file: the workflow completes exactly once', async (t: TestContext) => {
    const pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
    const input = writeDemoInput(path.join(work, 'pipeline-input'));
    const sessionId = 'temporal-down';
    const { workflowId, runId } = await pipelines.start({ sessionId, inputs: [{ path: input }], stages: ['coder'], stageIdleTimeout: '5m' });
    // Every execution appends one line to a file in the session: the lines count the runs.
    const ledger = path.join(stack.agentRoot, sessionRoot(sessionId), 'ledger.txt');
    const first = await pipelines.execute(workflowId, { language: 'bash', code: 'echo e1 >> ledger.txt' }, { requestId: 'first' });
    assert.equal(first.exitCode, 0);

    // The second execution is running on the session when the server goes away, and ends while nothing can record it.
    const secondRequest = { language: 'bash' as const, code: 'echo e2 >> ledger.txt; sleep 5; echo second done' };
    const secondSent = pipelines.execute(workflowId, secondRequest, { requestId: 'second' }).then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
    await waitFor('the second execution to start on the session', async () => ((await linesOf(ledger)).includes('e2') ? true : undefined));
    const stoppingAt = Date.now();
    await stack.stopTemporal();
    const stoppedAt = Date.now();
    await sleep(20_000);
    await stack.startTemporal();
    const servingAgainAt = Date.now();

    // A caller whose update call broke resends it with the same request id: the first outcome comes back, nothing runs again.
    const firstTry = await secondSent;
    let resends = 0;
    let second: ExecuteResult | undefined = 'result' in firstTry ? firstTry.result : undefined;
    const resendDeadline = Date.now() + 120_000;
    while (second === undefined) {
      try {
        resends++;
        second = await pipelines.execute(workflowId, secondRequest, { requestId: 'second' });
      } catch (err) {
        if (Date.now() > resendDeadline) throw err;
        await sleep(1_000);
      }
    }
    assert.equal(second.exitCode, 0);
    assert.match(second.stdoutTail, /second done/);
    // Read before the stage ends: releasing the session removes its root.
    const ledgerLines = await linesOf(ledger);
    assert.deepEqual(ledgerLines, ['e1', 'e2'], 'each execution ran exactly once');
    await pipelines.finishStage(workflowId);
    const result = await pipelines.result(workflowId);

    assert.equal(result.executionsTotal, 2);
    assert.deepEqual(result.stages.map((s) => [s.name, s.status, s.executions]), [['coder', 'finished', 2]]);
    assert.deepEqual([first.executionId, second.executionId].map((id) => id.replace(/-[0-9a-f-]{36}$/, '')), ['e1-coder', 'e2-coder']);

    const runs = await waitFor('visibility to show the run completed', async () => {
      const listed = [];
      for await (const execution of stack.client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) listed.push(execution);
      return listed.length === 1 && listed[0]!.status.name === 'COMPLETED' ? listed : undefined;
    });
    assert.equal(runs[0]!.runId, runId, 'one run, the one started before the outage');
    const described = await stack.client.workflow.getHandle(workflowId).describe();
    assert.equal(described.status.name, 'COMPLETED');

    const events = await historyEvents(workflowId);
    assertConsecutive(events);
    assert.equal(events.filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED).length, 1);
    assert.equal(events.filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED).length, 2, 'two updates accepted, the resend not among them');
    const steps = await timelineSteps(workflowId);
    assert.deepEqual(
      steps.map((s) => s.name),
      ['provisionSession', 'snapshotSource', 'uploadBlobs', 'composeInputs', 'landManifest', 'verifyLanding', 'checkSession', 'verifyLanding', 'executeCode', 'checkSession', 'executeCode', 'collectArtifacts', 'releaseSession'],
    );
    assert.ok(steps.every((s) => s.status === 'completed'));
    const secondExec = steps.filter((s) => s.name === 'executeCode')[1]!;
    t.diagnostic(
      `figures: server stopped in ${stoppedAt - stoppingAt} ms, kept down 20 s, serving again ${servingAgainAt - stoppedAt} ms after it stopped; ` +
        `the in-flight update call ${'error' in firstTry ? `failed (${describeError(firstTry.error)}) and was resent ${resends}x` : 'survived the outage'}; ` +
        `executeCode e2 took ${secondExec.attempts} attempt(s)${secondExec.lastRetryFailure ? ` (retry after ${secondExec.lastRetryFailure.timeoutType ?? secondExec.lastRetryFailure.type})` : ''}; ${events.length} history events; ledger ${ledgerLines.join(',')}`,
    );
  });

  it('runtime agent killed mid-landing and restarted (new bootId): no partial file at a final path; the workflow re-lands and verifies', async (t: TestContext) => {
    const control = stack.agentProcess!;
    const sessionId = 'agent-killed';
    const source = path.join(work, 'agent-killed');
    const bigSize = 160 << 20;
    await writeTree(source, { 'weights.bin': seededBytes(bigSize, 11), 'config.json': '{"layers": 4}\n', 'notes/readme.txt': 'landing under fire\n' });
    const expected = await treeHashes(source);
    const landed = path.join(stack.agentRoot, sessionRoot(sessionId), 'data');
    const bootBefore = control.current.bootId;

    const workflowId = `sync-agent-killed-${randomUUID()}`;
    const handle = await stack.client.workflow.start('syncWorkflow', { taskQueue: stack.config.temporal.taskQueue, workflowId, args: [{ sessionId, source: { path: source } }] });
    const outcome = handle.result().then(
      (result) => ({ result: result as SyncResult }),
      (error: unknown) => ({ error }),
    );

    // Watches the landing folder until the workflow ends: a final path must only ever hold the whole, right file.
    const watch = { observations: 0, finalFilesHashed: 0, wrongAtFinalPath: [] as string[], maxTempBytes: 0, done: false };
    const hashedVersions = new Set<string>();
    const observe = async () => {
      for (const relative of await listTree(landed)) {
        const info = await stat(path.join(landed, relative)).catch(() => undefined);
        if (!info) continue;
        if (isLandTempName(path.basename(relative))) {
          watch.maxTempBytes = Math.max(watch.maxTempBytes, info.size);
          continue;
        }
        const version = `${relative}:${info.ino}:${info.size}:${info.mtimeMs}`;
        if (hashedVersions.has(version)) continue;
        hashedVersions.add(version);
        watch.finalFilesHashed++;
        if (expected[relative] === undefined || (await fileSha256(path.join(landed, relative))) !== expected[relative]) watch.wrongAtFinalPath.push(`${relative} (${info.size} bytes)`);
      }
      watch.observations++;
    };
    const watching = (async () => {
      while (!watch.done) {
        await observe();
        await sleep(25);
      }
      await observe();
    })();

    try {
      const killedAt = await waitFor(
        'the agent to be downloading weights.bin',
        async () => {
          const names = await readdir(landed).catch(() => [] as string[]);
          const temps = await Promise.all(names.filter(isLandTempName).map((n) => stat(path.join(landed, n)).then((s) => s.size, () => 0)));
          const tempBytes = Math.max(0, ...temps);
          return tempBytes >= 8 << 20 ? { tempBytes, bigLanded: names.includes('weights.bin') } : undefined;
        },
        180_000,
        10,
      );
      await control.kill();
      const observationsBeforeKill = watch.observations;
      assert.equal(killedAt.bigLanded, false, 'killed before weights.bin was complete');
      const killMs = Date.now();
      // Down until the landing activity has failed an attempt against the dead agent (not just seen a broken stream) and the
      // watcher has looked at the folder meanwhile.
      await waitFor('landManifest to fail an attempt while the agent is down', async () => {
        const pending = (await handle.describe()).raw.pendingActivities ?? [];
        const land = pending.find((activity) => activity.activityType?.name === 'landManifest');
        return land && (land.attempt ?? 0) >= 2 && watch.observations - observationsBeforeKill >= 10 ? true : undefined;
      }, 120_000, 50);
      const restarted = await control.restart();
      const downMs = Date.now() - killMs;
      assert.notEqual(restarted.bootId, bootBefore, 'the restarted agent has a new boot id');
      assert.equal(restarted.url, stack.agent.url, 'same port');

      const ended = await outcome;
      if ('error' in ended) throw ended.error;
      const summary = ended.result;
      watch.done = true;
      await watching;

      assert.equal(summary.verified, true);
      assert.equal(summary.bootId, restarted.bootId, 'verified on the new boot');
      assert.equal(summary.filesVerified, Object.keys(expected).length);
      assert.ok(watch.observations - observationsBeforeKill >= 10, 'the folder was watched while the agent was down and landing again');
      assert.deepEqual(watch.wrongAtFinalPath, [], 'no final path ever held a partial or wrong file');
      const finalTree = await treeHashes(landed);
      for (const [relative, hash] of Object.entries(expected)) assert.equal(finalTree[relative], hash, relative);
      assert.deepEqual(Object.keys(finalTree).sort(), Object.keys(expected).sort(), "exactly the manifest: the new agent removed the killed one's temp file");

      const steps = await timelineSteps(workflowId);
      assert.deepEqual(steps.map((s) => s.name), ['provisionSession', 'snapshotSource', 'uploadBlobs', 'landManifest', 'verifyLanding']);
      const land = steps[3]!;
      assert.ok(land.attempts >= 2, `landManifest landed again (attempts ${land.attempts})`);
      assert.equal(land.lastRetryFailure?.type, 'TargetUnavailable');
      const [landResult] = await activityResults<{ bootId: string; filesLanded: number; bytesLanded: number; filesAlreadyPresent: number }>(workflowId, 'landManifest');
      assert.equal(landResult!.bootId, restarted.bootId);
      t.diagnostic(
        `figures: killed with ${killedAt.tempBytes} of ${bigSize} bytes of weights.bin in a temp file; agent down ${downMs} ms; boot ${bootBefore.slice(0, 8)} → ${restarted.bootId.slice(0, 8)}; ` +
          `landManifest ${land.attempts} attempts (last retry after ${land.lastRetryFailure?.type}: ${land.lastRetryFailure?.message.slice(0, 90)}); the retry landed ${landResult!.filesLanded} files (${landResult!.bytesLanded} bytes), found ${landResult!.filesAlreadyPresent} present; ` +
          `${watch.observations - observationsBeforeKill} observations after the kill, ${watch.finalFilesHashed} final-path versions hashed, largest temp file ${watch.maxTempBytes} bytes, none left after the restart`,
      );
    } finally {
      watch.done = true;
      await watching;
    }
  });

  it('worker SIGKILLed after the target started the trainer but before startProcess completed: the retry finds the running process (one trainer)', async (t: TestContext) => {
    const runId = 'held-start';
    const root = path.join(work, 'shell-target');
    const project = path.join(work, 'held-start-project');
    await writeTree(project, { 'train.sh': '# the command is inline; this file makes the project non-empty\n' });
    const pids = path.join(work, 'trainer-pids.txt');
    const release = path.join(work, 'trainer-release');
    const startHeld = path.join(work, 'start-held');
    const holdPidFile = path.join(work, 'hold.pid');

    // The shell target spawns `bash -c <script> ferry-<purpose>` found on PATH: this `bash` runs the real one, then, for the
    // start script only, keeps its stdout open (so the activity does not complete) after the trainer is running.
    const fakeBin = path.join(work, 'fakebin');
    await mkdir(fakeBin, { recursive: true });
    await writeFile(
      path.join(fakeBin, 'bash'),
      `#!/bin/sh\n${shellQuote(realBash())} "$@"\ncode=$?\nif [ "$3" = ferry-start ]; then\n  printf '%s\\n' "$$" > ${shellQuote(holdPidFile)}\n  : > ${shellQuote(startHeld)}\n  exec sleep 120\nfi\nexit $code\n`,
    );
    await chmod(path.join(fakeBin, 'bash'), 0o755);

    const taskQueue = `ferry-held-start-${randomUUID()}`;
    const workers: ChildProcess[] = [];
    const startWorkerProcess = (pathPrefix?: string) => {
      const log = openSync(path.join(work, `held-start-worker-${workers.length + 1}.log`), 'a');
      const child = spawn(process.execPath, [path.join(repoRoot(), 'dist', 'worker', 'main.js')], {
        env: { ...process.env, ...stack.settings, FERRY_TASK_QUEUE: taskQueue, PATH: pathPrefix ? `${pathPrefix}${path.delimiter}${process.env.PATH}` : process.env.PATH },
        stdio: ['ignore', log, log],
      });
      workers.push(child);
      return child;
    };
    // The trainer records its pid, then runs until the test releases it (bounded: 3 minutes).
    const command = ['sh', '-c', 'echo $$ >> "$0"; i=0; while [ ! -e "$1" ] && [ "$i" -lt 1800 ]; do sleep 0.1; i=$((i + 1)); done', pids, release];
    const training: TrainingInput = { runId, project: { path: project }, command, startupGraceSeconds: 1, pollSeconds: 1, stopGraceSeconds: 3, target: { kind: 'shell', root } };
    let handle: WorkflowHandle | undefined;
    try {
      handle = await stack.client.workflow.start('trainingWorkflow', { taskQueue, workflowId: `train-held-start-${randomUUID()}`, args: [training] });
      const first = startWorkerProcess(fakeBin);
      await waitFor('the start script to finish with the activity held open', async () => (existsSync(startHeld) ? true : undefined), 120_000);
      const pidOnTarget = Number((await readFile(path.join(root, 'state', runId, 'proc', 'start-1', 'pid'), 'utf8')).trim());
      assert.ok(pidOnTarget > 0, 'the target recorded the wrapper pid');
      const trainerPids = await waitFor('the trainer to record its pid', async () => ((await linesOf(pids)).length > 0 ? linesOf(pids) : undefined));
      const pending = (await handle.describe()).raw.pendingActivities ?? [];
      assert.ok(pending.some((p) => p.activityType?.name === 'startProcess'), 'startProcess has not completed');
      assert.deepEqual(await activityResults(handle.workflowId, 'startProcess'), []);

      const killedAt = Date.now();
      first.kill('SIGKILL');
      await new Promise((resolve) => (first.exitCode !== null || first.signalCode !== null ? resolve(undefined) : first.once('exit', resolve)));
      await stopHeldStart(holdPidFile);
      startWorkerProcess();

      const [started] = await waitFor('startProcess to complete on the second worker', async () => {
        const results = await activityResults<{ pid: number; started: boolean }>(handle!.workflowId, 'startProcess');
        return results.length ? results : undefined;
      }, 180_000, 500);
      const retriedAfterMs = Date.now() - killedAt;
      assert.equal(started!.started, false, 'the retry found the process the first attempt started');
      assert.equal(started!.pid, pidOnTarget);
      await writeFile(release, '');
      const result = (await handle.result()) as TrainingResult;

      assert.equal(result.exitCode, 0);
      assert.equal(result.stopped, false);
      assert.deepEqual(await linesOf(pids), trainerPids, 'one trainer ran');
      assert.equal(trainerPids.length, 1);
      const steps = await timelineSteps(handle.workflowId);
      const start = steps.find((s) => s.name === 'startProcess')!;
      assert.equal(start.attempts, 2);
      assert.equal(start.lastRetryFailure?.timeoutType, 'HEARTBEAT', 'the server gave up on the killed worker by its heartbeat timeout');
      assert.equal(steps.filter((s) => s.name === 'startProcess').length, 1);
      assert.deepEqual(steps.slice(0, 7).map((s) => s.name), ['provisionSession', 'snapshotSource', 'uploadBlobs', 'landManifest', 'verifyLanding', 'startProcess', 'confirmProcess']);
      t.diagnostic(`figures: trainer pid ${trainerPids[0]} (wrapper ${pidOnTarget}); startProcess ${start.attempts} attempts, the retry completed ${retriedAfterMs} ms after the kill (${start.lastRetryFailure?.timeoutType} timeout); exit ${result.exitCode}; ${result.probes} probes`);
    } finally {
      await stopHeldStart(holdPidFile);
      if (!existsSync(release)) await writeFile(release, '');
      await Promise.all(
        workers
          .filter((w) => w.exitCode === null && w.signalCode === null)
          .map((w) => {
            const exited = new Promise((resolve) => w.once('exit', resolve));
            w.kill('SIGTERM');
            return exited;
          }),
      );
    }
  });
});

/** An error's class and message, with its causes', for figures. */
function describeError(err: unknown): string {
  const parts: string[] = [];
  for (let e = err as Error | undefined, depth = 0; e instanceof Error && depth < 3; e = e.cause as Error | undefined, depth++) parts.push(`${e.name}: ${e.message.slice(0, 80)}`);
  return parts.join(' ← ');
}

/** Relative paths of every file under `root` (none when it does not exist yet). */
async function listTree(root: string, prefix = ''): Promise<string[]> {
  const entries = await readdir(path.join(root, prefix), { withFileTypes: true }).catch(() => []);
  const files: string[] = [];
  for (const entry of entries) {
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) files.push(...(await listTree(root, relative)));
    else if (entry.isFile()) files.push(relative);
  }
  return files;
}

function fileSha256(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .once('error', reject)
      .once('end', () => resolve(hash.digest('hex')));
  });
}

/** The bash on this machine's PATH, by absolute path (the wrapper must not find itself). */
function realBash(): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'bash');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error('no bash on PATH');
}

/** Ends the `sleep` that holds the first start attempt open, if it still runs. */
async function stopHeldStart(holdPidFile: string): Promise<void> {
  const pid = Number((await readFile(holdPidFile, 'utf8').catch(() => '')).trim());
  if (!(pid > 0)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
