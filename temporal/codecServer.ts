/**
 * A Temporal codec server (the protocol the Web UI and `temporal` CLI speak:
 * POST /encode and POST /decode with `{"payloads":[{metadata, data}]}` in
 * proto3 JSON, base64 bytes). It decrypts history for whoever can reach it,
 * so it binds to loopback by default and answers CORS only for the
 * configured Web UI origin.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Payload, PayloadCodec } from '@temporalio/common';

/** A payload in proto3 JSON form: bytes as base64. */
export interface JsonPayload {
  metadata?: Record<string, string> | null;
  data?: string | null;
}

export function payloadFromJson(json: JsonPayload): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(json.metadata ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64')])),
    data: Buffer.from(json.data ?? '', 'base64'),
  };
}

export function payloadToJson(payload: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([key, value]) => [key, Buffer.from(value).toString('base64')])),
    data: Buffer.from(payload.data ?? new Uint8Array()).toString('base64'),
  };
}

export interface CodecServerOptions {
  codec: PayloadCodec;
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 picks a free port. */
  port: number;
  /** Origins allowed to call from a browser (the Web UI's), e.g. http://127.0.0.1:8233. */
  allowedOrigins: string[];
  /** Largest request body accepted. Default 16 MiB (history pages hold many payloads). */
  maxBodyBytes?: number;
}

export interface RunningCodecServer {
  url: string;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(413, `request body larger than ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function parsePayloads(body: Buffer): Payload[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'body is not JSON');
  }
  const payloads = (parsed as { payloads?: unknown }).payloads;
  if (!Array.isArray(payloads)) throw new HttpError(400, 'expected {"payloads": [...]}');
  return payloads.map((p) => payloadFromJson(p as JsonPayload));
}

export async function startCodecServer(options: CodecServerOptions): Promise<RunningCodecServer> {
  const allowed = new Set(options.allowedOrigins.map((origin) => origin.replace(/\/$/, '')));
  const limit = options.maxBodyBytes ?? 16 * 1024 * 1024;

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const origin = req.headers.origin;
    if (origin !== undefined && allowed.has(origin)) {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('access-control-allow-credentials', 'true');
      res.setHeader('vary', 'Origin');
    }
    if (req.method === 'OPTIONS') {
      res.writeHead(origin !== undefined && allowed.has(origin) ? 204 : 403, {
        'access-control-allow-methods': 'POST, OPTIONS',
        'access-control-allow-headers': 'Content-Type, X-Namespace, Authorization',
        'access-control-max-age': '600',
      });
      res.end();
      return;
    }
    const route = new URL(req.url ?? '/', 'http://codec').pathname;
    if (req.method !== 'POST' || (route !== '/encode' && route !== '/decode')) throw new HttpError(404, 'POST /encode or POST /decode');
    // A browser page from another origin must not make the server decrypt for it.
    if (origin !== undefined && !allowed.has(origin)) throw new HttpError(403, `origin ${origin} is not allowed`);
    const payloads = parsePayloads(await readBody(req, limit));
    const result = route === '/encode' ? await options.codec.encode(payloads) : await options.codec.decode(payloads);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ payloads: result.map(payloadToJson) }));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 400;
      if (!res.headersSent) res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: (err as Error).message }));
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
