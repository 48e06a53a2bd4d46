/**
 * `npm run bench`: the whole benchmark, every section on one stack (the
 * integration tests' real Temporal dev server + SeaweedFS S3 + runtime agent
 * process + in-process worker), one summary of the issue's targets at the
 * end, and bench/results.json with every raw figure. `npm run bench:check`
 * judges that file without running anything.
 *
 * Sections (BENCH_SECTIONS, a comma list; default all, always run in this order):
 *   cli            `node bin/ferry.js --version` and `sync --help`: start-up wall time
 *   orchestration  execute round trip (and where its time goes) and one-file sync vs the seed's sleep(10) and SSM sync
 *   sessions       50/100/200 concurrent syncs on one worker: all succeed, cost per session
 *   sync           cold / no-change (also through the CLI) / one file changed: ferry vs rclone and s5cmd
 *                  (each up+down) vs cp -r; then the cold syncs' S3 requests, counted in an untimed pass
 *   delta          1 MiB edit in the middle of one large file: bytes ferry uploads
 *   hashing        snapshot throughput vs sha256sum, warm page cache
 *   tree           100,000-file snapshot in a child process: seconds, peak RSS
 *
 * Peers (sync, delta): rclone from .tools/bin; s5cmd built there from its Go
 * module on first use (scripts/install-tools.sh --only s5cmd). Without Go the
 * run says so and leaves s5cmd out; under CI=true a missing peer is an error.
 *
 * Options (env, defaults in parentheses):
 *   BENCH_CLI_RUNS (20)               timed runs of each CLI command (cli)
 *   BENCH_SMALL_FILES (2000)          files in the small-file tree (sync)
 *   BENCH_LARGE_FILES (3), BENCH_LARGE_MB (64)   large-file set: count and MiB each (sync, hashing)
 *   BENCH_DELTA_MB (500)              MiB of the one file the delta section edits (delta, hashing)
 *   BENCH_HASH_RUNS (3)               runs per tool in the hashing section, best one counts
 *   BENCH_EXECUTES (200), BENCH_SYNCS (20)       execute round trips / one-file syncs (orchestration)
 *   BENCH_SESSION_LEVELS (50,100,200), BENCH_SESSION_FILES (50)   concurrent syncs per level / files each
 *   BENCH_TREE_FILES (100000)         files in the large tree (tree)
 *   BENCH_SYNC_TIMEOUT_S (900)        bound on each workflow, the child snapshot and each peer process
 * Quick run: BENCH_SMALL_FILES=200 BENCH_LARGE_MB=8 BENCH_DELTA_MB=64 BENCH_EXECUTES=20 BENCH_CLI_RUNS=5
 *   BENCH_SESSION_LEVELS=5,10 BENCH_TREE_FILES=5000 npm run bench
 *
 * Data sets are generated from a fixed seed into bench/.data and reused
 * (verified) by later runs. Sections not run keep their figures from the
 * previous results.json, each with its own measuredAt.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { repoRoot } from '../client/tools';
import { startTestStack, type TestStack } from '../test/support/testStack';
import { cliSection } from './cli';
import { dataSetParams, ensureDataSet, type DataSet, type DataSetName } from './data';
import { deltaSection } from './delta';
import { hashingSection } from './hashing';
import { machineInfo, machineSummary } from './machine';
import { SECTION_NAMES, readOptions, type SectionName } from './options';
import { orchestrationSection } from './orchestration';
import { findPeers, type FoundPeers } from './peers';
import { createPeer } from './processes';
import { fileCount, formatBytes, summaryTable } from './report';
import { RESULTS_VERSION, readResults, resultsPath, writeResults, type ResultsFile, type SectionRecord } from './results';
import { startCountingRig, type CountingRig } from './requests';
import type { BenchContext, Section } from './section';
import { sessionsSection } from './sessions';
import { syncSection } from './sync';
import { treeSection } from './tree';
import { describeError, stackS3Settings, warmUp } from './workflows';

const SECTIONS: Record<SectionName, Section> = {
  cli: cliSection,
  orchestration: orchestrationSection,
  sessions: sessionsSection,
  sync: syncSection,
  delta: deltaSection,
  hashing: hashingSection,
  tree: treeSection,
};

const out = (text: string) => process.stdout.write(text);
const elapsed = (started: number) => (performance.now() - started) / 1000;

function benchContext(stack: TestStack, work: string, dataRoot: string, options: ReturnType<typeof readOptions>, peers: FoundPeers, rig: { started?: Promise<CountingRig> }): BenchContext {
  // Generated on first use, not up front: a section's memory and page-cache state should not depend on sets it never reads.
  const dataSets = new Map<DataSetName, Promise<DataSet>>();
  return {
    stack,
    options,
    work,
    dataRoot,
    dataSet(name) {
      let set = dataSets.get(name);
      if (!set) {
        const started = performance.now();
        set = ensureDataSet(dataRoot, name, dataSetParams(name, options)).then(({ set, generated }) => {
          out(`  data ${name}: ${fileCount(set.files)}, ${formatBytes(set.bytes)} (${generated ? 'generated' : 'reused, verified'} in ${elapsed(started).toFixed(1)} s)\n`);
          return set;
        });
        dataSets.set(name, set);
      }
      return set;
    },
    peers: peers.binaries.map(({ name, binary }) => createPeer(name, binary, stackS3Settings(stack), options.timeoutSeconds * 1000)),
    missingPeers: peers.missing,
    countingRig: () => (rig.started ??= startCountingRig(stack, work)),
    progress: (text) => out(`  ${text}\n`),
  };
}

/** A section that threw instead of reporting: its error, and a missed target so bench:check sees it. */
function failedSection(name: SectionName, err: unknown): SectionRecord {
  const error = `${name}: ${describeError(err)}`;
  return {
    measuredAt: new Date().toISOString(),
    data: { error },
    targets: [{ section: name, target: `${name} section`, ferry: 'FAILED', peer: '-', value: 'FAILED', goal: 'runs to the end', met: false, measured: null }],
    errors: [error],
  };
}

async function main(): Promise<number> {
  const started = performance.now();
  const options = readOptions();
  const root = repoRoot();
  const dataRoot = path.join(root, 'bench', '.data');
  await mkdir(dataRoot, { recursive: true });
  out(`ferry benchmark: ${options.sections.join(', ')}\n`);

  // Peers only matter to the sections that sync; a missing one under CI stops the run here, before the stack starts.
  const peers: FoundPeers = options.sections.some((name) => name === 'sync' || name === 'delta') ? await findPeers(root, (text) => out(`  ${text}\n`)) : { binaries: [], missing: [] };
  const work = await mkdtemp(path.join(os.tmpdir(), 'ferry-bench-'));
  const records: Partial<Record<SectionName, SectionRecord>> = {};
  const reports: string[] = [];
  let stack: TestStack | undefined;
  const rig: { started?: Promise<CountingRig> } = {};
  const stopAll = async () => {
    await rig.started?.then((started) => started.close()).catch(() => undefined);
    await stack?.stop();
  };
  // Ctrl-C still stops the Temporal and S3 servers; bounded, since a stuck activity can hold up the worker's shutdown.
  const onSignal = () => {
    out('\ninterrupted: stopping the stack\n');
    const stopped = stopAll().then(() => rm(work, { recursive: true, force: true }));
    void Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 20_000))]).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const stackStarted = performance.now();
    stack = await startTestStack({ agentProcess: true });
    out(`  stack up in ${elapsed(stackStarted).toFixed(1)} s (Temporal ${stack.settings.FERRY_TEMPORAL_ADDRESS}, S3 ${stack.settings.FERRY_S3_ENDPOINT})\n`);
    await warmUp(stack, work, options.timeoutSeconds * 1000);
    const ctx = benchContext(stack, work, dataRoot, options, peers, rig);
    for (const name of options.sections) {
      const sectionStarted = performance.now();
      out(`section ${name}\n`);
      try {
        const result = await SECTIONS[name](ctx);
        records[name] = { measuredAt: new Date().toISOString(), data: result.data, targets: result.targets, errors: result.errors };
        reports.push(`== ${name} ==\n${result.report}`);
      } catch (err) {
        records[name] = failedSection(name, err);
        reports.push(`== ${name} ==\nFAILED: ${describeError(err)}\n`);
      }
      out(`  ${name} done in ${elapsed(sectionStarted).toFixed(1)} s\n`);
    }
  } finally {
    await stopAll();
    await rm(work, { recursive: true, force: true });
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }

  // An unreadable or older results file just means nothing is carried over.
  const previous = await readResults(root).catch(() => undefined);
  const carried = SECTION_NAMES.filter((name) => !records[name] && previous?.sections[name]);
  for (const name of carried) records[name] = previous!.sections[name];
  const targets = SECTION_NAMES.flatMap((name) => records[name]?.targets ?? []);
  const errors = options.sections.flatMap((name) => records[name]?.errors ?? []);
  const machine = await machineInfo(root);
  const results: ResultsFile = { version: RESULTS_VERSION, timestamp: new Date().toISOString(), options, machine, sectionsRun: options.sections, sections: records, targets, errors };
  await writeResults(root, results);

  out(`\n${reports.join('\n')}\n`);
  out(`SUMMARY\n${summaryTable(targets)}`);
  if (carried.length) out(`kept from an earlier run: ${carried.map((name) => `${name} (${records[name]!.measuredAt})`).join(', ')}\n`);
  if (errors.length) out(`\nERRORS:\n${errors.join('\n')}\n`);
  out(`\n${machineSummary(machine)}`);
  out(`wrote ${path.relative(process.cwd(), resultsPath(root)) || resultsPath(root)} in ${elapsed(started).toFixed(0)} s total; npm run bench:check judges it\n`);
  return errors.length ? 1 : 0;
}

main().then(
  // Explicit exit: the Temporal native runtime can keep the event loop alive after the stack stops.
  (code) => process.stdout.write('', () => process.exit(code)),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${describeError(err)}\n${err instanceof Error ? (err.stack ?? '') : ''}\n`);
    process.exit(1);
  },
);
