/** The benchmark's settings, all from BENCH_* environment variables (documented in bench/main.ts). */

export const SECTION_NAMES = ['cli', 'orchestration', 'sessions', 'sync', 'delta', 'hashing', 'tree'] as const;
export type SectionName = (typeof SECTION_NAMES)[number];

export interface BenchOptions {
  sections: SectionName[];
  smallFiles: number;
  largeFiles: number;
  largeMiB: number;
  deltaMiB: number;
  hashRuns: number;
  /** Timed runs of each CLI command in the cli section. */
  cliRuns: number;
  executes: number;
  oneFileSyncs: number;
  sessionLevels: number[];
  sessionFiles: number;
  treeFiles: number;
  /** Bound on each workflow, child snapshot and peer process, so a hang cannot hang the benchmark. */
  timeoutSeconds: number;
}

function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

function positiveIntList(name: string, fallback: number[]): number[] {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const values = raw.split(',').map((v) => Number(v.trim()));
  if (values.some((v) => !Number.isInteger(v) || v < 1)) throw new Error(`${name} must be a comma list of positive integers, got ${JSON.stringify(raw)}`);
  return values;
}

function sectionList(): SectionName[] {
  const raw = process.env.BENCH_SECTIONS;
  if (raw === undefined || raw.trim() === '') return [...SECTION_NAMES];
  const wanted = raw.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = wanted.filter((s) => !(SECTION_NAMES as readonly string[]).includes(s));
  if (unknown.length) throw new Error(`BENCH_SECTIONS: unknown section(s) ${unknown.join(', ')} (known: ${SECTION_NAMES.join(', ')})`);
  // Always in the canonical order, whatever order they were listed in.
  return SECTION_NAMES.filter((s) => wanted.includes(s));
}

export function readOptions(): BenchOptions {
  return {
    sections: sectionList(),
    smallFiles: positiveInt('BENCH_SMALL_FILES', 2000),
    largeFiles: positiveInt('BENCH_LARGE_FILES', 3),
    largeMiB: positiveInt('BENCH_LARGE_MB', 64),
    deltaMiB: positiveInt('BENCH_DELTA_MB', 500),
    hashRuns: positiveInt('BENCH_HASH_RUNS', 3),
    cliRuns: positiveInt('BENCH_CLI_RUNS', 20),
    executes: positiveInt('BENCH_EXECUTES', 200),
    oneFileSyncs: positiveInt('BENCH_SYNCS', 20),
    sessionLevels: positiveIntList('BENCH_SESSION_LEVELS', [50, 100, 200]),
    sessionFiles: positiveInt('BENCH_SESSION_FILES', 50),
    treeFiles: positiveInt('BENCH_TREE_FILES', 100_000),
    timeoutSeconds: positiveInt('BENCH_SYNC_TIMEOUT_S', 900),
  };
}
