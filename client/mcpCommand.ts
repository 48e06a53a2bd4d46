/**
 * `ferry mcp` on the command line. The server (and the MCP SDK) load only
 * when the command runs, so other commands do not pay for them.
 */
import { readFileSync } from 'node:fs';
import { type Command, InvalidArgumentError, Option } from 'commander';

function portArgument(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`${JSON.stringify(value)} is not a port number`);
  return port;
}

function tokenFromFile(file: string): string {
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new InvalidArgumentError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (token.length < 16) throw new InvalidArgumentError(`${file} must hold a bearer token of at least 16 characters`);
  return token;
}

/** Adds `mcp` to the CLI. */
export function registerMcpCommand(program: Command): void {
  program
    .command('mcp')
    .description('serve pipeline sessions as MCP tools for agents (start_session, execute_code, list_files, read_file, finish_stage, session_status, explain): on stdio, or Streamable HTTP on 127.0.0.1 with --http')
    .addOption(new Option('--http <port>', 'serve Streamable HTTP on 127.0.0.1:<port>/mcp instead of stdio (0: a free port, printed)').argParser(portArgument))
    .addOption(new Option('--token-file <file>', 'with --http: the bearer token clients must send (default: a random one, printed on stderr)').argParser(tokenFromFile))
    .action(async (options: { http?: number; tokenFile?: string }) => {
      const { serveMcp } = await import('./mcpServer');
      await serveMcp({ httpPort: options.http, token: options.tokenFile, report: (line) => process.stderr.write(`${line}\n`) });
    });
}
