/**
 * Uploading a snapshot's file bodies to the blob store: only blobs the store
 * lacks, several at once, large ones in parts that a retried attempt resumes.
 */
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import type { CompletedPart } from '@aws-sdk/client-s3';
import pLimit from 'p-limit';
import { FailureType } from '../core/errors';
import type { ManifestEntry } from '../core/manifest';
import { startProgress, type TransferProgress } from '../core/sync';
import { nonRetryable, retryable } from './failures';
import { BodyDigestRejectedError, MalformedManifestError, ManifestMissingError, StoredChecksumMismatchError, type MultipartState, type S3BlobStore } from './s3BlobStore';

export interface UploadBlobsInput {
  manifestDigest: string;
  /** Absolute folder the manifest was snapshotted from. */
  sourcePath: string;
}

export interface UploadBlobsResult {
  blobsTotal: number;
  blobsUploaded: number;
  bytesUploaded: number;
  /** Bytes of the manifest not sent: already stored, or duplicates of another file. */
  bytesSkipped: number;
  /** Multipart uploads continued from an earlier attempt instead of restarted. */
  uploadsResumed: number;
  /** Bytes this attempt sent (less than bytesUploaded when it resumed parts an earlier attempt stored). */
  bytesSent: number;
}

/** A multipart upload in flight; `partsDone` counts parts stored so far (a retried attempt lists them from S3). */
export type MultipartProgress = MultipartState & { partsDone?: number };

/** Heartbeat details: progress plus what a retried attempt needs to resume. */
export interface UploadHeartbeat extends TransferProgress {
  multipart: MultipartProgress[];
}

export interface UploadTuning {
  /** Files at least this big go up in parts. */
  multipartThresholdBytes: number;
  partSizeBytes: number;
  /** Blobs uploaded at once. */
  blobConcurrency: number;
  /** Parts of one large blob uploaded at once. */
  partConcurrency: number;
}

export const DEFAULT_UPLOAD_TUNING: UploadTuning = {
  multipartThresholdBytes: 16 << 20,
  partSizeBytes: 8 << 20,
  blobConcurrency: 8,
  partConcurrency: 4,
};

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

/**
 * Whether a part an earlier attempt stored holds these bytes: by its sha256
 * when the store reports one, else by its ETag (the MD5 of a plain part).
 */
function storedPartMatches(part: CompletedPart, body: Buffer): boolean {
  if (part.ChecksumSHA256) return part.ChecksumSHA256 === createHash('sha256').update(body).digest('base64');
  return part.ETag?.replace(/"/g, '') === createHash('md5').update(body).digest('hex');
}

async function readWholeFile(absolutePath: string, size: number): Promise<Buffer> {
  const handle = await open(absolutePath, 'r');
  try {
    // One byte more than expected reveals a file that grew since the snapshot.
    const buffer = Buffer.alloc(size + 1);
    let filled = 0;
    while (filled < buffer.length) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return buffer.subarray(0, filled);
  } finally {
    await handle.close();
  }
}

export function createBlobActivities(deps: { blobs: S3BlobStore; tuning?: Partial<UploadTuning> }) {
  const tuning = { ...DEFAULT_UPLOAD_TUNING, ...deps.tuning };
  const { blobs } = deps;

  /** Streams a large file up in parts, reusing parts an earlier attempt stored. */
  async function uploadInParts(
    entry: ManifestEntry,
    absolutePath: string,
    resumeFrom: MultipartState | undefined,
    heartbeat: UploadHeartbeat,
    onBytes: (n: number, sent: boolean) => void,
    abortSignal: AbortSignal,
  ): Promise<boolean> {
    let state = resumeFrom;
    let doneParts = state ? await blobs.listUploadedParts(state) : undefined;
    if (!state || !doneParts) {
      state = await blobs.createMultipart(entry.sha256);
      doneParts = [];
    }
    const resumed = doneParts.length > 0;
    const inFlightState: MultipartProgress = { sha256: state.sha256, uploadId: state.uploadId, partsDone: 0 };
    heartbeat.multipart.push(inFlightState);
    const stored = new Map(doneParts.map((part) => [part.PartNumber!, part]));
    const parts: CompletedPart[] = [];
    // Parts in flight are bounded, so memory holds at most partConcurrency parts.
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    const track = (upload: Promise<void>) => {
      const settled: Promise<void> = upload.then(
        () => undefined,
        (err: unknown) => {
          failure ??= err;
        },
      );
      inFlight.add(settled);
      void settled.finally(() => inFlight.delete(settled));
    };
    const wholeFile = createHash('sha256');
    const handle = await open(absolutePath, 'r');
    try {
      const partCount = Math.max(1, Math.ceil(entry.size / tuning.partSizeBytes));
      for (let partNumber = 1; partNumber <= partCount && failure === undefined; partNumber++) {
        const length = Math.min(tuning.partSizeBytes, entry.size - (partNumber - 1) * tuning.partSizeBytes);
        const body = Buffer.alloc(length);
        const { bytesRead } = await handle.read(body, 0, length, (partNumber - 1) * tuning.partSizeBytes);
        if (bytesRead !== length) throw new SourceChangedError(entry.path, entry.sha256, 'unknown (file shrank)');
        wholeFile.update(body);
        const already = stored.get(partNumber);
        if (already && storedPartMatches(already, body)) {
          parts.push({ PartNumber: partNumber, ETag: already.ETag, ChecksumSHA256: createHash('sha256').update(body).digest('base64') });
          inFlightState.partsDone = parts.length;
          onBytes(length, false);
          continue;
        }
        while (inFlight.size >= tuning.partConcurrency) await Promise.race(inFlight);
        const uploadState = state;
        track(
          blobs.uploadPart(uploadState, partNumber, body, abortSignal).then((part) => {
            parts.push(part);
            inFlightState.partsDone = parts.length;
            onBytes(length, true);
          }),
        );
      }
      await Promise.all(inFlight);
      if (failure !== undefined) throw failure;
      const actual = wholeFile.digest('hex');
      if (actual !== entry.sha256) {
        await blobs.abortMultipart(state).catch(() => undefined);
        throw new SourceChangedError(entry.path, entry.sha256, actual);
      }
      await blobs.completeMultipart(state, parts);
      heartbeat.multipart = heartbeat.multipart.filter((m) => m !== inFlightState);
      return resumed;
    } finally {
      await handle.close();
    }
  }

  return {
    /** Uploads every blob of the manifest that the store lacks, verifying each body against its sha256. */
    async uploadBlobs(input: UploadBlobsInput): Promise<UploadBlobsResult> {
      const context = Context.current();
      const abortSignal = context.cancellationSignal;
      // Every in-flight S3 request listens on the cancellation signal.
      setMaxListeners(tuning.blobConcurrency * tuning.partConcurrency + 64, abortSignal);
      const manifest = await blobs.getManifest(input.manifestDigest).catch((err) => {
        throw blobStoreFailure(err);
      });
      const previous = context.info.heartbeatDetails as UploadHeartbeat | undefined;
      const resumable = new Map((previous?.multipart ?? []).map((m) => [m.sha256, m]));

      // One upload per distinct body: identical files share a blob.
      const unique = new Map<string, ManifestEntry>();
      for (const entry of manifest.files) if (!unique.has(entry.sha256)) unique.set(entry.sha256, entry);
      const bytesTotal = manifest.files.reduce((sum, f) => sum + f.size, 0);

      const stored = await blobs.findStoredBlobs([...unique.keys()], abortSignal);
      // Largest first, so the long uploads overlap the many short ones.
      const missing = [...unique.values()].filter((entry) => !stored.has(entry.sha256)).sort((a, b) => b.size - a.size);

      const heartbeat: UploadHeartbeat = { ...startProgress('uploadBlobs', missing), multipart: [] };
      context.heartbeat(heartbeat);
      let uploadsResumed = 0;
      let bytesSent = 0;
      const limit = pLimit(tuning.blobConcurrency);
      try {
        await Promise.all(
          missing.map((entry) =>
            limit(async () => {
              const absolutePath = path.join(input.sourcePath, ...entry.path.split('/'));
              const onBytes = (n: number, sent = true) => {
                heartbeat.bytesDone += n;
                if (sent) bytesSent += n;
                context.heartbeat(heartbeat);
              };
              if (entry.size >= tuning.multipartThresholdBytes) {
                if (await uploadInParts(entry, absolutePath, resumable.get(entry.sha256), heartbeat, onBytes, abortSignal)) uploadsResumed++;
              } else {
                const body = await readWholeFile(absolutePath, entry.size);
                const actual = createHash('sha256').update(body).digest('hex');
                if (actual !== entry.sha256) throw new SourceChangedError(entry.path, entry.sha256, actual);
                await blobs.putVerified(blobs.blobKey(entry.sha256), body, entry.sha256, abortSignal);
                onBytes(entry.size);
              }
              heartbeat.filesDone++;
              context.heartbeat(heartbeat);
            }),
          ),
        );
      } catch (err) {
        if (err instanceof SourceChangedError) {
          throw nonRetryable(FailureType.SourceChangedSinceSnapshot, `${err.message}: snapshot again`, {
            path: err.relativePath,
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

      const result: UploadBlobsResult = {
        blobsTotal: unique.size,
        blobsUploaded: missing.length,
        bytesUploaded: heartbeat.bytesTotal,
        bytesSkipped: bytesTotal - heartbeat.bytesTotal,
        uploadsResumed,
        bytesSent,
      };
      context.log.info('blobs uploaded', { manifestDigest: input.manifestDigest, ...result });
      return result;
    },
  };
}
