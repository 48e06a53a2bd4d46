/**
 * Every workflow on every kind of target this machine can run for real:
 * `local` (the runtime agent), `shell` (scripts run by bash here) and `ssh`
 * (the same scripts over a real sshd on a loopback port, with a generated
 * host key checked against known_hosts). Each cell shows that the target
 * itself re-hashed the files before code ran: a file changed on the target
 * without changing its size (so only a hash can tell) is found and landed
 * again before the next code reads it. The ecs and ssm kinds are tested at
 * the protocol level against moto (ecsDriver.test.ts, ssmMoto.test.ts).
 */
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { LandManifestResult, VerifyLandingResult } from '../../activities/session';
import { sshTarget } from '../../activities/targets/ssh';
import { summarizeHistory } from '../../client/history';
import { PipelineClient } from '../../client/pipelineClient';
import { followLogs } from '../../client/training';
import type { ExecuteResult } from '../../core/pipeline';
import { sessionRoot, type SyncDryRun, type SyncInput, type SyncResult } from '../../core/sync';
import type { TargetRef } from '../../core/target';
import type { TrainingInput, TrainingResult } from '../../core/training';
import { assertNoneIn, sha256, treeHashes, writeTree } from '../support/fixtures';
import { requireOrSkip } from '../support/requirements';
import { sshdMissing, startSshd, type RunningSshd } from '../support/sshd';
import { resultOf, startTestStack, type TestStack } from '../support/testStack';

let stack: TestStack;
let work: string;
let sshd: RunningSshd | undefined;
const TASK_QUEUE = 'ferry-matrix';
/** The ssh target's tests need a real sshd: skipped without one, failed under CI=true. */
const sshSkip = requireOrSkip('sshd', sshdMissing());

before(async () => {
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-matrix-'));
  if (!sshSkip) sshd = await startSshd(path.join(work, 'sshd'));
  const settings: Record<string, string | undefined> = { ...stack.settings, ...sshd?.settings };
  const ssh = sshTarget.configure({ settings: (name) => settings[name], blobs: stack.blobs });
  await stack.startWorker({ taskQueue: TASK_QUEUE, targets: new Map([['ssh', ssh]]) });
});

after(async () => {
  await sshd?.stop();
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

interface Kind {
  name: string;
  target: () => TargetRef;
  /** The session's folder as this machine sees it. */
  sessionDir: (sessionId: string) => string;
}

const KINDS: Kind[] = [
  { name: 'local', target: () => ({ kind: 'local' }), sessionDir: (id) => path.join(stack.agentRoot, sessionRoot(id)) },
  { name: 'shell', target: () => ({ kind: 'shell', root: path.join(work, 'shell-target') }), sessionDir: (id) => path.join(work, 'shell-target', sessionRoot(id)) },
  {
    name: 'ssh',
    target: () => ({ kind: 'ssh', host: sshd!.host, port: sshd!.port, user: sshd!.user, root: path.join(work, 'ssh-target') }),
    sessionDir: (id) => path.join(work, 'ssh-target', sessionRoot(id)),
  },
];

/** Names that break naive scripts and naive agents alike. */
const HOSTILE: Record<string, string> = {
  'with space.txt': 'a\n',
  "it's \"quoted\".txt": 'b\n',
  '$(touch pwned).txt': 'c\n',
  '`touch pwned2`.txt': 'd\n',
  'line\nbreak.txt': 'e\n',
  '-rf': 'f\n',
  'ünïcödé/データ.csv': 'g\n',
};

/** Activities of a workflow that completed, in history order, with their results. */
async function activities(workflowId: string): Promise<{ name: string; result?: unknown }[]> {
  return (await closedActivities(workflowId)).filter((a) => a.failure === undefined);
}

/** Every activity, local ones (checkSession) included, that completed or failed (after its retries), in history order. */
async function closedActivities(workflowId: string): Promise<{ name: string; result?: unknown; failure?: string }[]> {
  const { events } = await stack.client.workflow.getHandle(workflowId).fetchHistory();
  const names = new Map<number, string>();
  const closed: { name: string; result?: unknown; failure?: string }[] = [];
  for (const event of summarizeHistory(events ?? [])) {
    if (event.kind === 'activityScheduled') names.set(event.eventId, event.activityType);
    if (event.kind !== 'activityClosed' && event.kind !== 'localActivity') continue;
    if (event.kind === 'activityClosed' && event.status !== 'completed' && event.status !== 'failed') continue;
    const name = event.kind === 'activityClosed' ? names.get(event.scheduledEventId)! : event.activityType;
    closed.push(event.failure ? { name, failure: event.failure.type ?? 'failed' } : { name, result: event.result });
  }
  return closed;
}

/** Rewrites a landed file with other bytes of the same size: a size check passes, only a hash can tell. */
async function tamper(file: string): Promise<void> {
  const body = await readFile(file);
  await writeFile(file, Buffer.from(body.map((byte) => byte ^ 0x20)));
}

function assertNothingExecuted(...dirs: string[]): void {
  for (const dir of dirs) assertNoneIn(dir, ['pwned', 'pwned2'], `nothing executed in ${dir}`);
}

for (const kind of KINDS) {
  describe(`${kind.name} target`, { skip: kind.name === 'ssh' && sshSkip }, () => {
    it('sync: hostile names land byte for byte; a same-size change on the target is found by hashing there and repaired', async () => {
      const sessionId = `matrix-sync-${kind.name}`;
      const source = path.join(work, `source-${kind.name}`);
      await writeTree(source, { 'data.csv': 'x,y\n1,2\n', 'nested/deep/notes.md': '# notes\n', ...HOSTILE });
      const sync = async () => {
        const input: SyncInput = { sessionId, source: { path: source }, target: kind.target() };
        const handle = await stack.client.workflow.start('syncWorkflow', { taskQueue: TASK_QUEUE, workflowId: `sync-${sessionId}-${Date.now()}`, args: [input] });
        return { workflowId: handle.workflowId, result: await resultOf<SyncResult>(handle) };
      };
      const first = await sync();
      assert.equal(first.result.verified, true);
      assert.equal(first.result.filesVerified, Object.keys(HOSTILE).length + 2);
      const landed = path.join(kind.sessionDir(sessionId), 'data');
      assert.deepEqual(await treeHashes(landed), await treeHashes(source));
      assert.deepEqual((await activities(first.workflowId)).map((a) => a.name), ['provisionSession', 'snapshotSource', 'uploadBlobs', 'landManifest', 'verifyLanding']);
      assertNothingExecuted(landed, kind.sessionDir(sessionId), work, source);

      await tamper(path.join(landed, 'data.csv'));
      const second = await sync();
      assert.equal(second.result.filesLanded, 1, 'the target hashed what it held and found the changed file');
      assert.equal(second.result.bytesUploaded, 0);
      assert.equal(await readFile(path.join(landed, 'data.csv'), 'utf8'), 'x,y\n1,2\n');
    });

    it('sync: a folder named .git is never synced, at any depth, whatever the ignore files say', async () => {
      const sessionId = `matrix-git-${kind.name}`;
      const source = path.join(work, `git-source-${kind.name}`);
      await writeTree(source, {
        'app.py': 'print("hi")\n',
        '.git/HEAD': 'ref: refs/heads/main\n',
        '.git/config': '[core]\n\tbare = false\n',
        'vendor/lib/.git/HEAD': 'ref: refs/heads/dev\n',
        'vendor/lib/lib.py': 'x = 1\n',
        // Negations that would bring .git back, were it an ignore rule that kept it out.
        '.gitignore': '!.git\n!.git/**\n',
        '.ferryignore': '!.git/\n!**/.git/**\n',
      });
      const input: SyncInput = { sessionId, source: { path: source }, target: kind.target() };
      const handle = await stack.client.workflow.start('syncWorkflow', { taskQueue: TASK_QUEUE, workflowId: `sync-${sessionId}-${Date.now()}`, args: [input] });
      const result = await resultOf<SyncResult>(handle);
      assert.equal(result.verified, true);
      const landed = path.join(kind.sessionDir(sessionId), 'data');
      assert.deepEqual(Object.keys(await treeHashes(landed)).sort(), ['.ferryignore', '.gitignore', 'app.py', 'vendor/lib/lib.py']);
      assert.equal(result.filesVerified, 4);
      assertNoneIn(landed, ['.git'], 'no .git at the top');
      assertNoneIn(path.join(landed, 'vendor', 'lib'), ['.git'], 'no nested .git');
    });

    it('sync: the link policy is the same here: by default outside and dangling links are skipped and named; `copy` lands every link as a link, verified by its text', async () => {
      const sessionId = `matrix-links-${kind.name}`;
      const source = path.join(work, `links-source-${kind.name}`);
      await writeTree(source, { 'data/a.csv': 'a,b\n1,2\n' });
      await symlink('data/a.csv', path.join(source, 'latest.csv'));
      await symlink('/etc/hostname', path.join(source, 'hostname'));
      await symlink('missing.txt', path.join(source, 'dangling'));
      const sync = async (links?: SyncInput['links']) => {
        const input: SyncInput = { sessionId, source: { path: source }, target: kind.target(), ...(links ? { links } : {}) };
        const handle = await stack.client.workflow.start('syncWorkflow', { taskQueue: TASK_QUEUE, workflowId: `sync-${sessionId}-${Date.now()}`, args: [input] });
        return resultOf<SyncResult>(handle);
      };
      const landed = path.join(kind.sessionDir(sessionId), 'data');

      const skipped = await sync();
      assert.deepEqual(
        skipped.linksSkipped.first.map((link) => [link.path, link.why]),
        [
          ['dangling', 'dangling'],
          ['hostname', 'outside'],
        ],
      );
      assert.equal(skipped.filesVerified, 2);
      assert.ok((await lstat(path.join(landed, 'latest.csv'))).isFile(), 'a link inside the source lands as the file it points to');
      assert.equal(await readFile(path.join(landed, 'latest.csv'), 'utf8'), 'a,b\n1,2\n');
      assertNoneIn(landed, ['hostname'], 'the link leading outside was skipped');

      const copied = await sync('copy');
      assert.equal(copied.filesVerified, 4, 'the target listed every link by its text and verification compared them');
      assert.equal(copied.linksSkipped.total, 0);
      for (const [name, text] of [['latest.csv', 'data/a.csv'], ['hostname', '/etc/hostname'], ['dangling', 'missing.txt']]) {
        assert.ok((await lstat(path.join(landed, name))).isSymbolicLink(), name);
        assert.equal(await readlink(path.join(landed, name)), text, name);
      }

      // A file holding a link's text is not the link: the target's listing tells them apart and the next sync makes the link again.
      await rm(path.join(landed, 'dangling'));
      await writeFile(path.join(landed, 'dangling'), 'missing.txt');
      const repaired = await sync('copy');
      assert.equal(repaired.filesLanded, 1);
      assert.equal(await readlink(path.join(landed, 'dangling')), 'missing.txt');
    });

    it('sync --dry-run: the target hashes what it already holds; a session never synced is not created', async () => {
      const sessionId = `matrix-dry-${kind.name}`;
      const source = path.join(work, `dry-source-${kind.name}`);
      await writeTree(source, { 'same.txt': 'same\n', 'changed.txt': 'new!\n', 'missing.txt': 'missing\n' });
      await writeTree(path.join(kind.sessionDir(sessionId), 'data'), { 'same.txt': 'same\n', 'changed.txt': 'old!\n' });
      const plan = async (id: string) => {
        const input: SyncInput = { sessionId: id, source: { path: source }, target: kind.target(), dryRun: true };
        const handle = await stack.client.workflow.start('syncWorkflow', { taskQueue: TASK_QUEUE, workflowId: `sync-${id}-${Date.now()}`, args: [input] });
        return resultOf<SyncDryRun>(handle);
      };
      const planned = await plan(sessionId);
      assert.deepEqual([planned.landing.filesHeld, planned.landing.filesToLand, planned.landing.bytesToLand], [1, 2, 'new!\n'.length + 'missing\n'.length], 'a same-size change is found by hashing');
      assert.equal(await readFile(path.join(kind.sessionDir(sessionId), 'data', 'changed.txt'), 'utf8'), 'old!\n', 'nothing landed');
      const fresh = await plan(`${sessionId}-fresh`);
      assert.deepEqual([fresh.landing.filesHeld, fresh.landing.filesToLand], [0, 3]);
      const freshDir = kind.sessionDir(`${sessionId}-fresh`);
      assertNoneIn(path.dirname(freshDir), [path.basename(freshDir)], 'no session was provisioned');
    });

    it('sync: a folder on the target replaced by a link to outside the session is refused, and nothing is written outside', async () => {
      const sessionId = `matrix-link-${kind.name}`;
      const source = path.join(work, `link-source-${kind.name}`);
      await writeTree(source, { 'models/weights.bin': 'weights\n', 'top.txt': 'top\n' });
      const outside = await mkdtemp(path.join(work, 'outside-'));
      await mkdir(path.join(kind.sessionDir(sessionId), 'data'), { recursive: true });
      await symlink(outside, path.join(kind.sessionDir(sessionId), 'data', 'models'));
      const input: SyncInput = { sessionId, source: { path: source }, target: kind.target() };
      const handle = await stack.client.workflow.start('syncWorkflow', { taskQueue: TASK_QUEUE, workflowId: `sync-${sessionId}`, args: [input] });
      await assert.rejects(handle.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure, String(err));
        assert.equal(err.cause.type, 'UnsafePath', err.cause.message);
        assert.equal(err.cause.nonRetryable, true);
        return true;
      });
      assert.deepEqual(await readdir(outside), [], 'nothing was written through the link');
    });

    it('pipeline: two stages execute on verified inputs; a same-size change made between them is re-hashed on the target and re-landed before the second stage runs', async (t: TestContext) => {
      const sessionId = `matrix-pipe-${kind.name}`;
      const input = path.join(work, `pipeline-input-${kind.name}`);
      const csv = 'region,total\nnorth,120\nsouth,80\n';
      await writeTree(input, { 'sales.csv': csv, 'notes/readme.md': 'inputs\n' });
      // An artifact that is a link to a file outside the session: collected as a link, never read through.
      const secret = path.join(work, `secret-${kind.name}.txt`);
      await writeFile(secret, `not an artifact ${kind.name} ${Date.now()}\n`);
      const pipelines = new PipelineClient(stack.client, TASK_QUEUE);
      const { workflowId } = await pipelines.start({ sessionId, target: kind.target(), inputs: [{ path: input }], stages: ['coder', 'validator'], stageIdleTimeout: '2m' });
      const coded: ExecuteResult = await pipelines.execute(workflowId, { language: 'bash', code: `sha256sum data/sales.csv && echo coded > artifacts/coder.txt && ln -s '${secret}' artifacts/secret.txt` });
      assert.equal(coded.exitCode, 0, coded.stderrTail);
      assert.equal(coded.stdoutTail.split(' ')[0], sha256(csv));
      await pipelines.finishStage(workflowId, 'coded', { stage: 'coder' });

      await tamper(path.join(kind.sessionDir(sessionId), 'data', 'sales.csv'));
      const validated = await pipelines.execute(workflowId, { language: 'python', code: "print(open('data/sales.csv').read(), end='')" });
      assert.equal(validated.stage, 'validator');
      assert.equal(validated.stdoutTail, csv, 'the validator read the verified bytes, not the changed ones');
      await pipelines.finishStage(workflowId, 'validated', { stage: 'validator' });
      const result = await pipelines.result(workflowId);
      assert.deepEqual(result.stages.map((s) => [s.name, s.status, s.executions]), [['coder', 'finished', 1], ['validator', 'finished', 1]]);
      assert.deepEqual(
        result.stages[0].artifacts?.files.map((f) => [f.path, f.link ?? null, f.key === undefined]),
        [
          ['coder.txt', null, false],
          ['secret.txt', secret, true],
        ],
      );
      assert.equal((await stack.blobs.getBlob(result.stages[0].artifacts!.files[0].sha256)).toString(), 'coded\n');
      assert.equal(await stack.blobs.hasObject(stack.blobs.blobKey(sha256(await readFile(secret)))), false, 'what the link points to was never stored');

      const steps = (await closedActivities(workflowId)).map((a) => (a.failure ? `${a.name}:${a.failure}` : a.name));
      const executes = steps.flatMap((name, i) => (name === 'executeCode' ? [i] : []));
      assert.equal(executes.length, 2);
      // Before each stage's first execution the target re-hashes every input: before the second, its hashes showed the change
      // (its size, all checkSession looks at, had not changed), and the file was landed and verified again.
      assert.equal(steps[executes[0] - 1], 'verifyLanding');
      assert.deepEqual(steps.slice(executes[0] + 1, executes[1]), ['collectArtifacts', 'checkSession', 'verifyLanding:VerificationFailed', 'landManifest', 'verifyLanding']);
      assert.equal(steps.at(-1), 'releaseSession');
      assertNoneIn(path.dirname(kind.sessionDir(sessionId)), [sessionId], 'the released session took its folder with it');
      t.diagnostic(`${kind.name}: ${steps.join(' → ')}`);
    });

    it('training: the project is verified on the target before the command starts; the log is followed to exit 0 and outputs are collected', async () => {
      const runId = `matrix-train-${kind.name}`;
      const project = path.join(work, `project-${kind.name}`);
      await writeTree(project, {
        'train.sh': 'for epoch in 1 2 3; do echo "epoch $epoch of $(cat config.txt)"; sleep 0.3; done\necho "weights" > "$FERRY_OUTPUT_DIR/model.bin"\n',
        'config.txt': 'tiny\n',
      });
      const input: TrainingInput = { runId, project: { path: project }, target: kind.target(), command: ['sh', 'train.sh'], startupGraceSeconds: 0.5, pollSeconds: 1 };
      const handle = await stack.client.workflow.start('trainingWorkflow', { taskQueue: TASK_QUEUE, workflowId: `train-${runId}`, args: [input] });
      const log: Buffer[] = [];
      await followLogs(stack.client, stack.blobs, handle.workflowId, true, (bytes) => log.push(bytes));
      const result = await resultOf<TrainingResult>(handle);
      assert.equal(result.exitCode, 0);
      assert.equal(Buffer.concat(log).toString(), 'epoch 1 of tiny\nepoch 2 of tiny\nepoch 3 of tiny\n');
      assert.deepEqual(result.outputs?.files.map((f) => f.path), ['model.bin']);
      assert.equal((await stack.blobs.getBlob(result.outputs!.files[0].sha256)).toString(), 'weights\n');

      const done = await activities(handle.workflowId);
      const names = done.map((a) => a.name);
      assert.deepEqual(names.slice(0, 7), ['provisionSession', 'snapshotSource', 'uploadBlobs', 'landManifest', 'verifyLanding', 'startProcess', 'confirmProcess']);
      const verified = done[names.indexOf('verifyLanding')].result as VerifyLandingResult;
      const landed = done[names.indexOf('landManifest')].result as LandManifestResult;
      assert.equal(verified.filesVerified, 2, 'both project files re-hashed on the target');
      assert.equal(verified.bootId, landed.bootId, 'on the boot it was landed on');
      assert.deepEqual(names.slice(-2), ['collectArtifacts', 'releaseSession']);
      assert.equal(await readFile(path.join(kind.sessionDir(runId), 'project', 'config.txt'), 'utf8'), 'tiny\n', 'a training session keeps its files');
    });
  });
}

describe('ssh target: the host key is always checked', { skip: sshSkip }, () => {
  it('a host whose key is not the one known_hosts holds is refused at provisioning, not retried, and nothing reaches it', async () => {
    const other = path.join(work, 'other-known-hosts');
    // Another host's key under this host's name: what a man in the middle would present.
    const otherKey = path.join(work, 'other_ed25519');
    const { execFile } = await import('node:child_process');
    await new Promise<void>((resolve, reject) => execFile('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', otherKey], (err) => (err ? reject(err) : resolve())));
    const publicKey = (await readFile(`${otherKey}.pub`, 'utf8')).split(' ').slice(0, 2).join(' ');
    await writeFile(other, `[127.0.0.1]:${sshd!.port} ${publicKey}\n`);
    const settings: Record<string, string | undefined> = { ...sshd!.settings, FERRY_SSH_KNOWN_HOSTS: other };
    const queue = 'ferry-matrix-wrong-key';
    await stack.startWorker({ taskQueue: queue, targets: new Map([['ssh', sshTarget.configure({ settings: (name) => settings[name], blobs: stack.blobs })]]) });
    const root = path.join(work, 'never-reached');
    const input: SyncInput = { sessionId: 'wrong-key', source: { path: work }, target: { kind: 'ssh', host: '127.0.0.1', port: sshd!.port, user: sshd!.user, root } };
    const handle = await stack.client.workflow.start('syncWorkflow', { taskQueue: queue, workflowId: 'sync-wrong-key', args: [input] });
    await assert.rejects(handle.result(), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure, String(err));
      assert.equal(err.cause.type, 'TargetUnauthorized');
      assert.match(err.cause.message, /^provisionSession failed: ssh:.*the host's key is not the one .*other-known-hosts holds for it/);
      return true;
    });
    assert.deepEqual((await activities('sync-wrong-key')).map((a) => a.name), [], 'no step completed');
    assertNoneIn(work, [path.basename(root)], 'nothing ran on the host');
  });
});
