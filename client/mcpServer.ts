/**
 * `ferry mcp`: the pipeline tools (client/mcpTools) served over the Model
 * Context Protocol with the official SDK, on stdio (the default: an MCP
 * client starts `ferry mcp` itself) or on Streamable HTTP bound to
 * 127.0.0.1 behind a bearer token.
 *
 * The server holds no pipeline state: every call asks the workflow, so it
 * can be restarted, run twice, or outlive a worker without losing anything.
 * Temporal is connected on the first call that needs it; when it is not
 * there, that call fails with TemporalUnavailable and the next one tries again.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import type { FerryConfig } from '../core/config';
import { loadConfig } from './config';
import { callTool, toolList, type ToolContext } from './mcpTools';
import { repoRoot } from './tools';
import { connectClient } from './temporal';
import { blobStoreFromConfig } from '../activities/s3BlobStore';

const INSTRUCTIONS = `ferry runs your code in a compute session whose inputs (data/) are verified on the target (sha256) before any code runs.
1. start_session with a session_id and the inputs (it attaches when that session's pipeline already runs).
2. execute_code in the current stage (cwd = session root: data/ holds the inputs, write results to artifacts/). Re-send the same request_id after a timeout: it returns the same execution's result, never a second run.
3. finish_stage to collect artifacts/ and move to the next stage (default coder → validator → reporter).
list_files, read_file, session_status and explain inspect the session and its history. Errors come back as "<FailureType>: <cause>".`;

/** The Temporal connection, made on first use and made again after a failed attempt. */
class TemporalAccess {
  private connecting: Promise<{ client: Client; close: () => Promise<void> }> | undefined;

  constructor(private readonly config: FerryConfig) {}

  client = async (): Promise<Client> => {
    this.connecting ??= connectClient(this.config).catch((err: unknown) => {
      this.connecting = undefined;
      throw err;
    });
    return (await this.connecting).client;
  };

  async close(): Promise<void> {
    const connected = await this.connecting?.catch(() => undefined);
    await connected?.close();
  }
}

function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(repoRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

/** An MCP server offering the tools; one per stdio session, one per HTTP request. */
export function createMcpServer(context: ToolContext): Server {
  const server = new Server({ name: 'ferry', version: packageVersion() }, { capabilities: { tools: {} }, instructions: INSTRUCTIONS });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: toolList() }));
  server.setRequestHandler(CallToolRequestSchema, (request, extra) => {
    const token = request.params._meta?.progressToken;
    return callTool(request.params.name, request.params.arguments, context, {
      signal: extra.signal,
      progress:
        token === undefined
          ? undefined
          : (progress, message) => extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress, message } }),
    });
  });
  return server;
}

export interface McpServeOptions {
  /** Serve Streamable HTTP on this 127.0.0.1 port instead of stdio (0: a free one). */
  httpPort?: number;
  /** The bearer token HTTP clients must send; a random one is made (and printed on stderr) when absent. */
  token?: string;
  /** Lines for people (stderr: stdout is the protocol on stdio). */
  report: (line: string) => void;
}

/** Serves until stdin closes (stdio) or the process is stopped (HTTP). */
export async function serveMcp(options: McpServeOptions): Promise<void> {
  const config = loadConfig();
  const temporal = new TemporalAccess(config);
  const context: ToolContext = { temporal: temporal.client, config, blobs: blobStoreFromConfig(config.s3) };
  if (options.httpPort === undefined) {
    const server = createMcpServer(context);
    const closed = new Promise<void>((resolve) => (server.onclose = resolve));
    // The client closing our stdin (or our stdout) ends the session; the SDK's transport does not watch for either.
    const close = () => void server.close();
    process.stdin.once('end', close);
    process.stdout.once('error', close);
    await server.connect(new StdioServerTransport());
    await closed;
    await temporal.close();
    return;
  }
  await serveHttp(context, options.httpPort, options.token ?? randomBytes(24).toString('hex'), options.token === undefined, options.report);
}

function sameToken(sent: string | undefined, token: string): boolean {
  if (sent === undefined) return false;
  const [a, b] = [Buffer.from(sent), Buffer.from(token)];
  return a.length === b.length && timingSafeEqual(a, b);
}

function refuse(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
}

/**
 * Stateless Streamable HTTP on 127.0.0.1: each POST to /mcp gets its own
 * server and transport (no session to lose), after its bearer token and
 * Host header are checked (a page in a browser cannot reach it by DNS rebinding).
 */
async function serveHttp(context: ToolContext, port: number, token: string, tokenMade: boolean, report: (line: string) => void): Promise<void> {
  let allowedHosts: string[] = [];
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (new URL(req.url ?? '/', 'http://127.0.0.1').pathname !== '/mcp') return refuse(res, 404, 'not found: the MCP endpoint is /mcp');
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!sameToken(bearer, token)) return refuse(res, 401, 'missing or wrong bearer token', { 'www-authenticate': 'Bearer' });
    if (req.method !== 'POST') return refuse(res, 405, 'this server is stateless: POST JSON-RPC messages to /mcp', { allow: 'POST' });
    const server = createMcpServer(context);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableDnsRebindingProtection: true, allowedHosts });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res);
  };
  const http = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      report(`ferry mcp: request failed: ${(err as Error).message}`);
      if (!res.headersSent) refuse(res, 500, 'internal error');
    });
  });
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(port, '127.0.0.1', () => resolve());
  });
  const bound = (http.address() as { port: number }).port;
  allowedHosts = [`127.0.0.1:${bound}`, `localhost:${bound}`];
  report(`ferry mcp: Streamable HTTP on http://127.0.0.1:${bound}/mcp${tokenMade ? `; bearer token ${token}` : ' (bearer token from --token-file)'}`);
  await new Promise<void>((resolve) => http.once('close', () => resolve()));
}
