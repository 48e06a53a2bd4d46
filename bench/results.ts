/**
 * bench/results.json: what one `npm run bench` measured, per section, and
 * the targets judged from it. `npm run bench:check` reads only this file.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BenchOptions, SectionName } from './options';

/** One row of the summary: a goal from the issue and whether this run met it. */
export interface Target {
  section: SectionName;
  target: string;
  ferry: string;
  peer: string;
  /** The ratio or value the goal is judged on, formatted. */
  value: string;
  goal: string;
  /** null: reported only, no goal to meet. */
  met: boolean | null;
  /** The number behind `value` (a ratio, bytes, ...), null when the measurement failed. */
  measured: number | null;
}

export interface SectionRecord {
  measuredAt: string;
  /** Raw figures of the section, as it reports them. */
  data: unknown;
  targets: Target[];
  errors: string[];
}

export interface ResultsFile {
  version: typeof RESULTS_VERSION;
  timestamp: string;
  options: BenchOptions;
  machine: unknown;
  /** Sections this run measured; other entries of `sections` were kept from an earlier run (see their measuredAt). */
  sectionsRun: SectionName[];
  sections: Partial<Record<SectionName, SectionRecord>>;
  targets: Target[];
  errors: string[];
}

export const RESULTS_VERSION = 3;

export const resultsPath = (root: string) => path.join(root, 'bench', 'results.json');

/** The results file, or undefined when there is none; throws when it is not this layout (an older bench wrote it). */
export async function readResults(root: string): Promise<ResultsFile | undefined> {
  let text: string;
  try {
    text = await readFile(resultsPath(root), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const parsed = JSON.parse(text) as Partial<ResultsFile>;
  if (parsed.version !== RESULTS_VERSION) throw new Error(`${resultsPath(root)} is not a results file of this benchmark (layout ${String(parsed.version ?? 1)}, expected ${RESULTS_VERSION}): run npm run bench`);
  return parsed as ResultsFile;
}

export async function writeResults(root: string, results: ResultsFile): Promise<void> {
  await writeFile(resultsPath(root), `${JSON.stringify(results, null, 2)}\n`);
}

/** Targets that have a goal and did not meet it (a failed measurement counts as missed). */
export const missedTargets = (targets: Target[]) => targets.filter((t) => t.met === false);
