/**
 * Stable failure type names. They appear as `ApplicationFailure.type` in
 * workflow history, as `error.type` in runtime-agent responses and in
 * `ferry` CLI output, so scripts and people can branch on them.
 */
export const FailureType = {
  /** Workflow or activity input has the wrong shape. Non-retryable. */
  InvalidInput: 'InvalidInput',
  /** A path is absolute, contains `..`, a backslash, NUL, or is otherwise unsafe. Non-retryable. */
  UnsafePath: 'UnsafePath',
  /** The source folder does not exist or is not a directory. Non-retryable. */
  SourceNotFound: 'SourceNotFound',
  /** A symlink in the source points outside the source root. Non-retryable. */
  SymlinkOutsideRoot: 'SymlinkOutsideRoot',
  /** The source holds something that is neither file, directory nor symlink (device, socket, fifo). Non-retryable. */
  UnsupportedFileType: 'UnsupportedFileType',
  /** A file changed while it was being hashed. Retryable: the next attempt re-reads it. */
  FileChangedDuringRead: 'FileChangedDuringRead',
  /** A source file no longer matches the manifest it was snapshotted into. Non-retryable: snapshot again. */
  SourceChangedSinceSnapshot: 'SourceChangedSinceSnapshot',
  /** A blob or manifest read back from storage does not hash to its key. */
  ChecksumMismatch: 'ChecksumMismatch',
  /**
   * A blob the store holds has other bytes than its sha256 (damaged at rest,
   * or overwritten): a target's checksum failure traced to the store, read
   * back and hashed on the worker. Details: `sha256s` and the file's `path`.
   * Non-retryable from landManifest (landing again fetches the same bytes);
   * the landing workflows upload those blobs again from their local source
   * and land again, and fail with this type, naming the blobs, where no
   * local source holds them.
   */
  BlobCorrupted: 'BlobCorrupted',
  /** The manifest named by a digest is not in the blob store. Non-retryable. */
  ManifestNotFound: 'ManifestNotFound',
  /** The target is missing files or holds different bytes than the manifest says. Retryable. */
  VerificationFailed: 'VerificationFailed',
  /**
   * The target restarted (new boot id). Retryable from landManifest (the next
   * attempt lands on the new boot); non-retryable from verifyLanding and
   * executeCode, where only landing again helps — the workflows do that.
   */
  TargetRestarted: 'TargetRestarted',
  /** The target could not be reached or answered a server error. Retryable. */
  TargetUnavailable: 'TargetUnavailable',
  /** The target refused the request as unauthorised (bad or missing token). Non-retryable. */
  TargetUnauthorized: 'TargetUnauthorized',
  /** The target ran out of disk space. */
  TargetDiskFull: 'TargetDiskFull',
  /** A URL given to the runtime agent is not an allowed blob-store URL. Non-retryable. */
  UrlNotAllowed: 'UrlNotAllowed',
  /** A blob download on the target failed (HTTP error, short body). Retryable. */
  BlobDownloadFailed: 'BlobDownloadFailed',
  /** The target kind is known, but this worker is not configured to reach it (a setting is missing). Non-retryable. */
  UnknownTarget: 'UnknownTarget',
  /** Two inputs of a session hold the same path with different contents. Non-retryable. */
  InputConflict: 'InputConflict',
  /** An S3 input could not be read (no such bucket or prefix, access denied). */
  InputNotFound: 'InputNotFound',
  /** A pipeline stage saw no update or signal for its idle timeout. Fails the workflow. */
  StageIdleTimeout: 'StageIdleTimeout',
  /** Someone sent the `abort` signal; the message is their reason. Fails the workflow. */
  PipelineAborted: 'PipelineAborted',
  /** An execute refused because the pipeline is aborting, finishing its last stage or over: nothing more runs there. Non-retryable. */
  PipelineClosed: 'PipelineClosed',
  /** A file under artifacts/ changed while it was collected. Retryable. */
  ArtifactChanged: 'ArtifactChanged',
  /** ECS refused to start a session's task (RunTask `failures` or an error naming the cause). Retryable only for capacity and throttling. */
  SessionLaunchFailed: 'SessionLaunchFailed',
  /**
   * A session's ECS task stopped before its agent answered; details carry
   * `stoppedReason`, `stopCode` and container exit codes. Non-retryable,
   * except when ECS infrastructure stopped it (a Spot interruption, a
   * termination notice, failed infrastructure health) or it vanished: a
   * fresh task may well run.
   */
  SessionTaskStopped: 'SessionTaskStopped',
  /** A session's ECS task stayed in PROVISIONING/PENDING past its limit; the task is stopped. Retryable: the next attempt starts a fresh one. */
  SessionTaskStalled: 'SessionTaskStalled',
  /** The project to train holds no files after ignore rules. Non-retryable. */
  EmptyProject: 'EmptyProject',
  /** An archive handed to a target holds absolute paths, `..`, links or devices; the target refused it. Non-retryable. */
  UnsafeArchive: 'UnsafeArchive',
  /** A script on the target failed for a reason the next attempt may not meet (a download, an upload, a move). Retryable. */
  TargetScriptFailed: 'TargetScriptFailed',
  /** The target lacks what ferry needs there (a tool its scripts use, e.g. curl or sha256sum); details name what is missing. Non-retryable. */
  TargetUnsupported: 'TargetUnsupported',
  /** The target did not run a command in time (SSM TimedOut, DeliveryTimedOut, ExecutionTimedOut, Cancelled). Retryable. */
  TargetCommandTimedOut: 'TargetCommandTimedOut',
  /** The training process exited non-zero during its startup grace period. Non-retryable; details hold the log tail. */
  ProcessExitedEarly: 'ProcessExitedEarly',
  /** The training process exited non-zero (or was killed). Details hold the exit code and log tail. */
  ProcessFailed: 'ProcessFailed',
  /** No workflow with the id a client named (`ferry mcp`: no pipeline for the session). */
  WorkflowNotFound: 'WorkflowNotFound',
  /** Temporal, or the workers behind a query, did not answer a client in time. Retryable: the same call may be sent again. */
  TemporalUnavailable: 'TemporalUnavailable',
} as const;

export type FailureTypeName = (typeof FailureType)[keyof typeof FailureType];

/** The useful part of a failed `fetch` (Node puts the socket error's code in `cause`), for messages. */
export function fetchFailureDetail(err: unknown): string {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
  const detail = cause?.code ?? cause?.message;
  return typeof detail === 'string' ? detail : (err as Error).message;
}

const KNOWN_TYPES = new Set<string>(Object.values(FailureType));

/** `name` as a known failure type, or undefined (for errors reported by other processes). */
export function knownFailureType(name: string): FailureTypeName | undefined {
  return KNOWN_TYPES.has(name) ? (name as FailureTypeName) : undefined;
}
