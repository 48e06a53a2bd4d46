/**
 * The test command's own parts, run for real: a test file whose dependency
 * is missing, under `node --test` with and without CI=true, judged by the
 * same TAP reading and rules scripts/test.sh applies to every suite; and the
 * worker's logs going to a file instead of the console.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Runtime } from '@temporalio/worker';
import { repoRoot } from '../../client/tools';
import { readTap, suiteProblems, type SuiteRun, type TapReport } from '../support/suiteCheck';
import { installTestRuntime, logDirOf, testLogDir } from '../support/testLogs';

let work: string;
let fixture: string;

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-test-command-'));
  fixture = path.join(work, 'needs.test.js');
  const requirements = JSON.stringify(require.resolve('../support/requirements'));
  await writeFile(
    fixture,
    `const { describe, it } = require('node:test');
const { requireOrSkip, requireOrSkipTest } = require(${requirements});
describe('browser pages', { skip: requireOrSkip('Chromium', 'no Chromium at /nowhere') }, () => {
  it('renders', () => {});
});
it('mounts a disk', (t) => {
  if (!requireOrSkipTest(t, 'the right to mount a tmpfs', 'mount: must be superuser')) return;
});
it('needs nothing', () => {});
`,
  );
});

after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

/** Runs the fixture as scripts/test.sh runs a suite, with TAP output. */
function runFixture(ci: boolean): Promise<{ status: number; report: TapReport }> {
  // Without NODE_TEST_CONTEXT, which would make the inner run report to this one instead of printing TAP.
  const { NODE_TEST_CONTEXT: _inner, ...inherited } = process.env;
  const env: NodeJS.ProcessEnv = { ...inherited, CI: ci ? 'true' : '' };
  return new Promise((resolve) => {
    execFile(process.execPath, ['--test', '--test-reporter=tap', fixture], { env, cwd: work }, (err, stdout) => {
      resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, report: readTap(stdout) });
    });
  });
}

const run = (overrides: Partial<SuiteRun>): SuiteRun => ({ suite: 'unit', testFiles: 1, minimum: 1, nodeStatus: 0, filtered: false, ci: false, ...overrides });

describe('a missing dependency', () => {
  it('on a developer machine: the tests that need it are skipped with the reason, the rest run, and the suite passes', async () => {
    const { status, report } = await runFixture(false);
    assert.equal(status, 0);
    // node counts a skipped suite under neither tests nor skipped; its TAP line still says SKIP.
    assert.deepEqual(report.summary, { tests: 2, pass: 1, fail: 0, cancelled: 0, skipped: 1, todo: 0 });
    assert.deepEqual(report.skipped, [
      'browser pages (skip: Chromium is missing: no Chromium at /nowhere)',
      'mounts a disk (skip: the right to mount a tmpfs is missing: mount: must be superuser)',
    ]);
    assert.deepEqual(suiteProblems(report, run({})), []);
    // The suite's tests are not counted at all, so its minimum cannot apply; CI=true holds it (below).
    assert.deepEqual(suiteProblems(report, run({ minimum: 3 })), []);
  });

  it('under CI=true: each need is a failing test carrying the reason, and the suite fails', async () => {
    const { status, report } = await runFixture(true);
    assert.equal(status, 1);
    assert.deepEqual(report.summary, { tests: 3, pass: 1, fail: 2, cancelled: 0, skipped: 0, todo: 0 });
    assert.deepEqual(report.failedFiles, [fixture]);
    const problems = suiteProblems(report, run({ nodeStatus: status, ci: true, minimum: 4 }));
    assert.deepEqual(problems, [
      '3 tests ran, fewer than the 4 expected (MINIMUM_TESTS in test/support/suiteCheck.ts)',
      'CI=true and 1 tests did not run:\n    browser pages (skip: Chromium is missing: no Chromium at /nowhere)',
      '2 failed, 0 cancelled',
    ]);
  });

  it('under CI=true a skip that bypasses requirements.ts still fails the suite', () => {
    const tap = ['TAP version 13', 'ok 1 - quietly # SKIP not today', '1..1', '# tests 1', '# suites 0', '# pass 0', '# fail 0', '# cancelled 0', '# skipped 1', '# todo 0'].join('\n');
    assert.deepEqual(suiteProblems(readTap(tap), run({ minimum: 0, ci: true })), ['CI=true and 1 tests did not run:\n    quietly (skip: not today)']);
  });
});

describe('the suite rules', () => {
  const passing = readTap(['# tests 5', '# pass 5', '# fail 0', '# cancelled 0', '# skipped 0', '# todo 0'].join('\n'));

  it('fewer tests than the minimum fail the suite, unless the run was narrowed on purpose', () => {
    assert.deepEqual(suiteProblems(passing, run({ minimum: 6 })), ['5 tests ran, fewer than the 6 expected (MINIMUM_TESTS in test/support/suiteCheck.ts)']);
    assert.deepEqual(suiteProblems(passing, run({ minimum: 6, filtered: true })), []);
    assert.deepEqual(suiteProblems(passing, run({ minimum: undefined })), ['no minimum test count for suite unit in MINIMUM_TESTS (test/support/suiteCheck.ts)']);
  });

  it('an empty suite folder, a run without a summary, or node exiting non-zero fail the suite', () => {
    assert.deepEqual(suiteProblems(readTap(''), run({ suite: 'replay', testFiles: 0 })), ['dist/test/replay/ holds no test files', 'node printed no test summary: the run did not finish']);
    assert.deepEqual(suiteProblems(passing, run({ nodeStatus: 7 })), ['node --test exited 7']);
  });
});

describe('test logs', () => {
  it("go to test-output/logs/<file>/: the worker's Runtime logger writes one line per entry to worker.log, not the console", async () => {
    assert.equal(logDirOf(path.join(repoRoot(), 'dist', 'test', 'integration', 'sync.test.js')), path.join(repoRoot(), 'test-output', 'logs', 'test', 'integration', 'sync.test'));
    assert.equal(testLogDir(), logDirOf(process.argv[1]!));
    installTestRuntime();
    const runtime = Runtime.instance();
    runtime.logger.warn('probe from the test command test', { error: new Error('first line\nsecond line') });
    // With core logs forwarded, the Runtime holds entries for up to 100 ms to sort them; and its native half keeps the process alive until shut down.
    runtime.flushLogs();
    await runtime.shutdown();
    const lines = (await readFile(path.join(testLogDir(), 'worker.log'), 'utf8')).split('\n').filter((line) => line.includes('probe from the test command test'));
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT[\d:.]+Z \[WARN\] probe from the test command test \{ ⏎ error: Error: first line ⏎ second line ⏎ at /);
  });
});
