/**
 * The runtime agent: a small HTTP server inside a compute session (or a
 * local process) that files land on. It speaks core/agentProtocol; every
 * path it touches is confined to `root`, and it only fetches from the URL
 * prefixes it was started with.
 *
 * Started with `runAs`, it runs executed code as that user: code then cannot
 * read or write the agent's state folder, nor read its memory or its
 * /proc/<pid>/environ, and every folder and file the agent makes under its
 * root is that user's, so the code reads and writes its session as before.
 */
import { execFile } from 'node:child_process';
import { createHash, createHmac, randomUUID } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, realpath, rm, type FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { AGENT_API_VERSION, CONTENT_ROUTE_PREFIX, PROCESSES_ROUTE, type AgentHealth, type MakeDirsRequest, type RemoveRequest, type RemoveResult } from '../core/agentProtocol';
import { FailureType } from '../core/errors';
import { joinRelative, quotePath, unsafePathReason } from '../core/paths';
import { ConfinedDirectories, STATE_DIR, lstatOrUndefined, parentOf, requestDirProblem } from './confine';
import { AgentFailure, invalid, toAgentFailure } from './failure';
import { FileHasher, openRegularFile } from './fileHash';
import { HeldFolders, fdFoldersAvailable } from './heldFolders';
import { BearerToken, NdjsonStream, readJsonBody, sendFailure, sendJson } from './http';
import { checkLandDirectories, isLandTempName, landFiles, validateLandRequest } from './land';
import { listFiles, validateListFilesRequest } from './listFiles';
import { createJsonLogger, type AgentLogger } from './log';
import { killScope } from './processTree';
import { ProcessTable, isProcessId, parseWaitMs, validateStartRequest, validateStopRequest, type RunAs } from './processes';
import { UrlAllowlist } from './urlAllowlist';

export const MIN_TOKEN_LENGTH = 16;

const execFileAsync = promisify(execFile);

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
  /**
   * The agent's own folder (process logs and records): absolute, created
   * 0700. Default `<root>/.ferry-agent`, which no request can name. Keep it
   * outside the root where code runs as another user and may own the root.
   */
  stateDir?: string;
  /** The user executed code runs as, when not the agent's own: only an agent running as root can switch (see main.ts). */
  runAs?: RunAs;
  /** Default: JSON lines on stderr. */
  log?: AgentLogger;
}

export interface RunningAgent {
  url: string;
  port: number;
  bootId: string;
  /** Stops accepting requests, cancels landings and listings, kills running processes, and waits for open requests to answer. */
  close(): Promise<void>;
}

interface AgentState {
  root: string;
  runAs?: RunAs;
  bootId: string;
  health: AgentHealth;
  token: BearerToken;
  allowlist: UrlAllowlist;
  processes: ProcessTable;
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
  if (options.runAs && process.getuid?.() !== 0) throw new Error(`only an agent running as root can run code as ${options.runAs.name}`);
  // The default folder is made with the first process, as before; one that matters to another user is made and checked now.
  const stateDir = options.stateDir || options.runAs ? await prepareStateDir(options.stateDir ?? join(root, STATE_DIR), options.runAs) : join(root, STATE_DIR);
  if (options.runAs) await prepareRootForCode(root, options.runAs);
  const processes = new ProcessTable({
    root,
    stateDir,
    bootId,
    agentKey: agentKeyOf(stateDir),
    // Derived from the token, which executed code never sees: records of one boot stay valid for the next.
    recordKey: createHmac('sha256', options.token).update('ferry-agent process records').digest(),
    runAs: options.runAs,
    log,
  });
  // Before listening, so no landing or process of this boot can be among them.
  const abandoned = await removeAbandonedLandings(root);
  if (abandoned.removed || abandoned.failed) log.log('info', 'removed temp files of landings an earlier agent did not finish', { bootId, ...abandoned });
  const leftovers = await processes.killEarlierBoots();
  if (leftovers) log.log('warn', 'killed processes an earlier agent on this state folder started and left running; they read as lost', { bootId, processes: leftovers });
  const shutdown = new AbortController();
  const state: AgentState = {
    root,
    runAs: options.runAs,
    bootId,
    health: { ok: true, bootId, startedAt: new Date().toISOString(), apiVersion: AGENT_API_VERSION, root },
    token: new BearerToken(options.token),
    allowlist,
    processes,
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
  log.log('info', 'agent listening', { url, bootId, root, stateDir, runAs: options.runAs?.name, allowedUrlPrefixes: options.allowedUrlPrefixes });

  let closing: Promise<void> | undefined;
  const close = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    shutdown.abort();
    const killed = await state.processes.killAll().catch((err: unknown) => {
      log.log('error', 'could not kill every process', { error: String(err) });
      return 0;
    });
    if (killed) log.log('info', 'killed the processes still running', { bootId, processes: killed });
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

/** Names this agent's processes on the machine (runtime/processTree): the same for every boot on one state folder. */
function agentKeyOf(stateDir: string): string {
  return createHash('sha256').update(stateDir).digest('hex').slice(0, 16);
}

/** Kills every process an agent with this state folder started (in any boot) that still runs; answers how many. For whoever stops an agent from outside. */
export async function killAgentProcesses(stateDir: string): Promise<number> {
  const canonical = await realpath(stateDir).catch(() => undefined);
  if (canonical === undefined) return 0;
  const prefix = `${agentKeyOf(canonical)}/`;
  return killScope({ leaders: [], marked: (marker) => marker.startsWith(prefix) });
}

/**
 * The state folder, created 0700 and the agent's own. With code run as
 * another user, no folder on its path may be one that user can rename
 * entries in: it could put a folder of its own in the state folder's place.
 */
async function prepareStateDir(requested: string, runAs: RunAs | undefined): Promise<string> {
  if (!isAbsolute(requested)) throw new Error(`agent state folder must be an absolute path, got ${JSON.stringify(requested)}`);
  await mkdir(requested, { recursive: true, mode: 0o700 });
  const stateDir = await realpath(requested);
  const stats = await lstat(stateDir);
  if (stats.uid !== process.getuid?.()) throw new Error(`agent state folder ${stateDir} belongs to uid ${stats.uid}, not to the agent`);
  await chmod(stateDir, 0o700);
  if (runAs) {
    for (let dir = dirname(stateDir); ; dir = dirname(dir)) {
      const folder = await lstat(dir);
      const othersCanRename = (folder.mode & 0o002) !== 0 || ((folder.mode & 0o020) !== 0 && folder.gid === runAs.gid);
      if (folder.uid === runAs.uid || (othersCanRename && (folder.mode & 0o1000) === 0)) {
        throw new Error(`agent state folder ${stateDir} is inside ${dir}, which ${runAs.name} (the user code runs as) can change; set FERRY_AGENT_STATE_DIR elsewhere`);
      }
      if (dir === '/') break;
    }
  }
  return stateDir;
}

/**
 * Code run as another user reaches its session by absolute path too (a
 * training command's FERRY_OUTPUT_DIR): the root gets search permission,
 * never read, and every folder above it must grant search already.
 */
async function prepareRootForCode(root: string, runAs: RunAs): Promise<void> {
  if (!fdFoldersAvailable()) throw new Error('running code as another user needs /proc (Linux): the agent resolves paths through /proc/self/fd');
  const own = await lstat(root);
  if (own.uid === process.getuid?.() && (own.mode & 0o001) === 0) await chmod(root, (own.mode & 0o7777) | 0o001);
  for (let dir = root; dir !== '/'; dir = dirname(dir)) {
    const folder = await lstat(dir);
    const search = folder.uid === runAs.uid ? 0o100 : folder.gid === runAs.gid ? 0o010 : 0o001;
    if ((folder.mode & search) === 0) throw new Error(`${runAs.name} (the user code runs as) cannot reach the agent root ${root}: ${dir} is mode ${(folder.mode & 0o777).toString(8)}; give it search permission (chmod o+x) or move the root`);
  }
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
    case '/v1/dirs':
      requireMethod(req, res, 'POST');
      return handleMakeDirs(req, res, state);
    case '/v1/remove':
      requireMethod(req, res, 'POST');
      return handleRemove(req, res, state);
    case PROCESSES_ROUTE:
      requireMethod(req, res, 'POST');
      return sendJson(res, 200, await state.processes.start(validateStartRequest(await readJsonBody(req, res))));
  }
  if (route.startsWith(`${PROCESSES_ROUTE}/`)) return handleProcess(req, res, route.slice(PROCESSES_ROUTE.length + 1), state);
  if (route.startsWith(CONTENT_ROUTE_PREFIX)) {
    requireMethod(req, res, 'GET');
    return handleContent(route.slice(CONTENT_ROUTE_PREFIX.length), res, state);
  }
  throw new AgentFailure(FailureType.InvalidInput, `no such route: ${route}`, { status: 404 });
}

/** `GET <id>[?waitMs=N]`, `POST <id>/stop`, `GET <id>/<stdout|stderr>?offset=N&length=M`. */
async function handleProcess(req: IncomingMessage, res: ServerResponse, rest: string, state: AgentState): Promise<void> {
  const [processId, action, ...extra] = rest.split('/');
  if (!isProcessId(processId) || extra.length > 0) throw new AgentFailure(FailureType.InvalidInput, `no such process route: ${JSON.stringify(rest)}`, { status: 404 });
  const query = new URL(req.url ?? '/', 'http://agent').searchParams;
  if (action === undefined) {
    requireMethod(req, res, 'GET');
    return sendJson(res, 200, await state.processes.status(processId, parseWaitMs(query.get('waitMs'))));
  }
  if (action === 'stop') {
    requireMethod(req, res, 'POST');
    return sendJson(res, 200, await state.processes.stop(processId, validateStopRequest(await readJsonBody(req, res)).graceSeconds));
  }
  if (action === 'stdout' || action === 'stderr') {
    requireMethod(req, res, 'GET');
    const offset = Number(query.get('offset') ?? '0');
    const length = query.has('length') ? Number(query.get('length')) : Number.MAX_SAFE_INTEGER;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) throw invalid('offset and length must be whole numbers of at least 0');
    return sendOpenFile(await state.processes.openLog(processId, action), res, 'text/plain; charset=utf-8', { offset, length });
  }
  throw new AgentFailure(FailureType.InvalidInput, `no such process route: ${JSON.stringify(rest)}`, { status: 404 });
}

function requestPaths(body: unknown, field: 'dirs' | 'paths'): string[] {
  const list = (body as Partial<MakeDirsRequest & RemoveRequest> | null)?.[field];
  if (!Array.isArray(list) || list.length > 10_000) throw invalid(`${field} must be an array of at most 10,000 paths`);
  for (const path of list) {
    const problem = requestDirProblem(path);
    if (problem !== undefined || path === '') throw new AgentFailure(FailureType.UnsafePath, `${quotePath(path)}: ${problem ?? 'the root itself'}`, { path: String(path) });
  }
  return list as string[];
}

async function handleMakeDirs(req: IncomingMessage, res: ServerResponse, state: AgentState): Promise<void> {
  const dirs = requestPaths(await readJsonBody(req, res), 'dirs');
  const folders = new HeldFolders(state.root, { create: true, owner: state.runAs });
  try {
    for (const dir of dirs) (await folders.hold(dir))?.release();
  } finally {
    await folders.close();
  }
  sendJson(res, 200, { bootId: state.bootId });
}

async function handleRemove(req: IncomingMessage, res: ServerResponse, state: AgentState): Promise<void> {
  const paths = requestPaths(await readJsonBody(req, res), 'paths');
  const folders = new HeldFolders(state.root, { create: false });
  const result: RemoveResult = { bootId: state.bootId, removed: 0, processesStopped: 0 };
  try {
    for (const path of paths) {
      // The parent must be a real folder inside the root; the entry itself is removed without following a link.
      const parent = await folders.hold(parentOf(path));
      if (!parent) continue;
      try {
        const name = path.slice(path.lastIndexOf('/') + 1);
        const stats = await lstatOrUndefined(join(parent.path, name));
        if (!stats) continue;
        if (stats.isDirectory()) result.processesStopped += await state.processes.stopInside(join(state.root, path));
        await removeEntry(parent.path, name, state.runAs);
        result.removed++;
      } finally {
        parent.release();
      }
    }
  } finally {
    await folders.close();
  }
  if (result.removed) state.log.log('info', 'removed', { ...result, paths: paths.length });
  sendJson(res, 200, result);
}

/**
 * Removes `name` in the held folder `folder`. A tree executed code owns is
 * removed as that user: its code may still be swapping folders for links
 * while the removal walks them, and then only what that user may delete
 * can go.
 */
async function removeEntry(folder: string, name: string, runAs: RunAs | undefined): Promise<void> {
  if (!runAs) return rm(join(folder, name), { recursive: true, force: true });
  try {
    // The held folder is the child's working folder (entered before it drops to the user), so the name is resolved there.
    await execFileAsync('rm', ['-rf', '--', name], { cwd: folder, uid: runAs.uid, gid: runAs.gid, env: { PATH: process.env.PATH } });
  } catch (err) {
    const detail = String((err as { stderr?: unknown }).stderr ?? '').trim() || (err as Error).message;
    throw new AgentFailure(FailureType.TargetUnavailable, `could not remove ${JSON.stringify(name)} as ${runAs.name}: ${detail}`);
  }
}

async function handleLand(req: IncomingMessage, res: ServerResponse, state: AgentState): Promise<void> {
  const request = validateLandRequest(await readJsonBody(req, res), state.allowlist);
  await checkLandDirectories(request, new ConfinedDirectories(state.root));
  const signal = requestSignal(res, state.shutdown);
  const stream = new NdjsonStream(res);
  const folders = new HeldFolders(state.root, { create: true, owner: state.runAs });
  try {
    await landFiles(request, { bootId: state.bootId, folders, owner: state.runAs, hasher: state.hasher, log: state.log }, stream, signal);
  } finally {
    await folders.close();
  }
  stream.end();
}

async function handleListFiles(req: IncomingMessage, res: ServerResponse, state: AgentState): Promise<void> {
  const request = validateListFilesRequest(await readJsonBody(req, res));
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
  // The parent is held open from the root without following a link on the way; the file itself is opened without following links.
  const folders = new HeldFolders(state.root, { create: false });
  let handle: FileHandle | undefined;
  try {
    const parent = await folders.hold(parentOf(path));
    handle = parent && (await openRegularFile(join(parent.path, path.slice(path.lastIndexOf('/') + 1))));
  } finally {
    await folders.close();
  }
  if (!handle) throw new AgentFailure(FailureType.InvalidInput, `no regular file at ${JSON.stringify(path)}`, { status: 404, path });
  await sendOpenFile(handle, res, 'application/octet-stream');
}

/**
 * Sends exactly the bytes the file holds now (a writer may still be
 * appending), from `range.offset` and at most `range.length` of them,
 * matching the content-length.
 */
async function sendOpenFile(handle: FileHandle, res: ServerResponse, contentType: string, range = { offset: 0, length: Number.MAX_SAFE_INTEGER }): Promise<void> {
  let size: number;
  try {
    size = Math.max(0, Math.min(range.length, (await handle.stat()).size - range.offset));
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
  await pipeline(handle.createReadStream({ start: range.offset, end: range.offset + size - 1 }), res);
}
