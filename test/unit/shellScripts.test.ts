/**
 * The generated POSIX scripts, run for real by the `shell` channel under
 * bash and dash (the /bin/sh of Debian and Ubuntu, which SSM uses there),
 * against a small HTTP server standing in for presigned S3 URLs.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { ShellChannel } from '../../activities/targets/shell';
import {
  LAND_SCRIPT,
  LIST_SCRIPT,
  PREPARE_SCRIPT,
  PROBE_SCRIPT,
  RELEASE_SCRIPT,
  REQUIRED_TOOLS,
  START_SCRIPT,
  STOP_SCRIPT,
  UPLOAD_SCRIPT,
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
import { sha256, waitFor, writeTree } from '../support/fixtures';
import { tarGz, type ArchiveEntry } from '../support/hostileArchives';

const run = promisify(execFile);
const SHELLS = ['bash', 'dash'];
const SESSION = 's1';

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
const uploaded = new Map<string, { body: Buffer; headers: IncomingHttpHeaders }>();

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-scripts-'));
  server = createServer((req, res) => {
    const key = req.url ?? '';
    if (req.method === 'PUT') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        // As S3 does with a signed x-amz-checksum-sha256: a body that does not hash to it is refused.
        const claimed = req.headers['x-amz-checksum-sha256'];
        if (typeof claimed === 'string' && createHash('sha256').update(body).digest('base64') !== claimed) return void res.writeHead(400).end('BadDigest');
        uploaded.set(key, { body, headers: req.headers });
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

let counter = 0;
function serve(body: Buffer): { url: string; sha256: string } {
  const key = `/object-${++counter}`;
  served.set(key, body);
  return { url: `${baseUrl}${key}`, sha256: sha256(body) };
}

type Report = Record<string, unknown>;

async function runScript(shell: string, root: string, script: string, env: Record<string, string>, timeoutMs = 60_000) {
  const outcome = await new ShellChannel(root, shell).run({ purpose: 'test', script, env: { FERRY_ROOT: root, FERRY_SESSION: SESSION, ...env }, timeoutMs });
  // Reports are loosely typed here: the tests assert their fields.
  return { ...outcome, report: parseReport<Report>(outcome.stdout) as Report | undefined };
}

/** A failure report without its boot id, for comparing. */
const refusal = (report: Report | undefined) => report && { ok: report.ok, reason: report.reason };

const sessionDir = (root: string) => path.join(root, 'sessions', SESSION);

/** An archive as a landing builds it: `files/…` and `links/…` (link texts), the checksums of both, and the paths to remove. */
function landingArchive(files: Record<string, string | Buffer>, remove: string[] = [], modes: Record<string, number> = {}, links: Record<string, string> = {}): Promise<Buffer> {
  return tarGz([
    ...Object.entries(files).map(([name, body]): ArchiveEntry => ({ name: `files/${name}`, body, mode: modes[name] })),
    ...Object.entries(links).map(([name, text]): ArchiveEntry => ({ name: `links/${name}`, body: text })),
    { name: 'meta/SHA256SUMS', body: Object.entries(files).map(([p, body]) => checksumLine({ path: p, sha256: sha256(body) })).join('') },
    { name: 'meta/LINKSUMS', body: Object.entries(links).map(([p, text]) => checksumLine({ path: p, sha256: sha256(text) })).join('') },
    { name: 'meta/remove', body: nulPathList(remove) },
  ]);
}

const hashText = (text: string) => sha256(text);

async function land(shell: string, root: string, archive: Buffer, extra: Record<string, string> = {}) {
  const { url, sha256: digest } = serve(archive);
  return runScript(shell, root, LAND_SCRIPT, { FERRY_DIR: 'data', FERRY_ARCHIVE_URL: url, FERRY_ARCHIVE_SHA256: digest, FERRY_FILES: '0', ...extra });
}

async function list(shell: string, root: string, dir = 'data', hash = true) {
  const key = `/listing-${++counter}`;
  const result = await runScript(shell, root, LIST_SCRIPT, { FERRY_DIR: dir, FERRY_HASH: hash ? '1' : '0', FERRY_LISTING_URL: `${baseUrl}${key}` });
  return { ...result, listing: uploaded.get(key)?.body };
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
  return found.sort();
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

describe('prepare and release scripts', () => {
  it('prepare creates the session and its folders, reports its path and the boot id, and refuses a bad session id', async () => {
    const root = await mkdtemp(path.join(work, 'prepare-'));
    const prepared = await runScript('dash', root, PREPARE_SCRIPT, { FERRY_DIRS: 'data artifacts work' });
    assert.equal(prepared.report?.ok, true, prepared.stderr);
    assert.equal(prepared.report?.session, sessionDir(root));
    assert.match(prepared.report?.bootId as string, /^[0-9a-f-]{36}$/, 'the machine boot id');
    assert.deepEqual(await allPaths(root), ['sessions', 'sessions/s1', 'sessions/s1/artifacts', 'sessions/s1/data', 'sessions/s1/work', 'state', 'state/s1']);
    for (const bad of ['../up', '', '.hidden', 'a/b']) {
      const refused = await runScript('dash', root, PREPARE_SCRIPT, { FERRY_SESSION: bad, FERRY_DIRS: '' });
      assert.equal(refused.report?.reason, 'input', bad);
    }
  });

  it('prepare names every tool the target lacks', async () => {
    const root = await mkdtemp(path.join(work, 'tools-'));
    const bin = path.join(work, `bin-${++counter}`);
    await mkdir(bin);
    // Every tool but curl and setsid, so the script can run and find them missing.
    for (const tool of [...REQUIRED_TOOLS.filter((t) => t !== 'curl' && t !== 'setsid'), 'sh', 'dash', 'cat', 'mkdir', 'pwd']) {
      const { stdout } = await run('sh', ['-c', `command -v ${tool}`]);
      await symlink(stdout.trim(), path.join(bin, tool));
    }
    const refused = await new ShellChannel(root, path.join(bin, 'dash')).run({ purpose: 'test', script: PREPARE_SCRIPT, env: { PATH: bin, FERRY_ROOT: root, FERRY_SESSION: SESSION, FERRY_DIRS: '' }, timeoutMs: 30_000 });
    const report = parseReport<Report>(refused.stdout) as Report;
    assert.equal(report.reason, 'tools');
    assert.deepEqual(report.missing, ['curl', 'setsid']);
  });

  it('release stops the processes the session started and, when asked, removes its folders', async () => {
    const root = await mkdtemp(path.join(work, 'release-'));
    await runScript('bash', root, PREPARE_SCRIPT, { FERRY_DIRS: 'work' });
    const started = await startProcess('bash', root, 'p1', ['sh', '-c', 'echo up; sleep 60'], { FERRY_CWD: 'work' });
    const pid = started.report?.pid as number;
    const kept = await runScript('bash', root, RELEASE_SCRIPT, { FERRY_REMOVE: '0' });
    assert.equal(kept.report?.stopped, 1, kept.stderr);
    await waitFor('the process group to end', async () => (isAlive(pid) ? undefined : true));
    assert.ok(existsSync(sessionDir(root)), 'files kept');
    const removed = await runScript('bash', root, RELEASE_SCRIPT, { FERRY_REMOVE: '1' });
    assert.equal(removed.report?.stopped, 0);
    assert.deepEqual(await allPaths(root), ['sessions', 'state']);
  });
});

describe('land and list scripts', () => {
  for (const shell of SHELLS) {
    it(`${shell}: lands hostile names intact, in place, and the listing hashes them back`, async () => {
      const root = await mkdtemp(path.join(work, `land-${shell}-`));
      const files: Record<string, string> = {};
      HOSTILE_NAMES.forEach((name, i) => (files[name] = `content ${i} of ${name}\n`));
      files['train.py'] = 'print("epoch")\n';
      const landed = await land(shell, root, await landingArchive(files), { FERRY_FILES: String(Object.keys(files).length) });
      assert.equal(landed.report?.ok, true, landed.stderr);
      assert.equal(landed.report?.files, Object.keys(files).length);
      for (const [name, body] of Object.entries(files)) assert.equal(await readFile(path.join(sessionDir(root), 'data', name), 'utf8'), body, name);
      assert.ok(!existsSync(path.join(root, 'pwned')) && !existsSync(path.join(sessionDir(root), 'data', 'pwned')), 'nothing was executed');
      assert.deepEqual(await readdir(path.join(root, 'state', SESSION, 'work')), [], 'the staging folder is cleaned up');

      const listed = await list(shell, root);
      assert.equal(listed.report?.ok, true, listed.stderr);
      assert.equal(sha256(listed.listing!), listed.report?.listingSha256);
      const expected = Object.entries(files)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([name, body]) => [name, sha256(body), Buffer.byteLength(body)]);
      assert.deepEqual(
        parseTreeListing(listed.listing!, hashText).map((f) => [f.path, f.sha256, f.size]),
        expected,
      );
      const sizesOnly = await list(shell, root, 'data', false);
      assert.deepEqual(
        parseTreeListing(sizesOnly.listing!, hashText, false).map((f) => [f.path, f.sha256, f.size]),
        expected.map(([name, , size]) => [name, '', size]),
      );
    });
  }

  it('a later landing replaces changed files, keeps the others and their modes, and removes the listed paths', async () => {
    const root = await mkdtemp(path.join(work, 'delta-'));
    const first = await land('bash', root, await landingArchive({ 'keep me.py': 'kept\n', '-dash': 'dash\n', 'old.txt': 'old\n', 'sub/changed.txt': 'v1\n' }, [], { 'keep me.py': 0o755 }), { FERRY_FILES: '4' });
    assert.equal(first.report?.ok, true, first.stderr);
    const second = await land('bash', root, await landingArchive({ 'sub/changed.txt': 'v2\n', 'new.txt': 'new\n' }, ['old.txt', 'never-there.txt']), { FERRY_FILES: '2' });
    assert.equal(second.report?.ok, true, second.stderr);
    assert.equal(second.report?.removed, 2);
    const data = path.join(sessionDir(root), 'data');
    assert.deepEqual(await allPaths(data), ['-dash', 'keep me.py', 'new.txt', 'sub', 'sub/changed.txt']);
    assert.equal(await readFile(path.join(data, 'sub/changed.txt'), 'utf8'), 'v2\n');
    assert.equal((await stat(path.join(data, 'keep me.py'))).mode & 0o777, 0o755);
  });

  for (const shell of SHELLS) {
    it(`${shell}: lands links as links (never followed), replaces what is in their place, and lists them by their text`, async () => {
      const root = await mkdtemp(path.join(work, `links-${shell}-`));
      const outside = await mkdtemp(path.join(work, 'link-outside-'));
      await writeFile(path.join(outside, 'victim.txt'), 'outside\n');
      const data = path.join(sessionDir(root), 'data');
      await mkdir(path.join(data, 'sub'), { recursive: true });
      // What is in a link's place: a file, and a link to a file outside.
      await writeFile(path.join(data, 'was-a-file'), 'old\n');
      await symlink(path.join(outside, 'victim.txt'), path.join(data, 'sub', 'was-a-link'));
      const links = { 'latest.csv': 'data/a.csv', 'sub/was-a-link': '../a.csv', 'was-a-file': path.join(outside, 'victim.txt'), 'deep/new dir/-dash': 'line\nbreak ', 'dangling': 'nowhere/at/all' };
      const landed = await land(shell, root, await landingArchive({ 'a.csv': 'a\n' }, [], {}, links), { FERRY_FILES: '1', FERRY_LINKS: String(Object.keys(links).length) });
      assert.equal(landed.report?.ok, true, landed.stderr);
      assert.deepEqual([landed.report?.files, landed.report?.links], [1, Object.keys(links).length]);
      for (const [name, text] of Object.entries(links)) {
        assert.ok((await lstat(path.join(data, name))).isSymbolicLink(), name);
        assert.equal(await readlink(path.join(data, name)), text, name);
      }
      assert.equal(await readFile(path.join(outside, 'victim.txt'), 'utf8'), 'outside\n', 'the link in place was replaced, not written through');
      assert.deepEqual(await readdir(path.join(root, 'state', SESSION, 'work')), [], 'the staging folder is cleaned up');

      const listed = await list(shell, root);
      assert.equal(listed.report?.ok, true, listed.stderr);
      assert.equal(listed.report?.links, Object.keys(links).length);
      const entries = parseTreeListing(listed.listing!, hashText);
      assert.deepEqual(
        entries.filter((f) => f.link !== undefined).map((f) => [f.path, f.link, f.sha256, f.size, f.mode]),
        Object.entries(links)
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([name, text]) => [name, text, sha256(text), Buffer.byteLength(text), 0o777]),
      );
      assert.deepEqual(entries.filter((f) => f.link === undefined).map((f) => f.path), ['a.csv'], 'links are listed as links, never followed into');
    });
  }

  it('refuses links whose text does not match LINKSUMS, and links reached through a planted link', async () => {
    const root = await mkdtemp(path.join(work, 'link-checks-'));
    const outside = await mkdtemp(path.join(work, 'link-planted-'));
    const lying = await tarGz([{ name: 'links/l', body: '/etc/passwd' }, { name: 'meta/remove' }, { name: 'meta/SHA256SUMS' }, { name: 'meta/LINKSUMS', body: checksumLine({ path: 'l', sha256: sha256('a.csv') }) }]);
    assert.deepEqual(refusal((await land('bash', root, lying, { FERRY_LINKS: '1' })).report), { ok: false, reason: 'mismatch' });
    const counted = await land('bash', root, await landingArchive({}, [], {}, { l: 'a.csv' }), { FERRY_LINKS: '2' });
    assert.deepEqual(refusal(counted.report), { ok: false, reason: 'mismatch' });
    await symlink(outside, path.join(sessionDir(root), 'data', 'models'));
    const through = await land('bash', root, await landingArchive({}, [], {}, { 'models/evil': '/etc/passwd' }), { FERRY_LINKS: '1' });
    assert.deepEqual(refusal(through.report), { ok: false, reason: 'unsafe-path' }, through.stderr);
    assert.deepEqual(await allPaths(outside), []);
  });

  for (const [label, entries] of [
    ['a ../ path', [{ name: '../escaped.txt', body: 'x' }]],
    ['a nested ../ path', [{ name: 'files/a/../../../escaped.txt', body: 'x' }]],
    ['an absolute path', [{ name: '/tmp/ferry-escaped-abs.txt', body: 'x' }]],
    ['a symlink', [{ name: 'files/link', type: 'symlink', linkname: '/' }, { name: 'files/link/escaped.txt', body: 'x' }]],
    ['a hard link', [{ name: 'files/hard', type: 'link', linkname: '/etc/passwd' }]],
  ] as [string, ArchiveEntry[]][]) {
    it(`refuses an archive with ${label} before extracting, and nothing escapes the root`, async () => {
      const outer = await mkdtemp(path.join(work, 'crafted-'));
      const root = path.join(outer, 'root');
      const result = await land('dash', root, await tarGz([...entries, { name: 'meta/remove' }, { name: 'meta/SHA256SUMS' }]), { FERRY_FILES: '1' });
      assert.deepEqual(refusal(result.report), { ok: false, reason: 'unsafe' }, result.stderr);
      assert.notEqual(result.exitCode, 0);
      assert.deepEqual(await allPaths(outer), ['root', 'root/sessions', 'root/sessions/s1', 'root/sessions/s1/data', 'root/state', 'root/state/s1', 'root/state/s1/work']);
      assert.ok(!existsSync('/tmp/ferry-escaped-abs.txt'));
    });
  }

  it('refuses to land or remove through a link planted in the session, writing nothing outside', async () => {
    const root = await mkdtemp(path.join(work, 'planted-'));
    const outside = await mkdtemp(path.join(work, 'outside-'));
    await writeFile(path.join(outside, 'victim.txt'), 'outside\n');
    await mkdir(path.join(sessionDir(root), 'data'), { recursive: true });
    await symlink(outside, path.join(sessionDir(root), 'data', 'models'));
    const through = await land('bash', root, await landingArchive({ 'models/evil.txt': 'x' }), { FERRY_FILES: '1' });
    assert.deepEqual(refusal(through.report), { ok: false, reason: 'unsafe-path' }, through.stderr);
    const removing = await land('bash', root, await landingArchive({}, ['models/victim.txt']));
    assert.deepEqual(refusal(removing.report), { ok: false, reason: 'unsafe-path' }, removing.stderr);
    assert.deepEqual(await allPaths(outside), ['victim.txt']);
    await rm(path.join(sessionDir(root), 'data', 'models'));
    await symlink(outside, path.join(sessionDir(root), 'data-link'));
    const linkedDest = await land('bash', root, await landingArchive({ 'a.txt': 'a' }), { FERRY_DIR: 'data-link', FERRY_FILES: '1' });
    assert.deepEqual(refusal(linkedDest.report), { ok: false, reason: 'unsafe-path' });
    // A link where a file lands is replaced, not followed.
    await symlink(path.join(outside, 'victim.txt'), path.join(sessionDir(root), 'data', 'victim.txt'));
    const replaced = await land('bash', root, await landingArchive({ 'victim.txt': 'landed\n' }), { FERRY_FILES: '1' });
    assert.equal(replaced.report?.ok, true, replaced.stderr);
    assert.equal(await readFile(path.join(outside, 'victim.txt'), 'utf8'), 'outside\n');
    assert.equal(await readFile(path.join(sessionDir(root), 'data', 'victim.txt'), 'utf8'), 'landed\n');
  });

  it('refuses an archive whose sha256 differs, and files that differ from SHA256SUMS, leaving the landed files as they were', async () => {
    const root = await mkdtemp(path.join(work, 'checks-'));
    const good = await land('bash', root, await landingArchive({ 'a.txt': 'a' }), { FERRY_FILES: '1' });
    assert.equal(good.report?.ok, true, good.stderr);
    const { url } = serve(await landingArchive({ 'a.txt': 'b' }));
    const wrongSum = await runScript('bash', root, LAND_SCRIPT, { FERRY_DIR: 'data', FERRY_ARCHIVE_URL: url, FERRY_ARCHIVE_SHA256: '0'.repeat(64), FERRY_FILES: '1' });
    assert.deepEqual(refusal(wrongSum.report), { ok: false, reason: 'checksum' });
    const lying = await tarGz([{ name: 'files/a.txt', body: 'tampered' }, { name: 'meta/remove' }, { name: 'meta/LINKSUMS' }, { name: 'meta/SHA256SUMS', body: checksumLine({ path: 'a.txt', sha256: sha256('b') }) }]);
    assert.deepEqual(refusal((await land('bash', root, lying, { FERRY_FILES: '1' })).report), { ok: false, reason: 'mismatch' });
    const extra = await land('bash', root, await landingArchive({ 'a.txt': 'b', 'extra.txt': 'e' }), { FERRY_FILES: '1' });
    assert.deepEqual(refusal(extra.report), { ok: false, reason: 'mismatch' });
    assert.equal(await readFile(path.join(sessionDir(root), 'data', 'a.txt'), 'utf8'), 'a', 'the landed file is untouched');
    const missing = await runScript('bash', root, LAND_SCRIPT, { FERRY_DIR: 'data', FERRY_ARCHIVE_URL: `${baseUrl}/nothing`, FERRY_ARCHIVE_SHA256: '0'.repeat(64), FERRY_FILES: '1' });
    assert.deepEqual(refusal(missing.report), { ok: false, reason: 'download' });
  });
});

/** Whether `pid` is a live process (not gone, not a zombie waiting for a parent that left). */
function isAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function startProcess(shell: string, root: string, processId: string, command: string[], extra: Record<string, string> = {}) {
  await mkdir(sessionDir(root), { recursive: true });
  return runScript(shell, root, START_SCRIPT, {
    FERRY_PROCESS_ID: processId,
    FERRY_CWD: '',
    FERRY_COMMAND: quoteCommand(command),
    FERRY_USER_ENV: '',
    FERRY_TIMEOUT_SECONDS: '',
    FERRY_OUTPUT: 'separate',
    FERRY_WRAPPER: WRAPPER_SCRIPT,
    FERRY_TAIL_BYTES: '100',
    FERRY_WAIT_MS: '0',
    ...extra,
  });
}

function probe(shell: string, root: string, processId: string, extra: Record<string, string> = {}) {
  return runScript(shell, root, PROBE_SCRIPT, { FERRY_PROCESS_ID: processId, FERRY_WAIT_MS: '0', FERRY_LOG_OFFSET: '0', FERRY_CHUNK_MAX: '0', FERRY_CHUNK_URL: '', FERRY_TAIL_BYTES: '100', ...extra });
}

const text = (base64: unknown) => Buffer.from(base64 as string, 'base64').toString();

describe('start, probe, stop and upload scripts', () => {
  for (const shell of SHELLS) {
    it(`${shell}: starts once per process id in its folder with its env, ships the log, and SIGTERM ends the command with 143`, async () => {
      const root = await mkdtemp(path.join(work, `proc-${shell}-`));
      await writeTree(path.join(sessionDir(root), 'project'), { 'run.sh': 'echo "started in $(pwd -P | sed "s|.*/||") with $GREETING"; echo "out=$FERRY_OUTPUT_DIR"; exec sleep 30\n' });
      const env = { FERRY_CWD: 'project', FERRY_OUTPUT: 'combined', FERRY_USER_ENV: exportLines({ GREETING: "it's $(touch pwned)", FERRY_OUTPUT_DIR: '/out' }) };
      const first = await startProcess(shell, root, 'start-1', ['sh', 'run.sh'], env);
      assert.equal(first.report?.ok, true, first.stderr);
      assert.equal(first.report?.started, true);
      assert.equal(first.report?.state, 'running');
      const again = await startProcess(shell, root, 'start-1', ['sh', 'run.sh'], env);
      assert.equal(again.report?.started, false, 'a retried start does not start a second process');
      assert.equal(again.report?.pid, first.report?.pid);

      const chunkKey = `/chunk-${shell}-${++counter}`;
      const probed = await waitFor('the first log bytes', async () => {
        const result = await probe(shell, root, 'start-1', { FERRY_CHUNK_MAX: '1000000', FERRY_CHUNK_URL: `${baseUrl}${chunkKey}` });
        return (result.report?.shipped as number) > 0 && (result.report?.stdoutBytes as number) >= 40 ? result : undefined;
      });
      assert.equal(probed.report?.state, 'running', probed.stderr);
      assert.equal(probed.report?.exitCode, null);
      const chunk = uploaded.get(chunkKey)!.body.toString();
      assert.match(chunk, /started in project with it's \$\(touch pwned\)\nout=\/out\n/);
      assert.equal(text(probed.report?.stdoutTail64), chunk.slice(-100));

      const stopped = await runScript(shell, root, STOP_SCRIPT, { FERRY_PROCESS_ID: 'start-1', FERRY_GRACE_SECONDS: '5' });
      assert.equal(stopped.report?.signal, 'TERM', stopped.stderr);
      const after = await probe(shell, root, 'start-1');
      assert.equal(after.report?.state, 'exited');
      assert.equal(after.report?.exitCode, 143);
      const log = await readFile(path.join(root, 'state', SESSION, 'proc', 'start-1', 'stdout.log'));
      assert.ok(log.toString().startsWith(chunk));
      assert.equal(after.report?.stdoutSha256, sha256(log), 'an ended process reports the sha256 of its logs');
      assert.ok(!existsSync(path.join(sessionDir(root), 'project', 'pwned')));
    });
  }

  it('waits for a short command within one call, keeps stdout and stderr apart, and kills one that outlives its timeout', async () => {
    const root = await mkdtemp(path.join(work, 'wait-'));
    const quick = await startProcess('dash', root, 'quick', ['sh', '-c', 'echo out; echo err >&2; exit 4'], { FERRY_WAIT_MS: '10000' });
    assert.equal(quick.report?.state, 'exited', quick.stderr);
    assert.equal(quick.report?.exitCode, 4);
    assert.equal(text(quick.report?.stdoutTail64), 'out\n');
    assert.equal(text(quick.report?.stderrTail64), 'err\n');
    const slow = await startProcess('dash', root, 'slow', ['sh', '-c', 'sleep 30 & sleep 30'], { FERRY_TIMEOUT_SECONDS: '1' });
    const ended = await waitFor('the timeout', async () => {
      const result = await probe('dash', root, 'slow', { FERRY_WAIT_MS: '2000' });
      return result.report?.state === 'exited' ? result : undefined;
    });
    assert.equal(ended.report?.timedOut, true);
    assert.equal(ended.report?.exitCode, 137);
    const child = Number(await readFile(path.join(root, 'state', SESSION, 'proc', 'slow', 'child_pid'), 'utf8'));
    await waitFor('the command and its background job to end', async () => (isAlive(slow.report?.pid as number) || isAlive(child) ? undefined : true), 10_000);
  });

  it('ships stdout and stderr apart, each from its own offset, in one probe', async () => {
    const root = await mkdtemp(path.join(work, 'streams-'));
    const started = await startProcess('dash', root, 'streams', ['sh', '-c', 'echo out-line; echo err-line >&2'], { FERRY_WAIT_MS: '10000' });
    assert.equal(started.report?.state, 'exited', started.stderr);
    const [outKey, errKey] = [`/out-${++counter}`, `/err-${counter}`];
    const probed = await probe('dash', root, 'streams', {
      FERRY_CHUNK_MAX: '1000',
      FERRY_LOG_OFFSET: '4',
      FERRY_CHUNK_URL: `${baseUrl}${outKey}`,
      FERRY_ERR_LOG_OFFSET: '2',
      FERRY_ERR_CHUNK_URL: `${baseUrl}${errKey}`,
    });
    assert.equal(probed.report?.shipped, 5, probed.stderr);
    assert.equal(probed.report?.shippedStderr, 7);
    assert.equal(uploaded.get(outKey)!.body.toString(), 'line\n');
    assert.equal(uploaded.get(errKey)!.body.toString(), 'r-line\n');
    const nothingNew = await probe('dash', root, 'streams', { FERRY_CHUNK_MAX: '1000', FERRY_LOG_OFFSET: '9', FERRY_CHUNK_URL: `${baseUrl}/never`, FERRY_ERR_LOG_OFFSET: '9', FERRY_ERR_CHUNK_URL: `${baseUrl}/never` });
    assert.deepEqual([nothingNew.report?.shipped, nothingNew.report?.shippedStderr], [0, 0]);
    assert.equal(uploaded.has('/never'), false, 'nothing is uploaded when a stream has nothing past its offset');
  });

  it('a command that ignores SIGTERM is killed after the grace period, and its exit code still recorded', async () => {
    const root = await mkdtemp(path.join(work, 'kill-'));
    await startProcess('bash', root, 's', ['bash', '-c', "trap '' TERM; echo ready; while :; do sleep 0.2; done"]);
    await waitFor('ready', async () => ((await probe('bash', root, 's')).report?.stdoutBytes as number) > 0 || undefined);
    const stopped = await runScript('bash', root, STOP_SCRIPT, { FERRY_PROCESS_ID: 's', FERRY_GRACE_SECONDS: '1' });
    assert.equal(stopped.report?.signal, 'KILL');
    const after = await probe('bash', root, 's');
    assert.equal(after.report?.state, 'exited');
    assert.equal(after.report?.exitCode, 137);
  });

  it('a process whose wrapper died without an exit code is lost, never started again', async () => {
    const root = await mkdtemp(path.join(work, 'lost-'));
    const started = await startProcess('bash', root, 'l', ['sleep', '30']);
    const wrapper = started.report?.pid as number;
    const child = Number(await readFile(path.join(root, 'state', SESSION, 'proc', 'l', 'child_pid'), 'utf8'));
    process.kill(-wrapper, 'SIGKILL');
    process.kill(-child, 'SIGKILL');
    await waitFor('the wrapper to die', async () => (isAlive(wrapper) ? undefined : true));
    assert.equal((await probe('bash', root, 'l')).report?.state, 'lost');
    const again = await startProcess('bash', root, 'l', ['sleep', '30']);
    assert.equal(again.report?.started, false);
    assert.equal(again.report?.state, 'lost');
  });

  it('probing or stopping an unknown process id is refused as bad input, and so is a folder that is not there', async () => {
    const root = await mkdtemp(path.join(work, 'unknown-'));
    assert.deepEqual(refusal((await probe('bash', root, 'nope')).report), { ok: false, reason: 'not-started' });
    assert.deepEqual(refusal((await runScript('bash', root, STOP_SCRIPT, { FERRY_PROCESS_ID: 'nope', FERRY_GRACE_SECONDS: '1' })).report), { ok: false, reason: 'not-started' });
    assert.deepEqual(refusal((await startProcess('bash', root, 'x', ['true'], { FERRY_CWD: 'project' })).report), { ok: false, reason: 'not-landed' });
    assert.deepEqual(refusal((await probe('bash', root, '../x')).report), { ok: false, reason: 'input' });
  });

  it('upload PUTs each listed file with the checksum header, names hostile ones byte for byte, and fails on a file that changed', async () => {
    const root = await mkdtemp(path.join(work, 'upload-'));
    const files: Record<string, string> = { 'report.md': '# report\n', 'line\nbreak [1].csv': 'a,b\n', '-rf': 'dash\n' };
    await writeTree(path.join(sessionDir(root), 'artifacts'), files);
    const jobs = Object.entries(files).map(([name, body], i) => [name, `${baseUrl}/upload-${counter}-${i}`, createHash('sha256').update(body).digest('base64')]);
    const list = serve(Buffer.from(jobs.map((job) => job.join('\0') + '\0').join('')));
    const uploadedFiles = await runScript('dash', root, UPLOAD_SCRIPT, { FERRY_FROM: 'session', FERRY_DIR: 'artifacts', FERRY_PROCESS_ID: '', FERRY_JOBS_URL: list.url });
    assert.equal(uploadedFiles.report?.uploaded, 3, uploadedFiles.stderr);
    for (const [name, url, checksum] of jobs) {
      const got = uploaded.get(url.slice(baseUrl.length))!;
      assert.equal(got.body.toString(), files[name]);
      assert.equal(got.headers['x-amz-checksum-sha256'], checksum);
    }
    const stale = serve(Buffer.from(`report.md\0${baseUrl}/upload-stale\0${createHash('sha256').update('something else').digest('base64')}\0`));
    const refused = await runScript('dash', root, UPLOAD_SCRIPT, { FERRY_FROM: 'session', FERRY_DIR: 'artifacts', FERRY_PROCESS_ID: '', FERRY_JOBS_URL: stale.url });
    assert.deepEqual(refusal(refused.report), { ok: false, reason: 'upload' });
    assert.ok(!uploaded.has('/upload-stale'));
  });
});

describe('parseTreeListing', () => {
  it('joins sizes and modes with hashes, unescaping names sha256sum escaped', () => {
    const stat = Buffer.from('5 644 ./a b\x0012 755 ./line\nbreak\x00');
    const sums = Buffer.from(`${sha256('aaaaa')}  ./a b\n\\${sha256('x')}  ./line\\nbreak\n`);
    const links = Buffer.from('./b link\x00../a b\x00');
    const listing = Buffer.concat([Buffer.from(`${stat.length} ${links.length}\n`), stat, links, sums]);
    assert.deepEqual(parseTreeListing(listing, hashText), [
      { path: 'a b', size: 5, mode: 0o644, sha256: sha256('aaaaa') },
      { path: 'b link', size: 6, mode: 0o777, sha256: sha256('../a b'), link: '../a b' },
      { path: 'line\nbreak', size: 12, mode: 0o755, sha256: sha256('x') },
    ]);
    assert.throws(() => parseTreeListing(Buffer.concat([Buffer.from(`${stat.length} 0\n`), stat]), hashText), /2 stat records but 0 checksums/);
    assert.throws(() => parseTreeListing(Buffer.concat([Buffer.from(`${stat.length} 6\n`), stat, Buffer.from('./odd\x00')]), hashText), /bad link section/);
    assert.throws(() => parseTreeListing(Buffer.from('garbage'), hashText), /malformed tree listing/);
  });

  it('hashes match node for a binary file (sanity of the sha256 the scripts compute)', async () => {
    const root = await mkdtemp(path.join(work, 'binary-'));
    const body = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) % 256));
    await writeTree(path.join(sessionDir(root), 'tree'), { 'bin.dat': body });
    await chmod(path.join(sessionDir(root), 'tree', 'bin.dat'), 0o640);
    const listed = await list('dash', root, 'tree');
    assert.equal(listed.report?.exists, true);
    assert.deepEqual(parseTreeListing(listed.listing!, hashText), [{ path: 'bin.dat', size: 5000, mode: 0o640, sha256: createHash('sha256').update(body).digest('hex') }]);
    const absent = await list('dash', root, 'nothing-here');
    assert.deepEqual([absent.report?.ok, absent.report?.exists], [true, false]);
  });
});
