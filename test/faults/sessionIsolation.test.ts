/**
 * What code run in a session can do to the runtime agent and to the code
 * that runs after it (issue 17, items 1 and 6), on the real stack: a stage
 * leaves a process running that tries to forge the next stage's result
 * (listing the agent's state folder, writing records and logs for every id
 * it finds, reading the agent's environment), and an agent SIGKILLed under a
 * running execution is restarted. The agent runs as its own process, as
 * `ferry up` starts it; these tests run as root, so it runs executed code as
 * another user — except where a test starts a same-user agent on purpose.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { ExecuteRefusedError, PipelineClient } from '../../client/pipelineClient';
import { writeDemoInput } from '../../client/sampleData';
import { FailureType } from '../../core/errors';
import type { PipelineResult } from '../../core/pipeline';
import { sessionRoot } from '../../core/sync';
import { startAgent } from '../../runtime/agent';
import { waitFor } from '../support/fixtures';
import { resultOf, startTestStack, type TestStack } from '../support/testStack';

let stack: TestStack;
let work: string;
let input: string;

before(async () => {
  stack = await startTestStack({ agentProcess: true });
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-isolation-'));
  input = writeDemoInput(path.join(work, 'input'));
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Whether a process still runs (a zombie waiting to be reaped has ended). */
async function isRunning(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return stat !== undefined && !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
}

const pidIn = async (file: string) => Number((await readFile(file, 'utf8')).trim());

/**
 * Left running by the coder's code: every 50 ms it lists each state folder
 * it knows of (the real one, given to it as the worst case, and the old
 * default under the agent's root), writes a record claiming exit code 0 and
 * a log for every process id it finds there, and tries to read the agent's
 * environment; it logs each attempt, and whether the victim had started.
 */
const FORGER = String.raw`
state_dirs=("$1/processes" "../../.ferry-agent/processes")
agent_pid=$2
echo $$ > work/forger.pid
round=0
while [ $SECONDS -lt 300 ]; do
  round=$((round + 1))
  victim=no; [ -e work/victim-started ] && victim=yes
  for dir in "${"${state_dirs[@]}"}"; do
    if ids=$(ls "$dir" 2>&1); then
      echo "round $round victim=$victim listed $dir: $(echo $ids | wc -w) ids" >> work/forger.log
      for id in $ids; do
        if printf '{"bootId":"forged","exitCode":0,"signal":null,"timedOut":false,"durationMs":1,"pid":1,"signature":"forged"}' > "$dir/$id/result.json" 2>/dev/null; then
          echo "round $round victim=$victim wrote $dir/$id/result.json" >> work/forger.log
        fi
        echo 'forged output' > "$dir/$id/stdout.log" 2>/dev/null
      done
    else
      echo "round $round victim=$victim cannot list $dir: $ids" >> work/forger.log
    fi
  done
  if tr '\0' '\n' < /proc/$agent_pid/environ > /dev/null 2>&1; then echo "round $round read the agent environ" >> work/forger.log; fi
  sleep 0.05
done
`;

const LAUNCH_FORGER = (stateDir: string) => `cat > work/forge.sh <<'SCRIPT'${FORGER}SCRIPT
setsid bash work/forge.sh ${JSON.stringify(stateDir)} $PPID > /dev/null 2>&1 < /dev/null &
echo forger launched`;

/**
 * The validator's code: it says when it started, runs past one status
 * long-poll of executeCode (10 s), so the agent is asked about it again
 * while the forger works, and ends with its own status and output.
 */
const VICTIM = 'touch work/victim-started; sleep 12; echo "the real result"; exit 7';

interface ForgeryOutcome {
  log: string[];
  victim: { exitCode: number | null; stdoutTail: string };
  forgerPid: number;
  result: PipelineResult;
}

/** Coder launches the forger, validator runs the victim; the forger's log is read before the session (and the log with it) is released. */
async function runForgery(pipelines: PipelineClient, sessionId: string, stateDir: string, sessionDir: string): Promise<ForgeryOutcome> {
  const { workflowId } = await pipelines.start({ sessionId, inputs: [{ path: input }], stages: ['coder', 'validator'], stageIdleTimeout: '5m' });
  const launched = await pipelines.execute(workflowId, { language: 'bash', code: LAUNCH_FORGER(stateDir) });
  assert.equal(launched.exitCode, 0, launched.stderrTail);
  await pipelines.finishStage(workflowId, 'forger left running', { stage: 'coder' });
  const victim = await pipelines.execute(workflowId, { language: 'bash', code: VICTIM });
  const log = (await readFile(path.join(sessionDir, 'work', 'forger.log'), 'utf8')).trim().split('\n');
  const forgerPid = await pidIn(path.join(sessionDir, 'work', 'forger.pid'));
  await pipelines.finishStage(workflowId, 'done', { stage: 'validator' });
  const result = await resultOf<PipelineResult>(stack.client.workflow.getHandle(workflowId));
  return { log, victim, forgerPid, result };
}

describe('a stage cannot forge another stage’s result', () => {
  it('code run as another user than the agent (a root agent): the forger can neither list, write nor read the agent’s state or environment; the validator’s real status and output are recorded, and releasing the session kills the forger', async (t: TestContext) => {
    assert.equal(process.getuid?.(), 0, 'the suite runs as root here, so the agent process runs executed code as another user (nobody); as any other user only the same-user case below applies');
    const pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
    const stateDir = path.join(stack.dir, 'agent-state');
    const outcome = await runForgery(pipelines, 'forge-other-user', stateDir, path.join(stack.agentRoot, sessionRoot('forge-other-user')));

    const duringVictim = outcome.log.filter((line) => line.includes('victim=yes'));
    assert.ok(duringVictim.length > 0, `the forger was at work while the validator ran (log: ${outcome.log.slice(-3).join(' | ')})`);
    assert.ok(
      duringVictim.some((line) => line.includes(`cannot list ${stateDir}/processes`) && /Permission denied/.test(line)),
      `the real state folder is closed to the code's user (log: ${duringVictim.slice(0, 2).join(' | ')})`,
    );
    assert.deepEqual(outcome.log.filter((line) => / listed | wrote | read the agent environ/.test(line)), [], 'nothing listed, written or read');
    assert.equal(outcome.victim.exitCode, 7, 'the validator’s own exit code');
    assert.equal(outcome.victim.stdoutTail, 'the real result\n', 'the validator’s own output');
    assert.deepEqual(outcome.result.stages.map((s) => [s.name, s.status, s.executions]), [['coder', 'finished', 1], ['validator', 'finished', 1]]);
    assert.equal(await isRunning(outcome.forgerPid), false, 'the forger ended with the session it ran in');
    assert.equal(existsSync(path.join(stack.agentRoot, sessionRoot('forge-other-user'))), false, 'the session folder, all of it the code user’s, was removed as that user');
    t.diagnostic(`figures: the forger made ${outcome.log.length} attempts (${duringVictim.length} while the validator ran), every one refused; the validator's exit code 7 and output recorded`);
  });

  it('code run as the agent’s own user (a local agent not started as root): the forger reaches the state folder and writes records, but the validator’s real exit code is recorded', async (t: TestContext) => {
    const root = path.join(await mkdtemp(path.join(work, 'same-user-')), 'root');
    const token = randomBytes(24).toString('hex');
    const agent = await startAgent({ root, token, allowedUrlPrefixes: [`${stack.config.s3.endpoint}/ferry/`], log: { log: () => undefined } });
    t.after(() => agent.close());
    const taskQueue = 'isolation-same-user';
    await stack.startWorker({ taskQueue, localAgent: { url: agent.url, token } });
    const pipelines = new PipelineClient(stack.client, taskQueue);
    const outcome = await runForgery(pipelines, 'forge-same-user', path.join(root, '.ferry-agent'), path.join(root, sessionRoot('forge-same-user')));

    const forgedVictim = outcome.log.filter((line) => line.includes('victim=yes') && / wrote .*e\d+-validator-/.test(line));
    assert.ok(forgedVictim.length > 0, `the forger wrote a record for the validator's execution while it ran (log: ${outcome.log.slice(-3).join(' | ')})`);
    assert.equal(outcome.victim.exitCode, 7, 'the agent answers for its own processes from memory, whatever the state folder holds');
    assert.equal(await isRunning(outcome.forgerPid), false, 'the forger ended with the session it ran in');
    t.diagnostic(
      `figures: the forger wrote ${outcome.log.filter((line) => line.includes(' wrote ')).length} records (${forgedVictim.length} for the running validator); the validator's exit code 7 was recorded; its output tail reads ${JSON.stringify(outcome.victim.stdoutTail)} (logs are not protected from code run as the agent's own user)`,
    );
  });
});

describe('a restarted agent never runs an execution again', () => {
  it('the agent SIGKILLed under a running execution and started again: the execution is reported lost (TargetRestarted), what it started is killed, and it never ran twice', async (t: TestContext) => {
    const pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
    const sessionId = 'restart-under-execution';
    const sessionDir = path.join(stack.agentRoot, sessionRoot(sessionId));
    const { workflowId } = await pipelines.start({ sessionId, inputs: [{ path: input }], stages: ['coder'], stageIdleTimeout: '5m' });
    const code = 'echo run >> work/ledger; setsid sleep 600 < /dev/null > /dev/null 2>&1 & echo $! > work/child.pid; echo $$ > work/leader.pid; sleep 600';
    const execution = pipelines.execute(workflowId, { language: 'bash', code });
    execution.catch(() => undefined);
    const [leader, child] = await waitFor('the execution to start its processes', async () => {
      const pids = await Promise.all(['leader.pid', 'child.pid'].map((name) => pidIn(path.join(sessionDir, 'work', name)).catch(() => NaN)));
      return pids.every((pid) => pid > 0) ? pids : undefined;
    });
    const before = stack.agentProcess!.current.bootId;
    await stack.agentProcess!.kill();
    assert.ok((await isRunning(leader)) && (await isRunning(child)), 'the SIGKILLed agent could not stop them');
    const restarted = await stack.agentProcess!.restart();
    assert.notEqual(restarted.bootId, before);

    await assert.rejects(execution, (err: unknown) => {
      assert.ok(err instanceof ExecuteRefusedError, String(err));
      assert.equal(err.type, FailureType.TargetRestarted);
      assert.match(err.message, /restarted while the code ran/);
      return true;
    });
    assert.equal(await isRunning(leader), false, 'the execution’s command was killed by the new agent');
    assert.equal(await isRunning(child), false, 'and so was the setsid child it started');
    // The session goes on: the next execution lands and verifies again on the new boot, and the lost one never reran.
    const next = await pipelines.execute(workflowId, { language: 'bash', code: 'cat work/ledger' });
    assert.equal(next.exitCode, 0, next.stderrTail);
    assert.equal(next.stdoutTail, 'run\n', 'the lost execution ran once');
    assert.equal(next.bootId, restarted.bootId);
    await pipelines.finishStage(workflowId, 'done', { stage: 'coder' });
    await resultOf(stack.client.workflow.getHandle(workflowId));
    t.diagnostic(`figures: boot ${before} → ${restarted.bootId}; the lost execution's command (pid ${leader}) and its setsid child (pid ${child}) were killed by the new agent at start; the ledger shows one run`);
  });
});
