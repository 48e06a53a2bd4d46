/**
 * The generated POSIX scripts, run for real by the `shell` driver under bash
 * and dash (the /bin/sh of Debian and Ubuntu, which SSM uses there), against
 * a small HTTP server standing in for presigned S3 URLs.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, readlink, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { createGzip } from 'node:zlib';
import { pack } from 'tar-stream';
import { ShellTarget } from '../../activities/shellTarget';
import {
  HASH_TREE_SCRIPT,
  LAND_SCRIPT,
  PROBE_SCRIPT,
  START_SCRIPT,
  STOP_SCRIPT,
  UnquotableValueError,
  WRAPPER_SCRIPT,
  checksumLine,
  exportLines,
  nulPathList,
  parseReport,
  parseTreeListing,
  quoteCommand,
  shellQuote,
  withExportedEnv,
} from '../../core/shellScripts';
import { sha256, writeTree } from '../support/fixtures';

const run = promisify(execFile);
const SHELLS = ['bash', 'dash'];

/** Names that break naive scripts: spaces, quotes, substitutions, newline, leading dash, unicode. */
const HOSTILE_NAMES = [
  'with space.txt',
  "it's \"quoted\".py",
  '$(touch pwned).txt',
  '`touch pwned2`',
  'line\nbreak.txt',
  '-rf',
  '--help',
  'ünïcödé/データ.csv',
  'glob*?[x].txt',
  'semi;colon&amp|pipe>redir',
  'tab\there',
];

let work: string;
let server: Server;
let baseUrl: string;
const served = new Map<string, Buffer>();
const uploaded = new Map<string, Buffer>();

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-scripts-'));
  server = createServer((req, res) => {
    const key = req.url ?? '';
    if (req.method === 'PUT') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        uploaded.set(key, Buffer.concat(chunks));
        res.writeHead(200).end();
      });
      return;
    }
    const body = served.get(key);
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

interface ArchiveFile {
  name: string;
  body?: string | Buffer;
  type?: 'file' | 'symlink' | 'link' | 'directory';
  linkname?: string;
  mode?: number;
}

async function tarGz(entries: ArchiveFile[]): Promise<Buffer> {
  const tarball = pack();
  const chunks: Buffer[] = [];
  const gzip = createGzip();
  gzip.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise((resolve) => gzip.on('end', resolve));
  tarball.pipe(gzip);
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    if (type === 'file') tarball.entry({ name: entry.name, mode: entry.mode ?? 0o644 }, Buffer.from(entry.body ?? ''));
    else tarball.entry({ name: entry.name, type, linkname: entry.linkname, mode: 0o755 });
  }
  tarball.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** An archive as landArchive builds it: `files/…` plus the meta lists. */
async function deltaArchive(files: Record<string, string>, keep: Record<string, string> = {}, deleted: string[] = []): Promise<Buffer> {
  const all = { ...keep, ...files };
  return tarGz([
    ...Object.entries(files).map(([name, body]) => ({ name: `files/${name}`, body })),
    { name: 'meta/keep', body: nulPathList(Object.keys(keep)) },
    { name: 'meta/delete', body: nulPathList(deleted) },
    { name: 'meta/SHA256SUMS', body: Object.entries(all).map(([p, body]) => checksumLine({ path: p, sha256: sha256(body) })).join('') },
  ]);
}

let counter = 0;
function serve(body: Buffer): { url: string; sha256: string } {
  const key = `/archive-${++counter}`;
  served.set(key, body);
  return { url: `${baseUrl}${key}`, sha256: sha256(body) };
}

async function runScript(shell: string, root: string, script: string, env: Record<string, string>) {
  const outcome = await new ShellTarget(root, shell).run({ purpose: 'test', script, env: { FERRY_RUN_DIR: path.join(root, 'runs', 'r1'), ...env }, timeoutMs: 60_000 });
  // Reports are loosely typed here: the tests assert their fields.
  return { ...outcome, report: parseReport<Record<string, unknown>>(outcome.stdout) as Record<string, unknown> | undefined };
}

async function land(shell: string, root: string, archive: Buffer, extra: Record<string, string> = {}) {
  const { url, sha256: digest } = serve(archive);
  return runScript(shell, root, LAND_SCRIPT, { FERRY_ARCHIVE_URL: url, FERRY_ARCHIVE_SHA256: digest, FERRY_RELEASE: `rel${++counter}`, FERRY_BASE: '', FERRY_FILES_TOTAL: '0', ...extra });
}

async function hashTree(shell: string, root: string, tree = 'current') {
  const key = `/listing-${++counter}`;
  const result = await runScript(shell, root, HASH_TREE_SCRIPT, { FERRY_TREE: tree, FERRY_LISTING_URL: `${baseUrl}${key}` });
  return { ...result, listing: uploaded.get(key) };
}

/** Every path under `dir`, recursively, for "nothing escaped" checks. */
async function allPaths(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (current: string) => {
    for (const entry of await readdir(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      found.push(path.relative(dir, full));
      if (entry.isDirectory()) await walk(full);
    }
  };
  await walk(dir);
  return found;
}

describe('shellQuote', () => {
  for (const shell of SHELLS) {
    it(`passes every hostile value through ${shell} byte for byte, executing nothing`, async () => {
      const cwd = await mkdtemp(path.join(work, 'quote-'));
      const values = [...HOSTILE_NAMES, '', "'", "''", '\\', '$HOME', '${PATH}', '!!', 'a\nb\r\nc', '\u00a0nbsp', '🙂'];
      for (const value of values) {
        const { stdout } = await run(shell, ['-c', `printf '%s' ${shellQuote(value)}`], { cwd });
        assert.equal(stdout, value);
      }
      const { stdout } = await run(shell, ['-c', `${exportLines({ V: values.join('\n') })}printf '%s' "$V"`], { cwd });
      assert.equal(stdout, values.join('\n'));
      const words = await run(shell, ['-c', `set -- ${quoteCommand(values)}; printf '%s\\0' "$@"`], { cwd });
      assert.deepEqual(words.stdout.split('\0').slice(0, -1), values);
      assert.deepEqual(await readdir(cwd), [], 'no command substitution ran');
    });
  }

  it('refuses NUL, which no shell string can hold', () => {
    assert.throws(() => shellQuote('a\0b'), UnquotableValueError);
    assert.throws(() => exportLines({ 'BAD-NAME': 'x' }), /not a shell variable name/);
  });

  it('withExportedEnv puts values before the script, quoted', async () => {
    const { stdout } = await run('dash', ['-c', withExportedEnv('printf "%s|%s" "$A" "$B"', { A: "x'y", B: '$(id)' })]);
    assert.equal(stdout, "x'y|$(id)");
  });
});

describe('parseReport', () => {
  it('reads the last report line and ignores other output', () => {
    assert.deepEqual(parseReport('noise\nferry-report {"ok":true,"a":1}\nmore\nferry-report {"ok":true,"a":2}\n'), { ok: true, a: 2 });
    assert.equal(parseReport('no report here\n'), undefined);
    assert.equal(parseReport('ferry-report {broken'), undefined);
  });
});

describe('land and hash scripts', () => {
  for (const shell of SHELLS) {
    it(`${shell}: lands hostile names intact, swaps current, and the listing hashes them back`, async () => {
      const root = await mkdtemp(path.join(work, `land-${shell}-`));
      const files: Record<string, string> = {};
      HOSTILE_NAMES.forEach((name, i) => (files[name] = `content ${i} of ${name}\n`));
      files['train.py'] = 'print("epoch")\n';
      const landed = await land(shell, root, await deltaArchive(files), { FERRY_FILES_TOTAL: String(Object.keys(files).length) });
      assert.equal(landed.report?.ok, true, landed.stderr);
      const runDir = path.join(root, 'runs', 'r1');
      assert.equal(await readlink(path.join(runDir, 'current')), `releases/${landed.report!.release as string}`);
      for (const [name, body] of Object.entries(files)) assert.equal(await readFile(path.join(runDir, 'current', name), 'utf8'), body, name);
      assert.ok(!existsSync(path.join(root, 'pwned')) && !existsSync(path.join(runDir, 'current', 'pwned')), 'nothing was executed');
      assert.deepEqual(await readdir(path.join(runDir, 'work')), [], 'the work folder is cleaned up');

      const listed = await hashTree(shell, root);
      assert.equal(listed.report?.ok, true, listed.stderr);
      assert.equal(listed.report?.release, landed.report!.release);
      assert.equal(sha256(listed.listing!), listed.report?.listingSha256);
      const parsed = parseTreeListing(listed.listing!);
      assert.deepEqual(
        parsed.map((f) => [f.path, f.sha256, f.size]),
        Object.entries(files)
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([name, body]) => [name, sha256(body), Buffer.byteLength(body)]),
      );
    });
  }

  it('a delta landing copies kept files from the base release, drops deleted ones and keeps modes', async () => {
    const root = await mkdtemp(path.join(work, 'delta-'));
    const first = await land('bash', root, await tarGz([
      { name: 'files/keep me.py', body: 'kept\n', mode: 0o755 },
      { name: 'files/-dash', body: 'dash\n' },
      { name: 'files/old.txt', body: 'old\n' },
      { name: 'meta/keep', body: '' },
      { name: 'meta/delete', body: '' },
      { name: 'meta/SHA256SUMS', body: [['keep me.py', 'kept\n'], ['-dash', 'dash\n'], ['old.txt', 'old\n']].map(([p, b]) => checksumLine({ path: p!, sha256: sha256(b!) })).join('') },
    ]), { FERRY_FILES_TOTAL: '3' });
    assert.equal(first.report?.ok, true, first.stderr);
    const second = await land('bash', root, await deltaArchive({ 'new.txt': 'new\n' }, { 'keep me.py': 'kept\n', '-dash': 'dash\n' }, ['old.txt']), {
      FERRY_BASE: first.report!.release as string,
      FERRY_FILES_TOTAL: '3',
    });
    assert.equal(second.report?.ok, true, second.stderr);
    assert.equal(second.report?.deleted, 1);
    const current = path.join(root, 'runs', 'r1', 'current');
    assert.deepEqual((await readdir(current)).sort(), ['-dash', 'keep me.py', 'new.txt']);
    assert.equal((await stat(path.join(current, 'keep me.py'))).mode & 0o777, 0o755);
  });

  for (const [label, entries] of [
    ['a ../ path', [{ name: '../escaped.txt', body: 'x' }]],
    ['a nested ../ path', [{ name: 'files/a/../../../escaped.txt', body: 'x' }]],
    ['an absolute path', [{ name: '/tmp/ferry-escaped-abs.txt', body: 'x' }]],
    ['a symlink', [{ name: 'files/link', type: 'symlink', linkname: '/' }, { name: 'files/link/escaped.txt', body: 'x' }]],
    ['a hard link', [{ name: 'files/hard', type: 'link', linkname: '/etc/passwd' }]],
  ] as [string, ArchiveFile[]][]) {
    it(`refuses an archive with ${label} before extracting, and nothing escapes the root`, async () => {
      const outer = await mkdtemp(path.join(work, 'crafted-'));
      const root = path.join(outer, 'root');
      const result = await land('dash', root, await tarGz([...entries, { name: 'meta/keep' }, { name: 'meta/delete' }, { name: 'meta/SHA256SUMS' }]), { FERRY_FILES_TOTAL: '1' });
      assert.deepEqual(result.report, { ok: false, reason: 'unsafe' }, result.stderr);
      assert.notEqual(result.exitCode, 0);
      assert.ok(!existsSync(path.join(root, 'runs', 'r1', 'current')), 'nothing became current');
      assert.deepEqual(await allPaths(outer), ['root', 'root/runs', 'root/runs/r1', 'root/runs/r1/releases', 'root/runs/r1/work']);
      assert.ok(!existsSync('/tmp/ferry-escaped-abs.txt'));
    });
  }

  it('refuses an archive whose sha256 differs, and files that differ from SHA256SUMS, keeping the old current', async () => {
    const root = await mkdtemp(path.join(work, 'checks-'));
    const good = await land('bash', root, await deltaArchive({ 'a.txt': 'a' }), { FERRY_FILES_TOTAL: '1' });
    assert.equal(good.report?.ok, true, good.stderr);
    const archive = await deltaArchive({ 'a.txt': 'b' });
    const { url } = serve(archive);
    const wrongSum = await runScript('bash', root, LAND_SCRIPT, { FERRY_ARCHIVE_URL: url, FERRY_ARCHIVE_SHA256: '0'.repeat(64), FERRY_RELEASE: 'x1', FERRY_BASE: '', FERRY_FILES_TOTAL: '1' });
    assert.deepEqual(wrongSum.report, { ok: false, reason: 'checksum' });
    const lying = await tarGz([{ name: 'files/a.txt', body: 'tampered' }, { name: 'meta/keep' }, { name: 'meta/delete' }, { name: 'meta/SHA256SUMS', body: checksumLine({ path: 'a.txt', sha256: sha256('b') }) }]);
    const mismatch = await land('bash', root, lying, { FERRY_FILES_TOTAL: '1' });
    assert.deepEqual(mismatch.report, { ok: false, reason: 'mismatch' });
    const extra = await land('bash', root, await deltaArchive({ 'a.txt': 'b', 'extra.txt': 'e' }), { FERRY_FILES_TOTAL: '1' });
    assert.deepEqual(extra.report, { ok: false, reason: 'mismatch' });
    assert.equal(await readFile(path.join(root, 'runs', 'r1', 'current', 'a.txt'), 'utf8'), 'a', 'current still the good release');
    const missing = await runScript('bash', root, LAND_SCRIPT, { FERRY_ARCHIVE_URL: `${baseUrl}/nothing`, FERRY_ARCHIVE_SHA256: '0'.repeat(64), FERRY_RELEASE: 'x2', FERRY_BASE: '', FERRY_FILES_TOTAL: '1' });
    assert.deepEqual(missing.report, { ok: false, reason: 'download' });
  });
});

describe('start, probe and stop scripts', () => {
  for (const shell of SHELLS) {
    it(`${shell}: starts once per start id, ships the log, and SIGTERM ends the command with 143`, async () => {
      const root = await mkdtemp(path.join(work, `proc-${shell}-`));
      const landed = await land(shell, root, await deltaArchive({ 'run.sh': 'echo "started in $(pwd -P | sed "s|.*/||") with $GREETING"; echo "out=$FERRY_OUTPUT_DIR"; exec sleep 30\n' }), { FERRY_FILES_TOTAL: '1' });
      assert.equal(landed.report?.ok, true, landed.stderr);
      const startEnv = {
        FERRY_START_ID: 'start-1',
        FERRY_COMMAND: quoteCommand(['sh', 'run.sh']),
        FERRY_USER_ENV: exportLines({ GREETING: "it's $(touch pwned)" }),
        FERRY_WRAPPER: WRAPPER_SCRIPT,
      };
      const first = await runScript(shell, root, START_SCRIPT, startEnv);
      assert.equal(first.report?.ok, true, first.stderr);
      assert.equal(first.report?.started, true);
      const again = await runScript(shell, root, START_SCRIPT, startEnv);
      assert.equal(again.report?.started, false, 'a retried start does not start a second process');
      assert.equal(again.report?.pid, first.report?.pid);

      let probe;
      for (let i = 0; i < 50; i++) {
        probe = await runScript(shell, root, PROBE_SCRIPT, { FERRY_START_ID: 'start-1', FERRY_LOG_OFFSET: '0', FERRY_CHUNK_MAX: '1000000', FERRY_CHUNK_URL: `${baseUrl}/chunk-${shell}`, FERRY_TAIL_BYTES: '100' });
        if ((probe.report?.logBytes as number) > 0) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.equal(probe!.report?.alive, true, probe!.stderr);
      assert.equal(probe!.report?.exitCode, null);
      const chunk = uploaded.get(`/chunk-${shell}`)!.toString();
      assert.match(chunk, new RegExp(`started in ${landed.report!.release as string} with it's \\$\\(touch pwned\\)`));
      assert.match(chunk, /out=.*\/runs\/r1\/outputs/);
      assert.equal(Buffer.from(probe!.report?.tailBase64 as string, 'base64').toString(), chunk.slice(-100));

      const stopped = await runScript(shell, root, STOP_SCRIPT, { FERRY_START_ID: 'start-1', FERRY_GRACE_SECONDS: '5' });
      assert.deepEqual(stopped.report, { ok: true, signal: 'TERM' });
      const after = await runScript(shell, root, PROBE_SCRIPT, { FERRY_START_ID: 'start-1', FERRY_LOG_OFFSET: '0', FERRY_CHUNK_MAX: '0', FERRY_CHUNK_URL: '', FERRY_TAIL_BYTES: '10' });
      assert.equal(after.report?.alive, false);
      assert.equal(after.report?.exitCode, 143);
      assert.ok(!existsSync(path.join(root, 'runs', 'r1', 'current', 'pwned')));
    });
  }

  it('a command that ignores SIGTERM is killed after the grace period, and its exit code still recorded', async () => {
    const root = await mkdtemp(path.join(work, 'kill-'));
    await land('bash', root, await deltaArchive({ 'stubborn.sh': "trap '' TERM; echo ready; while :; do sleep 0.2; done\n" }), { FERRY_FILES_TOTAL: '1' });
    const started = await runScript('bash', root, START_SCRIPT, { FERRY_START_ID: 's', FERRY_COMMAND: quoteCommand(['bash', 'stubborn.sh']), FERRY_USER_ENV: '', FERRY_WRAPPER: WRAPPER_SCRIPT });
    assert.equal(started.report?.ok, true, started.stderr);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const began = Date.now();
    const stopped = await runScript('bash', root, STOP_SCRIPT, { FERRY_START_ID: 's', FERRY_GRACE_SECONDS: '1' });
    assert.deepEqual(stopped.report, { ok: true, signal: 'KILL' });
    assert.ok(Date.now() - began >= 1_000);
    const after = await runScript('bash', root, PROBE_SCRIPT, { FERRY_START_ID: 's', FERRY_LOG_OFFSET: '0', FERRY_CHUNK_MAX: '0', FERRY_CHUNK_URL: '', FERRY_TAIL_BYTES: '10' });
    assert.equal(after.report?.alive, false);
    assert.equal(after.report?.exitCode, 137);
  });

  it('probing or stopping an unknown start id is refused as bad input', async () => {
    const root = await mkdtemp(path.join(work, 'unknown-'));
    const probe = await runScript('bash', root, PROBE_SCRIPT, { FERRY_START_ID: 'nope', FERRY_LOG_OFFSET: '0', FERRY_CHUNK_MAX: '0', FERRY_CHUNK_URL: '', FERRY_TAIL_BYTES: '10' });
    assert.deepEqual(probe.report, { ok: false, reason: 'not-started' });
    const start = await runScript('bash', root, START_SCRIPT, { FERRY_START_ID: 'x', FERRY_COMMAND: 'true', FERRY_USER_ENV: '', FERRY_WRAPPER: WRAPPER_SCRIPT });
    assert.deepEqual(start.report, { ok: false, reason: 'not-landed' });
  });
});

describe('parseTreeListing', () => {
  it('joins sizes and modes with hashes, unescaping names sha256sum escaped', () => {
    const stat = Buffer.from('5 644 ./a b\x0012 755 ./line\nbreak\x00');
    const sums = Buffer.from(`${sha256('aaaaa')}  ./a b\n\\${sha256('x')}  ./line\\nbreak\n`);
    const listing = Buffer.concat([Buffer.from(`${stat.length}\n`), stat, sums]);
    assert.deepEqual(parseTreeListing(listing), [
      { path: 'a b', size: 5, mode: 0o644, sha256: sha256('aaaaa') },
      { path: 'line\nbreak', size: 12, mode: 0o755, sha256: sha256('x') },
    ]);
    assert.throws(() => parseTreeListing(Buffer.concat([Buffer.from(`${stat.length}\n`), stat])), /2 stat records but 0 checksums/);
    assert.throws(() => parseTreeListing(Buffer.from('garbage')), /malformed tree listing/);
  });

  it('hashes match node for a binary file (sanity of the sha256 the scripts compute)', async () => {
    const root = await mkdtemp(path.join(work, 'binary-'));
    const body = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) % 256));
    await writeTree(path.join(root, 'runs', 'r1', 'tree'), { 'bin.dat': body });
    const listed = await hashTree('dash', root, 'tree');
    assert.equal(listed.report?.release, 'tree');
    assert.deepEqual(parseTreeListing(listed.listing!), [{ path: 'bin.dat', size: 5000, mode: 0o644, sha256: createHash('sha256').update(body).digest('hex') }]);
  });
});
