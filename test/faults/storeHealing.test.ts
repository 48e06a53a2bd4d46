/**
 * A blob the store holds with the wrong bytes (issue 17, item 4), on the
 * real stack: stored blobs — a small file's and one chunk of a large
 * file's — are overwritten through S3 (real SeaweedFS), as anyone holding
 * write access to the bucket could. The upload skips blobs the store has,
 * so before, every later landing of that content fetched the same bad
 * bytes until its retries ran out. Now the target's checksum failure is
 * traced to the store (`BlobCorrupted`), the blob is uploaded again from
 * the source and the landing repeated — on an agent target and on a script
 * target (whose archive is built on the worker) — and where no local source
 * holds the blob (an S3 input) the run fails at once, naming it.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { createS3Clients } from '../../activities/s3BlobStore';
import { StoredChecksumMismatchError } from '../../activities/blobStore';
import { PipelineClient } from '../../client/pipelineClient';
import { FailureType } from '../../core/errors';
import type { Manifest } from '../../core/manifest';
import type { SyncResult } from '../../core/sync';
import type { TargetRef } from '../../core/target';
import type { Step } from '../../core/history/steps';
import { seededBytes, writeTree } from '../support/fixtures';
import { stepsFromHistory } from '../support/steps';
import { resultOf, startTestStack, type TestStack } from '../support/testStack';

let stack: TestStack;
let work: string;
let source: string;
let manifest: Manifest;

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const SMALL = Buffer.from('region,total\nnorth,1200\nsouth,800\n');
/** Past the 8 MiB chunking threshold: stored as chunks. */
const LARGE = seededBytes(9 << 20, 17);

before(async () => {
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-store-healing-'));
  source = path.join(work, 'source');
  await writeTree(source, { 'totals.csv': SMALL, 'model.bin': LARGE, 'README.md': 'healing\n' });
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/**
 * Overwrites a stored blob's bytes with others of the same length, as a
 * plain S3 PUT (no checksum) would: inside the pack that holds it, or its
 * own object when it is stored alone.
 */
async function overwriteBlob(blobSha256: string): Promise<void> {
  const { client } = createS3Clients(stack.config.s3);
  const place = (await stack.blobs.locateBlobs([blobSha256])).get(blobSha256);
  const key = place ? stack.blobs.packKey(place.pack) : stack.blobs.blobKey(blobSha256);
  const bad = (await stack.blobs.getObjectBytes(key))!;
  bad[(place?.offset ?? 0) + (((place?.size ?? bad.length) >> 1))] ^= 0xff;
  await client.send(new PutObjectCommand({ Bucket: stack.config.s3.bucket, Key: key, Body: bad }));
  await assert.rejects(stack.blobs.getBlob(blobSha256), StoredChecksumMismatchError, `the store now holds other bytes (${place ? 'in a pack' : 'alone'})`);
}

async function sync(sessionId: string, target?: TargetRef): Promise<{ workflowId: string; result: Promise<SyncResult> }> {
  const workflowId = `store-healing-${sessionId}`;
  const handle = await stack.client.workflow.start('syncWorkflow', {
    taskQueue: stack.config.temporal.taskQueue,
    workflowId,
    args: [{ sessionId, source: { path: source }, ...(target ? { target } : {}) }],
  });
  return { workflowId, result: resultOf<SyncResult>(handle) };
}

async function steps(workflowId: string): Promise<Step[]> {
  const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
  return stepsFromHistory(workflowId, history.events ?? []);
}

/** The landing's steps as `name` or `name:FailureType`, from the first landManifest on. */
function landingSteps(all: Step[]): string[] {
  const named = all.map((s) => (s.status === 'failed' ? `${s.name}:${s.failure?.type}` : s.name));
  return named.slice(named.findIndex((name) => name.startsWith('landManifest')));
}

describe('a blob stored with the wrong bytes', () => {
  it('a sync to the local agent after a small blob and a chunk were overwritten: each damaged file fails landManifest once with BlobCorrupted, its blobs are uploaded again from the source, and the landing verifies', async (t: TestContext) => {
    const first = await sync('healthy');
    assert.equal((await first.result).verified, true);
    manifest = await stack.blobs.getManifest((await first.result).manifestDigest);
    const model = manifest.files.find((f) => f.path === 'model.bin')!;
    assert.ok(model.chunks && model.chunks.length > 1, 'the large file is stored as chunks');
    const damaged = [sha256(SMALL), model.chunks[1]!.sha256];
    for (const blob of damaged) await overwriteBlob(blob);

    const second = await sync('after-damage');
    const result = await second.result;
    assert.equal(result.verified, true, 'the new session holds the right bytes, re-hashed there');
    assert.equal(result.blobsUploaded, 0, 'the upload itself skipped the stored (damaged) blobs, as before');
    const landing = landingSteps(await steps(second.workflowId));
    assert.deepEqual(landing, ['landManifest:BlobCorrupted', 'uploadBlobs', 'landManifest:BlobCorrupted', 'uploadBlobs', 'landManifest', 'verifyLanding'], 'one failure and one upload per damaged file, then the landing');
    const all = await steps(second.workflowId);
    const failures = all.filter((s) => s.failure?.type === FailureType.BlobCorrupted);
    assert.ok(failures.every((s) => s.attempts === 1), 'BlobCorrupted is not retried: landing again would fetch the same bytes');
    const named = failures.flatMap((s) => (s.failure?.details as { sha256s?: string[] } | undefined)?.sha256s ?? []).sort();
    assert.deepEqual(named, [...damaged].sort(), 'each failure names the damaged blob by sha256');
    for (const blob of damaged) assert.equal(sha256(await stack.blobs.getBlob(blob)), blob, 'the store holds the right bytes again');
    t.diagnostic(`figures: ${landing.join(' → ')}; damaged ${damaged.map((s) => s.slice(0, 12)).join(', ')} named and put back`);
  });

  it('a sync to a shell target (the worker builds its archive from the store) after the small blob was overwritten again: the same repair', async (t: TestContext) => {
    await overwriteBlob(sha256(SMALL));
    const root = path.join(work, 'shell-target');
    const shell = await sync('shell-after-damage', { kind: 'shell', root } as TargetRef);
    const result = await shell.result;
    assert.equal(result.verified, true);
    const landing = landingSteps(await steps(shell.workflowId));
    assert.deepEqual(landing, ['landManifest:BlobCorrupted', 'uploadBlobs', 'landManifest', 'verifyLanding']);
    assert.equal(sha256(await stack.blobs.getBlob(sha256(SMALL))), sha256(SMALL));
    t.diagnostic(`figures: ${landing.join(' → ')}`);
  });

  it('a pipeline whose S3 input’s blob was overwritten: no local source holds it, so the run fails at once with BlobCorrupted naming it', async (t: TestContext) => {
    const body = Buffer.from('quarter,total\nq1,42\n');
    await stack.blobs.putVerified('incoming-healing/q1.csv', body, sha256(body));
    await stack.blobs.putBlob(sha256(body), body);
    await overwriteBlob(sha256(body));
    const pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
    const { workflowId } = await pipelines.start({ sessionId: 's3-input-damaged', inputs: [{ s3: `s3://${stack.config.s3.bucket}/incoming-healing/` }], stages: ['coder'] });
    await assert.rejects(resultOf(stack.client.workflow.getHandle(workflowId)), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure, String(err));
      assert.equal(err.cause.type, FailureType.BlobCorrupted);
      assert.match(err.cause.message, new RegExp(`${sha256(body)} of "q1\\.csv", and no local source of this landing holds it`));
      return true;
    });
    const landing = landingSteps(await steps(workflowId)).filter((name) => name !== 'releaseSession');
    assert.deepEqual(landing, ['landManifest:BlobCorrupted'], 'one attempt, no upload to try');
    t.diagnostic(`figures: ${landing.join(' → ')}; the pipeline failed naming blob ${sha256(body).slice(0, 12)}`);
  });
});
