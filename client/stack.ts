/**
 * The embedded stack behind `ferry up`: Temporal dev server with its Web UI,
 * an S3 server, a local runtime agent and a worker, all on 127.0.0.1, with
 * state and logs under `.ferry/`. What was started (pids, ports, generated
 * credentials) is recorded in `.ferry/stack.json` (mode 0600) so the CLI can
 * find the stack and `ferry down` can stop it.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { AgentClient } from '../activities/agentClient';
import { killAgentProcesses } from '../runtime/agent';
import { resolveConfig, type StackSettings } from '../core/config';
import { SEARCH_ATTRIBUTES } from '../workflows/definitions';
import { CommandError } from './errors';
import { STACK_FILE_NAME, readStackState, stackDir, type StackState } from './config';
import { ServiceStartError, isPidAlive, logTail, spawnManaged, stopPid, type ManagedProcess, type StartedServer } from './managedProcess';
import { assertPortsFree, type DEFAULT_PORTS } from './ports';
import { repoRoot, resolveTool } from './tools';
import { startS3Server } from './s3Server';
import { startTemporalDevServer } from './temporalServer';

const HOST = '127.0.0.1';
const BUCKET = 'ferry';

export interface StartStackOptions {
  detach: boolean;
  ports: typeof DEFAULT_PORTS;
  taskQueue: string;
  /** Progress lines for the person waiting. */
  report: (line: string) => void;
}

async function waitFor(what: string, service: { name: string; pid: number; logFile: string }, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isPidAlive(service.pid)) throw new ServiceStartError(service.name, `${service.name} exited before ${what}`, service.logFile, logTail(service.logFile));
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

/** The order services start in: servers, then the agent, then the worker that uses them all. */
const SERVICE_ORDER = ['temporal', 'weed', 'agent', 'worker'] as const;
type ServiceName = (typeof SERVICE_ORDER)[number];

/** What starting any one service of a stack needs; all of it is recorded in stack.json, so a dead service can be started again alike. */
interface StackContext {
  dir: string;
  logs: string;
  settings: StackSettings;
  ports: typeof DEFAULT_PORTS;
  detach: boolean;
}

/** The ports a recorded stack runs on, read back from its settings. */
function portsOf(settings: StackSettings): typeof DEFAULT_PORTS {
  const portOf = (url: string | undefined) => Number(new URL(url ?? '').port);
  return {
    temporal: portOf(`http://${settings.FERRY_TEMPORAL_ADDRESS}`),
    ui: portOf(settings.FERRY_WEB_UI_URL),
    s3: portOf(settings.FERRY_S3_ENDPOINT),
    agent: portOf(settings.FERRY_LOCAL_AGENT_URL),
  };
}

/** The local agent's root, its own state folder (apart from the root, where code runs) and the folders between. */
const agentRootOf = (dir: string) => path.join(dir, 'targets', 'local');
const agentStateDirOf = (dir: string) => path.join(dir, 'agent-state');

/**
 * Whether the local agent runs executed code as another user: it does when
 * it runs as root (runtime/main.ts), unless FERRY_AGENT_RUN_AS keeps it root.
 */
function agentSwitchesUser(): boolean {
  const runAs = process.env.FERRY_AGENT_RUN_AS?.trim();
  return process.getuid?.() === 0 && runAs !== 'root' && runAs !== '0' && !runAs?.startsWith('0:');
}

/**
 * Keeps what the stack writes to its owner: the folder 0700 and, through
 * the umask this process and every service inherit, each file 0600 and
 * each folder 0700 (logs, the history database, the store, session
 * roots); files an earlier version left readable are narrowed too. When the
 * agent runs code as another user, that user may pass through the folders
 * on the way to the agent's root (search only: it can list none of them).
 */
function restrictStackFolder(dir: string): void {
  process.umask(0o077);
  mkdirSync(path.join(dir, 'logs'), { recursive: true });
  for (const folder of [dir, path.join(dir, 'logs')]) chmodSync(folder, 0o700);
  if (agentSwitchesUser()) {
    mkdirSync(agentRootOf(dir), { recursive: true });
    for (const folder of [dir, path.join(dir, 'targets'), agentRootOf(dir)]) chmodSync(folder, 0o701);
  }
  const logs = readdirSync(path.join(dir, 'logs')).map((name) => path.join('logs', name));
  for (const name of [STACK_FILE_NAME, 'temporal.db', 'temporal.db-wal', 'temporal.db-shm', ...logs]) {
    try {
      chmodSync(path.join(dir, name), 0o600);
    } catch {
      // not there (yet)
    }
  }
}

async function startService(name: ServiceName, ctx: StackContext): Promise<ManagedProcess> {
  const root = repoRoot();
  const config = resolveConfig({}, ctx.settings);
  switch (name) {
    case 'temporal':
      return startTemporalDevServer({
        binary: resolveTool('temporal', root),
        dbFile: path.join(ctx.dir, 'temporal.db'),
        host: HOST,
        port: ctx.ports.temporal,
        uiPort: ctx.ports.ui,
        namespace: config.temporal.namespace,
        searchAttributes: SEARCH_ATTRIBUTES,
        logFile: path.join(ctx.logs, 'temporal.log'),
        detached: ctx.detach,
      });
    case 'weed':
      return startS3Server({
        binary: resolveTool('weed', root),
        dataDir: path.join(ctx.dir, 's3'),
        host: HOST,
        port: ctx.ports.s3,
        accessKeyId: ctx.settings.FERRY_S3_ACCESS_KEY_ID!,
        secretAccessKey: ctx.settings.FERRY_S3_SECRET_ACCESS_KEY!,
        bucket: BUCKET,
        logFile: path.join(ctx.logs, 's3.log'),
        detached: ctx.detach,
      });
    case 'agent': {
      // The token goes in a file the agent deletes once read: executed code can read the agent's /proc/<pid>/environ.
      const tokenFile = path.join(ctx.dir, 'agent-token');
      rmSync(tokenFile, { force: true });
      writeFileSync(tokenFile, ctx.settings.FERRY_LOCAL_AGENT_TOKEN!, { mode: 0o600, flag: 'wx' });
      const agent = await spawnManaged({
        name: 'agent',
        binary: process.execPath,
        args: [path.join(__dirname, '..', 'runtime', 'main.js')],
        // Only what the agent needs: commands it executes inherit its environment, so no other secrets.
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          LANG: process.env.LANG,
          FERRY_AGENT_ROOT: agentRootOf(ctx.dir),
          FERRY_AGENT_STATE_DIR: agentStateDirOf(ctx.dir),
          ...(process.env.FERRY_AGENT_RUN_AS ? { FERRY_AGENT_RUN_AS: process.env.FERRY_AGENT_RUN_AS } : {}),
          FERRY_AGENT_TOKEN_FILE: tokenFile,
          FERRY_AGENT_HOST: HOST,
          FERRY_AGENT_PORT: String(ctx.ports.agent),
          FERRY_AGENT_ALLOWED_URL_PREFIXES: `${config.s3.endpoint}/${BUCKET}/`,
        },
        logFile: path.join(ctx.logs, 'agent.log'),
        detached: ctx.detach,
      });
      const agentClient = new AgentClient({ url: ctx.settings.FERRY_LOCAL_AGENT_URL!, token: ctx.settings.FERRY_LOCAL_AGENT_TOKEN! }, { idleTimeoutMs: 2_000 });
      try {
        await waitFor('answer its health check', agent, 20_000, async () => Boolean((await agentClient.health()).bootId));
      } catch (err) {
        await agent.stop();
        throw err;
      }
      return agent;
    }
    case 'worker':
      return spawnManaged({
        name: 'worker',
        binary: process.execPath,
        args: [path.join(__dirname, '..', 'worker', 'main.js')],
        env: { ...process.env, ...ctx.settings },
        logFile: path.join(ctx.logs, 'worker.log'),
        detached: ctx.detach,
      });
  }
}

/** Resolves once a worker polls the stack's task queue (after a start, or after Temporal came back). */
async function waitForWorker(settings: StackSettings, worker: { name: string; pid: number; logFile: string }): Promise<void> {
  const config = resolveConfig({}, settings);
  const connection = await Connection.connect({ address: config.temporal.address });
  try {
    const client = new Client({ connection, namespace: config.temporal.namespace });
    await waitFor(`poll task queue ${config.temporal.taskQueue}`, worker, 90_000, async () => {
      const response = await client.workflowService.describeTaskQueue({
        namespace: config.temporal.namespace,
        taskQueue: { name: config.temporal.taskQueue },
        taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
      });
      return (response.pollers?.length ?? 0) > 0;
    });
  } finally {
    await connection.close();
  }
}

function writeStackState(dir: string, state: StackState): void {
  writeFileSync(path.join(dir, STACK_FILE_NAME), JSON.stringify(state, null, 2), { mode: 0o600 });
}

function describeStack(settings: StackSettings, dir: string, detached: boolean): string {
  const config = resolveConfig({}, settings);
  return [
    '✔ ferry stack is up',
    `  temporal   ${config.temporal.address} (task queue ${config.temporal.taskQueue})`,
    `  web ui     ${config.temporal.webUiUrl}`,
    `  s3         ${config.s3.endpoint} (bucket ${BUCKET})`,
    `  agent      ${settings.FERRY_LOCAL_AGENT_URL} (root ${agentRootOf(dir)})`,
    `  state      ${dir}`,
    `  next       ferry sync <dir> --session <id>`,
    detached ? '  stop with  ferry down' : '  Ctrl-C stops everything',
  ].join('\n');
}

/**
 * `ferry up`. A stack already recorded in the folder is used, not doubled:
 * detached and healthy, it is left as it is; detached with some services
 * dead, only those are started again (same ports, credentials and data);
 * run in the foreground by another `ferry up`, it is that command's.
 */
export async function startStack(options: StartStackOptions): Promise<void> {
  const dir = stackDir();
  mkdirSync(dir, { recursive: true });
  restrictStackFolder(dir);
  const existing = readStackState(dir);
  const alive = existing?.services.filter((s) => isPidAlive(s.pid)) ?? [];
  if (existing && alive.length > 0) {
    if (!existing.detached) {
      throw new CommandError(`the embedded stack in ${dir} is already running in the foreground of another \`ferry up\` (since ${existing.startedAt}): use it, or stop that command`);
    }
    return healStack(dir, existing, options);
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

  const logs = path.join(dir, 'logs');
  const settings: StackSettings = {
    FERRY_TEMPORAL_ADDRESS: `${HOST}:${ports.temporal}`,
    FERRY_TASK_QUEUE: options.taskQueue,
    FERRY_WEB_UI_URL: `http://${HOST}:${ports.ui}`,
    FERRY_S3_ENDPOINT: `http://${HOST}:${ports.s3}`,
    FERRY_S3_BUCKET: BUCKET,
    FERRY_S3_ACCESS_KEY_ID: 'ferry',
    FERRY_S3_SECRET_ACCESS_KEY: randomBytes(24).toString('hex'),
    FERRY_LOCAL_AGENT_URL: `http://${HOST}:${ports.agent}`,
    FERRY_LOCAL_AGENT_TOKEN: randomBytes(24).toString('hex'),
  };
  const ctx: StackContext = { dir, logs, settings, ports, detach: options.detach };
  const started: ManagedProcess[] = [];

  try {
    options.report(`starting Temporal dev server and S3 server (logs in ${logs}) …`);
    const [temporalServer, s3Server] = await Promise.all(
      (['temporal', 'weed'] as const).map((name) => startService(name, ctx).then((server) => (started.push(server), server as StartedServer))),
    );
    options.report(`✔ temporal ready in ${(temporalServer!.readyMs / 1000).toFixed(1)}s, s3 ready in ${(s3Server!.readyMs / 1000).toFixed(1)}s`);
    started.push(await startService('agent', ctx));
    const worker = await startService('worker', ctx);
    started.push(worker);
    await waitForWorker(settings, worker);

    writeStackState(dir, {
      startedAt: new Date().toISOString(),
      settings,
      services: started.map((s) => ({ name: s.name, pid: s.pid, logFile: s.logFile })),
      webUiUrl: settings.FERRY_WEB_UI_URL,
      detached: options.detach,
    });
    options.report(describeStack(settings, dir, options.detach));
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

/** Starts the dead services of a detached stack again, in order, and waits until the whole stack serves. */
async function healStack(dir: string, existing: StackState, options: StartStackOptions): Promise<void> {
  const ctx: StackContext = { dir, logs: path.join(dir, 'logs'), settings: existing.settings, ports: portsOf(existing.settings), detach: true };
  const services = new Map(existing.services.map((s) => [s.name, s]));
  const dead = SERVICE_ORDER.filter((name) => {
    const pid = services.get(name)?.pid;
    return pid === undefined || !isPidAlive(pid);
  });
  if (dead.length === 0) {
    options.report(`the embedded stack in ${dir} is already running (since ${existing.startedAt}); nothing to start`);
    options.report(describeStack(existing.settings, dir, true));
    return;
  }
  options.report(`the embedded stack in ${dir} runs without ${dead.join(', ')}: starting ${dead.length === 1 ? 'it' : 'them'} again …`);
  const servers = dead.filter((name) => name === 'temporal' || name === 'weed');
  const restarted = await Promise.all(servers.map((name) => startService(name, ctx)));
  if (dead.includes('agent')) restarted.push(await startService('agent', ctx));
  if (dead.includes('worker')) restarted.push(await startService('worker', ctx));
  for (const service of restarted) services.set(service.name, { name: service.name, pid: service.pid, logFile: service.logFile });
  writeStackState(dir, { ...existing, services: SERVICE_ORDER.flatMap((name) => services.get(name) ?? []) });
  // A worker that outlived a Temporal restart reconnects by itself; either way the stack is up once it polls again.
  await waitForWorker(existing.settings, services.get('worker')!);
  options.report(`✔ started ${dead.join(', ')} again`);
  options.report(describeStack(existing.settings, dir, true));
}

/** Stops the stack recorded in `.ferry/stack.json`. */
export async function stopStack(): Promise<string> {
  const dir = stackDir();
  const state = readStackState(dir);
  if (!state) return `no ferry stack recorded in ${dir}: nothing to stop`;
  // The agent kills the processes sessions started when it is told to stop (SIGTERM).
  await stopServices(state.services);
  // Whatever outlived it (an agent that had to be SIGKILLed cannot close) is found by the marker its processes carry.
  const leftovers = await killAgentProcesses(agentStateDirOf(dir));
  rmSync(path.join(dir, STACK_FILE_NAME), { force: true });
  const killed = leftovers ? `; killed ${leftovers} processes sessions had started that outlived the agent` : '';
  return `stopped ${state.services.map((s) => s.name).join(', ')}${killed} (state kept in ${dir})`;
}
