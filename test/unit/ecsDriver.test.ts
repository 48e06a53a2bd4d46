/**
 * The ECS session driver's failure paths, with ECS mocked
 * (aws-sdk-client-mock): ECS cannot stop a task with exit 137 or throttle on
 * request anywhere else here. The happy path runs against moto's server in
 * test/integration/ecsDriver.test.ts. Each case checks the failure type,
 * its retryability and that the cause a person needs is in the message.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  ClusterNotFoundException,
  DescribeTasksCommand,
  ECSClient,
  ECSServiceException,
  ListTasksCommand,
  RunTaskCommand,
  StopTaskCommand,
  type Task,
} from '@aws-sdk/client-ecs';
import { ApplicationFailure } from '@temporalio/common';
import { mockClient } from 'aws-sdk-client-mock';
import type { S3BlobStore } from '../../activities/s3BlobStore';
import type { ProvisionRequest } from '../../activities/targets/driver';
import { createEcsBackend, sessionToken, startedByFor, type EcsBackendDeps, type EcsTargetOptions } from '../../activities/targets/ecs';
import { startAgent, type RunningAgent } from '../../runtime/agent';

const TASK_ARN = 'arn:aws:ecs:us-east-1:123456789012:task/ferry/0123456789abcdef';
const settings = {
  cluster: 'ferry',
  taskDefinition: 'ferry-agent:1',
  containerName: 'ferry-agent',
  subnets: ['subnet-0abc'],
  securityGroups: ['sg-0abc'],
  assignPublicIp: false,
  agentPort: 8390,
};
const fastTiming = { pollInitialMs: 5, pollMaxMs: 20, stallAfterMs: 60_000, healthTimeoutMs: 2_000, stopTimeoutMs: 1_000 };

function task(overrides: Partial<Task>): Task {
  return {
    taskArn: TASK_ARN,
    lastStatus: 'PROVISIONING',
    desiredStatus: 'RUNNING',
    createdAt: new Date(),
    attachments: [{ type: 'ElasticNetworkInterface', status: 'ATTACHED', details: [{ name: 'privateIPv4Address', value: '10.0.1.23' }] }],
    containers: [{ name: 'ferry-agent', lastStatus: 'PENDING' }],
    ...overrides,
  };
}

function throttled(): ECSServiceException {
  return new ECSServiceException({ name: 'ThrottlingException', $fault: 'client', $metadata: { httpStatusCode: 400 }, message: 'Rate exceeded' });
}

function failureOf(err: unknown): ApplicationFailure {
  assert.ok(err instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(err)}`);
  return err;
}

describe('ecs session driver failure paths (mocked ECS)', () => {
  const client = new ECSClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'y' } });
  const ecs = mockClient(client);
  let dir: string;
  let agent: RunningAgent;
  const sessionSecret = randomBytes(32).toString('hex');
  const token = sessionToken(sessionSecret, 'sess-1');
  const heartbeats: Record<string, unknown>[] = [];
  const request: ProvisionRequest<EcsTargetOptions> = {
    sessionId: 'sess-1',
    target: { kind: 'ecs' },
    purpose: 'pipeline',
    heartbeat: (details) => heartbeats.push(details),
    signal: new AbortController().signal,
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-ecs-unit-'));
    agent = await startAgent({ root: dir, token, port: 0, allowedUrlPrefixes: ['http://127.0.0.1:1/ferry/'], log: { log: () => undefined } });
  });
  after(async () => {
    await agent.close();
    await rm(dir, { recursive: true, force: true });
  });
  /** Fresh mocks (a chain of `…Once` answers counts calls from the last reset). */
  const resetMocks = () => {
    ecs.reset();
    heartbeats.length = 0;
    ecs.on(ListTasksCommand).resolves({ taskArns: [] });
    ecs.on(StopTaskCommand).resolves({});
  };
  beforeEach(resetMocks);

  const driver = (extra: Partial<EcsBackendDeps> = {}) =>
    createEcsBackend({
      ecs: client,
      settings,
      sessionSecret,
      // Provisioning reads only the store's URL prefix (the agent's allowlist).
      blobs: { blobUrlPrefix: async () => 'http://127.0.0.1:1/ferry/blobs/' } as unknown as S3BlobStore,
      agentUrlFor: () => agent.url,
      timing: fastTiming,
      ...extra,
    });

  it('derives a startedBy of at most 36 allowed characters from any session id', () => {
    assert.equal(startedByFor('sess-1'), 'ferry-sess-1');
    for (const id of ['a.b', 'x'.repeat(128), 'a_b-C.9']) {
      const startedBy = startedByFor(id);
      assert.match(startedBy, /^[A-Za-z0-9_-]{1,36}$/);
      assert.equal(startedBy, startedByFor(id), 'stable');
    }
    assert.notEqual(startedByFor('a.b'), startedByFor('a.c'));
  });

  it('passes FARGATE, network, overrides with the token and allowlist, tags and startedBy to RunTask; polls through throttling to RUNNING', async () => {
    ecs.on(RunTaskCommand).resolves({ tasks: [task({})], failures: [] });
    ecs
      .on(DescribeTasksCommand)
      .rejectsOnce(throttled())
      .rejectsOnce(throttled())
      .resolvesOnce({ tasks: [task({ lastStatus: 'PENDING' })] })
      .resolves({ tasks: [task({ lastStatus: 'RUNNING' })] });
    const session = await driver().provision(request);

    assert.equal(session.agentUrl, agent.url);
    assert.equal(session.details.taskArn, TASK_ARN);
    assert.equal(session.details.privateIp, '10.0.1.23');
    const run = ecs.commandCalls(RunTaskCommand)[0].args[0].input;
    assert.equal(run.launchType, 'FARGATE');
    assert.equal(run.startedBy, 'ferry-sess-1');
    assert.deepEqual(run.networkConfiguration?.awsvpcConfiguration, { subnets: ['subnet-0abc'], securityGroups: ['sg-0abc'], assignPublicIp: 'DISABLED' });
    assert.deepEqual(run.tags, [{ key: 'ferry:session', value: 'sess-1' }]);
    const env = Object.fromEntries((run.overrides?.containerOverrides?.[0].environment ?? []).map((e) => [e.name, e.value]));
    assert.equal(run.overrides?.containerOverrides?.[0].name, 'ferry-agent');
    assert.equal(env.FERRY_AGENT_TOKEN, token);
    assert.equal(env.FERRY_AGENT_ALLOWED_URL_PREFIXES, 'http://127.0.0.1:1/ferry/blobs/');
    assert.ok(heartbeats.some((h) => h.phase === 'waiting for task' && h.lastStatus === 'PENDING'), JSON.stringify(heartbeats));
    assert.ok(!JSON.stringify(session).includes(token), 'the token is not in the session handle');
  });

  it('reuses the task a previous attempt started instead of starting a second', async () => {
    ecs.on(ListTasksCommand, { startedBy: 'ferry-sess-1', desiredStatus: 'RUNNING' }).resolves({ taskArns: [TASK_ARN] });
    ecs.on(DescribeTasksCommand).resolves({ tasks: [task({ lastStatus: 'RUNNING' })] });
    const session = await driver().provision(request);
    assert.equal(session.details.reused, 'true');
    assert.equal(ecs.commandCalls(RunTaskCommand).length, 0);
  });

  it('fails non-retryably with the stopped reason and exit code 137 when the container is killed', async () => {
    ecs.on(RunTaskCommand).resolves({ tasks: [task({})] });
    ecs.on(DescribeTasksCommand).resolves({
      tasks: [
        task({
          lastStatus: 'STOPPED',
          desiredStatus: 'STOPPED',
          stopCode: 'EssentialContainerExited',
          stoppedReason: 'Essential container in task exited',
          containers: [{ name: 'ferry-agent', lastStatus: 'STOPPED', exitCode: 137, reason: 'OutOfMemoryError: Container killed due to memory usage' }],
        }),
      ],
    });
    await assert.rejects(driver().provision(request), (err: unknown) => {
      const failure = failureOf(err);
      assert.equal(failure.type, 'SessionTaskStopped');
      assert.equal(failure.nonRetryable, true);
      assert.match(failure.message, /Essential container in task exited \(ferry-agent exit 137: OutOfMemoryError/);
      assert.match(failure.message, /out of memory/);
      const details = failure.details?.[0] as { containers: { exitCode: number }[]; stopCode: string };
      assert.equal(details.containers[0].exitCode, 137);
      assert.equal(details.stopCode, 'EssentialContainerExited');
      return true;
    });
  });

  it('surfaces the stopped reason of a task that failed to start (image pull)', async () => {
    ecs.on(RunTaskCommand).resolves({ tasks: [task({})] });
    const reason = 'CannotPullContainerError: pull image manifest has been retried 5 time(s): ferry-agent:missing not found';
    ecs.on(DescribeTasksCommand).resolves({ tasks: [task({ lastStatus: 'STOPPED', desiredStatus: 'STOPPED', stopCode: 'TaskFailedToStart', stoppedReason: reason })] });
    await assert.rejects(driver().provision(request), (err: unknown) => {
      const failure = failureOf(err);
      assert.equal(failure.type, 'SessionTaskStopped');
      assert.equal(failure.nonRetryable, true);
      assert.ok(failure.message.includes(reason), failure.message);
      return true;
    });
  });

  it('retries a task that a Spot interruption stopped', async () => {
    ecs.on(RunTaskCommand).resolves({ tasks: [task({})] });
    ecs.on(DescribeTasksCommand).resolves({ tasks: [task({ lastStatus: 'STOPPED', stopCode: 'SpotInterruption', stoppedReason: 'Your Spot Task was interrupted.' })] });
    await assert.rejects(driver().provision(request), (err: unknown) => failureOf(err).type === 'SessionTaskStopped' && failureOf(err).nonRetryable === false);
  });

  it('turns a RunTask failures list into SessionLaunchFailed: capacity retryable, a missing task definition not', async () => {
    ecs.on(RunTaskCommand).resolvesOnce({ tasks: [], failures: [{ reason: 'Capacity is unavailable at this time. Please try again later or in a different availability zone' }] });
    await assert.rejects(driver().provision(request), (err: unknown) => {
      const failure = failureOf(err);
      assert.equal(failure.type, 'SessionLaunchFailed');
      assert.equal(failure.nonRetryable, false);
      assert.match(failure.message, /Capacity is unavailable/);
      return true;
    });
    resetMocks();
    ecs.on(RunTaskCommand).resolvesOnce({ tasks: [], failures: [{ arn: 'arn:aws:ecs:us-east-1:123456789012:task-definition/ferry-agent:9', reason: 'MISSING' }] });
    await assert.rejects(driver().provision(request), (err: unknown) => {
      const failure = failureOf(err);
      assert.equal(failure.type, 'SessionLaunchFailed');
      assert.equal(failure.nonRetryable, true);
      assert.match(failure.message, /MISSING arn:aws:ecs:.*ferry-agent:9/);
      return true;
    });
  });

  it('fails RunTask throttling retryably and a missing cluster non-retryably, naming the AWS error', async () => {
    ecs.on(RunTaskCommand).rejectsOnce(throttled());
    await assert.rejects(driver().provision(request), (err: unknown) => {
      const failure = failureOf(err);
      assert.equal(failure.type, 'SessionLaunchFailed');
      assert.equal(failure.nonRetryable, false);
      assert.equal((failure.details?.[0] as { code: string }).code, 'ThrottlingException');
      return true;
    });
    resetMocks();
    ecs.on(RunTaskCommand).rejectsOnce(new ClusterNotFoundException({ $metadata: {}, message: 'Cluster not found.' }));
    await assert.rejects(driver().provision(request), (err: unknown) => {
      const failure = failureOf(err);
      assert.equal(failure.type, 'SessionLaunchFailed');
      assert.equal(failure.nonRetryable, true);
      assert.match(failure.message, /ClusterNotFoundException: Cluster not found/);
      return true;
    });
  });

  it('stops a task stuck in PROVISIONING past the limit and fails retryably', async () => {
    ecs.on(RunTaskCommand).resolves({ tasks: [task({})] });
    ecs.on(DescribeTasksCommand).resolves({ tasks: [task({ lastStatus: 'PROVISIONING' })] });
    await assert.rejects(driver({ timing: { ...fastTiming, stallAfterMs: 150 } }).provision(request), (err: unknown) => {
      const failure = failureOf(err);
      assert.equal(failure.type, 'SessionTaskStalled');
      assert.equal(failure.nonRetryable, false);
      assert.match(failure.message, /stayed in PROVISIONING for/);
      return true;
    });
    const stop = ecs.commandCalls(StopTaskCommand);
    assert.equal(stop.length, 1);
    assert.equal(stop[0].args[0].input.task, TASK_ARN);
    assert.match(stop[0].args[0].input.reason ?? '', /stalled in PROVISIONING/);
  });

  it('notices a task that stops while its agent does not answer', async () => {
    ecs.on(RunTaskCommand).resolves({ tasks: [task({})] });
    ecs
      .on(DescribeTasksCommand)
      .resolvesOnce({ tasks: [task({ lastStatus: 'RUNNING' })] })
      .resolves({ tasks: [task({ lastStatus: 'STOPPED', desiredStatus: 'STOPPED', stoppedReason: 'Essential container in task exited', containers: [{ name: 'ferry-agent', exitCode: 2 }] })] });
    await assert.rejects(driver({ agentUrlFor: () => 'http://127.0.0.1:1' }).provision(request), (err: unknown) => {
      const failure = failureOf(err);
      assert.equal(failure.type, 'SessionTaskStopped');
      assert.match(failure.message, /before its agent answered: Essential container in task exited \(ferry-agent exit 2\)/);
      return true;
    });
  });

  it("refuses an agent that rejects the session's token", async () => {
    ecs.on(RunTaskCommand).resolves({ tasks: [task({ lastStatus: 'RUNNING' })] });
    await assert.rejects(driver({ sessionSecret: 'another worker secret, 32 characters or more' }).provision(request), (err: unknown) => {
      const failure = failureOf(err);
      assert.equal(failure.type, 'TargetUnauthorized');
      assert.equal(failure.nonRetryable, true);
      return true;
    });
  });

  it('release: a task already gone is fine; a running one is stopped and waited for', async () => {
    const handle = { sessionId: 'sess-1', target: { kind: 'ecs' as const }, agentUrl: 'http://10.0.1.23:8390', bootId: 'b', root: '/app', details: { taskArn: TASK_ARN } };
    ecs.on(DescribeTasksCommand).resolves({ tasks: [], failures: [{ arn: TASK_ARN, reason: 'MISSING' }] });
    const release = (backend: ReturnType<typeof driver>) => backend.release(handle, { removeFiles: true, signal: new AbortController().signal });
    const gone = await release(driver());
    assert.equal(gone.released, false);
    assert.match(gone.detail, /already gone/);
    assert.equal(ecs.commandCalls(StopTaskCommand).length, 0);

    resetMocks();
    ecs
      .on(DescribeTasksCommand)
      .resolvesOnce({ tasks: [task({ lastStatus: 'RUNNING' })] })
      .resolvesOnce({ tasks: [task({ lastStatus: 'DEPROVISIONING', desiredStatus: 'STOPPED' })] })
      .resolves({ tasks: [task({ lastStatus: 'STOPPED', desiredStatus: 'STOPPED' })] });
    const released = await release(driver());
    assert.equal(released.released, true);
    assert.equal(ecs.commandCalls(StopTaskCommand).length, 1);
  });
});
