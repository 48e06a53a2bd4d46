/**
 * The `local` session driver: each session is a runtime agent process on
 * the worker's machine, with its own root `<sessionsDir>/<sessionId>/root`.
 * What was started is recorded next to the root (`agent.json`), so a retried
 * provision finds the running agent instead of starting a second one.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FailureType } from '../core/errors';
import { SESSION_DIRS, type SessionHandle } from '../core/session';
import { AgentClient } from './agentClient';
import { retryable } from './failures';
import type { ProvisionedSession, ProvisionRequest, SessionDriver } from './sessionDriver';

export interface LocalSessionDeps {
  /** Absolute folder holding one folder per session. */
  sessionsDir: string;
  /** URL prefixes the session's agent may download from (the blob store). */
  allowedUrlPrefixes: () => Promise<string[]>;
  /** Where the agent listens; loopback unless the worker's machine is shared on purpose. */
  host?: string;
  /** The agent entry point; default the built runtime/main.js next to this module. */
  agentScript?: string;
}

interface AgentRecord {
  pid: number;
  url: string;
  startedAt: string;
}

const START_DEADLINE_MS = 30_000;
const STOP_GRACE_MS = 10_000;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function createLocalSessionDriver(deps: LocalSessionDeps): SessionDriver {
  const host = deps.host ?? '127.0.0.1';
  const agentScript = deps.agentScript ?? path.join(__dirname, '..', 'runtime', 'main.js');
  const sessionDir = (sessionId: string) => path.join(path.resolve(deps.sessionsDir), sessionId);
  const recordPath = (sessionId: string) => path.join(sessionDir(sessionId), 'agent.json');
  const logPath = (sessionId: string) => path.join(sessionDir(sessionId), 'agent.log');

  const readRecord = async (sessionId: string): Promise<AgentRecord | undefined> => {
    try {
      return JSON.parse(await readFile(recordPath(sessionId), 'utf8')) as AgentRecord;
    } catch {
      return undefined;
    }
  };

  /** Starts the agent and waits for the one `listening` line it prints to stdout (captured in its log). */
  const startAgent = async (request: ProvisionRequest, root: string): Promise<AgentRecord> => {
    const log = logPath(request.sessionId);
    const offset = await stat(log).then((s) => s.size, () => 0);
    const fd = openSync(log, 'a');
    let child;
    try {
      child = spawn(process.execPath, [agentScript], {
        detached: true,
        stdio: ['ignore', fd, fd],
        // Code run in the session inherits this environment: nothing of the worker's (credentials) goes in.
        env: {
          PATH: process.env.PATH,
          HOME: process.env.HOME,
          LANG: process.env.LANG ?? 'C.UTF-8',
          FERRY_AGENT_ROOT: root,
          FERRY_AGENT_TOKEN: request.token,
          FERRY_AGENT_HOST: host,
          FERRY_AGENT_PORT: '0',
          FERRY_AGENT_ALLOWED_URL_PREFIXES: (await deps.allowedUrlPrefixes()).join(','),
        },
      });
    } finally {
      closeSync(fd);
    }
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw retryable(FailureType.SessionUnavailable, `could not start the runtime agent for session ${request.sessionId}`, { sessionId: request.sessionId });
    const deadline = Date.now() + START_DEADLINE_MS;
    while (Date.now() < deadline) {
      const text = (await readFile(log)).subarray(offset).toString('utf8');
      const line = text.split('\n').find((l) => l.includes('"event":"listening"'));
      if (line) {
        const { port } = JSON.parse(line) as { port: number };
        return { pid, url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`, startedAt: new Date().toISOString() };
      }
      if (!isAlive(pid)) break;
      request.heartbeat({ sessionId: request.sessionId, waitingFor: 'agent to listen', pid });
      await sleep(100);
    }
    const tail = (await readFile(log)).subarray(offset).toString('utf8').slice(-2000);
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    throw retryable(FailureType.SessionUnavailable, `runtime agent for session ${request.sessionId} did not start: ${tail.trim() || 'no output'}`, {
      sessionId: request.sessionId,
      log,
    });
  };

  return {
    async provision(request: ProvisionRequest): Promise<ProvisionedSession> {
      const root = path.join(sessionDir(request.sessionId), 'root');
      for (const dir of Object.values(SESSION_DIRS)) await mkdir(path.join(root, dir), { recursive: true });
      let record = await readRecord(request.sessionId);
      if (record && isAlive(record.pid)) {
        try {
          await new AgentClient({ url: record.url, token: request.token }, { idleTimeoutMs: 5_000 }).health();
          return { agentUrl: record.url, root, details: { pid: String(record.pid), reused: 'true' } };
        } catch {
          // Alive but not our agent (pid reused) or wedged: start a fresh one.
        }
      }
      record = await startAgent(request, root);
      await writeFile(recordPath(request.sessionId), JSON.stringify(record), { mode: 0o600 });
      return { agentUrl: record.url, root, details: { pid: String(record.pid), reused: 'false' } };
    },

    async release(session: SessionHandle) {
      const record = await readRecord(session.sessionId);
      let detail = 'no agent was running';
      if (record && isAlive(record.pid)) {
        process.kill(record.pid, 'SIGTERM');
        const deadline = Date.now() + STOP_GRACE_MS;
        while (isAlive(record.pid) && Date.now() < deadline) await sleep(100);
        if (isAlive(record.pid)) process.kill(record.pid, 'SIGKILL');
        detail = `stopped agent pid ${record.pid}`;
      }
      // Artifacts and logs are in the blob store by now; the session's folder goes with the session.
      await rm(sessionDir(session.sessionId), { recursive: true, force: true });
      return { released: true, detail };
    },
  };
}

/** Kills every session agent recorded under `sessionsDir` (stack shutdown, test clean-up); returns how many were running. */
export async function killLocalSessionAgents(sessionsDir: string): Promise<number> {
  const sessions = await readdir(sessionsDir).catch(() => [] as string[]);
  let killed = 0;
  for (const session of sessions) {
    const text = await readFile(path.join(sessionsDir, session, 'agent.json'), 'utf8').catch(() => undefined);
    const pid = text ? (JSON.parse(text) as AgentRecord).pid : undefined;
    if (pid !== undefined && isAlive(pid)) {
      process.kill(pid, 'SIGKILL');
      killed++;
    }
  }
  return killed;
}
