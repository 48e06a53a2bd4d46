/**
 * The `orchestration` section (`npm run bench:orchestration`): what ferry's
 * durability costs per step.
 *   - the `execute` update round trip for `true` on the local target
 *     (checkSession + executeCode + log upload, through Temporal), BENCH_EXECUTES
 *     calls, judged against the goal (median ≤ 50 ms, p95 ≤ 100 ms), and
 *     where its time goes: the pipeline's history split into segments
 *     (bench/executeBreakdown.ts), the command's own run time in the agent,
 *     and the same exec and log downloads sent to an agent directly;
 *   - syncing one small file end to end (snapshot → upload → land → verify), BENCH_SYNCS runs;
 * both also against what the seed's hand-rolled code spent on the same jobs:
 * a blind `sleep(10)` before each use of a session, and a 20–60 s SSM sync.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { AgentClient } from '../activities/agentClient';
import { PipelineClient } from '../client/pipelineClient';
import { interpreterCommand } from '../core/pipeline';
import { sameTree } from './data';
import { summarizeSegments, updateSegments, type ExecuteSample, type HistoryEvent, type Segment } from './executeBreakdown';
import { benchTable, fixed, ratioText } from './report';
import type { Target } from './results';
import type { BenchContext, SectionResult } from './section';
import { median, percentile } from './stats';
import { describeError, landedPath, removeSession, startSync, syncResult, withTimeout } from './workflows';

/** What the seed spent: a blind sleep before each use of a session, and an SSM sync's best case (20–60 s). */
const SEED_EXECUTE_MS = 10_000;
const SEED_SYNC_MS = 20_000;

/** The goals for the execute round trip. */
const EXECUTE_MEDIAN_GOAL_MS = 50;
const EXECUTE_P95_GOAL_MS = 100;

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

interface ExecuteRoundTrips {
  samples: ExecuteSample[];
  segments: Segment[];
}

/** BENCH_EXECUTES executes of `true`, one after another, then their segments from the pipeline's history. */
async function executeRoundTrips(ctx: BenchContext): Promise<ExecuteRoundTrips> {
  const { stack, options } = ctx;
  const pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
  const { workflowId, runId } = await pipelines.start({ sessionId: `bench-orchestration-${Date.now()}`, stages: ['coder'], inputs: [] });
  // The first execution of a stage also re-hashes data/; warm up once so the samples are steady-state.
  await pipelines.execute(workflowId, { language: 'bash', code: 'true' });
  const samples: ExecuteSample[] = [];
  for (let i = 0; i < options.executes; i++) {
    // The update id names the sample in the history.
    const updateId = `bench-execute-${i}`;
    const sentAtMs = Date.now();
    const result = await pipelines.execute(workflowId, { language: 'bash', code: 'true' }, { requestId: updateId });
    samples.push({ updateId, sentAtMs, resultAtMs: Date.now(), agentCommandMs: result.durationMs });
    if (result.exitCode !== 0) throw new Error(`true exited ${result.exitCode}`);
  }
  await pipelines.finishStage(workflowId);
  await withTimeout(pipelines.result(workflowId), options.timeoutSeconds * 1000, async () => new Error(`pipeline ${workflowId}: no result after finishStage`));
  return { samples, segments: summarizeSegments(updateSegments(await runHistories(ctx, workflowId, runId), samples)) };
}

/** The history of every run of a workflow, from `firstRunId` along its continue-as-new chain. */
async function runHistories(ctx: BenchContext, workflowId: string, firstRunId: string): Promise<HistoryEvent[][]> {
  const runs: HistoryEvent[][] = [];
  for (let runId: string | null | undefined = firstRunId; runId; ) {
    const events: HistoryEvent[] = (await ctx.stack.client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? [];
    runs.push(events);
    runId = events.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId;
  }
  return runs;
}

interface DirectAgentTiming {
  /** exec of `bash -c true` over HTTP, as executeCode sends it. */
  execMs: number[];
  /** exec plus the two log downloads executeCode makes after it. */
  execAndLogsMs: number[];
}

/** The agent's share without Temporal: the stack's agent asked directly, as executeCode asks a session's. */
async function directAgentExecs(ctx: BenchContext): Promise<DirectAgentTiming> {
  const agent = new AgentClient({ url: ctx.stack.agent.url, token: ctx.stack.agentToken });
  const scratch = await mkdtemp(path.join(ctx.work, 'direct-agent-'));
  const timing: DirectAgentTiming = { execMs: [], execAndLogsMs: [] };
  try {
    for (let i = 0; i < ctx.options.executes; i++) {
      const executionId = `bench-direct-${Date.now()}-${i}`;
      const started = performance.now();
      const result = await agent.startProcess({ processId: executionId, command: interpreterCommand('bash', 'true'), timeoutSeconds: 60, waitMs: 10_000 });
      timing.execMs.push(performance.now() - started);
      await agent.downloadLog(executionId, 'stdout', path.join(scratch, 'stdout.log'));
      await agent.downloadLog(executionId, 'stderr', path.join(scratch, 'stderr.log'));
      timing.execAndLogsMs.push(performance.now() - started);
      if (result.exitCode !== 0) throw new Error(`true exited ${result.exitCode} on the agent`);
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return timing;
}

const sortedMedian = (values: number[]) => median([...values].sort((a, b) => a - b));

/** The breakdown table: each segment's mean and median per update, the agent's share, and the direct calls. */
function breakdownReport(trips: ExecuteRoundTrips, direct: DirectAgentTiming | undefined): string {
  const roundTrips = trips.samples.map((s) => s.resultAtMs - s.sentAtMs);
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  const rows = trips.segments.map((s) => [s.name, s.perUpdate === 1 ? '' : fixed(s.perUpdate, 1), fixed(s.meanMs, 1), fixed(s.medianMs, 1)]);
  rows.push(['round trip (sum of the means above)', '', fixed(mean(roundTrips), 1), fixed(sortedMedian(roundTrips), 1)]);
  const agentCommand = trips.samples.map((s) => s.agentCommandMs);
  rows.push(['  within executeCode: the command in the agent (spawn to exit)', '', fixed(mean(agentCommand), 1), fixed(sortedMedian(agentCommand), 1)]);
  if (direct) {
    rows.push(['  the agent asked directly: exec of `true`', '', fixed(mean(direct.execMs), 1), fixed(sortedMedian(direct.execMs), 1)]);
    rows.push(['  the agent asked directly: exec + stdout and stderr log downloads', '', fixed(mean(direct.execAndLogsMs), 1), fixed(sortedMedian(direct.execAndLogsMs), 1)]);
  }
  return (
    `\nWhere one execute "true" goes (${trips.samples.length} updates; ms; segments between consecutive points of the update's\n` +
    'history, a segment that occurs more than once in an update summed; "x" = times per update):\n' +
    benchTable(['segment', 'x', 'mean ms', 'median ms'], rows, [false, true, true, true])
  );
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

/** The one-file sync against the seed's SSM sync: reported, no goal in the issue. */
function seedTarget(label: string, step: StepTiming | undefined, peer: string): Target {
  const ratio = step ? step.medianMs / step.seedMs : null;
  return {
    section: 'orchestration',
    target: label,
    ferry: step ? `${fixed(step.medianMs, 0)} ms (p95 ${fixed(step.p95Ms, 0)} ms)` : 'FAILED',
    peer,
    value: ratioText(ratio),
    goal: 'report',
    met: null,
    measured: ratio,
  };
}

function executeTargets(step: StepTiming | undefined, executes: number): Target[] {
  const target = (what: 'median' | 'p95', goalMs: number): Target => {
    const value = step ? (what === 'median' ? step.medianMs : step.p95Ms) : null;
    return {
      section: 'orchestration',
      target: `execute "true" round trip, ${what} of ${executes}`,
      ferry: value === null ? 'FAILED' : `${fixed(value, 0)} ms`,
      peer: '10 s sleep (seed)',
      value: value === null ? 'FAILED' : `${fixed(value, 0)} ms`,
      goal: `<= ${goalMs} ms`,
      met: value !== null && value <= goalMs,
      measured: value,
    };
  };
  return [target('median', EXECUTE_MEDIAN_GOAL_MS), target('p95', EXECUTE_P95_GOAL_MS)];
}

export async function orchestrationSection(ctx: BenchContext): Promise<SectionResult> {
  const { options } = ctx;
  const errors: string[] = [];
  const attempt = async <T>(what: string, run: () => Promise<T>): Promise<T | undefined> => {
    ctx.progress(`orchestration: ${what}`);
    try {
      return await run();
    } catch (err) {
      errors.push(`orchestration ${what}: ${describeError(err)}`);
      return undefined;
    }
  };
  const executeWhat = `execute "true" round trip (${options.executes} calls)`;
  const trips = await attempt(executeWhat, () => executeRoundTrips(ctx));
  const direct = await attempt(`the agent asked directly (${options.executes} calls)`, () => directAgentExecs(ctx));
  const syncWhat = `sync one small file end to end (${options.oneFileSyncs} runs)`;
  const syncSamples = await attempt(syncWhat, () => oneFileSyncs(ctx));
  const execute = trips && timing(executeWhat, trips.samples.map((s) => s.resultAtMs - s.sentAtMs), SEED_EXECUTE_MS, 'sleep(10) before each use');
  const sync = syncSamples && timing(syncWhat, syncSamples, SEED_SYNC_MS, 'SSM sync, 20–60 s');
  const steps = [execute, sync].filter((s): s is StepTiming => s !== undefined);
  const report =
    benchTable(
      ['step', 'median ms', 'p95 ms', 'seed ms', 'ferry/seed (median)', 'seed'],
      steps.map((s) => [s.what, fixed(s.medianMs, 0), fixed(s.p95Ms, 0), String(s.seedMs), ratioText(s.medianMs / s.seedMs), s.seed]),
      [false, true, true, true, true, false],
    ) + (trips ? breakdownReport(trips, direct) : '');
  return {
    data: { rows: steps, executeSegments: trips?.segments ?? null, agentCommandMs: trips?.samples.map((s) => s.agentCommandMs) ?? null, directAgent: direct ?? null },
    targets: [...executeTargets(execute, options.executes), seedTarget(`sync one small file end to end (median of ${options.oneFileSyncs})`, sync, '20-60 s SSM sync (seed, vs 20 s)')],
    errors,
    report,
  };
}
