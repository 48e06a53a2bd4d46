/**
 * What workflow history holds, read the way an operator would export it
 * (`temporal workflow show --output json`): never the agent token, the S3
 * secret key or a presigned URL, with payload encryption off or on, and
 * never a file's bytes, in any workflow type (sync, pipeline, training,
 * files) — whether the file was synced, landed, collected or listed. With it
 * on (FERRY_CODEC_KEY), the run is served by the production worker process
 * (`node dist/worker/main.js` with a prebuilt workflow bundle and Prometheus
 * metrics), inputs and results are ciphertext in the export, the codec
 * server decodes them, and SIGTERM stops the worker cleanly.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { Client } from '@temporalio/client';
import { freePort } from '../../client/ports';
import { repoRoot, resolveTool } from '../../client/tools';
import { spawnManaged } from '../../client/managedProcess';
import { PipelineClient } from '../../client/pipelineClient';
import type { SyncResult } from '../../core/sync';
import type { TrainingResult } from '../../core/training';
import type { SessionFilesResult } from '../../workflows/files';
import { payloadFromJson, startCodecServer, type JsonPayload } from '../../temporal/codecServer';
import { AesGcmPayloadCodec, payloadCodecsFor } from '../../temporal/payloadCodec';
import { sha256, writeSampleProject, writeTree } from '../support/fixtures';
import { startTestStack, workflowBundle, type TestStack } from '../support/testStack';
import { defaultPayloadConverter } from '@temporalio/common';

const run = promisify(execFile);
let stack: TestStack;
let work: string;

before(async () => {
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-history-'));
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** The history as `temporal workflow show --output json` prints it. */
async function exportHistory(workflowId: string): Promise<string> {
  const { stdout } = await run(resolveTool('temporal', repoRoot()), [
    'workflow',
    'show',
    '--workflow-id',
    workflowId,
    '--output',
    'json',
    '--address',
    stack.config.temporal.address,
    '--namespace',
    stack.config.temporal.namespace,
  ]);
  return stdout;
}

interface FoundPayload {
  path: string;
  payload: JsonPayload;
  encoding: string;
  text: string;
}

/** Every payload object in the export ({metadata, data}), with its bytes as text, so base64 cannot hide a secret. */
function payloadsIn(history: string): FoundPayload[] {
  const found: FoundPayload[] = [];
  const walk = (value: unknown, at: string) => {
    if (Array.isArray(value)) return value.forEach((item, i) => walk(item, `${at}[${i}]`));
    if (typeof value !== 'object' || value === null) return;
    const record = value as Record<string, unknown>;
    if (typeof record.metadata === 'object' && record.metadata !== null && 'encoding' in record.metadata) {
      const payload = record as JsonPayload;
      found.push({
        path: at,
        payload,
        encoding: Buffer.from(payload.metadata!.encoding, 'base64').toString(),
        text: Buffer.from(payload.data ?? '', 'base64').toString('latin1'),
      });
      return;
    }
    for (const [key, child] of Object.entries(record)) walk(child, `${at}.${key}`);
  };
  walk(JSON.parse(history), '$');
  return found;
}

/** Every place a secret or a body could hide in the export: the JSON itself and each payload's decoded bytes. */
function historyCorpus(history: string): string {
  return `${history}\n${payloadsIn(history)
    .map((p) => p.text)
    .join('\n')}`;
}

function assertNoSecrets(history: string, label: string): void {
  const corpus = historyCorpus(history);
  const secrets = {
    'agent token': stack.agentToken,
    'S3 secret key': stack.settings.FERRY_S3_SECRET_ACCESS_KEY!,
  };
  for (const [name, secret] of Object.entries(secrets)) assert.ok(!corpus.includes(secret), `${label}: history holds the ${name}`);
  assert.doesNotMatch(corpus, /X-Amz-Signature|X-Amz-Credential/i, `${label}: history holds a presigned URL`);
}

/** A file body no input or name carries: finding it in history means a file's bytes went there. */
const markedBody = (label: string) => `${label} body ${randomBytes(16).toString('hex')}\n`;

function assertNoFileBodies(history: string, bodies: string[], label: string): void {
  const corpus = historyCorpus(history);
  for (const body of bodies) assert.ok(!corpus.includes(body.trim()), `${label}: history holds the file body ${JSON.stringify(body.trim())}`);
}

async function syncOn(client: Client, taskQueue: string, sessionId: string): Promise<{ workflowId: string; source: string; result: SyncResult }> {
  const source = path.join(work, `source-${sessionId}-${randomUUID()}`);
  await writeSampleProject(source);
  const workflowId = `sync-${sessionId}-${randomUUID()}`;
  const handle = await client.workflow.start('syncWorkflow', { taskQueue, workflowId, args: [{ sessionId, source: { path: source } }] });
  return { workflowId, source, result: (await handle.result()) as SyncResult };
}

describe('secrets in workflow history', () => {
  it('codec off: inputs and results are readable, and no token, S3 secret or presigned URL is among them', async () => {
    const { workflowId, source, result } = await syncOn(stack.client, stack.config.temporal.taskQueue, 'plain');
    assert.equal(result.verified, true);
    const history = await exportHistory(workflowId);
    // The export holds payload bytes as base64; the scan decodes them, so it finds the input's source folder…
    assert.ok(!history.includes(source));
    assert.ok(payloadsIn(history).some((p) => p.encoding === 'json/plain' && p.text.includes(source)), 'the scan reads the input');
    assertNoSecrets(history, 'codec off');
    // …and would find a token hidden the same way.
    const planted = JSON.parse(history) as { events: { workflowExecutionStartedEventAttributes?: { input: { payloads: JsonPayload[] } } }[] };
    planted.events[0].workflowExecutionStartedEventAttributes!.input.payloads[0].data = Buffer.from(JSON.stringify({ token: stack.agentToken })).toString('base64');
    assert.throws(() => assertNoSecrets(JSON.stringify(planted), 'planted'), /holds the agent token/);
  });

  it('codec on, production worker process: payloads are ciphertext, the codec server decodes them, metrics are served, SIGTERM exits 0', async () => {
    const key = randomBytes(32);
    const taskQueue = 'ferry-encrypted';
    const bundlePath = path.join(work, 'workflow-bundle.js');
    await writeFile(bundlePath, (await workflowBundle()).code);
    const metricsPort = await freePort();
    const worker = await spawnManaged({
      name: 'worker',
      binary: process.execPath,
      args: [path.join(__dirname, '..', '..', 'worker', 'main.js')],
      env: {
        PATH: process.env.PATH,
        ...stack.settings,
        FERRY_TASK_QUEUE: taskQueue,
        FERRY_CODEC_KEY: key.toString('base64'),
        FERRY_WORKFLOW_BUNDLE: bundlePath,
        FERRY_METRICS_ADDRESS: `127.0.0.1:${metricsPort}`,
        FERRY_WORKER_SHUTDOWN_GRACE_SECONDS: '5',
      },
      logFile: path.join(work, 'worker.log'),
      detached: false,
    });
    try {
      const client = new Client({ connection: stack.client.connection, namespace: stack.config.temporal.namespace, dataConverter: payloadCodecsFor({ key }) });
      const { workflowId, source, result } = await syncOn(client, taskQueue, 'sealed');
      assert.equal(result.verified, true, 'the client decrypts the result');

      const history = await exportHistory(workflowId);
      assertNoSecrets(history, 'codec on');
      assert.ok(!history.includes(source), 'the source path is not readable in the export');
      const payloads = payloadsIn(history);
      // Search attributes are indexed by the server, so they stay readable (session id, target kind), and so do patch markers, which
      // the SDK's core writes past the codec: they hold only the patch id. Every other payload is sealed.
      const patchMarkers = payloads.filter((p) => p.path.includes('patch-data'));
      for (const p of patchMarkers) assert.match(p.text, /^\{"id":"[a-z-]+","deprecated":false\}$/, `${p.path} holds only a patch id`);
      const sealed = payloads.filter((p) => !p.path.includes('searchAttributes') && !p.path.includes('patch-data'));
      assert.ok(sealed.length >= 8, `inputs, results and heartbeat details: ${sealed.length} payloads`);
      for (const p of sealed) {
        assert.equal(p.encoding, 'binary/encrypted', p.path);
        assert.ok(!p.text.includes(source), `${p.path} leaks the source path`);
      }

      // The codec server (what the Web UI calls) turns them back into the workflow's input.
      const server = await startCodecServer({ codec: new AesGcmPayloadCodec(key), port: 0, allowedOrigins: [stack.config.temporal.webUiUrl] });
      try {
        const response = await fetch(`${server.url}/decode`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-namespace': 'default' },
          body: JSON.stringify({ payloads: sealed.map((p) => p.payload) }),
        });
        assert.equal(response.status, 200);
        const decoded = ((await response.json()) as { payloads: JsonPayload[] }).payloads.map((p) => defaultPayloadConverter.fromPayload(payloadFromJson(p)));
        assert.ok(
          decoded.some((value) => (value as { source?: { path?: string } } | null)?.source?.path === source),
          'the decoded input names the source folder',
        );
        assert.ok(decoded.some((value) => (value as { manifestDigest?: string } | null)?.manifestDigest === result.manifestDigest), 'the decoded result');
      } finally {
        await server.close();
      }

      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(metrics, /^temporal_workflow_completed\{.*task_queue="ferry-encrypted".*\} 1$/m);
      assert.match(metrics, /^temporal_activity_execution_latency/m);

      await worker.stop();
      assert.equal(await worker.exited, 0, 'SIGTERM → graceful shutdown → exit 0');
    } finally {
      await worker.stop();
    }
  });
});

describe('file bodies in workflow history', () => {
  it("no workflow type puts a file's bytes in history: sync, files, pipeline and training, each synced, landed, listed or collected", async () => {
    const taskQueue = stack.config.temporal.taskQueue;
    const source = path.join(work, 'bodies');
    const bodies = { input: markedBody('input'), nested: markedBody('nested'), binary: Buffer.concat([randomBytes(64), Buffer.from(markedBody('binary'))]) };
    await writeTree(source, { 'input.csv': bodies.input, 'nested/more.txt': bodies.nested, 'weights.bin': bodies.binary });
    const texts = [bodies.input, bodies.nested, bodies.binary.subarray(64).toString()];

    const syncId = `sync-bodies-${randomUUID()}`;
    const synced = (await stack.client.workflow.execute('syncWorkflow', { taskQueue, workflowId: syncId, args: [{ sessionId: 'bodies', source: { path: source } }] })) as SyncResult;
    assert.equal(synced.filesVerified, 3);

    // What the session holds, hashed on the target: each file's sha256 reaches history, its bytes do not.
    const filesId = `files-bodies-${randomUUID()}`;
    const listed = (await stack.client.workflow.execute('sessionFilesWorkflow', { taskQueue, workflowId: filesId, args: [{ sessionId: 'bodies' }] })) as SessionFilesResult;
    assert.deepEqual(listed.files.map((f) => [f.path, f.sha256]).sort(), [['input.csv', sha256(bodies.input)], ['nested/more.txt', sha256(bodies.nested)], ['weights.bin', sha256(bodies.binary)]]);

    // The pipeline lands the input and collects a copy of it from artifacts/; the code prints nothing of it.
    const pipelines = new PipelineClient(stack.client, taskQueue);
    const { workflowId: pipelineId } = await pipelines.start({ sessionId: 'bodies-pipeline', inputs: [{ path: source }], stages: ['coder'] });
    assert.equal((await pipelines.execute(pipelineId, { language: 'bash', code: 'cp data/input.csv data/weights.bin artifacts/' })).exitCode, 0);
    await pipelines.finishStage(pipelineId);
    const piped = await pipelines.result(pipelineId);
    assert.deepEqual(piped.stages[0]!.artifacts!.files.map((f) => [f.path, f.sha256]).sort(), [['input.csv', sha256(bodies.input)], ['weights.bin', sha256(bodies.binary)]]);

    // Training lands the project and collects what the command wrote to outputs/.
    const trainingId = `train-bodies-${randomUUID()}`;
    const command = ['sh', '-c', 'cp nested/more.txt "$FERRY_OUTPUT_DIR/more.txt"'];
    const trained = (await stack.client.workflow.execute('trainingWorkflow', { taskQueue, workflowId: trainingId, args: [{ runId: 'bodies-train', project: { path: source }, target: { kind: 'local' }, command, pollSeconds: 1 }] })) as TrainingResult;
    assert.equal(trained.exitCode, 0);
    assert.deepEqual(trained.outputs?.files.map((f) => [f.path, f.sha256]), [['more.txt', sha256(bodies.nested)]]);

    for (const [type, workflowId] of [['syncWorkflow', syncId], ['sessionFilesWorkflow', filesId], ['pipelineWorkflow', pipelineId], ['trainingWorkflow', trainingId]] as const) {
      const history = await exportHistory(workflowId);
      assertNoFileBodies(history, texts, type);
      if (type === 'sessionFilesWorkflow') assert.ok(historyCorpus(history).includes(sha256(bodies.input)), 'the scan reads the listing: the hash is there');
    }
    // The scan would find a body had one been put in a payload.
    const planted = JSON.parse(await exportHistory(syncId)) as { events: { workflowExecutionStartedEventAttributes?: { input: { payloads: JsonPayload[] } } }[] };
    planted.events[0]!.workflowExecutionStartedEventAttributes!.input.payloads[0]!.data = Buffer.from(JSON.stringify({ content: bodies.input })).toString('base64');
    assert.throws(() => assertNoFileBodies(JSON.stringify(planted), texts, 'planted'), /planted: history holds the file body/);
  });
});
