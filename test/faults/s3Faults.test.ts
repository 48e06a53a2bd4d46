/**
 * syncWorkflow with S3 misbehaving: the worker's S3 client and the runtime
 * agent's presigned downloads both go through a fault proxy in front of the
 * real S3 server. Every test checks that its fault fired, how the retry
 * layers (the AWS SDK's own attempts, then Temporal's activity retries)
 * absorbed it, and that nothing was lost: the blobs in S3 (read directly,
 * not through the proxy, from their packs) hash to their names and the
 * target holds exactly the source's files, with no partial or temp file
 * left. Blobs travel in pack objects (core/packs), so faults aim at the
 * pack a test's files went into: each test's bodies are its own, and the
 * tests run one at a time.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { ActivityFailure, ApplicationFailure, TerminatedFailure } from '@temporalio/common';
import { WorkflowFailedError } from '@temporalio/client';
import { S3BlobStore, createS3Clients } from '../../activities/s3BlobStore';
import { sessionRoot, type SyncInput, type SyncResult } from '../../core/sync';
import type { Step } from '../../core/history/steps';
import { chunksOf, seededBytes, sha256, treeHashes, waitFor, writeTree } from '../support/fixtures';
import { startS3FaultProxy, type S3FaultProxy, type S3Operation, type S3Request } from '../support/s3FaultProxy';
import { stepsFromHistory } from '../support/steps';
import type { TargetRef } from '../../core/target';
import { StoredChecksumMismatchError } from '../../activities/blobStore';
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

async function steps(workflowId: string): Promise<Map<string, Step>> {
  const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
  return new Map(stepsFromHistory(workflowId, history.events ?? []).map((step) => [step.name, step]));
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

/** Requests for any pack object (the worker's PUTs, the agent's presigned range GETs). */
const onPack = (operation: S3Operation, presigned = false) => (request: S3Request) =>
  request.operation === operation && request.key.startsWith(`${stack.blobs.keyPrefix}blobs/packs/`) && request.key.endsWith('.pack') && request.presigned === presigned;
const onIndex = (operation: S3Operation) => (request: S3Request) => request.operation === operation && request.key.endsWith('.index');

/** The stored blob, read from S3 itself (from its pack, or alone), hashes to its name. */
async function assertStoredIntact(content: Buffer | string): Promise<void> {
  const stored = await direct.getBlob(sha256(content));
  assert.equal(sha256(stored), sha256(content), `blob ${sha256(content)} holds the right bytes`);
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
    // attempts (the index), 6 exhaust them once (the pack: uploadBlobs attempt 1 fails) and the 6th is absorbed in attempt 2.
    faults().inject({ match: onIndex('PutObject'), fault: 'slowDown', times: 3 });
    faults().inject({ match: onPack('PutObject'), fault: 'slowDown', times: 6 });
    // The agent does not retry a download itself: each SlowDown fails one landManifest attempt.
    faults().inject({ match: onPack('GetObject', true), fault: 'slowDown', times: 2 });

    const { workflowId, result } = await sync({ sessionId: 'slow-down', source: { path: root } });
    const summary = await result;

    assertVerified(summary, hashes);
    assert.equal(faults().injected('slowDown'), 11);
    assert.equal(faults().requests(onPack('PutObject')).length, 7, 'the three files in one pack: five attempts in uploadBlobs attempt 1, two in attempt 2');
    assert.equal(new Set(faults().requests(onPack('PutObject')).map((request) => request.key)).size, 1, 'attempt 2 packed the same blobs under the same name');
    assert.ok(faults().requests(onIndex('PutObject')).length >= 4);
    const history = await steps(workflowId);
    assert.equal(history.get('uploadBlobs')?.attempts, 2);
    assert.equal(history.get('landManifest')?.attempts, 3);
    assert.equal(history.get('landManifest')?.lastRetryFailure?.type, 'BlobDownloadFailed');
    assert.match(history.get('landManifest')?.lastRetryFailure?.message ?? '', /HTTP status 503/);
    for (const content of [short, long, download]) await assertStoredIntact(content);
    await assertLandedExactly('slow-down', hashes);
    t.diagnostic(
      `slowDown injected ${faults().injected('slowDown')}; PUT pack ×${faults().requests(onPack('PutObject')).length}, index ×${faults().requests(onIndex('PutObject')).length}; ` +
        `uploadBlobs attempts ${history.get('uploadBlobs')?.attempts}, landManifest attempts ${history.get('landManifest')?.attempts}`,
    );
  });

  it('connection resets before a PUT, before a HEAD and in the middle of a download are retried and leave no partial file', BOUNDED, async (t) => {
    const put = seededBytes(90_000, 201);
    const downloaded = seededBytes(600_000, 202);
    const { root, hashes } = await writeSource('resets', { 'put.bin': put, 'nested/downloaded.bin': downloaded });
    faults().inject({ match: onPack('PutObject'), fault: 'reset', times: 2 });
    // A blob not in any pack is looked for alone (a HEAD, for so few), as one stored by an older ferry would be.
    faults().inject({ match: onObject('HeadObject', blobKeyOf(downloaded)), fault: 'reset', times: 1 });
    // The agent has written part of what it reads when the connection drops.
    faults().inject({ match: onPack('GetObject', true), fault: 'reset', times: 1, afterResponseBytes: 200_000 });

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
      `reset injected ${faults().injected('reset')}; PUT pack ×${faults().requests(onPack('PutObject')).length}; ` +
        `agent GETs of the pack ×${faults().requests(onPack('GetObject', true)).length}; landManifest attempts ${history.get('landManifest')?.attempts}`,
    );
  });

  it('PUTs of the packs holding a small file and the chunks of a large one whose answers are lost after S3 committed them end as correct packs', BOUNDED, async (t) => {
    const small = seededBytes(70_000, 301);
    // Above the 8 MiB chunking threshold: stored as content-defined chunks, in more than one pack.
    const large = seededBytes((17 << 20) + 12_345, 302);
    const { root, hashes } = await writeSource('drop-after-commit', { 'small.bin': small, 'large.bin': large });
    const chunks = chunksOf(large);
    assert.ok(chunks.length >= 3, `${chunks.length} chunks`);
    faults().inject({ match: onPack('PutObject'), fault: 'dropAfterCommit', times: 2 });

    const { workflowId, result } = await sync({ sessionId: 'drop-after-commit', source: { path: root } });
    const summary = await result;

    assertVerified(summary, hashes);
    assert.equal(faults().injected('dropAfterCommit'), 2);
    const dropped = faults().requests((request) => request.fault === 'dropAfterCommit');
    assert.deepEqual(dropped.map((request) => request.status), [200, 200], 'S3 committed every write whose answer was dropped');
    for (const { key } of dropped) assert.ok(faults().requests(onObject('PutObject', key)).length >= 2, `${key} was sent again after its answer was lost`);
    const packs = new Set(faults().requests(onPack('PutObject')).map((request) => request.key));
    assert.ok(packs.size >= 3, `${packs.size} packs for ${17 << 20} bytes`);
    for (const content of [small, ...chunks]) await assertStoredIntact(content);
    assert.equal((await direct.findStoredBlobs([sha256(large)])).size, 0, 'the large file is stored as its chunks only');
    await assertLandedExactly('drop-after-commit', hashes);
    const history = await steps(workflowId);
    t.diagnostic(
      `dropAfterCommit injected ${faults().injected('dropAfterCommit')}; ${packs.size} packs, ${faults().requests(onPack('PutObject')).length} pack PUTs; uploadBlobs attempts ${history.get('uploadBlobs')?.attempts}` +
        (history.get('uploadBlobs')?.lastRetryFailure ? ` (retried after ${history.get('uploadBlobs')?.lastRetryFailure?.type}: ${history.get('uploadBlobs')?.lastRetryFailure?.message})` : ''),
    );
  });

  it('a flipped byte in a download is refused by the agent with ChecksumMismatch, leaves nothing half written, and the retry lands the right bytes', BOUNDED, async (t) => {
    const flipped = seededBytes(300_000, 401);
    const { root, hashes } = await writeSource('flip-download', { 'model/weights.bin': flipped, 'plain.txt': `untouched ${randomUUID()}\n` });
    // The two files share one pack and one range read; the middle byte of that range lies in weights.bin.
    faults().inject({ match: onPack('GetObject', true), fault: 'flipByte', times: 1 });

    const { workflowId, result } = await sync({ sessionId: 'flip-download', source: { path: root } });
    const summary = await result;

    assertVerified(summary, hashes);
    assert.equal(faults().injected('flipByte'), 1);
    assert.equal(faults().requests(onPack('GetObject', true)).length, 2);
    const land = (await steps(workflowId)).get('landManifest');
    assert.equal(land?.attempts, 2);
    assert.equal(land?.lastRetryFailure?.type, 'ChecksumMismatch');
    assert.match(land?.lastRetryFailure?.message ?? '', new RegExp(`"model/weights\\.bin" does not match: expected 300000 bytes with sha256 ${sha256(flipped)}`));
    await assertStoredIntact(flipped);
    await assertLandedExactly('flip-download', hashes);
    t.diagnostic(`flipByte injected ${faults().injected('flipByte')}; landManifest attempts ${land?.attempts}, first failed with ${land?.lastRetryFailure?.type}`);
  });

  it('a flipped byte in an upload body is refused by S3 and sent again: the sync verifies, and only the right bytes are stored', BOUNDED, async (t) => {
    const corrupted = seededBytes(80_000, 501);
    const { root, hashes } = await writeSource('flip-upload', { 'corrupted.bin': corrupted, 'fine.txt': `fine ${randomUUID()}\n` });
    faults().inject({ match: onPack('PutObject'), fault: 'flipByte', times: 1 });

    const { workflowId, result } = await sync({ sessionId: 'flip-upload', source: { path: root } });
    assertVerified(await result, hashes);

    assert.equal(faults().injected('flipByte'), 1);
    const puts = faults().requests(onPack('PutObject'));
    assert.deepEqual(puts.map((request) => request.status), [400, 200], 'S3 refused the damaged body (its CRC32 did not match); the retry stored the whole one');
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
    faults().inject({ match: onPack('PutObject'), fault: 'flipByte', times: 1_000 });

    const { workflowId, result } = await sync({ sessionId: 'flip-upload-always', source: { path: root } });
    const handle = stack.client.workflow.getHandle(workflowId);
    // What the Web UI and `ferry timeline` show while it retries: the attempt count and the typed failure with the key.
    const pending = await waitFor('uploadBlobs to fail twice', async () => {
      const upload = (await handle.describe()).raw.pendingActivities?.find((activity) => activity.activityType?.name === 'uploadBlobs');
      return upload && (upload.attempt ?? 0) >= 3 ? upload : undefined;
    });
    await handle.terminate('test saw the retries');
    await assert.rejects(result, (err: unknown) => err instanceof WorkflowFailedError && err.cause instanceof TerminatedFailure);
    const puts = faults().requests(onPack('PutObject'));
    faults().clear();

    const key = puts[0].key;
    assert.ok(puts.every((request) => request.key === key), 'every attempt sent the same pack');
    const lastFailure = pending.lastFailure!;
    assert.equal(lastFailure.applicationFailureInfo?.type, 'ChecksumMismatch');
    assert.equal(lastFailure.applicationFailureInfo?.nonRetryable ?? false, false, 'damage on the way is worth another attempt');
    assert.ok(lastFailure.message?.includes(key), lastFailure.message ?? '');
    assert.ok(puts.length >= 2, `${puts.length} PUTs of the damaged body`);
    assert.equal(await direct.hasObject(key), false, 'S3 stored nothing under the key');

    // Nothing half-done blocks the next sync: once the network behaves, the same source syncs and verifies.
    assertVerified(await (await sync({ sessionId: 'flip-upload-always', source: { path: root } })).result, hashes);
    await assertStoredIntact(corrupted);
    t.diagnostic(`uploadBlobs attempt ${pending.attempt} pending after ${lastFailure.applicationFailureInfo?.type} on ${key}; re-sync verified`);
  });

  it("a pack damaged at rest is caught by the target's hash check, named by the blob's sha256, and put back: the landing fails BlobCorrupted, the blob is stored again alone, the next landing verifies, and a later landing on another target reads the good copy at once", BOUNDED, async (t) => {
    const victim = seededBytes(50_000, 601);
    const neighbour = `neighbour ${randomUUID()}\n`;
    const { root, hashes } = await writeSource('damaged-at-rest', { 'victim.bin': victim, 'neighbour.txt': neighbour });
    assertVerified(await (await sync({ sessionId: 'damaged-first', source: { path: root } })).result, hashes);
    // One byte of the victim's bytes in its pack changes in S3 itself, as rot or an overwrite would.
    const place = (await direct.locateBlobs([sha256(victim)])).get(sha256(victim));
    assert.ok(place, 'the victim is packed');
    const key = direct.packKey(place.pack);
    const damaged = (await direct.getObjectBytes(key))!;
    damaged[place.offset + 100] ^= 1;
    await directClient.send(new PutObjectCommand({ Bucket: stack.config.s3.bucket, Key: key, Body: damaged }));
    await assert.rejects(direct.getBlob(sha256(victim)), StoredChecksumMismatchError, 'the store now serves the damaged bytes');
    /** The sync verifies; its history shows which activities closed, how. */
    const synced = async (sessionId: string, expected: string[], target?: TargetRef): Promise<string> => {
      const run = await sync({ sessionId, source: { path: root }, ...(target ? { target } : {}) });
      assertVerified(await run.result, hashes);
      const events = (await stack.client.workflow.getHandle(run.workflowId).fetchHistory()).events ?? [];
      const names = new Map<number, string>();
      const closed: string[] = [];
      let failure: { type?: string | null; message?: string | null } | undefined;
      for (const event of events) {
        const scheduled = event.activityTaskScheduledEventAttributes;
        if (scheduled) names.set(Number(event.eventId), scheduled.activityType?.name ?? '');
        const failed = event.activityTaskFailedEventAttributes;
        if (failed) {
          failure = { type: failed.failure?.applicationFailureInfo?.type, message: failed.failure?.message };
          closed.push(`${names.get(Number(failed.scheduledEventId))}:${failure.type}`);
        }
        const completed = event.activityTaskCompletedEventAttributes;
        if (completed) closed.push(names.get(Number(completed.scheduledEventId))!);
      }
      assert.deepEqual(closed, expected);
      return failure?.message ?? '';
    };
    const onAgent = await synced('damaged-agent', ['provisionSession', 'snapshotSource', 'uploadBlobs', 'landManifest:BlobCorrupted', 'uploadBlobs', 'landManifest', 'verifyLanding']);
    assert.match(onAgent, new RegExp(`blob for "victim\\.bin" does not match: expected 50000 bytes with sha256 ${sha256(victim)}`));
    assert.deepEqual(await direct.getObjectBytes(key), damaged, 'the damaged pack itself is left as it was: marked, not rewritten');
    assert.deepEqual((await direct.getBlob(sha256(victim))).equals(victim), true, 'a reader that knew the pack reads the good copy');
    // The shell target's archive is built from the store afresh: it takes the good copy without a failed attempt (storeHealing.test.ts damages one under a shell target).
    await synced('damaged-shell', ['provisionSession', 'snapshotSource', 'uploadBlobs', 'landManifest', 'verifyLanding'], { kind: 'shell', root: path.join(work, 'shell-target') });
    t.diagnostic(`agent: ${onAgent.slice(0, 240)}`);
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
