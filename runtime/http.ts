/**
 * HTTP plumbing shared by the agent's routes: bearer-token check, bounded
 * JSON bodies, JSON answers and NDJSON streams.
 *
 * Bodies are bounded twice: each by MAX_JSON_BODY_BYTES (413, not retried:
 * the caller must send less) and all at once by the process's
 * {@link bodyBudget} (503 with retry-after: the caller retries). A body
 * holds its share of the budget until its request is answered, because the
 * parsed request lives that long; what a request costs in memory is a
 * small multiple of its body (chunks, one copy, the parsed values), so
 * the budget bounds the agent's memory under any number of callers.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FailureType } from '../core/errors';
import { AgentFailure } from './failure';

export const MAX_JSON_BODY_BYTES = 64 * 1024 * 1024;
/** Two bodies of the largest size at once, or any number of small ones. */
export const MAX_BUFFERED_BODY_BYTES = 2 * MAX_JSON_BODY_BYTES;
/** Seconds a refused caller is asked to wait: requests answer in about that time. */
const BUSY_RETRY_AFTER_SECONDS = 1;

/** Bytes of request bodies the process holds, against a fixed total. */
export class ByteBudget {
  private used = 0;

  constructor(readonly total: number) {}

  get inUse(): number {
    return this.used;
  }

  /** Takes `bytes` if they fit; false (taking nothing) if not. */
  tryTake(bytes: number): boolean {
    if (this.used + bytes > this.total) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
  }
}

/** Shared by every request of this process (one agent per process). */
export const bodyBudget = new ByteBudget(MAX_BUFFERED_BODY_BYTES);

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

function busy(budget: ByteBudget): AgentFailure {
  return new AgentFailure(FailureType.TargetUnavailable, `the agent holds ${budget.inUse} of ${budget.total} bytes of request bodies; retry`, {
    status: 503,
    retryAfterSeconds: BUSY_RETRY_AFTER_SECONDS,
  });
}

/**
 * Reads and parses a JSON body, holding its bytes in `budget` until `res`
 * closes. The length a request announces is taken before reading a byte;
 * a body sent without one is counted as it arrives.
 */
export async function readJsonBody(req: IncomingMessage, res: ServerResponse, budget: ByteBudget = bodyBudget): Promise<unknown> {
  const announced = Number(req.headers['content-length']);
  if (announced > MAX_JSON_BODY_BYTES) throw tooLarge();
  let held = 0;
  res.once('close', () => budget.give(held));
  const take = (bytes: number): boolean => {
    if (!budget.tryTake(bytes)) return false;
    held += bytes;
    return true;
  };
  if (Number.isFinite(announced) && !take(announced)) throw busy(budget);
  const body = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const stop = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    const refuse = (failure: AgentFailure) => {
      // Pause rather than destroy, so the answer still reaches the client.
      stop();
      req.pause();
      reject(failure);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > MAX_JSON_BODY_BYTES) return refuse(tooLarge());
      if (received > held && !take(received - held)) return refuse(busy(budget));
      chunks.push(chunk);
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
  if (failure.status === 413 || failure.retryAfterSeconds !== undefined) res.setHeader('connection', 'close');
  // Busy: the same request may succeed shortly (activities/agentClient sends it again).
  if (failure.retryAfterSeconds !== undefined) res.setHeader('retry-after', String(failure.retryAfterSeconds));
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
