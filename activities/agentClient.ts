/**
 * Client for the runtime agent's HTTP protocol (core/agentProtocol). Every
 * request has a deadline shorter than the calling activity's heartbeat
 * timeout, so a hung agent fails the attempt and Temporal retries it rather
 * than the activity sitting silent until its start-to-close timeout.
 */
import type {
  AgentError,
  AgentHealth,
  ExecRequest,
  ExecResult,
  LandRequest,
  LandStreamEvent,
  ListFilesRequest,
  ListFilesStreamEvent,
} from '../core/agentProtocol';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CONTENT_ROUTE_PREFIX } from '../core/agentProtocol';
import { fetchFailureDetail } from '../core/errors';
import type { TargetFile } from '../core/verify';

/** Thrown for every failed agent call; `type` is the agent's error type or a transport one. */
export class AgentRequestError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status?: number,
    readonly path?: string,
  ) {
    super(message);
    this.name = 'AgentRequestError';
  }
}

export interface AgentEndpoint {
  url: string;
  token: string;
}

export interface AgentClientOptions {
  /** Longest silence tolerated on a connection (no response headers, or no new stream line). Default 20 s. */
  idleTimeoutMs?: number;
  /**
   * Longest a stream may go without a line that differs from the previous
   * one. The agent sends keepalive lines, so silence alone cannot reveal a
   * landing that is stuck; unchanged progress can. Default 2 min.
   */
  progressTimeoutMs?: number;
}

export class AgentClient {
  private readonly idleTimeoutMs: number;
  private readonly progressTimeoutMs: number;

  constructor(
    readonly endpoint: AgentEndpoint,
    options: AgentClientOptions = {},
  ) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? 20_000;
    this.progressTimeoutMs = options.progressTimeoutMs ?? 120_000;
  }

  health(): Promise<AgentHealth> {
    return this.json<AgentHealth>('GET', '/v1/health');
  }

  exec(request: ExecRequest): Promise<ExecResult> {
    // The command's own timeout bounds the wait; add slack for process start and log flushing.
    return this.json<ExecResult>('POST', '/v1/exec', request, request.timeoutSeconds * 1000 + this.idleTimeoutMs);
  }

  land(request: LandRequest, onEvent: (event: LandStreamEvent) => void): Promise<Extract<LandStreamEvent, { type: 'result' }>> {
    return this.stream('/v1/land', request, onEvent);
  }

  listFiles(
    request: ListFilesRequest,
    onEvent: (event: ListFilesStreamEvent) => void,
  ): Promise<Extract<ListFilesStreamEvent, { type: 'result' }>> {
    return this.stream('/v1/files', request, onEvent);
  }

  /** Files under `request.dir`, hashed on the target now, with the target's boot id. */
  async hashedFiles(request: Omit<ListFilesRequest, 'hash'>, onProgress: (filesDone: number, bytesDone: number) => void = () => undefined): Promise<{ bootId: string; files: TargetFile[] }> {
    const files: TargetFile[] = [];
    const result = await this.listFiles({ ...request, hash: true }, (event) => {
      if (event.type === 'progress') onProgress(event.filesDone, event.bytesDone);
      if (event.type !== 'file') return;
      if (event.sha256 === undefined) throw new AgentRequestError('TargetUnavailable', `runtime agent at ${this.endpoint.url} listed ${event.path} without the sha256 it was asked for`);
      files.push({ path: event.path, size: event.size, mode: event.mode, sha256: event.sha256 });
    });
    return { bootId: result.bootId, files };
  }

  /** Sizes and modes only: a cheap presence check that reads no file. */
  async statFiles(request: Omit<ListFilesRequest, 'hash'>): Promise<{ bootId: string; files: { path: string; size: number; mode: number }[] }> {
    const files: { path: string; size: number; mode: number }[] = [];
    const result = await this.listFiles({ ...request, hash: false }, (event) => {
      if (event.type === 'file') files.push({ path: event.path, size: event.size, mode: event.mode });
    });
    return { bootId: result.bootId, files };
  }

  /** Saves the bytes of the file at `path` (relative to the agent root) to `destination`; returns their size and sha256. */
  downloadFile(path: string, destination: string): Promise<{ size: number; sha256: string }> {
    return this.download(CONTENT_ROUTE_PREFIX + path.split('/').map(encodeURIComponent).join('/'), destination);
  }

  /** Saves an execution's full stdout or stderr log to `destination`. */
  downloadLog(executionId: string, stream: 'stdout' | 'stderr', destination: string): Promise<{ size: number; sha256: string }> {
    return this.download(`/v1/logs/${encodeURIComponent(executionId)}/${stream}`, destination);
  }

  /** GETs `route` into a file, hashing on the way; the idle deadline resets with every chunk. */
  private async download(route: string, destination: string): Promise<{ size: number; sha256: string }> {
    const controller = new AbortController();
    const idle = setTimeout(() => controller.abort(), this.idleTimeoutMs);
    const hash = createHash('sha256');
    let size = 0;
    try {
      const response = await this.request('GET', route, undefined, controller);
      const expected = Number(response.headers.get('content-length'));
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, done) {
          idle.refresh();
          hash.update(chunk);
          size += chunk.length;
          done(null, chunk);
        },
      });
      await pipeline(Readable.fromWeb(response.body as never), counter, createWriteStream(destination));
      if (Number.isFinite(expected) && size !== expected) {
        throw new AgentRequestError('TargetUnavailable', `runtime agent at ${this.endpoint.url} sent ${size} of ${expected} bytes for ${route}`);
      }
      return { size, sha256: hash.digest('hex') };
    } catch (err) {
      if (err instanceof AgentRequestError) throw err;
      throw new AgentRequestError('TargetUnavailable', `download of ${route} from runtime agent at ${this.endpoint.url} broke: ${fetchFailureDetail(err)}`);
    } finally {
      clearTimeout(idle);
    }
  }

  private async request(method: string, route: string, body: unknown, controller: AbortController): Promise<Response> {
    try {
      const response = await fetch(this.endpoint.url + route, {
        method,
        headers: {
          authorization: `Bearer ${this.endpoint.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        redirect: 'error',
      });
      if (!response.ok) throw await errorFromResponse(response, route);
      return response;
    } catch (err) {
      if (err instanceof AgentRequestError) throw err;
      if (controller.signal.aborted) {
        throw new AgentRequestError('TargetUnavailable', `runtime agent at ${this.endpoint.url} did not answer ${route} within ${this.idleTimeoutMs} ms`);
      }
      throw new AgentRequestError('TargetUnavailable', `runtime agent at ${this.endpoint.url} unreachable for ${route}: ${fetchFailureDetail(err)}`);
    }
  }

  private async json<T>(method: string, route: string, body?: unknown, deadlineMs = this.idleTimeoutMs): Promise<T> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), deadlineMs);
    try {
      const response = await this.request(method, route, body, controller);
      return (await response.json()) as T;
    } catch (err) {
      if (err instanceof AgentRequestError) throw err;
      throw new AgentRequestError('TargetUnavailable', `runtime agent at ${this.endpoint.url} sent an unreadable answer to ${route}: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reads an NDJSON stream, resetting the idle deadline on every line, until its final line. */
  private async stream<E extends { type: string }>(route: string, body: unknown, onEvent: (event: E) => void): Promise<Extract<E, { type: 'result' }>> {
    const controller = new AbortController();
    const idle = setTimeout(() => controller.abort('idle'), this.idleTimeoutMs);
    const stalled = setTimeout(() => controller.abort('stalled'), this.progressTimeoutMs);
    let lastLine = '';
    try {
      const response = await this.request('POST', route, body, controller);
      const decoder = new TextDecoder();
      let buffered = '';
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        idle.refresh();
        buffered += decoder.decode(chunk, { stream: true });
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (!line) continue;
          if (line !== lastLine) stalled.refresh();
          lastLine = line;
          const event = JSON.parse(line) as E | AgentError;
          if (event.type === 'error') {
            const { error } = event as AgentError;
            throw new AgentRequestError(error.type, error.message, undefined, error.path);
          }
          onEvent(event as E);
          if (event.type === 'result') return event as Extract<E, { type: 'result' }>;
        }
      }
      throw new AgentRequestError('TargetUnavailable', `runtime agent at ${this.endpoint.url} ended ${route} without a result line`);
    } catch (err) {
      if (err instanceof AgentRequestError) throw err;
      if (controller.signal.reason === 'stalled') {
        throw new AgentRequestError('TargetUnavailable', `runtime agent at ${this.endpoint.url} made no progress for ${this.progressTimeoutMs} ms during ${route}`);
      }
      if (controller.signal.aborted) {
        throw new AgentRequestError('TargetUnavailable', `runtime agent at ${this.endpoint.url} went silent for ${this.idleTimeoutMs} ms during ${route}`);
      }
      throw new AgentRequestError('TargetUnavailable', `runtime agent stream ${route} broke: ${fetchFailureDetail(err)}`);
    } finally {
      clearTimeout(idle);
      clearTimeout(stalled);
    }
  }
}

async function errorFromResponse(response: Response, route: string): Promise<AgentRequestError> {
  const text = await response.text().catch(() => '');
  try {
    const { error } = JSON.parse(text) as AgentError;
    return new AgentRequestError(error.type, error.message, response.status, error.path);
  } catch {
    const type = response.status === 401 ? 'TargetUnauthorized' : 'TargetUnavailable';
    return new AgentRequestError(type, `runtime agent answered ${response.status} to ${route}: ${text.slice(0, 200)}`, response.status);
  }
}
