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
import { fetchFailureDetail } from '../core/errors';

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
