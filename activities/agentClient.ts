/**
 * Client for the runtime agent's HTTP protocol (core/agentProtocol). Every
 * request has a deadline shorter than the calling activity's heartbeat
 * timeout, so a hung agent fails the attempt and Temporal retries it rather
 * than the activity sitting silent until its start-to-close timeout.
 */
import type {
  AgentError,
  AgentHealth,
  LandRequest,
  LandStreamEvent,
  ListFilesRequest,
  ListFilesStreamEvent,
  ProcessLogStream,
  ProcessStatus,
  RemoveResult,
  StartProcessRequest,
  StopProcessResult,
} from '../core/agentProtocol';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { CONTENT_ROUTE_PREFIX, PROCESSES_ROUTE } from '../core/agentProtocol';
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

/**
 * Bytes of paths sent in one `/v1/files` request: a manifest of any size is
 * listed in bodies far below the agent's 64 MiB cap (a bigger body would be
 * refused with a 413 that no retry can fix) and its shared body budget.
 */
const LIST_PATHS_BYTES_PER_REQUEST = 4 << 20;

/** `paths`, unique and in manifest order, cut into runs of at most `maxBytes` of JSON. */
export function pathBatches(paths: string[], maxBytes = LIST_PATHS_BYTES_PER_REQUEST): string[][] {
  const batches: string[][] = [[]];
  let bytes = 0;
  for (const path of [...new Set(paths)].sort()) {
    // Quotes and a comma around each; escapes make it a little more, well within the margin.
    const size = Buffer.byteLength(path) + 3;
    if (bytes + size > maxBytes && batches.at(-1)!.length > 0) {
      batches.push([]);
      bytes = 0;
    }
    batches.at(-1)!.push(path);
    bytes += size;
  }
  return batches;
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

  /** Starts a process once per id (or reports the one an earlier request started); waits up to `waitMs` for its end. */
  startProcess(request: StartProcessRequest): Promise<ProcessStatus> {
    return this.json<ProcessStatus>('POST', PROCESSES_ROUTE, request, (request.waitMs ?? 0) + this.idleTimeoutMs);
  }

  processStatus(processId: string, waitMs = 0): Promise<ProcessStatus> {
    return this.json<ProcessStatus>('GET', `${PROCESSES_ROUTE}/${encodeURIComponent(processId)}?waitMs=${waitMs}`, undefined, waitMs + this.idleTimeoutMs);
  }

  stopProcess(processId: string, graceSeconds: number): Promise<StopProcessResult> {
    return this.json<StopProcessResult>('POST', `${PROCESSES_ROUTE}/${encodeURIComponent(processId)}/stop`, { graceSeconds }, graceSeconds * 1000 + this.idleTimeoutMs);
  }

  /** Bytes of a process's log from `offset`, at most `length`. */
  async processLog(processId: string, stream: ProcessLogStream, offset: number, length: number): Promise<Buffer> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.idleTimeoutMs);
    const route = `${PROCESSES_ROUTE}/${encodeURIComponent(processId)}/${stream}?offset=${offset}&length=${length}`;
    try {
      const response = await this.request('GET', route, undefined, controller);
      return Buffer.from(await response.arrayBuffer());
    } catch (err) {
      if (err instanceof AgentRequestError) throw err;
      throw new AgentRequestError('TargetUnavailable', `read of ${route} from runtime agent at ${this.endpoint.url} broke: ${fetchFailureDetail(err)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  makeDirs(dirs: string[]): Promise<{ bootId: string }> {
    return this.json<{ bootId: string }>('POST', '/v1/dirs', { dirs });
  }

  /** Removes files or folders (stopping processes inside removed folders); a long removal gets a minute. */
  remove(paths: string[]): Promise<RemoveResult> {
    return this.json<RemoveResult>('POST', '/v1/remove', { paths }, Math.max(60_000, this.idleTimeoutMs));
  }

  land(request: LandRequest, onEvent: (event: LandStreamEvent) => void): Promise<Extract<LandStreamEvent, { type: 'result' }>> {
    return this.stream('/v1/land', request, onEvent);
  }

  /**
   * Lists files under `request.dir`. Long `paths` lists go in several
   * requests (in manifest order, so the files still come sorted); progress
   * counts across them, and a boot id that changes between them fails the
   * listing (TargetUnavailable) rather than mixing two boots' files.
   */
  async listFiles(
    request: ListFilesRequest,
    onEvent: (event: ListFilesStreamEvent) => void,
  ): Promise<Extract<ListFilesStreamEvent, { type: 'result' }>> {
    if (request.paths === undefined) return this.stream('/v1/files', request, onEvent);
    const batches = pathBatches(request.paths);
    if (batches.length === 1) return this.stream('/v1/files', { ...request, paths: batches[0] }, onEvent);
    const total = { type: 'result' as const, bootId: '', filesListed: 0, bytesListed: 0 };
    for (const paths of batches) {
      const result = await this.stream<ListFilesStreamEvent>('/v1/files', { ...request, paths }, (event) =>
        onEvent(event.type === 'progress' ? { ...event, filesDone: total.filesListed + event.filesDone, bytesDone: total.bytesListed + event.bytesDone } : event),
      );
      if (total.bootId && result.bootId !== total.bootId) {
        throw new AgentRequestError('TargetUnavailable', `runtime agent at ${this.endpoint.url} restarted while listing ${request.dir} (boot ${total.bootId}, then ${result.bootId})`);
      }
      total.bootId = result.bootId;
      total.filesListed += result.filesListed;
      total.bytesListed += result.bytesListed;
    }
    return total;
  }

  /** Files under `request.dir`, hashed on the target now, with the target's boot id. */
  async hashedFiles(request: Omit<ListFilesRequest, 'hash'>, onProgress: (filesDone: number, bytesDone: number) => void = () => undefined): Promise<{ bootId: string; files: TargetFile[] }> {
    const files: TargetFile[] = [];
    const result = await this.listFiles({ ...request, hash: true }, (event) => {
      if (event.type === 'progress') onProgress(event.filesDone, event.bytesDone);
      if (event.type !== 'file') return;
      if (event.sha256 === undefined) throw new AgentRequestError('TargetUnavailable', `runtime agent at ${this.endpoint.url} listed ${event.path} without the sha256 it was asked for`);
      files.push({ path: event.path, size: event.size, mode: event.mode, sha256: event.sha256, ...(event.link === undefined ? {} : { link: event.link }) });
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

  /** Saves a process's whole stdout or stderr log to `destination`. */
  downloadLog(processId: string, stream: ProcessLogStream, destination: string): Promise<{ size: number; sha256: string }> {
    return this.download(`${PROCESSES_ROUTE}/${encodeURIComponent(processId)}/${stream}`, destination);
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

  /** Sends the request; a 503 with retry-after (the agent is busy) is sent again after the wait it asks, until the caller's deadline aborts. */
  private async request(method: string, route: string, body: unknown, controller: AbortController): Promise<Response> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    try {
      for (;;) {
        const response = await fetch(this.endpoint.url + route, {
          method,
          headers: {
            authorization: `Bearer ${this.endpoint.token}`,
            ...(text === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: text,
          signal: controller.signal,
          redirect: 'error',
        });
        const retryAfter = Number(response.headers.get('retry-after'));
        if (response.status === 503 && retryAfter > 0) {
          await response.body?.cancel();
          await sleep(Math.min(retryAfter, 5) * 1000, undefined, { signal: controller.signal });
          continue;
        }
        if (!response.ok) throw await errorFromResponse(response, route);
        return response;
      }
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
