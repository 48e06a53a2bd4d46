/**
 * `npm run bench:sync`: ferry's end-to-end sync (snapshot → S3 → target
 * download → target re-hash) against rclone doing the same job (upload to S3,
 * then download from S3) and against `cp -r` (the local floor), on a tree of
 * many small files and on a few large files, cold / no-change / one file
 * changed. Everything runs on the real stack the integration tests use.
 *
 * Options (env): BENCH_SMALL_FILES (2000), BENCH_LARGE_MB (64),
 * BENCH_LARGE_FILES (3). Quick run: BENCH_SMALL_FILES=200 BENCH_LARGE_MB=8.
 * Output: a table on stdout and bench/results.json. Data is kept in
 * bench/.data for the next run.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { repoRoot, resolveTool } from '../client/services';
import { sessionRoot, type SyncResult } from '../core/sync';
import type { syncWorkflow } from '../workflows/sync';
import { startTestStack, type TestStack } from '../test/support/testStack';
import { ensureDataSet, hashTree, mutateOneFile, restoreDataSet, type DataSet, type DataSetParams, type Mutation } from './data';
import { Rclone, runProcess, toolVersion } from './processes';
import { MB, ferryStepsTable, formatBytes, resultsTable, type ResultRow, type Scenario } from './report';

const SEED = 20251121;

interface Options {
  smallFiles: number;
  largeFiles: number;
  largeMiB: number;
}

function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

function readOptions(): Options {
  return {
    smallFiles: positiveInt('BENCH_SMALL_FILES', 2000),
    largeFiles: positiveInt('BENCH_LARGE_FILES', 3),
    largeMiB: positiveInt('BENCH_LARGE_MB', 64),
  };
}

function dataSetParams(options: Options): { name: string; params: DataSetParams }[] {
  return [
    { name: 'small-tree', params: { kind: 'small', seed: SEED, files: options.smallFiles, folders: 50, minBytes: 512, maxBytes: 32 << 10 } },
    { name: 'large-files', params: { kind: 'large', seed: SEED + 1, files: options.largeFiles, bytesPerFile: options.largeMiB << 20 } },
  ];
}

const out = (text: string) => process.stdout.write(text);
const elapsed = (started: number) => (performance.now() - started) / 1000;

/** The failure chain of a ferry run, with Temporal failure types and details, for the report. */
function describeError(err: unknown): string {
  const parts: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current instanceof Error && depth < 8; depth++) {
    let text = `${current.name}: ${current.message}`;
    if (current instanceof ApplicationFailure) {
      const details = current.details?.length ? `, details=${JSON.stringify(current.details)}` : '';
      text += ` [type=${current.type}, nonRetryable=${current.nonRetryable}${details}]`;
    }
    parts.push(text);
    current = current.cause;
  }
  return parts.length ? parts.join('\n    caused by ') : String(err);
}

interface Bench {
  stack: TestStack;
  rclone: Rclone;
  work: string;
  dataRoot: string;
  rows: ResultRow[];
  notes: string[];
}

/** The test stack always sets its S3 settings; rclone cannot run without them. */
function requiredSetting(stack: TestStack, name: 'FERRY_S3_ENDPOINT' | 'FERRY_S3_ACCESS_KEY_ID' | 'FERRY_S3_SECRET_ACCESS_KEY'): string {
  const value = stack.settings[name];
  if (!value) throw new Error(`the test stack has no ${name}`);
  return value;
}

const throughput = (set: DataSet, seconds: number | null) => (seconds === null || seconds <= 0 ? null : set.bytes / MB / seconds);

/** Checks a copy is byte-for-byte the source (untimed): a fast wrong answer is not a result. */
async function sameTree(source: string, copy: string): Promise<string | undefined> {
  const [expected, actual] = await Promise.all([hashTree(source), hashTree(copy).catch(() => undefined)]);
  if (!actual) return `${copy} is missing`;
  if (actual.digest !== expected.digest) return `${copy} differs from the source (${actual.files} files / ${actual.bytes} bytes, expected ${expected.files} / ${expected.bytes})`;
  return undefined;
}

/** A hung sync must not hang the benchmark: BENCH_SYNC_TIMEOUT_S (default 900) per workflow. */
const syncTimeoutMs = () => positiveInt('BENCH_SYNC_TIMEOUT_S', 900) * 1000;

/** Resolves like `promise`, or rejects with `onTimeout()`'s error when it takes longer than `ms`. */
async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Promise<Error>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => void onTimeout().then(reject, reject), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** What a stuck workflow is waiting on: its pending activities with attempt, last heartbeat and last failure. */
async function describePending(handle: WorkflowHandle): Promise<string> {
  const { raw } = await handle.describe();
  const activities = (raw.pendingActivities ?? []).map((a) => {
    const details = (a.heartbeatDetails?.payloads ?? []).map((p) => (p.data ? Buffer.from(p.data).toString('utf8') : '')).join(', ');
    const beat = a.lastHeartbeatTime?.seconds ? new Date(Number(a.lastHeartbeatTime.seconds) * 1000).toISOString() : 'never';
    const failure = a.lastFailure?.message ? `, last failure: ${a.lastFailure.message}` : '';
    return `${a.activityType?.name} (attempt ${a.attempt}, last heartbeat ${beat}: ${details || 'none'}${failure})`;
  });
  return activities.length ? `pending: ${activities.join('; ')}` : 'no pending activities';
}

/** The sync's result; after BENCH_SYNC_TIMEOUT_S, an error naming what it is stuck on (the workflow is terminated). */
function syncResult(handle: WorkflowHandle<typeof syncWorkflow>): Promise<SyncResult> {
  return withTimeout(handle.result(), syncTimeoutMs(), async () => {
    const pending = await describePending(handle).catch((err: unknown) => `(describe failed: ${String(err)})`);
    await handle.terminate('benchmark timeout').catch(() => undefined);
    return new Error(`workflow ${handle.workflowId}: no result after ${syncTimeoutMs() / 1000} s; terminated. ${pending}`);
  });
}

/** One syncWorkflow, timed from start to verified result. */
async function ferryRun(bench: Bench, set: DataSet, scenario: Scenario, sessionId: string): Promise<ResultRow> {
  const { stack } = bench;
  const workflowId = `${sessionId}-${scenario.replace(/ /g, '-')}-${Date.now()}`;
  const row: ResultRow = { set: set.name, scenario, tool: 'ferry', seconds: null, mbPerSec: null, bytesUploaded: null, ratio: null };
  try {
    // The worker runs in this process (the agent in its own, as on a target), so this is the worker's CPU cost.
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    const handle = await stack.client.workflow.start<typeof syncWorkflow>('syncWorkflow', {
      taskQueue: stack.config.temporal.taskQueue,
      workflowId,
      args: [{ sessionId, source: { path: set.dir } }],
    });
    const result = await syncResult(handle);
    const seconds = elapsed(started);
    const cpu = process.cpuUsage(cpuBefore);
    Object.assign(row, { seconds, mbPerSec: throughput(set, seconds), bytesUploaded: result.bytesUploaded });
    row.ferry = {
      workflowId,
      processCpuSeconds: (cpu.user + cpu.system) / 1e6,
      durationsMs: result.durationsMs,
      filesTotal: result.filesTotal,
      blobsUploaded: result.blobsUploaded,
      filesLanded: result.filesLanded,
      bytesLanded: result.bytesLanded,
      filesVerified: result.filesVerified,
    };
    if (result.filesTotal !== set.files || result.filesVerified !== set.files) {
      row.error = `ferry reported ${result.filesTotal} files / ${result.filesVerified} verified, the set has ${set.files}`;
    } else {
      const problem = await sameTree(set.dir, path.join(stack.agentRoot, sessionRoot(sessionId), result.dest));
      if (problem) row.error = `ferry result is wrong: ${problem}`;
    }
  } catch (err) {
    row.error = `workflow ${workflowId}: ${describeError(err)}`;
  }
  return row;
}

/** rclone's equivalent of one ferry sync: upload to S3, then download into the destination. */
async function rcloneRun(bench: Bench, set: DataSet, scenario: Scenario, destination: string): Promise<ResultRow[]> {
  const remote = `s3:${bench.stack.config.s3.bucket}/rclone-bench/${set.name}`;
  const base = { set: set.name, scenario, ratio: null } as const;
  try {
    const up = await bench.rclone.sync(set.dir, remote);
    const down = await bench.rclone.sync(remote, destination);
    const total = up.seconds + down.seconds;
    const problem = await sameTree(set.dir, destination);
    return [
      { ...base, tool: 'rclone up', seconds: up.seconds, mbPerSec: throughput(set, up.seconds), bytesUploaded: up.bytes },
      { ...base, tool: 'rclone down', seconds: down.seconds, mbPerSec: throughput(set, down.seconds), bytesUploaded: null, bytesDownloaded: down.bytes },
      {
        ...base,
        tool: 'rclone up+down',
        seconds: total,
        mbPerSec: throughput(set, total),
        bytesUploaded: up.bytes,
        bytesDownloaded: down.bytes,
        ...(problem ? { error: `rclone result is wrong: ${problem}` } : {}),
      },
    ];
  } catch (err) {
    return [{ ...base, tool: 'rclone up+down', seconds: null, mbPerSec: null, bytesUploaded: null, error: describeError(err) }];
  }
}

async function cpRun(bench: Bench, set: DataSet): Promise<ResultRow> {
  const destination = path.join(bench.work, `cp-${set.name}`);
  const row: ResultRow = { set: set.name, scenario: 'cold', tool: 'cp -r', seconds: null, mbPerSec: null, bytesUploaded: null, ratio: null };
  try {
    const run = await runProcess('cp', ['-r', set.dir, destination]);
    Object.assign(row, { seconds: run.seconds, mbPerSec: throughput(set, run.seconds) });
    const problem = await sameTree(set.dir, destination);
    if (problem) row.error = `cp result is wrong: ${problem}`;
  } catch (err) {
    row.error = describeError(err);
  } finally {
    await rm(destination, { recursive: true, force: true });
  }
  return row;
}

/** All scenarios of one data set. ferry and rclone see the same source state in each scenario. */
async function benchSet(bench: Bench, set: DataSet): Promise<void> {
  const progress = (text: string) => out(`  ${set.name}: ${text}\n`);
  const sessionId = `bench-${set.name}-${Date.now()}`;
  const rcloneDest = path.join(bench.work, `rclone-${set.name}`);
  try {
    progress('cp -r');
    bench.rows.push(await cpRun(bench, set));

    for (const scenario of ['cold', 'no-change'] as const) {
      progress(`ferry ${scenario}`);
      bench.rows.push(await ferryRun(bench, set, scenario, sessionId));
      progress(`rclone ${scenario}`);
      bench.rows.push(...(await rcloneRun(bench, set, scenario, rcloneDest)));
    }

    let mutation: Mutation | undefined;
    try {
      mutation = await mutateOneFile(bench.dataRoot, set);
      bench.notes.push(`${set.name} one file changed: rewrote ${formatBytes(mutation.bytesChanged)} of ${mutation.path}`);
      progress('ferry one file changed');
      bench.rows.push(await ferryRun(bench, set, 'one file changed', sessionId));
      progress('rclone one file changed');
      bench.rows.push(...(await rcloneRun(bench, set, 'one file changed', rcloneDest)));
    } finally {
      if (mutation) await restoreDataSet(bench.dataRoot, set, mutation);
    }
  } finally {
    await rm(path.join(bench.stack.agentRoot, sessionRoot(sessionId)), { recursive: true, force: true });
    await rm(rcloneDest, { recursive: true, force: true });
  }
}

/** ferry seconds / rclone up+down seconds, per set and scenario. */
function fillRatios(rows: ResultRow[]): void {
  for (const row of rows) {
    if (row.tool !== 'ferry' || row.seconds === null || row.error) continue;
    const peer = rows.find((r) => r.tool === 'rclone up+down' && r.set === row.set && r.scenario === row.scenario);
    if (peer?.seconds && !peer.error) row.ratio = row.seconds / peer.seconds;
  }
}

/**
 * A tiny sync before timing anything: the first workflow on a fresh worker
 * pays one-off costs (workflow isolate, first polls, S3 client setup) that are
 * not part of syncing the data.
 */
async function warmUp(stack: TestStack, work: string): Promise<void> {
  const source = path.join(work, 'warmup');
  await mkdir(source, { recursive: true });
  await writeFile(path.join(source, 'hello.txt'), 'warm-up\n');
  const sessionId = `bench-warmup-${Date.now()}`;
  const handle = await stack.client.workflow.start<typeof syncWorkflow>('syncWorkflow', {
    taskQueue: stack.config.temporal.taskQueue,
    workflowId: sessionId,
    args: [{ sessionId, source: { path: source } }],
  });
  await syncResult(handle);
  await rm(path.join(stack.agentRoot, sessionRoot(sessionId)), { recursive: true, force: true });
}

async function machineInfo(root: string) {
  const cpus = os.cpus();
  const version = async (tool: 'rclone' | 'weed' | 'temporal', args: string[]) => {
    try {
      return await toolVersion(resolveTool(tool, root), args);
    } catch {
      return 'not installed';
    }
  };
  const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { version: string };
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    totalMemoryGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    ferry: pkg.version,
    tools: {
      rclone: await version('rclone', ['version']),
      weed: await version('weed', ['version']),
      temporal: await version('temporal', ['--version']),
    },
  };
}

async function main(): Promise<number> {
  const options = readOptions();
  const root = repoRoot();
  const dataRoot = path.join(root, 'bench', '.data');
  await mkdir(dataRoot, { recursive: true });

  out(`ferry sync benchmark: ${options.smallFiles} small files, ${options.largeFiles} x ${options.largeMiB} MiB large files\n`);
  const sets: DataSet[] = [];
  for (const { name, params } of dataSetParams(options)) {
    const started = performance.now();
    const { set, generated } = await ensureDataSet(dataRoot, name, params);
    out(`  data ${name}: ${set.files} files, ${formatBytes(set.bytes)} (${generated ? 'generated' : 'reused, verified'} in ${elapsed(started).toFixed(1)} s)\n`);
    sets.push(set);
  }

  const work = await mkdtemp(path.join(os.tmpdir(), 'ferry-bench-'));
  const rows: ResultRow[] = [];
  const notes: string[] = [];
  let stack: TestStack | undefined;
  // Ctrl-C still stops the Temporal and S3 servers; bounded, since a stuck activity can hold up the worker's shutdown.
  const onSignal = () => {
    out('\ninterrupted: stopping the stack\n');
    const stopped = Promise.resolve(stack?.stop()).then(() => rm(work, { recursive: true, force: true }));
    void Promise.race([stopped, new Promise((resolve) => setTimeout(resolve, 20_000))]).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const started = performance.now();
    stack = await startTestStack({ agentProcess: true });
    out(`  stack up in ${elapsed(started).toFixed(1)} s (Temporal ${stack.settings.FERRY_TEMPORAL_ADDRESS}, S3 ${stack.settings.FERRY_S3_ENDPOINT})\n`);
    const rclone = new Rclone(resolveTool('rclone', root), {
      endpoint: requiredSetting(stack, 'FERRY_S3_ENDPOINT'),
      accessKeyId: requiredSetting(stack, 'FERRY_S3_ACCESS_KEY_ID'),
      secretAccessKey: requiredSetting(stack, 'FERRY_S3_SECRET_ACCESS_KEY'),
    });
    await warmUp(stack, work);
    const bench: Bench = { stack, rclone, work, dataRoot, rows, notes };
    for (const set of sets) await benchSet(bench, set);
  } finally {
    await stack?.stop();
    await rm(work, { recursive: true, force: true });
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }

  fillRatios(rows);
  const machine = await machineInfo(root);
  const errors = rows.filter((r) => r.error).map((r) => `${r.set} / ${r.scenario} / ${r.tool}: ${r.error}`);

  out('\n');
  out(resultsTable(rows));
  out('\nMB = 10^6 bytes; MB/s = data-set bytes / seconds (also for no-change and one-file-changed runs).\n');
  out('ferry/rclone = ferry seconds / (rclone up + rclone down) seconds. rclone: --transfers 8 --checkers 16; bytes from its final stats.\n');
  out('\nferry per step (seconds; "other" = wall time outside the four activities: workflow start, scheduling, result;\n');
  out('"node cpu s" = CPU time of this process, which hosts the worker (the runtime agent runs as its own process), during the sync):\n');
  out(ferryStepsTable(rows));
  if (notes.length) out(`\n${notes.join('\n')}\n`);
  if (errors.length) out(`\nERRORS:\n${errors.join('\n')}\n`);
  out(
    `\nmachine: ${machine.cpus} x ${machine.cpuModel}, ${machine.totalMemoryGiB} GiB RAM, ${machine.platform}, node ${machine.node}\n` +
      `tools: ${machine.tools.rclone}; weed ${machine.tools.weed}; ${machine.tools.temporal}; ferry ${machine.ferry}\n`,
  );

  const report = {
    timestamp: new Date().toISOString(),
    options,
    datasets: sets.map((s) => ({ name: s.name, files: s.files, bytes: s.bytes, params: s.params })),
    machine,
    results: rows,
    notes,
    errors,
  };
  const resultsFile = path.join(root, 'bench', 'results.json');
  await writeFile(resultsFile, `${JSON.stringify(report, null, 2)}\n`);
  out(`\nwrote ${path.relative(process.cwd(), resultsFile) || resultsFile}\n`);
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
