/**
 * What workflow history holds, read the way an operator would export it
 * (`temporal workflow show --output json`): never the agent token, the S3
 * secret key or a presigned URL, with payload encryption off or on. With it
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
import { freePort, repoRoot, resolveTool, spawnManaged } from '../../client/services';
import type { SyncResult } from '../../core/sync';
import { payloadFromJson, startCodecServer, type JsonPayload } from '../../worker/codecServer';
import { AesGcmPayloadCodec, payloadCodecsFor } from '../../worker/payloadCodec';
import { writeSampleProject } from '../support/fixtures';
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

function assertNoSecrets(history: string, label: string): void {
  const corpus = `${history}\n${payloadsIn(history)
    .map((p) => p.text)
    .join('\n')}`;
  const secrets = {
    'agent token': stack.agentToken,
    'S3 secret key': stack.settings.FERRY_S3_SECRET_ACCESS_KEY!,
  };
  for (const [name, secret] of Object.entries(secrets)) assert.ok(!corpus.includes(secret), `${label}: history holds the ${name}`);
  assert.doesNotMatch(corpus, /X-Amz-Signature|X-Amz-Credential/i, `${label}: history holds a presigned URL`);
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
      // Search attributes are indexed by the server, so they stay readable (session id, target kind); every other payload is sealed.
      const sealed = payloads.filter((p) => !p.path.includes('searchAttributes'));
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

      const stopping = Date.now();
      await worker.stop();
      assert.equal(await worker.exited, 0, 'SIGTERM → graceful shutdown → exit 0');
      assert.ok(Date.now() - stopping < 10_000, `stopped in ${Date.now() - stopping} ms`);
    } finally {
      await worker.stop();
    }
  });
});
