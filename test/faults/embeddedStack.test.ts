/**
 * The embedded stack as `ferry up --detach` runs it, attacked and broken
 * from outside (issue 17, items 6, 8 and 9): what its files reveal to other
 * users, whether code run by an agent can read the agent's token from
 * /proc, `ferry exec` across a Temporal crash, `ferry up` bringing back
 * a stack with a dead service instead of refusing it, and `ferry down`
 * leaving nothing running that sessions started. Every process is the
 * real one the CLI starts.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { lstatSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentClient } from '../../activities/agentClient';
import { readStackState, type StackState } from '../../client/config';
import { writeDemoInput } from '../../client/sampleData';
import { isPidAlive } from '../../client/managedProcess';
import { FERRY_BIN, freeStackPorts, runFerry, stackPortArgs, type CliResult, type StackPorts } from '../support/ferryCli';
import { waitFor } from '../support/fixtures';

const SESSION = 'stack-faults';
const WORKFLOW = `pipeline-${SESSION}`;

let home: string;
let work: string;
let ports: StackPorts;

const ferry = (args: string[]): Promise<CliResult> => runFerry(args, { cwd: work, env: { ...process.env, FERRY_HOME: home }, timeoutMs: 300_000 });
const portArgs = () => stackPortArgs(ports);
const state = (): StackState => readStackState(home)!;
const pidsByName = () => Object.fromEntries(state().services.map((s) => [s.name, s.pid]));
const sessionRoot = () => path.join(home, 'targets', 'local', 'sessions', SESSION);

async function upDetached(): Promise<CliResult> {
  const up = await ferry(['up', '--detach', ...portArgs()]);
  assert.equal(up.code, 0, up.stderr);
  return up;
}

/** Starts `ferry exec` on the code (written to a file first) as its own process; `running()` says whether it still runs, `result` resolves with its output once it exits. */
async function ferryExec(code: string, name: string): Promise<{ child: ChildProcess; running: () => boolean; result: Promise<CliResult> }> {
  const file = await writeCode(name, code);
  const child = spawn(process.execPath, [FERRY_BIN, 'exec', WORKFLOW, '--lang', 'bash', '--code', file], { cwd: work, env: { ...process.env, FERRY_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const result = new Promise<CliResult>((resolve) => child.once('exit', (exitCode) => resolve({ code: exitCode ?? -1, stdout, stderr })));
  return { child, running: () => child.exitCode === null && child.signalCode === null, result };
}

/** Whether a process still runs (a zombie waiting to be reaped has ended). */
function isRunning(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
}

/** A root agent runs executed code as another user (runtime/main.ts), who passes through the folders above the agent's root. */
const codeRunsAsAnotherUser = process.getuid?.() === 0;

before(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'ferry-stack-faults-home-'));
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-stack-faults-work-'));
  ports = await freeStackPorts();
});

after(async () => {
  if (home) await ferry(['down']);
  if (home) await rm(home, { recursive: true, force: true });
  if (work) await rm(work, { recursive: true, force: true });
});

describe('the embedded stack from `ferry up --detach`, broken and probed from outside', () => {
  it('a second `ferry up --detach` on a healthy stack succeeds and leaves every service as it was', async () => {
    await upDetached();
    const before = pidsByName();
    assert.deepEqual(Object.keys(before).sort(), ['agent', 'temporal', 'weed', 'worker']);
    const again = await upDetached();
    assert.match(again.stderr, /already running .*nothing to start/);
    assert.deepEqual(pidsByName(), before, 'the same processes');
    for (const pid of Object.values(before)) assert.ok(isPidAlive(pid));
  });

  it('what the stack keeps in FERRY_HOME is its owner\'s only: folders 0700, files 0600; the agent token file is gone', () => {
    // Search only (0701) on the way to the agent's root when code runs as another user: that user can list none of them.
    const passage = new Set(codeRunsAsAnotherUser ? ['targets', path.join('targets', 'local')] : []);
    const exposed: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const file = path.join(dir, name);
        const info = lstatSync(file);
        const allowed = passage.has(path.relative(home, file)) ? 0o001 : 0;
        if ((info.mode & 0o077 & ~allowed) !== 0) exposed.push(`${path.relative(home, file)} ${(info.mode & 0o777).toString(8)}`);
        if (info.isDirectory()) walk(file);
      }
    };
    assert.equal(lstatSync(home).mode & 0o777, codeRunsAsAnotherUser ? 0o701 : 0o700, 'FERRY_HOME itself');
    assert.equal(lstatSync(path.join(home, 'agent-state')).mode & 0o777, 0o700, "the agent's state folder, apart from its root");
    walk(home);
    assert.deepEqual(exposed, [], 'nothing under FERRY_HOME is open to group or others');
    for (const file of ['stack.json', 'temporal.db', 'logs/temporal.log', 'logs/s3.log', 'logs/agent.log', 'logs/worker.log']) {
      assert.equal(lstatSync(path.join(home, file)).mode & 0o777, 0o600, file);
    }
    assert.ok(!readdirSync(home).includes('agent-token'), 'the agent deleted its token file');
  });

  it('code an agent runs cannot read the agent token from /proc/<agent pid>/environ (directly, and from a pipeline session)', async (t: TestContext) => {
    const { settings } = state();
    const agentPid = pidsByName().agent!;
    const stackAgent = new AgentClient({ url: settings.FERRY_LOCAL_AGENT_URL!, token: settings.FERRY_LOCAL_AGENT_TOKEN! });
    // Run as root, the agent runs code as another user, who may not read the agent's /proc at all; as one user, the environ holds no token.
    const readEnviron = (pid: string) => `id -u >&2; tr '\\0' '\\n' < /proc/${pid}/environ`;
    const assertNoToken = (what: string, outcome: { exitCode: number | null; stdoutTail: string; stderrTail: string }) => {
      for (const secret of [settings.FERRY_LOCAL_AGENT_TOKEN!, settings.FERRY_S3_SECRET_ACCESS_KEY!]) assert.ok(!outcome.stdoutTail.includes(secret), `${what}: no secret in what the code read`);
      if (codeRunsAsAnotherUser) {
        assert.notEqual(outcome.stderrTail.split('\n')[0], '0', `${what}: the code does not run as root`);
        assert.match(outcome.stderrTail, /Permission denied/, `${what}: the agent's environ is closed to the code`);
      } else {
        assert.equal(outcome.exitCode, 0, outcome.stderrTail);
        assert.match(outcome.stdoutTail, /^FERRY_AGENT_ROOT=/m, `${what}: the code read the agent's environ`);
      }
    };
    const environ = await stackAgent.startProcess({ processId: 'read-environ', command: ['bash', '-c', readEnviron(String(agentPid))], timeoutSeconds: 30, waitMs: 10_000 });
    assertNoToken('the stack agent', environ);

    const input = writeDemoInput(path.join(work, 'input'));
    const started = await ferry(['pipeline', 'start', '--session', SESSION, '--input', input, '--stages', 'coder', '--idle-timeout', '15m', '--json']);
    assert.equal(started.code, 0, started.stderr);
    // bash's parent is the session's agent.
    const session = await ferry(['exec', WORKFLOW, '--lang', 'bash', '--code', await writeCode('environ.sh', readEnviron('$PPID')), '--json']);
    const result = JSON.parse(session.stdout) as { exitCode: number; stdoutTail: string; stderrTail: string };
    assertNoToken('the session agent', result);
    t.diagnostic(`figures: code ran as uid ${environ.stderrTail.split('\n')[0]}; it read ${environ.stdoutTail.split('\n').filter(Boolean).length} lines of the stack agent's environ and ${result.stdoutTail.split('\n').filter(Boolean).length} of the session agent's; neither held a token`);
  });

  it('Temporal killed mid-`ferry exec` and brought back by `ferry up --detach`: the CLI prints the one real result and its request id, a rerun with that id returns it again; the code ran once', async (t: TestContext) => {
    const ledger = path.join(sessionRoot(), 'ledger.txt');
    const finished = path.join(sessionRoot(), 'finished.txt');
    const exec = await ferryExec('echo run >> ledger.txt; sleep 5; echo finished > finished.txt; echo "the real result"; exit 3', 'crash.sh');
    await waitFor('the code to start on the session', async () => ((await readFile(ledger, 'utf8').catch(() => '')).includes('run') ? true : undefined), 120_000);
    const temporalPid = pidsByName().temporal!;
    process.kill(temporalPid, 'SIGTERM');
    const killedAt = Date.now();
    assert.ok(exec.running(), 'the CLI was still waiting for the result when Temporal went down');
    await waitFor('the code to end while Temporal is down', async () => ((await readFile(finished, 'utf8').catch(() => '')) ? true : undefined), 60_000);
    // Down for 30 s, longer than the SDK's own ~20 s of gRPC retries.
    await sleep(Math.max(0, 30_000 - (Date.now() - killedAt)));
    const heal = await upDetached();
    assert.match(heal.stderr, /runs without temporal: starting it again/);
    const downMs = Date.now() - killedAt;

    const result = await exec.result;
    assert.equal(result.code, 3, `exit status of the code (stderr: ${result.stderr})`);
    assert.equal(result.stdout, 'the real result\n');
    const requestId = /request id (\S+) /.exec(result.stderr)?.[1];
    assert.ok(requestId, `the CLI printed the request id it sent (stderr: ${result.stderr})`);
    // A user who lost the answer asks again with the printed id: the same result, nothing runs again.
    const rerun = await ferry(['exec', WORKFLOW, '--lang', 'bash', '--code', path.join(work, 'crash.sh'), '--request-id', requestId]);
    assert.equal(rerun.code, 3, rerun.stderr);
    assert.equal(rerun.stdout, 'the real result\n');
    assert.deepEqual((await readFile(ledger, 'utf8')).trim().split('\n'), ['run'], 'the code ran once');

    const status = JSON.parse((await ferry(['status', WORKFLOW, '--json'])).stdout) as { stages: { name: string; executions: number }[] };
    assert.equal(status.stages[0]!.executions, 2, 'two executions in the stage: the environ read and this one');
    const resends = (result.stderr.match(/resending request/g) ?? []).length;
    t.diagnostic(`figures: Temporal down ${downMs} ms (SIGTERM, then \`ferry up --detach\`); the CLI resent its update ${resends}x itself (beyond the SDK's own gRPC retries) and exited ${result.code} with the code's output; the rerun with --request-id ${requestId} returned it again`);
  });

  it('the S3 server killed: `ferry up --detach` starts only it again, with the same data and credentials', async (t: TestContext) => {
    const before = pidsByName();
    process.kill(before.weed!, 'SIGKILL');
    await waitFor('weed to be gone', async () => (isPidAlive(before.weed!) ? undefined : true));
    const heal = await upDetached();
    assert.match(heal.stderr, /runs without weed: starting it again/);
    const after = pidsByName();
    assert.notEqual(after.weed, before.weed);
    assert.ok(isPidAlive(after.weed!));
    for (const name of ['temporal', 'agent', 'worker']) assert.equal(after[name], before[name], `${name} kept running`);

    const input = path.join(work, 'input');
    const sync = await ferry(['sync', input, '--session', 'after-heal', '--json']);
    assert.equal(sync.code, 0, sync.stderr);
    const summary = JSON.parse(sync.stdout) as { verified: boolean; bytesUploaded: number };
    assert.equal(summary.verified, true);
    assert.equal(summary.bytesUploaded, 0, 'the restarted store still holds the blobs the pipeline uploaded');
    t.diagnostic(`figures: weed ${before.weed} → ${after.weed}; temporal, agent and worker kept their pids; a sync after the restart uploaded ${summary.bytesUploaded} bytes and verified`);
  });

  it('`ferry down` leaves nothing a session started running: a command ignoring SIGTERM, its background job, a setsid child ignoring SIGTERM, and a daemon that forked away', async (t: TestContext) => {
    const pidFile = (name: string) => path.join(sessionRoot(), 'work', `${name}.pid`);
    const names = ['leader', 'job', 'setsid', 'daemon'];
    const code = [
      `trap '' TERM`,
      `echo $$ > work/leader.pid`,
      `sleep 600 & echo $! > work/job.pid`,
      `setsid bash -c 'trap "" TERM; echo $$ > work/setsid.pid; exec sleep 600' < /dev/null > /dev/null 2>&1 &`,
      `setsid -f bash -c 'echo $$ > work/daemon.pid; exec sleep 600' < /dev/null > /dev/null 2>&1`,
      'wait',
    ].join('\n');
    const exec = await ferryExec(code, 'lingering.sh');
    t.after(() => exec.child.kill('SIGKILL'));
    const pids = await waitFor('the command to start everything', async () => {
      const read = names.map((name) => Number(readTrimmed(pidFile(name))));
      return read.every((pid) => pid > 0) ? read : undefined;
    }, 120_000);
    assert.ok(pids.every(isRunning), 'all four run before `ferry down`');

    const down = await ferry(['down']);
    assert.equal(down.code, 0, down.stderr);
    const running = names.filter((_, index) => isRunning(pids[index]!));
    assert.deepEqual(running, [], 'none of them runs after `ferry down`');
    t.diagnostic(`figures: ${names.map((name, index) => `${name} ${pids[index]}`).join(', ')} all ended by \`ferry down\` (${down.stdout.trim() || down.stderr.trim()})`);
  });
});

function readTrimmed(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}

async function writeCode(name: string, code: string): Promise<string> {
  const file = path.join(work, name);
  await writeFile(file, code);
  return file;
}
