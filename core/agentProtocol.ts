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

export const AGENT_API_VERSION = 2;
/** The first API version whose land requests may read blobs out of pack objects ({@link LandRequest} `packs`). */
export const PACKS_API_VERSION = 2;

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
 * One file to land: where, what, and where to fetch its body from: `url`
 * for a body stored as one blob, `pack` and `offset` for a body stored in a
 * pack object (core/packs), or `chunks` (in order) for a large file stored
 * as content-defined chunks (core/chunking), each with its own `url` or
 * place in a pack. Chunks the file already at `path` holds are copied from
 * it instead of downloaded. A link entry (core/manifest `link`) has none of
 * these: the agent creates a symlink with that text, `size` and `sha256`
 * being the text's, and never follows it.
 */
export type LandFile = LandFileBase &
  (
    | { url: string; chunks?: undefined; link?: undefined; pack?: undefined; offset?: undefined }
    | ({ url?: undefined; chunks?: undefined; link?: undefined } & PackedAt)
    | { url?: undefined; chunks: LandChunk[]; link?: undefined; pack?: undefined; offset?: undefined }
    | { url?: undefined; chunks?: undefined; link: string; pack?: undefined; offset?: undefined }
  );

interface LandFileBase {
  path: string;
  size: number;
  mode: number;
  sha256: string;
}

/**
 * Where a blob sits in a pack object: the `pack`-th URL of the request's
 * `packs`, from byte `offset`, as many bytes as the blob's size. The agent
 * reads such blobs with HTTP range requests, one for many neighbouring
 * blobs, and checks each blob's sha256 as it does a whole object's.
 */
export interface PackedAt {
  pack: number;
  offset: number;
}

export type LandChunk = { sha256: string; size: number } & ({ url: string; pack?: undefined; offset?: undefined } | ({ url?: undefined } & PackedAt));

/**
 * `POST /v1/land` — fetch each file's blob (or its bytes in a pack) into `<root>/<dir>/<path>`.
 * A file already there with the same size and sha256 is left alone; anything
 * else is downloaded to a temp file in the same directory, its sha256 and
 * size checked while writing, then renamed into place. A final path never
 * holds a partial file.
 */
export interface LandRequest {
  dir: string;
  files: LandFile[];
  /** Short-lived GET URLs of the pack objects the files' `pack` numbers name (API version {@link PACKS_API_VERSION} on). */
  packs?: string[];
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
  /** Set for a symlink, which is listed as a link entry is written (core/manifest `link`): its text; size, mode and sha256 are the text's. */
  link?: string;
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

/**
 * `POST /v1/processes` — start a command under `<root>/<cwd>`, at most once
 * per `processId`: a repeated request reports the process (or the record of
 * it) the first one started, even after the agent restarted. Output goes to
 * log files the agent keeps, readable by byte range while it runs.
 */
export interface StartProcessRequest {
  /** Chosen by the caller; names the process for every later request. */
  processId: string;
  /** argv; no shell is involved unless argv[0] is one. */
  command: string[];
  cwd?: string;
  env?: Record<string, string>;
  /** The process group is killed after this long. Absent: no limit (a training run). */
  timeoutSeconds?: number;
  /** `separate` (default): stdout and stderr in their own logs; `combined`: both in the stdout log, in the order written. */
  output?: 'separate' | 'combined';
  /** Answer when the process ends or after this many milliseconds, whichever comes first. Default 0: at once. */
  waitMs?: number;
}

/**
 * `running`; `exited` (exit code or signal known); `lost`: started on an
 * earlier boot of the agent that ended before the process did, so its end
 * is unknown. A lost process is never started again.
 */
export type ProcessState = 'running' | 'exited' | 'lost';

/** What `POST /v1/processes` and `GET /v1/processes/<id>[?waitMs=N]` answer. */
export interface ProcessStatus {
  processId: string;
  bootId: string;
  /** True only on the request that started the process. */
  started: boolean;
  state: ProcessState;
  pid: number | null;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** Since start: so far while running, in all once exited. */
  durationMs: number;
  stdoutBytes: number;
  stderrBytes: number;
  /** Last bytes of each log (at most {@link EXEC_TAIL_BYTES}). */
  stdoutTail: string;
  stderrTail: string;
}

/** `POST /v1/processes/<id>/stop` — SIGTERM to the process group, SIGKILL after the grace period. */
export interface StopProcessRequest {
  graceSeconds: number;
}

export interface StopProcessResult {
  /** What it took: nothing (it had ended), SIGTERM, or SIGKILL after the grace. */
  signal: 'none' | 'TERM' | 'KILL';
  status: ProcessStatus;
}

export const EXEC_TAIL_BYTES = 4096;

export const PROCESSES_ROUTE = '/v1/processes';

/** `GET /v1/processes/<id>/<stream>?offset=N&length=M` — bytes of a process's log from `offset`, at most `length`. */
export type ProcessLogStream = 'stdout' | 'stderr';

/** `POST /v1/dirs` — create folders (and their parents) under the root. */
export interface MakeDirsRequest {
  dirs: string[];
}

/**
 * `POST /v1/remove` — remove files or folders under the root, never
 * following a link; processes whose working folder lies inside a removed
 * folder are stopped first (SIGKILL to their groups).
 */
export interface RemoveRequest {
  paths: string[];
}

export interface RemoveResult {
  bootId: string;
  removed: number;
  processesStopped: number;
}

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
