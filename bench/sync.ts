/**
 * The `sync` section (`npm run bench:sync`): ferry's end-to-end sync
 * (snapshot → S3 → target download → target re-hash) against rclone doing
 * the same job (upload to S3, then download from S3) and against `cp -r`
 * (the local floor), on a tree of many small files and on a few large files,
 * cold / no-change / one file changed. The runs here are also what the
 * `delta` section times on its one large file.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { rm } from 'node:fs/promises';
import { mutateOneFile, restoreDataSet, sameTree, type DataSet } from './data';
import { runProcess } from './processes';
import { MB, ferryStepsTable, fileCount, fixed, formatBytes, ratioText, resultsTable, type ResultRow, type Scenario } from './report';
import type { Target } from './results';
import type { BenchContext, SectionResult } from './section';
import { describeError, landedPath, removeSession, startSync, syncResult } from './workflows';

const elapsed = (started: number) => (performance.now() - started) / 1000;

const throughput = (set: DataSet, seconds: number | null) => (seconds === null || seconds <= 0 ? null : set.bytes / MB / seconds);

/** One syncWorkflow, timed from start to verified result, then checked byte for byte against the source. */
async function ferryRun(ctx: BenchContext, set: DataSet, scenario: Scenario, sessionId: string): Promise<ResultRow> {
  const { stack } = ctx;
  const workflowId = `${sessionId}-${scenario.replace(/ /g, '-')}-${Date.now()}`;
  const row: ResultRow = { set: set.name, scenario, tool: 'ferry', seconds: null, mbPerSec: null, bytesUploaded: null, ratio: null };
  try {
    // The worker runs in this process (the agent in its own, as on a target), so this is the worker's CPU cost.
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    const result = await syncResult(await startSync(stack, workflowId, sessionId, set.dir), ctx.options.timeoutSeconds * 1000);
    const seconds = elapsed(started);
    const cpu = process.cpuUsage(cpuBefore);
    Object.assign(row, { seconds, mbPerSec: throughput(set, seconds), bytesUploaded: result.bytesUploaded, bytesDownloaded: result.bytesDownloaded });
    row.ferry = {
      workflowId,
      processCpuSeconds: (cpu.user + cpu.system) / 1e6,
      durationsMs: result.durationsMs,
      filesTotal: result.filesTotal,
      blobsUploaded: result.blobsUploaded,
      filesLanded: result.filesLanded,
      bytesLanded: result.bytesLanded,
      bytesReused: result.bytesReused,
      filesVerified: result.filesVerified,
    };
    if (result.filesTotal !== set.files || result.filesVerified !== set.files) {
      row.error = `ferry reported ${result.filesTotal} files / ${result.filesVerified} verified, the set has ${set.files}`;
    } else {
      const problem = await sameTree(set.dir, landedPath(stack, result));
      if (problem) row.error = `ferry result is wrong: ${problem}`;
    }
  } catch (err) {
    row.error = `workflow ${workflowId}: ${describeError(err)}`;
  }
  return row;
}

/** rclone's equivalent of one ferry sync: upload to S3, then download into the destination. */
async function rcloneRun(ctx: BenchContext, set: DataSet, scenario: Scenario, destination: string): Promise<ResultRow[]> {
  const remote = `s3:${ctx.stack.config.s3.bucket}/rclone-bench/${set.name}`;
  const base = { set: set.name, scenario, ratio: null } as const;
  try {
    const up = await ctx.rclone().sync(set.dir, remote);
    const down = await ctx.rclone().sync(remote, destination);
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

async function cpRun(ctx: BenchContext, set: DataSet): Promise<ResultRow> {
  const destination = path.join(ctx.work, `cp-${set.name}`);
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

export interface SetRuns {
  rows: ResultRow[];
  notes: string[];
}

/**
 * The given scenarios of one data set, in order, into one ferry session and
 * one rclone destination, so each run starts from the previous one's result.
 * ferry and rclone see the same source state in each scenario; a changed
 * file is restored afterwards.
 */
export async function benchSet(ctx: BenchContext, set: DataSet, scenarios: readonly Scenario[], options: { copyFloor: boolean }): Promise<SetRuns> {
  const progress = (text: string) => ctx.progress(`${set.name}: ${text}`);
  const sessionId = `bench-${set.name}-${Date.now()}`;
  const rcloneDest = path.join(ctx.work, `rclone-${set.name}`);
  const rows: ResultRow[] = [];
  const notes: string[] = [];
  const both = async (scenario: Scenario) => {
    progress(`ferry ${scenario}`);
    rows.push(await ferryRun(ctx, set, scenario, sessionId));
    progress(`rclone ${scenario}`);
    rows.push(...(await rcloneRun(ctx, set, scenario, rcloneDest)));
  };
  try {
    if (options.copyFloor) {
      progress('cp -r');
      rows.push(await cpRun(ctx, set));
    }
    for (const scenario of scenarios) {
      if (scenario !== 'one file changed') {
        await both(scenario);
        continue;
      }
      const mutation = await mutateOneFile(ctx.dataRoot, set);
      try {
        notes.push(`${set.name} one file changed: rewrote ${formatBytes(mutation.bytesChanged)} of ${mutation.path} in place`);
        await both(scenario);
      } finally {
        await restoreDataSet(ctx.dataRoot, set, mutation);
      }
    }
  } finally {
    await removeSession(ctx.stack, sessionId);
    await rm(rcloneDest, { recursive: true, force: true });
  }
  fillRatios(rows);
  return { rows, notes };
}

/** ferry seconds / rclone up+down seconds, per set and scenario. */
function fillRatios(rows: ResultRow[]): void {
  for (const row of rows) {
    if (row.tool !== 'ferry' || row.seconds === null || row.error) continue;
    const peer = rows.find((r) => r.tool === 'rclone up+down' && r.set === row.set && r.scenario === row.scenario);
    if (peer?.seconds && !peer.error) row.ratio = row.seconds / peer.seconds;
  }
}

export const rowErrors = (rows: ResultRow[]) => rows.filter((r) => r.error).map((r) => `${r.set} / ${r.scenario} / ${r.tool}: ${r.error}`);

/** The two tables every set of sync runs prints. */
export function syncRunsReport(runs: SetRuns): string {
  return (
    resultsTable(runs.rows) +
    'MB = 10^6 bytes; MB/s = data-set bytes / seconds (also for no-change and one-file-changed runs).\n' +
    'ferry/rclone = ferry seconds / (rclone up + rclone down) seconds. rclone: --transfers 8 --checkers 16; bytes from its final stats.\n' +
    '\nferry per step (seconds; "other" = wall time outside the four activities: workflow start, scheduling, result;\n' +
    '"node cpu s" = CPU time of this process, which hosts the worker (the runtime agent runs as its own process), during the sync):\n' +
    ferryStepsTable(runs.rows) +
    (runs.notes.length ? `\n${runs.notes.join('\n')}\n` : '')
  );
}

/** A row's seconds for the summary, or FAILED. */
export const secondsText = (row: ResultRow | undefined, suffix = '') => (!row || row.error || row.seconds === null ? 'FAILED' : `${fixed(row.seconds, 2)} s${suffix}`);

/** ferry against rclone up+down for one set and scenario: ratio ≤ `goal`. */
function ratioTarget(rows: ResultRow[], set: DataSet, scenario: Scenario, label: string, goal: number): Target {
  const ferry = rows.find((r) => r.tool === 'ferry' && r.set === set.name && r.scenario === scenario);
  const peer = rows.find((r) => r.tool === 'rclone up+down' && r.set === set.name && r.scenario === scenario);
  const ratio = ferry?.ratio ?? null;
  return {
    section: 'sync',
    target: `${label} ${set.name} (${fileCount(set.files)}, ${formatBytes(set.bytes)})`,
    ferry: secondsText(ferry),
    peer: secondsText(peer, ' rclone up+down'),
    value: ratioText(ratio),
    goal: `<= ${goal.toFixed(2)}x`,
    met: ratio !== null && ratio <= goal,
    measured: ratio,
  };
}

export async function syncSection(ctx: BenchContext): Promise<SectionResult> {
  const runs: SetRuns = { rows: [], notes: [] };
  const sets: DataSet[] = [];
  for (const name of ['small-tree', 'large-files'] as const) {
    const set = await ctx.dataSet(name);
    sets.push(set);
    const setRuns = await benchSet(ctx, set, ['cold', 'no-change', 'one file changed'], { copyFloor: true });
    runs.rows.push(...setRuns.rows);
    runs.notes.push(...setRuns.notes);
  }
  const targets = sets.flatMap((set) => [ratioTarget(runs.rows, set, 'cold', 'cold sync', 1.0), ratioTarget(runs.rows, set, 'no-change', 'no-change re-sync', 0.25)]);
  return {
    data: { datasets: sets.map((s) => ({ name: s.name, files: s.files, bytes: s.bytes, params: s.params })), results: runs.rows, notes: runs.notes },
    targets,
    errors: rowErrors(runs.rows),
    report: syncRunsReport(runs),
  };
}
