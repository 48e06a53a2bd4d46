/**
 * The `ecs` target end to end at the API level: ECS is moto's server (real
 * HTTP, real SDK calls; tasks held in their state by moto's manual
 * transitions), and the "container" is a real runtime agent started from
 * exactly the environment the driver put into the task's container
 * overrides, reached through the endpoint the driver resolved from the
 * task's ENI. A real pipeline and a real training run then land, verify,
 * execute and collect in such sessions (real Temporal dev server and
 * SeaweedFS), and release stops the task; a sync to ecs is refused.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  CreateClusterCommand,
  DescribeTasksCommand,
  ECSClient,
  ListTasksCommand,
  RegisterTaskDefinitionCommand,
  type RegisterTaskDefinitionCommandInput,
  type Task,
} from '@aws-sdk/client-ecs';
import type { ProvisionRequest } from '../../activities/targets/driver';
import { createEcsBackend, sessionToken, type EcsBackendDeps, type EcsTargetOptions } from '../../activities/targets/ecs';
import { followLogs } from '../../client/training';
import { freePort } from '../../client/ports';
import { repoRoot, resolveTool } from '../../client/tools';
import { startMotoServer } from '../support/motoServer';
import { type StartedServer } from '../../client/managedProcess';
import type { SyncInput } from '../../core/sync';
import type { TrainingInput, TrainingResult } from '../../core/training';
import { startAgent, type RunningAgent } from '../../runtime/agent';
import { writeSampleProject, writeTree } from '../support/fixtures';
import { PipelineClient } from '../../client/pipelineClient';
import { deployTemplate } from '../support/deployTemplates';
import { startTestStack, type TestStack } from '../support/testStack';

const region = 'us-east-1';
const cluster = 'ferry-test';
const secret = randomBytes(32).toString('hex');

let moto: StartedServer & { endpoint: string };
let stack: TestStack;
let ecs: ECSClient;
let work: string;
let network: { subnet: string; securityGroup: string };
const agents: RunningAgent[] = [];

/** moto's EC2 query API; it checks no signatures, but routes by the credential scope's service name. */
async function ec2(action: string): Promise<string> {
  const response = await fetch(`${moto.endpoint}/`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `AWS4-HMAC-SHA256 Credential=test/20260101/${region}/ec2/aws4_request, SignedHeaders=host, Signature=0`,
    },
    body: `Action=${action}&Version=2016-11-15`,
  });
  assert.equal(response.status, 200, `EC2 ${action}`);
  return response.text();
}

before(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-ecs-it-'));
  const [motoStarted, stackStarted] = await Promise.all([
    (async () =>
      startMotoServer({ binary: resolveTool('moto', repoRoot()), host: '127.0.0.1', port: await freePort(), logFile: path.join(work, 'moto.log') }))(),
    startTestStack(),
  ]);
  moto = motoStarted;
  stack = stackStarted;
  // Hold every task in the state it reaches; by default moto advances one state per DescribeTasks.
  const transition = await fetch(`${moto.endpoint}/moto-api/state-manager/set-transition`, {
    method: 'POST',
    body: JSON.stringify({ model_name: 'ecs::task', transition: { progression: 'manual', times: 1_000_000 } }),
  });
  assert.equal(transition.status, 201);

  network = {
    subnet: /<subnetId>(subnet-[0-9a-f]+)<\/subnetId>/.exec(await ec2('DescribeSubnets'))![1],
    securityGroup: /<groupId>(sg-[0-9a-f]+)<\/groupId>/.exec(await ec2('DescribeSecurityGroups'))![1],
  };
  ecs = new ECSClient({ region, endpoint: moto.endpoint, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  await ecs.send(new CreateClusterCommand({ clusterName: cluster }));
  // The task definition users register (deploy/ecs/runtime-task-definition.json), as envsubst fills it.
  await ecs.send(new RegisterTaskDefinitionCommand(deployTemplate<RegisterTaskDefinitionCommandInput>('ecs/runtime-task-definition.json')));
});

after(async () => {
  for (const agent of agents) await agent.close().catch(() => undefined);
  await stack?.stop();
  await moto?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function describe1(taskArn: string): Promise<Task> {
  const { tasks } = await ecs.send(new DescribeTasksCommand({ cluster, tasks: [taskArn], include: ['TAGS'] }));
  return tasks![0];
}

/**
 * Plays the container: once the driver's task exists, start a runtime agent
 * with the environment ECS would give the container (root and host adapted
 * to this machine) on a local port, which `agentUrlFor` resolves to.
 */
async function bootTaskAgentWhenStarted(
  sessionId: string,
): Promise<{ agentUrlFor: EcsBackendDeps['agentUrlFor']; booted: Promise<{ env: Record<string, string>; agent: RunningAgent; root: string }> }> {
  const port = await freePort();
  const booted = (async () => {
    for (;;) {
      const { taskArns } = await ecs.send(new ListTasksCommand({ cluster, startedBy: `ferry-${sessionId}` }));
      if (taskArns?.length) {
        const task = await describe1(taskArns[0]);
        const override = task.overrides?.containerOverrides?.find((o) => o.name === 'ferry-agent');
        const env = Object.fromEntries((override?.environment ?? []).map((e) => [e.name!, e.value!]));
        const root = path.join(work, 'tasks', sessionId);
        const agent = await startAgent({
          root,
          token: env.FERRY_AGENT_TOKEN,
          host: '127.0.0.1',
          port,
          allowedUrlPrefixes: env.FERRY_AGENT_ALLOWED_URL_PREFIXES.split(','),
          log: { log: () => undefined },
        });
        agents.push(agent);
        return { env, agent, root };
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  return { agentUrlFor: () => `http://127.0.0.1:${port}`, booted };
}

const settings = (taskDefinition = 'ferry-agent') => ({
  cluster,
  taskDefinition,
  containerName: 'ferry-agent',
  subnets: [network.subnet],
  securityGroups: [network.securityGroup],
  assignPublicIp: false,
  agentPort: 8390,
});

function backend(agentUrlFor?: EcsBackendDeps['agentUrlFor'], taskDefinition?: string) {
  return createEcsBackend({ ecs, settings: settings(taskDefinition), sessionSecret: secret, blobs: stack.blobs, agentUrlFor, timing: { pollInitialMs: 50, pollMaxMs: 200, healthTimeoutMs: 20_000 } });
}

const provisionRequest = (sessionId: string, heartbeat: ProvisionRequest['heartbeat'] = () => undefined): ProvisionRequest<EcsTargetOptions> => ({
  sessionId,
  target: { kind: 'ecs' },
  purpose: 'pipeline',
  heartbeat,
  signal: new AbortController().signal,
});

describe('ecs target against moto', () => {
  it('RunTask → RUNNING → agent health; a retried provision reuses the task; StopTask → STOPPED, and again "already gone"', async () => {
    const sessionId = 'ecs-it-1';
    const token = sessionToken(secret, sessionId);
    const boot = await bootTaskAgentWhenStarted(sessionId);
    const ecsTarget = backend(boot.agentUrlFor);
    const heartbeats: Record<string, unknown>[] = [];
    const provisioned = await ecsTarget.provision(provisionRequest(sessionId, (d) => heartbeats.push(d)));
    const { env, agent, root } = await boot.booted;

    // The task as ECS holds it: FARGATE, tagged, with the agent's settings as container overrides.
    const task = await describe1(provisioned.details.taskArn);
    assert.equal(task.lastStatus, 'RUNNING');
    assert.equal(task.launchType, 'FARGATE');
    assert.match(task.taskDefinitionArn ?? '', /:task-definition\/ferry-agent:1$/);
    assert.equal(task.startedBy, `ferry-${sessionId}`);
    assert.deepEqual(task.tags, [{ key: 'ferry:session', value: sessionId }]);
    assert.equal(env.FERRY_AGENT_TOKEN, token);
    assert.equal(env.FERRY_AGENT_ALLOWED_URL_PREFIXES, await stack.blobs.blobUrlPrefix());
    assert.equal(env.FERRY_AGENT_PORT, '8390');
    const eniIp = task.attachments?.[0].details?.find((d) => d.name === 'privateIPv4Address')?.value;
    assert.ok(eniIp && provisioned.details.privateIp === eniIp, `private IP from the ENI attachment: ${eniIp}`);
    assert.equal(provisioned.agentUrl, `http://127.0.0.1:${agent.port}`);
    assert.equal(provisioned.bootId, agent.bootId);
    assert.equal(provisioned.root, root);
    assert.deepEqual(await readdir(root).then((names) => names.sort()), ['artifacts', 'data', 'work'], "the pipeline's folders, created through the agent");
    assert.ok(heartbeats.some((h) => h.phase === 'waiting for agent'), 'heartbeats while the agent boots');
    assert.ok(!JSON.stringify(provisioned).includes(token), 'the token is not in the session handle');

    // A retried provision (same session) finds the running task instead of starting a second.
    const again = await ecsTarget.provision(provisionRequest(sessionId));
    assert.equal(again.details.taskArn, provisioned.details.taskArn);
    assert.equal(again.details.reused, 'true');
    const { taskArns } = await ecs.send(new ListTasksCommand({ cluster, startedBy: `ferry-${sessionId}` }));
    assert.equal(taskArns?.length, 1);

    // Release: StopTask, then STOPPED; a second release finds it gone.
    const release = () => ecsTarget.release(provisioned, { removeFiles: true, signal: new AbortController().signal });
    const released = await release();
    assert.equal(released.released, true, released.detail);
    const stopped = await describe1(provisioned.details.taskArn);
    assert.equal(stopped.lastStatus, 'STOPPED');
    assert.match(stopped.stoppedReason ?? '', /ferry: session ecs-it-1 released/);
    const twice = await release();
    assert.equal(twice.released, false);
    assert.match(twice.detail, /already gone/);
  });

  it('runs a pipeline whose session is an ECS task: provision through the API, then land, verify, execute and release through the agent protocol', async () => {
    const sessionId = 'ecs-pipe';
    const boot = await bootTaskAgentWhenStarted(sessionId);
    const taskQueue = 'ferry-ecs-pipeline';
    await stack.startWorker({ taskQueue, targets: new Map([['ecs', backend(boot.agentUrlFor)]]) });
    const source = path.join(work, 'pipeline-source');
    await writeSampleProject(source);
    const pipelines = new PipelineClient(stack.client, taskQueue);
    const { workflowId } = await pipelines.start({ sessionId, target: { kind: 'ecs' }, inputs: [{ path: source }], stages: ['coder'] });
    const listing = await pipelines.execute(workflowId, { language: 'bash', code: 'ls data/' });
    assert.equal(listing.exitCode, 0);
    assert.match(listing.stdoutTail, /README\.md/);
    const { root } = await boot.booted;
    const state = await pipelines.state(workflowId);
    assert.equal(state.session?.root, root, 'the session root is the one the task agent reports');
    assert.equal(state.session?.target.kind, 'ecs');
    assert.match(state.session?.details.taskArn ?? '', /^arn:aws:ecs:/);
    assert.ok(!JSON.stringify(state).includes(sessionToken(secret, sessionId)), 'no token in workflow state');
    await pipelines.finishStage(workflowId);
    const result = await pipelines.result(workflowId);
    assert.equal(result.stages[0].executions, 1);
    assert.equal((await describe1(state.session!.details.taskArn)).lastStatus, 'STOPPED', 'releaseSession stopped the task');
  });

  it('runs a training run in an ECS task: the project lands and is verified there, the command is started, confirmed and followed, its outputs collected, the task stopped', async () => {
    const runId = 'ecs-train';
    const boot = await bootTaskAgentWhenStarted(runId);
    const taskQueue = 'ferry-ecs-training';
    await stack.startWorker({ taskQueue, targets: new Map([['ecs', backend(boot.agentUrlFor)]]) });
    const project = path.join(work, 'training-project');
    await writeTree(project, { 'train.sh': 'for e in 1 2 3; do echo "epoch $e"; sleep 0.2; done\necho done > "$FERRY_OUTPUT_DIR/model.txt"\n' });
    const input: TrainingInput = { runId, project: { path: project }, target: { kind: 'ecs' }, command: ['sh', 'train.sh'], startupGraceSeconds: 0.5, pollSeconds: 1 };
    const handle = await stack.client.workflow.start('trainingWorkflow', { taskQueue, workflowId: `train-${runId}`, args: [input] });
    const log: Buffer[] = [];
    await followLogs(stack.client, stack.blobs, handle.workflowId, true, (bytes) => log.push(bytes));
    const result = (await handle.result()) as TrainingResult;
    assert.equal(result.exitCode, 0);
    assert.equal(Buffer.concat(log).toString(), 'epoch 1\nepoch 2\nepoch 3\n');
    assert.equal(result.session.target.kind, 'ecs');
    assert.deepEqual(result.outputs?.files.map((f) => f.path), ['model.txt']);
    assert.equal((await stack.blobs.getBlob(result.outputs!.files[0].sha256)).toString(), 'done\n');
    const { root } = await boot.booted;
    assert.equal(await readFile(path.join(root, 'project', 'train.sh'), 'utf8').then((text) => text.startsWith('for e')), true, 'the project landed in the task');
    assert.equal((await describe1(result.session.details.taskArn)).lastStatus, 'STOPPED', 'the task was released');
  });

  it('refuses a sync to an ECS target before anything starts: its sessions end with the workflow', async () => {
    const taskQueue = 'ferry-ecs-sync';
    await stack.startWorker({ taskQueue, targets: new Map([['ecs', backend()]]) });
    const input: SyncInput = { sessionId: 'ecs-sync', source: { path: work }, target: { kind: 'ecs' } };
    const handle = await stack.client.workflow.start('syncWorkflow', { taskQueue, workflowId: 'sync-ecs-refused', args: [input] });
    await assert.rejects(handle.result(), (err: unknown) => {
      const cause = (err as { cause?: { type?: string; message: string } }).cause;
      assert.equal(cause?.type, 'InvalidInput');
      assert.match(cause?.message ?? '', /a sync cannot target kind ecs: its sessions are compute started for one workflow/);
      return true;
    });
    const { taskArns } = await ecs.send(new ListTasksCommand({ cluster, startedBy: 'ferry-ecs-sync' }));
    assert.deepEqual(taskArns, [], 'no task was started');
  });

  it('fails clearly when the task definition is not registered', async () => {
    await assert.rejects(backend(undefined, 'no-such-family:7').provision(provisionRequest('ecs-it-missing')), (err: unknown) => {
      const failure = err as { type?: string; message: string };
      assert.equal(failure.type, 'SessionLaunchFailed');
      assert.match(failure.message, /no-such-family/);
      return true;
    });
  });
});
