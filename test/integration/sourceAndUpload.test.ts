/**
 * snapshotSource and uploadBlobs at the activity level, against the real S3
 * server: files changing under the snapshot, a source edited between
 * snapshot and upload, and a multipart upload resumed from heartbeat details.
 */
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createBlobActivities } from '../../activities/blobs';
import { createLocalSourceActivities } from '../../activities/localSource';
import { S3BlobStore, createS3Clients } from '../../activities/s3BlobStore';
import { seededBytes, sha256, writeTree } from '../support/fixtures';
import { startTestStack, type TestStack } from '../support/testStack';

let stack: TestStack;
let work: string;

before(async () => {
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-source-test-'));
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const MiB = 1 << 20;

/** Runs one activity function outside a worker, typed by the function. */
function runActivity<A, R>(fn: (input: A) => Promise<R>, input: A, info: { heartbeatDetails?: unknown } = {}): Promise<R> {
  return new MockActivityEnvironment(info).run(fn, input) as Promise<R>;
}

describe('snapshotSource', () => {
  it('a file that keeps changing while it is hashed fails the attempt as retryable FileChangedDuringRead', async () => {
    const source = path.join(work, 'changing');
    await writeTree(source, { 'growing.log': seededBytes(32 * MiB, 3), 'stable.txt': 'stable' });
    const writer = setInterval(() => void appendFile(path.join(source, 'growing.log'), 'x'), 1);
    try {
      const { snapshotSource } = createLocalSourceActivities({ blobs: stack.blobs });
      await assert.rejects(runActivity(snapshotSource, { path: source }), (err: unknown) => {
        assert.ok(err instanceof ApplicationFailure);
        assert.equal(err.type, 'FileChangedDuringRead');
        assert.equal(err.nonRetryable, false);
        assert.match(err.message, /"growing\.log" kept changing/);
        return true;
      });
    } finally {
      clearInterval(writer);
    }
  });

  it('reports byte-level progress through heartbeats', async () => {
    const source = path.join(work, 'progress');
    await writeTree(source, { 'a.bin': seededBytes(3 * MiB, 1), 'b.txt': 'b' });
    const env = new MockActivityEnvironment();
    const beats: { step: string; bytesDone: number; bytesTotal: number }[] = [];
    env.on('heartbeat', (details: { step: string; bytesDone: number; bytesTotal: number }) => beats.push({ ...details }));
    const { snapshotSource } = createLocalSourceActivities({ blobs: stack.blobs });
    const result = (await env.run(snapshotSource, { path: source })) as Awaited<ReturnType<typeof snapshotSource>>;
    assert.equal(result.filesTotal, 2);
    assert.equal(result.bytesTotal, 3 * MiB + 1);
    assert.ok(beats.length >= 2);
    assert.equal(beats.at(-1)?.bytesDone, 3 * MiB + 1);
    assert.ok(beats.every((b) => b.step === 'snapshotSource' && b.bytesTotal === 3 * MiB + 1));
  });
});

describe('uploadBlobs', () => {
  it('refuses non-retryably to upload a file edited since its snapshot', async () => {
    const source = path.join(work, 'edited');
    await writeTree(source, { 'model.py': 'print(1)\n' });
    const { snapshotSource } = createLocalSourceActivities({ blobs: stack.blobs });
    const { uploadBlobs } = createBlobActivities({ blobs: stack.blobs });
    const snapshot = await runActivity(snapshotSource, { path: source });
    await writeFile(path.join(source, 'model.py'), 'print(2)\n');
    await assert.rejects(runActivity(uploadBlobs, { manifestDigest: snapshot.manifestDigest, sourcePath: source }), (err: unknown) => {
      assert.ok(err instanceof ApplicationFailure);
      assert.equal(err.type, 'SourceChangedSinceSnapshot');
      assert.equal(err.nonRetryable, true);
      assert.match(err.message, /"model\.py" changed since it was snapshotted/);
      return true;
    });
  });

  it('stores a large file as content-defined chunks, and a retried upload sends only the chunks an earlier attempt did not store', async () => {
    const source = path.join(work, 'resume');
    const body = seededBytes(26 * MiB, 11);
    await writeTree(source, { 'weights.bin': body });
    const { snapshotSource } = createLocalSourceActivities({ blobs: stack.blobs });
    const snapshot = await runActivity(snapshotSource, { path: source });
    const [entry] = (await stack.blobs.getManifest(snapshot.manifestDigest)).files;
    const chunks = entry.chunks ?? [];
    assert.equal(entry.sha256, sha256(body));
    assert.ok(chunks.length >= 8, `${chunks.length} chunks`);
    assert.equal(chunks.reduce((sum, c) => sum + c.size, 0), body.length);

    // An earlier attempt that stored the first three chunks before its worker died.
    let offset = 0;
    const chunkBytes = chunks.map((chunk) => body.subarray(offset, (offset += chunk.size)));
    for (let i = 0; i < 3; i++) await stack.blobs.putVerified(stack.blobs.blobKey(chunks[i].sha256), chunkBytes[i], chunks[i].sha256);
    const alreadyStored = chunks.slice(0, 3).reduce((sum, c) => sum + c.size, 0);

    const { uploadBlobs } = createBlobActivities({ blobs: stack.blobs });
    const result = await runActivity(uploadBlobs, { manifestDigest: snapshot.manifestDigest, sourcePath: source });
    assert.equal(result.blobsTotal, new Set(chunks.map((c) => c.sha256)).size);
    assert.equal(result.bytesUploaded, body.length - alreadyStored);
    assert.equal(result.bytesSkipped, alreadyStored);

    const { client } = createS3Clients({ endpoint: stack.config.s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: stack.config.s3.credentials });
    for (const [i, chunk] of chunks.entries()) {
      const stored = await client.send(new GetObjectCommand({ Bucket: 'ferry', Key: stack.blobs.blobKey(chunk.sha256) }));
      assert.equal(sha256(Buffer.from(await stored.Body!.transformToByteArray())), sha256(chunkBytes[i]), `chunk ${i + 1}`);
    }
    assert.equal(await stack.blobs.hasObject(stack.blobs.blobKey(entry.sha256)), false, 'the whole body is not stored a second time');
  });
});

describe('S3BlobStore.findStoredBlobs', () => {
  it('finds exactly the stored blobs by listing, and by HEAD past the listing budget', async () => {
    const source = path.join(work, 'many');
    const files: Record<string, string> = {};
    for (let i = 0; i < 40; i++) files[`f${i}.txt`] = `content ${i}`;
    await writeTree(source, files);
    const { snapshotSource } = createLocalSourceActivities({ blobs: stack.blobs });
    const { uploadBlobs } = createBlobActivities({ blobs: stack.blobs });
    const snapshot = await runActivity(snapshotSource, { path: source });
    await runActivity(uploadBlobs, { manifestDigest: snapshot.manifestDigest, sourcePath: source });

    const uploaded = Object.values(files).map((body) => sha256(body));
    const absent = ['never stored 1', 'never stored 2', 'never stored 3'].map((body) => sha256(body));
    const { client, presignClient } = createS3Clients({ endpoint: stack.config.s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: stack.config.s3.credentials });
    const base = { client, presignClient, bucket: 'ferry', prefix: '', presignExpirySeconds: 300 };
    for (const listing of [
      { fromBlobs: 2 }, // listing covers the whole prefix
      { fromBlobs: 2, pageSize: 5, pageBudgetFactor: 1 }, // budget runs out: the rest by HEAD
      { fromBlobs: 1_000 }, // HEAD only
    ]) {
      const found = await new S3BlobStore({ ...base, listing }).findStoredBlobs([...uploaded, ...absent]);
      assert.deepEqual([...found].sort(), [...uploaded].sort(), JSON.stringify(listing));
    }
  });
});
