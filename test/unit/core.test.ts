import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, resolveConfig, workflowUiUrl } from '../../core/config';
import { formatBytes, formatDurationMs, parseDurationMs } from '../../core/duration';
import { canonicalManifestJson, createManifest, entriesProblems, fileDirectoryConflicts, manifestProblems, type ManifestEntry } from '../../core/manifest';
import { MAX_PATH_DEPTH, assertSafeRelativePath, quotePath, unsafePathReason } from '../../core/paths';
import { normalizeSyncInput } from '../../core/sync';
import { buildTimeline, type HistoryEventSummary } from '../../core/timeline';
import { compareLanding, describeLandingProblems, entriesNotHeld, landingIsComplete } from '../../core/verify';

const sha = (c: string) => c.repeat(64);
const entry = (path: string, size = 1, hash = sha('a')): ManifestEntry => ({ path, size, mode: 0o644, sha256: hash });

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
  it('refuses very deep paths quickly', () => {
    const deep = Array.from({ length: 10_000 }, () => 'd').join('/');
    const started = process.hrtime.bigint();
    assert.match(unsafePathReason(deep) ?? '', new RegExp(`deeper than ${MAX_PATH_DEPTH}|longer than`));
    assert.ok(Number(process.hrtime.bigint() - started) / 1e6 < 50);
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
});

describe('core/config', () => {
  it('fills documented defaults', () => {
    const config = resolveConfig({});
    assert.equal(config.temporal.address, '127.0.0.1:7233');
    assert.equal(config.temporal.taskQueue, 'ferry');
    assert.equal(config.s3.bucket, 'ferry');
    assert.equal(config.s3.forcePathStyle, false);
    assert.equal(config.localAgent, undefined);
  });
  it('prefers the environment over stack settings', () => {
    const config = resolveConfig({ FERRY_TASK_QUEUE: 'env' }, { FERRY_TASK_QUEUE: 'stack', FERRY_S3_ENDPOINT: 'http://127.0.0.1:9000' });
    assert.equal(config.temporal.taskQueue, 'env');
    assert.equal(config.s3.forcePathStyle, true);
  });
  it('names the variable that is wrong', () => {
    assert.throws(() => resolveConfig({ FERRY_TEMPORAL_ADDRESS: 'nope' }), (err: unknown) => err instanceof ConfigError && err.variable === 'FERRY_TEMPORAL_ADDRESS');
    assert.throws(() => resolveConfig({ FERRY_S3_ACCESS_KEY_ID: 'x' }), /FERRY_S3_SECRET_ACCESS_KEY/);
    assert.throws(() => resolveConfig({ FERRY_LOCAL_AGENT_URL: 'http://127.0.0.1:1' }), /FERRY_LOCAL_AGENT_TOKEN/);
    assert.throws(() => resolveConfig({ FERRY_PRESIGN_EXPIRY_SECONDS: '86400' }), /FERRY_PRESIGN_EXPIRY_SECONDS/);
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
  });
});

describe('core/sync input', () => {
  it('fills defaults and rejects bad shapes with every problem named', () => {
    const ok = normalizeSyncInput({ sessionId: 's1', source: { path: '/tmp/x' } });
    assert.ok(ok.ok);
    assert.equal(ok.input.dest, 'data');
    assert.deepEqual(ok.input.target, { kind: 'local' });
    const bad = normalizeSyncInput({ sessionId: '../x', source: {}, dest: '/etc', target: { kind: 'mars' } });
    assert.ok(!bad.ok);
    assert.equal(bad.problems.length, 4);
    assert.ok(!normalizeSyncInput('nope').ok);
  });
});

describe('core/timeline', () => {
  const t0 = Date.parse('2026-01-01T06:31:02Z');
  const events: HistoryEventSummary[] = [
    { kind: 'workflowStarted', eventId: 1, timeMs: t0 },
    { kind: 'activityScheduled', eventId: 5, timeMs: t0 + 100, activityId: '1', activityType: 'snapshotSource' },
    { kind: 'activityStarted', eventId: 6, timeMs: t0 + 110, scheduledEventId: 5, attempt: 1 },
    { kind: 'activityClosed', eventId: 7, timeMs: t0 + 500, scheduledEventId: 5, status: 'completed' },
    // Five minutes with nothing scheduled: the seed's unexplained gap.
    { kind: 'activityScheduled', eventId: 11, timeMs: t0 + 300_500, activityId: '2', activityType: 'uploadBlobs' },
    // Retried twice: started (last attempt) long after scheduling.
    { kind: 'activityStarted', eventId: 12, timeMs: t0 + 340_500, scheduledEventId: 11, attempt: 3, lastFailure: { message: 'SlowDown', type: 'TargetUnavailable' } },
    { kind: 'activityClosed', eventId: 13, timeMs: t0 + 341_000, scheduledEventId: 11, status: 'completed' },
    { kind: 'activityScheduled', eventId: 17, timeMs: t0 + 341_100, activityId: '3', activityType: 'landManifest' },
    { kind: 'activityStarted', eventId: 18, timeMs: t0 + 341_200, scheduledEventId: 17, attempt: 1 },
    { kind: 'activityClosed', eventId: 19, timeMs: t0 + 342_000, scheduledEventId: 17, status: 'failed', failure: { message: 'boom', type: 'TargetUnavailable' } },
    { kind: 'workflowClosed', eventId: 23, timeMs: t0 + 342_100, status: 'failed', failure: { message: 'landManifest failed: boom' } },
  ];
  it('lists steps with attempts, waits and failures', () => {
    const timeline = buildTimeline(events, 30_000);
    assert.deepEqual(timeline.steps.map((s) => [s.name, s.status, s.attempts]), [
      ['snapshotSource', 'completed', 1],
      ['uploadBlobs', 'completed', 3],
      ['landManifest', 'failed', 1],
    ]);
    assert.equal(timeline.steps[1].waitMs, 40_000);
    assert.equal(timeline.steps[2].failure?.type, 'TargetUnavailable');
    assert.equal(timeline.status, 'failed');
    assert.deepEqual(timeline.retries, [{ step: 'uploadBlobs', attempts: 3, lastRetryFailure: { message: 'SlowDown', type: 'TargetUnavailable' } }]);
  });
  it('flags and attributes gaps over the threshold', () => {
    const timeline = buildTimeline(events, 30_000);
    assert.deepEqual(timeline.gaps.map((g) => [g.cause, g.beforeStep, g.durationMs]), [
      ['workflow-waiting', 'uploadBlobs', 300_000],
      ['retrying', 'uploadBlobs', 40_000],
    ]);
    assert.equal(buildTimeline(events, 600_000).gaps.length, 0);
  });
  it('attributes a step no worker picked up', () => {
    const pending: HistoryEventSummary[] = [
      { kind: 'workflowStarted', eventId: 1, timeMs: t0 },
      { kind: 'activityScheduled', eventId: 5, timeMs: t0 + 10, activityId: '1', activityType: 'snapshotSource' },
    ];
    const timeline = buildTimeline(pending, 30_000, t0 + 120_000);
    assert.equal(timeline.steps[0].status, 'scheduled');
    assert.equal(timeline.gaps[0].cause, 'waiting-for-worker');
  });
});
