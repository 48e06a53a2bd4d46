/**
 * The agent's logger: one JSON object per line on stderr, so log shippers in
 * a container and people tailing a local agent read the same thing. stdout
 * is reserved for the single `listening` line other processes parse.
 */

export type LogLevel = 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

export interface AgentLogger {
  log(level: LogLevel, msg: string, fields?: LogFields): void;
}

export function createJsonLogger(stream: NodeJS.WritableStream = process.stderr): AgentLogger {
  return {
    log(level, msg, fields = {}) {
      stream.write(JSON.stringify({ ts: new Date().toISOString(), level, msg, ...fields }) + '\n');
    },
  };
}
