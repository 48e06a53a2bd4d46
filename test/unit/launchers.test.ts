/**
 * Starts the real Temporal dev server and the SeaweedFS S3 server on free
 * ports and checks they work, refuse what they should, and stop.
 * Needs the tools from `npm run tools` (scripts/install-tools.sh).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { type ManagedProcess, type StartedServer, isPidAlive } from '../../client/managedProcess';
import { PortInUseError, assertPortsFree, freePort } from '../../client/ports';
import { ToolMissingError, repoRoot, resolveTool } from '../../client/tools';
import { startS3Server } from '../../client/s3Server';
import { startTemporalDevServer } from '../../client/temporalServer';
import { requireOrSkipTest } from '../support/requirements';

const HOST = '127.0.0.1';
const NAMESPACE = 'ferry-test';
const BUCKET = 'ferry-test-bucket';
const ACCESS_KEY = 'ferrytestkey';
const SECRET_KEY = 'ferry-test-secret-0123456789';
const INDEXED_VALUE_TYPE_KEYWORD = 2; // temporal.api.enums.v1.IndexedValueType

function httpRequest(method: string, url: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, timeout: 5_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Listening TCP ports of a pid, from `ss -ltnpH`; the reason when ss cannot tell. */
function listeningPorts(pid: number): { ports: number[] } | { missing: string } {
  let out: string;
  try {
    out = execFileSync('ss', ['-ltnpH'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    return { missing: `ss -ltnpH failed (Debian package iproute2): ${(err as Error).message}` };
  }
  const ports = new Set<number>();
  for (const line of out.split('\n')) {
    if (!line.includes(`pid=${pid},`)) continue;
    const local = line.trim().split(/\s+/)[3] ?? '';
    const port = Number(local.slice(local.lastIndexOf(':') + 1));
    if (Number.isInteger(port)) ports.add(port);
  }
  return { ports: [...ports].sort((a, b) => a - b) };
}

describe('services: tool lookup and ports', () => {
  it('repoRoot finds the ferry package.json', () => {
    const root = repoRoot();
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { name: string };
    assert.equal(pkg.name, 'ferry');
  });

  it('resolveTool honours FERRY_<NAME>_BIN and explains a missing tool', () => {
    const saved = process.env.FERRY_RCLONE_BIN;
    try {
      process.env.FERRY_RCLONE_BIN = '/nonexistent/rclone';
      assert.throws(() => resolveTool('rclone', repoRoot()), (e: unknown) => {
        assert.ok(e instanceof ToolMissingError);
        assert.equal(e.tool, 'rclone');
        assert.match(e.message, /FERRY_RCLONE_BIN/);
        return true;
      });
      process.env.FERRY_RCLONE_BIN = process.execPath;
      assert.equal(resolveTool('rclone', repoRoot()), process.execPath);
      delete process.env.FERRY_RCLONE_BIN;
      const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-noroot-'));
      try {
        assert.throws(() => resolveTool('rclone', empty), (e: unknown) => {
          assert.ok(e instanceof ToolMissingError);
          assert.match(e.hint, /npm run tools/);
          return true;
        });
      } finally {
        fs.rmSync(empty, { recursive: true, force: true });
      }
    } finally {
      if (saved === undefined) delete process.env.FERRY_RCLONE_BIN;
      else process.env.FERRY_RCLONE_BIN = saved;
    }
  });

  it('freePort hands out distinct bindable ports', async () => {
    const a = await freePort(HOST);
    const b = await freePort(HOST);
    assert.notEqual(a, b);
    await assertPortsFree([{ service: 'a', port: a }, { service: 'b', port: b }], HOST);
  });
});

describe('services: real Temporal dev server and S3 server', () => {
  const started: ManagedProcess[] = [];
  let tmp = '';
  let temporal: StartedServer | undefined;
  let s3: StartedServer | undefined;
  let s3Client: S3Client | undefined;

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-services-'));
    const root = repoRoot();
    const temporalBin = resolveTool('temporal', root);
    const weedBin = resolveTool('weed', root);
    const [temporalPort, s3Port] = [await freePort(HOST), await freePort(HOST)];
    const results = await Promise.allSettled([
      startTemporalDevServer({
        binary: temporalBin,
        dbFile: path.join(tmp, 'temporal', 'dev.sqlite'),
        host: HOST,
        port: temporalPort,
        namespace: NAMESPACE,
        searchAttributes: { FerrySessionId: 'Keyword', FerryPhase: 'Keyword' },
        logFile: path.join(tmp, 'temporal.log'),
      }).then((p) => {
        started.push(p);
        return p;
      }),
      startS3Server({
        binary: weedBin,
        dataDir: path.join(tmp, 's3'),
        host: HOST,
        port: s3Port,
        accessKeyId: ACCESS_KEY,
        secretAccessKey: SECRET_KEY,
        bucket: BUCKET,
        logFile: path.join(tmp, 'weed.log'),
      }).then((p) => {
        started.push(p);
        return p;
      }),
    ]);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    temporal = (results[0] as PromiseFulfilledResult<StartedServer>).value;
    s3 = (results[1] as PromiseFulfilledResult<StartedServer>).value;
    s3Client = new S3Client({
      endpoint: `http://${HOST}:${s3.ports['s3.port']}`,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY },
    });
    // Ready times, for whoever reads the test output.
    process.stderr.write(`# temporal ready in ${temporal.readyMs} ms, s3 (weed) ready in ${s3.readyMs} ms\n`);
  });

  after(async () => {
    s3Client?.destroy();
    await Promise.allSettled(started.map((p) => p.stop()));
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('temporal answers workflow and operator calls with the search attributes registered', async () => {
    assert.ok(temporal);
    const connection = await Connection.connect({ address: `${HOST}:${temporal.ports.grpc}` });
    try {
      const info = await connection.workflowService.getSystemInfo({});
      assert.ok(info.serverVersion, 'server reports a version');
      const ns = await connection.workflowService.describeNamespace({ namespace: NAMESPACE });
      assert.equal(ns.namespaceInfo?.name, NAMESPACE);
      const attrs = await connection.operatorService.listSearchAttributes({ namespace: NAMESPACE });
      assert.equal(attrs.customAttributes?.FerrySessionId, INDEXED_VALUE_TYPE_KEYWORD);
      assert.equal(attrs.customAttributes?.FerryPhase, INDEXED_VALUE_TYPE_KEYWORD);
    } finally {
      await connection.close();
    }
  });

  it('temporal runs headless with explicit http and metrics ports', async () => {
    assert.ok(temporal);
    assert.ok(temporal.args.includes('--headless'));
    const metrics = await httpRequest('GET', `http://${HOST}:${temporal.ports.metrics}/metrics`);
    assert.equal(metrics.status, 200);
  });

  it('s3 round-trips a signed PutObject/GetObject', async () => {
    assert.ok(s3Client);
    const body = `hello ferry ${Date.now()}`;
    await s3Client.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'dir/hello.txt', Body: body }));
    const got = await s3Client.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'dir/hello.txt' }));
    assert.equal(await got.Body?.transformToString(), body);
  });

  it('s3 refuses unsigned requests with 403', async () => {
    assert.ok(s3);
    const base = `http://${HOST}:${s3.ports['s3.port']}`;
    const get = await httpRequest('GET', `${base}/${BUCKET}/dir/hello.txt`);
    assert.equal(get.status, 403, get.body);
    const put = await httpRequest('PUT', `${base}/${BUCKET}/unsigned.txt`, 'nope');
    assert.equal(put.status, 403, put.body);
    const list = await httpRequest('GET', `${base}/${BUCKET}/`);
    assert.equal(list.status, 403, list.body);
  });

  it('s3 credentials are not on weed\'s command line', () => {
    assert.ok(s3);
    const cmdline = fs.readFileSync(`/proc/${s3.pid}/cmdline`, 'utf8');
    assert.ok(!cmdline.includes(SECRET_KEY));
    assert.ok(!cmdline.includes(ACCESS_KEY));
  });

  it('weed listens only on ports we chose', (t) => {
    assert.ok(s3);
    const answer = listeningPorts(s3.pid);
    if ('missing' in answer) {
      requireOrSkipTest(t, 'ss', answer.missing);
      return;
    }
    const listening = answer.ports;
    const chosen = new Set(Object.values(s3.ports));
    assert.ok(listening.length > 0, 'weed listens on something');
    for (const port of listening) assert.ok(chosen.has(port), `weed listens on ${port}, not one of ${[...chosen].join(',')}`);
  });

  it('a second server on a port in use fails with PortInUseError naming the port', async () => {
    assert.ok(temporal && s3);
    const root = repoRoot();
    await assert.rejects(
      startTemporalDevServer({
        binary: resolveTool('temporal', root),
        host: HOST,
        port: temporal.ports.grpc,
        namespace: NAMESPACE,
        searchAttributes: {},
        logFile: path.join(tmp, 'temporal-second.log'),
      }),
      (e: unknown) => {
        assert.ok(e instanceof PortInUseError);
        assert.equal(e.port, temporal?.ports.grpc);
        assert.equal(e.service, 'temporal');
        assert.match(e.message, new RegExp(`port ${temporal?.ports.grpc} \\(temporal\\) is already in use`));
        return true;
      },
    );
    await assert.rejects(
      startS3Server({
        binary: resolveTool('weed', root),
        dataDir: path.join(tmp, 's3-second'),
        host: HOST,
        port: s3.ports['s3.port'],
        accessKeyId: ACCESS_KEY,
        secretAccessKey: SECRET_KEY,
        bucket: BUCKET,
        logFile: path.join(tmp, 'weed-second.log'),
      }),
      (e: unknown) => {
        assert.ok(e instanceof PortInUseError);
        assert.equal(e.port, s3?.ports['s3.port']);
        assert.equal(e.service, 's3');
        return true;
      },
    );
  });

  it('a detached server gets its own process group and stops', async () => {
    const port = await freePort(HOST);
    const proc = await startTemporalDevServer({
      binary: resolveTool('temporal', repoRoot()),
      host: HOST,
      port,
      namespace: 'default',
      searchAttributes: {},
      logFile: path.join(tmp, 'temporal-detached.log'),
      detached: true,
    });
    started.push(proc);
    const pgid = Number(execFileSync('ps', ['-o', 'pgid=', '-p', String(proc.pid)], { encoding: 'utf8' }).trim());
    assert.equal(pgid, proc.pid);
    await proc.stop();
    assert.equal(isPidAlive(proc.pid), false);
  });

  it('stop() ends both servers and is idempotent', async () => {
    assert.ok(temporal && s3);
    await Promise.all([temporal.stop(), s3.stop()]);
    assert.equal(isPidAlive(temporal.pid), false, 'temporal pid gone');
    assert.equal(isPidAlive(s3.pid), false, 'weed pid gone');
    await temporal.exited;
    await s3.exited;
    await Promise.all([temporal.stop(), s3.stop()]); // again: no-op
  });
});
