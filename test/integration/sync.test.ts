/**
 * syncWorkflow end to end against a real Temporal dev server, a real S3
 * server and a real runtime agent.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { lstat, mkdtemp, readFile, readlink, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { createSessionActivities } from '../../activities/session';
import { activityDepsFromConfig } from '../../worker/worker';
import { createLocalSourceActivities } from '../../activities/localSource';
import { createManifest, manifestKey } from '../../core/manifest';
import { sessionRoot, type SyncDryRun, type SyncInput, type SyncResult } from '../../core/sync';
import { repoRoot, resolveTool } from '../../client/tools';
import { startLyingAgent } from '../support/agentDoubles';
import { sha256, treeHashes, writeSampleProject, writeTree } from '../support/fixtures';
import { stepsFromHistory } from '../support/steps';
import { activityEnvironment } from '../support/testLogs';
import { resultOf, startTestStack, type TestStack } from '../support/testStack';

const run = promisify(execFile);
let stack: TestStack;
let work: string;

before(async () => {
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-sync-test-'));
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function sync(input: SyncInput, taskQueue = stack.config.temporal.taskQueue) {
  const workflowId = `sync-test-${randomUUID()}`;
  const handle = await stack.client.workflow.start('syncWorkflow', { taskQueue, workflowId, args: [input] });
  return { workflowId, handle, result: resultOf<SyncResult>(handle) };
}

async function activityNames(workflowId: string): Promise<string[]> {
  const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
  return stepsFromHistory(workflowId, history.events ?? []).map((s) => s.name);
}

const landedDir = (sessionId: string, dest = 'data') => path.join(stack.agentRoot, sessionRoot(sessionId), dest);

describe('syncWorkflow', () => {
  it('lands and verifies a project, honouring ignore rules, with its steps in history: provision, snapshot, upload, land, verify', async () => {
    const source = path.join(work, 'happy');
    const { synced, ignored } = await writeSampleProject(source);
    const { workflowId, result } = await sync({ sessionId: 'happy', source: { path: source } });
    const summary = await result;

    assert.equal(summary.verified, true);
    assert.equal(summary.filesTotal, synced.length);
    assert.equal(summary.filesVerified, synced.length);
    assert.equal(summary.bytesUploaded + summary.bytesSkipped, summary.bytesTotal);
    assert.equal(summary.bytesLanded, summary.bytesTotal);
    assert.match(summary.manifestDigest, /^[0-9a-f]{64}$/);

    const expected = await treeHashes(source);
    const landed = await treeHashes(landedDir('happy'));
    assert.deepEqual(Object.keys(landed).sort(), synced);
    for (const file of synced) assert.equal(landed[file], expected[file], file);
    for (const file of ignored) assert.equal(landed[file], undefined, `${file} should be ignored`);
    assert.equal((await stat(path.join(landedDir('happy'), 'scripts/run.sh'))).mode & 0o777, 0o755);

    assert.deepEqual(await activityNames(workflowId), ['provisionSession', 'snapshotSource', 'uploadBlobs', 'landManifest', 'verifyLanding']);
  });

  it('re-sync uploads nothing but still lands and verifies; one changed file uploads only that file', async () => {
    const source = path.join(work, 'incremental');
    await writeSampleProject(source);
    const first = await (await sync({ sessionId: 'incremental', source: { path: source } })).result;
    assert.ok(first.verified);
    assert.equal(await stack.blobs.blobsMarkedStored(first.manifestDigest), true, "the finished upload marked the manifest's blobs stored, so a re-sync need not list them");

    const again = await sync({ sessionId: 'incremental', source: { path: source } });
    const second = await again.result;
    assert.equal(second.bytesUploaded, 0);
    assert.equal(second.blobsUploaded, 0);
    assert.equal(second.filesLanded, 0);
    assert.equal(second.filesVerified, first.filesTotal);
    assert.deepEqual(await activityNames(again.workflowId), ['provisionSession', 'snapshotSource', 'uploadBlobs', 'landManifest', 'verifyLanding']);

    const changed = 'changed contents of the readme, longer than before\n';
    await writeFile(path.join(source, 'README.md'), changed);
    const third = await (await sync({ sessionId: 'incremental', source: { path: source } })).result;
    assert.equal(third.blobsUploaded, 1);
    assert.equal(third.bytesUploaded, Buffer.byteLength(changed));
    assert.equal(third.filesLanded, 1);
    assert.equal(await readFile(path.join(landedDir('incremental'), 'README.md'), 'utf8'), changed);
  });

  it('a file corrupted or deleted on the target is detected and repaired by the next sync', async () => {
    const source = path.join(work, 'repair');
    await writeSampleProject(source);
    await (await sync({ sessionId: 'repair', source: { path: source } })).result;
    const csv = path.join(landedDir('repair'), 'data/sales.csv');
    await writeFile(csv, 'tampered');
    await unlink(path.join(landedDir('repair'), 'sub/app.py'));

    const repaired = await (await sync({ sessionId: 'repair', source: { path: source } })).result;
    assert.equal(repaired.bytesUploaded, 0);
    assert.equal(repaired.filesLanded, 2);
    assert.equal(sha256(await readFile(csv)), sha256(await readFile(path.join(source, 'data/sales.csv'))));
    assert.ok((await stat(path.join(landedDir('repair'), 'sub/app.py'))).isFile());
  });

  it('an agent that answers success but writes nothing fails verifyLanding with the paths, after retries', async () => {
    const source = path.join(work, 'liar');
    await writeTree(source, { 'input.csv': 'a,b\n1,2\n', 'more/notes.txt': 'n' });
    const bootId = randomUUID();
    const liar = await startLyingAgent(bootId);
    try {
      const taskQueue = 'ferry-test-liar';
      await stack.startWorker({ taskQueue, localAgent: { url: liar.url, token: 'liar-token-000000' } });
      const { workflowId, result } = await sync({ sessionId: 'liar', source: { path: source } }, taskQueue);
      await assert.rejects(result, (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError);
        assert.ok(err.cause instanceof ApplicationFailure);
        assert.equal(err.cause.type, 'VerificationFailed');
        assert.match(err.cause.message, /verifyLanding failed: .*2 missing \("input\.csv", "more\/notes\.txt"\)/);
        return true;
      });
      const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
      const verify = stepsFromHistory(workflowId, history.events ?? []).find((s) => s.name === 'verifyLanding');
      assert.equal(verify?.attempts, 3);
      assert.equal(verify?.status, 'failed');
      assert.ok(liar.landRequests >= 1);
    } finally {
      await liar.close();
    }
  });

  it('refuses path traversal in a manifest before any target sees it, and the agent refuses it too', async () => {
    const sessionId = 'traversal';
    const env = activityEnvironment();
    const activities = createSessionActivities({ blobs: stack.blobs, targets: activityDepsFromConfig(stack.config).targets });
    for (const hostile of ['../x', '/etc/x', 'a/../../x']) {
      const ref = await stack.blobs.putManifest(createManifest([{ path: hostile, size: 1, mode: 0o644, sha256: sha256('x') }]));
      await assert.rejects(
        env.run(activities.landManifest, { sessionId, target: { kind: 'local' }, dest: 'data', manifestDigest: ref.manifestDigest }),
        (err: unknown) => err instanceof ApplicationFailure && err.type === 'UnsafePath' && err.nonRetryable === true && err.message.includes(hostile),
      );
    }
    const response = await fetch(`${stack.agent.url}/v1/land`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.agentToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ dir: 'sessions/traversal/data', files: [{ path: '../x', size: 1, mode: 420, sha256: sha256('x'), url: 'http://127.0.0.1:1/x' }] }),
    });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as { error: { type: string } }).error.type, 'UnsafePath');
    await assert.rejects(stat(path.join(stack.agentRoot, 'sessions', 'traversal')), { code: 'ENOENT' });
    await assert.rejects(stat(path.join(stack.agentRoot, 'x')), { code: 'ENOENT' });
  });

  it('starts from the temporal CLI with plain JSON; a wrong shape fails with InvalidInput; runs are found by FerrySessionId', async () => {
    const temporal = resolveTool('temporal', repoRoot());
    const address = ['--address', stack.config.temporal.address];
    const source = path.join(work, 'from-temporal-cli');
    await writeTree(source, { 'in.csv': 'x,y\n1,2\n' });
    const workflowId = `sync-temporal-cli-${randomUUID()}`;
    const start = (id: string, input: unknown) =>
      run(temporal, ['workflow', 'start', ...address, '--task-queue', stack.config.temporal.taskQueue, '--type', 'syncWorkflow', '--workflow-id', id, '--input', JSON.stringify(input)]);
    await start(workflowId, { sessionId: 'temporal-cli', source: { path: source } });
    const result = (await stack.client.workflow.getHandle(workflowId).result()) as SyncResult;
    assert.equal(result.verified, true);
    assert.equal(result.filesVerified, 1);

    const badId = `sync-bad-${randomUUID()}`;
    await start(badId, { session: 'x', source: 'nope' });
    await assert.rejects(stack.client.workflow.getHandle(badId).result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure);
      assert.equal(err.cause.type, 'InvalidInput');
      assert.match(err.cause.message, /sessionId is required .*; source\.path must be a non-empty string/);
      return true;
    });

    let listed = '';
    for (let tries = 0; tries < 50 && !listed.includes(workflowId); tries++) {
      listed = (await run(temporal, ['workflow', 'list', ...address, '--query', 'FerrySessionId="temporal-cli"', '--output', 'json'])).stdout;
      if (!listed.includes(workflowId)) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(listed.includes(workflowId), 'the run is listed by its FerrySessionId search attribute');
  });

  it('the agent answers 401 without the token', async () => {
    assert.equal((await fetch(`${stack.agent.url}/v1/health`)).status, 401);
    assert.equal((await fetch(`${stack.agent.url}/v1/health`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
    assert.equal((await fetch(`${stack.agent.url}/v1/health`, { headers: { authorization: `Bearer ${stack.agentToken}` } })).status, 200);
  });

  it('fails non-retryably with a clear type on bad input, and on a symlink leaving the source under links: error', async () => {
    const bad = await sync({ sessionId: '../evil', source: { path: '' } } as SyncInput);
    await assert.rejects(bad.result, (err: unknown) => err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure && err.cause.type === 'InvalidInput');

    const source = path.join(work, 'escape');
    await writeTree(source, { 'ok.txt': 'ok' });
    await symlink('/etc/hostname', path.join(source, 'link'));
    const env = activityEnvironment();
    const { snapshotSource } = createLocalSourceActivities({ blobs: stack.blobs });
    await assert.rejects(
      env.run(snapshotSource, { path: source, links: 'error' as const }),
      (err: unknown) => err instanceof ApplicationFailure && err.type === 'SymlinkOutsideRoot' && err.nonRetryable && /"link"/.test(err.message),
    );
    const refused = await sync({ sessionId: 'escape', source: { path: source }, links: 'error' });
    await assert.rejects(refused.result, (err: unknown) => err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure && err.cause.type === 'SymlinkOutsideRoot');
  });

  it('by default a link leaving the source is left out and named in the result; the rest syncs', async () => {
    const source = path.join(work, 'skip-links');
    await writeTree(source, { 'ok.txt': 'ok' });
    await symlink('/etc/hostname', path.join(source, 'hostname'));
    await symlink('ok.txt', path.join(source, 'alias.txt'));
    const summary = await (await sync({ sessionId: 'skip-links', source: { path: source } })).result;
    assert.equal(summary.verified, true);
    assert.deepEqual(summary.linksSkipped, { total: 1, first: [{ path: 'hostname', target: '/etc/hostname', why: 'outside' }] });
    assert.deepEqual(await treeHashes(landedDir('skip-links')), { 'alias.txt': sha256('ok'), 'ok.txt': sha256('ok') });
  });

  it('links: copy lands links as links, verifies them by their text, and repairs one replaced on the target', async () => {
    const source = path.join(work, 'copy-links');
    await writeTree(source, { 'data/a.csv': 'a,b\n' });
    await symlink('data/a.csv', path.join(source, 'latest.csv'));
    await symlink('/etc/hostname', path.join(source, 'hostname'));
    await symlink('nowhere', path.join(source, 'dangling'));
    const summary = await (await sync({ sessionId: 'copy-links', source: { path: source }, links: 'copy' })).result;
    assert.equal(summary.verified, true);
    assert.equal(summary.filesVerified, 4);
    const landed = landedDir('copy-links');
    assert.equal(await readlink(path.join(landed, 'latest.csv')), 'data/a.csv');
    assert.equal(await readlink(path.join(landed, 'hostname')), '/etc/hostname');
    assert.equal(await readlink(path.join(landed, 'dangling')), 'nowhere');
    assert.equal(await readFile(path.join(landed, 'latest.csv'), 'utf8'), 'a,b\n', 'a relative link inside works on the target too');

    // Code on the target replaces a link by a file holding its text: verification tells them apart, the next sync repairs it.
    await unlink(path.join(landed, 'latest.csv'));
    await writeFile(path.join(landed, 'latest.csv'), 'data/a.csv');
    const again = await (await sync({ sessionId: 'copy-links', source: { path: source }, links: 'copy' })).result;
    assert.equal(again.filesLanded, 1);
    assert.ok((await lstat(path.join(landed, 'latest.csv'))).isSymbolicLink());
  });

  it('a dry run stores, uploads and lands nothing, and returns the plan', async () => {
    const source = path.join(work, 'dry-run');
    await writeTree(source, { 'only-here.txt': `planned ${randomUUID()}\n` });
    const { workflowId, handle } = await sync({ sessionId: 'dry-run', source: { path: source }, dryRun: true });
    const plan = (await handle.result()) as unknown as SyncDryRun;
    assert.equal(plan.dryRun, true);
    assert.equal(plan.filesTotal, 1);
    assert.deepEqual(plan.store, { blobsTotal: 1, blobsNew: 1, bytesNew: plan.bytesTotal });
    assert.deepEqual([plan.landing.filesHeld, plan.landing.filesToLand, plan.landing.bytesToLand], [0, 1, plan.bytesTotal]);
    assert.equal(await stack.blobs.hasObject(manifestKey(stack.config.s3.prefix, plan.manifestDigest)), false);
    assert.deepEqual(await activityNames(workflowId), ['planSync']);
    await assert.rejects(stat(landedDir('dry-run')), { code: 'ENOENT' });
  });
});
