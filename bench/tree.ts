/**
 * The `tree` section: one snapshot of BENCH_TREE_FILES (100,000) 100-byte
 * files (goal: ≤ 8 s and ≤ 200 MiB peak RSS), in a child process (bench/treeSnapshot.ts) so its peak RSS is the
 * snapshot's own and not this process's, which hosts the worker. The
 * manifest must be in S3 (the workflow history only carries its key) and
 * must list every file with the right sha256.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { createS3Clients } from '../activities/s3BlobStore';
import { seededBuffer, type DataSet } from './data';
import { runProcess } from './processes';
import { benchTable, fileCount, fixed, formatBytes } from './report';
import type { Target } from './results';
import type { BenchContext, SectionResult } from './section';
import { describeError } from './workflows';

/** The one JSON line bench/treeSnapshot.ts prints. */
export interface TreeSnapshotReport {
  seconds: number;
  /** RSS after start-up, before the snapshot: what the child costs doing nothing. */
  rssBeforeBytes: number;
  /** process.resourceUsage().maxRSS, in bytes. */
  maxRssBytes: number;
  filesTotal: number;
  bytesTotal: number;
  manifestKey: string;
  manifestDigest: string;
}

const MiB = 2 ** 20;

/** The goals for the snapshot of the large tree. */
const TREE_SECONDS_GOAL = 8;
const TREE_RSS_GOAL_MIB = 200;

/** Every manifest entry against the bytes the data set's plan says the file holds. */
async function manifestProblem(ctx: BenchContext, set: DataSet, manifestDigest: string): Promise<string | undefined> {
  if (set.params.kind !== 'small') return `${set.name} is not a tree`;
  const { seed } = set.params;
  const manifest = await ctx.stack.blobs.getManifest(manifestDigest);
  if (manifest.files.length !== set.files) return `the manifest lists ${manifest.files.length} files, the tree has ${set.files}`;
  const sizes = new Map(set.specs.map((s) => [s.path, s.size]));
  const wrong = manifest.files.filter((entry) => {
    const size = sizes.get(entry.path);
    return size === undefined || entry.size !== size || createHash('sha256').update(seededBuffer(seed, entry.path, 'original', size)).digest('hex') !== entry.sha256;
  });
  return wrong.length ? `${wrong.length} manifest entries are wrong, e.g. ${wrong[0].path}` : undefined;
}

/** The stored manifest's size, from a HEAD of its key. */
async function storedManifestBytes(ctx: BenchContext, key: string): Promise<number> {
  const { client } = createS3Clients(ctx.stack.config.s3);
  try {
    const head = await client.send(new HeadObjectCommand({ Bucket: ctx.stack.config.s3.bucket, Key: key }));
    return head.ContentLength ?? 0;
  } finally {
    client.destroy();
  }
}

export async function treeSection(ctx: BenchContext): Promise<SectionResult> {
  const set = await ctx.dataSet('large-tree');
  const label = `snapshot of ${fileCount(set.files)} (child process)`;
  ctx.progress(`tree: snapshot of ${set.files} files in a child process`);
  try {
    const child = await runProcess(process.execPath, [path.join(__dirname, 'treeSnapshot.js'), set.dir], { ...process.env, ...ctx.stack.settings }, ctx.options.timeoutSeconds * 1000);
    const snapshot = JSON.parse(child.stdout.trim().split('\n').at(-1) ?? '') as TreeSnapshotReport;
    if (snapshot.filesTotal !== set.files || snapshot.bytesTotal !== set.bytes) {
      throw new Error(`the snapshot counted ${snapshot.filesTotal} files / ${snapshot.bytesTotal} bytes, the tree has ${set.files} / ${set.bytes}`);
    }
    const manifestBytes = await storedManifestBytes(ctx, snapshot.manifestKey);
    const problem = await manifestProblem(ctx, set, snapshot.manifestDigest);
    if (problem) throw new Error(problem);
    const peakMiB = snapshot.maxRssBytes / MiB;
    const ferry = `${fixed(snapshot.seconds, 1)} s, peak RSS ${fixed(peakMiB, 0)} MiB`;
    const targets: Target[] = [
      { section: 'tree', target: `${label}: seconds`, ferry, peer: '-', value: `${fixed(snapshot.seconds, 1)} s`, goal: `<= ${TREE_SECONDS_GOAL} s`, met: snapshot.seconds <= TREE_SECONDS_GOAL, measured: snapshot.seconds },
      { section: 'tree', target: `${label}: peak RSS`, ferry, peer: '-', value: `${fixed(peakMiB, 0)} MiB`, goal: `<= ${TREE_RSS_GOAL_MIB} MiB`, met: peakMiB <= TREE_RSS_GOAL_MIB, measured: peakMiB },
    ];
    const report =
      benchTable(
        ['files', 'bytes', 'snapshot s', 'files/s', 'RSS before MiB', 'peak RSS MiB', 'manifest in S3'],
        [[String(set.files), formatBytes(set.bytes), fixed(snapshot.seconds, 2), fixed(set.files / snapshot.seconds, 0), fixed(snapshot.rssBeforeBytes / MiB, 0), fixed(peakMiB, 0), `${formatBytes(manifestBytes)} at ${snapshot.manifestKey}`]],
        [true, true, true, true, true, true, false],
      ) + 'Every manifest entry checked against the bytes the data set was generated from.\n';
    return { data: { dataset: { name: set.name, files: set.files, bytes: set.bytes, params: set.params }, snapshot, manifestBytes }, targets, errors: [], report };
  } catch (err) {
    const error = `tree snapshot: ${describeError(err)}`;
    return {
      data: { dataset: { name: set.name, files: set.files, bytes: set.bytes, params: set.params }, error },
      targets: [
        { section: 'tree', target: `${label}: seconds`, ferry: 'FAILED', peer: '-', value: 'FAILED', goal: `<= ${TREE_SECONDS_GOAL} s`, met: false, measured: null },
        { section: 'tree', target: `${label}: peak RSS`, ferry: 'FAILED', peer: '-', value: 'FAILED', goal: `<= ${TREE_RSS_GOAL_MIB} MiB`, met: false, measured: null },
      ],
      errors: [error],
      report: `${error}\n`,
    };
  }
}
