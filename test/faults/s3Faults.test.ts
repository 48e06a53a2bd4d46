/**
 * syncWorkflow with S3 misbehaving: the worker's S3 client and the runtime
 * agent's presigned downloads both go through a fault proxy in front of the
 * real S3 server. Every test checks that its fault fired, how the retry
 * layers (the AWS SDK's own attempts, then Temporal's activity retries)
 * absorbed it, and that nothing was lost: the blobs in S3 (read directly,
 * not through the proxy) hash to their keys and the target holds exactly
 * the source's files, with no partial or temp file left.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { S3BlobStore, createS3Clients } from '../../activities/s3BlobStore';
import { summarizeHistory } from '../../client/history';
import { sessionRoot, type SyncInput, type SyncResult } from '../../core/sync';
import { buildTimeline, type TimelineStep } from '../../core/timeline';
import { chunksOf, seededBytes, sha256, treeHashes, waitFor, writeTree } from '../support/fixtures';
import { startS3FaultProxy, type S3FaultProxy, type S3Operation, type S3Request } from '../support/s3FaultProxy';
import { resultOf, startTestStack, type TestStack } from '../support/testStack';

/** Each workflow must settle well inside this, retries and backoff included. */
const WORKFLOW_TIMEOUT_MS = 90_000;
/** A test also reads history and S3 after its workflow settled. */
const BOUNDED = { timeout: 120_000 };

let stack: TestStack;
let proxy: S3FaultProxy | undefined;
/** The same S3 server without the proxy, to check what is really stored. */
let direct: S3BlobStore;
let directClient: ReturnType<typeof createS3Clients>['client'];
let work: string;

before(async () => {
  let realEndpoint = '';
  stack = await startTestStack({
    wrapS3Endpoint: async (endpoint) => {
      realEndpoint = endpoint;
      proxy = await startS3FaultProxy(endpoint);
      return proxy.url;
    },
  });
  const { s3 } = stack.config;
  const clients = createS3Clients({ ...s3, endpoint: realEndpoint });
  directClient = clients.client;
  direct = new S3BlobStore({ ...clients, bucket: s3.bucket, prefix: s3.prefix, presignExpirySeconds: 60 });
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-s3-faults-'));
});

after(async () => {
  await stack?.stop();
  await proxy?.close();
  directClient?.destroy();
  if (work) await rm(work, { recursive: true, force: true });
});

beforeEach(() => faults().clear());

function faults(): S3FaultProxy {
  assert.ok(proxy, 'the fault proxy is running');
  return proxy;
}

async function sync(input: SyncInput): Promise<{ workflowId: string; result: Promise<SyncResult> }> {
  const workflowId = `s3-fault-${randomUUID()}`;
  const handle = await stack.client.workflow.start('syncWorkflow', {
    taskQueue: stack.config.temporal.taskQueue,
    workflowId,
    args: [input],
    workflowExecutionTimeout: WORKFLOW_TIMEOUT_MS,
  });
  return { workflowId, result: resultOf<SyncResult>(handle) };
}

async function steps(workflowId: string): Promise<Map<string, TimelineStep>> {
  const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
  return new Map(buildTimeline(summarizeHistory(history.events ?? []), 1e9).steps.map((step) => [step.name, step]));
}

/** A source tree whose bodies no other test uploads (blobs are content-addressed, so a shared body would skip its PUT). */
async function writeSource(name: string, files: Record<string, Buffer | string>): Promise<{ root: string; hashes: Record<string, string> }> {
  const root = path.join(work, name);
  await writeTree(root, files);
  return { root, hashes: await treeHashes(root) };
}

const onObject = (operation: S3Operation, key: string, presigned = false) => (request: S3Request) =>
  request.operation === operation && request.key === key && request.presigned === presigned;

const blobKeyOf = (content: Buffer | string) => stack.blobs.blobKey(sha256(content));

/** The stored blob, read from S3 itself, hashes to its name. */
async function assertStoredIntact(content: Buffer | string): Promise<void> {
  const key = blobKeyOf(content);
  const stored = await direct.getObjectBytes(key);
  assert.ok(stored, `${key} is stored`);
  assert.equal(sha256(stored), sha256(content), `${key} holds the right bytes`);
}

/** The session folder holds exactly the source's files (same hashes), so no partial or temp file is left. */
async function assertLandedExactly(sessionId: string, expected: Record<string, string>): Promise<void> {
  const sessionDir = path.join(stack.agentRoot, sessionRoot(sessionId));
  const landed = await treeHashes(sessionDir);
  const underData = Object.fromEntries(Object.entries(expected).map(([file, hash]) => [`data/${file}`, hash]));
  assert.deepEqual(landed, underData);
}

function assertVerified(summary: SyncResult, hashes: Record<string, string>): void {
  assert.equal(summary.verified, true);
  assert.equal(summary.filesTotal, Object.keys(hashes).length);
  assert.equal(summary.filesVerified, summary.filesTotal);
}

/** The workflow's failure, its step's activity failure, and the activity's own typed failure. */
async function workflowFailure(result: Promise<SyncResult>): Promise<{ workflow: ApplicationFailure; activity: ApplicationFailure }> {
  const err = await result.then(
    () => assert.fail('the sync should have failed'),
    (rejection: unknown) => rejection,
  );
  assert.ok(err instanceof WorkflowFailedError, String(err));
  assert.ok(err.cause instanceof ApplicationFailure, String(err.cause));
  const step = err.cause.cause;
  assert.ok(step instanceof ActivityFailure && step.cause instanceof ApplicationFailure, String(step));
  return { workflow: err.cause, activity: step.cause };
}

describe('sync through S3 faults', () => {
  it('503 SlowDown: the SDK absorbs a short burst, a longer one costs an uploadBlobs attempt, failed downloads cost landManifest attempts', BOUNDED, async (t) => {
    const short = seededBytes(150_000, 101);
    const long = seededBytes(120_000, 102);
    const download = `downloaded after two SlowDowns ${randomUUID()}\n`;
    const { root, hashes } = await writeSource('slow-down', { 'short.bin': short, 'long.bin': long, 'download.txt': download });
    // The worker's SDK makes 5 attempts per request (createS3Clients): 3 SlowDowns stay inside one request's
    // attempts, 6 exhaust them once (uploadBlobs attempt 1 fails) and the 6th is absorbed in attempt 2.
    faults().inject({ match: onObject('PutObject', blobKeyOf(short)), fault: 'slowDown', times: 3 });
    faults().inject({ match: onObject('PutObject', blobKeyOf(long)), fault: 'slowDown', times: 6 });
    // The agent does not retry a download itself: each SlowDown fails one landManifest attempt.
    faults().inject({ match: onObject('GetObject', blobKeyOf(download), true), fault: 'slowDown', times: 2 });

    const { workflowId, result } = await sync({ sessionId: 'slow-down', source: { path: root } });
    const summary = await result;

    assertVerified(summary, hashes);
    assert.equal(faults().injected('slowDown'), 11);
    assert.equal(faults().requests(onObject('PutObject', blobKeyOf(long))).length, 7, 'five attempts in uploadBlobs attempt 1, two in attempt 2');
    assert.ok(faults().requests(onObject('PutObject', blobKeyOf(short))).length >= 4);
    const history = await steps(workflowId);
    assert.equal(history.get('uploadBlobs')?.attempts, 2);
    assert.equal(history.get('landManifest')?.attempts, 3);
    assert.equal(history.get('landManifest')?.lastRetryFailure?.type, 'BlobDownloadFailed');
    assert.match(history.get('landManifest')?.lastRetryFailure?.message ?? '', /HTTP status 503/);
    for (const content of [short, long, download]) await assertStoredIntact(content);
    await assertLandedExactly('slow-down', hashes);
    t.diagnostic(
      `slowDown injected ${faults().injected('slowDown')}; PUT short.bin ×${faults().requests(onObject('PutObject', blobKeyOf(short))).length}, ` +
        `long.bin ×${faults().requests(onObject('PutObject', blobKeyOf(long))).length}; uploadBlobs attempts ${history.get('uploadBlobs')?.attempts}, landManifest attempts ${history.get('landManifest')?.attempts}`,
    );
  });

  it('connection resets before a PUT, before a HEAD and in the middle of a download are retried and leave no partial file', BOUNDED, async (t) => {
    const put = seededBytes(90_000, 201);
    const downloaded = seededBytes(600_000, 202);
    const { root, hashes } = await writeSource('resets', { 'put.bin': put, 'nested/downloaded.bin': downloaded });
    faults().inject({ match: onObject('PutObject', blobKeyOf(put)), fault: 'reset', times: 2 });
    faults().inject({ match: onObject('HeadObject', blobKeyOf(downloaded)), fault: 'reset', times: 1 });
    // The agent has written part of its temp file when the connection drops.
    faults().inject({ match: onObject('GetObject', blobKeyOf(downloaded), true), fault: 'reset', times: 1, afterResponseBytes: 200_000 });

    const { workflowId, result } = await sync({ sessionId: 'resets', source: { path: root } });
    const summary = await result;

    assertVerified(summary, hashes);
    assert.equal(faults().injected('reset'), 4);
    const history = await steps(workflowId);
    assert.equal(history.get('uploadBlobs')?.attempts, 1, 'the SDK retried the PUT and the HEAD itself');
    assert.equal(history.get('landManifest')?.attempts, 2, 'the broken download failed one landManifest attempt');
    assert.equal(history.get('landManifest')?.lastRetryFailure?.type, 'BlobDownloadFailed');
    for (const content of [put, downloaded]) await assertStoredIntact(content);
    await assertLandedExactly('resets', hashes);
    t.diagnostic(
      `reset injected ${faults().injected('reset')}; PUT put.bin ×${faults().requests(onObject('PutObject', blobKeyOf(put))).length}; ` +
        `agent GETs of downloaded.bin ×${faults().requests(onObject('GetObject', blobKeyOf(downloaded), true)).length}; landManifest attempts ${history.get('landManifest')?.attempts}`,
    );
  });

  it('a PUT of a small blob and a PUT of one chunk of a large file whose answers are lost after S3 committed them end as correct blobs', BOUNDED, async (t) => {
    const small = seededBytes(70_000, 301);
    // Above the 8 MiB chunking threshold: stored as content-defined chunks.
    const large = seededBytes((17 << 20) + 12_345, 302);
    const { root, hashes } = await writeSource('drop-after-commit', { 'small.bin': small, 'large.bin': large });
    const chunks = chunksOf(large);
    assert.ok(chunks.length >= 3, `${chunks.length} chunks`);
    const secondChunkKey = blobKeyOf(chunks[1]);
    faults().inject({ match: onObject('PutObject', blobKeyOf(small)), fault: 'dropAfterCommit', times: 1 });
    faults().inject({ match: onObject('PutObject', secondChunkKey), fault: 'dropAfterCommit', times: 1 });

    const { workflowId, result } = await sync({ sessionId: 'drop-after-commit', source: { path: root } });
    const summary = await result;

    assertVerified(summary, hashes);
    assert.equal(faults().injected('dropAfterCommit'), 2);
    const dropped = faults().requests((request) => request.fault === 'dropAfterCommit');
    assert.deepEqual(dropped.map((request) => request.status), [200, 200], 'S3 committed every write whose answer was dropped');
    assert.ok(faults().requests(onObject('PutObject', secondChunkKey)).length >= 2, 'the chunk was sent again after its answer was lost');
    assert.ok(faults().requests(onObject('PutObject', blobKeyOf(small))).length >= 2, 'the PUT was sent again after its answer was lost');
    for (const content of [small, ...chunks]) await assertStoredIntact(content);
    assert.equal(await direct.hasObject(blobKeyOf(large)), false, 'the large file is stored as its chunks only');
    await assertLandedExactly('drop-after-commit', hashes);
    const history = await steps(workflowId);
    t.diagnostic(
      `dropAfterCommit injected ${faults().injected('dropAfterCommit')}; PUT small.bin ×${faults().requests(onObject('PutObject', blobKeyOf(small))).length}; ` +
        `PUT chunk 2 of ${chunks.length} ×${faults().requests(onObject('PutObject', secondChunkKey)).length}; uploadBlobs attempts ${history.get('uploadBlobs')?.attempts}` +
        (history.get('uploadBlobs')?.lastRetryFailure ? ` (retried after ${history.get('uploadBlobs')?.lastRetryFailure?.type}: ${history.get('uploadBlobs')?.lastRetryFailure?.message})` : ''),
    );
  });

  it('a flipped byte in a download is refused by the agent with ChecksumMismatch, leaves nothing half written, and the retry lands the right bytes', BOUNDED, async (t) => {
    const flipped = seededBytes(300_000, 401);
    const { root, hashes } = await writeSource('flip-download', { 'model/weights.bin': flipped, 'plain.txt': `untouched ${randomUUID()}\n` });
    faults().inject({ match: onObject('GetObject', blobKeyOf(flipped), true), fault: 'flipByte', times: 1 });

    const { workflowId, result } = await sync({ sessionId: 'flip-download', source: { path: root } });
    const summary = await result;

    assertVerified(summary, hashes);
    assert.equal(faults().injected('flipByte'), 1);
    assert.equal(faults().requests(onObject('GetObject', blobKeyOf(flipped), true)).length, 2);
    const land = (await steps(workflowId)).get('landManifest');
    assert.equal(land?.attempts, 2);
    assert.equal(land?.lastRetryFailure?.type, 'ChecksumMismatch');
    assert.match(land?.lastRetryFailure?.message ?? '', /"model\/weights\.bin" does not match/);
    await assertStoredIntact(flipped);
    await assertLandedExactly('flip-download', hashes);
    t.diagnostic(`flipByte injected ${faults().injected('flipByte')}; landManifest attempts ${land?.attempts}, first failed with ${land?.lastRetryFailure?.type}`);
  });

  it('a flipped byte in an upload body is refused by S3 and sent again: the sync verifies, and only the right bytes are stored', BOUNDED, async (t) => {
    const corrupted = seededBytes(80_000, 501);
    const { root, hashes } = await writeSource('flip-upload', { 'corrupted.bin': corrupted, 'fine.txt': `fine ${randomUUID()}\n` });
    const key = blobKeyOf(corrupted);
    faults().inject({ match: onObject('PutObject', key), fault: 'flipByte', times: 1 });

    const { workflowId, result } = await sync({ sessionId: 'flip-upload', source: { path: root } });
    assertVerified(await result, hashes);

    assert.equal(faults().injected('flipByte'), 1);
    const puts = faults().requests(onObject('PutObject', key));
    assert.deepEqual(puts.map((request) => request.status), [400, 200], 'S3 refused the damaged body; the retry stored the whole one');
    const upload = (await steps(workflowId)).get('uploadBlobs');
    assert.equal(upload?.attempts, 2);
    assert.equal(upload?.lastRetryFailure?.type, 'ChecksumMismatch');
    await assertStoredIntact(corrupted);
    await assertLandedExactly('flip-upload', hashes);
    t.diagnostic(`flipByte injected ${faults().injected('flipByte')}; PUT statuses ${puts.map((request) => request.status).join(', ')}; uploadBlobs attempts ${upload?.attempts}`);
  });

  it('an upload body damaged on every attempt keeps failing as retryable ChecksumMismatch naming the key, and nothing is stored under it', BOUNDED, async (t) => {
    const corrupted = seededBytes(60_000, 502);
    const { root, hashes } = await writeSource('flip-upload-always', { 'corrupted.bin': corrupted });
    const key = blobKeyOf(corrupted);
    faults().inject({ match: onObject('PutObject', key), fault: 'flipByte', times: 1_000 });

    const { workflowId, result } = await sync({ sessionId: 'flip-upload-always', source: { path: root } });
    const handle = stack.client.workflow.getHandle(workflowId);
    // What the Web UI and `ferry timeline` show while it retries: the attempt count and the typed failure with the key.
    const pending = await waitFor('uploadBlobs to fail twice', async () => {
      const upload = (await handle.describe()).raw.pendingActivities?.find((activity) => activity.activityType?.name === 'uploadBlobs');
      return upload && (upload.attempt ?? 0) >= 3 ? upload : undefined;
    });
    await handle.terminate('test saw the retries');
    await assert.rejects(result, WorkflowFailedError);
    const puts = faults().requests(onObject('PutObject', key)).length;
    faults().clear();

    const lastFailure = pending.lastFailure!;
    assert.equal(lastFailure.applicationFailureInfo?.type, 'ChecksumMismatch');
    assert.equal(lastFailure.applicationFailureInfo?.nonRetryable ?? false, false, 'damage on the way is worth another attempt');
    assert.ok(lastFailure.message?.includes(key), lastFailure.message ?? '');
    assert.ok(puts >= 2, `${puts} PUTs of the damaged body`);
    assert.equal(await direct.hasObject(key), false, 'S3 stored nothing under the key');

    // Nothing half-done blocks the next sync: once the network behaves, the same source syncs and verifies.
    assertVerified(await (await sync({ sessionId: 'flip-upload-always', source: { path: root } })).result, hashes);
    await assertStoredIntact(corrupted);
    t.diagnostic(`uploadBlobs attempt ${pending.attempt} pending after ${lastFailure.applicationFailureInfo?.type} on ${key}; re-sync verified`);
  });

  it('a manifest read damaged on the way is read again and the sync verifies; one damaged at rest fails non-retryably with ChecksumMismatch and the key', BOUNDED, async (t) => {
    const isManifestRead = (request: S3Request) => request.operation === 'GetObject' && !request.presigned && request.key.startsWith(`${stack.blobs.keyPrefix}manifests/`);
    const once = await writeSource('flip-manifest-once', { 'only.txt': `manifest test ${randomUUID()}\n` });
    faults().inject({ match: isManifestRead, fault: 'flipByte', times: 1 });
    const healed = await sync({ sessionId: 'flip-manifest-once', source: { path: once.root } });
    assertVerified(await healed.result, once.hashes);
    assert.equal(faults().injected('flipByte'), 1);
    assert.equal((await steps(healed.workflowId)).get('uploadBlobs')?.attempts, 1, 'healed inside the read, not by an activity retry');

    // Every read damaged, as stored bytes that no longer match their name would be.
    const always = await writeSource('flip-manifest-always', { 'only.txt': `manifest test ${randomUUID()}\n` });
    faults().inject({ match: isManifestRead, fault: 'flipByte', times: 1_000 });
    const { workflowId, result } = await sync({ sessionId: 'flip-manifest-always', source: { path: always.root } });
    const { workflow, activity } = await workflowFailure(result);
    const flipped = faults().injected('flipByte');
    faults().clear();

    assert.equal(workflow.type, 'ChecksumMismatch');
    assert.equal(activity.nonRetryable, true);
    const details = activity.details?.[0] as { key: string; expected: string; actual: string };
    assert.match(details.key, /^manifests\/sha256\/[0-9a-f]{64}\.json$/);
    assert.notEqual(details.actual, details.expected);
    assert.equal(flipped, 1 + 2, 'the healed read, then two reads of the damaged one');
    assert.equal((await steps(workflowId)).get('uploadBlobs')?.attempts, 1);
    // The manifest itself is intact in S3: only the bytes on the wire were wrong.
    const stored = await direct.getObjectBytes(details.key);
    assert.ok(stored);
    assert.equal(sha256(stored), details.expected);
    t.diagnostic(`one flipped read healed; every read flipped → ${workflow.type} on ${details.key} after 1 attempt (${flipped} flips in all)`);
  });
});
