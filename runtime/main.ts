/**
 * Entry point of the runtime agent process. Settings come from the
 * environment; once listening it prints exactly one JSON line to stdout
 * (`{"event":"listening",...}`), which is how a parent process learns the
 * port. Everything else goes to stderr as JSON log lines.
 *
 * The token: FERRY_AGENT_TOKEN_FILE names a file holding it, which the agent
 * deletes once read. Starters on this machine use it, because code the
 * agent runs as the same user can read `/proc/<agent pid>/environ`, which
 * keeps the environment the process started with whatever it deletes from
 * `process.env`. FERRY_AGENT_TOKEN (the variable) is for containers, where
 * executed code runs as another user that cannot read the agent's /proc.
 *
 * Executed code runs as FERRY_AGENT_RUN_AS (a user name, or `uid:gid`): by
 * default `nobody` when the agent runs as root, the agent's own user
 * otherwise; `root` keeps a root agent's code as root. Only a root agent can
 * switch users.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { MIN_TOKEN_LENGTH, startAgent, type AgentOptions } from './agent';
import type { RunAs } from './processes';
import { createJsonLogger } from './log';
import { UrlAllowlist } from './urlAllowlist';

/** Exit status for bad settings, distinct from 1 (the agent failed while running). */
const EXIT_BAD_SETTINGS = 2;

class SettingError extends Error {}

function readSettings(env: NodeJS.ProcessEnv): Omit<AgentOptions, 'log'> {
  const required = (name: string): string => {
    const value = env[name];
    if (value === undefined || value.trim() === '') throw new SettingError(`${name} is required`);
    return value;
  };

  // First, so the token file is gone even when another setting is wrong.
  const [token, tokenSource] = env.FERRY_AGENT_TOKEN_FILE ? [readTokenFile(env.FERRY_AGENT_TOKEN_FILE), 'FERRY_AGENT_TOKEN_FILE'] : [required('FERRY_AGENT_TOKEN'), 'FERRY_AGENT_TOKEN'];
  if (token.length < MIN_TOKEN_LENGTH) throw new SettingError(`${tokenSource} must hold a token of at least ${MIN_TOKEN_LENGTH} characters`);

  const root = required('FERRY_AGENT_ROOT');
  if (!isAbsolute(root)) throw new SettingError(`FERRY_AGENT_ROOT must be an absolute path, got ${JSON.stringify(root)}`);

  const host = env.FERRY_AGENT_HOST || '127.0.0.1';

  const portText = env.FERRY_AGENT_PORT || '0';
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new SettingError(`FERRY_AGENT_PORT must be a port number from 0 to 65535, got ${JSON.stringify(portText)}`);

  const allowedUrlPrefixes = required('FERRY_AGENT_ALLOWED_URL_PREFIXES')
    .split(',')
    .map((prefix) => prefix.trim())
    .filter((prefix) => prefix !== '');
  try {
    new UrlAllowlist(allowedUrlPrefixes);
  } catch (err) {
    throw new SettingError(`FERRY_AGENT_ALLOWED_URL_PREFIXES: ${(err as Error).message}`);
  }

  const stateDir = env.FERRY_AGENT_STATE_DIR || undefined;
  if (stateDir !== undefined && !isAbsolute(stateDir)) throw new SettingError(`FERRY_AGENT_STATE_DIR must be an absolute path, got ${JSON.stringify(stateDir)}`);

  return { root, token, host, port, allowedUrlPrefixes, stateDir, runAs: readRunAs(env.FERRY_AGENT_RUN_AS) };
}

/** Code runs as another user only when asked to (or by default as root) and when the agent can switch; the agent's own user means no switch. */
function readRunAs(setting: string | undefined): RunAs | undefined {
  const agentUid = process.getuid?.();
  const wanted = setting?.trim() || (agentUid === 0 ? 'nobody' : undefined);
  if (wanted === undefined) return undefined;
  const runAs = lookUpUser(wanted);
  if (runAs.uid === agentUid) return undefined;
  if (agentUid !== 0) throw new SettingError(`FERRY_AGENT_RUN_AS: the agent runs as uid ${agentUid} and cannot run code as ${runAs.name}; only an agent started as root can switch users`);
  return runAs;
}

/** A user by name or uid from the system's user database (`getent passwd`, so NSS sources count), or a bare `uid:gid`. */
function lookUpUser(wanted: string): RunAs {
  const numeric = /^(\d+):(\d+)$/.exec(wanted);
  let entry: string;
  try {
    entry = execFileSync('getent', ['passwd', wanted.split(':')[0]], { encoding: 'utf8' }).split('\n')[0];
  } catch {
    if (numeric) return { name: wanted, uid: Number(numeric[1]), gid: Number(numeric[2]) };
    throw new SettingError(`FERRY_AGENT_RUN_AS: no user ${JSON.stringify(wanted)} (give a user name or uid:gid)`);
  }
  const [name, , uid, gid, , home] = entry.split(':');
  return { name, uid: Number(uid), gid: numeric ? Number(numeric[2]) : Number(gid), home: home || undefined };
}

/** Reads the token and deletes the file, so it is on disk only until the agent starts. */
function readTokenFile(file: string): string {
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new SettingError(`FERRY_AGENT_TOKEN_FILE: cannot read ${JSON.stringify(file)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    rmSync(file);
  } catch (err) {
    // A read-only mount (a container secret): it stays, readable by whom its mode allows.
    createJsonLogger(process.stderr).log('warn', 'cannot delete the token file', { file, error: (err as NodeJS.ErrnoException).code ?? String(err) });
  }
  return token;
}

async function main(): Promise<void> {
  let settings: Omit<AgentOptions, 'log'>;
  try {
    settings = readSettings(process.env);
  } catch (err) {
    if (!(err instanceof SettingError)) throw err;
    process.stderr.write(`ferry-agent: ${err.message}\n`);
    process.exit(EXIT_BAD_SETTINGS);
  }
  // Processes the agent starts inherit this environment; they must not inherit the agent's credential.
  delete process.env.FERRY_AGENT_TOKEN;
  delete process.env.FERRY_AGENT_TOKEN_FILE;

  const log = createJsonLogger(process.stderr);
  const agent = await startAgent({ ...settings, log });
  process.stdout.write(JSON.stringify({ event: 'listening', url: agent.url, port: agent.port, bootId: agent.bootId }) + '\n');

  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      log.log('warn', 'second signal while closing; exiting now', { signal });
      process.exit(1);
    }
    stopping = true;
    log.log('info', 'closing', { signal });
    agent.close().then(
      // Exit explicitly: pooled keep-alive connections to the blob store would otherwise hold the process for seconds.
      () => process.exit(0),
      (err: unknown) => {
        log.log('error', 'close failed', { error: String(err) });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`ferry-agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
