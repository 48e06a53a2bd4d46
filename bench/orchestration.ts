/**
 * The `orchestration` section (`npm run bench:orchestration`): what ferry's
 * durability costs per step.
 *   - the `execute` update round trip for `true` on the local target
 *     (checkSession + executeCode + log upload, through Temporal), BENCH_EXECUTES calls;
 *   - syncing one small file end to end (snapshot → upload → land → verify), BENCH_SYNCS runs;
 * against what the seed's hand-rolled code spent on the same jobs: a blind
 * `sleep(10)` before each use of a session, and a 20–60 s SSM sync.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { PipelineClient } from '../client/pipelineClient';
import { sameTree } from './data';
import { benchTable, fixed, ratioText } from './report';
import type { Target } from './results';
import type { BenchContext, SectionResult } from './section';
import { median, percentile } from './stats';
import { describeError, landedPath, removeSession, startSync, syncResult, withTimeout } from './workflows';

/** What the seed spent: a blind sleep before each use of a session, and an SSM sync's best case (20–60 s). */
const SEED_EXECUTE_MS = 10_000;
const SEED_SYNC_MS = 20_000;

interface StepTiming {
  what: string;
  /** Ascending. */
  samplesMs: number[];
  medianMs: number;
  p95Ms: number;
  seedMs: number;
  seed: string;
}

const timing = (what: string, samplesMs: number[], seedMs: number, seed: string): StepTiming => {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  return { what, samplesMs: sorted, medianMs: median(sorted), p95Ms: percentile(sorted, 95), seedMs, seed };
};

async function executeRoundTrips(ctx: BenchContext): Promise<number[]> {
  const { stack, options } = ctx;
  const pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
  const { workflowId } = await pipelines.start({ sessionId: `bench-orchestration-${Date.now()}`, stages: ['coder'], inputs: [] });
  // The first execution of a stage also re-hashes data/; warm up once so the samples are steady-state.
  await pipelines.execute(workflowId, { language: 'bash', code: 'true' });
  const samples: number[] = [];
  for (let i = 0; i < options.executes; i++) {
    const started = performance.now();
    const result = await pipelines.execute(workflowId, { language: 'bash', code: 'true' });
    samples.push(performance.now() - started);
    if (result.exitCode !== 0) throw new Error(`true exited ${result.exitCode}`);
  }
  await pipelines.finishStage(workflowId);
  await withTimeout(pipelines.result(workflowId), options.timeoutSeconds * 1000, async () => new Error(`pipeline ${workflowId}: no result after finishStage`));
  return samples;
}

/** One small file synced end to end, timed from start to verified result; each landing checked byte for byte, untimed. */
async function oneFileSyncs(ctx: BenchContext): Promise<number[]> {
  const { stack, options } = ctx;
  const source = path.join(ctx.work, 'one-file');
  const sessionId = `bench-one-file-${Date.now()}`;
  const samples: number[] = [];
  try {
    for (let i = 0; i < options.oneFileSyncs; i++) {
      await rm(source, { recursive: true, force: true });
      await mkdir(source, { recursive: true });
      await writeFile(path.join(source, 'config.json'), JSON.stringify({ run: i }));
      const started = performance.now();
      const result = await syncResult(await startSync(stack, `${sessionId}-${i}`, sessionId, source), options.timeoutSeconds * 1000);
      samples.push(performance.now() - started);
      const problem = result.verified ? await sameTree(source, landedPath(stack, result)) : 'sync not verified';
      if (problem) throw new Error(`one-file sync ${i}: ${problem}`);
    }
  } finally {
    await removeSession(stack, sessionId);
  }
  return samples;
}

function stepTarget(label: string, step: StepTiming | undefined, peer: string): Target {
  const ratio = step ? step.medianMs / step.seedMs : null;
  return {
    section: 'orchestration',
    target: label,
    ferry: step ? `${fixed(step.medianMs, 0)} ms (p95 ${fixed(step.p95Ms, 0)} ms)` : 'FAILED',
    peer,
    value: ratioText(ratio),
    goal: '<= 1.00x seed',
    met: ratio !== null && ratio <= 1,
    measured: ratio,
  };
}

export async function orchestrationSection(ctx: BenchContext): Promise<SectionResult> {
  const { options } = ctx;
  const errors: string[] = [];
  const measure = async (what: string, run: () => Promise<number[]>, seedMs: number, seed: string): Promise<StepTiming | undefined> => {
    ctx.progress(`orchestration: ${what}`);
    try {
      return timing(what, await run(), seedMs, seed);
    } catch (err) {
      errors.push(`orchestration ${what}: ${describeError(err)}`);
      return undefined;
    }
  };
  const execute = await measure(`execute "true" round trip (${options.executes} calls)`, () => executeRoundTrips(ctx), SEED_EXECUTE_MS, 'sleep(10) before each use');
  const sync = await measure(`sync one small file end to end (${options.oneFileSyncs} runs)`, () => oneFileSyncs(ctx), SEED_SYNC_MS, 'SSM sync, 20–60 s');
  const steps = [execute, sync].filter((s): s is StepTiming => s !== undefined);
  const report = benchTable(
    ['step', 'median ms', 'p95 ms', 'seed ms', 'ferry/seed (median)', 'seed'],
    steps.map((s) => [s.what, fixed(s.medianMs, 0), fixed(s.p95Ms, 0), String(s.seedMs), ratioText(s.medianMs / s.seedMs), s.seed]),
    [false, true, true, true, true, false],
  );
  return {
    data: { rows: steps },
    targets: [
      stepTarget(`execute "true" round trip (median of ${options.executes})`, execute, '10 s sleep (seed)'),
      stepTarget(`sync one small file end to end (median of ${options.oneFileSyncs})`, sync, '20-60 s SSM sync (seed, vs 20 s)'),
    ],
    errors,
    report,
  };
}
