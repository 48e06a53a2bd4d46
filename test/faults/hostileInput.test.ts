/**
 * Hostile input at every layer (issue 6): nothing may escape the session
 * root and nothing may be executed. Path rules and manifest validation; the
 * training land script run for real (bash and dash) against crafted tar.gz
 * archives and a gzip bomb; the runtime agent against hostile paths, deep
 * trees and metadata URLs; source trees with links, devices and 10,000
 * levels; hostile names, 25,000 empty files and 50 MB of stdout through
 * the workflows on a real Temporal and S3; wrong-shape inputs from the
 * temporal CLI; presigned URLs checked against the real SeaweedFS.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { chmod, link, lstat, mkdir, mkdtemp, readFile, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer as createNetServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { createLocalSourceActivities, type SnapshotSourceResult } from '../../activities/localSource';
import { ReadOutcome, hashFiles, listDirectory } from '../../activities/sourceWorker';
import { S3BlobStore, createS3Clients } from '../../activities/s3BlobStore';
import { createSessionActivities } from '../../activities/session';
import { ShellChannel } from '../../activities/targets/shell';
import { PipelineClient } from '../../client/pipelineClient';
import { repoRoot, resolveTool } from '../../client/tools';
import type { AgentError, LandStreamEvent, ListFilesStreamEvent } from '../../core/agentProtocol';
import { createManifest, entriesProblems, manifestProblems, type ManifestEntry } from '../../core/manifest';
import { MAX_PATH_DEPTH, quotePath, unsafePathReason } from '../../core/paths';
import { LAND_SCRIPT, checksumLine, parseReport } from '../../core/shellScripts';
import { sessionRoot, type SyncResult } from '../../core/sync';
import { startAgent, type RunningAgent } from '../../runtime/agent';
import { assertNoneIn, chunksOf, seededBytes, sha256, treeHashes, waitFor, writeTree } from '../support/fixtures';
import { emptyMeta, gzipBomb, listTree, removeDeepTree, tarBytes, tarGz, writeDeepTree, type ArchiveEntry } from '../support/hostileArchives';
import { activityEnvironment } from '../support/testLogs';
import { resultOf, startTestStack, type TestStack } from '../support/testStack';
import { activityDepsFromConfig } from '../../worker/worker';

const execFileAsync = promisify(execFile);
const TOKEN = 'hostile-input-token-0123456789';
const silentLog = { log: () => undefined };
const DEEP_LEVELS = 10_000;
const deepPath = (levels = DEEP_LEVELS) => Array.from({ length: levels }, () => 'd').join('/');

let work: string;
before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-hostile-'));
});
after(async () => {
  await stopStack();
  if (work) await removeDeepTree(work);
});

/** One real stack for the tests that need Temporal, S3 and the local agent, started when the first of them runs. */
let stackPromise: Promise<TestStack> | undefined;
// The agent in its own process, as on a real target: its work does not share this process's event loop with the worker.
const getStack = () => (stackPromise ??= startTestStack({ agentProcess: true }));
async function stopStack(): Promise<void> {
  if (stackPromise) await (await stackPromise).stop();
}

/** Basenames that would exist if a name had been run as a command. */
const PWNED = ['pwned', 'pwned2', 'pwned3'];
/** No PWNED file anywhere under `trees`, nor directly in `dirs` (where a command would run from). */
function assertNothingExecuted(trees: string[], dirs: string[]): void {
  for (const tree of trees) {
    const hits = listTree(tree).filter((entry) => PWNED.includes(path.basename(entry.replace(/:[fdlo]$/, ''))));
    assert.deepEqual(hits, [], `nothing was executed under ${tree}`);
  }
  for (const dir of dirs) assertNoneIn(dir, PWNED, `nothing was executed in ${dir}`);
}

/** A small HTTP server standing in for presigned URLs: serves bodies under paths, records every request. */
interface StandIn {
  base: string;
  port: number;
  hits: string[];
  serve(pathname: string, body: Buffer): string;
  redirect(pathname: string, location: string): string;
}

/** Closed by `t`'s after hook when given, else by the caller. */
async function startStandIn(t?: TestContext): Promise<StandIn & { server: Server }> {
  const bodies = new Map<string, Buffer>();
  const redirects = new Map<string, string>();
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    const location = redirects.get(req.url ?? '');
    if (location) return void res.writeHead(302, { location }).end();
    const body = bodies.get(req.url ?? '');
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}`;
  const standIn = {
    server,
    base,
    port,
    hits,
    serve(pathname: string, body: Buffer) {
      bodies.set(pathname, body);
      return base + pathname;
    },
    redirect(pathname: string, location: string) {
      redirects.set(pathname, location);
      return base + pathname;
    },
  };
  t?.after(() => closeServer(server));
  return standIn;
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('path rules and manifest validation', () => {
  const entry = (p: unknown): unknown => ({ path: p, size: 1, mode: 0o644, sha256: sha256('x') });

  it('refuses every hostile manifest path with a reason that names it', () => {
    const hostile: [string, RegExp][] = [
      ['../x', /contains "\.\."/],
      ['/etc/x', /absolute/],
      ['////etc/x', /absolute/],
      ['a/../../x', /contains "\.\."/],
      ['a\\..\\..\\x', /backslash/],
      ['..\\x', /backslash/],
      ['C:\\Windows\\x', /backslash/],
      ['..', /contains "\.\."/],
      ['a/..', /contains "\.\."/],
      ['./x', /contains "\."/],
      ['a//b', /empty segment/],
      ['a/', /empty segment/],
      ['a\0b', /NUL/],
      [`${'n'.repeat(256)}/x`, /segment longer than 255 bytes/],
    ];
    for (const [p, reason] of hostile) {
      const problems = manifestProblems({ version: 1, files: [entry('ok.txt'), entry(p)] });
      assert.equal(problems.length, 1, p);
      assert.match(problems[0], reason, p);
      assert.ok(problems[0].startsWith(`files[1].path ${quotePath(p)}`), problems[0]);
    }
    assert.deepEqual(manifestProblems({ version: 1, files: [entry(42), entry(null)] }), ['files[0].path 42: not a string', 'files[1].path null: not a string']);
  });

  it('accepts odd but harmless names byte for byte, NFC and NFD of one word as two paths', () => {
    const nfc = 'café.txt'.normalize('NFC');
    const nfd = 'café.txt'.normalize('NFD');
    assert.notEqual(nfc, nfd);
    const names = ['with space.txt', `it's "quoted"`, '$(touch pwned)', '`touch pwned2`', 'line\nbreak', '-rf', '--help', nfc, nfd, '...', '.hidden'];
    assert.deepEqual(entriesProblems(names.map(entry)), []);
  });

  it(`rejects a ${DEEP_LEVELS}-level path, and a manifest of 2,000 of them with bounded work`, (t: TestContext) => {
    const deep = `${deepPath()}/x`;
    let started = process.hrtime.bigint();
    assert.match(unsafePathReason(deep) ?? '', /longer than 4096 bytes/);
    const single = Number(process.hrtime.bigint() - started) / 1e6;
    // 2,000 levels fit in 4096 bytes, so there depth is what stops it.
    assert.match(unsafePathReason(deepPath(2_000)) ?? '', new RegExp(`deeper than ${MAX_PATH_DEPTH} levels`));

    const files = Array.from({ length: 2_000 }, (_, i) => entry(`${deepPath()}/${i}`));
    const heapBefore = process.memoryUsage().heapUsed;
    started = process.hrtime.bigint();
    const problems = manifestProblems({ version: 1, files });
    const whole = Number(process.hrtime.bigint() - started) / 1e6;
    const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
    assert.equal(problems.length, 20, 'validation stops after 20 problems');
    assert.match(problems[0], /^files\[0\]\.path "d\/d\/.*"… \(20001 characters\): longer than 4096 bytes$/);
    assert.ok(problems.join('; ').length < 10_000, 'the problems quote a bounded part of each path');
    t.diagnostic(`figures: one ${DEEP_LEVELS}-level path refused in ${single.toFixed(2)} ms; a manifest of 2,000 such paths (${(2_000 * deep.length) >> 20} MiB of paths) in ${whole.toFixed(2)} ms, heap growth ${(heapGrowth / 1e6).toFixed(1)} MB, ${problems.join('').length} characters of problems`);
  });
});

describe('the land script of script-reached targets against hostile archives', () => {
  let standIn: StandIn & { server: Server };
  let spyDir: string;
  let counter = 0;

  before(async () => {
    standIn = await startStandIn();
    spyDir = path.join(work, 'spy-bin');
    await mkdir(spyDir);
    const realTar = (await execFileAsync('sh', ['-c', 'command -v tar'])).stdout.trim();
    // Records every tar run, so a test can show the archive was refused before tar read it.
    await writeFile(path.join(spyDir, 'tar'), `#!/bin/sh\nprintf '%s\\n' "$*" >> "$FERRY_TEST_TAR_LOG"\nexec ${realTar} "$@"\n`);
    await chmod(path.join(spyDir, 'tar'), 0o755);
  });
  after(() => closeServer(standIn.server));

  interface Landing {
    report: Record<string, unknown> | undefined;
    stderr: string;
    exitCode: number;
    ms: number;
    tarRuns: string[];
  }

  async function land(shell: string, root: string, archive: Buffer, env: Record<string, string> = {}, pathPrefix = spyDir): Promise<Landing> {
    const url = standIn.serve(`/archive-${++counter}`, archive);
    const tarLog = path.join(work, `tar-${counter}.log`);
    const started = Date.now();
    const outcome = await new ShellChannel(root, shell).run({
      purpose: 'land',
      script: LAND_SCRIPT,
      env: {
        PATH: `${pathPrefix}:${process.env.PATH}`,
        FERRY_TEST_TAR_LOG: tarLog,
        FERRY_ROOT: root,
        FERRY_SESSION: 's1',
        FERRY_DIR: 'data',
        FERRY_ARCHIVE_URL: url,
        FERRY_ARCHIVE_SHA256: sha256(archive),
        FERRY_FILES: '1',
        ...env,
      },
      timeoutMs: 120_000,
    });
    const tarRuns = existsSync(tarLog) ? (await readFile(tarLog, 'utf8')).trim().split('\n') : [];
    const report = parseReport<Record<string, unknown>>(outcome.stdout) as Record<string, unknown> | undefined;
    // Compared without the boot id every report carries.
    const { bootId: _, ...withoutBoot } = report ?? {};
    return { report: report && withoutBoot, stderr: outcome.stderr, exitCode: outcome.exitCode, ms: Date.now() - started, tarRuns };
  }

  const goodFiles: ArchiveEntry[] = [{ name: 'files/a.txt', body: 'good\n' }, ...emptyMeta(checksumLine({ path: 'a.txt', sha256: sha256('good\n') }))];
  const landedFile = (root: string, name: string) => path.join(root, 'sessions', 's1', 'data', name);

  /** A target holding one good landed file, and what its parent folder holds. */
  async function targetWithGoodLanding(shell: string): Promise<{ outer: string; root: string; before: string[] }> {
    const outer = await mkdtemp(path.join(work, `target-${shell}-`));
    const root = path.join(outer, 'root');
    const good = await land(shell, root, await tarGz(goodFiles));
    assert.equal(good.report?.ok, true, good.stderr);
    assert.ok(good.tarRuns.length > 0, 'the tar spy saw tar unpack the good archive, so "tar never ran" below can fail');
    return { outer, root, before: listTree(outer) };
  }

  async function assertNothingChanged(target: { outer: string; root: string; before: string[] }, label: string): Promise<void> {
    assert.deepEqual(listTree(target.outer), target.before, `${label}: nothing appeared, vanished or changed type under the target's parent`);
    assert.equal(await readFile(landedFile(target.root, 'a.txt'), 'utf8'), 'good\n', `${label}: the landed file is untouched`);
  }

  const outerMarker = () => path.join(work, `escaped-${randomUUID()}`);
  const crafted = (escapeTo: string): [string, ArchiveEntry[], string][] => [
    ['an absolute name with four leading slashes', [{ name: `////${escapeTo.slice(1)}-slashes`, body: 'x' }], 'unsafe'],
    ['an absolute name pointing next to the target', [{ name: `${escapeTo}-absolute`, body: 'x' }], 'unsafe'],
    ['a ./-prefixed .. name', [{ name: './files/../../escaped', body: 'x' }], 'unsafe'],
    ['a directory followed by a same-name symlink and a file through it', [{ name: 'files/d', type: 'directory' }, { name: 'files/d', type: 'symlink', linkname: path.dirname(escapeTo) }, { name: `files/d/${path.basename(escapeTo)}-via-link`, body: 'x' }], 'unsafe'],
    ['a symlink to a file inside the archive', [{ name: 'files/a.txt', body: 'good\n' }, { name: 'files/alias', type: 'symlink', linkname: 'a.txt' }], 'unsafe'],
    ['a hard link to a file inside the archive', [{ name: 'files/a.txt', body: 'good\n' }, { name: 'files/hard', type: 'link', linkname: 'files/a.txt' }], 'unsafe'],
    ['a character device', [{ name: 'files/null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 }], 'unsafe'],
    ['a block device', [{ name: 'files/loop', type: 'block-device', devmajor: 7, devminor: 0 }], 'unsafe'],
    ['a fifo', [{ name: 'files/fifo', type: 'fifo' }], 'unsafe'],
    ['a newline hiding ..', [{ name: 'files/a\n../../escaped', body: 'x' }], 'unsafe'],
    ['a long PAX name climbing out', [{ name: `files/${'a/'.repeat(60)}${'../'.repeat(70)}escaped`, body: 'x' }], 'unsafe'],
    // Backslashes are ordinary characters on Linux: the file stays inside, and is one file too many.
    ['backslashes', [{ name: 'files/a.txt', body: 'good\n' }, { name: 'files/..\\..\\escaped', body: 'x' }], 'mismatch'],
    [`a ${DEEP_LEVELS}-level name`, [{ name: `files/${deepPath()}/x`, body: 'x' }], 'archive'],
  ];

  for (const shell of ['bash', 'dash']) {
    it(`${shell}: refuses each crafted archive with a clear reason; nothing appears outside the root and nothing is promoted`, async (t: TestContext) => {
      const target = await targetWithGoodLanding(shell);
      const escapeTo = outerMarker();
      const figures: string[] = [];
      for (const [label, entries, reason] of crafted(escapeTo)) {
        const sums = entries.some((e) => e.name === 'files/a.txt') ? checksumLine({ path: 'a.txt', sha256: sha256('good\n') }) : '';
        const landing = await land(shell, target.root, await tarGz([...entries, ...emptyMeta(sums)]));
        assert.deepEqual(landing.report, { ok: false, reason }, `${label}: ${landing.stderr}`);
        assert.equal(landing.exitCode, 3, label);
        assert.match(landing.stderr, /^ferry: .+/m, `${label}: a one-line reason on stderr`);
        await assertNothingChanged(target, label);
        figures.push(`${label} → ${reason} (${landing.ms} ms)`);
      }
      assert.deepEqual(listTree(work).filter((e) => e.startsWith(path.basename(escapeTo))), [], 'nothing reached the marker paths');
      t.diagnostic(`figures: ${figures.join('; ')}`);
    });
  }

  it('a gzip bomb (1 GiB of zeros in 1 MB) is refused at the byte cap before tar reads it', async (t: TestContext) => {
    const target = await targetWithGoodLanding('dash');
    const bomb = await gzipBomb(1 << 30);
    const cap = 16 << 20;
    const landing = await land('dash', target.root, bomb, { FERRY_ARCHIVE_MAX_BYTES: String(cap) });
    assert.deepEqual(landing.report, { ok: false, reason: 'unsafe' }, landing.stderr);
    assert.match(landing.stderr, new RegExp(`unpacks to more than its limit of ${cap} bytes`));
    assert.deepEqual(landing.tarRuns, [], 'tar never ran on the bomb');
    await assertNothingChanged(target, 'gzip bomb');
    t.diagnostic(`figures: bomb ${bomb.length} bytes compressed, ${1 << 30} unpacked; refused at a ${cap}-byte cap in ${landing.ms} ms with no tar run`);
  });

  it('without a limit, a bomb larger than the free space is refused as disk before anything is unpacked', async () => {
    const target = await targetWithGoodLanding('bash');
    // A df that reports 200,000 KiB free: the cap becomes that less the 64 MiB reserve.
    const fakeBin = path.join(work, 'fake-df');
    await mkdir(fakeBin, { recursive: true });
    await writeFile(path.join(fakeBin, 'df'), "#!/bin/sh\nprintf 'Filesystem 1024-blocks Used Available Capacity Mounted on\\nfake 1000000 800000 200000 80%% /\\n'\n");
    await chmod(path.join(fakeBin, 'df'), 0o755);
    const landing = await land('bash', target.root, await gzipBomb(256 << 20), {}, `${fakeBin}:${spyDir}`);
    assert.deepEqual(landing.report, { ok: false, reason: 'disk' }, landing.stderr);
    assert.match(landing.stderr, new RegExp(`more than the ${200_000 * 1024 - (64 << 20)} bytes free`));
    assert.deepEqual(landing.tarRuns, []);
    await assertNothingChanged(target, 'bomb over the free space');
  });

  it('the cap is exact: an archive unpacking to exactly the limit lands, one byte less refuses it, a non-number is bad input', async () => {
    const target = await targetWithGoodLanding('bash');
    const files: ArchiveEntry[] = [{ name: 'files/b.txt', body: 'second\n' }, ...emptyMeta(checksumLine({ path: 'b.txt', sha256: sha256('second\n') }))];
    const unpacked = (await tarBytes(files)).length;
    const refused = await land('bash', target.root, await tarGz(files), { FERRY_ARCHIVE_MAX_BYTES: String(unpacked - 1) });
    assert.deepEqual(refused.report, { ok: false, reason: 'unsafe' }, refused.stderr);
    await assertNothingChanged(target, 'one byte over');
    const bad = await land('bash', target.root, await tarGz(files), { FERRY_ARCHIVE_MAX_BYTES: '1e9' });
    assert.deepEqual(bad.report, { ok: false, reason: 'input' });
    const landed = await land('bash', target.root, await tarGz(files), { FERRY_ARCHIVE_MAX_BYTES: String(unpacked) });
    assert.equal(landed.report?.ok, true, landed.stderr);
    assert.equal(await readFile(landedFile(target.root, 'b.txt'), 'utf8'), 'second\n');
  });
});

describe('the runtime agent against hostile requests', () => {
  interface AgentSetup {
    agent: RunningAgent;
    root: string;
    /** The only allowed prefix is `<blobs.base>/ferry/`. */
    blobs: StandIn;
    /** A server no request may reach. */
    trap: StandIn;
  }

  async function setup(t: TestContext): Promise<AgentSetup> {
    const root = path.join(await mkdtemp(path.join(work, 'agent-')), 'root');
    const blobs = await startStandIn(t);
    const trap = await startStandIn(t);
    const agent = await startAgent({ root, token: TOKEN, allowedUrlPrefixes: [`${blobs.base}/ferry/`], log: silentLog });
    t.after(() => agent.close());
    return { agent, root, blobs, trap };
  }

  const post = (agent: RunningAgent, route: string, body: unknown) =>
    fetch(agent.url + route, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

  async function refusal(response: Response): Promise<AgentError['error']> {
    assert.equal(response.status, 400);
    return ((await response.json()) as AgentError).error;
  }

  it(`refuses ////etc/x, NUL, long segments and a ${DEEP_LEVELS}-level path, fetching and writing nothing`, async (t: TestContext) => {
    const { agent, root, blobs } = await setup(t);
    const body = Buffer.from('x');
    const url = blobs.serve(`/ferry/${sha256(body)}`, body);
    const file = (p: string) => ({ path: p, size: 1, mode: 0o644, sha256: sha256(body), url });
    for (const hostile of ['////etc/x', '..', 'a/..', 'a\0b', `${'n'.repeat(256)}/x`, '..\\..\\x']) {
      const error = await refusal(await post(agent, '/v1/land', { dir: 'data', files: [file('ok.txt'), file(hostile)] }));
      assert.equal(error.type, 'UnsafePath', JSON.stringify(hostile));
    }
    const deep = `${deepPath()}/x`;
    const timings: number[] = [];
    const rssBefore = process.memoryUsage().rss;
    for (const request of [
      ['/v1/land', { dir: 'data', files: [file(deep)] }],
      ['/v1/land', { dir: deepPath(), files: [file('x')] }],
      ['/v1/files', { dir: 'data', paths: [deep] }],
      ['/v1/processes', { processId: 'deep', command: ['touch', 'pwned'], cwd: deepPath(), timeoutSeconds: 5 }],
    ] as const) {
      const started = Date.now();
      const error = await refusal(await post(agent, request[0], request[1]));
      timings.push(Date.now() - started);
      assert.equal(error.type, 'UnsafePath', request[0]);
      assert.match(error.message, /longer than 4096 bytes/);
      assert.ok(error.message.length < 1_000, `a bounded message (${error.message.length} characters)`);
    }
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    assert.deepEqual(blobs.hits, [], 'no blob was fetched');
    assert.deepEqual(listTree(root), [], 'nothing was written under the root');
    t.diagnostic(`figures: ${DEEP_LEVELS}-level path refused by land/land dir/files/processes in ${timings.join('/')} ms; RSS growth of this process (which hosts the agent) ${(rssGrowth / 1e6).toFixed(1)} MB`);
  });

  it(`lists a folder holding a ${DEEP_LEVELS}-level tree without descending past ${MAX_PATH_DEPTH} levels`, async (t: TestContext) => {
    const { agent, root } = await setup(t);
    await mkdir(path.join(root, 'data'), { recursive: true });
    await writeFile(path.join(root, 'data', 'shallow.txt'), 'shallow\n');
    // What user code could leave in a session folder.
    writeDeepTree(path.join(root, 'data'), DEEP_LEVELS);
    const rssBefore = process.memoryUsage().rss;
    const started = Date.now();
    const response = await post(agent, '/v1/files', { dir: 'data' });
    assert.equal(response.status, 200);
    const events = (await response.text()).trim().split('\n').map((line) => JSON.parse(line) as ListFilesStreamEvent);
    const ms = Date.now() - started;
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    assert.deepEqual(events.filter((e) => e.type === 'file').map((e) => e.type === 'file' && e.path), ['shallow.txt']);
    assert.equal(events.at(-1)?.type, 'result', JSON.stringify(events.at(-1)).slice(0, 300));
    t.diagnostic(`figures: listing a folder with a ${DEEP_LEVELS}-level tree took ${ms} ms, RSS growth of this process (which hosts the agent) ${(rssGrowth / 1e6).toFixed(1)} MB`);
  });

  it('refuses metadata addresses in every spelling, other hosts, ports, schemes and look-alike prefixes, never connecting', async (t: TestContext) => {
    const { agent, root, blobs, trap } = await setup(t);
    const body = Buffer.from('payload');
    const good = { path: 'ok.txt', size: body.length, mode: 0o644, sha256: sha256(body), url: blobs.serve(`/ferry/${sha256(body)}`, body) };
    const refused = [
      'http://169.254.169.254/latest/meta-data/iam/security-credentials/',
      'http://169.254.170.2/v2/credentials/00000000-0000-0000-0000-000000000000',
      'http://2852039166/latest/meta-data/',
      'http://0xa9fea9fe/latest/meta-data/',
      'http://0251.0376.0251.0376/latest/meta-data/',
      'http://169.254.43518/latest/meta-data/',
      'http://[::ffff:169.254.169.254]/latest/meta-data/',
      'http://[fd00:ec2::254]/latest/meta-data/',
      'http://169.254.169.254.nip.io/latest/meta-data/',
      `http://${blobs.base.slice(7)}@169.254.169.254/ferry/x`,
      `http://127.0.0.1:${trap.port}/ferry/${good.sha256}`,
      `https://127.0.0.1:${blobs.port}/ferry/${good.sha256}`,
      `http://localhost:${blobs.port}/ferry/${good.sha256}`,
      `http://[::1]:${blobs.port}/ferry/${good.sha256}`,
      `http://127.0.0.1:${blobs.port}/ferry-other/${good.sha256}`,
      `http://127.0.0.1:${blobs.port}/ferry/%2e%2e/secrets`,
      `http://127.0.0.1:${blobs.port}/Ferry/${good.sha256}`,
    ];
    for (const url of refused) {
      const error = await refusal(await post(agent, '/v1/land', { dir: 'data', files: [good, { ...good, path: 'evil.txt', url }] }));
      assert.equal(error.type, 'UrlNotAllowed', url);
      assert.ok(!/meta-data|security-credentials|v2\/credentials|secrets/.test(error.message), `only the origin is named: ${error.message}`);
    }
    assert.deepEqual(trap.hits, []);
    assert.deepEqual(blobs.hits, [], 'a request with one bad URL fetches none of the good ones either');
    assert.deepEqual(listTree(root), []);
  });

  it('does not follow a blob server redirect to another host', async (t: TestContext) => {
    const { agent, root, blobs, trap } = await setup(t);
    const body = Buffer.from('payload');
    const target = trap.serve('/latest/meta-data/', body);
    const url = blobs.redirect(`/ferry/${sha256(body)}`, target);
    const response = await post(agent, '/v1/land', { dir: 'data', files: [{ path: 'x.txt', size: body.length, mode: 0o644, sha256: sha256(body), url }] });
    const events = (await response.text()).trim().split('\n').map((line) => JSON.parse(line) as LandStreamEvent);
    const last = events.at(-1) as AgentError;
    assert.equal(last.type, 'error');
    assert.equal(last.error.type, 'BlobDownloadFailed');
    assert.deepEqual(trap.hits, [], 'the redirect target was never contacted');
    assert.deepEqual(listTree(root).filter((e) => e.endsWith(':f')), [], 'no file was written under the root');
  });
});

describe('source trees with links, devices and deep folders', () => {
  it('hard links sync as plain files, links inside are handled, fifos, sockets and devices are skipped without blocking', async (t: TestContext) => {
    const stack = await getStack();
    const source = path.join(work, 'links-source');
    await writeTree(source, { 'real.txt': 'real\n', 'sub/inner.txt': 'inner\n' });
    await link(path.join(source, 'real.txt'), path.join(source, 'hard.txt'));
    await symlink('real.txt', path.join(source, 'alias.txt'));
    await symlink('sub', path.join(source, 'sub-link'));
    await symlink('missing.txt', path.join(source, 'dangling'));
    await execFileAsync('mkfifo', [path.join(source, 'fifo')]);
    const socketServer = createNetServer();
    await new Promise<void>((resolve) => socketServer.listen(path.join(source, 'socket'), resolve));
    t.after(() => new Promise<void>((resolve) => socketServer.close(() => resolve())));
    // Device nodes need CAP_MKNOD; where the test cannot make one it says so instead of pretending.
    const device = await execFileAsync('mknod', [path.join(source, 'null-device'), 'c', '1', '3']).then(() => true, () => false);
    if (!device) t.diagnostic('mknod is not permitted here: the device case is covered by the fifo and socket');

    const { snapshotSource } = createLocalSourceActivities({ blobs: stack.blobs });
    const started = Date.now();
    const snapshot = (await activityEnvironment().run(snapshotSource, { path: source })) as SnapshotSourceResult;
    const ms = Date.now() - started;
    const manifest = await stack.blobs.getManifest(snapshot.manifestDigest);
    assert.deepEqual(
      manifest.files.map((f) => [f.path, f.sha256]),
      [
        ['alias.txt', sha256('real\n')],
        ['hard.txt', sha256('real\n')],
        ['real.txt', sha256('real\n')],
        ['sub/inner.txt', sha256('inner\n')],
      ],
    );
    const skipped = Object.fromEntries(snapshot.skipped.map((s) => [s.path, s.reason]));
    assert.match(skipped['fifo'] ?? '', /not a regular file/);
    assert.match(skipped['socket'] ?? '', /not a regular file/);
    if (device) assert.match(skipped['null-device'] ?? '', /not a regular file/);
    assert.match(skipped['sub-link'] ?? '', /symlink to a directory/);
    assert.deepEqual(snapshot.linksSkipped.first, [{ path: 'dangling', target: 'missing.txt', why: 'dangling' }]);
    t.diagnostic(`figures: the snapshot beside a fifo, a socket${device ? ' and a device' : ''} took ${ms} ms`);
  });

  it('a file swapped for a link to an outside file while the snapshot reads is never read through it: retryable FileChangedDuringRead', async (t: TestContext) => {
    const stack = await getStack();
    const source = path.join(work, 'swap-source');
    const outside = path.join(work, 'swap-outside');
    const secret = seededBytes(9 << 20, 41);
    // Two large files are read first (two at a time), so the third is listed but not yet opened when the first heartbeat comes.
    await writeTree(source, { 'a-first.bin': seededBytes(16 << 20, 42), 'a-second.bin': seededBytes(16 << 20, 43), 'z-target.bin': seededBytes(9 << 20, 44) });
    await writeTree(outside, { 'secret.bin': secret });
    const environment = activityEnvironment();
    let swapped = false;
    // The mock calls this inside the activity's heartbeat, after the folder was listed and before z-target.bin is opened.
    environment.on('heartbeat', () => {
      if (swapped) return;
      swapped = true;
      rmSync(path.join(source, 'z-target.bin'));
      symlinkSync(path.join(outside, 'secret.bin'), path.join(source, 'z-target.bin'));
    });
    const { snapshotSource } = createLocalSourceActivities({ blobs: stack.blobs });
    await assert.rejects(environment.run(snapshotSource, { path: source }) as Promise<SnapshotSourceResult>, (err: unknown) => {
      assert.ok(err instanceof ApplicationFailure);
      assert.equal(err.type, 'FileChangedDuringRead');
      assert.equal(err.nonRetryable, false);
      assert.match(err.message, /"z-target\.bin" was replaced by a symlink after the folder was listed/);
      return true;
    });
    assert.ok(swapped);
    // The retry lists the link and leaves it out (policy skip); the outside bytes are nowhere in the store.
    const retried = (await activityEnvironment().run(snapshotSource, { path: source })) as SnapshotSourceResult;
    assert.deepEqual(retried.linksSkipped.first.map((l) => l.path), ['z-target.bin']);
    const entries = (await stack.blobs.getManifest(retried.manifestDigest)).files;
    assert.deepEqual(entries.map((e) => e.path), ['a-first.bin', 'a-second.bin']);
    assert.ok(!entries.some((e) => e.sha256 === sha256(secret)));
    assert.equal((await stack.blobs.findStoredBlobs(chunksOf(secret).map((chunk) => sha256(chunk)))).size, 0, 'no chunk of the outside file is stored, in a pack or alone');
    t.diagnostic('the swap came at the first heartbeat: the attempt failed before the link was opened');
  });

  it('the hashing thread opens nothing through a link swapped in after listing: not the file itself, nor a folder on its path', async () => {
    const source = path.join(work, 'swap-small');
    const outside = path.join(work, 'swap-small-outside');
    await writeTree(source, { 'file.txt': 'listed\n', 'd/inner.txt': 'listed inner\n' });
    await writeTree(outside, { 'secret.txt': 'outside\n', 'inner.txt': 'outside inner\n' });
    const top = listDirectory({ dir: source });
    const inner = listDirectory({ dir: path.join(source, 'd') });
    const signatureOf = (listing: typeof top, name: string) => listing.signatures[listing.names.indexOf(name)];
    // After listing: the file becomes a link to an outside file, and its sibling folder a link to an outside folder with a same-name file.
    rmSync(path.join(source, 'file.txt'));
    symlinkSync(path.join(outside, 'secret.txt'), path.join(source, 'file.txt'));
    rmSync(path.join(source, 'd'), { recursive: true });
    symlinkSync(outside, path.join(source, 'd'));
    const hashed = hashFiles({ paths: [path.join(source, 'file.txt'), path.join(source, 'd', 'inner.txt')], signatures: [signatureOf(top, 'file.txt'), signatureOf(inner, 'inner.txt')] });
    assert.deepEqual([...hashed.outcomes], [ReadOutcome.Replaced, ReadOutcome.Replaced]);
    assert.deepEqual(hashed.details, ['was replaced by a symlink', 'was replaced by another file']);
    assert.ok(hashed.digests.every((byte) => byte === 0), 'no digest of anything was made');
  });

  it(`a ${DEEP_LEVELS}-level source tree is cut at ${MAX_PATH_DEPTH} levels, and its shallow file is snapshotted`, async (t: TestContext) => {
    const stack = await getStack();
    const source = path.join(work, 'deep-source');
    await writeTree(source, { 'top.txt': 'top\n' });
    writeDeepTree(source, DEEP_LEVELS);
    const { snapshotSource } = createLocalSourceActivities({ blobs: stack.blobs });
    const rssBefore = process.memoryUsage().rss;
    const started = Date.now();
    const snapshot = (await activityEnvironment().run(snapshotSource, { path: source })) as SnapshotSourceResult;
    const ms = Date.now() - started;
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    assert.equal(snapshot.filesTotal, 1);
    assert.equal(snapshot.skippedTotal, 1);
    assert.match(snapshot.skipped[0].reason, new RegExp(`deeper than ${MAX_PATH_DEPTH} levels`));
    assert.equal(snapshot.skipped[0].path.split('/').length, MAX_PATH_DEPTH + 1, 'the walk stopped one level past the limit');
    t.diagnostic(`figures: snapshot of a ${DEEP_LEVELS}-level tree took ${ms} ms, RSS growth ${(rssGrowth / 1e6).toFixed(1)} MB`);
  });
});

describe('syncWorkflow to the local agent with hostile trees', () => {
  async function sync(stack: TestStack, sessionId: string, source: string): Promise<{ result: Promise<SyncResult> }> {
    const handle = await stack.client.workflow.start('syncWorkflow', { taskQueue: stack.config.temporal.taskQueue, workflowId: `hostile-${sessionId}-${randomUUID()}`, args: [{ sessionId, source: { path: source } }] });
    return { result: resultOf<SyncResult>(handle) };
  }

  it('hostile names and NFC/NFD twins arrive intact with the right hashes, and nothing in them runs', async () => {
    const stack = await getStack();
    const source = path.join(work, 'hostile-names');
    const nfc = 'café.txt'.normalize('NFC');
    const nfd = 'café.txt'.normalize('NFD');
    const files: Record<string, string> = {
      'with space.txt': 'space',
      "it's \"quoted\".txt": 'quotes',
      '$(touch pwned).txt': 'substitution',
      '`touch pwned2`': 'backticks',
      ';touch pwned3': 'semicolon',
      'line\nbreak.txt': 'newline',
      '-rf': 'dash',
      '--help': 'double dash',
      'dir with $(id)/-n': 'nested',
      [nfc]: 'composed',
      [nfd]: 'decomposed',
      [`ünïcödé/${'データ'.normalize('NFD')}.csv`]: 'unicode',
    };
    await writeTree(source, files);
    const result = await (await sync(stack, 'hostile-names', source)).result;
    assert.equal(result.verified, true);
    assert.equal(result.filesVerified, Object.keys(files).length);
    const landed = path.join(stack.agentRoot, sessionRoot('hostile-names'), 'data');
    assert.deepEqual(await treeHashes(landed), await treeHashes(source));
    for (const [name, body] of Object.entries(files)) assert.equal(await readFile(path.join(landed, name), 'utf8'), body, JSON.stringify(name));
    const names = await readdir(landed);
    assert.ok(names.includes(nfc) && names.includes(nfd), 'both normal forms are distinct files on the target');
    assertNothingExecuted([stack.agentRoot, source], [process.cwd(), stack.dir, os.tmpdir(), os.homedir()]);
  });

  it(`a stored manifest with ////etc/x, backslashes or a ${DEEP_LEVELS}-level path is refused before the agent sees it, with a bounded message`, async () => {
    const stack = await getStack();
    const activities = createSessionActivities({ blobs: stack.blobs, targets: activityDepsFromConfig(stack.config).targets });
    for (const hostile of ['////etc/x', '..\\..\\x', `${deepPath()}/x`]) {
      const ref = await stack.blobs.putManifest(createManifest([{ path: hostile, size: 1, mode: 0o644, sha256: sha256('x') }]));
      await assert.rejects(
        activityEnvironment().run(activities.landManifest, { sessionId: 'stored-hostile', target: { kind: 'local' }, dest: 'data', manifestDigest: ref.manifestDigest }),
        (err: unknown) => {
          assert.ok(err instanceof ApplicationFailure, String(err));
          assert.equal(err.type, 'UnsafePath');
          assert.equal(err.nonRetryable, true);
          assert.ok(err.message.includes(quotePath(hostile)), err.message.slice(0, 300));
          assert.ok(err.message.length < 1_000, `${err.message.length} characters`);
          return true;
        },
      );
    }
    assert.ok(!listTree(stack.agentRoot, 2).some((entry) => entry.startsWith(`${sessionRoot('stored-hostile')}:`)), 'the agent was never asked');
  });

  it('a folder replaced by a symlink to outside between syncs is refused with UnsafePath; the outside is untouched', async () => {
    const stack = await getStack();
    const source = path.join(work, 'dir-then-link');
    await writeTree(source, { 'd/one.txt': 'one\n' });
    assert.equal((await (await sync(stack, 'dir-then-link', source)).result).verified, true);
    const outside = path.join(work, 'dir-then-link-outside');
    await mkdir(outside);
    await writeFile(path.join(outside, 'precious.txt'), 'precious\n');
    const landedDir = path.join(stack.agentRoot, sessionRoot('dir-then-link'), 'data', 'd');
    // What user code in the session could do: the folder becomes a same-name symlink.
    await rename(landedDir, `${landedDir}.moved`);
    await symlink(outside, landedDir);
    await writeFile(path.join(source, 'd', 'two.txt'), 'two\n');
    await assert.rejects((await sync(stack, 'dir-then-link', source)).result, (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure);
      assert.equal(err.cause.type, 'UnsafePath');
      assert.match(err.cause.message, /"sessions\/dir-then-link\/data\/d" is a symlink/);
      return true;
    });
    assert.deepEqual(await readdir(outside), ['precious.txt']);
    assert.ok((await lstat(landedDir)).isSymbolicLink());
  });

  // 25,000, not 100,000: creating and landing a file costs about 0.3 ms on this ext4 under load, and the count the
  // listing batches must carry is proven by agentMemory's 200,000-file listing; the benchmark snapshots 100,000.
  it('25,000 empty files over 25 folders sync and verify', { timeout: 900_000 }, async (t: TestContext) => {
    const stack = await getStack();
    const source = path.join(work, 'many-empty');
    const writeStarted = Date.now();
    for (let folder = 0; folder < 25; folder++) {
      const dir = path.join(source, `f${String(folder).padStart(3, '0')}`);
      mkdirSync(dir, { recursive: true });
      execFileSync('touch', Array.from({ length: 1_000 }, (_, i) => `e${i}`), { cwd: dir });
    }
    const writeMs = Date.now() - writeStarted;
    const started = Date.now();
    const result = await (await sync(stack, 'many-empty', source)).result;
    const ms = Date.now() - started;
    assert.equal(result.verified, true);
    assert.equal(result.filesTotal, 25_000);
    assert.equal(result.filesVerified, 25_000);
    assert.equal(result.bytesTotal, 0);
    assert.ok(result.blobsUploaded <= 1, 'one empty blob at most');
    const landed = path.join(stack.agentRoot, sessionRoot('many-empty'), 'data');
    assert.equal((await readdir(path.join(landed, 'f024'))).length, 1_000);
    const steps = Object.entries(result.durationsMs).map(([step, stepMs]) => `${step} ${(stepMs / 1000).toFixed(1)} s`).join(', ');
    t.diagnostic(`figures: writing the tree ${(writeMs / 1000).toFixed(1)} s; syncWorkflow of 25,000 empty files ${(ms / 1000).toFixed(1)} s (${steps})`);
    await rm(source, { recursive: true, force: true });
    await rm(landed, { recursive: true, force: true });
  });
});

describe('pipeline execute with 50 MB of stdout', () => {
  it('the result keeps 4 KB tails, the full log is in S3 at full size, and the exported history stays small', { timeout: 300_000 }, async (t: TestContext) => {
    const stack = await getStack();
    const pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
    const { workflowId } = await pipelines.start({ sessionId: `chatty-${randomUUID().slice(0, 8)}`, inputs: [], stages: ['coder'], stageIdleTimeout: '5m' });
    const bytes = 50 * 1024 * 1024;
    const started = Date.now();
    const result = await pipelines.execute(workflowId, { language: 'bash', code: `head -c ${bytes} /dev/zero | tr '\\0' x; printf END; printf 'err-end' >&2` });
    const ms = Date.now() - started;
    assert.equal(result.exitCode, 0);
    assert.equal(result.stdoutBytes, bytes + 3);
    assert.ok(Buffer.byteLength(result.stdoutTail) <= 4096, `${Buffer.byteLength(result.stdoutTail)} bytes of tail`);
    assert.ok(result.stdoutTail.endsWith('xxxEND'));
    assert.equal(result.stderrTail, 'err-end');
    const [log] = await stack.blobs.listKeys(result.logKey);
    assert.deepEqual(log, { key: result.logKey, size: bytes + 3 }, 'the full stdout is in S3');
    await pipelines.finishStage(workflowId);
    await pipelines.result(workflowId);

    const temporalCli = resolveTool('temporal', repoRoot());
    const { stdout: history } = await execFileAsync(temporalCli, ['workflow', 'show', '--address', stack.config.temporal.address, '-w', workflowId, '--output', 'json'], { maxBuffer: 256 << 20 });
    const events = (JSON.parse(history) as { events: unknown[] }).events;
    assert.ok(events.length > 0);
    assert.ok(history.length < 200_000, `history export is ${history.length} bytes`);
    t.diagnostic(`figures: 50 MiB of stdout executed and stored in ${(ms / 1000).toFixed(1)} s; tail ${Buffer.byteLength(result.stdoutTail)} bytes; S3 log ${log.size} bytes; exported history ${history.length} bytes in ${events.length} events`);
  });
});

describe('workflow inputs of the wrong shape from the temporal CLI', () => {
  const cases: { workflowType: string; label: string; input?: string; problem: RegExp }[] = [
    { workflowType: 'syncWorkflow', label: 'no input at all', problem: /invalid sync input: input must be a JSON object/ },
    { workflowType: 'syncWorkflow', label: 'a string', input: '"sync this"', problem: /input must be a JSON object/ },
    { workflowType: 'syncWorkflow', label: 'hostile dest and target', input: '{"sessionId":"ok","source":{"path":"/tmp"},"dest":"../../etc","target":{"kind":"../ecs"}}', problem: /dest "\.\.\/\.\.\/etc": contains "\.\."; target\.kind "\.\.\/ecs" must be a target kind/ },
    { workflowType: 'pipelineWorkflow', label: 'null', input: 'null', problem: /invalid pipeline input: input must be a JSON object/ },
    { workflowType: 'pipelineWorkflow', label: 'fields of the wrong types', input: '{"sessionId":"../x","inputs":"data","stages":[],"stageIdleTimeout":5,"maxHistoryEvents":"many"}', problem: /sessionId "\.\.\/x" must be .*; inputs must be an array; stages must be a non-empty array of names; stageIdleTimeout 5 must be a duration.*; maxHistoryEvents must be a whole number/ },
    { workflowType: 'trainingWorkflow', label: 'a number', input: '42', problem: /invalid training input: input must be a JSON object/ },
    { workflowType: 'trainingWorkflow', label: 'fields of the wrong types', input: '{"project":"here","target":"shell:/srv","command":"python train.py","env":{"FERRY_TOKEN":"x","A":1}}', problem: /project\.path must be a non-empty string.*; target must be an object like \{"kind":"local"\}.*; command must be a non-empty list of strings.*; env name FERRY_TOKEN: FERRY_\* is reserved; env A must be a string/ },
  ];

  it('each fails at once with InvalidInput naming the problem: no stack trace, no failed workflow task', { timeout: 300_000 }, async () => {
    const stack = await getStack();
    const temporalCli = resolveTool('temporal', repoRoot());
    for (const { workflowType, label, input, problem } of cases) {
      const workflowId = `wrong-shape-${randomUUID()}`;
      await execFileAsync(temporalCli, [
        'workflow', 'start', '--address', stack.config.temporal.address, '--task-queue', stack.config.temporal.taskQueue,
        '--type', workflowType, '--workflow-id', workflowId, ...(input === undefined ? [] : ['--input', input]),
      ]);
      const handle = stack.client.workflow.getHandle(workflowId);
      await assert.rejects(handle.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError, `${workflowType} ${label}`);
        assert.ok(err.cause instanceof ApplicationFailure, `${workflowType} ${label}`);
        assert.equal(err.cause.type, 'InvalidInput', `${workflowType} ${label}`);
        assert.equal(err.cause.nonRetryable, true);
        assert.match(err.cause.message, problem, `${workflowType} ${label}`);
        assert.doesNotMatch(err.cause.message, /TypeError|Cannot read prop|\n\s+at /, `${workflowType} ${label}`);
        return true;
      });
      const { events } = await handle.fetchHistory();
      const types = (events ?? []).map((e) => e.eventType);
      assert.ok(!types.includes(temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED), `${workflowType} ${label}: no workflow task failed`);
      assert.ok(!types.includes(temporal.api.enums.v1.EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED), `${workflowType} ${label}: no activity ran`);
    }
  });
});

describe('targets a driver refuses, from the temporal CLI', () => {
  const cases: { workflowType: string; label: string; input: string; problem: RegExp }[] = [
    { workflowType: 'syncWorkflow', label: 'a shell target with a relative root', input: '{"sessionId":"ok","source":{"path":"/tmp"},"target":{"kind":"shell","root":"relative/dir"}}', problem: /invalid shell target: shell target root "relative\/dir" must be an absolute path/ },
    { workflowType: 'pipelineWorkflow', label: 'an unknown kind', input: '{"sessionId":"ok","target":{"kind":"k8s"}}', problem: /unknown target kind "k8s"; known kinds: local, .*ssm.*ecs/ },
    { workflowType: 'trainingWorkflow', label: 'an ssm target with a bad instance id and root', input: '{"project":{"path":"/tmp"},"target":{"kind":"ssm","instanceId":"web-1","root":"/"},"command":["true"]}', problem: /instanceId "web-1" is not an instance id.*; ssm target root "\/" must not be \// },
    { workflowType: 'syncWorkflow', label: 'a kind whose sessions end with the workflow', input: '{"sessionId":"ok","source":{"path":"/tmp"},"target":{"kind":"ecs"}}', problem: /a sync cannot target kind ecs/ },
  ];

  it('each fails at provisionSession, the first step, with InvalidInput naming the kind and the problem; nothing else runs', { timeout: 300_000 }, async () => {
    const stack = await getStack();
    const temporalCli = resolveTool('temporal', repoRoot());
    for (const { workflowType, label, input, problem } of cases) {
      const workflowId = `refused-target-${randomUUID()}`;
      await execFileAsync(temporalCli, [
        'workflow', 'start', '--address', stack.config.temporal.address, '--task-queue', stack.config.temporal.taskQueue,
        '--type', workflowType, '--workflow-id', workflowId, '--input', input,
      ]);
      const handle = stack.client.workflow.getHandle(workflowId);
      await assert.rejects(handle.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure, `${workflowType} ${label}`);
        assert.equal(err.cause.type, 'InvalidInput', `${workflowType} ${label}`);
        assert.match(err.cause.message, /^provisionSession failed: /, `${workflowType} ${label}`);
        assert.match(err.cause.message, problem, `${workflowType} ${label}`);
        return true;
      });
      const { events } = await handle.fetchHistory();
      const scheduled = (events ?? []).flatMap((e) => (e.activityTaskScheduledEventAttributes ? [e.activityTaskScheduledEventAttributes.activityType?.name] : []));
      assert.equal(scheduled[0], 'provisionSession', `${workflowType} ${label}: refused at the first step`);
      assert.ok(!scheduled.includes('snapshotSource') && !scheduled.includes('landManifest'), `${workflowType} ${label}: nothing was snapshotted or landed (${scheduled.join(', ')})`);
    }
  });
});

describe('workflow arguments only the workflow itself should pass', () => {
  /**
   * Starts `workflowType` from the CLI with `inputs` and waits for the first of: the run closing, or a workflow task
   * failing (which the SDK would retry forever); then terminates the run if it still runs.
   */
  async function outcomeOf(stack: TestStack, workflowType: string, inputs: string[]) {
    const workflowId = `internal-arg-${randomUUID()}`;
    await execFileAsync(resolveTool('temporal', repoRoot()), [
      'workflow', 'start', '--address', stack.config.temporal.address, '--task-queue', stack.config.temporal.taskQueue,
      '--type', workflowType, '--workflow-id', workflowId, ...inputs.flatMap((input) => ['--input', input]),
    ]);
    const handle = stack.client.workflow.getHandle(workflowId);
    const settled = handle.result().then(() => undefined, (err: unknown) => err);
    const aTaskFailed = async () => ((await handle.fetchHistory()).events ?? []).some((e) => e.eventType === temporal.api.enums.v1.EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED);
    await waitFor('the run to close or a workflow task to fail', async () => ((await handle.describe()).status.name !== 'RUNNING' || (await aTaskFailed()) ? true : undefined), 120_000);
    const taskFailed = await aTaskFailed();
    await handle.terminate('test done').catch(() => undefined);
    return { outcome: await settled, taskFailed };
  }

  const invalidInput = (outcome: unknown) => outcome instanceof WorkflowFailedError && outcome.cause instanceof ApplicationFailure && outcome.cause.type === 'InvalidInput';

  it('a pipelineWorkflow carry-over argument of the wrong shape fails with InvalidInput', async () => {
    const stack = await getStack();
    // {"state":5} threw a TypeError on every workflow task; "carry" silently dropped the inputs.
    for (const [carried, problem] of [['{"state":5}', /state must be an object/], ['"carry"', /must be a JSON object .*got a string/]] as const) {
      const { outcome, taskFailed } = await outcomeOf(stack, 'pipelineWorkflow', ['{"sessionId":"carried","stages":["coder"],"stageIdleTimeout":"30s"}', carried]);
      assert.equal(taskFailed, false, `${carried}: no workflow task failed with a TypeError`);
      assert.ok(invalidInput(outcome), `${carried}: outcome: ${String(outcome)}`);
      const { message } = (outcome as WorkflowFailedError).cause!;
      assert.match(message, /^invalid pipeline carry-over \(second argument\): /);
      assert.match(message, problem);
      assert.doesNotMatch(message, /TypeError|Cannot create prop|\n\s+at /);
    }
  });

  it('a trainingWorkflow resume field sent by a caller fails with InvalidInput', async () => {
    const stack = await getStack();
    const project = path.join(work, 'resume-project');
    await writeTree(project, { 'train.py': 'print(1)\n' });
    const input = JSON.stringify({ project: { path: project }, target: { kind: 'shell', root: path.join(work, 'resume-target') }, command: ['true'], resume: 'garbage' });
    const { outcome, taskFailed } = await outcomeOf(stack, 'trainingWorkflow', [input]);
    assert.equal(taskFailed, false, 'no workflow task failed');
    assert.ok(invalidInput(outcome), `outcome: ${String(outcome)}`);
    const { message } = (outcome as WorkflowFailedError).cause!;
    assert.match(message, /invalid training input: resume must be an object/);
    assert.doesNotMatch(message, /TypeError|Cannot read prop|\n\s+at /);
  });
});

describe('presigned URLs from the blob store, against the real SeaweedFS', () => {
  it('are scoped to one key and one method, and expire in minutes', async (t: TestContext) => {
    const stack = await getStack();
    const first = Buffer.from('first blob');
    const second = Buffer.from('second blob');
    await stack.blobs.putVerified(stack.blobs.blobKey(sha256(first)), first, sha256(first));
    await stack.blobs.putVerified(stack.blobs.blobKey(sha256(second)), second, sha256(second));
    const url = new URL(await stack.blobs.presignBlobGet(sha256(first)));

    const ok = await fetch(url);
    assert.equal(ok.status, 200);
    assert.equal(Buffer.from(await ok.arrayBuffer()).toString(), 'first blob');

    const otherKey = new URL(url);
    otherKey.pathname = url.pathname.replace(sha256(first), sha256(second)).replace(`/${sha256(first).slice(0, 2)}/`, `/${sha256(second).slice(0, 2)}/`);
    assert.notEqual(otherKey.pathname, url.pathname);
    const swapped = await fetch(otherKey);
    assert.equal(swapped.status, 403, 'the signature does not cover another key');
    assert.match(await swapped.text(), /SignatureDoesNotMatch|AccessDenied/);

    const put = await fetch(url, { method: 'PUT', body: 'overwritten' });
    assert.equal(put.status, 403, 'a GET URL cannot write');
    await put.body?.cancel();
    assert.equal((await stack.blobs.getBlob(sha256(first))).toString(), 'first blob');

    const putUrl = new URL(await stack.blobs.presignPut('tmp/hostile/allowed'));
    const elsewhere = new URL(putUrl);
    elsewhere.pathname = putUrl.pathname.replace('allowed', 'elsewhere');
    const wrongPut = await fetch(elsewhere, { method: 'PUT', body: 'x' });
    assert.equal(wrongPut.status, 403, 'a PUT URL cannot write another key');
    await wrongPut.body?.cancel();
    assert.deepEqual(await stack.blobs.listKeys('tmp/hostile/'), []);

    const expires = Number(url.searchParams.get('X-Amz-Expires'));
    assert.equal(expires, stack.config.s3.presignExpirySeconds);
    assert.ok(expires >= 60 && expires <= 3600, `expires in ${expires} s`);
    assert.equal(putUrl.searchParams.get('X-Amz-Expires'), String(expires));

    // The store's lifetime is a setting; at 1 s a URL must stop working.
    const shortLived = new S3BlobStore({ ...createS3Clients(stack.config.s3), bucket: stack.config.s3.bucket, prefix: stack.config.s3.prefix, presignExpirySeconds: 1 });
    const brief = await shortLived.presignBlobGet(sha256(first));
    assert.equal(new URL(brief).searchParams.get('X-Amz-Expires'), '1');
    const fresh = await fetch(brief);
    assert.equal(fresh.status, 200);
    await fresh.body?.cancel();
    const expired = await waitFor('the 1 s URL to be refused once expired', async () => {
      const answer = await fetch(brief);
      if (answer.status !== 200) return answer;
      await answer.body?.cancel();
      return undefined;
    }, 30_000, 250);
    assert.equal(expired.status, 403, 'an expired URL is refused');
    const expiredText = await expired.text();
    assert.match(expiredText, /expired|AccessDenied/i);
    t.diagnostic(`figures: default presign lifetime ${expires} s; expired answer: ${expiredText.replace(/\s+/g, ' ').slice(0, 160)}`);
  });

  it('the local agent, allowed only the S3 endpoint, refuses presigned URLs moved to another host or port', async () => {
    const stack = await getStack();
    const body = Buffer.from('moved blob');
    await stack.blobs.putVerified(stack.blobs.blobKey(sha256(body)), body, sha256(body));
    const url = new URL(await stack.blobs.presignBlobGet(sha256(body)));
    const variants = [
      Object.assign(new URL(url), { hostname: 'localhost' }),
      Object.assign(new URL(url), { port: String(Number(url.port) + 1) }),
      Object.assign(new URL(url), { hostname: '169.254.169.254', port: '' }),
      Object.assign(new URL(url), { hostname: '169.254.170.2', port: '' }),
    ];
    const entry: ManifestEntry = { path: 'moved.txt', size: body.length, mode: 0o644, sha256: sha256(body) };
    for (const variant of variants) {
      const response = await fetch(`${stack.agent.url}/v1/land`, {
        method: 'POST',
        headers: { authorization: `Bearer ${stack.agentToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ dir: 'sessions/moved/data', files: [{ ...entry, url: variant.toString() }] }),
      });
      assert.equal(response.status, 400, variant.origin);
      const { error } = (await response.json()) as AgentError;
      assert.equal(error.type, 'UrlNotAllowed', variant.origin);
      assert.equal(error.url, variant.origin);
      assert.ok(!error.message.includes('X-Amz-Signature'), 'the credential part of the URL stays out of errors');
    }
    assert.ok(!existsSync(path.join(stack.agentRoot, 'sessions', 'moved')));
    // The unmodified URL is accepted: the refusals above are about the host, not the request.
    const accepted = await fetch(`${stack.agent.url}/v1/land`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.agentToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ dir: 'sessions/moved/data', files: [{ ...entry, url: url.toString() }] }),
    });
    assert.equal(accepted.status, 200);
    assert.match(await accepted.text(), /"type":"result"/);
    assert.equal(await readFile(path.join(stack.agentRoot, 'sessions', 'moved', 'data', 'moved.txt'), 'utf8'), 'moved blob');
  });
});
