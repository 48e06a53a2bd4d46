/**
 * Test doubles of the runtime agent protocol, for the seed's failure modes:
 * a target that answers errors (then recovers), and one that answers
 * success after writing nothing.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface AgentDouble {
  server: Server;
  url: string;
  /** Land requests received so far. */
  readonly landRequests: number;
  close(): Promise<void>;
}

async function listen(server: Server, state: { landRequests: number }): Promise<AgentDouble> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    get landRequests() {
      return state.landRequests;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Claims every landing succeeded and stores nothing; lists no files. */
export async function startLyingAgent(bootId: string): Promise<AgentDouble> {
  const state = { landRequests: 0 };
  const server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      if (request.url === '/v1/health') {
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify({ ok: true, bootId, startedAt: new Date().toISOString(), apiVersion: 1, root: '/nowhere' }));
        return;
      }
      response.setHeader('content-type', 'application/x-ndjson');
      if (request.url === '/v1/land') {
        state.landRequests++;
        const { files } = JSON.parse(body) as { files: { size: number }[] };
        const bytes = files.reduce((sum, f) => sum + f.size, 0);
        response.end(`${JSON.stringify({ type: 'result', bootId, filesLanded: files.length, bytesLanded: bytes, filesAlreadyPresent: 0, bytesAlreadyPresent: 0 })}\n`);
        return;
      }
      response.end(`${JSON.stringify({ type: 'result', bootId, filesListed: 0, bytesListed: 0 })}\n`);
    });
  });
  return listen(server, state);
}

/**
 * Answers the first `failures` land requests with HTTP 502 and a typed
 * agent error (`BlobDownloadFailed` naming `failingPath`), then forwards
 * everything to the real agent at `realUrl`, as a target with a flaky
 * download would.
 */
export async function startFlakyAgent(realUrl: string, failures: number, failingPath: string): Promise<AgentDouble> {
  const state = { landRequests: 0 };
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      if (request.url === '/v1/land' && ++state.landRequests <= failures) {
        response.statusCode = 502;
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify({ type: 'error', error: { type: 'BlobDownloadFailed', message: `download of ${failingPath} failed: S3 answered 503 SlowDown`, path: failingPath } }));
        return;
      }
      const headers: Record<string, string> = {};
      for (const name of ['authorization', 'content-type']) if (typeof request.headers[name] === 'string') headers[name] = request.headers[name] as string;
      fetch(`${realUrl}${request.url}`, { method: request.method, headers, body: chunks.length ? Buffer.concat(chunks) : undefined })
        .then(async (real) => {
          response.statusCode = real.status;
          response.setHeader('content-type', real.headers.get('content-type') ?? 'application/octet-stream');
          response.end(Buffer.from(await real.arrayBuffer()));
        })
        .catch((err: Error) => {
          response.statusCode = 500;
          response.end(err.message);
        });
    });
  });
  return listen(server, state);
}
