/**
 * trainingWorkflow end to end on the `shell` target, against a real Temporal
 * dev server and a real S3 server: a sample training synced, started,
 * confirmed and followed to its exit; early failure; stop; resync with a
 * one-file delta; hostile file names; an empty project; and a worker
 * process killed mid-upload whose successor resumes the multipart upload.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure, defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { UploadBlobsResult } from '../../activities/blobs';
import type { SnapshotSourceResult } from '../../activities/localSource';
import { ShellTarget, type ScriptRun, type ScriptRunHooks } from '../../activities/shellTarget';
import type { LandArchiveResult } from '../../activities/training';
import { summarizeHistory } from '../../client/history';
import { repoRoot } from '../../client/services';
import { followLogs, listLogChunks } from '../../client/training';
import { buildTimeline } from '../../core/timeline';
import type { TransferProgress } from '../../core/sync';
import { trainingTmpPrefix, type TrainingInput, type TrainingResult } from '../../core/training';
import { resyncTrainingSignal, stopTrainingSignal, trainingProgressQuery } from '../../workflows/trainingDefinitions';
import { seededBytes, treeHashes, waitFor, writeTree } from '../support/fixtures';
import { startTestStack, type TestStack } from '../support/testStack';

let stack: TestStack;
let work: string;
let root: string;

before(async () => {
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-training-test-'));
  root = path.join(work, 'target');
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const TRAIN_PY = `import argparse, json, os, time
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--pause", type=float, default=0.3)
args = parser.parse_args()
with open("config/model.json") as f:
    config = json.load(f)
print(f"training {config['name']} for {args.epochs} epochs", flush=True)
for epoch in range(1, args.epochs + 1):
    time.sleep(args.pause)
    print(f"epoch {epoch}/{args.epochs} loss={1.0 / epoch:.3f}")
path = os.path.join(os.environ["FERRY_OUTPUT_DIR"], "checkpoint.json")
with open(path, "w") as f:
    json.dump({"epochs": args.epochs, "model": config["name"]}, f)
print(f"saved checkpoint {path}")
`;

/** A sample training project: a train script, a config, some data, ignore rules. */
async function writeTrainingProject(dir: string, extra: Record<string, string | Buffer> = {}): Promise<void> {
  await writeTree(dir, {
    'train.py': TRAIN_PY,
    'fail.py': 'import sys, time\nprint("loading data", flush=True)\ntime.sleep(1)\nprint("boom: bad learning rate", file=sys.stderr)\nsys.exit(1)\n',
    'loop.py': 'import time\nwhile True:\n    print("message:", open("message.txt").read().strip(), flush=True)\n    time.sleep(0.3)\n',
    'message.txt': 'first version\n',
    'config/model.json': '{"name": "tiny-net", "layers": 2}\n',
    'data/train.csv': 'x,y\n1,2\n3,4\n',
    '.gitignore': '*.ckpt\n__pycache__/\n',
    'old.ckpt': 'ignored',
    ...extra,
  });
}

function start(input: Omit<TrainingInput, 'target'>, taskQueue = stack.config.temporal.taskQueue): Promise<WorkflowHandle> {
  const full: TrainingInput = { startupGraceSeconds: 2, pollSeconds: 1, stopGraceSeconds: 3, ...input, target: { kind: 'shell', root } };
  return stack.client.workflow.start('trainingWorkflow', { taskQueue, workflowId: `train-test-${randomUUID()}`, args: [full] });
}

async function history(workflowId: string) {
  return (await stack.client.workflow.getHandle(workflowId).fetchHistory()).events ?? [];
}

async function stepNames(workflowId: string): Promise<string[]> {
  return buildTimeline(summarizeHistory(await history(workflowId)), 1e9).steps.map((s) => s.name);
}

/** Results of every completed activity of one type, in order. */
async function activityResults<T>(workflowId: string, activityType: string): Promise<T[]> {
  const events = await history(workflowId);
  const types = new Map<number, string>();
  const results: T[] = [];
  for (const event of events) {
    if (event.eventType === temporal.api.enums.v1.EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
      types.set(Number(event.eventId), event.activityTaskScheduledEventAttributes?.activityType?.name ?? '');
    const completed = event.activityTaskCompletedEventAttributes;
    if (completed && types.get(Number(completed.scheduledEventId)) === activityType) results.push(defaultPayloadConverter.fromPayload(completed.result!.payloads![0]!) as T);
  }
  return results;
}

const runDir = (runId: string) => path.join(root, 'runs', runId);

describe('trainingWorkflow on the shell target', () => {
  it('syncs a sample project, starts, confirms and follows the training to exit 0, with every step in history', async (t: TestContext) => {
    const project = path.join(work, 'sample');
    await writeTrainingProject(project);
    const runId = 'sample';
    const began = Date.now();
    const handle = await start({ runId, project: { path: project }, command: ['python3', 'train.py', '--epochs', '3'] });
    const followed: Buffer[] = [];
    const following = followLogs(stack.client, stack.blobs, handle.workflowId, true, (bytes) => followed.push(bytes));
    const result = (await handle.result()) as TrainingResult;
    await following;

    assert.equal(result.exitCode, 0);
    assert.equal(result.stopped, false);
    assert.equal(result.filesTotal, 7, 'old.ckpt is ignored');
    const log = Buffer.concat(followed).toString();
    assert.match(log, /training tiny-net for 3 epochs\nepoch 1\/3 loss=1\.000\nepoch 2\/3 loss=0\.500\nepoch 3\/3 loss=0\.333\nsaved checkpoint /);
    assert.equal(result.logBytesShipped, Buffer.byteLength(log));
    assert.deepEqual(JSON.parse(await readFile(path.join(runDir(runId), 'outputs', 'checkpoint.json'), 'utf8')), { epochs: 3, model: 'tiny-net' });
    assert.ok(!existsSync(path.join(runDir(runId), 'current', 'old.ckpt')));
    assert.deepEqual(await stack.blobs.listKeys(trainingTmpPrefix('', runId)), [], 'temporary objects are cleaned up');
    assert.ok((await listLogChunks(stack.blobs, runId)).length >= 1);

    const steps = await stepNames(handle.workflowId);
    assert.deepEqual(steps.slice(0, 6), ['snapshotSource', 'uploadBlobs', 'landArchive', 'verifyInstanceLanding', 'startProcess', 'confirmProcess']);
    assert.ok(steps.includes('probeProcess'));
    assert.equal(steps.at(-1), 'cleanupTrainingObjects');

    const timeline = buildTimeline(summarizeHistory(await history(handle.workflowId)), 1e9);
    const syncMs = ['snapshotSource', 'uploadBlobs', 'landArchive', 'verifyInstanceLanding'].reduce((sum, name) => sum + (timeline.steps.find((s) => s.name === name)?.durationMs ?? 0), 0);
    t.diagnostic(`figures: sync (snapshot+upload+land+verify) ${syncMs} ms for ${result.filesTotal} files; first log line ${result.firstLogLineMs} ms after workflow start; confirmed after ${result.timeToConfirmMs} ms; whole run ${Date.now() - began} ms`);
  });

  it('a command that exits 1 after a second fails confirmProcess non-retryably with the log tail', async () => {
    const project = path.join(work, 'failing');
    await writeTrainingProject(project);
    const handle = await start({ runId: 'failing', project: { path: project }, command: ['python3', 'fail.py'], startupGraceSeconds: 5 });
    await assert.rejects(handle.result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      assert.ok(err.cause instanceof ApplicationFailure);
      assert.equal(err.cause.type, 'ProcessExitedEarly');
      assert.match(err.cause.message, /confirmProcess failed: the command exited with code 1 within its 5 s startup grace period; log tail:\nloading data\nboom: bad learning rate/);
      return true;
    });
    const timeline = buildTimeline(summarizeHistory(await history(handle.workflowId)), 1e9);
    const confirm = timeline.steps.find((s) => s.name === 'confirmProcess');
    assert.equal(confirm?.attempts, 1, 'not retried');
    assert.ok((confirm?.durationMs ?? 0) < 5_000, 'failed as soon as the process exited, before the grace period ended');
  });

  it('stop ends a long run with SIGTERM; the run reports stopped with exit code 143', async () => {
    const project = path.join(work, 'long');
    await writeTrainingProject(project);
    const handle = await start({ runId: 'long', project: { path: project }, command: ['python3', 'loop.py'] });
    await waitFor('running', async () => ((await handle.query(trainingProgressQuery)).state === 'running' ? true : undefined));
    await handle.signal(stopTrainingSignal, {});
    const result = (await handle.result()) as TrainingResult;
    assert.equal(result.stopped, true);
    assert.equal(result.exitCode, 143);
    assert.ok(result.lastLines.some((line) => line.includes('message: first version')), result.lastLines.join('\n'));
    assert.ok((await stepNames(handle.workflowId)).includes('stopProcess'));
  });

  it('resync after editing one file sends a delta archive holding only that file, and restart runs the new version', async (t: TestContext) => {
    const project = path.join(work, 'resync');
    await writeTrainingProject(project, { 'data/big.bin': seededBytes(2 << 20, 5) });
    const runId = 'resync';
    // The worker runs in this process: each land script's byte cap is recorded next to what its archive really unpacks to.
    const landings: { cap?: string; unpacked: number }[] = [];
    const runScript = ShellTarget.prototype.run;
    t.mock.method(ShellTarget.prototype, 'run', async function (this: ShellTarget, run: ScriptRun, hooks?: ScriptRunHooks) {
      if (run.purpose === 'land') {
        const archive = Buffer.from(await (await fetch(run.env.FERRY_ARCHIVE_URL!)).arrayBuffer());
        landings.push({ cap: run.env.FERRY_ARCHIVE_MAX_BYTES, unpacked: gunzipSync(archive).length });
      }
      return runScript.call(this, run, hooks);
    });
    const handle = await start({ runId, project: { path: project }, command: ['python3', 'loop.py'] });
    await waitFor('running', async () => ((await handle.query(trainingProgressQuery)).state === 'running' ? true : undefined));

    await writeFile(path.join(project, 'message.txt'), 'second version\n');
    await handle.signal(resyncTrainingSignal, { restart: true });
    await waitFor('the restarted process logging', async () => {
      const progress = await handle.query(trainingProgressQuery);
      return progress.startId === 'start-2' && progress.state === 'running' && progress.lastLines.some((l) => l.includes('second version')) ? true : undefined;
    });
    await handle.signal(stopTrainingSignal, {});
    const result = (await handle.result()) as TrainingResult;
    assert.equal(result.resyncs, 1);

    const [first, second] = await activityResults<LandArchiveResult>(handle.workflowId, 'landArchive');
    assert.equal(first!.filesSent, first!.filesTotal);
    assert.equal(second!.filesSent, 1, 'only the edited file travels');
    assert.equal(second!.bytesSent, Buffer.byteLength('second version\n'));
    assert.equal(second!.filesKept, first!.filesTotal - 1);
    assert.equal(second!.baseRelease, first!.release);
    assert.equal(landings.length, 2);
    for (const { cap, unpacked } of landings) assert.equal(cap, String(unpacked), 'FERRY_ARCHIVE_MAX_BYTES is exactly the unpacked tar size');
    assert.equal(await readFile(path.join(runDir(runId), 'current', 'message.txt'), 'utf8'), 'second version\n');
    const logs: Buffer[] = [];
    await followLogs(stack.client, stack.blobs, handle.workflowId, false, (b) => logs.push(b));
    const log = Buffer.concat(logs).toString();
    assert.ok(log.indexOf('message: first version') < log.indexOf('message: second version'), 'both starts, in order');
    t.diagnostic(`figures: first archive ${first!.archiveBytes} bytes for ${first!.filesTotal} files (${first!.bytesSent} bytes); delta after a one-file edit ${second!.archiveBytes} bytes; land caps ${landings.map((l) => l.cap).join(', ')} bytes`);
  });

  it('hostile file names arrive intact and nothing in them is executed', async () => {
    const project = path.join(work, 'hostile');
    const hostile: Record<string, string> = {
      'with space.txt': 'a',
      "it's \"quoted\".txt": 'b',
      '$(touch pwned).txt': 'c',
      '`touch pwned2`.txt': 'd',
      'line\nbreak.txt': 'e',
      '-rf': 'f',
      '--help': 'g',
      'ünïcödé/データ.csv': 'h',
      'semi;colon|pipe>redir&amp': 'i',
    };
    await writeTrainingProject(project, hostile);
    const handle = await start({ runId: 'hostile', project: { path: project }, command: ['python3', 'train.py', '--epochs', '1', '--pause', '0'] });
    const result = (await handle.result()) as TrainingResult;
    assert.equal(result.exitCode, 0);
    const landed = await treeHashes(path.join(runDir('hostile'), 'current'));
    const source = await treeHashes(project);
    delete source['old.ckpt'];
    assert.deepEqual(landed, source);
    for (const dir of [root, project, process.cwd(), work]) {
      assert.ok(!existsSync(path.join(dir, 'pwned')) && !existsSync(path.join(dir, 'pwned2')), `nothing executed in ${dir}`);
    }
  });

  it('an empty project fails snapshotSource with EmptyProject, not retried', async () => {
    const project = path.join(work, 'empty');
    await writeTree(project, { '.ferryignore': '*\n', 'ignored.py': 'x' });
    const handle = await start({ runId: 'empty', project: { path: project }, command: ['true'] });
    await assert.rejects(handle.result(), (err: unknown) => err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure && err.cause.type === 'EmptyProject');
    assert.deepEqual(await stepNames(handle.workflowId), ['snapshotSource', 'cleanupTrainingObjects']);
  });

  it('a worker process killed mid-upload of a 200 MB file: the next worker sends only the chunks the first did not store', async (t: TestContext) => {
    const project = path.join(work, 'big');
    const weights = seededBytes(200 << 20, 42);
    await writeTrainingProject(project, { 'weights.bin': weights });
    const taskQueue = `ferry-kill-${randomUUID()}`;
    const workers: ChildProcess[] = [];
    const startWorkerProcess = () => {
      const child = spawn(process.execPath, [path.join(repoRoot(), 'dist', 'worker', 'main.js')], {
        env: { ...process.env, ...stack.settings, FERRY_TASK_QUEUE: taskQueue },
        // Its output stays in the test's temp folder for post-mortems.
        stdio: ['ignore', openSync(path.join(work, `worker-${workers.length + 1}.log`), 'a'), openSync(path.join(work, `worker-${workers.length + 1}.log`), 'a')],
      });
      workers.push(child);
      return child;
    };
    try {
      const handle = await start({ runId: 'big', project: { path: project }, command: ['true'] }, taskQueue);
      const first = startWorkerProcess();
      await waitFor(
        'the upload to store 48 MiB of chunks',
        async () => {
          const pending = (await handle.describe()).raw.pendingActivities ?? [];
          const upload = pending.find((p) => p.activityType?.name === 'uploadBlobs');
          const payload = upload?.heartbeatDetails?.payloads?.[0];
          const details = payload ? (defaultPayloadConverter.fromPayload(payload) as TransferProgress) : undefined;
          return details && details.bytesDone >= 48 << 20 ? details : undefined;
        },
        120_000,
      );
      first.kill('SIGKILL');
      await new Promise((resolve) => first.once('exit', resolve));
      const [snapshot] = await activityResults<SnapshotSourceResult>(handle.workflowId, 'snapshotSource');
      const chunks = (await stack.blobs.getManifest(snapshot.manifestDigest)).files.find((f) => f.path === 'weights.bin')?.chunks ?? [];
      const storedAtKill = await stack.blobs.findStoredBlobs(chunks.map((c) => c.sha256));
      const storedBytes = chunks.filter((c) => storedAtKill.has(c.sha256)).reduce((sum, c) => sum + c.size, 0);
      assert.ok(storedBytes >= 48 << 20 && storedBytes < weights.length, `killed mid-upload (${storedAtKill.size} of ${chunks.length} chunks stored)`);

      startWorkerProcess();
      const [uploaded] = await waitFor('uploadBlobs to complete on the second worker', async () => {
        const results = await activityResults<UploadBlobsResult>(handle.workflowId, 'uploadBlobs');
        return results.length ? results : undefined;
      }, 180_000);
      await handle.terminate('test done');

      assert.ok(uploaded!.bytesUploaded <= snapshot.bytesTotal - storedBytes, 'the retry did not send chunks stored before the kill');
      assert.equal(uploaded!.bytesUploaded + uploaded!.bytesSkipped, snapshot.bytesTotal);
      const timeline = buildTimeline(summarizeHistory(await history(handle.workflowId)), 1e9);
      assert.equal(timeline.steps.find((s) => s.name === 'uploadBlobs')?.attempts, 2);
      t.diagnostic(`killed with ${storedAtKill.size} of ${chunks.length} chunks (${storedBytes} bytes) stored; the retry sent ${uploaded!.bytesUploaded} of ${weights.length} bytes`);
    } finally {
      const running = workers.filter((w) => w.exitCode === null && w.signalCode === null);
      await Promise.all(
        running.map((w) => {
          const exited = new Promise((resolve) => w.once('exit', resolve));
          w.kill('SIGTERM');
          return exited;
        }),
      );
    }
  });
});
