/**
 * The `delta` section: a 1 MiB edit in the middle of one large file
 * (BENCH_DELTA_MB MiB, default 500). ferry and the peers sync the file cold
 * first, then the edited file; ferry should send only the chunks around the
 * edit, the peers re-send the whole file. The file is restored afterwards.
 */
import { fixed, formatBytes, type ResultRow } from './report';
import type { Target } from './results';
import type { BenchContext, SectionResult } from './section';
import { benchSet, rowErrors, secondsText, syncRunsReport } from './sync';

/** What ferry may upload for the edit: the goal. */
const DELTA_UPLOAD_GOAL_BYTES = 5e6;

export async function deltaSection(ctx: BenchContext): Promise<SectionResult> {
  const set = await ctx.dataSet('delta-file');
  const runs = await benchSet(ctx, set, ['cold', 'one file changed'], { copyFloor: false });
  const edited = (tool: ResultRow['tool']) => runs.rows.find((r) => r.scenario === 'one file changed' && r.tool === tool);
  const ferry = edited('ferry');
  const peers = runs.rows.filter((r) => r.scenario === 'one file changed' && r.tool !== 'ferry');
  const ferryBytes = ferry && !ferry.error ? ferry.bytesUploaded : null;
  const target: Target = {
    section: 'delta',
    target: `1 MiB edit mid-file in a ${set.bytes / 2 ** 20} MiB file: bytes uploaded`,
    ferry: ferryBytes === null ? 'FAILED' : `${formatBytes(ferryBytes)} up, ${formatBytes(ferry!.bytesDownloaded ?? null)} down, ${fixed(ferry!.seconds, 2)} s`,
    peer: peers.length ? peers.map((p) => (p.error ? `${p.tool} FAILED` : `${p.tool} ${formatBytes(p.bytesUploaded)} up, ${secondsText(p)}`)).join('; ') : 'no peer ran',
    value: ferryBytes === null ? 'FAILED' : formatBytes(ferryBytes),
    goal: `<= ${formatBytes(DELTA_UPLOAD_GOAL_BYTES)} uploaded`,
    met: ferryBytes !== null && ferryBytes <= DELTA_UPLOAD_GOAL_BYTES,
    measured: ferryBytes,
  };
  return {
    data: { dataset: { name: set.name, files: set.files, bytes: set.bytes, params: set.params }, uploadGoalBytes: DELTA_UPLOAD_GOAL_BYTES, results: runs.rows, notes: runs.notes },
    targets: [target],
    errors: rowErrors(runs.rows),
    report: syncRunsReport(runs, ctx.missingPeers),
  };
}
