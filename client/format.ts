/** Plain-text tables and lines for terminal output, worded the same by every command. */
import { formatDurationMs } from '../core/duration';
import type { Gap } from '../core/history/gaps';
import type { StageLane } from '../core/history/stages';

export interface TableOptions {
  /** Columns to align right (numbers). */
  alignRight?: boolean[];
  /** A dashed line under the headers. */
  underline?: boolean;
}

export function renderTable(headers: string[], rows: string[][], options: TableOptions = {}): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));
  const last = headers.length - 1;
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (options.alignRight?.[column] ? cell.padStart(widths[column]) : column === last ? cell : cell.padEnd(widths[column])))
      .join('  ')
      .trimEnd();
  const underline = options.underline ? [widths.map((width) => '-'.repeat(width)).join('  ')] : [];
  return [line(headers), ...underline, ...rows.map(line)].join('\n');
}

/** `HH:MM:SS.mmm` in UTC: timelines compare times within one run. */
export function clockTime(iso: string | undefined): string {
  return iso ? iso.slice(11, 23) : '-';
}

/** A gap as `ferry timeline` and `ferry explain` print it: when, how long, its cause and why. */
export function gapLine(gap: Gap): string {
  return `⚠ ${clockTime(gap.from)} → ${gap.ongoing ? 'now' : clockTime(gap.to)} (${formatDurationMs(gap.durationMs)}) ${gap.cause}: ${gap.detail}`;
}

/** A pipeline's stages: how long each took and how it ended. */
export function stageTable(lanes: StageLane[]): string {
  const rows = lanes.map((lane) => [lane.name, lane.durationMs === undefined ? '-' : formatDurationMs(lane.durationMs), lane.outcome, lane.detail]);
  return renderTable(['STAGE', 'DURATION', 'OUTCOME', 'DETAIL'], rows);
}
