/**
 * The embedded stack behind `ferry up`: Temporal dev server with its Web UI,
 * an S3 server, a local runtime agent and a worker, all on 127.0.0.1, with
 * state and logs under `.ferry/`. What was started (pids, ports, generated
 * credentials) is recorded in `.ferry/stack.json` (mode 0600) so the CLI can
 * find the stack and `ferry down` can stop it.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { killLocalSessionAgents } from '../activities/localSessions';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { AgentClient } from '../activities/agentClient';
import { resolveConfig, type StackSettings } from '../core/config';
import { SEARCH_ATTRIBUTES } from '../workflows/definitions';
import { CommandError } from './commands';
import { STACK_FILE_NAME, readStackState, stackDir, type StackState } from './config';
import {
  ServiceStartError,
  assertPortsFree,
  isPidAlive,
  logTail,
  repoRoot,
  resolveTool,
  spawnManaged,
  startS3Server,
  startTemporalDevServer,
  stopPid,
  type ManagedProcess,
} from './services';

export const DEFAULT_PORTS = { temporal: 7233, ui: 8233, s3: 8333, agent: 8390 };
const HOST = '127.0.0.1';
const BUCKET = 'ferry';

export interface StartStackOptions {
  detach: boolean;
  ports: typeof DEFAULT_PORTS;
  taskQueue: string;
  /** Progress lines for the person waiting. */
  report: (line: string) => void;
}

async function waitFor(what: string, service: ManagedProcess, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  void service.exited.then(() => (exited = true));
  while (Date.now() < deadline) {
    if (exited) throw new ServiceStartError(service.name, `${service.name} exited before ${what}`, service.logFile, logTail(service.logFile));
    if (await probe().catch(() => false)) return;
    await sleep(200);
  }
  throw new ServiceStartError(service.name, `${service.name} did not ${what} within ${timeoutMs / 1000}s`, service.logFile, logTail(service.logFile));
}

/** Services that use the others; stopped first so they never see a server vanish mid-request. */
const CLIENT_SERVICES = new Set(['worker', 'agent']);

/** Stops every service of a running or half-started stack: worker and agent first, then the servers, each group in parallel. */
async function stopServices(services: { name: string; pid: number }[]): Promise<void> {
  await Promise.all(services.filter((s) => CLIENT_SERVICES.has(s.name)).map((s) => stopPid(s.pid)));
  await Promise.all(services.filter((s) => !CLIENT_SERVICES.has(s.name)).map((s) => stopPid(s.pid)));
}

export async function startStack(options: StartStackOptions): Promise<void> {
  const dir = process.env.FERRY_HOME ? path.resolve(process.env.FERRY_HOME) : stackDir();
  const existing = readStackState(dir);
  if (existing?.services.some((s) => isPidAlive(s.pid))) {
    throw new CommandError(`the embedded stack in ${dir} is already running (since ${existing.startedAt}): use it, or stop it with \`ferry down\``);
  }
  rmSync(path.join(dir, STACK_FILE_NAME), { force: true });
  const { ports } = options;
  await assertPortsFree(
    [
      { service: 'temporal', port: ports.temporal, flag: '--temporal-port' },
      { service: 'temporal-ui', port: ports.ui, flag: '--ui-port' },
      { service: 's3', port: ports.s3, flag: '--s3-port' },
      { service: 'agent', port: ports.agent, flag: '--agent-port' },
    ],
    HOST,
  );

  const root = repoRoot();
  const logs = path.join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const s3Secret = randomBytes(24).toString('hex');
  const agentToken = randomBytes(24).toString('hex');
  const settings: StackSettings = {
    FERRY_TEMPORAL_ADDRESS: `${HOST}:${ports.temporal}`,
    FERRY_TASK_QUEUE: options.taskQueue,
    FERRY_WEB_UI_URL: `http://${HOST}:${ports.ui}`,
    FERRY_S3_ENDPOINT: `http://${HOST}:${ports.s3}`,
    FERRY_S3_BUCKET: BUCKET,
    FERRY_S3_ACCESS_KEY_ID: 'ferry',
    FERRY_S3_SECRET_ACCESS_KEY: s3Secret,
    FERRY_LOCAL_AGENT_URL: `http://${HOST}:${ports.agent}`,
    FERRY_LOCAL_AGENT_TOKEN: agentToken,
    FERRY_SESSION_SECRET: randomBytes(32).toString('hex'),
    FERRY_SESSIONS_DIR: path.join(dir, 'sessions'),
  };
  const config = resolveConfig({}, settings);
  const started: ManagedProcess[] = [];

  try {
    options.report(`starting Temporal dev server and S3 server (logs in ${logs}) …`);
    const [temporalServer, s3Server] = await Promise.all([
      startTemporalDevServer({
        binary: resolveTool('temporal', root),
        dbFile: path.join(dir, 'temporal.db'),
        host: HOST,
        port: ports.temporal,
        uiPort: ports.ui,
        namespace: config.temporal.namespace,
        searchAttributes: SEARCH_ATTRIBUTES,
        logFile: path.join(logs, 'temporal.log'),
        detached: options.detach,
      }).then((server) => (started.push(server), server)),
      startS3Server({
        binary: resolveTool('weed', root),
        dataDir: path.join(dir, 's3'),
        host: HOST,
        port: ports.s3,
        accessKeyId: 'ferry',
        secretAccessKey: s3Secret,
        bucket: BUCKET,
        logFile: path.join(logs, 's3.log'),
        detached: options.detach,
      }).then((server) => (started.push(server), server)),
    ]);
    options.report(`✔ temporal ready in ${(temporalServer.readyMs / 1000).toFixed(1)}s, s3 ready in ${(s3Server.readyMs / 1000).toFixed(1)}s`);

    const agent = await spawnManaged({
      name: 'agent',
      binary: process.execPath,
      args: [path.join(__dirname, '..', 'runtime', 'main.js')],
      // Only what the agent needs: commands it executes inherit its environment, so no other secrets.
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        LANG: process.env.LANG,
        FERRY_AGENT_ROOT: path.join(dir, 'targets', 'local'),
        FERRY_AGENT_TOKEN: agentToken,
        FERRY_AGENT_HOST: HOST,
        FERRY_AGENT_PORT: String(ports.agent),
        FERRY_AGENT_ALLOWED_URL_PREFIXES: `${config.s3.endpoint}/${BUCKET}/`,
      },
      logFile: path.join(logs, 'agent.log'),
      detached: options.detach,
    });
    started.push(agent);
    const agentClient = new AgentClient(config.localAgent!, { idleTimeoutMs: 2_000 });
    await waitFor('answer its health check', agent, 20_000, async () => Boolean((await agentClient.health()).bootId));

    const worker = await spawnManaged({
      name: 'worker',
      binary: process.execPath,
      args: [path.join(__dirname, '..', 'worker', 'main.js')],
      env: { ...process.env, ...settings },
      logFile: path.join(logs, 'worker.log'),
      detached: options.detach,
    });
    started.push(worker);
    const connection = await Connection.connect({ address: config.temporal.address });
    try {
      const client = new Client({ connection, namespace: config.temporal.namespace });
      await waitFor(`poll task queue ${options.taskQueue}`, worker, 90_000, async () => {
        const response = await client.workflowService.describeTaskQueue({
          namespace: config.temporal.namespace,
          taskQueue: { name: options.taskQueue },
          taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        });
        return (response.pollers?.length ?? 0) > 0;
      });
    } finally {
      await connection.close();
    }

    const state: StackState = {
      startedAt: new Date().toISOString(),
      settings,
      services: started.map((s) => ({ name: s.name, pid: s.pid, logFile: s.logFile })),
      webUiUrl: config.temporal.webUiUrl,
      detached: options.detach,
    };
    writeFileSync(path.join(dir, STACK_FILE_NAME), JSON.stringify(state, null, 2), { mode: 0o600 });
    options.report(
      [
        '✔ ferry stack is up',
        `  temporal   ${config.temporal.address} (task queue ${options.taskQueue})`,
        `  web ui     ${config.temporal.webUiUrl}`,
        `  s3         ${config.s3.endpoint} (bucket ${BUCKET})`,
        `  agent      ${config.localAgent!.url} (root ${path.join(dir, 'targets', 'local')})`,
        `  state      ${dir}`,
        `  next       npx ferry sync <dir> --session <id>`,
        options.detach ? '  stop with  npx ferry down' : '  Ctrl-C stops everything',
      ].join('\n'),
    );
  } catch (err) {
    await stopServices(started);
    throw err;
  }

  if (options.detach) return;
  // Ctrl-C in a terminal signals the children too, so their exits after a signal are expected.
  let signalled = false;
  await Promise.race([
    new Promise<void>((resolve) => {
      const onSignal = () => {
        signalled = true;
        resolve();
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
    }),
    ...started.map((service) =>
      service.exited.then(() => {
        if (!signalled) options.report(`${service.name} exited unexpectedly (log: ${service.logFile}); stopping the stack`);
      }),
    ),
  ]);
  options.report('stopping the ferry stack …');
  await stopServices(started);
  rmSync(path.join(dir, STACK_FILE_NAME), { force: true });
}

/** Stops the stack recorded in `.ferry/stack.json`. */
export async function stopStack(): Promise<string> {
  const dir = stackDir();
  const state = readStackState(dir);
  if (!state) return `no ferry stack recorded in ${dir}: nothing to stop`;
  await stopServices(state.services);
  // Pipelines release their sessions; ones still running when the stack goes down would outlive it.
  const sessionsDir = state.settings.FERRY_SESSIONS_DIR;
  const sessions = sessionsDir ? await killLocalSessionAgents(sessionsDir) : 0;
  rmSync(path.join(dir, STACK_FILE_NAME), { force: true });
  return `stopped ${state.services.map((s) => s.name).join(', ')}${sessions ? ` and ${sessions} session agent(s)` : ''} (state kept in ${dir})`;
}
