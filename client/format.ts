/** Plain-text tables for terminal output. */
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
