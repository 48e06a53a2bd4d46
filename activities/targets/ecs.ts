/**
 * The `ecs` target: each session is one ECS Fargate task running the
 * runtime agent (runtime/Dockerfile). Provision starts the task — or finds
 * the one a previous attempt started, by `startedBy` — waits for RUNNING,
 * reads the task's private IP from its ENI attachment and waits for the
 * agent's health; from there the agent protocol does the rest. Release stops
 * the task and waits for STOPPED. Cluster, task definition and network come
 * from the settings below, so the target itself is just `{"kind":"ecs"}`.
 *
 * The session's agent token is derived from FERRY_SESSION_SECRET on every
 * worker and travels as a container override: it never enters workflow
 * history, but anyone allowed `ecs:DescribeTasks` on the cluster can read it
 * (deploy/README.md says so).
 */
import { createHash, createHmac } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { asyncLocalStorage } from '@temporalio/activity';
import {
  AccessDeniedException,
  ClientException,
  ClusterNotFoundException,
  DescribeTasksCommand,
  ECSClient,
  InvalidParameterException,
  ListTasksCommand,
  PlatformTaskDefinitionIncompatibilityException,
  PlatformUnknownException,
  RunTaskCommand,
  StopTaskCommand,
  UnsupportedFeatureException,
  type Failure,
  type Task,
} from '@aws-sdk/client-ecs';
import { isThrottlingError } from '@smithy/core/retry';
import { ConfigError, readBoolean, readInteger, readList, type SettingsReader } from '../../core/config';
import { FailureType } from '../../core/errors';
import { sessionFolders, type SessionHandle, type TargetRef } from '../../core/target';
import { AgentClient, AgentRequestError } from '../agentClient';
import { nonRetryable, retryable } from '../failures';
import type { TargetTransfer } from '../blobStore';
import { AgentReach } from './agentReach';
import { TargetOptionsError, type ProvisionRequest, type TargetBackend, type TargetDriver } from './driver';

/** Where the agent keeps a session's files inside the container (runtime/Dockerfile). */
export const ECS_AGENT_ROOT = '/app';

/** Tag every session task carries, so people and IAM conditions can find ferry's tasks. */
export const SESSION_TAG = 'ferry:session';

export interface EcsWaitTiming {
  /** First pause between DescribeTasks polls; doubles up to `pollMaxMs`. Default 1 s. */
  pollInitialMs: number;
  /** Default 10 s. */
  pollMaxMs: number;
  /** A task not RUNNING this long after it was created is stalled (stopped, retryable failure). Default 10 min: image pulls of a few GB fit. */
  stallAfterMs: number;
  /** How long a RUNNING task's agent may take to answer its health check. Default 2 min. */
  healthTimeoutMs: number;
  /** How long release waits for STOPPED after StopTask. Default 2 min. */
  stopTimeoutMs: number;
}

const DEFAULT_TIMING: EcsWaitTiming = {
  pollInitialMs: 1_000,
  pollMaxMs: 10_000,
  stallAfterMs: 10 * 60_000,
  healthTimeoutMs: 2 * 60_000,
  stopTimeoutMs: 2 * 60_000,
};

export interface EcsTargetOptions extends TargetRef {
  kind: 'ecs';
}

/** Where and how session tasks run (the FERRY_ECS_* settings). */
export interface EcsSettings {
  cluster: string;
  /** Family, family:revision or ARN of the runtime agent's task definition (deploy/ecs/runtime-task-definition.json). */
  taskDefinition: string;
  /** The agent's container in that task definition; its environment is overridden per session. */
  containerName: string;
  subnets: string[];
  securityGroups: string[];
  assignPublicIp: boolean;
  /** Port the agent listens on inside the task (the security group must let the worker reach it). */
  agentPort: number;
  region: string;
  /** Unset → AWS; set for an emulator. */
  endpoint?: string;
}

export interface EcsBackendDeps {
  ecs: ECSClient;
  settings: Pick<EcsSettings, 'cluster' | 'taskDefinition' | 'containerName' | 'subnets' | 'securityGroups' | 'assignPublicIp' | 'agentPort'>;
  /** FERRY_SESSION_SECRET: session agent tokens derive from it, the same on every worker. */
  sessionSecret: string;
  /** The blob store: its URL prefix becomes the agent's allowlist, and the agent lands from it. */
  blobs: TargetTransfer;
  /** Agent base URL for a task's private IP. Default `http://<ip>:<port>`; tests point it at a local agent. */
  agentUrlFor?: (privateIp: string, port: number) => string;
  timing?: Partial<EcsWaitTiming>;
}

/** An ECS client from settings; the SDK's own retries (with backoff on throttling) come first. */
export function createEcsClient(settings: Pick<EcsSettings, 'region' | 'endpoint'>): ECSClient {
  return new ECSClient({ region: settings.region, endpoint: settings.endpoint, maxAttempts: 5 });
}

/**
 * ECS `startedBy` for a session: at most 36 of [A-Za-z0-9_-]. Session ids
 * that fit keep their name (readable in the console); others are hashed.
 */
export function startedByFor(sessionId: string): string {
  if (/^[A-Za-z0-9_-]{1,30}$/.test(sessionId)) return `ferry-${sessionId}`;
  return `ferry-${createHash('sha256').update(sessionId).digest('hex').slice(0, 30)}`;
}

interface TaskFacts {
  taskArn: string;
  lastStatus?: string;
  desiredStatus?: string;
  stoppedReason?: string;
  stopCode?: string;
  containers: { name?: string; lastStatus?: string; exitCode?: number; reason?: string }[];
}

function taskFacts(task: Task): TaskFacts {
  return {
    taskArn: task.taskArn ?? '?',
    lastStatus: task.lastStatus,
    desiredStatus: task.desiredStatus,
    stoppedReason: task.stoppedReason,
    stopCode: task.stopCode,
    containers: (task.containers ?? []).map((c) => ({ name: c.name, lastStatus: c.lastStatus, exitCode: c.exitCode, reason: c.reason })),
  };
}

/** "task … stopped: Essential container in task exited (ferry-agent exit 137: OutOfMemoryError)" */
function describeStop(facts: TaskFacts): string {
  const exits = facts.containers
    .filter((c) => c.exitCode !== undefined || c.reason)
    .map((c) => `${c.name ?? 'container'}${c.exitCode === undefined ? '' : ` exit ${c.exitCode}`}${c.reason ? `: ${c.reason}` : ''}`);
  const exitCode137 = facts.containers.some((c) => c.exitCode === 137) ? ' — exit 137 is SIGKILL, usually the task running out of memory' : '';
  return `${facts.stoppedReason ?? facts.stopCode ?? 'no reason given'}${exits.length ? ` (${exits.join('; ')})` : ''}${exitCode137}`;
}

/** Infrastructure took the task away: a fresh task may well run. Anything else is the task's own fault. */
const INFRASTRUCTURE_STOP_CODES = new Set(['SpotInterruption', 'TerminationNotice', 'InfrastructureHealth']);

function stoppedFailure(sessionId: string, facts: TaskFacts, when: string) {
  const message = `ECS task ${facts.taskArn} of session ${sessionId} stopped ${when}: ${describeStop(facts)}`;
  const details = { sessionId, ...facts };
  return facts.stopCode && INFRASTRUCTURE_STOP_CODES.has(facts.stopCode)
    ? retryable(FailureType.SessionTaskStopped, message, details)
    : nonRetryable(FailureType.SessionTaskStopped, message, details);
}

/** RunTask `failures` reasons worth another attempt: capacity, not configuration (MISSING, INACTIVE, …). */
function isCapacityFailure(failure: Failure): boolean {
  const reason = failure.reason ?? '';
  return reason.startsWith('RESOURCE:') || reason === 'AGENT' || /capacity|throttl/i.test(reason);
}

/** ECS API errors that another attempt cannot fix. */
function isConfigurationError(err: unknown): boolean {
  return (
    err instanceof ClusterNotFoundException ||
    err instanceof InvalidParameterException ||
    err instanceof AccessDeniedException ||
    err instanceof ClientException ||
    err instanceof PlatformUnknownException ||
    err instanceof PlatformTaskDefinitionIncompatibilityException ||
    err instanceof UnsupportedFeatureException
  );
}

function awsErrorDetails(err: unknown): Record<string, unknown> {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number; requestId?: string } };
  return { code: e.name, message: e.message, httpStatus: e.$metadata?.httpStatusCode, requestId: e.$metadata?.requestId };
}

/** The task's private IPv4 address, from its ENI attachment (awsvpc networking, which Fargate always uses). */
export function taskPrivateIp(task: Task): string | undefined {
  for (const attachment of task.attachments ?? []) {
    if (attachment.type !== 'ElasticNetworkInterface') continue;
    const ip = attachment.details?.find((d) => d.name === 'privateIPv4Address')?.value;
    if (ip) return ip;
  }
  return task.containers?.flatMap((c) => c.networkInterfaces ?? []).find((n) => n.privateIpv4Address)?.privateIpv4Address;
}

/**
 * The agent token of a session, derived from the worker secret: every worker
 * computes the same token without storing it, and it never enters history.
 */
export function sessionToken(secret: string, sessionId: string): string {
  return createHmac('sha256', secret).update(`ferry-session:${sessionId}`).digest('hex');
}

interface EcsProvisionRequest {
  sessionId: string;
  token: string;
  heartbeat: ProvisionRequest['heartbeat'];
}

export function createEcsBackend(deps: EcsBackendDeps): TargetBackend<EcsTargetOptions> {
  const timing = { ...DEFAULT_TIMING, ...deps.timing };
  const { settings } = deps;
  const agentUrlFor = deps.agentUrlFor ?? ((ip: string, port: number) => `http://${ip}:${port}`);
  const activityLog = () => asyncLocalStorage.getStore()?.log;
  const pause = (ms: number) => sleep(ms, undefined, { signal: asyncLocalStorage.getStore()?.cancellationSignal });

  /** One DescribeTasks; a throttled call counts as "no news" (the caller polls again after its backoff). */
  async function describeTask(taskArn: string): Promise<{ task?: Task; missing: boolean; throttled: boolean }> {
    try {
      const response = await deps.ecs.send(new DescribeTasksCommand({ cluster: settings.cluster, tasks: [taskArn] }));
      const task = response.tasks?.find((t) => t.taskArn === taskArn) ?? response.tasks?.[0];
      return { task, missing: task === undefined, throttled: false };
    } catch (err) {
      if (isThrottlingError(err as Parameters<typeof isThrottlingError>[0])) return { missing: false, throttled: true };
      throw retryable(FailureType.TargetUnavailable, `ECS DescribeTasks for ${taskArn} failed: ${(err as Error).message}`, awsErrorDetails(err));
    }
  }

  /** A task this session already has (a previous attempt started it), preferring one that is RUNNING. */
  async function findSessionTask(startedBy: string): Promise<Task | undefined> {
    const listed = await deps.ecs.send(new ListTasksCommand({ cluster: settings.cluster, startedBy, desiredStatus: 'RUNNING' }));
    const arns = listed.taskArns ?? [];
    if (arns.length === 0) return undefined;
    const described = await deps.ecs.send(new DescribeTasksCommand({ cluster: settings.cluster, tasks: arns }));
    const live = (described.tasks ?? []).filter((t) => t.desiredStatus === 'RUNNING' && t.lastStatus !== 'STOPPED');
    return live.find((t) => t.lastStatus === 'RUNNING') ?? live[0];
  }

  async function runTask(request: EcsProvisionRequest, startedBy: string): Promise<Task> {
    const allowedUrlPrefix = await deps.blobs.blobUrlPrefix();
    const environment = [
      { name: 'FERRY_AGENT_TOKEN', value: request.token },
      { name: 'FERRY_AGENT_ALLOWED_URL_PREFIXES', value: allowedUrlPrefix },
      { name: 'FERRY_AGENT_ROOT', value: ECS_AGENT_ROOT },
      { name: 'FERRY_AGENT_HOST', value: '0.0.0.0' },
      { name: 'FERRY_AGENT_PORT', value: String(settings.agentPort) },
      // Not read by the agent: code run in the session can learn its session id from its environment.
      { name: 'FERRY_SESSION_ID', value: request.sessionId },
    ];
    let response;
    try {
      response = await deps.ecs.send(
        new RunTaskCommand({
          cluster: settings.cluster,
          taskDefinition: settings.taskDefinition,
          launchType: 'FARGATE',
          count: 1,
          startedBy,
          networkConfiguration: {
            awsvpcConfiguration: {
              subnets: settings.subnets,
              securityGroups: settings.securityGroups.length ? settings.securityGroups : undefined,
              assignPublicIp: settings.assignPublicIp ? 'ENABLED' : 'DISABLED',
            },
          },
          overrides: { containerOverrides: [{ name: settings.containerName, environment }] },
          tags: [{ key: SESSION_TAG, value: request.sessionId }],
          enableECSManagedTags: true,
        }),
      );
    } catch (err) {
      const details = { sessionId: request.sessionId, cluster: settings.cluster, taskDefinition: settings.taskDefinition, ...awsErrorDetails(err) };
      const message = `ECS RunTask of task definition ${settings.taskDefinition} in cluster ${settings.cluster} for session ${request.sessionId} failed: ${(err as Error).name}: ${(err as Error).message}`;
      if (isConfigurationError(err)) throw nonRetryable(FailureType.SessionLaunchFailed, message, details);
      throw retryable(FailureType.SessionLaunchFailed, message, details);
    }
    const task = response.tasks?.[0];
    if (task?.taskArn) return task;
    const failures = response.failures ?? [];
    const reasons = failures.map((f) => [f.reason, f.detail, f.arn].filter(Boolean).join(' ')).join('; ') || 'no task and no failure reason returned';
    const details = { sessionId: request.sessionId, cluster: settings.cluster, taskDefinition: settings.taskDefinition, failures };
    const message = `ECS could not start a task for session ${request.sessionId}: ${reasons}`;
    if (failures.length > 0 && failures.every(isCapacityFailure)) throw retryable(FailureType.SessionLaunchFailed, message, details);
    throw nonRetryable(FailureType.SessionLaunchFailed, message, details);
  }

  /** Polls until RUNNING, with backoff and a heartbeat per poll; stalls and stops become typed failures. */
  async function waitForRunning(request: EcsProvisionRequest, first: Task): Promise<Task> {
    const taskArn = first.taskArn!;
    const waitStarted = Date.now();
    const createdAt = first.createdAt?.getTime() ?? waitStarted;
    let task: Task = first;
    let delay = timing.pollInitialMs;
    let missingPolls = 0;
    for (;;) {
      const facts = taskFacts(task);
      if (task.lastStatus === 'RUNNING') return task;
      if (task.lastStatus === 'STOPPED') throw stoppedFailure(request.sessionId, facts, 'before it was RUNNING');
      const waitedMs = Date.now() - createdAt;
      if (waitedMs > timing.stallAfterMs) {
        await stopTask(taskArn, `ferry: stalled in ${task.lastStatus ?? 'an unknown state'} for ${Math.round(waitedMs / 1000)} s`).catch((err: unknown) =>
          activityLog()?.warn('could not stop a stalled session task', { sessionId: request.sessionId, taskArn, error: String(err) }),
        );
        throw retryable(
          FailureType.SessionTaskStalled,
          `ECS task ${taskArn} of session ${request.sessionId} stayed in ${task.lastStatus} for ${Math.round(waitedMs / 1000)} s (limit ${Math.round(timing.stallAfterMs / 1000)} s); stopped it so the next attempt starts a fresh one`,
          { sessionId: request.sessionId, ...facts, waitedMs },
        );
      }
      request.heartbeat({ phase: 'waiting for task', taskArn, lastStatus: task.lastStatus, waitedMs: Date.now() - waitStarted });
      await pause(delay);
      delay = Math.min(delay * 2, timing.pollMaxMs);
      const polled = await describeTask(taskArn);
      if (polled.throttled) {
        activityLog()?.warn('ECS DescribeTasks throttled; backing off', { sessionId: request.sessionId, taskArn });
        continue;
      }
      if (polled.missing) {
        // Right after RunTask a new task may not be visible yet (eventual consistency); a few polls later it is gone for real.
        if (++missingPolls >= 5)
          throw retryable(FailureType.SessionTaskStopped, `ECS task ${taskArn} of session ${request.sessionId} is no longer known to the cluster`, {
            sessionId: request.sessionId,
            taskArn,
          });
        continue;
      }
      task = polled.task!;
    }
  }

  /** Polls the agent's health; between tries, checks that the task has not stopped meanwhile. */
  async function waitForAgent(request: EcsProvisionRequest, taskArn: string, agentUrl: string) {
    const client = new AgentClient({ url: agentUrl, token: request.token }, { idleTimeoutMs: 5_000 });
    const started = Date.now();
    let delay = timing.pollInitialMs;
    let lastError: string;
    for (;;) {
      try {
        return await client.health();
      } catch (err) {
        if (err instanceof AgentRequestError && err.type === FailureType.TargetUnauthorized)
          throw nonRetryable(FailureType.TargetUnauthorized, `the agent of ECS task ${taskArn} refused session ${request.sessionId}'s token: was the task started by a worker with another FERRY_SESSION_SECRET?`, {
            sessionId: request.sessionId,
            taskArn,
            agentUrl,
          });
        lastError = (err as Error).message;
      }
      const waitedMs = Date.now() - started;
      if (waitedMs > timing.healthTimeoutMs)
        throw retryable(FailureType.TargetUnavailable, `ECS task ${taskArn} is RUNNING but its agent at ${agentUrl} did not answer within ${Math.round(waitedMs / 1000)} s: ${lastError}`, {
          sessionId: request.sessionId,
          taskArn,
          agentUrl,
          lastError,
        });
      request.heartbeat({ phase: 'waiting for agent', taskArn, agentUrl, waitedMs });
      const polled = await describeTask(taskArn);
      if (polled.task?.lastStatus === 'STOPPED' || polled.task?.desiredStatus === 'STOPPED')
        throw stoppedFailure(request.sessionId, taskFacts(polled.task), 'before its agent answered');
      await pause(delay);
      delay = Math.min(delay * 2, timing.pollMaxMs);
    }
  }

  /** DescribeTasks until an answer that is not throttled (bounded: the SDK already retried each call). */
  async function describeSettled(taskArn: string): Promise<{ task?: Task; missing: boolean }> {
    let delay = timing.pollInitialMs;
    for (let tries = 1; ; tries++) {
      const polled = await describeTask(taskArn);
      if (!polled.throttled) return polled;
      if (tries >= 5) throw retryable(FailureType.TargetUnavailable, `ECS DescribeTasks for ${taskArn} stayed throttled`, { taskArn });
      await pause(delay);
      delay = Math.min(delay * 2, timing.pollMaxMs);
    }
  }

  async function stopTask(taskArn: string, reason: string): Promise<void> {
    await deps.ecs.send(new StopTaskCommand({ cluster: settings.cluster, task: taskArn, reason: reason.slice(0, 255) }));
  }

  const reachOf = (session: SessionHandle) => {
    if (!session.agentUrl) throw nonRetryable(FailureType.InvalidInput, `ecs session ${session.sessionId} has no agent URL in its handle`, { sessionId: session.sessionId });
    return new AgentReach({
      endpoint: { url: session.agentUrl, token: sessionToken(deps.sessionSecret, session.sessionId) },
      base: '',
      blobs: deps.blobs,
      description: `ecs task ${session.details.taskArn ?? '?'} (session ${session.sessionId})`,
    });
  };

  return {
    async provision(provisionRequest): Promise<SessionHandle> {
      const request: EcsProvisionRequest = { sessionId: provisionRequest.sessionId, token: sessionToken(deps.sessionSecret, provisionRequest.sessionId), heartbeat: provisionRequest.heartbeat };
      const startedBy = startedByFor(request.sessionId);
      const existing = await findSessionTask(startedBy).catch((err: unknown) => {
        throw retryable(FailureType.SessionLaunchFailed, `ECS lookup of session ${request.sessionId}'s task failed: ${(err as Error).message}`, {
          sessionId: request.sessionId,
          startedBy,
          ...awsErrorDetails(err),
        });
      });
      const reused = existing !== undefined;
      const task = existing ?? (await runTask(request, startedBy));
      activityLog()?.info(reused ? 'found the session task a previous attempt started' : 'started session task', {
        sessionId: request.sessionId,
        taskArn: task.taskArn,
        cluster: settings.cluster,
      });
      const running = await waitForRunning(request, task);
      const taskArn = running.taskArn!;
      const privateIp = taskPrivateIp(running);
      if (!privateIp)
        throw retryable(FailureType.TargetUnavailable, `ECS task ${taskArn} is RUNNING but has no private IP in its ENI attachment`, {
          sessionId: request.sessionId,
          taskArn,
          attachments: running.attachments,
        });
      const agentUrl = agentUrlFor(privateIp, settings.agentPort);
      const health = await waitForAgent(request, taskArn, agentUrl);
      activityLog()?.info('session task ready', { sessionId: request.sessionId, taskArn, privateIp, bootId: health.bootId, reused });
      const handle: SessionHandle = {
        sessionId: request.sessionId,
        target: provisionRequest.target,
        description: `ecs task ${taskArn}`,
        agentUrl,
        bootId: health.bootId,
        root: health.root,
        details: {
          taskArn,
          cluster: settings.cluster,
          taskDefinition: running.taskDefinitionArn ?? settings.taskDefinition,
          privateIp,
          startedBy,
          reused: String(reused),
          ...(running.availabilityZone ? { availabilityZone: running.availabilityZone } : {}),
        },
      };
      await reachOf(handle).makeDirs(sessionFolders(provisionRequest.purpose));
      return handle;
    },

    reach: (session) => reachOf(session),

    async release(session: SessionHandle): Promise<{ released: boolean; detail: string }> {
      const startedBy = session.details.startedBy ?? startedByFor(session.sessionId);
      const listed = await deps.ecs.send(new ListTasksCommand({ cluster: settings.cluster, startedBy, desiredStatus: 'RUNNING' }));
      // The handle's task, and any other still running under this session's startedBy (e.g. from a provision that raced).
      const arns = [...new Set([session.details.taskArn, ...(listed.taskArns ?? [])].filter((arn): arn is string => Boolean(arn)))];
      const stopped: string[] = [];
      const gone: string[] = [];
      for (const taskArn of arns) {
        const { task } = await describeSettled(taskArn);
        if (!task || task.lastStatus === 'STOPPED') {
          gone.push(taskArn);
          continue;
        }
        if (task.desiredStatus !== 'STOPPED') await stopTask(taskArn, `ferry: session ${session.sessionId} released`);
        const deadline = Date.now() + timing.stopTimeoutMs;
        let delay = timing.pollInitialMs;
        for (;;) {
          const polled = await describeTask(taskArn);
          if (polled.missing || polled.task?.lastStatus === 'STOPPED') break;
          if (polled.throttled) activityLog()?.warn('ECS DescribeTasks throttled; backing off', { sessionId: session.sessionId, taskArn });
          if (Date.now() > deadline)
            throw retryable(FailureType.TargetUnavailable, `ECS task ${taskArn} of session ${session.sessionId} did not reach STOPPED within ${Math.round(timing.stopTimeoutMs / 1000)} s`, {
              sessionId: session.sessionId,
              taskArn,
              lastStatus: polled.task?.lastStatus,
            });
          await pause(delay);
          delay = Math.min(delay * 2, timing.pollMaxMs);
        }
        stopped.push(taskArn);
        activityLog()?.info('session task stopped', { sessionId: session.sessionId, taskArn });
      }
      const detail = [stopped.length ? `stopped ${stopped.join(', ')}` : '', gone.length ? `already gone: ${gone.join(', ')}` : '']
        .filter(Boolean)
        .join('; ');
      return { released: stopped.length > 0, detail: detail || `no task found for session ${session.sessionId}` };
    },
  };
}

/** The ECS settings, or undefined when FERRY_ECS_CLUSTER is unset; throws ConfigError naming a bad one. */
export function resolveEcsSettings(read: SettingsReader): EcsSettings | undefined {
  const cluster = read('FERRY_ECS_CLUSTER');
  const dependents = [
    'FERRY_ECS_TASK_DEFINITION',
    'FERRY_ECS_SUBNETS',
    'FERRY_ECS_SECURITY_GROUPS',
    'FERRY_ECS_CONTAINER_NAME',
    'FERRY_ECS_ASSIGN_PUBLIC_IP',
    'FERRY_ECS_AGENT_PORT',
    'FERRY_ECS_REGION',
    'FERRY_ECS_ENDPOINT',
  ];
  if (cluster === undefined) {
    const orphan = dependents.find((name) => read(name) !== undefined);
    if (orphan) throw new ConfigError(orphan, 'has no effect without FERRY_ECS_CLUSTER');
    return undefined;
  }
  const taskDefinition = read('FERRY_ECS_TASK_DEFINITION');
  if (taskDefinition === undefined) throw new ConfigError('FERRY_ECS_TASK_DEFINITION', 'required when FERRY_ECS_CLUSTER is set');
  const subnets = readList(read, 'FERRY_ECS_SUBNETS', /^subnet-[0-9a-f]+$/, 'a subnet id (subnet-…)');
  if (subnets.length === 0) throw new ConfigError('FERRY_ECS_SUBNETS', 'required when FERRY_ECS_CLUSTER is set (comma-separated subnet ids)');
  const endpoint = read('FERRY_ECS_ENDPOINT');
  if (endpoint !== undefined && !/^https?:\/\/[^\s/]+\/?$/.test(endpoint))
    throw new ConfigError('FERRY_ECS_ENDPOINT', `expected an http(s) URL without a path, got ${JSON.stringify(endpoint)}`);
  return {
    cluster,
    taskDefinition,
    containerName: read('FERRY_ECS_CONTAINER_NAME') ?? 'ferry-agent',
    subnets,
    securityGroups: readList(read, 'FERRY_ECS_SECURITY_GROUPS', /^sg-[0-9a-f]+$/, 'a security group id (sg-…)'),
    assignPublicIp: readBoolean(read, 'FERRY_ECS_ASSIGN_PUBLIC_IP') ?? false,
    agentPort: readInteger(read, 'FERRY_ECS_AGENT_PORT', 1, 65535) ?? 8390,
    region: read('FERRY_ECS_REGION') ?? read('FERRY_S3_REGION') ?? 'us-east-1',
    endpoint: endpoint?.replace(/\/$/, ''),
  };
}

export const ecsTarget: TargetDriver<EcsTargetOptions> = {
  kind: 'ecs',
  summary: 'one ECS Fargate task per session running the runtime agent (cluster, task definition and network from the settings); gone when released',
  spec: 'ecs',
  settings: [
    { name: 'FERRY_ECS_CLUSTER', description: 'ECS cluster session tasks run in (default none: the ecs target is off)' },
    { name: 'FERRY_ECS_TASK_DEFINITION', description: 'task definition of the runtime agent (required with FERRY_ECS_CLUSTER)' },
    { name: 'FERRY_ECS_CONTAINER_NAME', description: 'the agent container in that task definition (default ferry-agent)' },
    { name: 'FERRY_ECS_SUBNETS', description: 'comma-separated subnet ids for session tasks (required with FERRY_ECS_CLUSTER)' },
    { name: 'FERRY_ECS_SECURITY_GROUPS', description: 'comma-separated security group ids for session tasks (default none: the VPC default group)' },
    { name: 'FERRY_ECS_ASSIGN_PUBLIC_IP', description: 'true|false; give session tasks a public IP (default false; needed in public subnets without NAT to pull images)' },
    { name: 'FERRY_ECS_AGENT_PORT', description: 'port the agent listens on in the task (default 8390)' },
    { name: 'FERRY_ECS_REGION', description: 'ECS region (default FERRY_S3_REGION)' },
    { name: 'FERRY_ECS_ENDPOINT', description: 'ECS endpoint URL (default: AWS; set for an emulator)' },
    { name: 'FERRY_SESSION_SECRET', description: 'secret (at least 32 characters, the same on every worker) session agent tokens derive from; required with FERRY_ECS_CLUSTER' },
  ],
  lifetime: 'workflow',
  parseSpec: (text) => {
    if (text !== '') throw new TargetOptionsError([`ecs takes no options on the command line (cluster, task definition and network come from FERRY_ECS_* settings), got "ecs:${text}"`]);
    return { kind: 'ecs' };
  },
  normalize: (raw) => {
    const extra = Object.keys(raw).filter((key) => key !== 'kind');
    if (extra.length) throw new TargetOptionsError([`ecs target takes no options (they come from FERRY_ECS_* settings), got ${extra.join(', ')}`]);
    return { kind: 'ecs' };
  },
  configure: ({ settings, blobs }) => {
    const ecs = resolveEcsSettings(settings);
    if (!ecs) return 'set FERRY_ECS_CLUSTER, FERRY_ECS_TASK_DEFINITION and FERRY_ECS_SUBNETS on the worker';
    const sessionSecret = settings('FERRY_SESSION_SECRET');
    if (sessionSecret === undefined) throw new ConfigError('FERRY_SESSION_SECRET', 'required when FERRY_ECS_CLUSTER is set (the same on every worker)');
    if (sessionSecret.length < 32) throw new ConfigError('FERRY_SESSION_SECRET', `must be at least 32 characters, got ${sessionSecret.length}`);
    return createEcsBackend({ ecs: createEcsClient(ecs), settings: ecs, sessionSecret, blobs });
  },
};
