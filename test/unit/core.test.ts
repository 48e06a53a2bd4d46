import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, resolveConfig, workflowUiUrl } from '../../core/config';
import { formatBytes, formatDurationMs, parseBytes, parseDurationMs } from '../../core/duration';
import { blobsOfEntry, canonicalManifestJson, canonicalManifestPieces, createManifest, entriesProblems, fileDirectoryConflicts, manifestProblems, type ManifestEntry } from '../../core/manifest';
import { MAX_PATH_DEPTH, assertSafeRelativePath, quotePath, unsafePathReason } from '../../core/paths';
import { inputRefProblem } from '../../core/pipeline';
import { normalizeSyncInput } from '../../core/sync';
import { normalizeTrainingInput } from '../../core/training';
import { compareLanding, describeLandingProblems, entriesNotHeld, landingIsComplete } from '../../core/verify';

const sha = (c: string) => c.repeat(64);
const entry = (path: string, size = 1, hash = sha('a')): ManifestEntry => ({ path, size, mode: 0o644, sha256: hash });
/** A link entry; its hash stands in for the text's (core checks shapes, the agent checks hashes). */
const link = (path: string, text: string): ManifestEntry => ({ path, size: Buffer.byteLength(text), mode: 0o777, sha256: sha('f'), link: text });

describe('core/paths', () => {
  it('accepts ordinary relative paths, including odd but harmless names', () => {
    for (const p of ['a', 'a/b/c.txt', 'with space/$(id)', "quote'd", '-leading-dash', 'ünïcödé/データ.csv', '...', '.hidden']) {
      assert.equal(unsafePathReason(p), undefined, p);
    }
  });
  it('refuses every way out of the root', () => {
    const cases: [string, RegExp][] = [
      ['../x', /\.\./],
      ['/etc/x', /absolute/],
      ['////etc/x', /absolute/],
      ['a/../../x', /\.\./],
      ['a\\..\\x', /backslash/],
      ['a/./b', /"\."/],
      ['a//b', /empty segment/],
      ['', /empty/],
      ['a\0b', /NUL/],
    ];
    for (const [p, reason] of cases) assert.match(unsafePathReason(p) ?? '', reason, p);
    assert.throws(() => assertSafeRelativePath('../x'), /unsafe path "..\/x"/);
  });
  it('refuses very deep paths, naming the depth or length', () => {
    const deep = Array.from({ length: 10_000 }, () => 'd').join('/');
    assert.match(unsafePathReason(deep) ?? '', new RegExp(`deeper than ${MAX_PATH_DEPTH}|longer than`));
  });
  it('quotes at most 200 characters of a path in messages, naming its length', () => {
    assert.equal(quotePath('a/b c'), '"a/b c"');
    assert.equal(quotePath(42), '42');
    assert.equal(quotePath(undefined), 'undefined');
    const deep = Array.from({ length: 10_000 }, () => 'd').join('/');
    assert.equal(quotePath(deep), `${JSON.stringify(deep.slice(0, 200))}… (19999 characters)`);
    assert.ok(entriesProblems([entry(deep)])[0].length < 300);
  });
});

describe('core/manifest', () => {
  it('canonical JSON is independent of entry order and extra fields', () => {
    const a = createManifest([entry('b'), entry('a')]);
    const b = { version: 1 as const, files: [{ ...entry('a'), extra: 1 } as ManifestEntry, entry('b')] };
    assert.equal(canonicalManifestJson(a), canonicalManifestJson(b));
    assert.equal(canonicalManifestJson(a), `{"version":1,"files":[{"path":"a","size":1,"mode":420,"sha256":"${sha('a')}"},{"path":"b","size":1,"mode":420,"sha256":"${sha('a')}"}]}`);
  });
  it('names unsafe, duplicate and malformed entries', () => {
    const problems = entriesProblems([entry('../x'), entry('ok'), entry('ok'), { path: 'm', size: -1, mode: 0o644, sha256: 'nothex' }]);
    assert.match(problems.join('\n'), /files\[0\]\.path "\.\.\/x"/);
    assert.match(problems.join('\n'), /files\[2\]\.path "ok": duplicate/);
    assert.match(problems.join('\n'), /files\[3\]\.size/);
    assert.match(problems.join('\n'), /files\[3\]\.sha256/);
    assert.deepEqual(manifestProblems({ version: 2, files: [] }), ['unsupported manifest version 2']);
  });
  it('finds paths that are both file and folder', () => {
    assert.deepEqual(fileDirectoryConflicts([entry('a'), entry('a/b')]), ['a']);
    assert.deepEqual(fileDirectoryConflicts([link('a', '/etc'), entry('a/passwd')]), ['a'], 'a link is a path like a file');
  });
  it('canonical JSON made in pieces is byte for byte what every stored manifest was named by', () => {
    // The one-string form manifests were stored under before, so their digests stay valid.
    const before = (files: ManifestEntry[]) =>
      JSON.stringify({
        version: 1,
        files: [...files]
          .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
          .map((f) => ({ path: f.path, size: f.size, mode: f.mode, sha256: f.sha256, ...(f.chunks ? { chunks: f.chunks.map((c) => ({ sha256: c.sha256, size: c.size })) } : {}) })),
      });
    const files = Array.from({ length: 3000 }, (_, i) => entry(`d${i % 7}/ünï "q" \\ \u2028 f${i}`, i, sha(String(i % 10))));
    files.push({ ...entry('chunked', 5), chunks: [{ sha256: sha('c'), size: 2 }, { sha256: sha('d'), size: 3 }] });
    const pieces = [...canonicalManifestPieces(createManifest(files))];
    assert.ok(pieces.length > 3, `${pieces.length} pieces`);
    assert.equal(pieces.join(''), before(files));
    assert.equal(canonicalManifestJson({ version: 1, files }), before(files), 'unsorted input is sorted');
  });
  it('a link entry carries its text after the hash, and is checked like a file', () => {
    const text = '../outside/ä';
    assert.equal(canonicalManifestJson(createManifest([link('l', text)])), `{"version":1,"files":[{"path":"l","size":13,"mode":511,"sha256":"${sha('f')}","link":${JSON.stringify(text)}}]}`);
    assert.deepEqual(entriesProblems([link('ok', text)]), []);
    const problems = entriesProblems([
      { ...link('size', text), size: 3 },
      { ...link('mode', text), mode: 0o644 },
      { ...link('chunks', text), chunks: [{ sha256: sha('a'), size: 13 }] },
      { ...link('empty', ''), size: 0 },
      { ...link('nul', 'a\0b'), size: 3 },
    ]).join('\n');
    assert.match(problems, /files\[0\]\.link is 13 bytes, not the entry's size 3/);
    assert.match(problems, /files\[1\]\.link entries must have mode 777/);
    assert.match(problems, /files\[2\]\.link entries have no chunks/);
    assert.match(problems, /files\[3\]\.link must be a non-empty string/);
    assert.match(problems, /files\[4\]\.link must be a non-empty string without NUL/);
    assert.deepEqual(blobsOfEntry(link('l', text)), [], 'a link has no blob');
  });
});

describe('core/verify', () => {
  it('classifies missing, short and mismatched files', () => {
    const expected = [entry('ok', 3), entry('gone', 3), entry('short', 10), entry('changed', 3)];
    const actual = [entry('ok', 3), entry('short', 4, sha('b')), entry('changed', 3, sha('c')), entry('extra', 1)];
    const comparison = compareLanding(expected, actual);
    assert.equal(comparison.verified, 1);
    assert.deepEqual(comparison.missing, ['gone']);
    assert.deepEqual(comparison.short.map((m) => m.path), ['short']);
    assert.deepEqual(comparison.mismatched.map((m) => m.path), ['changed']);
    assert.equal(landingIsComplete(comparison), false);
    assert.equal(describeLandingProblems(comparison), '1 missing ("gone"); 1 short ("short"); 1 with different content ("changed")');
    assert.deepEqual(entriesNotHeld(expected, actual).map((e) => e.path), ['gone', 'short', 'changed']);
  });
  it('a link is held only as a link with the same text, never as a file holding that text', () => {
    const expected = [link('same', 'x'), link('retargeted', 'x'), link('now-a-file', 'x'), entry('now-a-link', 1, sha('f'))];
    const actual = [link('same', 'x'), { ...link('retargeted', 'y') }, { ...link('now-a-file', 'x'), link: undefined, mode: 0o644 }, link('now-a-link', 'x')];
    const comparison = compareLanding(expected, actual);
    assert.equal(comparison.verified, 1);
    assert.deepEqual(comparison.mismatched.map((m) => m.path), ['retargeted', 'now-a-file', 'now-a-link']);
    assert.deepEqual(entriesNotHeld(expected, actual).map((e) => e.path), ['retargeted', 'now-a-file', 'now-a-link']);
  });
});

describe('core/config', () => {
  it('fills documented defaults', () => {
    const config = resolveConfig({});
    assert.equal(config.temporal.address, '127.0.0.1:7233');
    assert.equal(config.temporal.taskQueue, 'ferry');
    assert.equal(config.s3.bucket, 'ferry');
    assert.equal(config.s3.forcePathStyle, false);
    assert.equal(config.settings('FERRY_LOCAL_AGENT_URL'), undefined);
  });
  it('prefers the environment over stack settings', () => {
    const config = resolveConfig({ FERRY_TASK_QUEUE: 'env' }, { FERRY_TASK_QUEUE: 'stack', FERRY_S3_ENDPOINT: 'http://127.0.0.1:9000' });
    assert.equal(config.temporal.taskQueue, 'env');
    assert.equal(config.s3.forcePathStyle, true);
  });
  it('names the variable that is wrong', () => {
    assert.throws(() => resolveConfig({ FERRY_TEMPORAL_ADDRESS: 'nope' }), (err: unknown) => err instanceof ConfigError && err.variable === 'FERRY_TEMPORAL_ADDRESS');
    assert.throws(() => resolveConfig({ FERRY_S3_ACCESS_KEY_ID: 'x' }), /FERRY_S3_SECRET_ACCESS_KEY/);
    assert.throws(() => resolveConfig({ FERRY_PRESIGN_EXPIRY_SECONDS: '86400' }), /FERRY_PRESIGN_EXPIRY_SECONDS/);
  });
  it('reads the size warning with units, naming the variable when it cannot', () => {
    assert.equal(resolveConfig({}).sync.sizeWarningBytes, 2 ** 30);
    assert.equal(resolveConfig({ FERRY_SIZE_WARNING: '500MB' }).sync.sizeWarningBytes, 500e6);
    assert.equal(resolveConfig({ FERRY_SIZE_WARNING: '2 GiB' }).sync.sizeWarningBytes, 2 * 2 ** 30);
    assert.throws(() => resolveConfig({ FERRY_SIZE_WARNING: 'big' }), (err: unknown) => err instanceof ConfigError && err.variable === 'FERRY_SIZE_WARNING' && /500MB/.test(err.message));
  });
  it('links to a workflow in the Web UI', () => {
    assert.equal(workflowUiUrl(resolveConfig({}), 'sync-a-1', 'run'), 'http://127.0.0.1:8233/namespaces/default/workflows/sync-a-1/run/history');
  });
});

describe('core/duration', () => {
  it('parses and formats', () => {
    assert.equal(parseDurationMs('30s'), 30_000);
    assert.equal(parseDurationMs('1h30m'), 5_400_000);
    assert.equal(parseDurationMs('250ms'), 250);
    assert.equal(parseDurationMs('2'), 2000);
    assert.throws(() => parseDurationMs('soon'), /invalid duration/);
    assert.equal(formatDurationMs(75_000), '1m15s');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(parseBytes('1536'), 1536);
    assert.equal(parseBytes('1.5KiB'), 1536);
    assert.equal(parseBytes('3 gb'), 3e9);
    assert.throws(() => parseBytes('3 parsecs'), /invalid size "3 parsecs"/);
    assert.throws(() => parseBytes('-1MB'), /invalid size/);
  });
});

describe('core/sync input', () => {
  it('fills defaults and rejects bad shapes with every problem named', () => {
    const ok = normalizeSyncInput({ sessionId: 's1', source: { path: '/tmp/x' } });
    assert.ok(ok.ok);
    assert.equal(ok.input.dest, 'data');
    assert.deepEqual(ok.input.target, { kind: 'local' });
    const bad = normalizeSyncInput({ sessionId: '../x', source: {}, dest: '/etc', target: { kind: 'Mars!' } });
    assert.ok(!bad.ok);
    assert.equal(bad.problems.length, 4);
    assert.ok(!normalizeSyncInput('nope').ok);
  });
  it('defaults the link policy to skip and the size warning to 1 GiB, and names bad ones', () => {
    const ok = normalizeSyncInput({ sessionId: 's1', source: { path: '/tmp/x' } });
    assert.ok(ok.ok);
    assert.deepEqual([ok.input.links, ok.input.sizeWarningBytes, ok.input.dryRun], ['skip', 2 ** 30, false]);
    const chosen = normalizeSyncInput({ sessionId: 's1', source: { path: '/tmp/x' }, links: 'copy', sizeWarningBytes: 10, dryRun: true });
    assert.ok(chosen.ok);
    assert.deepEqual([chosen.input.links, chosen.input.sizeWarningBytes, chosen.input.dryRun], ['copy', 10, true]);
    const bad = normalizeSyncInput({ sessionId: 's1', source: { path: '/tmp/x' }, links: 'maybe', sizeWarningBytes: -1, dryRun: 'yes' });
    assert.ok(!bad.ok);
    assert.deepEqual(bad.problems, ['links "maybe" must be one of "skip", "follow", "copy", "error"', 'sizeWarningBytes -1 must be a whole number of bytes', 'dryRun must be true or false']);
  });
  it('pipeline path inputs and training projects take a link policy', () => {
    assert.equal(inputRefProblem({ path: '/data', links: 'follow' }, 'inputs[0]'), undefined);
    assert.equal(inputRefProblem({ path: '/data', links: 'sometimes' }, 'inputs[0]'), 'inputs[0].links "sometimes" must be one of "skip", "follow", "copy", "error"');
    assert.equal(inputRefProblem({ s3: 's3://bucket/p/', links: 'copy' }, 'inputs[0]'), 'inputs[0].links applies to "path" inputs only');
    const training = { project: { path: '/p', links: 'copy' }, target: { kind: 'shell', root: '/tmp/t' }, command: ['true'] };
    const normalized = normalizeTrainingInput(training, 'run-1');
    assert.ok(normalized.ok);
    assert.equal(normalized.input.project.links, 'copy');
    const refused = normalizeTrainingInput({ ...training, project: { path: '/p', links: 'all' } }, 'run-1');
    assert.ok(!refused.ok);
    assert.match(refused.problems.join(), /project\.links "all" must be one of/);
  });
});

