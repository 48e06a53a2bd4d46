/**
 * The blob store as its callers see it: three views named for what each
 * needs — the sync and collect activities keep content (blobs, packs,
 * manifests), the targets move bytes to and from a session (short-lived
 * URLs, pack ranges, scratch objects), and readers outside the worker read
 * what was stored (logs, chunks, reports) — and the failures it raises,
 * with their mapping to ferry's typed failures. S3BlobStore (./s3BlobStore)
 * is the one implementation.
 */
import type { Readable } from 'node:stream';
import { FailureType } from '../core/errors';
import type { Manifest, ManifestRef } from '../core/manifest';
import type { PackListing, PackPlace } from '../core/packs';
import { nonRetryable } from './failures';
import type { IgnoredPackIndex } from './packs';

/** Content-addressed blobs (alone or in packs) and manifests: what snapshotting, uploading, landing and collecting keep. */
export interface ContentStore {
  readonly keyPrefix: string;
  blobKey(sha256: string): string;
  /** Blobs stored alone or in a pack: what an upload may skip. */
  findStoredBlobs(sha256s: string[], abortSignal?: AbortSignal): Promise<Set<string>>;
  /** Blobs stored alone under their own key: what a result naming that key may rely on. */
  findStandaloneBlobs(sha256s: string[], abortSignal?: AbortSignal): Promise<Set<string>>;
  takePackWarnings(): IgnoredPackIndex[];
  hasPack(name: string): boolean;
  putPack(name: string, body: Buffer, abortSignal?: AbortSignal): Promise<void>;
  putPackIndex(listings: PackListing[], abortSignal?: AbortSignal): Promise<string>;
  putBlob(sha256: string, body: Buffer, abortSignal?: AbortSignal): Promise<void>;
  putFileAsBlob(absolutePath: string, sha256: string, size: number): Promise<boolean>;
  getBlob(sha256: string): Promise<Buffer>;
  checkStoredBlob(sha256: string, abortSignal?: AbortSignal): Promise<'intact' | 'damaged' | 'missing'>;
  markPackedCopyDamaged(sha256: string, abortSignal?: AbortSignal): Promise<string[]>;
  manifestRef(manifest: Manifest): ManifestRef;
  putManifest(manifest: Manifest): Promise<ManifestRef>;
  getManifest(digest: string): Promise<Manifest>;
  blobsMarkedStored(digest: string, abortSignal?: AbortSignal): Promise<boolean>;
  markBlobsStored(digest: string, abortSignal?: AbortSignal): Promise<void>;
  /** The objects of another bucket under a prefix (an S3 input). */
  listObjects(bucket: string, prefix: string): AsyncGenerator<{ key: string; size: number }>;
  /** An object of another bucket (an S3 input) copied to a local file, with its size and sha256. */
  downloadObject(bucket: string, key: string, destination: string): Promise<{ size: number; sha256: string }>;
  /** A short-lived PUT URL for a key below the prefix (log chunks a target ships). */
  presignPut(key: string): Promise<string>;
}

/** What a target's reach needs to move bytes to and from a session: short-lived URLs, pack ranges and scratch objects. */
export interface TargetTransfer {
  readonly keyPrefix: string;
  locateBlobs(sha256s: Iterable<string>, abortSignal?: AbortSignal): Promise<Map<string, PackPlace>>;
  findStandaloneBlobs(sha256s: string[], abortSignal?: AbortSignal): Promise<Set<string>>;
  presignBlobGet(sha256: string): Promise<string>;
  presignPackGet(name: string): Promise<string>;
  packKey(name: string): string;
  readPackRange(name: string, start: number, end: number, abortSignal?: AbortSignal): Promise<Buffer>;
  /** The URL prefix every blob and pack URL starts with (an agent's allowlist). */
  blobUrlPrefix(): Promise<string>;
  presignGet(key: string): Promise<string>;
  presignPut(key: string): Promise<string>;
  presignBlobPut(sha256: string): Promise<{ url: string; checksumHeader: string }>;
  putFile(key: string, filePath: string, size: number, sha256: string, abortSignal?: AbortSignal): Promise<void>;
  putFileAsBlob(absolutePath: string, sha256: string, size: number): Promise<boolean>;
  putBlob(sha256: string, body: Buffer, abortSignal?: AbortSignal): Promise<void>;
  putVerified(key: string, body: Buffer | { stream: Readable; bytes: number }, sha256: string, abortSignal?: AbortSignal): Promise<void>;
  getObjectBytes(key: string, abortSignal?: AbortSignal): Promise<Buffer | undefined>;
  deletePrefix(prefix: string): Promise<number>;
}

/** What readers outside the worker (the CLI, the MCP server) read: stored objects by key and blobs by sha256. */
export interface StoredObjects {
  readonly keyPrefix: string;
  getObjectBytes(key: string, abortSignal?: AbortSignal): Promise<Buffer | undefined>;
  listKeys(prefix: string, abortSignal?: AbortSignal): Promise<{ key: string; size: number }[]>;
  getBlob(sha256: string): Promise<Buffer>;
}

/** Thrown when stored bytes do not hash to the name they are stored under. */
export class StoredChecksumMismatchError extends Error {
  constructor(
    readonly key: string,
    readonly expectedSha256: string,
    readonly actualSha256: string,
  ) {
    super(`object ${key} hashes to ${actualSha256}, expected ${expectedSha256}`);
    this.name = 'StoredChecksumMismatchError';
  }
}

/** Thrown when a range read of a pack returns fewer bytes than asked: the pack is shorter than its index says. */
export class PackRangeShortError extends Error {
  constructor(
    readonly key: string,
    readonly start: number,
    readonly end: number,
    readonly received: number,
  ) {
    super(`object ${key} holds ${received} bytes at ${start}-${end - 1}, not ${end - start}`);
    this.name = 'PackRangeShortError';
  }
}

/** Thrown by putFileAsBlob when the file's bytes no longer hash to the blob's key. */
export class BlobSourceChangedError extends Error {
  constructor(
    readonly path: string,
    readonly expectedSha256: string,
    readonly actualSha256: string,
  ) {
    super(`${path} changed while it was stored (sha256 ${actualSha256}, expected ${expectedSha256})`);
    this.name = 'BlobSourceChangedError';
  }
}

/** Thrown when a manifest is not in the store. */
export class ManifestMissingError extends Error {
  constructor(readonly digest: string) {
    super(`manifest ${digest} is not in the blob store`);
    this.name = 'ManifestMissingError';
  }
}

/** Thrown when a manifest read back is not a valid manifest (bad shape or unsafe paths). */
export class MalformedManifestError extends Error {
  constructor(
    readonly digest: string,
    readonly problems: string[],
  ) {
    super(`manifest ${digest} is refused: ${problems.join('; ')}`);
    this.name = 'MalformedManifestError';
  }
}

/** Thrown when S3 rejects a body because it does not match the sha256 we sent. */
export class BodyDigestRejectedError extends Error {
  constructor(
    readonly key: string,
    cause: unknown,
  ) {
    super(`the blob store rejected the body for ${key}: it does not match its sha256`, { cause });
    this.name = 'BodyDigestRejectedError';
  }
}

/** Maps blob-store errors to typed, correctly retryable failures. */
export function blobStoreFailure(err: unknown): unknown {
  if (err instanceof ManifestMissingError) return nonRetryable(FailureType.ManifestNotFound, err.message, { manifestDigest: err.digest });
  if (err instanceof MalformedManifestError) {
    const unsafe = err.problems.some((problem) => /\.path /.test(problem));
    return nonRetryable(unsafe ? FailureType.UnsafePath : FailureType.InvalidInput, err.message, { manifestDigest: err.digest, problems: err.problems });
  }
  if (err instanceof StoredChecksumMismatchError)
    return nonRetryable(FailureType.ChecksumMismatch, err.message, { key: err.key, expected: err.expectedSha256, actual: err.actualSha256 });
  return err;
}

