/**
 * `npm run bench:orchestration`: what ferry's durability costs per step.
 *   - the `execute` update round trip for `true` on the local target
 *     (checkSession + executeCode + log upload, through Temporal), BENCH_EXECUTES calls;
 *   - syncing one small file end to end (snapshot → upload → land → verify), BENCH_SYNCS runs;
 * against what the seed's hand-rolled code spent on the same jobs: a blind
 * `sleep(10)` before each use of a session, and a 20–60 s SSM sync.
 * Output: a table on stdout, merged into bench/results.json under "orchestration".
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { PipelineClient } from '../client/pipelineClient';
import { repoRoot } from '../client/services';
import type { SyncResult } from '../core/sync';
import { startTestStack } from '../test/support/testStack';

function positiveInt(name: string, fallback: number): number {
  const raw = process.env[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

export function percentile(sorted: number[], p: number): number {
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)];
}

async function timeEach(count: number, run: (i: number) => Promise<void>): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    await run(i);
    times.push(performance.now() - started);
  }
  return times.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  const executes = positiveInt('BENCH_EXECUTES', 200);
  const syncs = positiveInt('BENCH_SYNCS', 20);
  const stack = await startTestStack({ agentProcess: true });
  const work = await mkdtemp(path.join(os.tmpdir(), 'ferry-bench-orch-'));
  try {
    const pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
    const { workflowId } = await pipelines.start({ sessionId: 'bench', stages: ['coder'], inputs: [] });
    // The first execution of a stage also re-hashes data/; warm up once so the samples are steady-state.
    await pipelines.execute(workflowId, { language: 'bash', code: 'true' });
    const executeMs = await timeEach(executes, async () => {
      const result = await pipelines.execute(workflowId, { language: 'bash', code: 'true' });
      if (result.exitCode !== 0) throw new Error(`true exited ${result.exitCode}`);
    });
    await pipelines.finishStage(workflowId);
    await pipelines.result(workflowId);

    const source = path.join(work, 'one');
    const syncMs = await timeEach(syncs, async (i) => {
      await rm(source, { recursive: true, force: true });
      await mkdir(source, { recursive: true });
      await writeFile(path.join(source, 'config.json'), JSON.stringify({ run: i }));
      const handle = await stack.client.workflow.start('syncWorkflow', {
        taskQueue: stack.config.temporal.taskQueue,
        workflowId: `bench-one-file-${i}-${Date.now()}`,
        args: [{ sessionId: 'bench-one', source: { path: source } }],
      });
      const result = (await handle.result()) as SyncResult;
      if (!result.verified) throw new Error('sync not verified');
    });

    const rows = [
      { what: `execute "true" round trip (${executes} calls)`, medianMs: percentile(executeMs, 50), p95Ms: percentile(executeMs, 95), seedMs: 10_000, seed: 'sleep(10) before each use' },
      { what: `sync one small file end to end (${syncs} runs)`, medianMs: percentile(syncMs, 50), p95Ms: percentile(syncMs, 95), seedMs: 20_000, seed: 'SSM sync, 20–60 s' },
    ];
    const lines = [
      'step                                        median ms   p95 ms   seed ms   ferry/seed (median)',
      ...rows.map((r) => `${r.what.padEnd(42)}  ${r.medianMs.toFixed(0).padStart(9)}  ${r.p95Ms.toFixed(0).padStart(7)}  ${String(r.seedMs).padStart(8)}   ${(r.medianMs / r.seedMs).toFixed(3)}x (${r.seed})`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    const resultsFile = path.join(repoRoot(), 'bench', 'results.json');
    const previous = JSON.parse(await readFile(resultsFile, 'utf8').catch(() => '{}')) as Record<string, unknown>;
    await writeFile(resultsFile, `${JSON.stringify({ ...previous, orchestration: { measuredAt: new Date().toISOString(), rows } }, null, 2)}\n`);
  } finally {
    await stack.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
