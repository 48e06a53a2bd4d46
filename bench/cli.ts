/**
 * The `cli` section: how long the `ferry` command takes to start and answer,
 * as a user runs it from a checkout (`node bin/ferry.js`, not `npx`, which
 * adds its own second): `--version` and `sync --help`, each BENCH_CLI_RUNS
 * (20) times after one untimed run that warms the page cache. Wall time
 * from spawn to exit; each run's output is checked.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { repoRoot } from '../client/tools';
import { runProcess } from './processes';
import { benchTable, fixed } from './report';
import type { Target } from './results';
import type { BenchContext, SectionResult } from './section';
import { median, percentile } from './stats';
import { ferryBin } from './sync';
import { describeError } from './workflows';

/** The goal for both commands, median wall time. */
const CLI_START_GOAL_MS = 150;

interface CommandTiming {
  command: string;
  /** Ascending. */
  samplesMs: number[];
  medianMs: number | null;
  p95Ms: number | null;
  error?: string;
}

async function timeCommand(ctx: BenchContext, args: string[], expected: (stdout: string) => boolean): Promise<CommandTiming> {
  const command = `node bin/ferry.js ${args.join(' ')}`;
  // No stack file to find: start-up must not depend on one.
  const env = { ...process.env, FERRY_HOME: path.join(ctx.work, 'cli-home') };
  const timing: CommandTiming = { command, samplesMs: [], medianMs: null, p95Ms: null };
  try {
    for (let run = 0; run <= ctx.options.cliRuns; run++) {
      const result = await runProcess(process.execPath, [ferryBin(), ...args], env, 60_000);
      if (!expected(result.stdout)) throw new Error(`${command} printed ${JSON.stringify(result.stdout.slice(0, 200))}`);
      // Run 0 warms the page cache and is not counted.
      if (run > 0) timing.samplesMs.push(result.seconds * 1000);
    }
    timing.samplesMs.sort((a, b) => a - b);
    timing.medianMs = median(timing.samplesMs);
    timing.p95Ms = percentile(timing.samplesMs, 95);
  } catch (err) {
    timing.error = describeError(err);
  }
  return timing;
}

export async function cliSection(ctx: BenchContext): Promise<SectionResult> {
  const { version } = JSON.parse(await readFile(path.join(repoRoot(), 'package.json'), 'utf8')) as { version: string };
  ctx.progress(`cli: --version and sync --help, ${ctx.options.cliRuns} runs each`);
  const timings = [
    await timeCommand(ctx, ['--version'], (stdout) => stdout.trim() === version),
    await timeCommand(ctx, ['sync', '--help'], (stdout) => stdout.startsWith('Usage: ferry sync')),
  ];
  const targets: Target[] = timings.map((t) => ({
    section: 'cli',
    target: `CLI start: ${t.command} (median of ${ctx.options.cliRuns})`,
    ferry: t.medianMs === null ? 'FAILED' : `${fixed(t.medianMs, 0)} ms (p95 ${fixed(t.p95Ms, 0)} ms)`,
    peer: '-',
    value: t.medianMs === null ? 'FAILED' : `${fixed(t.medianMs, 0)} ms`,
    goal: `<= ${CLI_START_GOAL_MS} ms`,
    met: t.medianMs !== null && t.medianMs <= CLI_START_GOAL_MS,
    measured: t.medianMs,
  }));
  const report =
    benchTable(
      ['command', 'runs', 'min ms', 'median ms', 'p95 ms'],
      timings.map((t) => [t.command, String(t.samplesMs.length), t.medianMs === null ? 'FAILED' : fixed(t.samplesMs[0], 0), fixed(t.medianMs, 0), fixed(t.p95Ms, 0)]),
      [false, true, true, true, true],
    ) + 'Wall time from spawn to exit, one untimed warm-up run first; `npx ferry` adds npm\'s own start-up on top.\n';
  return {
    data: { goalMs: CLI_START_GOAL_MS, commands: timings },
    targets,
    errors: timings.filter((t) => t.error).map((t) => `cli ${t.command}: ${t.error}`),
    report,
  };
}
