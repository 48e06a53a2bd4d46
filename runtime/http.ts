/**
 * HTTP plumbing shared by the agent's routes: bearer-token check, bounded
 * JSON bodies, JSON answers and NDJSON streams.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FailureType } from '../core/errors';
import { AgentFailure } from './failure';

const MAX_JSON_BODY_BYTES = 64 * 1024 * 1024;

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** Compares digests rather than the tokens, so neither the length nor the content of the token leaks through timing. */
export class BearerToken {
  private readonly digest: Buffer;

  constructor(token: string) {
    this.digest = sha256(token);
  }

  authorize(req: IncomingMessage): void {
    const match = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '');
    if (!match || !timingSafeEqual(sha256(match[1]), this.digest)) {
      throw new AgentFailure(FailureType.TargetUnauthorized, 'missing or wrong bearer token');
    }
  }
}

function tooLarge(): AgentFailure {
  return new AgentFailure(FailureType.InvalidInput, `request body is larger than ${MAX_JSON_BODY_BYTES} bytes`, { status: 413 });
}

export async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  if (Number(req.headers['content-length']) > MAX_JSON_BODY_BYTES) throw tooLarge();
  const body = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const stop = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received <= MAX_JSON_BODY_BYTES) return void chunks.push(chunk);
      // Pause rather than destroy, so the 413 answer still reaches the client.
      stop();
      req.pause();
      reject(tooLarge());
    };
    const onEnd = () => {
      stop();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      stop();
      reject(err);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new AgentFailure(FailureType.InvalidInput, `request body is not JSON: ${(err as Error).message}`);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

export function sendFailure(res: ServerResponse, failure: AgentFailure): void {
  // A refused body may still be arriving; closing is cheaper than reading it to keep the connection.
  if (failure.status === 413) res.setHeader('connection', 'close');
  sendJson(res, failure.status, failure.toBody());
}

/** Lines are sent together once this many bytes wait, or FLUSH_DELAY_MS after the first: one write per line cost a syscall each. */
const FLUSH_BYTES = 64 << 10;
const FLUSH_DELAY_MS = 10;

/** One JSON object per line. Writes respect backpressure and become no-ops once the client has gone. */
export class NdjsonStream {
  private pending: string[] = [];
  private pendingBytes = 0;
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(private readonly res: ServerResponse) {
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    // Headers now, so the client knows the request was accepted before the first line is ready.
    res.flushHeaders();
  }

  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  /** Queues a line without waiting for the client to drain; for small periodic lines. */
  write(event: unknown): void {
    if (this.closed) return;
    const line = JSON.stringify(event) + '\n';
    this.pending.push(line);
    this.pendingBytes += line.length;
    if (this.pendingBytes >= FLUSH_BYTES) this.flush();
    else this.flushTimer ??= setTimeout(() => this.flush(), FLUSH_DELAY_MS);
  }

  /** Queues a line; waits when the client is slower than the lines come. */
  async send(event: unknown): Promise<void> {
    this.write(event);
    if (this.closed || !this.res.writableNeedDrain) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        this.res.off('drain', done);
        this.res.off('close', done);
        resolve();
      };
      this.res.on('drain', done);
      this.res.on('close', done);
    });
  }

  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.pending.length && !this.closed) this.res.write(this.pending.join(''));
    this.pending = [];
    this.pendingBytes = 0;
  }

  end(): void {
    this.flush();
    if (!this.closed) this.res.end();
  }
}

const PROGRESS_INTERVAL_MS = 200;
/** Well under the client's idle timeout (activities/agentClient), so a slow file does not look like a dead agent. */
const PROGRESS_KEEPALIVE_MS = 5000;

/**
 * Emits `snapshot()` at most every 200 ms when it changed, and every 5 s
 * even when it did not. Call `finish()` for the final progress line.
 */
export class ProgressTicker {
  private lastLine = '';
  private lastSentAt = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly stream: NdjsonStream,
    private readonly snapshot: () => object,
  ) {
    this.timer = setInterval(() => this.tick(), PROGRESS_INTERVAL_MS);
  }

  private tick(): void {
    const event = this.snapshot();
    const line = JSON.stringify(event);
    if (line === this.lastLine && Date.now() - this.lastSentAt < PROGRESS_KEEPALIVE_MS) return;
    this.lastLine = line;
    this.lastSentAt = Date.now();
    this.stream.write(event);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  finish(): void {
    this.stop();
    this.stream.write(this.snapshot());
  }
}
