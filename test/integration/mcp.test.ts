/**
 * `ferry mcp` as an agent's MCP client runs it: a real child process driven
 * by the official SDK's client over stdio (and over Streamable HTTP),
 * against the real stack. The pipeline behind the tools is the real one:
 * code runs once per request id, on verified inputs, with its output in S3.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { DEMO_CSV, DEMO_SCRIPT } from '../../client/demoAgent';
import { salesCsv, writeDemoInput } from '../../client/sampleData';
import { isPidAlive } from '../../client/managedProcess';
import { repoRoot } from '../../client/tools';
import { sha256, waitFor } from '../support/fixtures';
import { startTestStack, type TestStack } from '../support/testStack';

const ferryBin = path.join(repoRoot(), 'bin', 'ferry.js');
let stack: TestStack;
let work: string;
let input: string;
const clients: Client[] = [];
const children: ChildProcess[] = [];

before(async () => {
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-mcp-'));
  input = writeDemoInput(path.join(work, 'input'));
});

after(async () => {
  for (const client of clients) await client.close().catch(() => undefined);
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** The environment a user's MCP client would give `ferry mcp`: the stack's settings. */
const serverEnv = (extra: Record<string, string> = {}): Record<string, string> => ({
  ...(process.env as Record<string, string>),
  ...stack.settings,
  FERRY_HOME: path.join(work, 'home'),
  ...extra,
});

/** `ferry mcp` on stdio, connected with the SDK's client. */
async function stdioClient(extra: Record<string, string> = {}): Promise<{ client: Client; transport: StdioClientTransport; stderr: () => string }> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [ferryBin, 'mcp'], env: serverEnv(extra), stderr: 'pipe' });
  let stderr = '';
  transport.stderr?.on('data', (data: Buffer) => (stderr += data.toString('utf8')));
  const client = new Client({ name: 'ferry-test-agent', version: '1.0.0' });
  await client.connect(transport);
  clients.push(client);
  return { client, transport, stderr: () => stderr };
}

interface ToolAnswer {
  isError: boolean;
  text: string;
  data: Record<string, unknown>;
}

/** Calls a tool; long enough for an execution through a worker restart, with progress delivered to `onProgress`. */
async function call(client: Client, name: string, args: Record<string, unknown>, onProgress?: (progress: { progress: number; message?: string }) => void): Promise<ToolAnswer> {
  const result = await client.callTool({ name, arguments: args }, undefined, { timeout: 300_000, onprogress: onProgress });
  const content = result.content as { type: string; text: string }[];
  return { isError: result.isError === true, text: content.map((c) => c.text).join('\n'), data: (result.structuredContent ?? {}) as Record<string, unknown> };
}

async function ok(client: Client, name: string, args: Record<string, unknown>, onProgress?: (progress: { progress: number; message?: string }) => void): Promise<Record<string, unknown>> {
  const answer = await call(client, name, args, onProgress);
  assert.equal(answer.isError, false, `${name} failed: ${answer.text}`);
  return answer.data;
}

describe('ferry mcp', () => {
  let agent: Awaited<ReturnType<typeof stdioClient>>;

  before(async () => {
    agent = await stdioClient();
  });

  it('lists its tools with input schemas', async () => {
    const { tools } = await agent.client.listTools();
    assert.deepEqual(tools.map((t) => t.name), ['start_session', 'execute_code', 'list_files', 'read_file', 'finish_stage', 'session_status', 'explain']);
    const execute = tools.find((t) => t.name === 'execute_code')!;
    assert.deepEqual(execute.inputSchema.required, ['session_id', 'language', 'code']);
  });

  it('runs a coder → validator → reporter session on the sample CSV, verifying inputs before each stage', async () => {
    const started = await ok(agent.client, 'start_session', { session_id: 'mcp-demo', inputs: [input] });
    assert.equal(started.workflow_id, 'pipeline-mcp-demo');
    assert.equal(started.attached, false);
    const again = await ok(agent.client, 'start_session', { session_id: 'mcp-demo', inputs: [input] });
    assert.equal(again.attached, true, 'a second start attaches to the running pipeline');
    assert.equal(again.run_id, started.run_id);

    const listing = await ok(agent.client, 'list_files', { session_id: 'mcp-demo', dir: 'data' });
    const csv = (listing.files as { path: string; sha256: string }[]).find((f) => f.path === DEMO_CSV);
    assert.equal(csv?.sha256, sha256(salesCsv()), 'hashed on the target');

    const verifiedFirst: Record<string, boolean[]> = {};
    for (const stage of DEMO_SCRIPT) {
      for (const step of stage.steps) {
        const result = await ok(agent.client, 'execute_code', { session_id: 'mcp-demo', language: step.request.language, code: step.request.code });
        assert.equal(result.exit_code, 0, `${stage.stage}: ${String(result.stderr_tail)}`);
        assert.equal(result.stage, stage.stage);
        (verifiedFirst[stage.stage] ??= []).push(result.inputs_verified as boolean);
      }
      if (stage.stage === 'reporter') {
        const report = await ok(agent.client, 'read_file', { session_id: 'mcp-demo', path: 'artifacts/report.md' });
        assert.equal(report.encoding, 'text');
        assert.match(report.content as string, /totals verified against the data/);
        const part = await ok(agent.client, 'read_file', { session_id: 'mcp-demo', path: 'artifacts/report.md', offset: 2, length: 4 });
        assert.equal(part.content, (report.content as string).slice(2, 6));
        assert.equal(part.file_size, report.file_size);
      }
      const finished = await ok(agent.client, 'finish_stage', { session_id: 'mcp-demo', summary: stage.summary });
      assert.equal(finished.stage, stage.stage);
      assert.equal(finished.stage_status, 'finished');
    }
    assert.deepEqual(verifiedFirst, { coder: [true, false], validator: [true], reporter: [true] }, 'each stage re-hashes data/ before its first execution, later ones get the cheap check');

    const status = await ok(agent.client, 'session_status', { session_id: 'mcp-demo' });
    assert.equal(status.status, 'completed');
    assert.equal(status.executions_total, 6, 'four steps and two reads');
    const explained = await call(agent.client, 'explain', { session_id: 'mcp-demo' });
    assert.equal(explained.isError, false, explained.text);
    assert.match(explained.text, /verdict: pipelineWorkflow completed/);
    assert.match(explained.data.verdict as string, /every execution ran on inputs verified/);
  });

  it('runs an execute_code resent with the same request id once, and streams its output as progress', async () => {
    await ok(agent.client, 'start_session', { session_id: 'mcp-once', inputs: [input], stages: ['coder'] });
    const code = 'echo ran >> work/runs.txt; for i in 1 2 3; do echo "tick $i"; sleep 1; done; wc -l < work/runs.txt';
    const progress: { progress: number; message?: string }[] = [];
    const args = { session_id: 'mcp-once', language: 'bash', code, request_id: 'agent-retry-1' };
    const [first, resent] = await Promise.all([ok(agent.client, 'execute_code', args, (p) => progress.push(p)), ok(agent.client, 'execute_code', args)]);
    const later = await ok(agent.client, 'execute_code', args);
    assert.equal(resent.execution_id, first.execution_id);
    assert.equal(later.execution_id, first.execution_id);
    assert.match(first.stdout_tail as string, /tick 3\n1\n$/, 'the code ran once: one line in runs.txt');
    const runs = await ok(agent.client, 'execute_code', { session_id: 'mcp-once', language: 'bash', code: 'wc -l < work/runs.txt' });
    assert.equal((runs.stdout_tail as string).trim(), '1');
    assert.ok(progress.length >= 1, 'progress notifications while it ran');
    assert.ok(progress.some((p) => /stdout: tick \d/.test(p.message ?? '')), `a progress message carries an output line: ${JSON.stringify(progress)}`);
    assert.ok(progress.every((p, i) => i === 0 || p.progress > progress[i - 1].progress), 'progress only grows');
  });

  it('returns a 50 MB stdout bounded, with where the full log is', async () => {
    const progress: { progress: number; message?: string }[] = [];
    const answer = await call(agent.client, 'execute_code', { session_id: 'mcp-once', language: 'bash', code: "head -c 52428800 /dev/zero | tr '\\0' x; echo done >&2" }, (p) => progress.push(p));
    assert.equal(answer.isError, false, answer.text);
    const result = answer.data;
    assert.equal(result.stdout_bytes, 52428800);
    assert.ok((result.stdout_tail as string).length <= 4096);
    assert.equal(result.output_truncated, true);
    assert.ok(answer.text.length < 20_000, `the whole result is ${answer.text.length} characters`);
    const logs = result.logs as { stdout: string; chunks: string; replay: string };
    const key = logs.stdout.replace(`s3://${stack.config.s3.bucket}/`, '');
    assert.ok(await stack.blobs.hasObject(key), 'the full stdout is in S3 where the result says');
    assert.match(logs.chunks, /^s3:\/\/ferry\/executions\/pipeline-mcp-once\/e\d+-coder-/);
    assert.match(logs.replay, /^ferry exec --attach pipeline-mcp-once /);
    assert.ok(progress.every((p) => (p.message ?? '').length <= 500), 'progress messages stay short');
  });

  it('answers bad input with a typed tool error, and keeps serving', async () => {
    const missingCode = await call(agent.client, 'execute_code', { session_id: 'mcp-once', language: 'bash' });
    assert.equal(missingCode.isError, true);
    assert.match(missingCode.text, /^InvalidInput: execute_code: code: /);
    const badLanguage = await call(agent.client, 'execute_code', { session_id: 'mcp-once', language: 'ruby', code: 'puts 1' });
    assert.match(badLanguage.text, /^InvalidInput: .*language/);
    const emptyCode = await call(agent.client, 'execute_code', { session_id: 'mcp-once', language: 'bash', code: '   ' });
    assert.match(emptyCode.text, /^InvalidInput: .*code must be a non-empty string/, 'refused by the workflow update validator');
    const badSession = await call(agent.client, 'session_status', { session_id: '../etc' });
    assert.match(badSession.text, /^InvalidInput: /);
    const outside = await call(agent.client, 'read_file', { session_id: 'mcp-once', path: '../../etc/passwd' });
    assert.match(outside.text, /^InvalidInput: path "..\/..\/etc\/passwd"/);
    const absent = await call(agent.client, 'read_file', { session_id: 'mcp-once', path: 'data/absent.txt' });
    assert.match(absent.text, /^InvalidInput: cannot read data\/absent.txt: not a regular file/);
    const unknown = await call(agent.client, 'session_status', { session_id: 'never-started' });
    assert.match(unknown.text, /^WorkflowNotFound: no pipeline pipeline-never-started/);
    assert.deepEqual(unknown.data, { error: { type: 'WorkflowNotFound', message: 'no pipeline pipeline-never-started: start it with start_session' } });
    for (const answer of [missingCode, badLanguage, emptyCode, badSession, outside, absent]) assert.equal(answer.isError, true);
    assert.ok(isPidAlive(agent.transport.pid!), 'the server is still running');
    assert.equal((await ok(agent.client, 'session_status', { session_id: 'mcp-once' })).status, 'running');
  });

  it('serves the same tools on Streamable HTTP on 127.0.0.1 behind a bearer token', async () => {
    const tokenFile = path.join(work, 'mcp-token');
    const token = 'http-test-token-0123456789abcdef';
    await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
    const server = spawn(process.execPath, [ferryBin, 'mcp', '--http', '0', '--token-file', tokenFile], { env: serverEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(server);
    let stderr = '';
    server.stderr!.on('data', (data: Buffer) => (stderr += data.toString('utf8')));
    const url = await waitFor('the HTTP endpoint', async () => /(http:\/\/127\.0\.0\.1:\d+\/mcp)/.exec(stderr)?.[1], 30_000);
    assert.doesNotMatch(stderr, new RegExp(token), 'a token from a file is not printed');

    const refused = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer wrong' }, body: '{}' });
    assert.equal(refused.status, 401);
    const client = new Client({ name: 'ferry-http-agent', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    clients.push(client);
    assert.equal((await client.listTools()).tools.length, 7);
    const progress: { progress: number; message?: string }[] = [];
    const result = await ok(client, 'execute_code', { session_id: 'mcp-once', language: 'python', code: 'import time\nfor i in range(3):\n    print(f"http {i}", flush=True)\n    time.sleep(1)' }, (p) => progress.push(p));
    assert.equal(result.stdout_tail, 'http 0\nhttp 1\nhttp 2\n');
    assert.ok(progress.some((p) => /http \d/.test(p.message ?? '')), `progress over HTTP: ${JSON.stringify(progress)}`);
    const bad = await call(client, 'read_file', { session_id: 'mcp-once', path: '/etc/passwd' });
    assert.match(bad.text, /^InvalidInput: /);
  });

  it('survives a worker killed mid-execution: the call completes once another worker takes over, and the next call works', async (t) => {
    const taskQueue = 'ferry-mcp-kill';
    const startWorker = async () => {
      const worker = spawn(process.execPath, [path.join(repoRoot(), 'dist', 'worker', 'main.js')], { env: serverEnv({ FERRY_TASK_QUEUE: taskQueue }), stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(worker);
      let log = '';
      worker.stdout!.on('data', (data: Buffer) => (log += data.toString('utf8')));
      worker.stderr!.on('data', (data: Buffer) => (log += data.toString('utf8')));
      await waitFor('the worker to poll', async () => (log.includes('ferry worker polling') ? true : undefined), 120_000);
      return worker;
    };
    const first = await startWorker();
    const killAgent = await stdioClient({ FERRY_TASK_QUEUE: taskQueue });
    await ok(killAgent.client, 'start_session', { session_id: 'mcp-kill', inputs: [input], stages: ['coder'] });
    const progress: { progress: number; message?: string }[] = [];
    const running = call(killAgent.client, 'execute_code', { session_id: 'mcp-kill', language: 'bash', code: 'for i in 1 2 3 4 5 6; do echo "step $i"; sleep 1; done', request_id: 'kill-1' }, (p) => progress.push(p));
    await waitFor('output from the running execution', async () => (progress.length > 0 ? true : undefined), 60_000);
    first.kill('SIGKILL');
    await new Promise((resolve) => first.once('close', resolve));
    await startWorker();
    const answer = await running;
    t.diagnostic(`the call across the worker kill ${answer.isError ? `returned a tool error: ${answer.text}` : `completed: exit ${String(answer.data.exit_code)}`}`);
    if (answer.isError) assert.match(answer.text, /^[A-Za-z]+: \S/, `a clean tool error: ${answer.text}`);
    else assert.equal(answer.data.stdout_tail, 'step 1\nstep 2\nstep 3\nstep 4\nstep 5\nstep 6\n');
    assert.ok(isPidAlive(killAgent.transport.pid!), 'the server survived');
    const next = await ok(killAgent.client, 'execute_code', { session_id: 'mcp-kill', language: 'bash', code: 'echo after' });
    assert.equal(next.stdout_tail, 'after\n');
    assert.doesNotMatch(killAgent.stderr(), /Error|Unhandled/);
  });
});
