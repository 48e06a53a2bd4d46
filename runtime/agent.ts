/**
 * The runtime agent: a small HTTP server inside a compute session (or a
 * local process) that files land on. It speaks core/agentProtocol; every
 * path it touches is confined to `root`, and it only fetches from the URL
 * prefixes it was started with.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, realpath, rm, type FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isAbsolute, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { AGENT_API_VERSION, CONTENT_ROUTE_PREFIX, type AgentHealth } from '../core/agentProtocol';
import { FailureType } from '../core/errors';
import { joinRelative, unsafePathReason } from '../core/paths';
import { ConfinedDirectories, parentOf } from './confine';
import { ExecRunner, isExecutionId, openExecLog, validateExecRequest } from './exec';
import { AgentFailure, toAgentFailure } from './failure';
import { FileHasher, openRegularFile } from './fileHash';
import { BearerToken, NdjsonStream, readJsonBody, sendFailure, sendJson } from './http';
import { checkLandDirectories, isLandTempName, landFiles, validateLandRequest } from './land';
import { listFiles, validateListFilesRequest } from './listFiles';
import { createJsonLogger, type AgentLogger } from './log';
import { UrlAllowlist } from './urlAllowlist';

export const MIN_TOKEN_LENGTH = 16;

export interface AgentOptions {
  /** Absolute; created if missing. */
  root: string;
  token: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** URL prefixes blobs may be fetched from, e.g. `http://127.0.0.1:8333/ferry/`. */
  allowedUrlPrefixes: string[];
  /** Default: JSON lines on stderr. */
  log?: AgentLogger;
}

export interface RunningAgent {
  url: string;
  port: number;
  bootId: string;
  /** Stops accepting requests, cancels landings and listings, kills running commands, and waits for open requests to answer. */
  close(): Promise<void>;
}

interface AgentState {
  root: string;
  bootId: string;
  health: AgentHealth;
  token: BearerToken;
  allowlist: UrlAllowlist;
  exec: ExecRunner;
  /** Remembers hashes under stat signatures for this boot: re-checks of unchanged files cost a stat. */
  hasher: FileHasher;
  shutdown: AbortSignal;
  log: AgentLogger;
}

export async function startAgent(options: AgentOptions): Promise<RunningAgent> {
  if (!isAbsolute(options.root)) throw new Error(`agent root must be an absolute path, got ${JSON.stringify(options.root)}`);
  if (options.token.length < MIN_TOKEN_LENGTH) throw new Error(`agent token must be at least ${MIN_TOKEN_LENGTH} characters`);
  const allowlist = new UrlAllowlist(options.allowedUrlPrefixes);
  await mkdir(options.root, { recursive: true });
  // The real path, so the root itself may be a symlink (e.g. /tmp on macOS) while nothing under it may.
  const root = await realpath(options.root);
  const log = options.log ?? createJsonLogger();
  const bootId = randomUUID();
  // Before listening, so no landing of this boot can be among them.
  const abandoned = await removeAbandonedLandings(root);
  if (abandoned.removed || abandoned.failed) log.log('info', 'removed temp files of landings an earlier agent did not finish', { bootId, ...abandoned });
  const shutdown = new AbortController();
  const state: AgentState = {
    root,
    bootId,
    health: { ok: true, bootId, startedAt: new Date().toISOString(), apiVersion: AGENT_API_VERSION, root },
    token: new BearerToken(options.token),
    allowlist,
    exec: new ExecRunner(root, bootId, log),
    hasher: new FileHasher(),
    shutdown: shutdown.signal,
    log,
  };

  const openRequests = new Set<Promise<void>>();
  const server = createServer((req, res) => {
    const handling = handleRequest(req, res, state).finally(() => openRequests.delete(handling));
    openRequests.add(handling);
  });
  await listen(server, options.host ?? '127.0.0.1', options.port ?? 0);
  const { address, port } = server.address() as AddressInfo;
  const url = `http://${urlHost(address)}:${port}`;
  log.log('info', 'agent listening', { url, bootId, root, allowedUrlPrefixes: options.allowedUrlPrefixes });

  let closing: Promise<void> | undefined;
  const close = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    shutdown.abort();
    state.exec.killAll();
    await Promise.allSettled(openRequests);
    server.closeAllConnections();
    await closed;
    log.log('info', 'agent closed', { bootId });
  };
  return { url, port, bootId, close: () => (closing ??= close()) };
}

/**
 * Deletes the temp files of landings cut off by the end of an earlier agent
 * process on this root (SIGKILL, a crashed container): listings ignore
 * them, so without this each crash would leak a partial blob's bytes for
 * good. One agent serves a root, so at start every temp file is abandoned.
 * Paths no manifest can name (too deep, too long) are not walked.
 */
export async function removeAbandonedLandings(root: string): Promise<{ removed: number; failed: number }> {
  const counts = { removed: 0, failed: 0 };
  const pending = [''];
  for (let dir = pending.pop(); dir !== undefined; dir = pending.pop()) {
    const entries = await readdir(join(root, dir), { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const relative = joinRelative(dir, entry.name);
      if (unsafePathReason(relative) !== undefined) continue;
      if (entry.isDirectory()) pending.push(relative);
      else if (entry.isFile() && isLandTempName(entry.name)) {
        await rm(join(root, relative)).then(
          () => counts.removed++,
          () => counts.failed++,
        );
      }
    }
  }
  return counts;
}

/** A host clients on this machine can dial: a wildcard bind (0.0.0.0, ::) is reached via loopback. */
function urlHost(address: string): string {
  if (address === '0.0.0.0') return '127.0.0.1';
  if (address === '::') return '[::1]';
  return address.includes(':') ? `[${address}]` : address;
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Answers one request; never rejects. */
async function handleRequest(req: IncomingMessage, res: ServerResponse, state: AgentState): Promise<void> {
  const started = Date.now();
  const route = (req.url ?? '/').split('?')[0];
  try {
    state.token.authorize(req);
    if (state.shutdown.aborted) throw new AgentFailure(FailureType.TargetUnavailable, 'the agent is shutting down', { status: 503 });
    await dispatch(req, res, route, state);
  } catch (err) {
    const failure = toAgentFailure(err);
    if (failure.status >= 500) state.log.log('error', 'request failed', { method: req.method, route, errorType: failure.type, error: failure.message });
    if (!res.headersSent) sendFailure(res, failure);
    // Headers already went out, so no status can tell the client; cutting the response off does.
    else res.destroy();
  } finally {
    state.log.log('info', 'request', { method: req.method, route, status: res.statusCode, ms: Date.now() - started });
  }
}

function requireMethod(req: IncomingMessage, res: ServerResponse, method: 'GET' | 'POST'): void {
  if (req.method === method) return;
  res.setHeader('allow', method);
  throw new AgentFailure(FailureType.InvalidInput, `${req.method} is not allowed here; use ${method}`, { status: 405 });
}

/** Aborted when the agent shuts down or the client goes away before the answer is complete. */
function requestSignal(res: ServerResponse, shutdown: AbortSignal): AbortSignal {
  const clientGone = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) clientGone.abort();
  });
  return AbortSignal.any([shutdown, clientGone.signal]);
}

const LOGS_ROUTE_PREFIX = '/v1/logs/';

async function dispatch(req: IncomingMessage, res: ServerResponse, route: string, state: AgentState): Promise<void> {
  switch (route) {
    case '/v1/health':
      requireMethod(req, res, 'GET');
      return sendJson(res, 200, state.health);
    case '/v1/land':
      requireMethod(req, res, 'POST');
      return handleLand(req, res, state);
    case '/v1/files':
      requireMethod(req, res, 'POST');
      return handleListFiles(req, res, state);
    case '/v1/exec':
      requireMethod(req, res, 'POST');
      return sendJson(res, 200, await state.exec.run(validateExecRequest(await readJsonBody(req))));
  }
  if (route.startsWith(LOGS_ROUTE_PREFIX)) {
    requireMethod(req, res, 'GET');
    return handleLogs(route.slice(LOGS_ROUTE_PREFIX.length), res, state);
  }
  if (route.startsWith(CONTENT_ROUTE_PREFIX)) {
    requireMethod(req, res, 'GET');
    return handleContent(route.slice(CONTENT_ROUTE_PREFIX.length), res, state);
  }
  throw new AgentFailure(FailureType.InvalidInput, `no such route: ${route}`, { status: 404 });
}

async function handleLand(req: IncomingMessage, res: ServerResponse, state: AgentState): Promise<void> {
  const request = validateLandRequest(await readJsonBody(req), state.allowlist);
  const directories = new ConfinedDirectories(state.root);
  await checkLandDirectories(request, directories);
  const signal = requestSignal(res, state.shutdown);
  const stream = new NdjsonStream(res);
  await landFiles(request, { bootId: state.bootId, directories, hasher: state.hasher, log: state.log }, stream, signal);
  stream.end();
}

async function handleListFiles(req: IncomingMessage, res: ServerResponse, state: AgentState): Promise<void> {
  const request = validateListFilesRequest(await readJsonBody(req));
  const directories = new ConfinedDirectories(state.root);
  await directories.inspect(request.dir);
  const signal = requestSignal(res, state.shutdown);
  const stream = new NdjsonStream(res);
  await listFiles(request, { bootId: state.bootId, directories, hasher: state.hasher, log: state.log }, stream, signal);
  stream.end();
}

async function handleContent(encodedPath: string, res: ServerResponse, state: AgentState): Promise<void> {
  let path: string;
  try {
    path = encodedPath.split('/').map(decodeURIComponent).join('/');
  } catch {
    throw new AgentFailure(FailureType.InvalidInput, `path ${JSON.stringify(encodedPath)} is not URI-encoded`);
  }
  const reason = unsafePathReason(path);
  if (reason !== undefined) throw new AgentFailure(FailureType.UnsafePath, `path ${JSON.stringify(path)}: ${reason}`, { path });
  const directories = new ConfinedDirectories(state.root);
  // The parent must be a real folder inside the root (no symlinked folder on the way); the file itself is opened without following links.
  const handle = (await directories.inspect(parentOf(path))) === 'directory' ? await openRegularFile(directories.absolute(path)) : undefined;
  if (!handle) throw new AgentFailure(FailureType.InvalidInput, `no regular file at ${JSON.stringify(path)}`, { status: 404, path });
  await sendOpenFile(handle, res, 'application/octet-stream');
}

/** Sends exactly the bytes the file holds now (a writer may still be appending), matching the content-length. */
async function sendOpenFile(handle: FileHandle, res: ServerResponse, contentType: string): Promise<void> {
  let size: number;
  try {
    size = (await handle.stat()).size;
  } catch (err) {
    await handle.close();
    throw err;
  }
  res.writeHead(200, { 'content-type': contentType, 'content-length': size, 'cache-control': 'no-store' });
  if (size === 0) {
    await handle.close();
    res.end();
    return;
  }
  // The read stream owns the handle from here and closes it, also when the client goes away.
  await pipeline(handle.createReadStream({ start: 0, end: size - 1 }), res);
}

async function handleLogs(rest: string, res: ServerResponse, state: AgentState): Promise<void> {
  const [executionId, stream, ...extra] = rest.split('/');
  if (!isExecutionId(executionId)) throw new AgentFailure(FailureType.InvalidInput, `${JSON.stringify(executionId)} is not an executionId`);
  if ((stream !== 'stdout' && stream !== 'stderr') || extra.length > 0) {
    throw new AgentFailure(FailureType.InvalidInput, `no such log: ${JSON.stringify(rest)}; use <executionId>/stdout or <executionId>/stderr`, { status: 404 });
  }
  const handle = await openExecLog(state.root, executionId, stream);
  if (!handle) throw new AgentFailure(FailureType.InvalidInput, `no ${stream} log for execution ${executionId}`, { status: 404 });
  await sendOpenFile(handle, res, 'text/plain; charset=utf-8');
}
