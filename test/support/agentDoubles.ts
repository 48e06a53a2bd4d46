/**
 * Test doubles of the runtime agent protocol, for the seed's failure modes:
 * a target that answers errors (then recovers), one that answers success
 * after writing nothing, one that answers success after writing short
 * files, and one that accepts connections and never answers.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import path from 'node:path';
import { AGENT_API_VERSION, type LandRequest } from '../../core/agentProtocol';

export interface AgentDouble {
  server: Server;
  url: string;
  /** Land requests received so far. */
  readonly landRequests: number;
  /** Process starts received so far: code the double ran or would have run. */
  readonly execRequests: number;
  /** Remove requests received so far (a released session's folder). */
  readonly removeRequests: number;
  close(): Promise<void>;
}

interface DoubleState {
  landRequests: number;
  execRequests: number;
  removeRequests: number;
}

async function listen(server: Server, state: DoubleState): Promise<AgentDouble> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    get landRequests() {
      return state.landRequests;
    },
    get execRequests() {
      return state.execRequests;
    },
    get removeRequests() {
      return state.removeRequests;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * A double on a free loopback port: counts land and exec requests, buffers
 * each request's body and hands it to `answer` (the counts already include
 * the request being answered).
 */
function startDouble(answer: (request: IncomingMessage, body: Buffer, response: ServerResponse, state: DoubleState) => void): Promise<AgentDouble> {
  const state: DoubleState = { landRequests: 0, execRequests: 0, removeRequests: 0 };
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      if (request.url === '/v1/land') state.landRequests++;
      if (request.url === '/v1/processes' && request.method === 'POST') state.execRequests++;
      if (request.url === '/v1/remove') state.removeRequests++;
      answer(request, Buffer.concat(chunks), response, state);
    });
  });
  return listen(server, state);
}

/** The land result line a real agent sends when every file was fetched. */
function allLandedLine(bootId: string, files: { size: number }[]): string {
  const bytes = files.reduce((sum, f) => sum + f.size, 0);
  return `${JSON.stringify({ type: 'result', bootId, filesLanded: files.length, bytesLanded: bytes, filesAlreadyPresent: 0, bytesAlreadyPresent: 0, bytesDownloaded: bytes, bytesReused: 0 })}\n`;
}

/** Sends the request on to the real agent at `realUrl` and its answer back (buffered: the doubles' traffic is small). */
function forward(realUrl: string, request: IncomingMessage, body: Buffer, response: ServerResponse): void {
  const headers: Record<string, string> = {};
  for (const name of ['authorization', 'content-type']) if (typeof request.headers[name] === 'string') headers[name] = request.headers[name] as string;
  fetch(`${realUrl}${request.url}`, { method: request.method, headers, body: body.length ? body : undefined })
    .then(async (real) => {
      response.statusCode = real.status;
      response.setHeader('content-type', real.headers.get('content-type') ?? 'application/octet-stream');
      response.end(Buffer.from(await real.arrayBuffer()));
    })
    .catch((err: Error) => {
      response.statusCode = 500;
      response.end(err.message);
    });
}

/** Claims every landing succeeded and stores nothing; lists no files; creates and removes folders it never had. */
export async function startLyingAgent(bootId: string): Promise<AgentDouble> {
  return startDouble((request, body, response) => {
    const json = (answer: unknown) => {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify(answer));
    };
    if (request.url === '/v1/health') return json({ ok: true, bootId, startedAt: new Date().toISOString(), apiVersion: AGENT_API_VERSION, root: '/nowhere' });
    if (request.url === '/v1/dirs') return json({ bootId });
    if (request.url === '/v1/remove') return json({ bootId, removed: 0, processesStopped: 0 });
    response.setHeader('content-type', 'application/x-ndjson');
    if (request.url === '/v1/land') {
      const { files } = JSON.parse(body.toString('utf8')) as { files: { size: number }[] };
      response.end(allLandedLine(bootId, files));
      return;
    }
    response.end(`${JSON.stringify({ type: 'result', bootId, filesListed: 0, bytesListed: 0 })}\n`);
  });
}

/**
 * Answers the first `failures` land requests with HTTP 502 and a typed
 * agent error (`BlobDownloadFailed` naming `failingPath`), then forwards
 * everything to the real agent at `realUrl`, as a target with a flaky
 * download would.
 */
export async function startFlakyAgent(realUrl: string, failures: number, failingPath: string): Promise<AgentDouble> {
  return startDouble((request, body, response, state) => {
    if (request.url === '/v1/land' && state.landRequests <= failures) {
      response.statusCode = 502;
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ type: 'error', error: { type: 'BlobDownloadFailed', message: `download of ${failingPath} failed: S3 answered 503 SlowDown`, path: failingPath } }));
      return;
    }
    forward(realUrl, request, body, response);
  });
}

/**
 * Forwards everything to the real agent at `realUrl` except landing: for
 * each file it writes only the first half of the blob's bytes straight to
 * its final path under `root`, then answers that every file landed, with the
 * real agent's boot id. Listing and hashing stay the real agent's, so the
 * short files are what verification sees. `beforeRemove` runs before a
 * remove request (a session's release) is passed on.
 */
export async function startTruncatingAgent(realUrl: string, root: string, beforeRemove: () => Promise<void> = async () => undefined): Promise<AgentDouble> {
  const landShort = async (request: IncomingMessage, body: Buffer): Promise<string> => {
    const { dir, files, packs } = JSON.parse(body.toString('utf8')) as LandRequest;
    for (const file of files) {
      // A body stored alone by its URL, or in a pack by its place (a byte range of the pack's URL).
      const source = file.url ?? packs![file.pack!];
      const range = file.url === undefined ? { range: `bytes=${file.offset}-${file.offset! + file.size - 1}` } : undefined;
      const blob = Buffer.from(await (await fetch(source, { headers: range })).arrayBuffer());
      const finalPath = path.join(root, dir, file.path);
      await mkdir(path.dirname(finalPath), { recursive: true });
      await writeFile(finalPath, blob.subarray(0, Math.floor(blob.length / 2)));
      await chmod(finalPath, file.mode);
    }
    const health = await fetch(`${realUrl}/v1/health`, { headers: { authorization: request.headers.authorization ?? '' } });
    const { bootId } = (await health.json()) as { bootId: string };
    return allLandedLine(bootId, files);
  };
  return startDouble((request, body, response) => {
    if (request.url === '/v1/remove') {
      void beforeRemove().finally(() => forward(realUrl, request, body, response));
      return;
    }
    if (request.url !== '/v1/land') {
      forward(realUrl, request, body, response);
      return;
    }
    landShort(request, body)
      .then((line) => {
        response.setHeader('content-type', 'application/x-ndjson');
        response.end(line);
      })
      .catch((err: Error) => {
        response.statusCode = 500;
        response.end(err.message);
      });
  });
}

export interface HangingAgentDouble {
  url: string;
  /** Connections accepted and never answered so far. */
  readonly connectionsHung: number;
  /** Connections passed through to the real agent so far. */
  readonly connectionsForwarded: number;
  close(): Promise<void>;
}

/**
 * Accepts the first `hangs` TCP connections and never sends a byte on them
 * (a wedged agent whose socket still accepts), then pipes every later
 * connection to the real agent at `realUrl`.
 */
export async function startHangingAgent(realUrl: string, hangs: number): Promise<HangingAgentDouble> {
  const real = new URL(realUrl);
  const open = new Set<Socket>();
  let connectionsHung = 0;
  let connectionsForwarded = 0;
  const server = createTcpServer((socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => socket.destroy());
    if (connectionsHung < hangs) {
      connectionsHung++;
      // Read and drop what the client sends, so only the answer is missing.
      socket.resume();
      return;
    }
    connectionsForwarded++;
    const upstream = connect(Number(real.port), real.hostname);
    open.add(upstream);
    upstream.on('close', () => open.delete(upstream));
    upstream.on('error', () => socket.destroy());
    socket.on('close', () => upstream.destroy());
    upstream.on('close', () => socket.destroy());
    socket.pipe(upstream).pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get connectionsHung() {
      return connectionsHung;
    },
    get connectionsForwarded() {
      return connectionsForwarded;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
