/** Plain-text tables for terminal output. */
export function renderTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column])))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** `HH:MM:SS.mmm` in UTC: timelines compare times within one run. */
export function clockTime(iso: string | undefined): string {
  return iso ? iso.slice(11, 23) : '-';
}
