/**
 * Judges one step of the test command (scripts/test.sh) from the TAP report
 * node wrote beside its spec output, so a run cannot pass on tests that did
 * not run:
 * - the suite's folder holds test files, and at least MINIMUM_TESTS[suite]
 *   tests ran (not skipped, not todo) — on a developer's machine only when
 *   nothing was skipped for a missing dependency, since a skipped suite's
 *   tests are not counted at all;
 * - under CI=true no test was skipped or left todo (each is listed with its
 *   reason: test/support/requirements.ts makes a missing dependency fail
 *   under CI, this catches any skip that bypasses it);
 * - no test failed, and node itself exited 0;
 * and for each file with a failing test, prints where its logs are and
 * their last lines (test/support/testLogs.ts).
 *
 *   node dist/test/support/suiteCheck.js <suite> <tap file> <node exit status> [--filtered]
 *
 * `--filtered`: the run was narrowed by extra node arguments, so the
 * minimum count does not apply.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { logTail } from '../../client/managedProcess';
import { repoRoot } from '../../client/tools';
import { dependenciesRequired } from './requirements';
import { logDirOf } from './testLogs';

/**
 * How many tests each suite runs at least: raise a figure when you add
 * tests, lower it only when you remove some on purpose.
 */
export const MINIMUM_TESTS: Record<string, number> = {
  unit: 257,
  integration: 111,
  faults: 64,
  replay: 5,
};

export interface TapSummary {
  tests: number;
  pass: number;
  fail: number;
  cancelled: number;
  skipped: number;
  todo: number;
}

export interface TapReport {
  /** Undefined when node printed no summary (it did not finish). */
  summary?: TapSummary;
  /** `name # SKIP reason` / `name # TODO reason` of every skipped or todo test. */
  skipped: string[];
  /** Test files with a failing test, from the failures' locations. */
  failedFiles: string[];
}

/** Reads node's TAP output: the closing summary, skipped and todo tests, and where the failures are. */
export function readTap(text: string): TapReport {
  const counts: Partial<Record<keyof TapSummary, number>> = {};
  const skipped: string[] = [];
  const failedFiles = new Set<string>();
  let inFailure = false;
  for (const line of text.split('\n')) {
    const summary = /^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(line);
    if (summary) counts[summary[1] as keyof TapSummary] = Number(summary[2]);
    const result = /^\s*(not ok|ok) \d+ - (.*)$/.exec(line);
    if (result) {
      inFailure = result[1] === 'not ok';
      const directive = /^(.*) # (SKIP|TODO)\b ?(.*)$/i.exec(result[2]);
      if (directive) skipped.push(`${directive[1]} (${directive[2].toLowerCase()}${directive[3] ? `: ${directive[3]}` : ''})`);
      continue;
    }
    // Only test files: a test made by a support module (requirements.ts) is located there.
    const location = /^\s*location: '(.*\.test\.js):\d+:\d+'$/.exec(line);
    if (inFailure && location) failedFiles.add(location[1]);
  }
  const complete = (['tests', 'pass', 'fail', 'cancelled', 'skipped', 'todo'] as const).every((key) => counts[key] !== undefined);
  return { summary: complete ? (counts as TapSummary) : undefined, skipped, failedFiles: [...failedFiles].sort() };
}

/** Every file under `dir`, deepest last. */
function filesUnder(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir, { recursive: true }) as string[];
  } catch {
    return [];
  }
  return names
    .map((name) => path.join(dir, name))
    .filter((file) => statSync(file).isFile())
    .sort((a, b) => a.split(path.sep).length - b.split(path.sep).length || a.localeCompare(b));
}

const LOG_LINES = 12;

/** Where a failing file's logs are, and the lines that matter: the worker's warnings and errors, the servers' last lines. */
function logReport(testFile: string): string {
  const dir = logDirOf(testFile);
  const logs = filesUnder(dir);
  if (logs.length === 0) return `  ${path.relative(repoRoot(), testFile)}: no logs under ${path.relative(repoRoot(), dir)}/`;
  const parts = [`  ${path.relative(repoRoot(), testFile)}: logs in ${path.relative(repoRoot(), dir)}/`];
  for (const log of logs) {
    const lines =
      path.basename(log) === 'worker.log'
        ? readFileSync(log, 'utf8').split('\n').filter((line) => /\[(WARN|ERROR)\]/.test(line)).slice(-LOG_LINES)
        : logTail(log, LOG_LINES).split('\n').filter((line) => line.trim() !== '');
    if (lines.length === 0) continue;
    parts.push(`  --- ${path.relative(dir, log)}, last ${lines.length} ${path.basename(log) === 'worker.log' ? 'warnings and errors' : 'lines'}:`);
    parts.push(...lines.map((line) => `    ${line.length > 400 ? `${line.slice(0, 400)} …` : line}`));
  }
  return parts.join('\n');
}

export interface SuiteRun {
  suite: string;
  /** Test files in the suite's folder. */
  testFiles: number;
  /** MINIMUM_TESTS[suite]. */
  minimum: number | undefined;
  nodeStatus: number;
  /** Narrowed by extra node arguments: the minimum does not apply. */
  filtered: boolean;
  /** CI=true: no test may be skipped. */
  ci: boolean;
}

/** The problems of one suite's run; empty when it passed. */
export function suiteProblems(report: TapReport, run: SuiteRun): string[] {
  const problems: string[] = [];
  if (run.testFiles === 0) problems.push(`dist/test/${run.suite}/ holds no test files`);
  const { summary } = report;
  if (!summary) return [...problems, 'node printed no test summary: the run did not finish'];
  const ran = summary.tests - summary.skipped - summary.todo;
  if (run.minimum === undefined) problems.push(`no minimum test count for suite ${run.suite} in MINIMUM_TESTS (test/support/suiteCheck.ts)`);
  else if (!run.filtered && (run.ci || report.skipped.length === 0) && ran < run.minimum) problems.push(`${ran} tests ran, fewer than the ${run.minimum} expected (MINIMUM_TESTS in test/support/suiteCheck.ts)`);
  if (run.ci && report.skipped.length > 0) problems.push(`CI=true and ${report.skipped.length} tests did not run:\n${report.skipped.map((name) => `    ${name}`).join('\n')}`);
  if (summary.fail > 0 || summary.cancelled > 0) problems.push(`${summary.fail} failed, ${summary.cancelled} cancelled`);
  else if (run.nodeStatus !== 0) problems.push(`node --test exited ${run.nodeStatus}`);
  return problems;
}

function main(): void {
  const [suite, tapFile, status, ...flags] = process.argv.slice(2);
  if (!suite || !tapFile || status === undefined) {
    process.stderr.write('usage: suiteCheck.js <suite> <tap file> <node exit status> [--filtered]\n');
    process.exit(2);
  }
  const suiteDir = path.join(repoRoot(), 'dist', 'test', suite);
  const testFiles = filesUnder(suiteDir).filter((file) => file.endsWith('.test.js')).length;
  const report = readTap(readFileSync(tapFile, 'utf8'));
  const problems = suiteProblems(report, { suite, testFiles, minimum: MINIMUM_TESTS[suite], nodeStatus: Number(status), filtered: flags.includes('--filtered'), ci: dependenciesRequired() });
  const { summary } = report;
  const figures = summary ? `${summary.tests - summary.skipped - summary.todo} ran, ${summary.skipped} skipped, ${summary.todo} todo, ${summary.fail} failed` : 'no summary';
  if (problems.length === 0) {
    const skips = report.skipped.length > 0 ? `; ${report.skipped.length} skipped with their reasons, so the minimum of ${MINIMUM_TESTS[suite]} was not applied (CI=true fails on them)` : '';
    process.stdout.write(`suite ${suite}: passed (${figures}; ${testFiles} files${skips})\n`);
    return;
  }
  const lines = [`suite ${suite}: FAILED (${figures}; ${testFiles} files)`, ...problems.map((problem) => `  ${problem}`)];
  if (report.failedFiles.length > 0) lines.push('failing files and their logs:', ...report.failedFiles.map(logReport));
  process.stdout.write(`${lines.join('\n')}\n`);
  process.exit(1);
}

if (require.main === module) main();
