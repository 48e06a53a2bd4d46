/**
 * An HTTP proxy on loopback in front of the S3 server, injecting the faults
 * real S3 and real networks produce: 503 SlowDown bursts, connection resets,
 * a response lost after S3 committed the write, one flipped byte, and a
 * request held (a network as slow as a test needs it to be).
 *
 * Requests are forwarded with their Host header unchanged, so SigV4
 * signatures (headers and presigned URLs) stay valid through the proxy.
 * Each test programs faults with `inject` and asserts with `injected` and
 * `requests` that they really fired.
 */
import { randomBytes } from 'node:crypto';
import { Agent, createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type S3Fault = 'slowDown' | 'reset' | 'dropAfterCommit' | 'flipByte' | 'hold';

/** The S3 operations ferry uses, told apart by method, key and query as S3 itself does. */
export type S3Operation =
  | 'PutObject'
  | 'GetObject'
  | 'HeadObject'
  | 'ListObjectsV2'
  | 'CreateMultipartUpload'
  | 'UploadPart'
  | 'CompleteMultipartUpload'
  | 'AbortMultipartUpload'
  | 'ListParts'
  | 'DeleteObjects'
  | 'Other';

export interface S3Request {
  method: string;
  operation: S3Operation;
  bucket: string;
  /** Object key, decoded ('' for bucket-level requests). */
  key: string;
  query: URLSearchParams;
  /** Signed in the URL (a presigned URL, as the runtime agent uses) rather than in headers (the worker's SDK). */
  presigned: boolean;
}

export interface FaultRule {
  match: (request: S3Request) => boolean;
  /**
   * slowDown: answer 503 with S3's SlowDown XML error, S3 never sees the request.
   * reset: reset the client connection (TCP RST); before forwarding, or after
   *   `afterResponseBytes` bytes of S3's response body were passed on.
   * dropAfterCommit: forward, wait for S3's whole response, then close the
   *   client connection without answering (the write happened, the client cannot know).
   * flipByte: flip one byte in the middle of the request body (writes, so S3
   *   sees a body that no longer matches its checksum) or of the response body (reads).
   * hold: forward the request only once `release` is called.
   */
  fault: S3Fault;
  /** How many matching requests get the fault; later ones pass through. */
  times: number;
  /** For `reset`: pass this many response body bytes on first, so the client holds a partial body. */
  afterResponseBytes?: number;
}

export interface SeenRequest extends S3Request {
  fault?: S3Fault;
  /** S3's status code, when the request reached S3 and it answered. */
  status?: number;
}

export interface S3FaultProxy {
  /** Base URL (http://127.0.0.1:port) to use as the S3 endpoint. */
  url: string;
  inject(rule: FaultRule): void;
  /** How many times `fault` (or any fault) was injected since the last `clear`. */
  injected(fault?: S3Fault): number;
  /** Requests seen since the last `clear` that `match` selects (all by default). */
  requests(match?: (request: SeenRequest) => boolean): SeenRequest[];
  /** Lets every held request (and those held from now on) go through to S3. */
  release(): void;
  /** Drops every rule and forgets what was seen, so one test's faults cannot leak into the next. */
  clear(): void;
  close(): Promise<void>;
}

export function classifyS3Request(method: string, url: string): S3Request {
  const parsed = new URL(url, 'http://proxy.invalid');
  const [bucket = '', ...keyParts] = parsed.pathname.slice(1).split('/');
  const key = decodeURIComponent(keyParts.join('/'));
  const query = parsed.searchParams;
  const has = (name: string) => query.has(name);
  const operation = ((): S3Operation => {
    if (!key) {
      if (method === 'GET' && query.get('list-type') === '2') return 'ListObjectsV2';
      if (method === 'POST' && has('delete')) return 'DeleteObjects';
      return 'Other';
    }
    switch (method) {
      case 'GET':
        return has('uploadId') ? 'ListParts' : 'GetObject';
      case 'HEAD':
        return 'HeadObject';
      case 'PUT':
        return has('uploadId') && has('partNumber') ? 'UploadPart' : 'PutObject';
      case 'POST':
        if (has('uploads')) return 'CreateMultipartUpload';
        return has('uploadId') ? 'CompleteMultipartUpload' : 'Other';
      case 'DELETE':
        return has('uploadId') ? 'AbortMultipartUpload' : 'Other';
      default:
        return 'Other';
    }
  })();
  return { method, operation, bucket: decodeURIComponent(bucket), key, query, presigned: has('X-Amz-Signature') };
}

function slowDownBody(request: S3Request): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><Resource>/${request.bucket}/${request.key}</Resource>` +
    `<RequestId>${randomBytes(8).toString('hex').toUpperCase()}</RequestId></Error>`
  );
}

async function readAll(stream: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function flipMiddleByte(body: Buffer): Buffer {
  if (body.length > 0) body[body.length >> 1] ^= 0x01;
  return body;
}

/** Starts the proxy on a free 127.0.0.1 port, forwarding to `target` (the real S3 endpoint). */
export async function startS3FaultProxy(target: string): Promise<S3FaultProxy> {
  const upstream = new URL(target);
  let rules: { rule: FaultRule; left: number }[] = [];
  let seen: SeenRequest[] = [];
  const sockets = new Set<Socket>();
  const upstreamAgent = new Agent({ keepAlive: true });
  let release = () => undefined as void;
  let released = new Promise<void>((resolve) => (release = resolve));

  const takeFault = (request: S3Request): FaultRule | undefined => {
    const active = rules.find((entry) => entry.left > 0 && entry.rule.match(request));
    if (!active) return undefined;
    active.left--;
    return active.rule;
  };

  /** Sends the request to S3 (with `body` instead of the client's stream when given) and resolves with S3's response. */
  const forward = (incoming: IncomingMessage, seenAs: SeenRequest, body?: Buffer): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      const outgoing = httpRequest({
        agent: upstreamAgent,
        host: upstream.hostname,
        port: upstream.port,
        method: incoming.method,
        path: incoming.url,
        headers: incoming.headers,
      });
      outgoing.on('response', (answer) => {
        seenAs.status = answer.statusCode;
        resolve(answer);
      });
      outgoing.on('error', reject);
      if (body) outgoing.end(body);
      else incoming.pipe(outgoing);
    });

  const handle = async (incoming: IncomingMessage, response: ServerResponse) => {
    const request = classifyS3Request(incoming.method ?? 'GET', incoming.url ?? '/');
    const rule = takeFault(request);
    const seenAs: SeenRequest = { ...request, fault: rule?.fault };
    seen.push(seenAs);
    const clientSocket = incoming.socket;
    switch (rule?.fault) {
      case 'slowDown': {
        // Read the body first, as S3 does, so the client is not left writing into a closed stream.
        await readAll(incoming);
        const body = slowDownBody(request);
        response.writeHead(503, { 'content-type': 'application/xml', 'x-amz-request-id': randomBytes(8).toString('hex').toUpperCase(), 'content-length': Buffer.byteLength(body) });
        response.end(request.method === 'HEAD' ? undefined : body);
        return;
      }
      case 'reset': {
        if (rule.afterResponseBytes === undefined) {
          clientSocket.resetAndDestroy();
          return;
        }
        const answer = await forward(incoming, seenAs);
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        let passed = 0;
        for await (const chunk of answer as AsyncIterable<Buffer>) {
          const room = rule.afterResponseBytes - passed;
          if (chunk.length >= room) {
            if (room > 0) response.write(chunk.subarray(0, room));
            answer.destroy();
            // Let the partial body reach the client before the reset cuts the connection.
            setTimeout(() => clientSocket.resetAndDestroy(), 50);
            return;
          }
          response.write(chunk);
          passed += chunk.length;
        }
        response.end();
        return;
      }
      case 'dropAfterCommit': {
        const answer = await forward(incoming, seenAs);
        await readAll(answer);
        clientSocket.destroy();
        return;
      }
      case 'flipByte': {
        const hasRequestBody = request.method === 'PUT' || request.method === 'POST';
        const answer = hasRequestBody ? await forward(incoming, seenAs, flipMiddleByte(await readAll(incoming))) : await forward(incoming, seenAs);
        const body = await readAll(answer);
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        response.end(hasRequestBody ? body : flipMiddleByte(body));
        return;
      }
      case 'hold':
      case undefined: {
        if (rule?.fault === 'hold') await released;
        const answer = await forward(incoming, seenAs);
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.on('error', () => clientSocket.destroy());
        answer.pipe(response);
        return;
      }
    }
  };

  const server = createServer((incoming, response) => {
    handle(incoming, response).catch(() => incoming.socket.destroy());
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    inject(rule) {
      rules.push({ rule, left: rule.times });
    },
    injected(fault) {
      return seen.filter((request) => (fault ? request.fault === fault : request.fault !== undefined)).length;
    },
    requests(match = () => true) {
      return seen.filter(match);
    },
    release() {
      release();
    },
    clear() {
      rules = [];
      seen = [];
      release();
      released = new Promise<void>((resolve) => (release = resolve));
    },
    close() {
      for (const socket of sockets) socket.destroy();
      upstreamAgent.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
