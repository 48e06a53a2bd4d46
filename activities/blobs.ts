/**
 * Uploading a snapshot's file bodies to the blob store: only blobs the store
 * lacks, several at once. Large files go up as their content-defined chunks
 * (core/chunking), each a blob of its own, so an edited file sends only the
 * chunks that changed and a retried attempt sends only the chunks an earlier
 * one did not store.
 */
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import pLimit from 'p-limit';
import { FailureType } from '../core/errors';
import { blobsOfEntry, type ManifestEntry } from '../core/manifest';
import { startProgress } from '../core/sync';
import { nonRetryable, retryable } from './failures';
import { throttledHeartbeat } from './heartbeat';
import { BlobSourceChangedError, BodyDigestRejectedError, MalformedManifestError, ManifestMissingError, StoredChecksumMismatchError, type S3BlobStore } from './s3BlobStore';

export interface UploadBlobsInput {
  manifestDigest: string;
  /** Absolute folder the manifest was snapshotted from. */
  sourcePath: string;
}

export interface UploadBlobsResult {
  /** Distinct blobs the manifest's files are stored as (whole bodies and chunks). */
  blobsTotal: number;
  blobsUploaded: number;
  bytesUploaded: number;
  /**
   * Bytes of the manifest not sent: already stored (whole files or chunks,
   * an earlier attempt's among them), or duplicates of other content.
   */
  bytesSkipped: number;
}

export interface UploadTuning {
  /** Blobs uploaded at once: small ones cost a request each, so many overlap. */
  blobConcurrency: number;
  /** Of those, blobs of LARGE_BLOB_BYTES or more (each held in memory while it is sent). */
  largeBlobConcurrency: number;
}

export const DEFAULT_UPLOAD_TUNING: UploadTuning = {
  blobConcurrency: 32,
  largeBlobConcurrency: 8,
};

const LARGE_BLOB_BYTES = 1 << 20;

/** One blob to store: a whole small file or one chunk of a large one, read from `offset` of the file. */
interface BlobToUpload {
  sha256: string;
  size: number;
  offset: number;
  entry: ManifestEntry;
}

/** Unchunked entries this big (from manifests made before chunking) are streamed up in parts rather than read whole. */
const WHOLE_BODY_MAX_BYTES = 64 << 20;

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

class SourceChangedError extends Error {
  constructor(
    readonly relativePath: string,
    readonly expectedSha256: string,
    readonly actualSha256: string,
  ) {
    super(`${JSON.stringify(relativePath)} changed since it was snapshotted (sha256 ${actualSha256}, manifest says ${expectedSha256})`);
  }
}

async function readRange(absolutePath: string, offset: number, size: number): Promise<Buffer> {
  const handle = await open(absolutePath, 'r');
  try {
    // One byte more than expected reveals a file that grew since the snapshot.
    const buffer = Buffer.allocUnsafe(size + 1);
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, offset + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buffer.subarray(0, filled);
  } finally {
    await handle.close();
  }
}

/** The distinct blobs of a manifest, each with the first file (and offset) it can be read from. */
function blobsOfManifest(files: ManifestEntry[]): Map<string, BlobToUpload> {
  const blobs = new Map<string, BlobToUpload>();
  for (const entry of files) {
    let offset = 0;
    for (const blob of blobsOfEntry(entry)) {
      if (!blobs.has(blob.sha256)) blobs.set(blob.sha256, { ...blob, offset, entry });
      offset += blob.size;
    }
  }
  return blobs;
}

export function createBlobActivities(deps: { blobs: S3BlobStore; tuning?: Partial<UploadTuning> }) {
  const tuning = { ...DEFAULT_UPLOAD_TUNING, ...deps.tuning };
  const { blobs } = deps;

  /** Reads one blob's bytes from the source, checks them against the manifest, and stores them. */
  async function uploadBlob(blob: BlobToUpload, absolutePath: string, abortSignal: AbortSignal): Promise<void> {
    if (!blob.entry.chunks && blob.size > WHOLE_BODY_MAX_BYTES) {
      await blobs.putFileAsBlob(absolutePath, blob.sha256, blob.size);
      return;
    }
    const body = await readRange(absolutePath, blob.offset, blob.size);
    const actual = createHash('sha256').update(body.subarray(0, blob.size)).digest('hex');
    // A chunk may be followed by more of its file; only a whole body must end where the manifest says.
    const wrongLength = blob.entry.chunks ? body.length < blob.size : body.length !== blob.size;
    if (wrongLength || actual !== blob.sha256) {
      const what = blob.entry.chunks ? `bytes ${blob.offset}-${blob.offset + blob.size} hash to ${actual}` : actual;
      throw new SourceChangedError(blob.entry.path, blob.sha256, what);
    }
    await blobs.putBlob(blob.sha256, body.subarray(0, blob.size), abortSignal);
  }

  return {
    /** Uploads every blob of the manifest that the store lacks, verifying each body against its sha256. */
    async uploadBlobs(input: UploadBlobsInput): Promise<UploadBlobsResult> {
      const context = Context.current();
      const abortSignal = context.cancellationSignal;
      // Every in-flight S3 request listens on the cancellation signal.
      setMaxListeners(tuning.blobConcurrency + tuning.largeBlobConcurrency + 64, abortSignal);
      const manifest = await blobs.getManifest(input.manifestDigest).catch((err) => {
        throw blobStoreFailure(err);
      });
      const unique = blobsOfManifest(manifest.files);
      const bytesTotal = manifest.files.reduce((sum, f) => sum + f.size, 0);
      if (await blobs.blobsMarkedStored(input.manifestDigest, abortSignal)) {
        const stored: UploadBlobsResult = { blobsTotal: unique.size, blobsUploaded: 0, bytesUploaded: 0, bytesSkipped: bytesTotal };
        context.log.info('blobs already stored by an earlier upload of this manifest', { manifestDigest: input.manifestDigest, ...stored });
        return stored;
      }

      const stored = await blobs.findStoredBlobs([...unique.keys()], abortSignal);
      // Largest first, so the long uploads overlap the many short ones.
      const missing = [...unique.values()].filter((blob) => !stored.has(blob.sha256)).sort((a, b) => b.size - a.size);

      const progress = startProgress('uploadBlobs', missing);
      const heartbeat = throttledHeartbeat(context);
      heartbeat(progress);
      const limit = pLimit(tuning.blobConcurrency);
      const largeLimit = pLimit(tuning.largeBlobConcurrency);
      try {
        await Promise.all(
          missing.map((blob) =>
            (blob.size >= LARGE_BLOB_BYTES ? largeLimit : limit)(async () => {
              await uploadBlob(blob, path.join(input.sourcePath, ...blob.entry.path.split('/')), abortSignal);
              progress.bytesDone += blob.size;
              progress.filesDone++;
              heartbeat(progress);
            }),
          ),
        );
      } catch (err) {
        if (err instanceof SourceChangedError || err instanceof BlobSourceChangedError) {
          const changedPath = err instanceof SourceChangedError ? err.relativePath : path.relative(input.sourcePath, err.path);
          throw nonRetryable(FailureType.SourceChangedSinceSnapshot, `${err.message}: snapshot again`, {
            path: changedPath,
            expected: err.expectedSha256,
            actual: err.actualSha256,
          });
        }
        // The body was hashed here before it was sent, so S3 saw other bytes than were read: damage on the way, worth another attempt.
        if (err instanceof BodyDigestRejectedError) throw retryable(FailureType.ChecksumMismatch, err.message, { key: err.key });
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          throw nonRetryable(FailureType.SourceChangedSinceSnapshot, `a file was deleted since it was snapshotted: ${(err as Error).message}`, {});
        }
        throw err;
      }

      context.heartbeat(progress);
      await blobs.markBlobsStored(input.manifestDigest, abortSignal);
      const result: UploadBlobsResult = {
        blobsTotal: unique.size,
        blobsUploaded: missing.length,
        bytesUploaded: progress.bytesTotal,
        bytesSkipped: bytesTotal - progress.bytesTotal,
      };
      context.log.info('blobs uploaded', { manifestDigest: input.manifestDigest, ...result });
      return result;
    },
  };
}
