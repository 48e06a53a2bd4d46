/**
 * The real servers integration tests run against: a Temporal dev server and
 * an S3 server on free loopback ports, a runtime agent, and an in-process
 * worker. Everything lives in one temp folder and is stopped by `stop()`.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { NativeConnection, type Worker, bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { AgentClient, type AgentEndpoint } from '../../activities/agentClient';
import type { ActivityDeps } from '../../activities';
import type { S3BlobStore } from '../../activities/s3BlobStore';
import { createLocalBackend } from '../../activities/targets/local';
import { resolveConfig, type FerryConfig, type StackSettings } from '../../core/config';
import { startAgent, type RunningAgent } from '../../runtime/agent';
import { freePort } from '../../client/ports';
import { repoRoot, resolveTool } from '../../client/tools';
import { spawnManaged } from '../../client/managedProcess';
import { startS3Server } from '../../client/s3Server';
import { startTemporalDevServer } from '../../client/temporalServer';
import { createJsonLogger } from '../../runtime/log';
import { SEARCH_ATTRIBUTES } from '../../workflows/definitions';
import { activityDepsFromConfig, createFerryWorker } from '../../worker/worker';
import { recordHistories } from './histories';
import { bundlerLogger, installTestRuntime, testLogDir } from './testLogs';

/**
 * The workflow's result, marked handled at once: a failure that settles before
 * the test awaits it (a terminate, a cancel) must not count as an unhandled rejection.
 */
export function resultOf<T>(handle: WorkflowHandle): Promise<T> {
  const result = handle.result() as Promise<T>;
  result.catch(() => undefined);
  return result;
}

export interface WorkerOverrides {
  taskQueue: string;
  localAgent?: AgentEndpoint;
  targets?: ActivityDeps['targets'];
}

export interface TestStack {
  dir: string;
  /** Where this stack's servers and agent write their output (test-output/logs/<file>/<stack>/). */
  logDir: string;
  config: FerryConfig;
  /** The FERRY_* settings, for child processes such as the CLI. */
  settings: StackSettings;
  client: Client;
  blobs: S3BlobStore;
  agent: RunningAgent;
  agentRoot: string;
  agentToken: string;
  /** Stops the Temporal dev server (SIGTERM, as an operator would); its SQLite file stays. */
  stopTemporal(): Promise<void>;
  /** Starts the dev server again on the same port and SQLite file; resolves once it answers. Connections and workers reconnect by themselves. */
  startTemporal(): Promise<void>;
  /**
   * With `agentProcess`: the agent's process, to SIGKILL it and start a new
   * one on the same port and root (a new bootId). Undefined otherwise.
   */
  agentProcess?: AgentProcessControl;
  /**
   * Starts another worker on its own task queue, stopped with the stack:
   * `localAgent` points its `local` target at another agent (a test double),
   * `targets` replaces backends by kind (an ECS backend against moto).
   */
  startWorker(options: WorkerOverrides): Promise<Worker>;
  stop(): Promise<void>;
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/**
 * Workflow code bundled once per process (bundling takes seconds), or the
 * bundle `npm test` built once for the whole run (FERRY_WORKFLOW_BUNDLE,
 * which the workers tests spawn read too).
 */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  const prebuilt = process.env.FERRY_WORKFLOW_BUNDLE;
  bundle ??= prebuilt
    ? readFile(prebuilt, 'utf8').then((code) => ({ code, sourceMap: '' }))
    : bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: bundlerLogger() });
  return bundle;
}

export interface TestStackOptions {
  /**
   * Run the runtime agent as its own process (as on a real target) instead
   * of inside this one. The benchmark uses it so worker and agent do not
   * share one event loop and one core.
   */
  agentProcess?: boolean;
  /** Serve the dev server's Web UI (on a free port, `webUiUrl`). */
  webUi?: boolean;
  /**
   * Puts something (a fault proxy) between the S3 server and everyone using
   * it: given the real endpoint, returns the one the worker's clients and the
   * agent's allowed URL prefix use instead. Whoever starts it stops it.
   */
  wrapS3Endpoint?: (realEndpoint: string) => Promise<string>;
}

/** The runtime agent's process, for tests that crash it. */
export interface AgentProcessControl {
  /** The agent now running (a new one after `restart`). */
  readonly current: RunningAgent;
  /** SIGKILLs the agent: no shutdown runs, whatever it was writing stays as it was. */
  kill(): Promise<void>;
  /** Kills the agent if it still runs and starts a new process on the same port and root (a new bootId). */
  restart(): Promise<RunningAgent>;
}

type AgentProcess = RunningAgent & { kill(): Promise<void> };

/** The runtime agent as a child process, answering once its health check passes. */
async function startAgentProcess(dir: string, logDir: string, options: { root: string; token: string; host: string; allowedUrlPrefix: string; port?: number }): Promise<AgentProcess> {
  const port = options.port ?? (await freePort());
  // As `ferry up` does: a file the agent deletes once read, not a variable executed code could read in /proc.
  const tokenFile = path.join(dir, `agent-token-${port}`);
  await writeFile(tokenFile, options.token, { mode: 0o600 });
  // An agent started as root runs code as another user, who must be able to pass through this folder to the root (search only).
  await chmod(dir, 0o701);
  const child = await spawnManaged({
    name: 'agent',
    binary: process.execPath,
    args: [path.join(__dirname, '..', '..', 'runtime', 'main.js')],
    env: {
      PATH: process.env.PATH,
      FERRY_AGENT_ROOT: options.root,
      // As `ferry up` does: the agent's state apart from the root where code runs.
      FERRY_AGENT_STATE_DIR: path.join(dir, 'agent-state'),
      FERRY_AGENT_TOKEN_FILE: tokenFile,
      FERRY_AGENT_HOST: options.host,
      FERRY_AGENT_PORT: String(port),
      FERRY_AGENT_ALLOWED_URL_PREFIXES: options.allowedUrlPrefix,
    },
    logFile: path.join(logDir, 'agent.log'),
    detached: false,
  });
  const url = `http://${options.host}:${port}`;
  const client = new AgentClient({ url, token: options.token }, { idleTimeoutMs: 1_000 });
  for (let tries = 0; ; tries++) {
    try {
      const { bootId } = await client.health();
      const kill = async () => {
        if (!child.isRunning()) return;
        process.kill(child.pid, 'SIGKILL');
        await child.exited;
      };
      return { url, port, bootId, close: () => child.stop(), kill };
    } catch (err) {
      if (tries > 100) {
        await child.stop();
        throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

export async function startTestStack(options: TestStackOptions = {}): Promise<TestStack> {
  installTestRuntime();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-test-'));
  const logDir = path.join(testLogDir(), path.basename(dir));
  await mkdir(logDir, { recursive: true });
  const cleanups: (() => Promise<unknown>)[] = [];
  const stop = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const root = repoRoot();
    const host = '127.0.0.1';
    const [temporalPort, s3Port] = [await freePort(), await freePort()];
    const uiPort = options.webUi ? await freePort() : undefined;
    const s3Secret = randomBytes(16).toString('hex');
    const temporalOptions = {
      binary: resolveTool('temporal', root),
      dbFile: path.join(dir, 'temporal.db'),
      host,
      port: temporalPort,
      uiPort,
      namespace: 'default',
      searchAttributes: SEARCH_ATTRIBUTES,
      logFile: path.join(logDir, 'temporal.log'),
    };
    const [firstTemporal, s3] = await Promise.all([
      startTemporalDevServer(temporalOptions),
      startS3Server({
        binary: resolveTool('weed', root),
        dataDir: path.join(dir, 's3'),
        host,
        port: s3Port,
        accessKeyId: 'ferrytest',
        secretAccessKey: s3Secret,
        bucket: 'ferry',
        logFile: path.join(logDir, 's3.log'),
      }),
    ]);
    let temporal = firstTemporal;
    cleanups.push(() => temporal.stop(), () => s3.stop());
    const stopTemporal = () => temporal.stop();
    const startTemporal = async () => {
      temporal = await startTemporalDevServer(temporalOptions);
    };

    const agentRoot = path.join(dir, 'target');
    const agentToken = randomBytes(24).toString('hex');
    const realS3Endpoint = `http://${host}:${s3Port}`;
    const s3Endpoint = options.wrapS3Endpoint ? await options.wrapS3Endpoint(realS3Endpoint) : realS3Endpoint;
    const allowedUrlPrefix = `${s3Endpoint}/ferry/`;
    let agentProcess = options.agentProcess ? await startAgentProcess(dir, logDir, { root: agentRoot, token: agentToken, host, allowedUrlPrefix }) : undefined;
    const startInProcessAgent = async () => {
      const agentLog = createWriteStream(path.join(logDir, 'agent.log'), { flags: 'a' });
      cleanups.push(() => new Promise((resolve) => agentLog.end(resolve)));
      return startAgent({ root: agentRoot, token: agentToken, host, port: 0, allowedUrlPrefixes: [allowedUrlPrefix], log: createJsonLogger(agentLog) });
    };
    const agent = agentProcess ?? (await startInProcessAgent());
    cleanups.push(() => (agentProcess ?? agent).close());
    const agentProcessControl: AgentProcessControl | undefined = agentProcess && {
      get current() {
        return agentProcess!;
      },
      kill: () => agentProcess!.kill(),
      restart: async () => {
        await agentProcess!.kill();
        agentProcess = await startAgentProcess(dir, logDir, { root: agentRoot, token: agentToken, host, allowedUrlPrefix, port: agent.port });
        return agentProcess;
      },
    };

    const settings: StackSettings = {
      FERRY_TEMPORAL_ADDRESS: `${host}:${temporalPort}`,
      FERRY_TASK_QUEUE: 'ferry-test',
      FERRY_S3_ENDPOINT: s3Endpoint,
      FERRY_S3_BUCKET: 'ferry',
      FERRY_S3_ACCESS_KEY_ID: 'ferrytest',
      FERRY_S3_SECRET_ACCESS_KEY: s3Secret,
      FERRY_LOCAL_AGENT_URL: agent.url,
      FERRY_LOCAL_AGENT_TOKEN: agentToken,
      ...(uiPort ? { FERRY_WEB_UI_URL: `http://${host}:${uiPort}` } : {}),
    };
    const config = resolveConfig({}, settings);
    const deps = activityDepsFromConfig(config);

    const connection = await Connection.connect({ address: config.temporal.address });
    cleanups.push(() => connection.close());
    const client = new Client({ connection, namespace: config.temporal.namespace });
    // The test command asks for every history, so the replay test can check them against the workflow code.
    const historiesDir = process.env.FERRY_RECORD_HISTORIES;
    if (historiesDir) cleanups.push(() => recordHistories(client, historiesDir, `${path.basename(process.argv[1] ?? 'stack', '.js')}-${path.basename(dir)}`));
    const nativeConnection = await NativeConnection.connect({ address: config.temporal.address });
    cleanups.push(() => nativeConnection.close());

    const startWorker = async (options: WorkerOverrides): Promise<Worker> => {
      const targets = new Map(deps.targets);
      if (options.localAgent) targets.set('local', createLocalBackend(options.localAgent, deps.blobs));
      for (const [kind, backend] of options.targets ?? []) targets.set(kind, backend);
      const worker = await createFerryWorker({
        config: { ...config, temporal: { ...config.temporal, taskQueue: options.taskQueue } },
        connection: nativeConnection,
        activityDeps: { ...deps, targets },
        workerOptions: { workflowBundle: await workflowBundle() },
      });
      const running = worker.run();
      cleanups.push(async () => {
        if (worker.getState() === 'RUNNING') worker.shutdown();
        await running;
      });
      return worker;
    };
    await startWorker({ taskQueue: config.temporal.taskQueue });

    return { dir, logDir, config, settings, client, blobs: deps.blobs, agent, agentRoot, agentToken, stopTemporal, startTemporal, agentProcess: agentProcessControl, startWorker, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
