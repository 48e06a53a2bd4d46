/**
 * snapshotSource and uploadBlobs at the activity level, against the real S3
 * server: files changing under the snapshot, a source edited between
 * snapshot and upload, blobs packed into few objects and found again by a
 * new worker, an upload retried after its index was lost, the link policies
 * on a tree with links inside, outside and dangling, the size report, and a
 * dry run that stores nothing.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { closeSync, constants as fsConstants, openSync, readSync, writeSync } from 'node:fs';
import { appendFile, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { ApplicationFailure } from '@temporalio/common';
import { createBlobActivities } from '../../activities/blobs';
import { LocalSource, createLocalSourceActivities, type SnapshotSourceInput, type SnapshotSourceResult } from '../../activities/localSource';
import { createSyncPlanActivities } from '../../activities/syncPlan';
import { configureTargets } from '../../activities/targets';
import { RACY_MARGIN_NS } from '../../core/hashCache';
import { sessionRoot } from '../../core/sync';
import { blobsOfEntry, type ManifestEntry } from '../../core/manifest';
import { S3BlobStore, createS3Clients } from '../../activities/s3BlobStore';
import { seededBytes, sha256, waitFor, writeTree } from '../support/fixtures';
import { startS3FaultProxy, type S3FaultProxy } from '../support/s3FaultProxy';
import { activityEnvironment } from '../support/testLogs';
import { startTestStack, type TestStack } from '../support/testStack';

let stack: TestStack;
let work: string;
/** In front of the same S3 server, for the tests that count requests or lose one. */
let proxy: S3FaultProxy;

before(async () => {
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-source-test-'));
  proxy = await startS3FaultProxy(stack.config.s3.endpoint!);
});

after(async () => {
  await stack?.stop();
  await proxy?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

/** A blob store as a new worker has it (nothing known yet), under `prefix`, reached through the proxy. */
function freshStore(prefix: string, listing?: ConstructorParameters<typeof S3BlobStore>[0]['listing']): S3BlobStore {
  const clients = createS3Clients({ endpoint: proxy.url, region: 'us-east-1', forcePathStyle: true, credentials: stack.config.s3.credentials });
  return new S3BlobStore({ ...clients, bucket: 'ferry', prefix, presignExpirySeconds: 300, listing });
}

/** Objects stored under `prefix` (read past the proxy), by kind of key. */
async function storedUnder(prefix: string): Promise<{ packs: { key: string; size: number }[]; indexes: string[]; alone: string[] }> {
  const keys = await stack.blobs.listKeys(prefix);
  return {
    packs: keys.filter(({ key }) => key.startsWith(`${prefix}blobs/packs/`) && key.endsWith('.pack')),
    indexes: keys.filter(({ key }) => key.endsWith('.index')).map(({ key }) => key),
    alone: keys.filter(({ key }) => key.startsWith(`${prefix}blobs/sha256/`)).map(({ key }) => key),
  };
}

const MiB = 1 << 20;

/** Runs one activity function outside a worker, typed by the function. */
function runActivity<A, R>(fn: (input: A) => Promise<R>, input: A, info: { heartbeatDetails?: unknown } = {}): Promise<R> {
  return activityEnvironment(info).run(fn, input) as Promise<R>;
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
    const env = activityEnvironment();
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

describe('LocalSource hash cache', () => {
  it('a re-snapshot reads no unchanged file (its entry is the one remembered), and reads a file written since', async () => {
    const source = path.join(work, 'remembered');
    await writeTree(source, { 'a.txt': 'a\n', 'sub/b.txt': 'b\n', 'big.bin': seededBytes(9 << 20, 5) });
    // A file changed within the racy margin before it is read is never remembered: wait until the tree is older than that.
    await waitFor('the tree to be older than the racy margin', async () => {
      const newest = Math.max(...(await Promise.all(['a.txt', 'sub/b.txt', 'big.bin'].map(async (f) => (await stat(path.join(source, f))).ctimeMs))));
      return Date.now() - newest > Number(RACY_MARGIN_NS / 1_000_000n) ? true : undefined;
    }, 10_000, 20);
    const local = new LocalSource();
    const first = (await local.snapshot({ path: source })).manifest.files;
    const second = (await local.snapshot({ path: source })).manifest.files;
    assert.equal(second.length, 3);
    for (const [i, entry] of second.entries()) assert.equal(entry, first[i], `${entry.path} was taken as remembered, not read`);
    await writeFile(path.join(source, 'a.txt'), 'A\n');
    const third = (await local.snapshot({ path: source })).manifest.files;
    assert.notEqual(third[0], first[0]);
    assert.equal(third[0].sha256, sha256('A\n'));
    assert.deepEqual(third.slice(1), first.slice(1));
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

  it('stores a large file as content-defined chunks in packs, skipping the chunks an earlier attempt stored alone', async () => {
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

    // An earlier attempt (of a ferry from before packs) that stored the first three chunks alone before its worker died.
    let offset = 0;
    const chunkBytes = chunks.map((chunk) => body.subarray(offset, (offset += chunk.size)));
    for (let i = 0; i < 3; i++) await stack.blobs.putVerified(stack.blobs.blobKey(chunks[i].sha256), chunkBytes[i], chunks[i].sha256);
    const alreadyStored = chunks.slice(0, 3).reduce((sum, c) => sum + c.size, 0);

    const { uploadBlobs } = createBlobActivities({ blobs: stack.blobs });
    const result = await runActivity(uploadBlobs, { manifestDigest: snapshot.manifestDigest, sourcePath: source });
    assert.equal(result.blobsTotal, new Set(chunks.map((c) => c.sha256)).size);
    assert.equal(result.bytesUploaded, body.length - alreadyStored);
    assert.equal(result.bytesSkipped, alreadyStored);

    const places = await stack.blobs.locateBlobs(chunks.map((chunk) => chunk.sha256));
    assert.deepEqual(
      chunks.map((chunk) => places.has(chunk.sha256)),
      chunks.map((_, i) => i >= 3),
      'the chunks stored alone stay alone, the others are packed',
    );
    assert.ok(new Set([...places.values()].map((place) => place.pack)).size <= Math.ceil((body.length - alreadyStored) / (8 * MiB)) + 1, 'in packs of up to 8 MiB');
    for (const [i, chunk] of chunks.entries()) assert.equal(sha256(await stack.blobs.getBlob(chunk.sha256)), sha256(chunkBytes[i]), `chunk ${i + 1}`);
    assert.equal((await stack.blobs.findStoredBlobs([entry.sha256])).size, 0, 'the whole body is not stored a second time');
  });

  it('packs 300 small files into one object with one index; a new worker finds them all with one listing and one index read', async () => {
    const prefix = `packed-${Date.now()}/`;
    const source = path.join(work, 'small-files');
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 300; i++) files[`d${i % 10}/f${i}.bin`] = seededBytes(1_000 + i * 10, 1_000 + i);
    files['empty'] = Buffer.alloc(0);
    await writeTree(source, files);
    const blobs = freshStore(prefix);
    const snapshot = await runActivity(createLocalSourceActivities({ blobs }).snapshotSource, { path: source });
    proxy.clear();
    const result = await runActivity(createBlobActivities({ blobs }).uploadBlobs, { manifestDigest: snapshot.manifestDigest, sourcePath: source });
    assert.equal(result.blobsUploaded, 301);
    const puts = proxy.requests((request) => request.operation === 'PutObject' && request.key.startsWith(`${prefix}blobs/`));
    assert.deepEqual(puts.map((request) => request.key.replace(/[0-9a-f]{64}/, '<name>')), [`${prefix}blobs/packs/<name>.pack`, `${prefix}blobs/packs/<name>.index`], 'one pack, then its index');
    const stored = await storedUnder(prefix);
    assert.equal(stored.packs.length, 1);
    assert.equal(stored.packs[0].size, Object.values(files).reduce((sum, body) => sum + body.length, 0), 'the pack is the bodies, nothing else');
    assert.deepEqual(stored.alone, []);

    proxy.clear();
    const newWorker = freshStore(prefix);
    const found = await newWorker.findStoredBlobs(Object.values(files).map((body) => sha256(body)));
    assert.equal(found.size, 301);
    assert.deepEqual(
      proxy.requests().map((request) => `${request.operation} ${request.key.replace(/[0-9a-f]{64}/, '<name>')}`),
      [`ListObjectsV2 `, `GetObject ${prefix}blobs/packs/<name>.index`],
      'one listing of the packs folder, one read of the index',
    );
    proxy.clear();
    assert.equal((await newWorker.findStoredBlobs(Object.values(files).map((body) => sha256(body)))).size, 301);
    assert.deepEqual(proxy.requests(), [], 'asked again, the worker knows without a request');
    assert.equal((await newWorker.getBlob(sha256(files['d7/f157.bin']))).equals(files['d7/f157.bin']), true, 'a packed blob reads back by its sha256');
  });

  it('an upload retried after its index was lost sends no pack again and stores no byte twice', async () => {
    const prefix = `retried-${Date.now()}/`;
    const source = path.join(work, 'lost-index');
    const files: Record<string, Buffer> = { 'model.bin': seededBytes(18 * MiB, 21) };
    for (let i = 0; i < 200; i++) files[`src/f${i}.py`] = seededBytes(2_000 + i, 2_000 + i);
    await writeTree(source, files);
    const snapshot = await runActivity(createLocalSourceActivities({ blobs: freshStore(prefix) }).snapshotSource, { path: source });
    const isIndexPut = (request: { operation: string; key: string }) => request.operation === 'PutObject' && request.key.endsWith('.index');
    const isPackPut = (request: { operation: string; key: string }) => request.operation === 'PutObject' && request.key.endsWith('.pack');

    // The worker "dies" after its packs are stored and before its index is: every index PUT fails.
    proxy.clear();
    proxy.inject({ match: isIndexPut, fault: 'reset', times: 1_000 });
    await assert.rejects(runActivity(createBlobActivities({ blobs: freshStore(prefix) }).uploadBlobs, { manifestDigest: snapshot.manifestDigest, sourcePath: source }));
    const firstPuts = proxy.requests((request) => isPackPut(request) && request.status === 200).length;
    const afterCrash = await storedUnder(prefix);
    assert.ok(firstPuts >= 3 && afterCrash.packs.length === firstPuts, `${firstPuts} packs stored by the first attempt`);
    assert.deepEqual(afterCrash.indexes, []);

    // The next attempt, on a new worker: the blobs are not found stored (no index names them), but their packs are, by name.
    proxy.clear();
    const retried = await runActivity(createBlobActivities({ blobs: freshStore(prefix) }).uploadBlobs, { manifestDigest: snapshot.manifestDigest, sourcePath: source });
    assert.equal(proxy.requests(isPackPut).length, 0, 'no pack sent again');
    assert.equal(retried.bytesUploaded, 0);
    const afterRetry = await storedUnder(prefix);
    assert.deepEqual(afterRetry.packs, afterCrash.packs, 'the same packs, no byte stored twice');
    assert.equal(afterRetry.indexes.length, 1);
    const packedBytes = afterRetry.packs.reduce((sum, pack) => sum + pack.size, 0);
    const contentBytes = Object.values(files).reduce((sum, body) => sum + body.length, 0);
    assert.equal(packedBytes, contentBytes);
    const reader = freshStore(prefix);
    const blobsOfSnapshot = new Set((await reader.getManifest(snapshot.manifestDigest)).files.flatMap((entry) => blobsOfEntry(entry).map((blob) => blob.sha256)));
    assert.equal((await reader.findStoredBlobs([...blobsOfSnapshot])).size, blobsOfSnapshot.size, 'every blob of the snapshot is stored');
  });
});

describe('S3BlobStore.checkStoredBlob and a damaged blob replaced', () => {
  it('tell a damaged blob (in a pack or alone) from an intact or missing one; uploadBlobs with `replace` stores it again alone and marks its pack copy, so every worker reads the good copy and nothing is deleted', async () => {
    const prefix = `damaged-${Date.now()}/`;
    const source = path.join(work, 'damaged-blobs');
    const files = { 'victim.bin': seededBytes(30_000, 71), 'neighbour.bin': seededBytes(20_000, 72) };
    await writeTree(source, files);
    const blobs = freshStore(prefix);
    const snapshot = await runActivity(createLocalSourceActivities({ blobs }).snapshotSource, { path: source });
    await runActivity(createBlobActivities({ blobs }).uploadBlobs, { manifestDigest: snapshot.manifestDigest, sourcePath: source });
    const lone = Buffer.from(`stored alone ${Date.now()}\n`);
    await blobs.putBlob(sha256(lone), lone);
    const [victim, neighbour] = [sha256(files['victim.bin']), sha256(files['neighbour.bin'])];
    for (const blob of [victim, neighbour, sha256(lone)]) assert.equal(await blobs.checkStoredBlob(blob), 'intact');
    assert.equal(await blobs.checkStoredBlob(sha256('never stored')), 'missing');

    // One byte changes at rest, in the pack and in the lone object, past S3's own checks.
    const { client } = createS3Clients({ endpoint: stack.config.s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: stack.config.s3.credentials });
    const damage = async (key: string, at: number) => {
      const bytes = (await stack.blobs.getObjectBytes(key))!;
      bytes[at] ^= 1;
      await client.send(new PutObjectCommand({ Bucket: 'ferry', Key: key, Body: bytes }));
    };
    const place = (await blobs.locateBlobs([victim])).get(victim)!;
    await damage(blobs.packKey(place.pack), place.offset + 7);
    await damage(blobs.blobKey(sha256(lone)), 3);
    assert.equal(await blobs.checkStoredBlob(victim), 'damaged');
    assert.equal(await blobs.checkStoredBlob(neighbour), 'intact', "only the victim's bytes changed");
    assert.equal(await blobs.checkStoredBlob(sha256(lone)), 'damaged');
    // Another worker that knows the pack too.
    const other = freshStore(prefix);
    assert.equal((await other.findStoredBlobs([victim, neighbour])).size, 2);
    const packBefore = await stack.blobs.getObjectBytes(blobs.packKey(place.pack));

    const replaced = await runActivity(createBlobActivities({ blobs }).uploadBlobs, { manifestDigest: snapshot.manifestDigest, sourcePath: source, replace: [victim] });
    assert.deepEqual([replaced.replaced, replaced.blobsUploaded], [[victim], 1]);
    assert.deepEqual(await stack.blobs.getObjectBytes(blobs.packKey(place.pack)), packBefore, 'the pack is left as it was');
    assert.equal(await blobs.checkStoredBlob(victim), 'intact', 'this worker reads the copy stored alone');
    assert.equal(await other.checkStoredBlob(victim), 'intact', 'so does a worker that knew the pack: its check lists the packs folder and finds the marker');
    assert.deepEqual(await freshStore(prefix).locateBlobs([victim]), new Map(), 'a new worker does not place it in the pack');
    assert.equal((await freshStore(prefix).getBlob(victim)).equals(files['victim.bin']), true);
    assert.equal(await freshStore(prefix).checkStoredBlob(neighbour), 'intact', 'the pack still serves its other blobs');
  });
});

describe('S3BlobStore.findStandaloneBlobs', () => {
  it('finds exactly the blobs stored alone by listing, and by HEAD past the listing budget', async () => {
    const prefix = `alone-${Date.now()}/`;
    const bodies = Array.from({ length: 40 }, (_, i) => `content ${i}`);
    const writer = freshStore(prefix);
    for (const body of bodies) await writer.putBlob(sha256(body), Buffer.from(body));

    const uploaded = bodies.map((body) => sha256(body));
    const absent = ['never stored 1', 'never stored 2', 'never stored 3'].map((body) => sha256(body));
    for (const listing of [
      { fromBlobs: 2 }, // listing covers the whole prefix
      { fromBlobs: 2, pageSize: 5, pageBudgetFactor: 1 }, // budget runs out: the rest by HEAD
      { fromBlobs: 1_000 }, // HEAD only
    ]) {
      const store = freshStore(prefix, listing);
      assert.deepEqual([...(await store.findStandaloneBlobs([...uploaded, ...absent]))].sort(), [...uploaded].sort(), JSON.stringify(listing));
      assert.deepEqual([...(await store.findStoredBlobs([...uploaded, ...absent]))].sort(), [...uploaded].sort(), JSON.stringify(listing));
    }
  });
});

/**
 * A tree with a link inside the source, links leading outside (to a file, a
 * folder and a fifo) and a dangling one. The fifo holds bytes written by the
 * test: whoever opens and reads it takes them, so finding them still there
 * afterwards proves nothing read it. The outside file's content is only
 * ever read under `follow`, which the manifest shows.
 */
async function linkedTree(name: string): Promise<{ source: string; secret: string; fifoStillHolds: () => boolean; close: () => void }> {
  const source = path.join(work, name, 'source');
  const outside = path.join(work, name, 'outside');
  const secret = `secret outside the source ${name}\n`;
  await writeTree(source, { 'real.txt': 'real\n', 'sub/inner.txt': 'inner\n' });
  await writeTree(outside, { 'secret.txt': secret, 'dir/x.txt': 'x in an outside folder\n' });
  await promisify(execFile)('mkfifo', [path.join(outside, 'pipe')]);
  // Read-write, so neither this open nor a reader's open waits for the other side.
  const fifo = openSync(path.join(outside, 'pipe'), fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
  const marker = Buffer.from('bytes only a reader of the fifo would take');
  writeSync(fifo, marker);
  await symlink('real.txt', path.join(source, 'inside-link'));
  await symlink('sub', path.join(source, 'sub-link'));
  await symlink(path.join(outside, 'secret.txt'), path.join(source, 'outside-file'));
  await symlink(path.join(outside, 'dir'), path.join(source, 'outside-dir'));
  await symlink(path.join(outside, 'pipe'), path.join(source, 'outside-fifo'));
  await symlink('missing.txt', path.join(source, 'dangling'));
  return {
    source,
    secret,
    fifoStillHolds: () => {
      const back = Buffer.alloc(marker.length + 16);
      let read = 0;
      try {
        read = readSync(fifo, back);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      }
      return back.subarray(0, read).equals(marker);
    },
    close: () => closeSync(fifo),
  };
}

const entriesOf = async (snapshot: SnapshotSourceResult) => (await stack.blobs.getManifest(snapshot.manifestDigest)).files.map((f: ManifestEntry) => [f.path, f.link ?? null, f.sha256]);

describe('snapshotSource link policies', () => {
  const snapshotWith = (input: SnapshotSourceInput) => runActivity(createLocalSourceActivities({ blobs: stack.blobs }).snapshotSource, input);

  it('skip (the default) leaves out links leading outside and dangling ones, lists them, and never reads outside', async () => {
    const tree = await linkedTree('skip');
    try {
      const snapshot = await snapshotWith({ path: tree.source });
      assert.deepEqual(await entriesOf(snapshot), [
        ['inside-link', null, sha256('real\n')],
        ['real.txt', null, sha256('real\n')],
        ['sub/inner.txt', null, sha256('inner\n')],
      ]);
      assert.deepEqual(snapshot.linksSkipped, {
        total: 4,
        first: [
          { path: 'dangling', target: 'missing.txt', why: 'dangling' },
          { path: 'outside-dir', target: path.join(work, 'skip', 'outside', 'dir'), why: 'outside' },
          { path: 'outside-fifo', target: path.join(work, 'skip', 'outside', 'pipe'), why: 'outside' },
          { path: 'outside-file', target: path.join(work, 'skip', 'outside', 'secret.txt'), why: 'outside' },
        ],
      });
      assert.deepEqual(snapshot.skipped, [{ path: 'sub-link', reason: 'symlink to a directory inside the source: its target is synced under its own path' }]);
      assert.ok(tree.fifoStillHolds(), 'the fifo outside was never read');

      const { uploadBlobs } = createBlobActivities({ blobs: stack.blobs });
      await runActivity(uploadBlobs, { manifestDigest: snapshot.manifestDigest, sourcePath: snapshot.sourcePath });
      assert.equal((await stack.blobs.findStoredBlobs([sha256(tree.secret)])).size, 0, 'the outside file is not in the store');
    } finally {
      tree.close();
    }
  });

  it('error fails non-retryably on the first link leading outside or nowhere, reading nothing outside', async () => {
    const tree = await linkedTree('error');
    try {
      await assert.rejects(snapshotWith({ path: tree.source, links: 'error' }), (err: unknown) => {
        assert.ok(err instanceof ApplicationFailure);
        assert.equal(err.type, 'SymlinkOutsideRoot');
        assert.equal(err.nonRetryable, true);
        assert.match(err.message, /^symlink "(dangling|outside-[a-z]+)" (points to nothing|points outside the source folder)/);
        return true;
      });
      assert.ok(tree.fifoStillHolds());
    } finally {
      tree.close();
    }
  });

  it('copy keeps every link as a link entry (its text and the text\'s sha256) and stores no blob for it', async () => {
    const tree = await linkedTree('copy');
    try {
      const snapshot = await snapshotWith({ path: tree.source, links: 'copy' });
      const outside = path.join(work, 'copy', 'outside');
      const link = (p: string, text: string) => [p, text, sha256(text)];
      assert.deepEqual(await entriesOf(snapshot), [
        link('dangling', 'missing.txt'),
        link('inside-link', 'real.txt'),
        link('outside-dir', path.join(outside, 'dir')),
        link('outside-fifo', path.join(outside, 'pipe')),
        link('outside-file', path.join(outside, 'secret.txt')),
        ['real.txt', null, sha256('real\n')],
        // Code-unit order: '-' sorts before '/'.
        link('sub-link', 'sub'),
        ['sub/inner.txt', null, sha256('inner\n')],
      ]);
      assert.deepEqual(snapshot.linksSkipped, { total: 0, first: [] });
      assert.ok(tree.fifoStillHolds());
      const { uploadBlobs } = createBlobActivities({ blobs: stack.blobs });
      const upload = await runActivity(uploadBlobs, { manifestDigest: snapshot.manifestDigest, sourcePath: snapshot.sourcePath });
      assert.equal(upload.blobsTotal, 2, 'the two files only');
      assert.equal((await stack.blobs.findStoredBlobs([sha256('real.txt')])).size, 0, 'a link text is not a blob');
    } finally {
      tree.close();
    }
  });

  it('follow syncs what outside links lead to under the link\'s path, and still never opens the fifo', async () => {
    const tree = await linkedTree('follow');
    try {
      const snapshot = await snapshotWith({ path: tree.source, links: 'follow' });
      assert.deepEqual(await entriesOf(snapshot), [
        ['inside-link', null, sha256('real\n')],
        ['outside-dir/x.txt', null, sha256('x in an outside folder\n')],
        ['outside-file', null, sha256(tree.secret)],
        ['real.txt', null, sha256('real\n')],
        ['sub/inner.txt', null, sha256('inner\n')],
      ]);
      assert.deepEqual(snapshot.linksSkipped.first, [{ path: 'dangling', target: 'missing.txt', why: 'dangling' }]);
      assert.deepEqual(
        snapshot.skipped.map((s) => s.path),
        ['outside-fifo', 'sub-link'],
      );
      assert.ok(tree.fifoStillHolds(), 'a fifo is not a file, followed or not');
      const { uploadBlobs } = createBlobActivities({ blobs: stack.blobs });
      await runActivity(uploadBlobs, { manifestDigest: snapshot.manifestDigest, sourcePath: snapshot.sourcePath });
      assert.equal((await stack.blobs.findStoredBlobs([sha256(tree.secret)])).size, 1, 'followed on purpose, so stored');
    } finally {
      tree.close();
    }
  });
});

describe('snapshotSource size report and dry run', () => {
  it('names the largest folder of a generated tree and the usually-ignored ones, with lines that ignore them', async () => {
    const source = path.join(work, 'sized');
    const files: Record<string, Buffer | string> = { 'train.py': 'print(1)\n', 'package.json': '{}' };
    for (let i = 0; i < 6; i++) files[`checkpoints/epoch${i}/model.bin`] = seededBytes(300_000, i + 1);
    for (let i = 0; i < 30; i++) files[`data/part${i}.csv`] = seededBytes(20_000, 100 + i);
    for (let i = 0; i < 50; i++) files[`node_modules/pkg${i}/index.js`] = `module.exports = ${i};\n`;
    await writeTree(source, files);
    const { snapshotSource } = createLocalSourceActivities({ blobs: stack.blobs });
    const snapshot = await runActivity(snapshotSource, { path: source, sizeWarningBytes: 1_000_000 });
    const report = snapshot.sizeReport;
    assert.ok(report);
    assert.equal(report.large, true);
    assert.deepEqual(
      report.folders.map((f) => [f.path, f.files, f.ignoreLine, f.usuallyIgnored ?? null]),
      [
        ['checkpoints', 6, 'checkpoints/', 'model checkpoints'],
        ['node_modules', 50, 'node_modules/', 'npm packages'],
        ['data', 30, '/data/', null],
      ],
    );
    assert.equal(report.folders[0].bytes, 6 * 300_000);
    const quiet = await runActivity(snapshotSource, { path: path.join(source, 'data'), sizeWarningBytes: 1_000_000 });
    assert.equal(quiet.sizeReport, undefined, 'a small tree without usually-ignored folders says nothing');
  });

  it('a dry run stores nothing in S3, provisions nothing, and says what an upload would send and what the target already holds', async () => {
    const source = path.join(work, 'dry');
    const newText = `new ${Date.now()}\n`;
    await writeTree(source, { 'stored.txt': 'already in the store\n', 'new.txt': newText, 'big.bin': seededBytes(9 << 20, 77) });
    await stack.blobs.putBlob(sha256('already in the store\n'), Buffer.from('already in the store\n'));
    const { client } = createS3Clients({ endpoint: stack.config.s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: stack.config.s3.credentials });
    const keys = async () => {
      const all: string[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: 'ferry', ContinuationToken: token }));
        all.push(...(page.Contents ?? []).map((o) => `${o.Key}:${o.ETag}`));
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return all.sort();
    };
    // The local session already holds one of the files (the same bytes) and an older version of another.
    const held = path.join(stack.agentRoot, sessionRoot('dry-held'), 'data');
    await writeTree(held, { 'stored.txt': 'already in the store\n', 'new.txt': 'an older version\n' });
    const before = await keys();
    const localSource = new LocalSource();
    const { planSync } = createSyncPlanActivities({ blobs: stack.blobs, source: localSource, targets: configureTargets({ settings: (name) => stack.settings[name], blobs: stack.blobs }) });
    const dry = await runActivity(planSync, { source: { path: source }, sessionId: 'dry-held', target: { kind: 'local' }, dest: 'data' });
    assert.deepEqual(await keys(), before, 'no object was written');
    assert.equal(dry.filesTotal, 3);
    assert.equal(dry.store.blobsTotal, dry.store.blobsNew + 1, 'every blob but the stored one is new');
    assert.equal(dry.store.bytesNew, (9 << 20) + newText.length, 'the chunks of big.bin and new.txt');
    assert.deepEqual(
      [dry.landing.filesHeld, dry.landing.filesToLand, dry.landing.bytesToLand],
      [1, 2, (9 << 20) + newText.length],
      'the target hashed what it holds: stored.txt is there, new.txt differs, big.bin is missing',
    );
    const fresh = await runActivity(planSync, { source: { path: source }, sessionId: 'dry-fresh', target: { kind: 'local' }, dest: 'data' });
    assert.deepEqual([fresh.landing.filesHeld, fresh.landing.filesToLand], [0, 3]);
    await assert.rejects(stat(path.join(stack.agentRoot, sessionRoot('dry-fresh'))), { code: 'ENOENT' }, 'a dry run provisions no session');

    const { snapshotSource } = createLocalSourceActivities({ blobs: stack.blobs, source: localSource });
    const stored = await runActivity(snapshotSource, { path: source });
    assert.equal(stored.manifestDigest, dry.manifestDigest, 'the dry run named the manifest the real snapshot stores');
    assert.equal(await stack.blobs.hasObject(stored.manifestKey), true);
  });
});
