/**
 * `npm run bench:check`: judges bench/results.json against the issue's
 * targets without starting anything. Prints the summary table; exits 1 when
 * a target is missed (naming each), 2 when there is no results file to judge.
 */
import { repoRoot } from '../client/tools';
import { SECTION_NAMES } from './options';
import { summaryTable } from './report';
import { missedTargets, readResults, resultsPath } from './results';

async function main(): Promise<number> {
  const root = repoRoot();
  const results = await readResults(root);
  if (!results) {
    process.stderr.write(`bench:check: ${resultsPath(root)} does not exist: run npm run bench first\n`);
    return 2;
  }
  process.stdout.write(`bench/results.json of ${results.timestamp}\n${summaryTable(results.targets)}`);
  const notMeasured = SECTION_NAMES.filter((name) => !results.sections[name]);
  if (notMeasured.length) process.stdout.write(`not measured: ${notMeasured.join(', ')}\n`);
  const missed = missedTargets(results.targets);
  if (missed.length) {
    process.stdout.write(`\n${missed.length} target(s) missed:\n${missed.map((t) => `  ${t.target}: ${t.value}, goal ${t.goal}`).join('\n')}\n`);
    return 1;
  }
  process.stdout.write('\nevery target met\n');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench:check: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  },
);
