/**
 * trainingWorkflow end to end on the `shell` target, against a real Temporal
 * dev server and a real S3 server: a sample training synced, started,
 * confirmed and followed to its exit, its outputs collected; early failure;
 * stop; resync with a one-file delta; hostile file names; an empty project;
 * and a worker process killed mid-upload whose successor resumes the upload.
 * (The same workflow on the local agent and over ssh: targetMatrix.test.ts.)
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { openSync } from 'node:fs';
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
import type { LandManifestResult } from '../../activities/session';
import type { ScriptRun, ScriptRunHooks } from '../../activities/targets/scriptReach';
import { ShellChannel } from '../../activities/targets/shell';
import { repoRoot } from '../../client/tools';
import { followLogs, listLogChunks } from '../../client/training';
import type { TransferProgress } from '../../core/sync';
import { sessionRoot } from '../../core/sync';
import type { TrainingInput, TrainingResult } from '../../core/training';
import { resyncTrainingSignal, stopTrainingSignal, trainingProgressQuery } from '../../workflows/trainingDefinitions';
import { packListText, planPacks } from '../../core/packs';
import { assertNoneIn, seededBytes, sha256, treeHashes, waitFor, writeTree } from '../support/fixtures';
import { stepsFromHistory } from '../support/steps';
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
  return stepsFromHistory(workflowId, await history(workflowId)).map((s) => s.name);
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

const sessionDir = (runId: string) => path.join(root, sessionRoot(runId));

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
    assert.deepEqual(JSON.parse(await readFile(path.join(sessionDir(runId), 'outputs', 'checkpoint.json'), 'utf8')), { epochs: 3, model: 'tiny-net' });
    assert.deepEqual(result.outputs?.files.map((f) => f.path), ['checkpoint.json'], 'outputs/ collected to S3');
    assert.deepEqual(JSON.parse((await stack.blobs.getBlob(result.outputs!.files[0].sha256)).toString('utf8')), { epochs: 3, model: 'tiny-net' });
    assertNoneIn(path.join(sessionDir(runId), 'project'), ['old.ckpt'], 'the ignored checkpoint did not land');
    assert.deepEqual(await stack.blobs.listKeys('tmp/'), [], 'temporary objects (archive, listings, upload lists) are deleted');
    assert.ok((await listLogChunks(stack.blobs, runId)).length >= 1);

    const steps = await stepNames(handle.workflowId);
    assert.deepEqual(steps.slice(0, 7), ['provisionSession', 'snapshotSource', 'uploadBlobs', 'landManifest', 'verifyLanding', 'startProcess', 'confirmProcess']);
    assert.ok(steps.includes('probeProcess'));
    assert.deepEqual(steps.slice(-2), ['collectArtifacts', 'releaseSession']);

    const recorded = stepsFromHistory(handle.workflowId, await history(handle.workflowId));
    const syncMs = ['snapshotSource', 'uploadBlobs', 'landManifest', 'verifyLanding'].reduce((sum, name) => sum + (recorded.find((s) => s.name === name)?.durationMs ?? 0), 0);
    t.diagnostic(`figures: sync (snapshot+upload+land+verify) ${syncMs} ms for ${result.filesTotal} files; first log line ${result.firstLogLineMs} ms after workflow start; confirmed after ${result.timeToConfirmMs} ms; whole run ${Date.now() - began} ms`);
  });

  it('a command that exits 1 after a second fails confirmProcess non-retryably with the log tail, before its grace period ends', async () => {
    const project = path.join(work, 'failing');
    await writeTrainingProject(project);
    // A grace period far longer than the command lives: failing before it ends can only mean the exit was noticed.
    const graceSeconds = 600;
    const handle = await start({ runId: 'failing', project: { path: project }, command: ['python3', 'fail.py'], startupGraceSeconds: graceSeconds });
    await assert.rejects(handle.result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      assert.ok(err.cause instanceof ApplicationFailure);
      assert.equal(err.cause.type, 'ProcessExitedEarly');
      assert.match(err.cause.message, /confirmProcess failed: the command exited with code 1 within its 600 s startup grace period; log tail:\nloading data\nboom: bad learning rate/);
      return true;
    });
    const confirm = stepsFromHistory(handle.workflowId, await history(handle.workflowId)).find((s) => s.name === 'confirmProcess');
    assert.equal(confirm?.attempts, 1, 'not retried');
    assert.ok(confirm?.durationMs !== undefined && confirm.durationMs < graceSeconds * 1000, `failed when the process exited (${confirm?.durationMs} ms), not when the grace period ended`);
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

  it('resync after editing one file lands only that file, and restart runs the new version', async (t: TestContext) => {
    const project = path.join(work, 'resync');
    await writeTrainingProject(project, { 'data/big.bin': seededBytes(2 << 20, 5) });
    const runId = 'resync';
    // The worker runs in this process: each land script's byte cap is recorded next to what its archive really unpacks to.
    const landings: { cap?: string; unpacked: number }[] = [];
    const runScript = ShellChannel.prototype.run;
    t.mock.method(ShellChannel.prototype, 'run', async function (this: ShellChannel, run: ScriptRun, hooks?: ScriptRunHooks) {
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

    const [first, second] = await activityResults<LandManifestResult>(handle.workflowId, 'landManifest');
    assert.equal(first!.filesLanded, result.filesTotal);
    assert.equal(first!.filesAlreadyPresent, 0);
    assert.equal(second!.filesLanded, 1, 'only the edited file travels');
    assert.equal(second!.bytesLanded, Buffer.byteLength('second version\n'));
    assert.equal(second!.filesAlreadyPresent, result.filesTotal - 1);
    assert.equal(landings.length, 2);
    for (const { cap, unpacked } of landings) assert.equal(cap, String(unpacked), 'FERRY_ARCHIVE_MAX_BYTES is exactly the unpacked tar size');
    assert.equal(await readFile(path.join(sessionDir(runId), 'project', 'message.txt'), 'utf8'), 'second version\n');
    const logs: Buffer[] = [];
    await followLogs(stack.client, stack.blobs, handle.workflowId, false, (b) => logs.push(b));
    const log = Buffer.concat(logs).toString();
    assert.ok(log.indexOf('message: first version') < log.indexOf('message: second version'), 'both starts, in order');
    t.diagnostic(`figures: first archive ${first!.bytesDownloaded} bytes for ${first!.filesLanded} files (${first!.bytesLanded} bytes); after a one-file edit ${second!.bytesDownloaded} bytes; land caps ${landings.map((l) => l.cap).join(', ')} bytes`);
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
    const landed = await treeHashes(path.join(sessionDir('hostile'), 'project'));
    const source = await treeHashes(project);
    delete source['old.ckpt'];
    assert.deepEqual(landed, source);
    for (const dir of [root, project, process.cwd(), work]) assertNoneIn(dir, ['pwned', 'pwned2'], `nothing executed in ${dir}`);
  });

  it('an empty project fails snapshotSource with EmptyProject, not retried', async () => {
    const project = path.join(work, 'empty');
    await writeTree(project, { '.ferryignore': '*\n', 'ignored.py': 'x' });
    const handle = await start({ runId: 'empty', project: { path: project }, command: ['true'] });
    await assert.rejects(handle.result(), (err: unknown) => err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure && err.cause.type === 'EmptyProject');
    assert.deepEqual(await stepNames(handle.workflowId), ['provisionSession', 'snapshotSource', 'collectArtifacts', 'releaseSession']);
  });

  it('a worker process killed mid-upload of a 200 MB file: the next worker sends only the packs of chunks the first did not store', async (t: TestContext) => {
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
      // The chunks go into packs in file order (core/packs), and no index names them before the upload ends: what the
      // first worker stored is the packs of this plan found in the store.
      const planned = planPacks(chunks).map((pack) => ({ key: stack.blobs.packKey(sha256(packListText(pack))), bytes: pack.reduce((sum, c) => sum + c.size, 0) }));
      const inStore = new Set((await stack.blobs.listKeys(`${stack.blobs.keyPrefix}blobs/packs/`)).map(({ key }) => key));
      const storedAtKill = planned.filter((pack) => inStore.has(pack.key));
      const storedBytes = storedAtKill.reduce((sum, pack) => sum + pack.bytes, 0);
      assert.ok(storedBytes >= 48 << 20 && storedBytes < weights.length, `killed mid-upload (${storedAtKill.length} of ${planned.length} packs stored)`);

      startWorkerProcess();
      const [uploaded] = await waitFor('uploadBlobs to complete on the second worker', async () => {
        const results = await activityResults<UploadBlobsResult>(handle.workflowId, 'uploadBlobs');
        return results.length ? results : undefined;
      }, 180_000);
      await handle.terminate('test done');

      assert.ok(uploaded!.bytesUploaded <= snapshot.bytesTotal - storedBytes, 'the retry did not send chunks stored before the kill');
      assert.equal(uploaded!.bytesUploaded + uploaded!.bytesSkipped, snapshot.bytesTotal);
      assert.equal(stepsFromHistory(handle.workflowId, await history(handle.workflowId)).find((s) => s.name === 'uploadBlobs')?.attempts, 2);
      assert.equal((await stack.blobs.findStoredBlobs(chunks.map((c) => c.sha256))).size, new Set(chunks.map((c) => c.sha256)).size, 'every chunk is stored, once indexed');
      t.diagnostic(`killed with ${storedAtKill.length} of ${planned.length} packs (${storedBytes} bytes) stored; the retry sent ${uploaded!.bytesUploaded} of ${weights.length} bytes`);
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
