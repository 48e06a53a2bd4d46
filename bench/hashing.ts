/**
 * The `hashing` section: ferry's snapshot (walk + sha256 of every file +
 * manifest to S3) against `sha256sum` over the same files, on the large-file
 * set and on the delta section's one large file. Both read from a warm page
 * cache (every file is read once first, untimed), best of BENCH_HASH_RUNS
 * (3) each, runs interleaved so background noise hits both alike.
 */
import { open } from 'node:fs/promises';
import path from 'node:path';
import { type DataSet } from './data';
import { runProcess } from './processes';
import { MB, benchTable, fileCount, fixed, formatBytes, ratioText } from './report';
import type { Target } from './results';
import type { BenchContext, SectionResult } from './section';
import { timedSnapshot } from './snapshot';
import { describeError } from './workflows';

/** ferry's snapshot throughput must be at least this share of sha256sum's: the goal. */
const HASHING_GOAL = 0.7;

/** Reads every byte once, so the timed runs find the files in the page cache. */
async function readThrough(files: string[]): Promise<void> {
  const buffer = Buffer.alloc(4 << 20);
  for (const file of files) {
    const handle = await open(file, 'r');
    try {
      while ((await handle.read(buffer, 0, buffer.length, null)).bytesRead > 0);
    } finally {
      await handle.close();
    }
  }
}

/** One `sha256sum` process over all files: its seconds and the digest per file. */
async function sha256sumRun(files: string[]): Promise<{ seconds: number; digests: Map<string, string> }> {
  const run = await runProcess('sha256sum', ['--', ...files]);
  const digests = new Map<string, string>();
  for (const line of run.stdout.split('\n')) {
    const match = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (match) digests.set(match[2], match[1]);
  }
  return { seconds: run.seconds, digests };
}

interface FolderHashing {
  set: string;
  files: number;
  bytes: number;
  sha256sumSeconds: number[];
  ferrySeconds: number[];
  sha256sumMBps: number | null;
  ferryMBps: number | null;
  /** ferry MB/s / sha256sum MB/s, best run each. */
  ratio: number | null;
  error?: string;
}

/** Every digest in ferry's manifest must be the one sha256sum computed: a fast wrong hash is not a result. */
async function manifestProblem(ctx: BenchContext, set: DataSet, manifestDigest: string, expected: Map<string, string>): Promise<string | undefined> {
  const manifest = await ctx.stack.blobs.getManifest(manifestDigest);
  if (manifest.files.length !== set.files) return `ferry's manifest has ${manifest.files.length} files, the set has ${set.files}`;
  const wrong = manifest.files.filter((entry) => expected.get(path.join(set.dir, ...entry.path.split('/'))) !== entry.sha256);
  return wrong.length ? `ferry's sha256 differs from sha256sum's for ${wrong.map((e) => e.path).join(', ')}` : undefined;
}

async function hashFolder(ctx: BenchContext, set: DataSet): Promise<FolderHashing> {
  const files = set.specs.map((spec) => path.join(set.dir, ...spec.path.split('/')));
  const row: FolderHashing = { set: set.name, files: set.files, bytes: set.bytes, sha256sumSeconds: [], ferrySeconds: [], sha256sumMBps: null, ferryMBps: null, ratio: null };
  try {
    await readThrough(files);
    let expected: Map<string, string> | undefined;
    for (let run = 1; run <= ctx.options.hashRuns; run++) {
      ctx.progress(`hashing ${set.name}: run ${run} of ${ctx.options.hashRuns}`);
      const sums = await sha256sumRun(files);
      if (sums.digests.size !== files.length) throw new Error(`sha256sum printed ${sums.digests.size} digests for ${files.length} files`);
      expected ??= sums.digests;
      row.sha256sumSeconds.push(sums.seconds);
      const snapshot = await timedSnapshot(ctx.stack.blobs, set.dir);
      row.ferrySeconds.push(snapshot.seconds);
      const problem = await manifestProblem(ctx, set, snapshot.result.manifestDigest, expected);
      if (problem) throw new Error(problem);
    }
    const mbps = (seconds: number[]) => set.bytes / MB / Math.min(...seconds);
    row.sha256sumMBps = mbps(row.sha256sumSeconds);
    row.ferryMBps = mbps(row.ferrySeconds);
    row.ratio = row.ferryMBps / row.sha256sumMBps;
  } catch (err) {
    row.error = describeError(err);
  }
  return row;
}

export async function hashingSection(ctx: BenchContext): Promise<SectionResult> {
  const rows: FolderHashing[] = [];
  for (const name of ['large-files', 'delta-file'] as const) rows.push(await hashFolder(ctx, await ctx.dataSet(name)));
  const targets: Target[] = rows.map((r) => ({
    section: 'hashing',
    target: `snapshot hashing ${r.set} (${fileCount(r.files)}, ${formatBytes(r.bytes)})`,
    ferry: r.ferryMBps === null ? 'FAILED' : `${fixed(r.ferryMBps, 0)} MB/s`,
    peer: r.sha256sumMBps === null ? 'FAILED' : `${fixed(r.sha256sumMBps, 0)} MB/s sha256sum`,
    value: ratioText(r.ratio),
    goal: `>= ${HASHING_GOAL.toFixed(2)}x`,
    met: r.ratio !== null && r.ratio >= HASHING_GOAL,
    measured: r.ratio,
  }));
  const best = (seconds: number[]) => (seconds.length ? Math.min(...seconds) : null);
  const report =
    benchTable(
      ['set', 'files', 'size', 'sha256sum s', 'MB/s', 'ferry snapshot s', 'MB/s', 'ferry/sha256sum'],
      rows.map((r) => [r.set, String(r.files), formatBytes(r.bytes), r.error ? 'FAILED' : fixed(best(r.sha256sumSeconds), 2), fixed(r.sha256sumMBps, 0), r.error ? 'FAILED' : fixed(best(r.ferrySeconds), 2), fixed(r.ferryMBps, 0), r.ratio === null ? '' : ratioText(r.ratio)]),
      [false, true, true, true, true, true, true, true],
    ) +
    `Best of ${ctx.options.hashRuns} each, warm page cache. sha256sum: one process over all files, one after another; ferry: snapshotSource ` +
    'in this process (walk, sha256 at the product\'s own concurrency, manifest to S3), a new activities instance per run.\nEvery run\'s manifest digests are checked against sha256sum\'s.\n';
  return { data: { goal: HASHING_GOAL, runs: ctx.options.hashRuns, folders: rows }, targets, errors: rows.filter((r) => r.error).map((r) => `hashing ${r.set}: ${r.error}`), report };
}
