/**
 * The runtime agent's HTTP protocol (runtime/ serves it, activities/ speak it).
 *
 * Every request carries `Authorization: Bearer <token>`; without a matching
 * token the agent answers 401. Request and response bodies are JSON, except
 * the streaming endpoints, which answer `application/x-ndjson`: one JSON
 * object per line, progress events first and exactly one final `result` or
 * `error` line last. A stream that ends without a final line was cut off.
 *
 * All paths are relative POSIX paths (core/paths) resolved under the agent's
 * root; the agent refuses any that would escape it.
 */

export const AGENT_API_VERSION = 1;

/** `GET /v1/health` */
export interface AgentHealth {
  ok: true;
  /** Random id chosen at process start: a new value means the target restarted. */
  bootId: string;
  startedAt: string;
  apiVersion: number;
  /** Absolute path of the agent's root on the target, for people reading logs. */
  root: string;
}

/**
 * One file to land: where, what, and short-lived URLs to fetch its body from:
 * `url` for a body stored as one blob, or `chunks` (in order) for a large
 * file stored as content-defined chunks (core/chunking). Chunks the file
 * already at `path` holds are copied from it instead of downloaded.
 */
export type LandFile = LandFileBase & ({ url: string; chunks?: undefined } | { url?: undefined; chunks: LandChunk[] });

interface LandFileBase {
  path: string;
  size: number;
  mode: number;
  sha256: string;
}

export interface LandChunk {
  sha256: string;
  size: number;
  url: string;
}

/**
 * `POST /v1/land` — fetch each file's blob into `<root>/<dir>/<path>`.
 * A file already there with the same size and sha256 is left alone; anything
 * else is downloaded to a temp file in the same directory, its sha256 and
 * size checked while writing, then renamed into place. A final path never
 * holds a partial file.
 */
export interface LandRequest {
  dir: string;
  files: LandFile[];
}

export interface LandProgressEvent {
  type: 'progress';
  filesDone: number;
  filesTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface LandResult {
  type: 'result';
  bootId: string;
  filesLanded: number;
  bytesLanded: number;
  filesAlreadyPresent: number;
  bytesAlreadyPresent: number;
  /** Bytes fetched from the blob store; less than bytesLanded when chunks were copied from files already there. Absent from agents before chunking. */
  bytesDownloaded?: number;
  /** Bytes of chunks copied from the previous version of a file instead of downloaded. Absent from agents before chunking. */
  bytesReused?: number;
}

/** `POST /v1/files` — list (and hash, on the target) files under `<root>/<dir>`. */
export interface ListFilesRequest {
  dir: string;
  /** Only these relative paths (missing ones are simply not listed); all files when absent. */
  paths?: string[];
  /** Default true. False lists sizes and modes only: a cheap presence check, never a verification. */
  hash?: boolean;
}

export interface ListedFileEvent {
  type: 'file';
  path: string;
  size: number;
  mode: number;
  /** Absent when the request asked for `hash: false`. */
  sha256?: string;
}

export interface ListFilesProgressEvent {
  type: 'progress';
  filesDone: number;
  bytesDone: number;
}

export interface ListFilesResult {
  type: 'result';
  bootId: string;
  filesListed: number;
  bytesListed: number;
}

/** `POST /v1/exec` — run a command under `<root>/<cwd>` and wait for it. */
export interface ExecRequest {
  /** Chosen by the caller; a repeated id returns the first run's result instead of running again. */
  executionId: string;
  /** argv; no shell is involved unless argv[0] is one. */
  command: string[];
  cwd?: string;
  env?: Record<string, string>;
  timeoutSeconds: number;
}

export interface ExecResult {
  executionId: string;
  bootId: string;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** Last bytes of each stream (at most {@link EXEC_TAIL_BYTES}). */
  stdoutTail: string;
  stderrTail: string;
  stdoutBytes: number;
  stderrBytes: number;
  /** Relative to the agent root: the full logs, served by `GET /v1/logs/<executionId>/<stream>`. */
  stdoutPath: string;
  stderrPath: string;
  durationMs: number;
}

export const EXEC_TAIL_BYTES = 4096;

/**
 * `GET /v1/content/<path>` — the bytes of one regular file under the root
 * (each path segment URI-encoded). Symlinks, folders and paths outside the
 * root are refused; the caller hashes what it receives.
 */
export const CONTENT_ROUTE_PREFIX = '/v1/content/';

/** Body of every non-2xx response, and of a final `error` line in a stream. */
export interface AgentError {
  type: 'error';
  error: {
    /** A name from core/errors FailureType. */
    type: string;
    message: string;
    path?: string;
    url?: string;
  };
}

export type LandStreamEvent = LandProgressEvent | LandResult | AgentError;
export type ListFilesStreamEvent = ListedFileEvent | ListFilesProgressEvent | ListFilesResult | AgentError;
