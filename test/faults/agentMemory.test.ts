/**
 * The runtime agent's memory against many and large requests (issue 17,
 * item 7), on the real agent process: eight callers each sending a 60 MiB
 * body at once, and a listing of 200,000 files whose paths alone are more
 * than the 64 MiB one body may hold.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { AgentClient } from '../../activities/agentClient';
import { MAX_BUFFERED_BODY_BYTES, MAX_JSON_BODY_BYTES } from '../../runtime/http';

const TOKEN = 'agent-memory-token-0123456789';
const MiB = 1 << 20;
const execFileAsync = promisify(execFile);

let work: string;
let agent: ChildProcess;
let url: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-agent-memory-'));
  const tokenFile = path.join(work, 'token');
  writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
  agent = spawn(process.execPath, [path.join(__dirname, '..', '..', 'runtime', 'main.js')], {
    // Code as this process's user: the agent's memory is the matter here, not who its code runs as (a root agent would need a root reachable by nobody).
    env: { PATH: process.env.PATH, FERRY_AGENT_ROOT: path.join(work, 'root'), FERRY_AGENT_TOKEN_FILE: tokenFile, FERRY_AGENT_ALLOWED_URL_PREFIXES: 'http://127.0.0.1:1/ferry/', FERRY_AGENT_RUN_AS: `${process.getuid!()}:${process.getgid!()}` },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const [line] = (await once(createInterface({ input: agent.stdout! }), 'line')) as [string];
  url = (JSON.parse(line) as { url: string }).url;
});

after(async () => {
  if (agent && agent.exitCode === null) {
    agent.kill('SIGTERM');
    await once(agent, 'exit');
  }
  if (work) await rm(work, { recursive: true, force: true });
});

/** A field of /proc/<pid>/status in bytes (VmRSS now, VmHWM the peak since the last reset). */
function memoryOf(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(match, `${field} in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** POSTs `body` as one raw request; resolves with the status (and retry-after), even when the agent answers before it has read it all. */
function post(route: string, body: Buffer): Promise<{ status: number; retryAfter?: string; text: string }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(url + route, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'content-length': body.length } }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    req.end(body);
  });
}

describe('the runtime agent bounds the memory its requests take', () => {
  it('eight callers sending 60 MiB bodies at once: peak RSS stays within the body budget, the refused get 503 + retry-after, and each caller gets its answer on retry', async (t: TestContext) => {
    // 60 MiB of paths in a folder that does not exist: the agent reads and parses it all, then answers at once.
    const paths = Array.from({ length: 610_000 }, (_, i) => `p/${String(i).padStart(8, '0')}-${'x'.repeat(90)}`);
    const body = Buffer.from(JSON.stringify({ dir: 'absent', paths, hash: false }));
    assert.ok(body.length > 60 * MiB && body.length < MAX_JSON_BODY_BYTES, `body of ${body.length} bytes`);

    // Warm up (one request alone, code paths compiled), then measure the peak from here on.
    assert.equal((await post('/v1/files', body)).status, 200);
    writeFileSync(`/proc/${agent.pid}/clear_refs`, '5');
    const baseline = memoryOf(agent.pid!, 'VmRSS');

    const refusals: string[] = [];
    const caller = async () => {
      for (let attempt = 1; ; attempt++) {
        const answer = await post('/v1/files', body);
        if (answer.status === 200) return attempt;
        assert.equal(answer.status, 503, answer.text);
        assert.equal(answer.retryAfter, '1');
        refusals.push(answer.text);
        await sleep(Number(answer.retryAfter) * 1000);
      }
    };
    const attempts = await Promise.all(Array.from({ length: 8 }, caller));
    const peak = memoryOf(agent.pid!, 'VmHWM');

    // The design's bound: at most MAX_BUFFERED_BODY_BYTES of bodies held at once, each costing a small multiple of its size
    // (chunks, one copy, the string, the parsed values). Eight bodies at once would be 480 MiB of bodies alone.
    const bound = 4 * MAX_BUFFERED_BODY_BYTES;
    assert.ok(peak - baseline <= bound, `peak RSS grew by ${Math.round((peak - baseline) / MiB)} MiB, more than ${bound / MiB} MiB`);
    assert.ok(refusals.length > 0, 'some callers were asked to retry');
    assert.match(refusals[0]!, /TargetUnavailable/);
    t.diagnostic(
      `figures: RSS ${Math.round(baseline / MiB)} MiB before, peak ${Math.round(peak / MiB)} MiB during 8 × ${Math.round(body.length / MiB)} MiB bodies (bound +${bound / MiB} MiB); ` +
        `${refusals.length} 503 answers; attempts per caller ${attempts.join(',')}`,
    );
  });

  it('a listing of 200,000 files whose paths are more than one body may hold works, in manifest order', async (t: TestContext) => {
    const root = path.join(work, 'root');
    const folders = 400;
    const perFolder = 500;
    const expected: string[] = [];
    for (let f = 0; f < folders; f++) {
      const folder = `${String(f).padStart(3, '0')}-${'f'.repeat(196)}`;
      await mkdir(path.join(root, 'data', folder), { recursive: true });
      const names = Array.from({ length: perFolder }, (_, i) => `${String(i).padStart(3, '0')}-${'n'.repeat(136)}`);
      // One touch per folder, not 500 writeFile calls: creating 200,000 files that way took most of the test.
      await execFileAsync('touch', names, { cwd: path.join(root, 'data', folder) });
      expected.push(...names.map((name) => `${folder}/${name}`));
    }
    expected.sort();
    const pathBytes = Buffer.byteLength(JSON.stringify(expected));
    assert.ok(pathBytes > MAX_JSON_BODY_BYTES, `the paths take ${pathBytes} bytes of JSON, more than one body may hold`);

    const client = new AgentClient({ url, token: TOKEN });
    let lastProgress = 0;
    const files: string[] = [];
    const listed = await client.listFiles({ dir: 'data', paths: expected, hash: false }, (event) => {
      if (event.type === 'file') files.push(event.path);
      if (event.type === 'progress') {
        assert.ok(event.filesDone >= lastProgress, 'progress counts across requests');
        lastProgress = event.filesDone;
      }
    });
    assert.equal(listed.filesListed, expected.length);
    assert.equal(lastProgress, expected.length, 'the last progress line counts every file');
    assert.deepEqual(files, expected, 'every file, in manifest order');
    t.diagnostic(`figures: ${expected.length} files, ${Math.round(pathBytes / MiB)} MiB of paths as JSON, listed in batches of at most 4 MiB`);
  });
});
