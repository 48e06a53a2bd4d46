/** Plain-text tables for the benchmark's stdout. MB means 10^6 bytes throughout. */
import type { StepDurations } from '../core/sync';
import { renderTable } from '../client/format';
import type { PeerName } from './processes';
import type { Target } from './results';

export type Scenario = 'cold' | 'no-change' | 'no-change, CLI' | 'one file changed';
/** `ferry`: the workflow started in this process; `ferry CLI`: `node bin/ferry.js sync` as its own process. */
export type Tool = 'cp -r' | 'ferry' | 'ferry CLI' | PeerName;

export interface ResultRow {
  set: string;
  scenario: Scenario;
  tool: Tool;
  /** Wall time (for a peer: its upload and its download process, one after the other); null when the run failed. */
  seconds: number | null;
  /** Peers only: the upload and the download process. */
  upSeconds?: number | null;
  downSeconds?: number | null;
  /** Data-set bytes / seconds, in MB/s: the same denominator for every scenario, so rows compare directly. */
  mbPerSec: number | null;
  /** null when not applicable (cp) or unknown. */
  bytesUploaded: number | null;
  /** ferry rows: seconds / the faster peer's seconds in the same set and scenario. */
  ratio: number | null;
  /** The peer `ratio` is taken against. */
  ratioPeer?: PeerName;
  bytesDownloaded?: number | null;
  /** ferry only: the workflow's own per-step timings and counters. */
  ferry?: {
    workflowId: string;
    /** CPU time of the benchmark process (which hosts the worker; the runtime agent runs apart) during the sync. */
    processCpuSeconds: number;
    durationsMs: StepDurations;
    filesTotal: number;
    blobsUploaded: number;
    filesLanded: number;
    bytesLanded: number;
    bytesReused: number;
    filesVerified: number;
  };
  error?: string;
}

export const MB = 1e6;

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '-';
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < MB) return `${(bytes / 1e3).toFixed(1)} kB`;
  if (bytes < 1e9) return `${(bytes / MB).toFixed(1)} MB`;
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

export const fixed = (value: number | null | undefined, digits: number) => (value === null || value === undefined ? '-' : value.toFixed(digits));

/** An aligned table with a line under the headers; `right` marks numeric columns. */
export function benchTable(headers: string[], rows: string[][], right: boolean[]): string {
  return `${renderTable(headers, rows, { alignRight: right, underline: true })}\n`;
}

export function resultsTable(rows: ResultRow[]): string {
  return benchTable(
    ['set', 'scenario', 'tool', 'seconds', 'up s', 'down s', 'MB/s', 'bytes up', 'bytes down', 'ferry/faster peer'],
    rows.map((r) => [
      r.set,
      r.scenario,
      r.tool,
      r.error ? 'FAILED' : fixed(r.seconds, 2),
      fixed(r.upSeconds, 2),
      fixed(r.downSeconds, 2),
      fixed(r.mbPerSec, 1),
      formatBytes(r.bytesUploaded),
      formatBytes(r.bytesDownloaded),
      r.ratio === null ? '' : `${r.ratio.toFixed(2)}x ${r.ratioPeer ?? ''}`.trim(),
    ]),
    [false, false, false, true, true, true, true, true, true, true],
  );
}

/** Where ferry's wall time goes: the workflow's step timings, and the rest (scheduling, start, result). */
export function ferryStepsTable(rows: ResultRow[]): string {
  const ferryRows = rows.filter((r) => r.ferry && r.seconds !== null);
  return benchTable(
    ['set', 'scenario', 'tool', 'wall s', 'snapshot', 'upload', 'land', 'verify', 'other', 'node cpu s', 'files landed', 'bytes landed'],
    ferryRows.map((r) => {
      const d = r.ferry!.durationsMs;
      const steps = d.snapshotSource + d.uploadBlobs + d.landManifest + d.verifyLanding;
      const s = (ms: number) => (ms / 1000).toFixed(2);
      return [
        r.set,
        r.scenario,
        r.tool,
        fixed(r.seconds, 2),
        s(d.snapshotSource),
        s(d.uploadBlobs),
        s(d.landManifest),
        s(d.verifyLanding),
        s(r.seconds! * 1000 - steps),
        r.ferry!.processCpuSeconds.toFixed(2),
        String(r.ferry!.filesLanded),
        formatBytes(r.ferry!.bytesLanded),
      ];
    }),
    [false, false, false, true, true, true, true, true, true, true, true, true],
  );
}

/** `0.42x`, or FAILED when there is no ratio. */
export const ratioText = (ratio: number | null) => (ratio === null ? 'FAILED' : `${ratio.toFixed(2)}x`);

/** The one table the whole run ends with: every target, what was measured and whether it was met. */
export function summaryTable(targets: Target[]): string {
  return benchTable(
    ['target', 'ferry', 'peer', 'ratio (or value)', 'goal', 'met'],
    targets.map((t) => [t.target, t.ferry, t.peer, t.value, t.goal, t.met === null ? '-' : t.met ? 'yes' : 'no']),
    [false, false, false, true, false, false],
  );
}

/** `1 file`, `2,000 files`. */
export const fileCount = (n: number) => `${n.toLocaleString('en-US')} file${n === 1 ? '' : 's'}`;
