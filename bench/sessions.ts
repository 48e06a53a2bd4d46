/**
 * `npm run bench:sessions`: many sessions on one worker. For each level
 * (BENCH_SESSION_LEVELS, default 50,100,200) that many syncWorkflows start at
 * once, each syncing its own folder of BENCH_SESSION_FILES (50) small files
 * into its own session; all must verify. Reports wall time, files/s and the
 * peak RSS of this process, which hosts the worker (the agent runs apart).
 * Worker settings are the SDK defaults ferry ships with (see README).
 * Output: a table on stdout, merged into bench/results.json under "sessions".
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { repoRoot } from '../client/services';
import type { SyncResult } from '../core/sync';
import { startTestStack } from '../test/support/testStack';

function levels(): number[] {
  const raw = process.env.BENCH_SESSION_LEVELS ?? '50,100,200';
  const parsed = raw.split(',').map((v) => Number(v.trim()));
  if (parsed.some((v) => !Number.isInteger(v) || v < 1)) throw new Error(`BENCH_SESSION_LEVELS must be positive integers, got ${JSON.stringify(raw)}`);
  return parsed;
}

async function writeSessionFolder(dir: string, files: number, seed: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < files; i++) await writeFile(path.join(dir, `f${i}.txt`), `session ${seed} file ${i}\n`.repeat(20 + (i % 7)));
}

async function main(): Promise<void> {
  const filesPerSession = Number(process.env.BENCH_SESSION_FILES ?? 50);
  const stack = await startTestStack({ agentProcess: true });
  const work = await mkdtemp(path.join(os.tmpdir(), 'ferry-bench-sessions-'));
  const rows: { sessions: number; wallSeconds: number; filesPerSecond: number; peakRssMiB: number; secondsPerSession: number }[] = [];
  try {
    for (const level of levels()) {
      const folders = await Promise.all(
        Array.from({ length: level }, async (_, i) => {
          const dir = path.join(work, `level-${level}`, `s${i}`);
          await writeSessionFolder(dir, filesPerSession, level * 1000 + i);
          return dir;
        }),
      );
      let peakRss = process.memoryUsage().rss;
      const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 100);
      const started = performance.now();
      const results = await Promise.all(
        folders.map(async (dir, i) => {
          const handle = await stack.client.workflow.start('syncWorkflow', {
            taskQueue: stack.config.temporal.taskQueue,
            workflowId: `bench-sessions-${level}-${i}-${Date.now()}`,
            args: [{ sessionId: `bench-${level}-${i}`, source: { path: dir } }],
          });
          return (await handle.result()) as SyncResult;
        }),
      );
      const wallSeconds = (performance.now() - started) / 1000;
      clearInterval(sampler);
      const verified = results.filter((r) => r.verified && r.filesVerified === filesPerSession).length;
      if (verified !== level) throw new Error(`${level - verified} of ${level} sessions did not verify all ${filesPerSession} files`);
      rows.push({ sessions: level, wallSeconds, filesPerSecond: (level * filesPerSession) / wallSeconds, peakRssMiB: peakRss / 2 ** 20, secondsPerSession: wallSeconds / level });
    }
    const lines = [
      'sessions  files  wall s  files/s  s/session  peak RSS MiB',
      ...rows.map((r) => `${String(r.sessions).padStart(8)}  ${String(r.sessions * filesPerSession).padStart(5)}  ${r.wallSeconds.toFixed(1).padStart(6)}  ${r.filesPerSecond.toFixed(0).padStart(7)}  ${r.secondsPerSession.toFixed(3).padStart(9)}  ${r.peakRssMiB.toFixed(0).padStart(12)}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    const resultsFile = path.join(repoRoot(), 'bench', 'results.json');
    const previous = JSON.parse(await readFile(resultsFile, 'utf8').catch(() => '{}')) as Record<string, unknown>;
    await writeFile(resultsFile, `${JSON.stringify({ ...previous, sessions: { measuredAt: new Date().toISOString(), filesPerSession, rows } }, null, 2)}\n`);
  } finally {
    await stack.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
