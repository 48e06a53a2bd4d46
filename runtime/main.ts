/**
 * Entry point of the runtime agent process. Settings come from the
 * environment; once listening it prints exactly one JSON line to stdout
 * (`{"event":"listening",...}`), which is how a parent process learns the
 * port. Everything else goes to stderr as JSON log lines.
 */
import { isAbsolute } from 'node:path';
import { MIN_TOKEN_LENGTH, startAgent, type AgentOptions } from './agent';
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

  const root = required('FERRY_AGENT_ROOT');
  if (!isAbsolute(root)) throw new SettingError(`FERRY_AGENT_ROOT must be an absolute path, got ${JSON.stringify(root)}`);

  const token = required('FERRY_AGENT_TOKEN');
  if (token.length < MIN_TOKEN_LENGTH) throw new SettingError(`FERRY_AGENT_TOKEN must be at least ${MIN_TOKEN_LENGTH} characters`);

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

  return { root, token, host, port, allowedUrlPrefixes };
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
  // Commands run through /v1/exec inherit this environment; they must not inherit the agent's credential.
  delete process.env.FERRY_AGENT_TOKEN;

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
