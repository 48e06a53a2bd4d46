/**
 * The benchmark's S3 request counter (bench/requests.ts and its proxy
 * process, bench/s3CountingProxy.ts) in front of a real SeaweedFS: requests
 * pass through unchanged (signatures, presigned URLs, bodies) and are
 * counted by operation and by signing, with the body bytes each way.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, NotFound, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { requestsBetween, requestsPer8MiB, startS3RequestCounter, type S3RequestCounter } from '../../bench/requests';
import { freePort } from '../../client/ports';
import { repoRoot, resolveTool } from '../../client/tools';
import { startS3Server } from '../../client/s3Server';
import { type StartedServer } from '../../client/managedProcess';

const BUCKET = 'counted';
const credentials = { accessKeyId: 'benchcounter', secretAccessKey: randomBytes(16).toString('hex') };

let dir: string;
let s3: StartedServer | undefined;
let counter: S3RequestCounter | undefined;
let client: S3Client;

before(
  async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-bench-counter-'));
    const port = await freePort();
    s3 = await startS3Server({ binary: resolveTool('weed', repoRoot()), dataDir: path.join(dir, 's3'), host: '127.0.0.1', port, ...credentials, bucket: BUCKET, logFile: path.join(dir, 's3.log') });
    counter = await startS3RequestCounter(`http://127.0.0.1:${port}`);
    // Checksums only where required: the body on the wire is then exactly the object's bytes.
    client = new S3Client({ endpoint: counter.url, region: 'us-east-1', forcePathStyle: true, credentials, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
  },
  { timeout: 120_000 },
);

after(async () => {
  client?.destroy();
  await counter?.close();
  await s3?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('bench S3 request counter', { timeout: 60_000 }, () => {
  it('counts header-signed and presigned requests by operation, with their body bytes', async () => {
    const body = randomBytes(1000);
    const before = await counter!.counts();
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'dir/a.bin', Body: body }));
    await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'dir/a.bin' }));
    await assert.rejects(client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'dir/missing.bin' })), NotFound);
    const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'dir/a.bin' }));
    assert.deepEqual(Buffer.from(await got.Body!.transformToByteArray()), body, 'the proxy passes bodies through unchanged');
    const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'dir/' }));
    assert.deepEqual(listed.Contents?.map((c) => c.Key), ['dir/a.bin']);
    const afterHeader = await counter!.counts();
    const url = await getSignedUrl(client, new GetObjectCommand({ Bucket: BUCKET, Key: 'dir/a.bin' }), { expiresIn: 60 });
    const presigned = await fetch(url);
    assert.equal(presigned.status, 200);
    assert.deepEqual(Buffer.from(await presigned.arrayBuffer()), body, 'a presigned URL stays valid through the proxy');
    const after = await counter!.counts();

    const up = requestsBetween(before, after, ['header'], 'requestBytes');
    assert.deepEqual(up, { requests: 5, failed: 1, byOperation: { PutObject: 1, HeadObject: 2, GetObject: 1, ListObjectsV2: 1 }, bytes: body.length });
    assert.deepEqual(requestsBetween(before, afterHeader, ['presigned'], 'responseBytes'), { requests: 0, failed: 0, byOperation: {}, bytes: 0 });
    assert.deepEqual(requestsBetween(afterHeader, after, ['presigned'], 'responseBytes'), { requests: 1, failed: 0, byOperation: { GetObject: 1 }, bytes: body.length });
    assert.equal(requestsBetween(afterHeader, after, ['header', 'presigned'], 'responseBytes').requests, 1, 'nothing else went through between the readings');
  });

  it('states requests per 8 MiB of the bytes moved, and none when nothing moved', () => {
    assert.equal(requestsPer8MiB({ requests: 4, failed: 0, byOperation: { PutObject: 4 }, bytes: 16 * 2 ** 20 }), 2);
    assert.equal(requestsPer8MiB({ requests: 3, failed: 0, byOperation: { ListObjectsV2: 3 }, bytes: 0 }), null);
  });
});
