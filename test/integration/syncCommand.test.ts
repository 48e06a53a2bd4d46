/**
 * `ferry sync` as the CLI runs it (client/commands runSync, its output
 * written off a terminal), against the real stack with a proxy in front of
 * S3 that can hold uploads and counts every request: the size report is
 * printed while the upload is still held, progress lines count blobs and
 * files, heartbeats carry the same figures, a cold sync of 2,000 small files
 * costs a few requests each way, and a dry run writes nothing to S3.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createS3Clients } from '../../activities/s3BlobStore';
import { formatSyncSummary, runSync } from '../../client/commands';
import { pendingSteps } from '../../client/progress';
import { sessionRoot } from '../../core/sync';
import { seededBytes, treeHashes, waitFor, writeTree } from '../support/fixtures';
import { startS3FaultProxy, type S3FaultProxy } from '../support/s3FaultProxy';
import { startTestStack, type TestStack } from '../support/testStack';

let stack: TestStack;
let proxy: S3FaultProxy;
let work: string;

before(async () => {
  stack = await startTestStack({
    wrapS3Endpoint: async (endpoint) => {
      proxy = await startS3FaultProxy(endpoint);
      return proxy.url;
    },
  });
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-sync-command-'));
});

after(async () => {
  await stack?.stop();
  await proxy?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

/** What the CLI writes to stderr when it is not a terminal, kept as text. */
function captured(): { stream: NodeJS.WriteStream; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString('utf8');
      done();
    },
  });
  return { stream: stream as unknown as NodeJS.WriteStream, text: () => text };
}

const isBlobPut = (request: { operation: string; key: string }) => request.operation === 'PutObject' && request.key.startsWith('blobs/');

describe('ferry sync (runSync)', () => {
  it('prints the size report while the upload is still held, and periodic progress lines counting blobs and files', async (t: TestContext) => {
    const source = path.join(work, 'project');
    const files: Record<string, Buffer | string> = { 'train.py': 'print("train")\n', 'package.json': '{}\n' };
    for (let i = 0; i < 20; i++) files[`node_modules/dep${i}/index.js`] = `module.exports = ${i};\n`;
    for (let i = 0; i < 4; i++) files[`data/shard${i}.bin`] = seededBytes(300_000, 500 + i);
    await writeTree(source, files);
    await symlink('/etc/hostname', path.join(source, 'hostname'));
    await symlink('train.py', path.join(source, 'main.py'));
    proxy.clear();
    proxy.inject({ match: isBlobPut, fault: 'hold', times: 1_000 });

    const output = captured();
    const running = runSync(stack.client, stack.config, { dir: source, sessionId: 'cmd-report', dest: 'data', target: { kind: 'local' }, showProgress: true, sizeWarningBytes: 1_000_000, progressLineEveryMs: 50 }, output.stream);
    running.catch(() => undefined);
    try {
      await waitFor('the size report', async () => (output.text().includes('npm packages') ? true : undefined));
      assert.deepEqual(
        proxy.requests(isBlobPut).filter((request) => request.status !== undefined),
        [],
        'no blob reached S3 before the report was printed',
      );
      // Off a terminal: a line when the step starts, then one per period while it runs.
      await waitFor('two upload progress lines', async () => ((output.text().match(/^… uploadBlobs /gm) ?? []).length >= 2 ? true : undefined));
      // What the Web UI shows: the heartbeat details of the pending upload.
      const handle = stack.client.workflow.getHandle(await waitFor('the running sync', latestSyncId));
      const upload = await waitFor('the upload heartbeat', async () => (await pendingSteps(handle)).find((s) => s.activityType === 'uploadBlobs' && s.progress)?.progress);
      assert.deepEqual([upload.blobsTotal, upload.filesTotal], [26, 27], 'blobs to upload (main.py is train.py: one blob), and the files of the manifest');
    } finally {
      proxy.release();
    }
    const summary = await running;
    const text = output.text();
    assert.match(text, /^⚠ [\d.]+ MiB in 27 files: over the 976\.6 KiB size warning/m);
    assert.match(text, /node_modules\/ +npm packages, usually ignored +node_modules\/$/m);
    assert.match(text, /^… uploadBlobs \d+% \d+\/26 blobs · \d+\/27 files · /m);
    const printed = formatSyncSummary(summary);
    assert.match(printed, /^✔ synced 27 files/);
    assert.match(printed, /links {6}1 symlink left out.*\n {13}hostname -> \/etc\/hostname\n/);
    t.diagnostic(`what the user saw on stderr:\n${text}\nand on stdout:\n${printed}`);
  });

  it('a cold sync of 2,000 small files costs a few S3 requests each way, not one per file, and lands verified', async (t: TestContext) => {
    const source = path.join(work, 'many-small');
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 2_000; i++) files[`d${i % 20}/f${i}.dat`] = seededBytes(1_000 + ((i * 37) % 7_000), 9_000 + i);
    await writeTree(source, files);
    const bytes = Object.values(files).reduce((sum, body) => sum + body.length, 0);
    proxy.clear();
    const summary = await runSync(stack.client, stack.config, { dir: source, sessionId: 'cmd-many-small', dest: 'data', target: { kind: 'local' }, showProgress: false }, captured().stream);
    assert.ok('verified' in summary && summary.verified, 'verified on the target');
    assert.equal(summary.filesVerified, 2_000);
    assert.deepEqual(await treeHashes(path.join(stack.agentRoot, sessionRoot('cmd-many-small'), 'data')), await treeHashes(source));

    const byOperation = (presigned: boolean) => {
      const counts: Record<string, number> = {};
      for (const request of proxy.requests((r) => r.presigned === presigned)) counts[request.operation] = (counts[request.operation] ?? 0) + 1;
      return counts;
    };
    const up = byOperation(false);
    const down = byOperation(true);
    const total = (counts: Record<string, number>) => Object.values(counts).reduce((sum, n) => sum + n, 0);
    // ${bytes} bytes are 2 packs of up to 8 MiB. Up: the packs, their index, the manifest, the marker, and the look-ups
    // around them; down: one range read per pack (one land request).
    assert.ok((up.PutObject ?? 0) <= 5, `PUTs: ${JSON.stringify(up)}`);
    assert.ok(total(up) <= 14, `worker requests: ${JSON.stringify(up)}`);
    assert.deepEqual(Object.keys(down), ['GetObject'], JSON.stringify(down));
    assert.ok(down.GetObject <= 3, `target requests: ${JSON.stringify(down)}`);
    t.diagnostic(`${bytes} bytes in 2,000 files: worker ${JSON.stringify(up)}, target ${JSON.stringify(down)}`);
  });

  it('--dry-run prints the plan and writes nothing to S3', async () => {
    const source = path.join(work, 'dry');
    await writeTree(source, { 'a.txt': `a ${Date.now()}\n`, 'b.txt': 'b\n' });
    const { client } = createS3Clients({ endpoint: stack.config.s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: stack.config.s3.credentials });
    const objects = async () => JSON.stringify((await client.send(new ListObjectsV2Command({ Bucket: 'ferry' }))).Contents?.map((o) => [o.Key, o.ETag]) ?? []);
    const before = await objects();
    proxy.clear();
    const output = captured();
    const summary = await runSync(stack.client, stack.config, { dir: source, sessionId: 'cmd-dry', dest: 'data', target: { kind: 'local' }, showProgress: true, dryRun: true }, output.stream);
    assert.equal(await objects(), before);
    assert.deepEqual(
      proxy.requests((request) => request.method !== 'GET' && request.method !== 'HEAD').map((request) => `${request.method} ${request.key}`),
      [],
      'no write request reached S3',
    );
    assert.match(formatSyncSummary(summary), /^dry run: 2 files .* nothing was stored, uploaded or landed\n {2}manifest {3}[0-9a-f]{64} \(not stored\)\n {2}store {6}2 blobs of 2 new to the store/);
  });
});

/** The id of the newest sync workflow, as the CLI's run started it. */
async function latestSyncId(): Promise<string | undefined> {
  for await (const execution of stack.client.workflow.list({ query: 'WorkflowType = "syncWorkflow" AND ExecutionStatus = "Running"' })) return execution.workflowId;
  return undefined;
}
