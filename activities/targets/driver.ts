/**
 * The one seam between ferry's session activities and the places sessions
 * live. A driver per target kind (one file each, listed in ./index.ts) owns
 * its options, the settings it reads, provisioning and release, and how a
 * session is reached: through the runtime agent over HTTP (./agentReach) or
 * through generated POSIX scripts over a command channel (./scriptReach).
 * Everything a workflow does in a session — land, verify, run, follow,
 * stop, collect — goes through {@link SessionReach}, which means the same on
 * every kind.
 */
import type { ProcessStatus } from '../../core/agentProtocol';
import type { LogStream } from '../../core/executionLogs';
import type { ManifestEntry } from '../../core/manifest';
import type { SessionHandle, SessionPurpose, TargetRef } from '../../core/target';
import type { TargetFile } from '../../core/verify';
import type { TargetTransfer } from '../blobStore';

/** A FERRY_* variable a driver reads, listed by `ferry targets`. */
export interface TargetSetting {
  name: string;
  description: string;
}

/** Thrown by a driver's option checks and `--target` parsing; the activities turn it into `InvalidInput`. */
export class TargetOptionsError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
    this.name = 'TargetOptionsError';
  }
}

/** Reads one setting: the environment first, then what `ferry up` recorded; undefined when unset or empty. */
export type SettingsReader = (name: string) => string | undefined;

/** What every driver is built from on a worker. */
export interface TargetEnvironment {
  settings: SettingsReader;
  blobs: TargetTransfer;
}

export interface TargetDriver<Options extends TargetRef = TargetRef> {
  readonly kind: string;
  /** One line for `ferry targets`. */
  readonly summary: string;
  /** The `--target` form, e.g. `ssh:[user@]host[:port][/<root>]`. */
  readonly spec: string;
  readonly settings: readonly TargetSetting[];
  /**
   * `persistent`: a session is a folder on a machine that outlives the
   * workflow (a sync into it makes sense). `workflow`: a session is compute
   * started for one workflow and gone when it is released.
   */
  readonly lifetime: 'persistent' | 'workflow';
  /** The text after `kind:` in `--target` (empty for a bare kind) as options; throws TargetOptionsError. */
  parseSpec(text: string, cwd: string): Options;
  /** Checks options from JSON and fills defaults; throws TargetOptionsError naming every problem. */
  normalize(raw: TargetRef): Options;
  /**
   * This driver on a worker, configured from its settings; a string says why
   * it cannot run here (a setting is missing). A setting with a bad value
   * throws ConfigError, so the worker does not start. Called once per worker.
   */
  configure(environment: TargetEnvironment): TargetBackend<Options> | string;
}

/** The calling activity's cancellation and heartbeat, for long waits on a target. */
export interface ReachContext {
  signal: AbortSignal;
  heartbeat: () => void;
}

export interface ProvisionRequest<Options extends TargetRef = TargetRef> {
  sessionId: string;
  target: Options;
  purpose: SessionPurpose;
  /** Called while waiting (a task pending, an agent starting), with details worth showing. */
  heartbeat: (details: Record<string, unknown>) => void;
  signal: AbortSignal;
}

export interface TargetBackend<Options extends TargetRef = TargetRef> {
  /**
   * Starts or finds the session (a retried activity must never start a
   * second one) and resolves once it answers, with its boot id.
   */
  provision(request: ProvisionRequest<Options>): Promise<SessionHandle>;
  /** How activities reach a provisioned session. */
  reach(session: SessionHandle, context: ReachContext): SessionReach;
  /**
   * Reaches a session for reading only, without provisioning it (a dry
   * run's look at what the target already holds): creates nothing, and a
   * session never provisioned lists no files. Kinds whose sessions are
   * started per workflow have none.
   */
  peek?(request: { sessionId: string; target: Options }, context: ReachContext): SessionReach;
  /**
   * Ends the session: stops what it started and frees its compute; with
   * `removeFiles`, its folder goes too. A session already gone is fine.
   */
  release(session: SessionHandle, options: { removeFiles: boolean; signal: AbortSignal }): Promise<{ released: boolean; detail: string }>;
}

export interface LandSessionRequest {
  /** Folder in the session. */
  dir: string;
  /** What the target lacks (the caller compared); each is written whole or not at all. */
  files: ManifestEntry[];
  /** Paths under `dir` to delete (a landing that must leave exactly the manifest). */
  remove: string[];
}

export interface LandOutcome {
  bootId: string;
  filesLanded: number;
  bytesLanded: number;
  /** Bytes fetched from the blob store; less than bytesLanded when chunks were copied from files already there. */
  bytesDownloaded: number;
  bytesReused: number;
  filesRemoved: number;
}

export interface StartSessionProcess {
  processId: string;
  command: string[];
  /** Folder in the session to run in ('' for the session root). */
  cwd: string;
  env: Record<string, string>;
  /** No limit when absent. */
  timeoutSeconds?: number;
  output: 'separate' | 'combined';
  /** Answer once the process ended or this long passed (default 0: at once): a short command costs one round trip. */
  waitMs?: number;
}

/** Ship bytes of a process's log, from `offset`, at most `maxBytes`, to a presigned PUT URL. */
export interface LogShipment {
  offset: number;
  maxBytes: number;
  url: string;
}

export interface ProbeOutcome {
  status: ProcessStatus;
  /** Stdout bytes shipped (0: nothing new, or nothing asked). */
  shipped: number;
  /** Stderr bytes shipped (0: nothing new, or nothing asked). */
  shippedStderr: number;
}

/** A file of the session or a process log stored as a blob. */
export interface StoredFile {
  path: string;
  size: number;
  sha256: string;
}

/**
 * One provisioned session, reached. Paths are relative POSIX paths inside
 * the session folder; each call is one attempt (the activity retries).
 */
export interface SessionReach {
  /** The target and session in a few words, for messages. */
  readonly description: string;
  /**
   * How often a running process is probed while it is followed (its output
   * shipped as it grows): a long-poll on the agent costs little; a script
   * run through a cloud API costs a call and counts against its rate limits.
   */
  readonly followEveryMs: number;
  bootId(): Promise<string>;
  /** Creates folders of the session. */
  makeDirs(dirs: string[]): Promise<void>;
  /** Files under `dir` (only `paths` when given), with sha256 computed on the target unless `hash` is false. */
  listFiles(request: { dir: string; paths?: string[]; hash: boolean }, onProgress?: (filesDone: number, bytesDone: number) => void): Promise<{ bootId: string; files: TargetFile[] }>;
  land(request: LandSessionRequest, onProgress: (filesDone: number, bytesDone: number) => void): Promise<LandOutcome>;
  /** Starts a process once per id; a repeated start reports the first. */
  startProcess(request: StartSessionProcess): Promise<ProcessStatus>;
  /** Status (waiting up to `waitMs` for the end), then new stdout (`ship`) and stderr (`shipStderr`) bytes shipped when asked. */
  probeProcess(processId: string, options: { waitMs: number; ship?: LogShipment; shipStderr?: LogShipment }): Promise<ProbeOutcome>;
  stopProcess(processId: string, graceSeconds: number): Promise<{ signal: 'none' | 'TERM' | 'KILL'; status: ProcessStatus }>;
  /** Stores files of `dir` (as listed, with their sha256) in the blob store; bytes that do not hash to it fail. */
  storeFiles(dir: string, files: StoredFile[], onStored: (file: StoredFile) => void): Promise<void>;
  /**
   * Stores an ended process's whole stdout and stderr logs in the blob store.
   * `bytes`: their sizes as the ended process's status reported them; a
   * reach may store an empty log without reading it from the target.
   */
  storeLogs(processId: string, bytes: Record<LogStream, number>): Promise<{ stdout: StoredFile; stderr: StoredFile }>;
}
