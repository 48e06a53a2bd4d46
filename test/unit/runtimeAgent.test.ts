import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import type { AgentError, AgentHealth, ExecResult, LandFile, LandStreamEvent, ListFilesStreamEvent } from '../../core/agentProtocol';
import { chunksOf } from '../support/fixtures';
import { startAgent, type RunningAgent } from '../../runtime/agent';
import type { AgentLogger } from '../../runtime/log';

const TOKEN = 'test-token-0123456789abcdef';
const silentLog: AgentLogger = { log: () => undefined };

function sha256(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

async function tempDir(t: TestContext, label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `ferry-agent-test-${label}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A blob store stand-in: serves `/ferry/<name>` bodies and records every request path. */
interface BlobServer {
  prefix: string;
  port: number;
  requests: string[];
  /** Serves `body` under `name` and returns its URL. */
  put(name: string, body: Buffer): string;
}

async function listenLocally(t: TestContext, server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as AddressInfo).port;
}

async function startBlobServer(t: TestContext): Promise<BlobServer> {
  const bodies = new Map<string, Buffer>();
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const body = bodies.get(req.url ?? '');
    if (!body) {
      res.writeHead(404).end('no such blob');
      return;
    }
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  const port = await listenLocally(t, server);
  const prefix = `http://127.0.0.1:${port}/ferry/`;
  return {
    prefix,
    port,
    requests,
    put(name, body) {
      bodies.set(`/ferry/${name}`, body);
      return prefix + name;
    },
  };
}

/** A server no request may ever reach. */
async function startTrapServer(t: TestContext): Promise<{ port: number; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    res.end('trapped');
  });
  return { port: await listenLocally(t, server), hits };
}

interface Setup {
  agent: RunningAgent;
  root: string;
  blobs: BlobServer;
}

async function setup(t: TestContext, allowedUrlPrefixes?: string[]): Promise<Setup> {
  const root = await tempDir(t, 'root');
  const blobs = await startBlobServer(t);
  const agent = await startAgent({ root, token: TOKEN, allowedUrlPrefixes: allowedUrlPrefixes ?? [blobs.prefix], log: silentLog });
  t.after(() => agent.close());
  return { agent, root, blobs };
}

/** `token: null` sends no Authorization header. */
function call(agent: RunningAgent, method: string, route: string, body?: unknown, token: string | null = TOKEN): Promise<Response> {
  return fetch(agent.url + route, {
    method,
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function ndjson<E>(response: Response): Promise<E[]> {
  assert.equal(response.status, 200, await response.clone().text());
  assert.equal(response.headers.get('content-type'), 'application/x-ndjson');
  const text = await response.text();
  assert.ok(text.endsWith('\n'), 'stream ends with a complete line');
  return text
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as E);
}

async function errorOf(response: Response, status: number): Promise<AgentError['error']> {
  assert.equal(response.status, status);
  const body = (await response.json()) as AgentError;
  assert.equal(body.type, 'error');
  return body.error;
}

interface SourceFile {
  path: string;
  body: Buffer;
  mode: number;
}

function landFilesFor(blobs: BlobServer, files: SourceFile[]): LandFile[] {
  return files.map((f) => ({ path: f.path, size: f.body.length, mode: f.mode, sha256: sha256(f.body), url: blobs.put(sha256(f.body), f.body) }));
}

async function land(agent: RunningAgent, dir: string, files: LandFile[]): Promise<LandStreamEvent[]> {
  return ndjson<LandStreamEvent>(await call(agent, 'POST', '/v1/land', { dir, files }));
}

function finalEvent<E>(events: E[]): E {
  return events[events.length - 1];
}

/** Every path under `dir` (files, folders and symlinks), relative, sorted. */
async function treeOf(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.sort();
}

async function modeOf(path: string): Promise<number> {
  return (await stat(path)).mode & 0o7777;
}

const SAMPLE: SourceFile[] = [
  { path: 'a.txt', body: Buffer.from('hello\n'), mode: 0o644 },
  { path: 'bin/run.sh', body: Buffer.from('#!/bin/sh\necho run\n'), mode: 0o755 },
  { path: 'deep/x/y/z.bin', body: randomBytes(3 * 1024 * 1024 + 17), mode: 0o600 },
  { path: 'empty', body: Buffer.alloc(0), mode: 0o644 },
];

test('health answers with a bootId that changes on every start', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const response = await call(agent, 'GET', '/v1/health');
  assert.equal(response.status, 200);
  const health = (await response.json()) as AgentHealth;
  assert.equal(health.ok, true);
  assert.equal(health.apiVersion, 1);
  assert.equal(health.bootId, agent.bootId);
  assert.ok(!Number.isNaN(Date.parse(health.startedAt)));

  const second = await startAgent({ root, token: TOKEN, allowedUrlPrefixes: [blobs.prefix], log: silentLog });
  t.after(() => second.close());
  const secondHealth = (await (await call(second, 'GET', '/v1/health')).json()) as AgentHealth;
  assert.notEqual(secondHealth.bootId, health.bootId);
  assert.notEqual(second.port, agent.port);
});

test('every endpoint answers 401 without the right token', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const files = landFilesFor(blobs, SAMPLE.slice(0, 1));
  const requests: [string, string, unknown][] = [
    ['GET', '/v1/health', undefined],
    ['POST', '/v1/land', { dir: 'data', files }],
    ['POST', '/v1/files', { dir: 'data' }],
    ['POST', '/v1/exec', { executionId: 'unauthorised', command: ['touch', join(root, 'ran')], timeoutSeconds: 5 }],
    ['GET', '/v1/logs/unauthorised/stdout', undefined],
    ['GET', '/v1/no-such-route', undefined],
  ];
  for (const token of [null, 'wrong-token-0123456789abcdef', TOKEN + 'x', '']) {
    for (const [method, route, body] of requests) {
      const error = await errorOf(await call(agent, method, route, body, token), 401);
      assert.equal(error.type, 'TargetUnauthorized', `${method} ${route} with token ${JSON.stringify(token)}`);
    }
  }
  const basic = await fetch(agent.url + '/v1/health', { headers: { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` } });
  assert.equal(basic.status, 401);
  await basic.body?.cancel();
  assert.deepEqual(await treeOf(root), []);
  assert.deepEqual(blobs.requests, []);
});

test('land writes the bytes and modes, streams progress, and leaves no temp files', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const events = await land(agent, 'sessions/s1/data', landFilesFor(blobs, SAMPLE));
  const totalBytes = SAMPLE.reduce((sum, f) => sum + f.body.length, 0);
  assert.deepEqual(finalEvent(events), { type: 'result', bootId: agent.bootId, filesLanded: 4, bytesLanded: totalBytes, filesAlreadyPresent: 0, bytesAlreadyPresent: 0, bytesDownloaded: totalBytes, bytesReused: 0 });
  const progress = events.slice(0, -1);
  assert.ok(progress.length >= 1);
  assert.ok(progress.every((e) => e.type === 'progress'));
  assert.deepEqual(progress[progress.length - 1], { type: 'progress', filesDone: 4, filesTotal: 4, bytesDone: totalBytes, bytesTotal: totalBytes });

  for (const file of SAMPLE) {
    const onDisk = join(root, 'sessions/s1/data', file.path);
    assert.ok((await readFile(onDisk)).equals(file.body), file.path);
    assert.equal(await modeOf(onDisk), file.mode, file.path);
  }
  assert.deepEqual(
    (await treeOf(root)).filter((p) => p.includes('.ferry-tmp-')),
    [],
  );
  // The empty file needs no download.
  assert.equal(blobs.requests.length, 3);
});

test('landing the same files again downloads nothing and fixes modes', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const files = landFilesFor(blobs, SAMPLE);
  await land(agent, 'data', files);
  const requestsAfterFirst = blobs.requests.length;
  await chmod(join(root, 'data/bin/run.sh'), 0o600);

  const result = finalEvent(await land(agent, 'data', files));
  assert.deepEqual(result, {
    type: 'result',
    bootId: agent.bootId,
    filesLanded: 0,
    bytesLanded: 0,
    filesAlreadyPresent: 4,
    bytesAlreadyPresent: SAMPLE.reduce((sum, f) => sum + f.body.length, 0),
    bytesDownloaded: 0,
    bytesReused: 0,
  });
  assert.equal(blobs.requests.length, requestsAfterFirst);
  assert.equal(await modeOf(join(root, 'data/bin/run.sh')), 0o755);
});

test('a corrupted file already on the target is replaced', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const files = landFilesFor(blobs, SAMPLE);
  await land(agent, 'data', files);
  const target = join(root, 'data/a.txt');
  await writeFile(target, 'HELLO\n'); // same size, different bytes

  const result = finalEvent(await land(agent, 'data', files));
  assert.equal(result.type, 'result');
  assert.equal(result.type === 'result' && result.filesLanded, 1);
  assert.equal(result.type === 'result' && result.filesAlreadyPresent, 3);
  assert.equal(await readFile(target, 'utf8'), 'hello\n');
});

test('a blob that does not match its sha256 or size fails with ChecksumMismatch and leaves nothing behind', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const expected = Buffer.from('the real content');
  const cases: { name: string; served: Buffer }[] = [
    { name: 'same-size', served: Buffer.from('THE REAL CONTENT') },
    { name: 'longer', served: Buffer.from('the real content, and then some more') },
    { name: 'shorter', served: Buffer.from('the real') },
  ];
  for (const { name, served } of cases) {
    const url = blobs.put(name, served);
    const events = await land(agent, 'data', [{ path: `dir/${name}.txt`, size: expected.length, mode: 0o644, sha256: sha256(expected), url }]);
    const last = finalEvent(events);
    assert.equal(last.type, 'error', name);
    const { error } = last as AgentError;
    assert.equal(error.type, 'ChecksumMismatch', name);
    assert.equal(error.path, `dir/${name}.txt`);
    assert.match(error.message, new RegExp(sha256(expected)));
    await assert.rejects(lstat(join(root, 'data/dir', `${name}.txt`)), { code: 'ENOENT' });
  }
  assert.deepEqual(await readdir(join(root, 'data/dir')), []);
});

test('a blob server error fails with BlobDownloadFailed naming the status', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const body = Buffer.from('never served');
  const events = await land(agent, 'data', [{ path: 'missing.txt', size: body.length, mode: 0o644, sha256: sha256(body), url: blobs.prefix + 'not-there' }]);
  const { error } = finalEvent(events) as AgentError;
  assert.equal(error.type, 'BlobDownloadFailed');
  assert.equal(error.path, 'missing.txt');
  assert.match(error.message, /404/);
  assert.deepEqual(await treeOf(join(root, 'data')), []);
});

test('unsafe paths are refused with 400 UnsafePath before anything is written', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const [good] = landFilesFor(blobs, SAMPLE.slice(0, 1));
  const badPaths = ['../x', '/etc/x', 'a/../../x', 'a\\..\\x', 'a\\b', '', 'a//b', './x'];
  for (const path of badPaths) {
    const error = await errorOf(await call(agent, 'POST', '/v1/land', { dir: 'data', files: [good, { ...good, path }] }), 400);
    assert.equal(error.type, 'UnsafePath', path);
    assert.equal(error.path, path);
  }
  for (const dir of ['../outside', '/tmp', 'data/../..', '.ferry-agent', '.ferry-agent/exec', '']) {
    const error = await errorOf(await call(agent, 'POST', '/v1/land', { dir, files: [good] }), 400);
    assert.equal(error.type, 'UnsafePath', dir);
    const listError = await errorOf(await call(agent, 'POST', '/v1/files', { dir }), 400);
    assert.equal(listError.type, 'UnsafePath', dir);
  }
  const listError = await errorOf(await call(agent, 'POST', '/v1/files', { dir: 'data', paths: ['ok', '../x'] }), 400);
  assert.equal(listError.type, 'UnsafePath');
  assert.deepEqual(await treeOf(root), []);
  assert.deepEqual(blobs.requests, []);
});

test('URLs outside the allowed prefixes are refused and never fetched', async (t) => {
  const trap = await startTrapServer(t);
  const { agent, root, blobs } = await setup(t);
  const [good] = landFilesFor(blobs, SAMPLE.slice(0, 1));
  const refused: { url: string; origin?: string }[] = [
    { url: 'http://169.254.169.254/latest/meta-data/iam/security-credentials/', origin: 'http://169.254.169.254' },
    { url: 'http://169.254.170.2/v2/credentials/abc', origin: 'http://169.254.170.2' },
    { url: `http://127.0.0.1:${trap.port}/ferry/${good.sha256}`, origin: `http://127.0.0.1:${trap.port}` },
    { url: `http://127.0.0.1:${blobs.port}/other/${good.sha256}`, origin: `http://127.0.0.1:${blobs.port}` },
    { url: `http://127.0.0.1:${blobs.port}/ferry/../other/x`, origin: `http://127.0.0.1:${blobs.port}` },
    { url: `http://127.0.0.1:${blobs.port}/ferryother/x`, origin: `http://127.0.0.1:${blobs.port}` },
    { url: `http://user:pass@127.0.0.1:${blobs.port}/ferry/${good.sha256}` },
    { url: 'file:///etc/passwd' },
    { url: 'not a url' },
  ];
  for (const { url, origin } of refused) {
    const error = await errorOf(await call(agent, 'POST', '/v1/land', { dir: 'data', files: [good, { ...good, path: 'b.txt', url }] }), 400);
    assert.equal(error.type, 'UrlNotAllowed', url);
    assert.equal(error.path, 'b.txt');
    assert.equal(error.url, origin, url);
  }
  assert.deepEqual(trap.hits, []);
  assert.deepEqual(blobs.requests, []);
  assert.deepEqual(await treeOf(root), []);
});

test('a prefix without a path does not admit look-alike hosts', async (t) => {
  const trap = await startTrapServer(t);
  const { agent } = await setup(t, ['http://localhost']);
  const body = Buffer.from('x');
  const error = await errorOf(
    await call(agent, 'POST', '/v1/land', {
      dir: 'data',
      files: [{ path: 'x', size: 1, mode: 0o644, sha256: sha256(body), url: `http://localhost.evil.example:${trap.port}/x` }],
    }),
    400,
  );
  assert.equal(error.type, 'UrlNotAllowed');
  assert.deepEqual(trap.hits, []);
});

test('symlinks inside the root are not followed by land or files', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const outside = await tempDir(t, 'outside');
  await writeFile(join(outside, 'secret.txt'), 'secret');
  await symlink(outside, join(root, 'data'));
  await mkdir(join(root, 'proj'));
  await symlink(outside, join(root, 'proj/sub'));
  await symlink(join(outside, 'secret.txt'), join(root, 'proj/link.txt'));
  await writeFile(join(root, 'proj/real.txt'), 'real');
  const [file] = landFilesFor(blobs, [{ path: 'x.txt', body: Buffer.from('payload'), mode: 0o644 }]);

  const dirError = await errorOf(await call(agent, 'POST', '/v1/land', { dir: 'data', files: [file] }), 400);
  assert.equal(dirError.type, 'UnsafePath');
  const nestedError = await errorOf(await call(agent, 'POST', '/v1/land', { dir: 'proj', files: [{ ...file, path: 'sub/x.txt' }] }), 400);
  assert.equal(nestedError.type, 'UnsafePath');
  assert.equal(nestedError.path, 'proj/sub');
  assert.deepEqual(await readdir(outside), ['secret.txt']);
  assert.deepEqual(blobs.requests, []);

  const listDirError = await errorOf(await call(agent, 'POST', '/v1/files', { dir: 'data' }), 400);
  assert.equal(listDirError.type, 'UnsafePath');
  const listed = await ndjson<ListFilesStreamEvent>(await call(agent, 'POST', '/v1/files', { dir: 'proj' }));
  assert.deepEqual(
    listed.filter((e) => e.type === 'file').map((e) => e.type === 'file' && e.path),
    ['real.txt'],
  );
  const selected = await ndjson<ListFilesStreamEvent>(await call(agent, 'POST', '/v1/files', { dir: 'proj', paths: ['sub/secret.txt', 'link.txt', 'real.txt'] }));
  assert.deepEqual(
    selected.filter((e) => e.type === 'file').map((e) => e.type === 'file' && e.path),
    ['real.txt'],
  );

  // A symlink at the final path is replaced by the file, not written through.
  const replaced = finalEvent(await land(agent, 'proj', [{ ...file, path: 'link.txt' }]));
  assert.equal(replaced.type, 'result');
  assert.equal(await readFile(join(outside, 'secret.txt'), 'utf8'), 'secret');
  assert.ok((await lstat(join(root, 'proj/link.txt'))).isFile());
  assert.equal(await readFile(join(root, 'proj/link.txt'), 'utf8'), 'payload');
});

test('files lists what is on disk with fresh hashes, sorted, and respects paths', async (t) => {
  const { agent, root } = await setup(t);
  const dir = join(root, 'data');
  const bodies: Record<string, { body: Buffer; mode: number }> = {
    'b.txt': { body: Buffer.from('bee'), mode: 0o644 },
    'a/z.bin': { body: randomBytes(300_000), mode: 0o755 },
    'a/b/c.txt': { body: Buffer.from(''), mode: 0o600 },
    'A.txt': { body: Buffer.from('capital'), mode: 0o640 },
  };
  for (const [path, { body, mode }] of Object.entries(bodies)) {
    await mkdir(join(dir, path, '..'), { recursive: true });
    await writeFile(join(dir, path), body);
    await chmod(join(dir, path), mode);
  }
  const expected = Object.entries(bodies)
    .map(([path, { body, mode }]) => ({ type: 'file', path, size: body.length, mode, sha256: sha256(body) }))
    .sort((x, y) => (x.path < y.path ? -1 : 1));

  const events = await ndjson<ListFilesStreamEvent>(await call(agent, 'POST', '/v1/files', { dir: 'data' }));
  assert.deepEqual(
    events.filter((e) => e.type === 'file'),
    expected,
  );
  const bytes = expected.reduce((sum, f) => sum + f.size, 0);
  assert.deepEqual(finalEvent(events), { type: 'result', bootId: agent.bootId, filesListed: 4, bytesListed: bytes });
  assert.deepEqual(events[events.length - 2], { type: 'progress', filesDone: 4, bytesDone: bytes });

  // Hashes are recomputed on every request, not remembered.
  await writeFile(join(dir, 'b.txt'), 'BEE');
  const selected = await ndjson<ListFilesStreamEvent>(await call(agent, 'POST', '/v1/files', { dir: 'data', paths: ['b.txt', 'not-there.txt', 'a/z.bin', 'a/b'] }));
  assert.deepEqual(
    selected.filter((e) => e.type === 'file'),
    [expected.find((f) => f.path === 'a/z.bin'), { ...expected.find((f) => f.path === 'b.txt'), sha256: sha256(Buffer.from('BEE')) }],
  );

  const missing = await ndjson<ListFilesStreamEvent>(await call(agent, 'POST', '/v1/files', { dir: 'nothing/here' }));
  assert.deepEqual(finalEvent(missing), { type: 'result', bootId: agent.bootId, filesListed: 0, bytesListed: 0 });
});

function exec(agent: RunningAgent, body: Record<string, unknown>): Promise<Response> {
  return call(agent, 'POST', '/v1/exec', { timeoutSeconds: 30, ...body });
}

async function execResult(agent: RunningAgent, body: Record<string, unknown>): Promise<ExecResult> {
  const response = await exec(agent, body);
  assert.equal(response.status, 200);
  return (await response.json()) as ExecResult;
}

test('exec returns the exit code and output tails, and serves the full logs', async (t) => {
  const { agent, root } = await setup(t);
  const script = "process.stdout.write('x'.repeat(5000) + 'END'); process.stderr.write('oops ' + process.env.GREETING + ' ' + process.cwd()); process.exit(3)";
  const result = await execResult(agent, { executionId: 'run-1', command: [process.execPath, '-e', script], cwd: 'work/dir', env: { GREETING: 'hi' } });
  assert.equal(result.executionId, 'run-1');
  assert.equal(result.bootId, agent.bootId);
  assert.equal(result.exitCode, 3);
  assert.equal(result.signal, null);
  assert.equal(result.timedOut, false);
  assert.equal(result.stdoutBytes, 5003);
  assert.equal(result.stdoutTail.length, 4096);
  assert.ok(result.stdoutTail.endsWith('xEND'));
  assert.equal(result.stderrTail, `oops hi ${join(root, 'work/dir')}`);
  assert.equal(result.stdoutPath, '.ferry-agent/exec/run-1/stdout.log');

  const stdout = await call(agent, 'GET', '/v1/logs/run-1/stdout');
  assert.equal(stdout.status, 200);
  assert.equal(await stdout.text(), 'x'.repeat(5000) + 'END');
  assert.equal((await errorOf(await call(agent, 'GET', '/v1/logs/never-ran/stdout'), 404)).type, 'InvalidInput');
  assert.equal((await call(agent, 'GET', '/v1/logs/run-1/other')).status, 404);
});

test('exec of a missing program answers exit code 127 with the error', async (t) => {
  const { agent } = await setup(t);
  const result = await execResult(agent, { executionId: 'missing', command: ['/no/such/program'] });
  assert.equal(result.exitCode, 127);
  assert.match(result.stderrTail, /ENOENT/);
});

test('exec kills a command that outlives its timeout', async (t) => {
  const { agent } = await setup(t);
  const started = Date.now();
  const result = await execResult(agent, { executionId: 'sleepy', command: ['sleep', '30'], timeoutSeconds: 1 });
  assert.equal(result.timedOut, true);
  assert.equal(result.signal, 'SIGKILL');
  assert.equal(result.exitCode, null);
  assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
});

test('a repeated executionId does not run the command again', async (t) => {
  const { agent, root } = await setup(t);
  const request = { executionId: 'once', command: ['sh', '-c', 'sleep 0.3; echo ran >> marker; echo done'] };
  const [first, concurrent] = await Promise.all([execResult(agent, request), execResult(agent, request)]);
  const later = await execResult(agent, request);
  assert.equal(first.stdoutTail, 'done\n');
  assert.deepEqual(concurrent, first);
  assert.deepEqual(later, first);
  assert.equal(await readFile(join(root, 'marker'), 'utf8'), 'ran\n');

  // The saved result outlives the agent process.
  const restarted = await startAgent({ root, token: TOKEN, allowedUrlPrefixes: ['http://127.0.0.1/'], log: silentLog });
  t.after(() => restarted.close());
  assert.deepEqual(await execResult(restarted, request), first);
  assert.equal(await readFile(join(root, 'marker'), 'utf8'), 'ran\n');
});

test('exec refuses bad ids, commands and working directories', async (t) => {
  const { agent, root } = await setup(t);
  const bad: [Record<string, unknown>, string][] = [
    [{ executionId: '..', command: ['true'] }, 'InvalidInput'],
    [{ executionId: 'a/b', command: ['true'] }, 'InvalidInput'],
    [{ executionId: 'x'.repeat(129), command: ['true'] }, 'InvalidInput'],
    [{ executionId: 'ok', command: [] }, 'InvalidInput'],
    [{ executionId: 'ok', command: 'true' }, 'InvalidInput'],
    [{ executionId: 'ok', command: ['true'], timeoutSeconds: 0 }, 'InvalidInput'],
    [{ executionId: 'ok', command: ['true'], cwd: '../up' }, 'UnsafePath'],
    [{ executionId: 'ok', command: ['true'], cwd: '.ferry-agent' }, 'UnsafePath'],
  ];
  for (const [body, type] of bad) {
    assert.equal((await errorOf(await exec(agent, body), 400)).type, type, JSON.stringify(body));
  }
  assert.deepEqual(await treeOf(root), []);
});

test('unknown routes, wrong methods, bad JSON and oversized bodies are refused', async (t) => {
  const { agent } = await setup(t);
  assert.equal((await errorOf(await call(agent, 'GET', '/v1/nope'), 404)).type, 'InvalidInput');
  const wrongMethod = await call(agent, 'POST', '/v1/health', {});
  assert.equal(wrongMethod.headers.get('allow'), 'GET');
  await errorOf(wrongMethod, 405);
  await errorOf(await call(agent, 'GET', '/v1/land'), 405);

  const notJson = await fetch(agent.url + '/v1/land', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '{not json' });
  assert.equal((await errorOf(notJson, 400)).type, 'InvalidInput');

  // Declares 65 MiB but sends a few bytes: the agent answers from the header alone.
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(agent.url + '/v1/land', {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'content-length': String(65 * 1024 * 1024) },
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.write('{"dir":');
  });
  assert.equal(status, 413);
});

test('main prints one listening line, serves, and exits on SIGTERM; bad settings exit 2', async (t) => {
  const root = await tempDir(t, 'main');
  const mainScript = join(__dirname, '../../runtime/main.js');
  const env = { ...process.env, FERRY_AGENT_ROOT: root, FERRY_AGENT_TOKEN: TOKEN, FERRY_AGENT_ALLOWED_URL_PREFIXES: 'http://127.0.0.1:1/ferry/' };

  const child = spawn(process.execPath, [mainScript], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
  const listening = JSON.parse(line) as { event: string; url: string; port: number; bootId: string };
  assert.equal(listening.event, 'listening');
  assert.equal(listening.url, `http://127.0.0.1:${listening.port}`);
  const health = (await (await fetch(listening.url + '/v1/health', { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as AgentHealth;
  assert.equal(health.bootId, listening.bootId);
  // The token is not handed down to commands.
  const envDump = await fetch(listening.url + '/v1/exec', {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ executionId: 'env', command: [process.execPath, '-e', 'process.stdout.write(String(process.env.FERRY_AGENT_TOKEN))'], timeoutSeconds: 10 }),
  });
  assert.equal(((await envDump.json()) as ExecResult).stdoutTail, 'undefined');
  child.kill('SIGTERM');
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0);

  const badSettings: [Record<string, string>, string][] = [
    [{ FERRY_AGENT_ROOT: '' }, 'FERRY_AGENT_ROOT'],
    [{ FERRY_AGENT_ROOT: 'relative/dir' }, 'FERRY_AGENT_ROOT'],
    [{ FERRY_AGENT_TOKEN: 'short' }, 'FERRY_AGENT_TOKEN'],
    [{ FERRY_AGENT_PORT: 'eighty' }, 'FERRY_AGENT_PORT'],
    [{ FERRY_AGENT_ALLOWED_URL_PREFIXES: 'ftp://x/' }, 'FERRY_AGENT_ALLOWED_URL_PREFIXES'],
    [{ FERRY_AGENT_ALLOWED_URL_PREFIXES: ' , ' }, 'FERRY_AGENT_ALLOWED_URL_PREFIXES'],
  ];
  for (const [override, variable] of badSettings) {
    const bad = spawn(process.execPath, [mainScript], { env: { ...env, ...override }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    bad.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [badCode] = (await once(bad, 'exit')) as [number | null];
    assert.equal(badCode, 2, JSON.stringify(override));
    assert.match(stderr, new RegExp(variable));
    assert.equal(stderr.trim().split('\n').length, 1);
  }
});

test('at start the agent removes the temp files of landings an earlier process left, and nothing else', async (t) => {
  const root = await tempDir(t, 'abandoned');
  const outside = await tempDir(t, 'outside');
  await mkdir(join(root, 'sessions/s1/data/nested'), { recursive: true });
  await writeFile(join(root, 'sessions/s1/data/input.csv'), 'a,b\n');
  await writeFile(join(root, 'sessions/s1/data/.ferry-tmp-0a1b2c3d'), Buffer.alloc(4096, 1));
  await writeFile(join(root, 'sessions/s1/data/nested/.ferry-tmp-4e5f6a7b'), Buffer.alloc(10, 2));
  await writeFile(join(outside, '.ferry-tmp-not-ours'), 'outside the root');
  await symlink(join(outside, '.ferry-tmp-not-ours'), join(root, 'sessions/s1/data/.ferry-tmp-link'));
  const logged: { msg: string; fields?: Record<string, unknown> }[] = [];
  const agent = await startAgent({ root, token: TOKEN, allowedUrlPrefixes: ['http://127.0.0.1/'], log: { log: (_level, msg, fields) => logged.push({ msg, fields }) } });
  t.after(() => agent.close());

  assert.deepEqual((await readdir(join(root, 'sessions/s1/data'))).sort(), ['.ferry-tmp-link', 'input.csv', 'nested']);
  assert.deepEqual(await readdir(join(root, 'sessions/s1/data/nested')), []);
  assert.equal(await readFile(join(outside, '.ferry-tmp-not-ours'), 'utf8'), 'outside the root', 'a symlink is not followed');
  const removal = logged.find((line) => line.msg.startsWith('removed temp files'));
  assert.deepEqual(removal?.fields, { bootId: agent.bootId, removed: 2, failed: 0 });
});

/** The land request entry of a file stored as chunks, each chunk served by `blobs`. */
function chunkedLandFile(blobs: BlobServer, path: string, body: Buffer): LandFile {
  const chunks = chunksOf(body).map((chunk) => ({ sha256: sha256(chunk), size: chunk.length, url: blobs.put(sha256(chunk), chunk) }));
  return { path, size: body.length, mode: 0o644, sha256: sha256(body), chunks };
}

test('a chunked file lands from its chunks; its next version reuses the chunks already on disk and downloads only the changed ones', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const first = randomBytes(24 << 20);
  const firstFile = chunkedLandFile(blobs, 'big.bin', first);
  const cold = finalEvent(await land(agent, 'data', [firstFile]));
  assert.equal(cold.type, 'result');
  assert.ok((await readFile(join(root, 'data/big.bin'))).equals(first));
  assert.equal(blobs.requests.length, firstFile.chunks!.length);
  assert.deepEqual(cold.type === 'result' && [cold.bytesDownloaded, cold.bytesReused], [first.length, 0]);

  const second = Buffer.from(first);
  randomBytes(1 << 20).copy(second, 12 << 20);
  const secondFile = chunkedLandFile(blobs, 'big.bin', second);
  const newChunks = secondFile.chunks!.filter((chunk) => !firstFile.chunks!.some((old) => old.sha256 === chunk.sha256));
  const fetchedBefore = blobs.requests.length;
  const delta = finalEvent(await land(agent, 'data', [secondFile]));
  assert.ok((await readFile(join(root, 'data/big.bin'))).equals(second));
  assert.equal(delta.type, 'result');
  assert.ok(delta.type === 'result');
  const downloaded = delta.bytesDownloaded ?? Infinity;
  assert.equal(delta.filesLanded, 1);
  assert.equal(downloaded + (delta.bytesReused ?? 0), second.length);
  // A new chunk whose bytes the old file holds at the same offset is copied too, so at most the new chunks are fetched.
  const fetched = blobs.requests.slice(fetchedBefore);
  const newUrls = new Set(newChunks.map((chunk) => new URL(chunk.url).pathname));
  assert.ok(fetched.length >= 1 && fetched.every((request) => newUrls.has(request)), 'only changed chunks were fetched');
  assert.ok(downloaded <= newChunks.reduce((sum, c) => sum + c.size, 0));
  assert.ok(downloaded <= 5 << 20, `${downloaded} bytes downloaded for a 1 MiB edit`);
  assert.deepEqual(await treeOf(join(root, 'data')), ['big.bin']);

  // Bytes inserted near the start shift every later chunk: the agent splits the old file to find them where they moved.
  const third = Buffer.concat([second.subarray(0, 1 << 20), Buffer.from('inserted line\n'), second.subarray(1 << 20)]);
  const thirdFile = chunkedLandFile(blobs, 'big.bin', third);
  const shifted = finalEvent(await land(agent, 'data', [thirdFile]));
  assert.ok((await readFile(join(root, 'data/big.bin'))).equals(third));
  assert.ok(shifted.type === 'result' && (shifted.bytesDownloaded ?? Infinity) <= 4 << 20 && (shifted.bytesReused ?? 0) >= third.length - (4 << 20), JSON.stringify(shifted));
});

test('a chunk that does not match its sha256 fails the file with ChecksumMismatch naming the chunk, and the previous version stays', async (t) => {
  const { agent, root, blobs } = await setup(t);
  await mkdir(join(root, 'data'), { recursive: true });
  await writeFile(join(root, 'data/big.bin'), 'previous version\n');
  const body = randomBytes(10 << 20);
  const file = chunkedLandFile(blobs, 'big.bin', body);
  const chunk = file.chunks![1];
  blobs.put(chunk.sha256, Buffer.alloc(chunk.size, 1));
  const failed = finalEvent(await land(agent, 'data', [file]));
  assert.equal(failed.type, 'error');
  assert.equal(failed.type === 'error' && failed.error.type, 'ChecksumMismatch');
  assert.match(failed.type === 'error' ? failed.error.message : '', new RegExp(`chunk 2 of ${file.chunks!.length} of "big.bin" does not match`));
  assert.equal(await readFile(join(root, 'data/big.bin'), 'utf8'), 'previous version\n');
  assert.deepEqual(await treeOf(join(root, 'data')), ['big.bin']);
});

test('a land entry needs exactly one of url and chunks, and every chunk URL must be allowed', async (t) => {
  const { agent, blobs } = await setup(t);
  const body = randomBytes(9 << 20);
  const file = chunkedLandFile(blobs, 'big.bin', body);
  const both = await errorOf(await call(agent, 'POST', '/v1/land', { dir: 'data', files: [{ ...file, url: file.chunks![0].url }] }), 400);
  assert.match(both.message, /needs either url or chunks/);
  const outside = { ...file, chunks: file.chunks!.map((c, i) => (i === 2 ? { ...c, url: 'http://127.0.0.1:1/elsewhere' } : c)) };
  const refused = await errorOf(await call(agent, 'POST', '/v1/land', { dir: 'data', files: [outside] }), 400);
  assert.equal(refused.type, 'UrlNotAllowed');
  const short = { ...file, chunks: file.chunks!.slice(1) };
  const wrongTotal = await errorOf(await call(agent, 'POST', '/v1/land', { dir: 'data', files: [short] }), 400);
  assert.match(wrongTotal.message, /chunks add up to/);
  assert.deepEqual(blobs.requests, []);
});

test('verification hashes a file again after any write to it, even one that keeps its size and mtime', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const files = landFilesFor(blobs, SAMPLE);
  await land(agent, 'data', files);
  const listed = async () => {
    const events = await ndjson<ListFilesStreamEvent>(await call(agent, 'POST', '/v1/files', { dir: 'data' }));
    return new Map(events.flatMap((e) => (e.type === 'file' ? [[e.path, e.sha256]] : [])));
  };
  assert.equal((await listed()).get('a.txt'), sha256(Buffer.from('hello\n')));
  const target = join(root, 'data/a.txt');
  const { mtime, atime } = await stat(target);
  await writeFile(target, 'HELLO\n');
  await utimes(target, atime, mtime);
  assert.equal((await listed()).get('a.txt'), sha256(Buffer.from('HELLO\n')));
});
