/**
 * `node dist/bench/profileSummary.js <file.cpuprofile> [rows]`: where a CPU
 * profile's time went, as two tables: time spent in each function itself,
 * and time including what it called (each function counted once per
 * sample, so recursion does not inflate it).
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function label(node: ProfileNode): string {
  const file = node.callFrame.url.split('/').slice(-2).join('/');
  return `${node.callFrame.functionName || '(anonymous)'} ${file}:${node.callFrame.lineNumber + 1}`;
}

function table(title: string, totals: Map<string, number>, all: number, rows: number): string {
  const lines = [...totals]
    .sort((a, b) => b[1] - a[1])
    .slice(0, rows)
    .map(([name, micros]) => `${(micros / 1000).toFixed(0).padStart(8)} ms ${((100 * micros) / all).toFixed(1).padStart(5)}%  ${name}`);
  return `${title}\n${lines.join('\n')}\n`;
}

async function main(): Promise<void> {
  const [file, rowsText = '30'] = process.argv.slice(2);
  if (!file) throw new Error('usage: profileSummary.js <file.cpuprofile> [rows]');
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);

  const sampled = new Map<number, number>();
  profile.samples.forEach((id, index) => sampled.set(id, (sampled.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let all = 0;
  for (const [id, micros] of sampled) {
    all += micros;
    const name = label(nodes.get(id)!);
    self.set(name, (self.get(name) ?? 0) + micros);
    const seen = new Set<string>();
    for (let current: number | undefined = id; current !== undefined; current = parents.get(current)) {
      const ancestor = label(nodes.get(current)!);
      if (seen.has(ancestor)) continue;
      seen.add(ancestor);
      inclusive.set(ancestor, (inclusive.get(ancestor) ?? 0) + micros);
    }
  }
  const rows = Number(rowsText);
  process.stdout.write(`${(all / 1000).toFixed(0)} ms sampled\n${table('self', self, all, rows)}${table('including callees', inclusive, all, rows)}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${String(err)}\n`);
  process.exit(1);
});
