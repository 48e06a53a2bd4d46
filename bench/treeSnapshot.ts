/**
 * Child process of the benchmark's `tree` section: one snapshotSource of the
 * folder given as the first argument, alone in its process, so
 * process.resourceUsage().maxRSS is the snapshot's own peak. The blob store
 * comes from the FERRY_* settings in the environment, as a worker's would.
 * Prints one JSON line (TreeSnapshotReport) on stdout.
 */
import { resolveConfig } from '../core/config';
import { activityDepsFromConfig } from '../worker/worker';
import { timedSnapshot } from './snapshot';
import type { TreeSnapshotReport } from './tree';

async function main(): Promise<TreeSnapshotReport> {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: node dist/bench/treeSnapshot.js <folder>');
  const { blobs } = activityDepsFromConfig(resolveConfig(process.env));
  const rssBeforeBytes = process.memoryUsage().rss;
  const { seconds, result } = await timedSnapshot(blobs, dir);
  return {
    seconds,
    rssBeforeBytes,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    filesTotal: result.filesTotal,
    bytesTotal: result.bytesTotal,
    manifestKey: result.manifestKey,
    manifestDigest: result.manifestDigest,
  };
}

main().then(
  // Explicit exit once the line is out: open S3 sockets would keep the process alive.
  (report) => process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0)),
  (err: unknown) => {
    process.stderr.write(`tree snapshot failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
