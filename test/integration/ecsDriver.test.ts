/**
 * The ECS session driver end to end at the API level: ECS is moto's server
 * (real HTTP, real SDK calls; tasks held in their state by moto's manual
 * transitions), and the "container" is a real runtime agent started from
 * exactly the environment the driver put into the task's container
 * overrides, reached through the endpoint the driver resolved from the
 * task's ENI. A real syncWorkflow then lands and verifies files in that
 * session (real Temporal dev server and SeaweedFS), and release stops the
 * task.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
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
import { createEcsSessionDriver, type EcsSessionDriverDeps } from '../../activities/ecsSessions';
import { sessionToken, type ProvisionedSession } from '../../activities/sessionDriver';
import { freePort, repoRoot, resolveTool, startMotoServer, type StartedServer } from '../../client/services';
import type { SessionHandle } from '../../core/session';
import { sessionRoot, type SyncResult } from '../../core/sync';
import { startAgent, type RunningAgent } from '../../runtime/agent';
import { treeHashes, writeSampleProject } from '../support/fixtures';
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
): Promise<{ agentUrlFor: EcsSessionDriverDeps['agentUrlFor']; booted: Promise<{ env: Record<string, string>; agent: RunningAgent; root: string }> }> {
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

describe('ecs session driver against moto', () => {
  it('RunTask → RUNNING → agent health; a retried provision reuses the task; a sync lands and verifies there; StopTask → STOPPED', async () => {
    const sessionId = 'ecs-it-1';
    const token = sessionToken(secret, sessionId);
    const boot = await bootTaskAgentWhenStarted(sessionId);
    const driver = createEcsSessionDriver({
      ecs,
      settings: { cluster, taskDefinition: 'ferry-agent', containerName: 'ferry-agent', subnets: [network.subnet], securityGroups: [network.securityGroup], assignPublicIp: false, agentPort: 8390 },
      blobs: stack.blobs,
      agentUrlFor: boot.agentUrlFor,
      timing: { pollInitialMs: 50, pollMaxMs: 200, healthTimeoutMs: 20_000 },
    });
    const heartbeats: Record<string, unknown>[] = [];
    const provisioned: ProvisionedSession = await driver.provision({ sessionId, token, heartbeat: (d) => heartbeats.push(d) });
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
    assert.ok(heartbeats.some((h) => h.phase === 'waiting for agent'), 'heartbeats while the agent boots');
    assert.ok(!JSON.stringify(provisioned).includes(token), 'the token is not in what provision returns');

    // A retried provision (same session) finds the running task instead of starting a second.
    const again = await driver.provision({ sessionId, token, heartbeat: () => undefined });
    assert.equal(again.details.taskArn, provisioned.details.taskArn);
    assert.equal(again.details.reused, 'true');
    const { taskArns } = await ecs.send(new ListTasksCommand({ cluster, startedBy: `ferry-${sessionId}` }));
    assert.equal(taskArns?.length, 1);

    // A real syncWorkflow lands and verifies files through the endpoint the driver resolved.
    const source = path.join(work, 'source');
    const { synced } = await writeSampleProject(source);
    const taskQueue = 'ferry-ecs-session';
    await stack.startWorker({ taskQueue, localAgent: { url: provisioned.agentUrl, token } });
    const handle = await stack.client.workflow.start('syncWorkflow', {
      taskQueue,
      workflowId: `sync-${sessionId}`,
      args: [{ sessionId, source: { path: source } }],
    });
    const result = (await handle.result()) as SyncResult;
    assert.equal(result.verified, true);
    const landed = await treeHashes(path.join(root, sessionRoot(sessionId), 'data'));
    assert.deepEqual(Object.keys(landed).sort(), [...synced].sort());

    // Release: StopTask, then STOPPED; a second release finds it gone.
    const handleForRelease: SessionHandle = { sessionId, target: { kind: 'ecs' }, bootId: agent.bootId, ...provisioned };
    const released = await driver.release(handleForRelease);
    assert.equal(released.released, true, released.detail);
    const stopped = await describe1(provisioned.details.taskArn);
    assert.equal(stopped.lastStatus, 'STOPPED');
    assert.match(stopped.stoppedReason ?? '', /ferry: session ecs-it-1 released/);
    const twice = await driver.release(handleForRelease);
    assert.equal(twice.released, false);
    assert.match(twice.detail, /already gone/);
  });

  it('runs a pipeline whose session is an ECS task: provision through the API, then land, verify, execute and release through the agent protocol', async () => {
    const sessionId = 'ecs-pipe';
    const boot = await bootTaskAgentWhenStarted(sessionId);
    const driver = createEcsSessionDriver({
      ecs,
      settings: { cluster, taskDefinition: 'ferry-agent', containerName: 'ferry-agent', subnets: [network.subnet], securityGroups: [network.securityGroup], assignPublicIp: false, agentPort: 8390 },
      blobs: stack.blobs,
      agentUrlFor: boot.agentUrlFor,
      timing: { pollInitialMs: 50, pollMaxMs: 200, healthTimeoutMs: 20_000 },
    });
    const taskQueue = 'ferry-ecs-pipeline';
    await stack.startWorker({ taskQueue, sessions: { secret: stack.config.sessions.secret, drivers: { ecs: driver } } });
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
    assert.ok(!JSON.stringify(state).includes(sessionToken(stack.config.sessions.secret!, sessionId)), 'no token in workflow state');
    await pipelines.finishStage(workflowId);
    const result = await pipelines.result(workflowId);
    assert.equal(result.stages[0].executions, 1);
    assert.equal((await describe1(state.session!.details.taskArn)).lastStatus, 'STOPPED', 'releaseSession stopped the task');
  });

  it('fails clearly when the task definition is not registered', async () => {
    const driver = createEcsSessionDriver({
      ecs,
      settings: { cluster, taskDefinition: 'no-such-family:7', containerName: 'ferry-agent', subnets: [network.subnet], securityGroups: [], assignPublicIp: true, agentPort: 8390 },
      blobs: stack.blobs,
      timing: { pollInitialMs: 50, pollMaxMs: 200 },
    });
    await assert.rejects(driver.provision({ sessionId: 'ecs-it-missing', token: 'x'.repeat(64), heartbeat: () => undefined }), (err: unknown) => {
      const failure = err as { type?: string; message: string };
      assert.equal(failure.type, 'SessionLaunchFailed');
      assert.match(failure.message, /no-such-family/);
      return true;
    });
  });
});
