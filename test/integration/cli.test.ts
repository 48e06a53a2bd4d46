/**
 * The `ferry` CLI as a user runs it: `ferry up --detach` starts the embedded
 * stack as separate processes (on free ports, in a temp FERRY_HOME), then
 * sync, files, timeline and down, checking output and exit codes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readStackState } from '../../client/config';
import { freePort } from '../../client/ports';
import { isPidAlive } from '../../client/managedProcess';
import { FERRY_BIN, freeStackPorts, runFerry, stackPortArgs, type CliResult, type StackPorts } from '../support/ferryCli';
import { treeHashes, writeSampleProject } from '../support/fixtures';

let home: string;
let work: string;
let ports: StackPorts;

const ferry = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
  runFerry(args, { cwd: work, env: { ...process.env, FERRY_HOME: home, ...env }, timeoutMs: 180_000 });
const portArgs = () => stackPortArgs(ports);

before(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'ferry-cli-home-'));
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-cli-work-'));
  ports = await freeStackPorts();
});

after(async () => {
  await ferry(['down']);
  await rm(home, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

describe('ferry CLI on the embedded stack', () => {
  it('up --detach starts every service and records it', async () => {
    const up = await ferry(['up', '--detach', ...portArgs()]);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stderr, /ferry stack is up/);
    assert.match(up.stderr, new RegExp(`web ui\\s+http://127.0.0.1:${ports.ui}`));
    const state = readStackState(home);
    assert.deepEqual(state?.services.map((s) => s.name).sort(), ['agent', 'temporal', 'weed', 'worker'].sort());
    for (const service of state!.services) assert.ok(isPidAlive(service.pid), `${service.name} is running`);
  });

  it('a second up reports the running stack instead of starting another', async () => {
    const again = await ferry(['up', '--detach', ...portArgs()]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /already running .*nothing to start/);
  });

  it('sync --json prints one object; timeline --json lists the four steps; files shows target hashes', async () => {
    const source = path.join(work, 'project');
    const { synced } = await writeSampleProject(source);
    const sync = await ferry(['sync', source, '--session', 'cli', '--json']);
    assert.equal(sync.code, 0, sync.stderr);
    const summary = JSON.parse(sync.stdout) as Record<string, unknown>;
    for (const key of ['workflowId', 'manifestDigest', 'filesTotal', 'bytesUploaded', 'bytesSkipped', 'bytesLanded', 'verified']) assert.ok(key in summary, key);
    assert.equal(summary.verified, true);
    assert.equal(summary.filesTotal, synced.length);

    const timeline = await ferry(['timeline', String(summary.workflowId), '--json']);
    assert.equal(timeline.code, 0, timeline.stderr);
    const steps = (JSON.parse(timeline.stdout) as { steps: { name: string; attempts: number }[] }).steps;
    assert.deepEqual(steps.map((s) => s.name), ['provisionSession', 'snapshotSource', 'uploadBlobs', 'landManifest', 'verifyLanding']);

    const human = await ferry(['timeline', String(summary.workflowId), '--gap', '1ms']);
    assert.match(human.stdout, /STEP\s+ATTEMPTS\s+SCHEDULED/);
    assert.match(human.stdout, new RegExp(`web ui: http://127.0.0.1:${ports.ui}/namespaces/default/workflows/`));

    const files = await ferry(['files', 'cli', '--json']);
    assert.equal(files.code, 0, files.stderr);
    const listing = JSON.parse(files.stdout) as { files: { path: string; sha256: string }[] };
    const expected = await treeHashes(source);
    assert.deepEqual(listing.files.map((f) => f.path), synced);
    for (const file of listing.files) assert.equal(file.sha256, expected[file.path]);

    const resync = JSON.parse((await ferry(['sync', source, '--session', 'cli', '--json'])).stdout) as Record<string, number>;
    assert.equal(resync.bytesUploaded, 0);
  });

  it('failures exit non-zero with a one-line cause naming the type', async () => {
    const missing = await ferry(['sync', path.join(work, 'does-not-exist'), '--session', 'cli']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^ferry: sync \S+ failed \(SourceNotFound\): snapshotSource failed: source folder .*does-not-exist/);

    const badSession = await ferry(['sync', work, '--session', '../x']);
    assert.notEqual(badSession.code, 0);
    assert.match(badSession.stderr, /sessionId "\.\.\/x" must be/);

    const unknown = await ferry(['timeline', 'no-such-workflow']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^ferry: no workflow no-such-workflow in namespace default\n$/);

    const help = await ferry(['sync', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--session <id>/);
  });

  it('warns at once when no worker polls the queue, and Ctrl-C leaves the durable sync running', async () => {
    const child = spawn(process.execPath, [FERRY_BIN, 'sync', work, '--session', 'unpolled', '--json'], {
      cwd: work,
      env: { ...process.env, FERRY_HOME: home, FERRY_TASK_QUEUE: 'nobody-polls-this' },
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    for (let waited = 0; !stderr.includes('no worker is polling') && waited < 30_000; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
    assert.match(stderr, /⚠ no worker is polling task queue nobody-polls-this: (sync-unpolled-\d+) waits until one does/);
    const workflowId = /(sync-unpolled-\d+)/.exec(stderr)![1];
    child.kill('SIGINT');
    assert.equal(await exited, 130);
    assert.match(stderr, new RegExp(`${workflowId} carries on in Temporal. Follow it with: ferry timeline ${workflowId}`));
    const timeline = JSON.parse((await ferry(['timeline', workflowId, '--json'])).stdout) as { status: string };
    assert.equal(timeline.status, 'running');
  });

  it('pipeline start, exec, stage finish and status drive a pipeline; exec exits with the code\'s status', async () => {
    const data = path.join(work, 'pipeline-data');
    await writeSampleProject(data);
    const started = await ferry(['pipeline', 'start', '--session', 'clipipe', '--input', data, '--stages', 'coder', '--json']);
    assert.equal(started.code, 0, started.stderr);
    const { workflowId } = JSON.parse(started.stdout) as { workflowId: string };
    assert.equal(workflowId, 'pipeline-clipipe');
    const script = path.join(work, 'look.sh');
    await writeFile(script, 'ls ./data/; echo to-stderr >&2; exit 3\n');
    const looked = await ferry(['exec', workflowId, '--lang', 'bash', '--code', script]);
    assert.equal(looked.code, 3, 'exec exits with the code\'s exit status');
    assert.match(looked.stdout, /README\.md/);
    assert.match(looked.stderr, /to-stderr/);
    assert.match(looked.stderr, /e1-coder-[0-9a-f-]{36} in stage coder: exit 3/);
    const asJson = await ferry(['exec', workflowId, '--lang', 'python', '--code', script.replace('look.sh', 'hello.py'), '--json']);
    assert.equal(asJson.code, 2, 'a missing code file is a usage error');
    await writeFile(path.join(work, 'hello.py'), 'print(6 * 7)\n');
    const hello = await ferry(['exec', workflowId, '--lang', 'python', '--code', path.join(work, 'hello.py'), '--json']);
    assert.equal(hello.code, 0, hello.stderr);
    assert.equal((JSON.parse(hello.stdout) as { stdoutTail: string }).stdoutTail, '42\n');
    const status = await ferry(['status', workflowId]);
    assert.match(status.stdout, /pipeline pipeline-clipipe: running, stage coder/);
    assert.match(status.stdout, /coder\s+running\s+2/);
    assert.equal((await ferry(['stage', 'finish', workflowId, '--summary', 'done'])).code, 0);
    let state: { status: string } = { status: '' };
    for (let i = 0; i < 100 && state.status !== 'completed'; i++) {
      state = JSON.parse((await ferry(['status', workflowId, '--json'])).stdout) as { status: string };
      if (state.status !== 'completed') await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.equal(state.status, 'completed');
  });

  it('down stops every service', async () => {
    const state = readStackState(home)!;
    const down = await ferry(['down']);
    assert.equal(down.code, 0, down.stderr);
    for (const service of state.services) assert.equal(isPidAlive(service.pid), false, `${service.name} stopped`);
    assert.equal(readStackState(home), undefined);
  });

  it('says what to do when Temporal is not reachable, and when a port is taken', async () => {
    const closedPort = await freePort();
    const unreachable = await ferry(['timeline', 'x'], { FERRY_TEMPORAL_ADDRESS: `127.0.0.1:${closedPort}` });
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /cannot reach Temporal at 127\.0\.0\.1:\d+.*ferry up --detach/);

    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(ports.s3, '127.0.0.1', resolve));
    try {
      const up = await ferry(['up', '--detach', ...portArgs()]);
      assert.equal(up.code, 1);
      assert.match(up.stderr, new RegExp(`port ${ports.s3} \\(s3\\) is already in use`));
    } finally {
      blocker.close();
    }
  });
});
