/**
 * The `sessions` section (`npm run bench:sessions`): many sessions on one
 * worker. For each level (BENCH_SESSION_LEVELS, default 50,100,200) that many
 * syncWorkflows start at once, each syncing its own folder of
 * BENCH_SESSION_FILES (50) small files into its own session; all must
 * verify and land byte for byte. Reports wall time, files/s and the peak RSS
 * of this process, which hosts the worker (the agent runs apart), and how the
 * cost per session grows from the smallest level to the largest.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { sameTree } from './data';
import { benchTable, fileCount, fixed, ratioText } from './report';
import type { Target } from './results';
import type { BenchContext, SectionResult } from './section';
import { describeError, landedPath, removeSession, startSync, syncResult } from './workflows';

/** "About linear": the per-session cost at the largest level within this factor of the smallest's. */
const LINEAR_FACTOR = 2;

const MiB = 2 ** 20;

interface LevelRun {
  sessions: number;
  files: number;
  wallSeconds: number;
  filesPerSecond: number;
  secondsPerSession: number;
  rssBeforeMiB: number;
  peakRssMiB: number;
  failed: number;
  failures: string[];
}

async function writeSessionFolder(dir: string, files: number, seed: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < files; i++) await writeFile(path.join(dir, `f${i}.txt`), `session ${seed} file ${i}\n`.repeat(20 + (i % 7)));
}

async function runLevel(ctx: BenchContext, level: number): Promise<LevelRun> {
  const { stack, options } = ctx;
  const filesPerSession = options.sessionFiles;
  const root = path.join(ctx.work, `sessions-${level}`);
  const sessionIds = Array.from({ length: level }, (_, i) => `bench-sessions-${level}-${i}-${Date.now()}`);
  try {
    const folders = await Promise.all(
      sessionIds.map(async (_, i) => {
        const dir = path.join(root, `s${i}`);
        await writeSessionFolder(dir, filesPerSession, level * 1000 + i);
        return dir;
      }),
    );
    const rssBefore = process.memoryUsage().rss;
    let peakRss = rssBefore;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
    const started = performance.now();
    const settled = await Promise.allSettled(
      folders.map(async (dir, i) => syncResult(await startSync(stack, sessionIds[i], sessionIds[i], dir), options.timeoutSeconds * 1000)),
    );
    const wallSeconds = (performance.now() - started) / 1000;
    clearInterval(sampler);

    const failures: string[] = [];
    for (const [i, outcome] of settled.entries()) {
      if (outcome.status === 'rejected') failures.push(`${sessionIds[i]}: ${describeError(outcome.reason)}`);
      else if (!outcome.value.verified || outcome.value.filesVerified !== filesPerSession) failures.push(`${sessionIds[i]}: verified ${outcome.value.filesVerified} of ${filesPerSession} files`);
      else {
        const problem = await sameTree(folders[i], landedPath(stack, outcome.value));
        if (problem) failures.push(`${sessionIds[i]}: ${problem}`);
      }
    }
    return {
      sessions: level,
      files: level * filesPerSession,
      wallSeconds,
      filesPerSecond: (level * filesPerSession) / wallSeconds,
      secondsPerSession: wallSeconds / level,
      rssBeforeMiB: rssBefore / MiB,
      peakRssMiB: peakRss / MiB,
      failed: failures.length,
      failures,
    };
  } finally {
    await Promise.all(sessionIds.map((id) => removeSession(stack, id)));
    await rm(root, { recursive: true, force: true });
  }
}

/** The worker the sessions share: one, in this process, with ferry's own settings (worker/worker.ts, FERRY_WORKER_*). */
function workerSettings(ctx: BenchContext) {
  const tuning = ctx.stack.config.worker;
  return {
    workers: 1,
    maxConcurrentActivityTaskExecutions: tuning.maxConcurrentActivities,
    maxConcurrentWorkflowTaskExecutions: tuning.maxConcurrentWorkflowTasks,
    maxCachedWorkflows: tuning.maxCachedWorkflows ?? 'SDK default',
  };
}

export async function sessionsSection(ctx: BenchContext): Promise<SectionResult> {
  const levels = [...ctx.options.sessionLevels].sort((a, b) => a - b);
  const runs: LevelRun[] = [];
  const errors: string[] = [];
  for (const level of levels) {
    ctx.progress(`sessions: ${level} concurrent syncs`);
    try {
      const run = await runLevel(ctx, level);
      runs.push(run);
      if (run.failed) errors.push(`sessions ${level}: ${run.failed} of ${level} failed: ${run.failures.slice(0, 5).join('; ')}`);
    } catch (err) {
      errors.push(`sessions ${level}: ${describeError(err)}`);
    }
  }
  const smallest = runs.find((r) => r.sessions === levels[0]);
  const largest = runs.find((r) => r.sessions === levels[levels.length - 1]);
  const ratio = smallest && largest ? largest.secondsPerSession / smallest.secondsPerSession : null;
  const allSucceeded = runs.length === levels.length && runs.every((r) => r.failed === 0);
  const perSession = (run: LevelRun | undefined) => (run ? `${fixed(run.secondsPerSession, 3)} s/session at ${run.sessions}` : 'FAILED');
  const target: Target = {
    section: 'sessions',
    target: `per-session cost, ${levels[levels.length - 1]} vs ${levels[0]} concurrent syncs (${fileCount(ctx.options.sessionFiles)} each)`,
    ferry: perSession(largest),
    peer: perSession(smallest),
    value: ratioText(ratio),
    goal: `<= ${LINEAR_FACTOR.toFixed(2)}x, all succeed`,
    met: allSucceeded && ratio !== null && ratio <= LINEAR_FACTOR,
    measured: ratio,
  };
  const settings = workerSettings(ctx);
  const report =
    benchTable(
      ['sessions', 'files', 'wall s', 'files/s', 's/session', 'RSS before MiB', 'peak RSS MiB', 'failed'],
      runs.map((r) => [String(r.sessions), String(r.files), fixed(r.wallSeconds, 1), fixed(r.filesPerSecond, 0), fixed(r.secondsPerSession, 3), fixed(r.rssBeforeMiB, 0), fixed(r.peakRssMiB, 0), String(r.failed)]),
      [true, true, true, true, true, true, true, true],
    ) +
    `worker: ${settings.workers}, in this process; ${Object.entries(settings)
      .filter(([name]) => name !== 'workers')
      .map(([name, value]) => `${name} ${value}`)
      .join(', ')}\n`;
  return { data: { filesPerSession: ctx.options.sessionFiles, linearFactor: LINEAR_FACTOR, worker: settings, rows: runs }, targets: [target], errors, report };
}
