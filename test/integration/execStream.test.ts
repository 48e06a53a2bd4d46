/**
 * `ferry exec --follow` and `--attach` as a user runs them (the CLI as a
 * child process) against the real stack: output comes from the chunks the
 * workflow ships to S3 while the code runs, so a killed CLI can re-attach
 * and replay every line once, in order, and so can anyone after the
 * pipeline and its session ended.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { PipelineClient } from '../../client/pipelineClient';
import { chunksFromListing } from '../../core/executionLogs';
import { writeDemoInput } from '../../client/sampleData';
import { repoRoot } from '../../client/tools';
import { waitFor } from '../support/fixtures';
import { startTestStack, type TestStack } from '../support/testStack';

const ferryBin = path.join(repoRoot(), 'bin', 'ferry.js');
let stack: TestStack;
let work: string;
let pipelines: PipelineClient;

before(async () => {
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-exec-stream-'));
  pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

interface RunningCli {
  child: ChildProcess;
  /** Each stdout line with the time it arrived. */
  lines: { text: string; at: number }[];
  stderr: () => string;
  exited: Promise<number | null>;
}

/** `ferry …` as a child process, its stdout read line by line as it arrives. */
function ferry(args: string[]): RunningCli {
  const child = spawn(process.execPath, [ferryBin, ...args], {
    cwd: work,
    env: { ...process.env, ...stack.settings, FERRY_HOME: path.join(work, 'home') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: { text: string; at: number }[] = [];
  let pending = '';
  child.stdout!.on('data', (data: Buffer) => {
    const at = Date.now();
    pending += data.toString('utf8');
    const parts = pending.split('\n');
    pending = parts.pop()!;
    for (const text of parts) lines.push({ text, at });
  });
  let stderr = '';
  child.stderr!.on('data', (data: Buffer) => (stderr += data.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, lines, stderr: () => stderr, exited };
}

/**
 * How long the followed execution runs, a line a second: 20 s here, enough
 * to follow, kill the CLI mid-way and re-attach; FERRY_TEST_TICKER_SECONDS=60
 * runs the 60 s case, whose display delays the note reports.
 */
const TICKER_SECONDS = Number(process.env.FERRY_TEST_TICKER_SECONDS ?? 20);

/** Prints a numbered line per second on stdout (with the time it printed it) and every tenth on stderr. */
const TICKER = `
import sys, time
for i in range(${TICKER_SECONDS}):
    print(f"line {i} printed-at {time.time() * 1000:.0f}", flush=True)
    if i % 10 == 0:
        print(f"err {i}", file=sys.stderr, flush=True)
    time.sleep(1)
`;

describe('ferry exec --follow and --attach', () => {
  it(`follows a ${TICKER_SECONDS} s execution as it prints, and a CLI killed mid-way re-attaches and replays every line once, in order`, async (t: TestContext) => {
    const { workflowId } = await pipelines.start({ sessionId: 'stream', inputs: [{ path: writeDemoInput(path.join(work, 'input')) }], stages: ['coder'], stageIdleTimeout: '5m' });
    const code = path.join(work, 'ticker.py');
    await writeFile(code, TICKER);
    const requestId = 'ticker-1';
    const follower = ferry(['exec', workflowId, '--lang', 'python', '--code', code, '--request-id', requestId, '--follow']);
    await waitFor('five lines on --follow', async () => (follower.lines.length >= 5 ? true : undefined), 60_000);
    // Measured, not asserted: how long after the code printed a line the follower showed it.
    const delays = follower.lines.slice(0, 5).map(({ text, at }) => at - Number(/printed-at (\d+)/.exec(text)![1]));
    t.diagnostic(`--follow display delay of the first 5 lines (ms): ${delays.join(', ')}`);
    assert.deepEqual(follower.lines.slice(0, 5).map((l) => l.text.split(' printed-at')[0]), ['line 0', 'line 1', 'line 2', 'line 3', 'line 4']);
    follower.child.kill('SIGKILL');
    await follower.exited;

    const attached = ferry(['exec', '--attach', workflowId, requestId]);
    const code0 = await attached.exited;
    assert.equal(code0, 0, attached.stderr());
    const replayed = attached.lines.map((l) => l.text.split(' printed-at')[0]);
    assert.deepEqual(replayed, Array.from({ length: TICKER_SECONDS }, (_, i) => `line ${i}`), 'every line once, in order');
    const everyTenth = Array.from({ length: Math.ceil(TICKER_SECONDS / 10) }, (_, i) => `err ${i * 10}\n`).join('');
    assert.ok(attached.stderr().includes(everyTenth), `stderr replayed in order too: ${attached.stderr()}`);
    assert.match(attached.stderr(), /in stage coder: exit 0/);

    // After the stage, the pipeline and its session ended, the stream is still there, and a replay can start part-way.
    const full = attached.lines.map((l) => `${l.text}\n`).join('');
    const skip = full.indexOf(`line ${TICKER_SECONDS - 2}`);
    await pipelines.finishStage(workflowId, 'ticked', { stage: 'coder' });
    await pipelines.result(workflowId);
    const late = ferry(['exec', '--attach', workflowId, requestId, '--offset', `${skip},9999`]);
    assert.equal(await late.exited, 0, late.stderr());
    assert.deepEqual(late.lines.map((l) => l.text.split(' printed-at')[0]), [`line ${TICKER_SECONDS - 2}`, `line ${TICKER_SECONDS - 1}`]);
    assert.doesNotMatch(late.stderr(), /err \d/, 'stderr before the offset is skipped');
  });

  it("a chatty execution ships its output at the target's follow pace, not a chunk per line, and every byte arrives", async (t: TestContext) => {
    const { workflowId } = await pipelines.start({ sessionId: 'chatty', inputs: [{ path: writeDemoInput(path.join(work, 'chatty-input')) }], stages: ['coder'], stageIdleTimeout: '5m' });
    // About 3 s of output written as fast as the code can, in small writes.
    const result = await pipelines.execute(workflowId, {
      language: 'python',
      code: 'import time, sys\nend = time.time() + 3\ni = 0\nwhile time.time() < end:\n    print(f"line {i}", flush=True)\n    i += 1\n    time.sleep(0.001)\n',
    });
    assert.equal(result.exitCode, 0, result.stderrTail);
    const chunks = chunksFromListing(stack.blobs.keyPrefix + result.logChunks!, await stack.blobs.listKeys(stack.blobs.keyPrefix + result.logChunks!));
    const shippedBytes = chunks.stdout.reduce((sum, chunk) => sum + chunk.size, 0);
    // One chunk per follow interval (1 s on the local agent) while it ran, plus the end's and a final drain, plus one of slack.
    const bound = Math.ceil(result.durationMs / 1000) + 3;
    t.diagnostic(`${chunks.stdout.length} stdout chunks for ${shippedBytes} bytes over ${result.durationMs} ms (bound ${bound})`);
    assert.ok(chunks.stdout.length <= bound, `${chunks.stdout.length} chunks for a ${result.durationMs} ms run`);
    assert.equal(shippedBytes, result.stdoutBytes, 'every byte was shipped');
  });

  it('refuses --attach without a request id, and a request id the pipeline never saw once it ended', async () => {
    const missing = ferry(['exec', '--attach', 'pipeline-stream']);
    assert.equal(await missing.exited, 2);
    assert.match(missing.stderr(), /--attach needs the request id/);
    const unknown = ferry(['exec', '--attach', 'pipeline-stream', 'never-sent']);
    assert.equal(await unknown.exited, 1);
    assert.match(unknown.stderr(), /pipeline-stream is completed and has no execution with request id never-sent/);
  });
});
