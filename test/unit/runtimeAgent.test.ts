import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { AGENT_API_VERSION, type AgentError, type AgentHealth, type LandFile, type LandStreamEvent, type ListFilesStreamEvent, type ProcessStatus, type RemoveResult, type StopProcessResult } from '../../core/agentProtocol';
import { PACK_TARGET_BYTES, planPacks } from '../../core/packs';
import { chunksOf } from '../support/fixtures';
import { startAgent, type RunningAgent } from '../../runtime/agent';
import { ByteBudget, readJsonBody, sendFailure, sendJson } from '../../runtime/http';
import { toAgentFailure } from '../../runtime/failure';
import type { AgentLogger } from '../../runtime/log';

const TOKEN = 'test-token-0123456789abcdef';
const silentLog: AgentLogger = { log: () => undefined };

function sha256(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

/** This process's user, as FERRY_AGENT_RUN_AS names it. */
const ownUser = () => `${process.getuid!()}:${process.getgid!()}`;

async function tempDir(t: TestContext, label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `ferry-agent-test-${label}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A blob store stand-in: serves `/ferry/<name>` bodies (byte ranges too, as S3 does) and records every request path. */
interface BlobServer {
  prefix: string;
  port: number;
  requests: string[];
  /** The Range header of each request, in order ('' for none). */
  ranges: string[];
  /** Serves `body` under `name` and returns its URL. */
  put(name: string, body: Buffer): string;
  /** Answer every request with the whole body (200), as a server that ignores Range does. */
  ignoreRanges: boolean;
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
  const ranges: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url ?? '');
    ranges.push(req.headers.range ?? '');
    const body = bodies.get(req.url ?? '');
    if (!body) {
      res.writeHead(404).end('no such blob');
      return;
    }
    const range = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (range && !stand.ignoreRanges) {
      const part = body.subarray(Number(range[1]), Number(range[2]) + 1);
      res.writeHead(206, { 'content-length': part.length, 'content-range': `bytes ${range[1]}-${Number(range[1]) + part.length - 1}/${body.length}` }).end(part);
      return;
    }
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  const port = await listenLocally(t, server);
  const prefix = `http://127.0.0.1:${port}/ferry/`;
  const stand: BlobServer = {
    prefix,
    port,
    requests,
    ranges,
    ignoreRanges: false,
    put(name, body) {
      bodies.set(`/ferry/${name}`, body);
      return prefix + name;
    },
  };
  return stand;
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
  assert.equal(health.apiVersion, AGENT_API_VERSION);
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
    ['POST', '/v1/processes', { processId: 'unauthorised', command: ['touch', join(root, 'ran')], timeoutSeconds: 5 }],
    ['GET', '/v1/processes/unauthorised', undefined],
    ['GET', '/v1/processes/unauthorised/stdout', undefined],
    ['POST', '/v1/processes/unauthorised/stop', { graceSeconds: 1 }],
    ['POST', '/v1/dirs', { dirs: ['made'] }],
    ['POST', '/v1/remove', { paths: ['data'] }],
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

test('symlinks inside the root are not followed by land or files: files lists each by its text', async (t) => {
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
  // Links are listed as link entries: their text and its hash, never what they point to.
  const asEntries = (events: ListFilesStreamEvent[]) => events.flatMap((e) => (e.type === 'file' ? [[e.path, e.link ?? null, e.sha256, e.size, e.mode.toString(8)]] : []));
  const text = (link: string) => Buffer.from(link);
  const linkToSecret = join(outside, 'secret.txt');
  const listed = await ndjson<ListFilesStreamEvent>(await call(agent, 'POST', '/v1/files', { dir: 'proj' }));
  assert.deepEqual(asEntries(listed), [
    ['link.txt', linkToSecret, sha256(text(linkToSecret)), text(linkToSecret).length, '777'],
    ['real.txt', null, sha256(Buffer.from('real')), 4, '644'],
    ['sub', outside, sha256(text(outside)), text(outside).length, '777'],
  ]);
  const selected = await ndjson<ListFilesStreamEvent>(await call(agent, 'POST', '/v1/files', { dir: 'proj', paths: ['sub/secret.txt', 'link.txt', 'real.txt'] }));
  assert.deepEqual(asEntries(selected), asEntries(listed).slice(0, 2), 'a path through a link is not there; the link itself is');

  // A symlink at the final path is replaced by the file, not written through.
  const replaced = finalEvent(await land(agent, 'proj', [{ ...file, path: 'link.txt' }]));
  assert.equal(replaced.type, 'result');
  assert.equal(await readFile(join(outside, 'secret.txt'), 'utf8'), 'secret');
  assert.ok((await lstat(join(root, 'proj/link.txt'))).isFile());
  assert.equal(await readFile(join(root, 'proj/link.txt'), 'utf8'), 'payload');
});

test('a link entry lands as a symlink with its text, replacing a file or another link without following either, and lists as it landed', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const outside = await tempDir(t, 'outside');
  await writeFile(join(outside, 'secret.txt'), 'secret');
  const linkEntry = (path: string, text: string): LandFile => ({ path, size: Buffer.byteLength(text), mode: 0o777, sha256: sha256(Buffer.from(text)), link: text });
  const data = join(root, 'data');
  await mkdir(data);
  // What is at the final paths before: a file, a link elsewhere, and nothing.
  await writeFile(join(data, 'was-file'), 'old');
  await symlink(join(outside, 'secret.txt'), join(data, 'was-link'));
  const entries = [linkEntry('new', '../elsewhere/x'), linkEntry('was-file', 'new-target'), linkEntry('was-link', join(outside, 'secret.txt') + '.other'), linkEntry('sub/abs', outside)];

  const result = finalEvent(await land(agent, 'data', entries));
  assert.deepEqual(result.type === 'result' && [result.filesLanded, result.filesAlreadyPresent, result.bytesDownloaded], [4, 0, 0]);
  for (const entry of entries) {
    const at = join(data, entry.path);
    assert.ok((await lstat(at)).isSymbolicLink(), entry.path);
    assert.equal(await readlink(at), entry.link);
  }
  assert.deepEqual(await readdir(outside), ['secret.txt'], 'nothing was written through a link');
  assert.equal(await readFile(join(outside, 'secret.txt'), 'utf8'), 'secret');
  assert.deepEqual(blobs.requests, [], 'a link fetches no blob');

  const again = finalEvent(await land(agent, 'data', entries));
  assert.deepEqual(again.type === 'result' && [again.filesLanded, again.filesAlreadyPresent], [0, 4]);

  const listed = await ndjson<ListFilesStreamEvent>(await call(agent, 'POST', '/v1/files', { dir: 'data' }));
  const asEntry = (e: ListFilesStreamEvent) => (e.type === 'file' ? { path: e.path, size: e.size, mode: e.mode, sha256: e.sha256, link: e.link } : undefined);
  assert.deepEqual(listed.map(asEntry).filter(Boolean), [...entries].sort((a, b) => (a.path < b.path ? -1 : 1)));

  // A file landed through a landed link is refused, and a link with the wrong hash is not landed.
  const [through] = landFilesFor(blobs, [{ path: 'sub/abs/inside.txt', body: Buffer.from('x'), mode: 0o644 }]);
  assert.equal((await errorOf(await call(agent, 'POST', '/v1/land', { dir: 'data', files: [through] }), 400)).type, 'UnsafePath');
  const forged = { ...linkEntry('forged', 'a'), sha256: sha256(Buffer.from('b')) };
  assert.equal((await errorOf(await call(agent, 'POST', '/v1/land', { dir: 'data', files: [forged] }), 400)).type, 'InvalidInput');
  assert.deepEqual(await readdir(outside), ['secret.txt']);
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

function startProcess(agent: RunningAgent, body: Record<string, unknown>): Promise<Response> {
  return call(agent, 'POST', '/v1/processes', { timeoutSeconds: 30, ...body });
}

async function processStatus(agent: RunningAgent, body: Record<string, unknown>): Promise<ProcessStatus> {
  const response = await startProcess(agent, body);
  assert.equal(response.status, 200);
  return (await response.json()) as ProcessStatus;
}

/** The status once the process ended (long-polling, as the worker does). */
async function ended(agent: RunningAgent, processId: string): Promise<ProcessStatus> {
  for (;;) {
    const status = (await (await call(agent, 'GET', `/v1/processes/${processId}?waitMs=5000`)).json()) as ProcessStatus;
    if (status.state !== 'running') return status;
  }
}

test('a process runs once with its cwd and env; its status carries the exit code and output tails, and its logs are served by range', async (t) => {
  const { agent, root } = await setup(t);
  const script = "process.stdout.write('x'.repeat(5000) + 'END'); process.stderr.write('oops ' + process.env.GREETING + ' ' + process.cwd()); process.exit(3)";
  const started = await processStatus(agent, { processId: 'run-1', command: [process.execPath, '-e', script], cwd: 'work/dir', env: { GREETING: 'hi' }, waitMs: 10_000 });
  assert.equal(started.processId, 'run-1');
  assert.equal(started.started, true);
  assert.equal(started.bootId, agent.bootId);
  assert.equal(started.state, 'exited', 'waitMs answers once a short command ended');
  assert.equal(started.exitCode, 3);
  assert.equal(started.signal, null);
  assert.equal(started.timedOut, false);
  assert.equal(started.stdoutBytes, 5003);
  assert.equal(started.stdoutTail.length, 4096);
  assert.ok(started.stdoutTail.endsWith('xEND'));
  assert.equal(started.stderrTail, `oops hi ${join(root, 'work/dir')}`);

  const stdout = await call(agent, 'GET', '/v1/processes/run-1/stdout');
  assert.equal(stdout.status, 200);
  assert.equal(await stdout.text(), 'x'.repeat(5000) + 'END');
  const range = await call(agent, 'GET', '/v1/processes/run-1/stdout?offset=4998&length=4');
  assert.equal(await range.text(), 'xxEN');
  const past = await call(agent, 'GET', '/v1/processes/run-1/stdout?offset=9000');
  assert.equal(await past.text(), '');
  assert.equal((await errorOf(await call(agent, 'GET', '/v1/processes/never-ran/stdout'), 404)).type, 'InvalidInput');
  assert.equal((await errorOf(await call(agent, 'GET', '/v1/processes/never-ran'), 404)).type, 'InvalidInput');
  assert.equal((await call(agent, 'GET', '/v1/processes/run-1/other')).status, 404);
});

test('a detached process is followed while it runs: running status, growing log, combined output in order', async (t) => {
  const { agent } = await setup(t);
  const first = await processStatus(agent, { processId: 'train', command: ['sh', '-c', 'echo one; echo two >&2; sleep 30'], output: 'combined' });
  assert.equal(first.state, 'running');
  assert.ok(first.pid !== null && first.pid > 0);
  let status = first;
  while (status.stdoutBytes < 8) status = (await (await call(agent, 'GET', '/v1/processes/train?waitMs=200')).json()) as ProcessStatus;
  assert.equal(status.state, 'running');
  assert.equal(status.stdoutTail, 'one\ntwo\n', 'stderr went into the same log, in order');
  assert.equal(status.stderrBytes, 0);
  const stopped = (await (await call(agent, 'POST', '/v1/processes/train/stop', { graceSeconds: 5 })).json()) as StopProcessResult;
  assert.equal(stopped.signal, 'TERM');
  assert.equal(stopped.status.state, 'exited');
  assert.equal(stopped.status.signal, 'SIGTERM');
  const again = (await (await call(agent, 'POST', '/v1/processes/train/stop', { graceSeconds: 5 })).json()) as StopProcessResult;
  assert.equal(again.signal, 'none');
});

test('stop escalates to SIGKILL after the grace period for a command that ignores SIGTERM', async (t) => {
  const { agent } = await setup(t);
  await processStatus(agent, { processId: 'stubborn', command: ['sh', '-c', "trap '' TERM; echo ready; while :; do sleep 0.1; done"] });
  let status: ProcessStatus;
  do status = (await (await call(agent, 'GET', '/v1/processes/stubborn?waitMs=200')).json()) as ProcessStatus;
  while (status.stdoutBytes === 0);
  const stopped = (await (await call(agent, 'POST', '/v1/processes/stubborn/stop', { graceSeconds: 0.5 })).json()) as StopProcessResult;
  assert.equal(stopped.signal, 'KILL');
  assert.equal(stopped.status.signal, 'SIGKILL');
});

test('a missing program exits 127 with the error', async (t) => {
  const { agent } = await setup(t);
  const started = await processStatus(agent, { processId: 'missing', command: ['/no/such/program'] });
  const result = await ended(agent, started.processId);
  assert.equal(result.exitCode, 127);
  assert.match(result.stderrTail, /ENOENT/);
});

test('a command that outlives its timeout is killed with its process group', async (t) => {
  const { agent } = await setup(t);
  await processStatus(agent, { processId: 'sleepy', command: ['sh', '-c', 'sleep 30 & sleep 30'], timeoutSeconds: 1 });
  const result = await ended(agent, 'sleepy');
  assert.equal(result.timedOut, true);
  assert.equal(result.signal, 'SIGKILL');
  assert.equal(result.exitCode, null);
});

test('a repeated processId never starts the command again, not even after the agent restarted', async (t) => {
  const { agent, root } = await setup(t);
  const request = { processId: 'once', command: ['sh', '-c', 'sleep 0.3; echo ran >> marker; echo done'], waitMs: 10_000 };
  const [first, concurrent] = await Promise.all([processStatus(agent, request), processStatus(agent, request)]);
  const later = await processStatus(agent, request);
  assert.deepEqual([first.started, concurrent.started, later.started].sort(), [false, false, true], 'one request started it');
  for (const status of [first, concurrent, later]) {
    assert.equal(status.state, 'exited');
    assert.equal(status.stdoutTail, 'done\n');
  }
  assert.equal(await readFile(join(root, 'marker'), 'utf8'), 'ran\n');

  // The record outlives the agent process.
  await agent.close();
  const restarted = await startAgent({ root, token: TOKEN, allowedUrlPrefixes: ['http://127.0.0.1/'], log: silentLog });
  t.after(() => restarted.close());
  const replayed = await processStatus(restarted, request);
  assert.equal(replayed.started, false);
  assert.equal(replayed.exitCode, 0);
  assert.equal(await readFile(join(root, 'marker'), 'utf8'), 'ran\n');
});

test('a record an earlier boot left counts only with its signature: rewritten, or read by an agent with another token, the process is "lost"', async (t) => {
  const { agent, root } = await setup(t);
  for (const processId of ['kept', 'rewritten']) assert.equal((await processStatus(agent, { processId, command: ['sh', '-c', 'exit 3'], waitMs: 10_000 })).exitCode, 3);
  await agent.close();
  // What code run as the agent's own user could do to the state folder: claim success.
  const record = join(root, '.ferry-agent', 'processes', 'rewritten', 'result.json');
  await writeFile(record, (await readFile(record, 'utf8')).replace('"exitCode":3', '"exitCode":0'));

  const next = await startAgent({ root, token: TOKEN, allowedUrlPrefixes: ['http://127.0.0.1/'], log: silentLog });
  t.after(() => next.close());
  const kept = await processStatus(next, { processId: 'kept', command: ['true'] });
  assert.deepEqual([kept.state, kept.exitCode, kept.started], ['exited', 3, false], 'an untouched record is the process as it ended');
  const rewritten = await processStatus(next, { processId: 'rewritten', command: ['true'] });
  assert.deepEqual([rewritten.state, rewritten.exitCode, rewritten.started], ['lost', null, false], 'a rewritten record is not believed, and the process is not run again');
  await next.close();

  const otherToken = await startAgent({ root, token: `${TOKEN}-other`, allowedUrlPrefixes: ['http://127.0.0.1/'], log: silentLog });
  t.after(() => otherToken.close());
  const foreign = await fetch(`${otherToken.url}/v1/processes/kept`, { headers: { authorization: `Bearer ${TOKEN}-other` } });
  assert.equal(((await foreign.json()) as ProcessStatus).state, 'lost', 'the key comes from the token');
});

test('a process whose agent was killed before it ended is "lost" to the next agent, never started again', async (t) => {
  const root = await tempDir(t, 'lost');
  const mainScript = join(__dirname, '../../runtime/main.js');
  const child = spawn(process.execPath, [mainScript], {
    // Code as the agent's own user even when the tests run as root: this is about the agent's records, not users.
    env: { ...process.env, FERRY_AGENT_ROOT: root, FERRY_AGENT_TOKEN: TOKEN, FERRY_AGENT_ALLOWED_URL_PREFIXES: 'http://127.0.0.1:1/ferry/', FERRY_AGENT_RUN_AS: ownUser() },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  t.after(() => child.kill('SIGKILL'));
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
  const { url } = JSON.parse(line) as { url: string };
  const request = { processId: 'interrupted', command: ['sh', '-c', 'echo started >> marker; sleep 30'], timeoutSeconds: 60 };
  const first = (await (await fetch(`${url}/v1/processes`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(request) })).json()) as ProcessStatus;
  assert.equal(first.started, true);
  t.after(() => {
    // The agent died without stopping it: the orphan is this test's to end.
    try {
      if (first.pid) process.kill(-first.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  });
  child.kill('SIGKILL');
  await once(child, 'exit');
  const next = await startAgent({ root, token: TOKEN, allowedUrlPrefixes: ['http://127.0.0.1/'], log: silentLog });
  t.after(() => next.close());
  const lost = await processStatus(next, request);
  assert.equal(lost.started, false);
  assert.equal(lost.state, 'lost');
  assert.equal(lost.exitCode, null);
  assert.equal(await readFile(join(root, 'marker'), 'utf8'), 'started\n', 'it ran once');
});

test('the agent refuses bad process ids, commands, working directories and waits', async (t) => {
  const { agent, root } = await setup(t);
  const bad: [Record<string, unknown>, string][] = [
    [{ processId: '..', command: ['true'] }, 'InvalidInput'],
    [{ processId: 'a/b', command: ['true'] }, 'InvalidInput'],
    [{ processId: 'x'.repeat(129), command: ['true'] }, 'InvalidInput'],
    [{ processId: 'ok', command: [] }, 'InvalidInput'],
    [{ processId: 'ok', command: 'true' }, 'InvalidInput'],
    [{ processId: 'ok', command: ['true'], timeoutSeconds: 0 }, 'InvalidInput'],
    [{ processId: 'ok', command: ['true'], output: 'both' }, 'InvalidInput'],
    [{ processId: 'ok', command: ['true'], waitMs: 60_000 }, 'InvalidInput'],
    [{ processId: 'ok', command: ['true'], cwd: '../up' }, 'UnsafePath'],
    [{ processId: 'ok', command: ['true'], cwd: '.ferry-agent' }, 'UnsafePath'],
  ];
  for (const [body, type] of bad) {
    assert.equal((await errorOf(await startProcess(agent, body), 400)).type, type, JSON.stringify(body));
  }
  assert.equal((await errorOf(await call(agent, 'GET', '/v1/processes/ok?waitMs=-1'), 400)).type, 'InvalidInput');
  assert.deepEqual(await treeOf(root), []);
});

test('dirs are created and removed inside the root only, never through a link; removing a folder stops the processes running in it', async (t) => {
  const { agent, root } = await setup(t);
  const outside = await tempDir(t, 'remove-outside');
  await writeFile(join(outside, 'keep.txt'), 'outside');
  assert.equal((await call(agent, 'POST', '/v1/dirs', { dirs: ['sessions/s1/data', 'sessions/s1/work'] })).status, 200);
  await symlink(outside, join(root, 'sessions/s1/link'));
  for (const path of ['../x', '/tmp', '', '.ferry-agent']) {
    assert.equal((await errorOf(await call(agent, 'POST', '/v1/remove', { paths: [path] }), 400)).type, 'UnsafePath', path);
    assert.equal((await errorOf(await call(agent, 'POST', '/v1/dirs', { dirs: [path] }), 400)).type, 'UnsafePath', path);
  }
  assert.equal((await errorOf(await call(agent, 'POST', '/v1/remove', { paths: ['sessions/s1/link/keep.txt'] }), 400)).type, 'UnsafePath', 'a path through a link is refused');
  assert.equal((await errorOf(await call(agent, 'POST', '/v1/dirs', { dirs: ['sessions/s1/link/made'] }), 400)).type, 'UnsafePath');
  await processStatus(agent, { processId: 'inside', command: ['sleep', '30'], cwd: 'sessions/s1/work' });
  const removed = (await (await call(agent, 'POST', '/v1/remove', { paths: ['sessions/s1', 'sessions/never'] })).json()) as RemoveResult;
  assert.deepEqual(removed, { bootId: agent.bootId, removed: 1, processesStopped: 1 });
  assert.equal((await ended(agent, 'inside')).signal, 'SIGKILL');
  assert.deepEqual(await treeOf(join(root, 'sessions')), []);
  assert.equal(await readFile(join(outside, 'keep.txt'), 'utf8'), 'outside', 'the link was removed, not followed');
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
  const envDump = await fetch(listening.url + '/v1/processes', {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ processId: 'env', command: [process.execPath, '-e', 'process.stdout.write(String(process.env.FERRY_AGENT_TOKEN))'], timeoutSeconds: 10, waitMs: 10_000 }),
  });
  assert.equal(((await envDump.json()) as ProcessStatus).stdoutTail, 'undefined');
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

test('FERRY_AGENT_TOKEN_FILE: the agent deletes the file once read, and code it runs finds the token neither there nor in /proc/<agent pid>/environ', async (t) => {
  const root = await tempDir(t, 'token-file');
  const secrets = await tempDir(t, 'token-secrets');
  const tokenFile = join(secrets, 'agent-token');
  await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  const mainScript = join(__dirname, '../../runtime/main.js');
  const { FERRY_AGENT_TOKEN: _unused, ...inherited } = process.env;
  // Code as the agent's own user even when the tests run as root: the one case where it could read the agent's /proc.
  const env = { ...inherited, FERRY_AGENT_ROOT: root, FERRY_AGENT_TOKEN_FILE: tokenFile, FERRY_AGENT_ALLOWED_URL_PREFIXES: 'http://127.0.0.1:1/ferry/', FERRY_AGENT_RUN_AS: ownUser() };
  const child = spawn(process.execPath, [mainScript], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
  const { url } = JSON.parse(line) as { url: string };
  await assert.rejects(stat(tokenFile), { code: 'ENOENT' }, 'the token file is gone');

  // The command is the agent's child: its parent's environ is the agent's, as the agent was started.
  const readEnviron = `process.stdout.write(require('fs').readFileSync('/proc/' + process.ppid + '/environ', 'utf8').split('\\0').join('\\n'))`;
  const answer = await fetch(url + '/v1/processes', {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ processId: 'environ', command: [process.execPath, '-e', readEnviron], timeoutSeconds: 10, waitMs: 10_000 }),
  });
  assert.equal(answer.status, 200, 'the token read from the file authorizes requests');
  const result = (await answer.json()) as ProcessStatus;
  assert.equal(result.exitCode, 0, result.stderrTail);
  assert.match(result.stdoutTail, new RegExp(`^FERRY_AGENT_ROOT=${root}$`, 'm'), "the command read the agent's environ");
  assert.ok(!result.stdoutTail.includes(TOKEN), 'the token is not in it');
  assert.ok(!result.stdoutTail.includes(TOKEN.slice(0, 12)), 'nor any part of it');

  const missing = spawn(process.execPath, [mainScript], { env: { ...env, FERRY_AGENT_TOKEN_FILE: join(secrets, 'no-such-file') }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  missing.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(missing, 'exit')) as [number | null];
  assert.equal(code, 2);
  assert.match(stderr, /FERRY_AGENT_TOKEN_FILE: cannot read .*no-such-file.*ENOENT/);
});

test('request bodies share one byte budget: over it a body is refused with 503 and retry-after before it is read, and its bytes come back once answered', async (t) => {
  const budget = new ByteBudget(100);
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  let holdRead: () => void = () => undefined;
  const holding = new Promise<void>((resolve) => (holdRead = resolve));
  const server = createServer((req, res) => {
    readJsonBody(req, res, budget).then(
      async (body) => {
        if ((body as { hold?: boolean }).hold) {
          holdRead();
          await held;
        }
        sendJson(res, 200, { inUse: budget.inUse });
      },
      (err: unknown) => sendFailure(res, toAgentFailure(err)),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const send = (body: object, chunked = false) =>
    new Promise<{ status: number; retryAfter?: string; text: string }>((resolve, reject) => {
      const text = JSON.stringify(body);
      const req = httpRequest(url, { method: 'POST', headers: chunked ? {} : { 'content-length': Buffer.byteLength(text) } }, (res) => {
        let answer = '';
        res.on('data', (chunk: Buffer) => (answer += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], text: answer }));
      });
      req.on('error', reject);
      req.end(text);
    });

  const holder = send({ hold: true, pad: 'x'.repeat(50) });
  await holding;
  for (const chunked of [false, true]) {
    const refused = await send({ pad: 'y'.repeat(50) }, chunked);
    assert.equal(refused.status, 503, refused.text);
    assert.equal(refused.retryAfter, '1');
    assert.match(refused.text, /TargetUnavailable/);
  }
  assert.equal((await send({ small: 1 })).status, 200, 'a body that fits is served meanwhile');
  release();
  assert.equal((await holder).status, 200);
  const last = { pad: 'z'.repeat(50) };
  assert.deepEqual(JSON.parse((await send(last)).text), { inUse: JSON.stringify(last).length }, 'the held bytes came back: only this body is counted');
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
  const newUrls = new Set(newChunks.map((chunk) => new URL(chunk.url!).pathname));
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
  assert.match(both.message, /needs exactly one of url, pack or chunks/);
  const outside = { ...file, chunks: file.chunks!.map((c, i) => (i === 2 ? { ...c, url: 'http://127.0.0.1:1/elsewhere' } : c)) };
  const refused = await errorOf(await call(agent, 'POST', '/v1/land', { dir: 'data', files: [outside] }), 400);
  assert.equal(refused.type, 'UrlNotAllowed');
  const short = { ...file, chunks: file.chunks!.slice(1) };
  const wrongTotal = await errorOf(await call(agent, 'POST', '/v1/land', { dir: 'data', files: [short] }), 400);
  assert.match(wrongTotal.message, /chunks add up to/);
  assert.deepEqual(blobs.requests, []);
});

/** Bodies written into packs of up to `packBytes` as the worker packs them (core/packs planPacks), served by the stand-in; returns each body's place. */
function packBodies(blobs: BlobServer, bodies: Buffer[], packBytes = PACK_TARGET_BYTES, name = 'pack'): { packs: string[]; placeOf: (body: Buffer) => { pack: number; offset: number } } {
  const places = new Map<string, { pack: number; offset: number }>();
  const unique = [...new Map(bodies.map((body) => [sha256(body), body])).values()];
  const packs = planPacks(unique.map((body) => ({ sha256: sha256(body), size: body.length, body })), packBytes).map((pack, index) => {
    let offset = 0;
    for (const blob of pack) {
      places.set(blob.sha256, { pack: index, offset });
      offset += blob.size;
    }
    return blobs.put(`blobs/packs/${name}-${index}.pack`, Buffer.concat(pack.map((blob) => blob.body)));
  });
  return { packs, placeOf: (body) => places.get(sha256(body))! };
}

function packedLandFiles(blobs: BlobServer, files: SourceFile[], packBytes?: number): { files: LandFile[]; packs: string[] } {
  const { packs, placeOf } = packBodies(blobs, files.map((f) => f.body), packBytes);
  return { packs, files: files.map((f) => ({ path: f.path, size: f.body.length, mode: f.mode, sha256: sha256(f.body), ...placeOf(f.body) })) };
}

async function landPacked(agent: RunningAgent, dir: string, request: { files: LandFile[]; packs: string[] }): Promise<LandStreamEvent[]> {
  return ndjson<LandStreamEvent>(await call(agent, 'POST', '/v1/land', { dir, ...request }));
}

test('files whose bodies sit in packs land from one range request per run of neighbours, whatever order the request lists them in', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const files: SourceFile[] = Array.from({ length: 300 }, (_, i) => ({ path: `d${i % 7}/f${i}.bin`, body: randomBytes(1 + ((i * 7919) % 20_000)), mode: i % 5 === 0 ? 0o755 : 0o644 }));
  files.push({ path: 'empty', body: Buffer.alloc(0), mode: 0o644 }, { path: 'copy.bin', body: files[3].body, mode: 0o600 });
  // 1 MiB packs: several of them, each read whole in one range (a range may span up to 8 MiB of one pack).
  const request = packedLandFiles(blobs, files, 1 << 20);
  assert.ok(request.packs.length >= 3, `${request.packs.length} packs`);
  const shuffled = [...request.files].sort(() => Math.random() - 0.5);
  const done = finalEvent(await landPacked(agent, 'data', { files: shuffled, packs: request.packs }));
  assert.equal(done.type, 'result', JSON.stringify(done));
  assert.ok(done.type === 'result');
  assert.equal(done.filesLanded, files.length);
  assert.equal(done.bytesDownloaded, files.reduce((sum, f) => sum + f.body.length, 0));
  for (const file of files) {
    assert.ok((await readFile(join(root, 'data', file.path))).equals(file.body), file.path);
    assert.equal(await modeOf(join(root, 'data', file.path)), file.mode, file.path);
  }
  assert.equal(blobs.requests.length, request.packs.length, 'one request per pack');
  assert.ok(blobs.ranges.every((range) => /^bytes=\d+-\d+$/.test(range)), 'every request read a byte range');
  assert.deepEqual((await treeOf(join(root, 'data'))).filter((name) => name.includes('.ferry-tmp-')), []);
});

test('a chunked file whose chunks sit in packs is read in runs of neighbouring chunks; its next version fetches only the bytes of changed chunks', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const first = randomBytes(20 << 20);
  const chunks = chunksOf(first);
  const firstPacks = packBodies(blobs, chunks, PACK_TARGET_BYTES, 'first');
  const chunked = (body: Buffer, parts: Buffer[], placeOf: (chunk: Buffer) => { pack: number; offset: number }): LandFile => ({
    path: 'big.bin',
    size: body.length,
    mode: 0o644,
    sha256: sha256(body),
    chunks: parts.map((chunk) => ({ sha256: sha256(chunk), size: chunk.length, ...placeOf(chunk) })),
  });
  const cold = finalEvent(await landPacked(agent, 'data', { files: [chunked(first, chunks, firstPacks.placeOf)], packs: firstPacks.packs }));
  assert.equal(cold.type, 'result', JSON.stringify(cold));
  assert.ok((await readFile(join(root, 'data/big.bin'))).equals(first));
  assert.equal(blobs.requests.length, firstPacks.packs.length, 'one range request per pack of its chunks');

  // A 1 MiB edit: the new chunks go into a pack of their own, listed after the packs of the first version.
  const second = Buffer.from(first);
  randomBytes(1 << 20).copy(second, 9 << 20);
  const secondChunks = chunksOf(second);
  const newChunks = secondChunks.filter((chunk) => !chunks.some((old) => old.equals(chunk)));
  const newPack = packBodies(blobs, newChunks, PACK_TARGET_BYTES, 'second');
  const placeOf = (chunk: Buffer) => (newChunks.includes(chunk) ? { pack: firstPacks.packs.length + newPack.placeOf(chunk).pack, offset: newPack.placeOf(chunk).offset } : firstPacks.placeOf(chunk));
  const before = blobs.requests.length;
  const delta = finalEvent(await landPacked(agent, 'data', { files: [chunked(second, secondChunks, placeOf)], packs: [...firstPacks.packs, ...newPack.packs] }));
  assert.ok(delta.type === 'result', JSON.stringify(delta));
  assert.ok((await readFile(join(root, 'data/big.bin'))).equals(second));
  const fetched = blobs.requests.slice(before);
  assert.ok(fetched.length >= 1 && fetched.every((request) => request.includes('/second-')), `only the new pack was read: ${fetched.join(', ')}`);
  assert.ok((delta.bytesDownloaded ?? Infinity) <= newChunks.reduce((sum, c) => sum + c.length, 0), JSON.stringify(delta));
});

test('a damaged blob in a pack fails with ChecksumMismatch naming the blob\'s sha256, and no temp file is left', async (t) => {
  const { agent, root, blobs } = await setup(t);
  const files: SourceFile[] = [0, 1, 2].map((i) => ({ path: `f${i}.bin`, body: randomBytes(10_000 + i), mode: 0o644 }));
  const request = packedLandFiles(blobs, files);
  const pack = Buffer.concat(files.map((f) => f.body));
  pack[10_000 + 5_000] ^= 1;
  blobs.put('blobs/packs/pack-0.pack', pack);
  const failed = finalEvent(await landPacked(agent, 'data', request));
  assert.ok(failed.type === 'error', JSON.stringify(failed));
  assert.equal(failed.error.type, 'ChecksumMismatch');
  assert.equal(failed.error.path, 'f1.bin');
  assert.ok(failed.error.message.includes(sha256(files[1].body)), failed.error.message);
  assert.deepEqual((await treeOf(join(root, 'data'))).filter((name) => name.includes('.ferry-tmp-')), []);

  const body = randomBytes(10 << 20);
  const parts = chunksOf(body);
  const { packs, placeOf } = packBodies(blobs, parts, PACK_TARGET_BYTES, 'chunks');
  const damaged = Buffer.concat(parts);
  damaged[parts[0].length + 10] ^= 1;
  blobs.put('blobs/packs/chunks-0.pack', damaged.subarray(0, parts.slice(0, planPacks(parts.map((p) => ({ sha256: sha256(p), size: p.length })))[0].length).reduce((sum, p) => sum + p.length, 0)));
  const file: LandFile = { path: 'big.bin', size: body.length, mode: 0o644, sha256: sha256(body), chunks: parts.map((chunk) => ({ sha256: sha256(chunk), size: chunk.length, ...placeOf(chunk) })) };
  const chunkFailed = finalEvent(await landPacked(agent, 'data', { files: [file], packs }));
  assert.ok(chunkFailed.type === 'error', JSON.stringify(chunkFailed));
  assert.equal(chunkFailed.error.type, 'ChecksumMismatch');
  assert.match(chunkFailed.error.message, new RegExp(`chunk 2 of ${parts.length} of "big.bin" does not match: expected ${parts[1].length} bytes with sha256 ${sha256(parts[1])}`));
});

test('a blob server that ignores Range and sends the whole pack still lands the right bytes', async (t) => {
  const { agent, root, blobs } = await setup(t);
  blobs.ignoreRanges = true;
  const files: SourceFile[] = Array.from({ length: 20 }, (_, i) => ({ path: `f${i}`, body: randomBytes(5_000 + i), mode: 0o644 }));
  const request = packedLandFiles(blobs, files);
  // Only the middle of the pack is needed, so the bytes before it must be skipped.
  const middle = { files: request.files.slice(8, 12), packs: request.packs };
  assert.equal(finalEvent(await landPacked(agent, 'data', middle)).type, 'result');
  for (const file of files.slice(8, 12)) assert.ok((await readFile(join(root, 'data', file.path))).equals(file.body), file.path);
});

test('pack places are checked before anything is fetched: a pack the request does not have, a bad offset, a pack URL not allowed, a body both by url and in a pack', async (t) => {
  const { agent, blobs } = await setup(t);
  const request = packedLandFiles(blobs, SAMPLE);
  const refused = async (body: unknown) => errorOf(await call(agent, 'POST', '/v1/land', { dir: 'data', ...(body as object) }), 400);
  const [first, ...rest] = request.files;
  assert.match((await refused({ files: [{ ...first, pack: 1 }, ...rest], packs: request.packs })).message, /names pack 1, not one of the request's 1/);
  assert.match((await refused({ files: [{ ...first, offset: -1 }, ...rest], packs: request.packs })).message, /offset that is not a non-negative integer/);
  assert.match((await refused({ files: request.files })).message, /not one of the request's 0/);
  assert.match((await refused({ files: [{ ...first, url: request.packs[0] }, ...rest], packs: request.packs })).message, /needs exactly one of url, pack or chunks/);
  assert.equal((await refused({ files: request.files, packs: ['http://169.254.169.254/latest/meta-data/'] })).type, 'UrlNotAllowed');
  assert.equal((await refused({ files: request.files, packs: 'not a list' })).type, 'InvalidInput');
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
