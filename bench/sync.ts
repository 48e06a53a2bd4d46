/**
 * The `sync` section (`npm run bench:sync`): ferry's end-to-end sync
 * (snapshot → S3 → target download → target re-hash) against rclone and
 * s5cmd doing the same job (upload to S3, then download from S3, each
 * verified byte for byte) and against `cp -r` (the local floor), on a tree
 * of many small files and on a few large files: cold, no-change (in-process,
 * and through the CLI as a process for the small tree), one file changed.
 * Then the cold syncs once more, untimed, with their S3 requests counted.
 * The runs here are also what the `delta` section times on its one large file.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { rm } from 'node:fs/promises';
import type { SyncSummary } from '../client/commands';
import type { SyncResult } from '../core/sync';
import { repoRoot } from '../client/tools';
import { mutateOneFile, restoreDataSet, sameTree, type DataSet } from './data';
import { PEER_NAMES, createPeer, runProcess, type Peer, type PeerName } from './processes';
import { MB, benchTable, ferryStepsTable, fileCount, fixed, formatBytes, ratioText, resultsTable, type ResultRow, type Scenario, type Tool } from './report';
import { requestsBetween, requestsPer8MiB, requestsText, type CountingRig, type DirectionRequests } from './requests';
import type { Target } from './results';
import type { BenchContext, MissingPeer, SectionResult } from './section';
import { describeError, landedPath, removeSession, startSync, syncResult } from './workflows';

const elapsed = (started: number) => (performance.now() - started) / 1000;

/** The CLI as a user runs it from a checkout: `node bin/ferry.js`. */
export const ferryBin = () => path.join(repoRoot(), 'bin', 'ferry.js');

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

/** `node bin/ferry.js sync <dir> --session <id> --json` as a user runs it: one process, timed from spawn to exit. */
async function ferryCliRun(ctx: BenchContext, set: DataSet, scenario: Scenario, sessionId: string): Promise<ResultRow> {
  const { stack } = ctx;
  const row: ResultRow = { set: set.name, scenario, tool: 'ferry CLI', seconds: null, mbPerSec: null, bytesUploaded: null, ratio: null };
  try {
    // FERRY_HOME without a stack file: the CLI takes every setting from the stack's FERRY_* variables, none from a stack of the user's.
    const env = { ...process.env, ...stack.settings, FERRY_HOME: path.join(ctx.work, 'ferry-home') };
    const cpuBefore = process.cpuUsage();
    const run = await runProcess(process.execPath, [ferryBin(), 'sync', set.dir, '--session', sessionId, '--json'], env, ctx.options.timeoutSeconds * 1000);
    const cpu = process.cpuUsage(cpuBefore);
    const summary = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '') as SyncSummary & SyncResult;
    Object.assign(row, { seconds: run.seconds, mbPerSec: throughput(set, run.seconds), bytesUploaded: summary.bytesUploaded, bytesDownloaded: summary.bytesDownloaded });
    row.ferry = {
      workflowId: summary.workflowId,
      processCpuSeconds: (cpu.user + cpu.system) / 1e6,
      durationsMs: summary.durationsMs,
      filesTotal: summary.filesTotal,
      blobsUploaded: summary.blobsUploaded,
      filesLanded: summary.filesLanded,
      bytesLanded: summary.bytesLanded,
      bytesReused: summary.bytesReused,
      filesVerified: summary.filesVerified,
    };
    if (summary.filesTotal !== set.files || summary.filesVerified !== set.files) {
      row.error = `ferry sync reported ${summary.filesTotal} files / ${summary.filesVerified} verified, the set has ${set.files}`;
    } else {
      const problem = await sameTree(set.dir, landedPath(stack, summary));
      if (problem) row.error = `ferry sync result is wrong: ${problem}`;
    }
  } catch (err) {
    row.error = `ferry sync: ${describeError(err)}`;
  }
  return row;
}

/** A peer's equivalent of one ferry sync: upload to S3, then download into `destination`, each its own process. */
async function peerRun(set: DataSet, scenario: Scenario, peer: Peer, destination: string): Promise<ResultRow> {
  const prefix = `${peer.name}-bench/${set.name}`;
  const row: ResultRow = { set: set.name, scenario, tool: peer.name, seconds: null, mbPerSec: null, bytesUploaded: null, ratio: null };
  try {
    const up = await peer.upload(set.dir, prefix);
    const down = await peer.download(prefix, destination);
    const seconds = up.seconds + down.seconds;
    Object.assign(row, { seconds, upSeconds: up.seconds, downSeconds: down.seconds, mbPerSec: throughput(set, seconds), bytesUploaded: up.bytes, bytesDownloaded: down.bytes });
    const problem = await sameTree(set.dir, destination);
    if (problem) row.error = `${peer.name} result is wrong: ${problem}`;
  } catch (err) {
    row.error = describeError(err);
  }
  return row;
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
 * one destination per peer, so each run starts from the previous one's
 * result. ferry and every peer see the same source state in each scenario;
 * a changed file is restored afterwards. 'no-change, CLI' runs ferry through
 * its CLI; the other scenarios start the workflow from this process.
 */
export async function benchSet(ctx: BenchContext, set: DataSet, scenarios: readonly Scenario[], options: { copyFloor: boolean }): Promise<SetRuns> {
  const progress = (text: string) => ctx.progress(`${set.name}: ${text}`);
  const sessionId = `bench-${set.name}-${Date.now()}`;
  const destination = (peer: Peer) => path.join(ctx.work, `${peer.name}-${set.name}`);
  const rows: ResultRow[] = [];
  const notes: string[] = [];
  const all = async (scenario: Scenario) => {
    progress(`ferry ${scenario}`);
    rows.push(scenario === 'no-change, CLI' ? await ferryCliRun(ctx, set, scenario, sessionId) : await ferryRun(ctx, set, scenario, sessionId));
    for (const peer of ctx.peers) {
      progress(`${peer.name} ${scenario}`);
      rows.push(await peerRun(set, scenario, peer, destination(peer)));
    }
  };
  try {
    if (options.copyFloor) {
      progress('cp -r');
      rows.push(await cpRun(ctx, set));
    }
    for (const scenario of scenarios) {
      if (scenario !== 'one file changed') {
        await all(scenario);
        continue;
      }
      const mutation = await mutateOneFile(ctx.dataRoot, set);
      try {
        notes.push(`${set.name} one file changed: rewrote ${formatBytes(mutation.bytesChanged)} of ${mutation.path} in place`);
        await all(scenario);
      } finally {
        await restoreDataSet(ctx.dataRoot, set, mutation);
      }
    }
  } finally {
    await removeSession(ctx.stack, sessionId);
    for (const peer of ctx.peers) await rm(destination(peer), { recursive: true, force: true });
  }
  fillRatios(rows);
  return { rows, notes };
}

const isPeer = (tool: Tool): tool is PeerName => (PEER_NAMES as readonly string[]).includes(tool);

/** The fastest of `names` that ran without error in this set and scenario. */
function fastestPeer(rows: ResultRow[], set: string, scenario: Scenario, names: readonly PeerName[] = PEER_NAMES): ResultRow | undefined {
  const runs = rows.filter((r) => isPeer(r.tool) && names.includes(r.tool) && r.set === set && r.scenario === scenario && !r.error && r.seconds !== null);
  return runs.sort((a, b) => a.seconds! - b.seconds!)[0];
}

/** ferry seconds / the faster peer's seconds, per set and scenario. */
function fillRatios(rows: ResultRow[]): void {
  for (const row of rows) {
    if ((row.tool !== 'ferry' && row.tool !== 'ferry CLI') || row.seconds === null || row.error) continue;
    const peer = fastestPeer(rows, row.set, row.scenario);
    if (!peer) continue;
    row.ratio = row.seconds / peer.seconds!;
    row.ratioPeer = peer.tool as PeerName;
  }
}

export const rowErrors = (rows: ResultRow[]) => rows.filter((r) => r.error).map((r) => `${r.set} / ${r.scenario} / ${r.tool}: ${r.error}`);

/** The two tables every set of sync runs prints. */
export function syncRunsReport(runs: SetRuns, missingPeers: MissingPeer[]): string {
  return (
    resultsTable(runs.rows) +
    'MB = 10^6 bytes; MB/s = data-set bytes / seconds (also for no-change and one-file-changed runs).\n' +
    'Peers: upload to S3, then download into a folder, one process each (up s, down s); seconds = both; bytes from their own output.\n' +
    'rclone: --transfers 8 --checkers 16; s5cmd: its defaults (256 workers). Both mirror (rclone sync, s5cmd sync --delete).\n' +
    'ferry/faster peer = ferry seconds / the faster peer\'s seconds in the same set and scenario.\n' +
    missingPeersText(missingPeers) +
    '\nferry per step (seconds; "other" = wall time outside the four activities: workflow start, scheduling, result, and for\n' +
    'the CLI its process start and connection; "node cpu s" = CPU time of this process, which hosts the worker (the runtime\n' +
    'agent runs as its own process), during the sync):\n' +
    ferryStepsTable(runs.rows) +
    (runs.notes.length ? `\n${runs.notes.join('\n')}\n` : '')
  );
}

const missingPeersText = (missing: MissingPeer[]) => missing.map((m) => `NOT RUN: ${m.name} (${m.reason})\n`).join('');

/** A row's seconds for the summary, or FAILED. */
export const secondsText = (row: ResultRow | undefined, suffix = '') => (!row || row.error || row.seconds === null ? 'FAILED' : `${fixed(row.seconds, 2)} s${suffix}`);

/**
 * ferry (in-process or through its CLI) against the faster of `against`
 * in one set and scenario: ratio ≤ `goal`. Missed when a peer it is judged
 * against did not run or failed: the faster peer is then unknown.
 */
function peerTarget(ctx: BenchContext, rows: ResultRow[], set: DataSet, scenario: Scenario, label: string, goal: number, against: readonly PeerName[]): Target {
  const ferry = rows.find((r) => (r.tool === 'ferry' || r.tool === 'ferry CLI') && r.set === set.name && r.scenario === scenario);
  const missing = ctx.missingPeers.filter((m) => against.includes(m.name)).map((m) => m.name);
  const failed = against.filter((name) => rows.some((r) => r.tool === name && r.set === set.name && r.scenario === scenario && r.error));
  const peer = fastestPeer(rows, set.name, scenario, against);
  const ratio = ferry && !ferry.error && ferry.seconds !== null && peer && !missing.length && !failed.length ? ferry.seconds / peer.seconds! : null;
  const peerText = missing.length ? `${missing.join(', ')} not run` : failed.length ? `${failed.join(', ')} FAILED` : secondsText(peer, ` ${peer?.tool ?? ''}`);
  return {
    section: 'sync',
    target: `${label} ${set.name} (${fileCount(set.files)}, ${formatBytes(set.bytes)})`,
    ferry: secondsText(ferry, ferry?.tool === 'ferry CLI' ? ' CLI' : ''),
    peer: peerText,
    value: ratioText(ratio),
    goal: `<= ${goal.toFixed(2)}x ${against.length > 1 ? 'faster peer' : against[0]}`,
    met: ratio !== null && ratio <= goal,
    measured: ratio,
  };
}

/** The S3 requests of one tool's cold sync of one set, counted through the proxy (untimed). */
export interface RequestRow {
  set: string;
  tool: 'ferry' | PeerName;
  up: DirectionRequests | null;
  down: DirectionRequests | null;
  error?: string;
}

/**
 * Cold syncs of `set` again, untimed, with every S3 request counted: ferry
 * on the counting rig (a store prefix of its own, so the sync is cold; up =
 * the worker's header-signed requests, down = the agent's presigned ones),
 * each peer to a fresh prefix (up = its upload process, down = its download).
 * Each copy is checked byte for byte, as in the timed runs.
 */
async function countedColdRuns(ctx: BenchContext, set: DataSet): Promise<RequestRow[]> {
  let rig: CountingRig;
  try {
    rig = await ctx.countingRig();
  } catch (err) {
    return [{ set: set.name, tool: 'ferry', up: null, down: null, error: `the counting rig did not start: ${describeError(err)}` }];
  }
  const rows: RequestRow[] = [];
  const sessionId = `bench-counted-${set.name}-${Date.now()}`;
  ctx.progress(`${set.name}: ferry cold, S3 requests counted`);
  try {
    const before = await rig.counts();
    const result = await rig.sync(sessionId, set.dir, ctx.options.timeoutSeconds * 1000);
    const after = await rig.counts();
    const problem = await sameTree(set.dir, rig.landedPath(result));
    rows.push({
      set: set.name,
      tool: 'ferry',
      up: requestsBetween(before, after, ['header'], 'requestBytes'),
      down: requestsBetween(before, after, ['presigned'], 'responseBytes'),
      ...(problem ? { error: `ferry result is wrong: ${problem}` } : {}),
    });
  } catch (err) {
    rows.push({ set: set.name, tool: 'ferry', up: null, down: null, error: describeError(err) });
  } finally {
    await rig.removeSession(sessionId);
  }
  for (const peer of ctx.peers) {
    ctx.progress(`${set.name}: ${peer.name} cold, S3 requests counted`);
    const counted = createPeer(peer.name, peer.binary, rig.s3, ctx.options.timeoutSeconds * 1000);
    const prefix = `${peer.name}-counted/${set.name}-${Date.now()}`;
    const destination = path.join(ctx.work, `${peer.name}-counted-${set.name}`);
    try {
      const before = await rig.counts();
      await counted.upload(set.dir, prefix);
      const between = await rig.counts();
      await counted.download(prefix, destination);
      const after = await rig.counts();
      const problem = await sameTree(set.dir, destination);
      rows.push({
        set: set.name,
        tool: peer.name,
        up: requestsBetween(before, between, ['header'], 'requestBytes'),
        down: requestsBetween(between, after, ['header'], 'responseBytes'),
        ...(problem ? { error: `${peer.name} result is wrong: ${problem}` } : {}),
      });
    } catch (err) {
      rows.push({ set: set.name, tool: peer.name, up: null, down: null, error: describeError(err) });
    } finally {
      await rm(destination, { recursive: true, force: true });
    }
  }
  return rows;
}

const per8MiBText = (direction: DirectionRequests | null) => {
  const value = direction ? requestsPer8MiB(direction) : null;
  return value === null ? '-' : fixed(value, value < 10 ? 2 : 0);
};

function requestsTable(rows: RequestRow[]): string {
  const requests = (d: DirectionRequests | null) => (d ? requestsText(d) : 'FAILED');
  return benchTable(
    ['set', 'tool', 'up: requests', 'bytes up', 'per 8 MiB', 'down: requests', 'bytes down', 'per 8 MiB', 'status >= 400'],
    rows.map((r) => [
      r.set,
      r.tool,
      requests(r.up),
      formatBytes(r.up?.bytes),
      per8MiBText(r.up),
      requests(r.down),
      formatBytes(r.down?.bytes),
      per8MiBText(r.down),
      r.up && r.down ? String(r.up.failed + r.down.failed) : '-',
    ]),
    [false, false, false, true, true, false, true, true, true],
  );
}

/** ferry's cold requests per 8 MiB each way, reported against the packing goal (not judged). */
function requestTarget(set: DataSet, row: RequestRow | undefined): Target {
  const measured = row && !row.error && row.up && row.down ? Math.max(requestsPer8MiB(row.up) ?? 0, requestsPer8MiB(row.down) ?? 0) : null;
  return {
    section: 'sync',
    target: `S3 requests, cold sync ${set.name}`,
    ferry: row?.up && row.down ? `${row.up.requests.toLocaleString('en-US')} up, ${row.down.requests.toLocaleString('en-US')} down` : 'FAILED',
    peer: '-',
    value: row?.up && row.down ? `${per8MiBText(row.up)} up, ${per8MiBText(row.down)} down per 8 MiB` : 'FAILED',
    goal: 'report (goal <= 1 per 8 MiB)',
    met: null,
    measured,
  };
}

export async function syncSection(ctx: BenchContext): Promise<SectionResult> {
  const runs: SetRuns = { rows: [], notes: [] };
  const requests: RequestRow[] = [];
  const small = await ctx.dataSet('small-tree');
  const smallRuns = await benchSet(ctx, small, ['cold', 'no-change', 'no-change, CLI', 'one file changed'], { copyFloor: true });
  requests.push(...(await countedColdRuns(ctx, small)));
  const large = await ctx.dataSet('large-files');
  const largeRuns = await benchSet(ctx, large, ['cold', 'no-change', 'one file changed'], { copyFloor: true });
  requests.push(...(await countedColdRuns(ctx, large)));
  for (const setRuns of [smallRuns, largeRuns]) {
    runs.rows.push(...setRuns.rows);
    runs.notes.push(...setRuns.notes);
  }
  const ferryRequests = (set: DataSet) => requests.find((r) => r.set === set.name && r.tool === 'ferry');
  const targets = [
    peerTarget(ctx, runs.rows, small, 'cold', 'cold sync', 0.8, PEER_NAMES),
    peerTarget(ctx, runs.rows, large, 'cold', 'cold sync', 1.0, PEER_NAMES),
    peerTarget(ctx, runs.rows, small, 'no-change, CLI', 'no-change re-sync through the CLI', 1.0, ['s5cmd']),
    peerTarget(ctx, runs.rows, small, 'no-change', 'no-change re-sync in-process', 0.25, ['rclone']),
    peerTarget(ctx, runs.rows, large, 'no-change', 'no-change re-sync in-process', 0.25, ['rclone']),
    requestTarget(small, ferryRequests(small)),
    requestTarget(large, ferryRequests(large)),
  ];
  const report =
    syncRunsReport(runs, ctx.missingPeers) +
    '\nS3 requests of a cold sync, counted in a second, untimed pass through a counting proxy (ferry: up = the worker\'s\n' +
    'header-signed requests, down = the target\'s presigned ones; peers: their upload and their download process):\n' +
    requestsTable(requests);
  return {
    data: { datasets: [small, large].map((s) => ({ name: s.name, files: s.files, bytes: s.bytes, params: s.params })), results: runs.rows, requests, notes: runs.notes, missingPeers: ctx.missingPeers },
    targets,
    errors: [...rowErrors(runs.rows), ...requests.filter((r) => r.error).map((r) => `${r.set} / counted cold / ${r.tool}: ${r.error}`)],
    report,
  };
}
