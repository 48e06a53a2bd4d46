/**
 * Uploading a snapshot's file bodies to the blob store: only blobs the store
 * lacks. Large files go up as their content-defined chunks (core/chunking),
 * each a blob of its own, so an edited file sends only the chunks that
 * changed. Blobs are written into pack objects of up to 8 MiB (core/packs),
 * in manifest order, with one index object per upload: thousands of small
 * files cost a request per pack, not per file. A retried attempt packs the
 * blobs still missing the same way, so the packs an earlier attempt stored
 * are found by name and not sent again.
 */
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import pLimit from 'p-limit';
import { FailureType } from '../core/errors';
import { blobsOfEntry, type ManifestEntry } from '../core/manifest';
import { isPackable, packListText, planPacks, type PackListing } from '../core/packs';
import { startProgress, type TransferProgress } from '../core/sync';
import { nonRetryable, retryable } from './failures';
import { throttledHeartbeat } from './heartbeat';
import { BlobSourceChangedError, BodyDigestRejectedError, blobStoreFailure, type ContentStore } from './blobStore';

export interface UploadBlobsInput {
  manifestDigest: string;
  /** Absolute folder the manifest was snapshotted from. */
  sourcePath: string;
  /**
   * Blobs the store holds damaged (BlobCorrupted): those of this manifest
   * are uploaded again although stored, and the manifest's stored marker is
   * not trusted.
   */
  replace?: string[];
}

export interface UploadBlobsResult {
  /** Distinct blobs the manifest's files are stored as (whole bodies and chunks). */
  blobsTotal: number;
  /** Blobs this attempt sent, in packs or alone (not those in packs an earlier attempt stored). */
  blobsUploaded: number;
  bytesUploaded: number;
  /**
   * Bytes of the manifest not sent: already stored (whole files or chunks,
   * an earlier attempt's packs among them), or duplicates of other content.
   */
  bytesSkipped: number;
  /** Of `replace`, the blobs this manifest holds, uploaded again. */
  replaced?: string[];
}

export interface UploadTuning {
  /** Source reads at once while packs are filled: small files cost an open each, so many overlap. */
  readConcurrency: number;
  /** Packs filled and sent at once (each up to 8 MiB, held in memory while it is sent). */
  packConcurrency: number;
  /** Blobs too large for a pack (from manifests made before chunking) sent at once. */
  largeBlobConcurrency: number;
}

export const DEFAULT_UPLOAD_TUNING: UploadTuning = {
  readConcurrency: 16,
  packConcurrency: 4,
  largeBlobConcurrency: 4,
};

/** One blob to store: a whole small file or one chunk of a large one, read from `offset` of the file. */
interface BlobToUpload {
  sha256: string;
  size: number;
  offset: number;
  entry: ManifestEntry;
}

/** Unchunked entries this big (from manifests made before chunking) are streamed up in parts rather than read whole. */
const WHOLE_BODY_MAX_BYTES = 64 << 20;

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
 * Reads one blob's bytes from the source into `into` and checks them against
 * the manifest: its sha256, and for a whole body that the file ends there.
 */
async function readBlobInto(absolutePath: string, blob: BlobToUpload, into: Buffer): Promise<void> {
  const handle = await open(absolutePath, 'r');
  let filled = 0;
  let grew = false;
  try {
    while (filled < blob.size) {
      const { bytesRead } = await handle.read(into, filled, blob.size - filled, blob.offset + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    // One byte more than expected reveals a whole body that grew since the snapshot; a chunk may be followed by more of its file.
    if (!blob.entry.chunks && filled === blob.size) grew = (await handle.read(Buffer.alloc(1), 0, 1, blob.offset + blob.size)).bytesRead > 0;
  } finally {
    await handle.close();
  }
  const actual = createHash('sha256').update(into.subarray(0, filled)).digest('hex');
  if (filled !== blob.size || grew || actual !== blob.sha256) {
    const what = blob.entry.chunks ? `bytes ${blob.offset}-${blob.offset + blob.size} hash to ${actual}` : grew ? 'more bytes' : actual;
    throw new SourceChangedError(blob.entry.path, blob.sha256, what);
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

const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex');

export function createBlobActivities(deps: { blobs: ContentStore; tuning?: Partial<UploadTuning> }) {
  const tuning = { ...DEFAULT_UPLOAD_TUNING, ...deps.tuning };
  const { blobs } = deps;

  const sourceOf = (sourcePath: string, blob: BlobToUpload) => path.join(sourcePath, ...blob.entry.path.split('/'));

  /** Stores one blob too large for a pack under its own key. */
  async function uploadAlone(blob: BlobToUpload, sourcePath: string, abortSignal: AbortSignal): Promise<void> {
    if (!blob.entry.chunks && blob.size > WHOLE_BODY_MAX_BYTES) {
      await blobs.putFileAsBlob(sourceOf(sourcePath, blob), blob.sha256, blob.size);
      return;
    }
    const body = Buffer.allocUnsafe(blob.size);
    await readBlobInto(sourceOf(sourcePath, blob), blob, body);
    await blobs.putBlob(blob.sha256, body, abortSignal);
  }

  /**
   * Fills one pack from the source (every blob checked against the manifest
   * on the way) and stores it, unless a pack of that name is already stored:
   * the same blobs packed by an earlier attempt. Returns whether it was sent.
   */
  async function uploadPack(pack: BlobToUpload[], listing: PackListing, sourcePath: string, readLimit: ReturnType<typeof pLimit>, abortSignal: AbortSignal): Promise<boolean> {
    if (blobs.hasPack(listing.name)) return false;
    const body = Buffer.allocUnsafe(pack.reduce((sum, blob) => sum + blob.size, 0));
    let offset = 0;
    await Promise.all(
      pack.map((blob) => {
        const into = body.subarray(offset, (offset += blob.size));
        return readLimit(() => readBlobInto(sourceOf(sourcePath, blob), blob, into));
      }),
    );
    await blobs.putPack(listing.name, body, abortSignal);
    return true;
  }

  return {
    /** Uploads every blob of the manifest that the store lacks, verifying each body against its sha256. */
    async uploadBlobs(input: UploadBlobsInput): Promise<UploadBlobsResult> {
      const context = Context.current();
      const abortSignal = context.cancellationSignal;
      // Every in-flight S3 request listens on the cancellation signal.
      setMaxListeners(tuning.packConcurrency + tuning.largeBlobConcurrency + 64, abortSignal);
      const manifest = await blobs.getManifest(input.manifestDigest).catch((err) => {
        throw blobStoreFailure(err);
      });
      const unique = blobsOfManifest(manifest.files);
      // Links are entries without a body (core/manifest): they have no blob and no bytes to send.
      const files = manifest.files.filter((entry) => entry.link === undefined);
      const bytesTotal = files.reduce((sum, f) => sum + f.size, 0);
      // A whole body past WHOLE_BODY_MAX_BYTES (manifests from before chunking) is sent only when the store lacks its key, so it cannot be replaced here.
      const replaceable = (sha256: string) => unique.has(sha256) && !(unique.get(sha256)!.size > WHOLE_BODY_MAX_BYTES && !unique.get(sha256)!.entry.chunks);
      const replace = new Set((input.replace ?? []).filter(replaceable));
      if (input.replace === undefined && (await blobs.blobsMarkedStored(input.manifestDigest, abortSignal))) {
        const stored: UploadBlobsResult = { blobsTotal: unique.size, blobsUploaded: 0, bytesUploaded: 0, bytesSkipped: bytesTotal };
        context.log.info('blobs already stored by an earlier upload of this manifest', { manifestDigest: input.manifestDigest, ...stored });
        return stored;
      }

      const stored = await blobs.findStoredBlobs([...unique.keys()], abortSignal);
      for (const ignored of blobs.takePackWarnings()) context.log.warn('pack index left out: the blobs it lists count as not stored', { ...ignored });
      // Manifest order: a large file's chunks sit together in its packs, so a target reads them in few ranges.
      const missing = [...unique.values()].filter((blob) => !stored.has(blob.sha256) || replace.has(blob.sha256));
      // A blob to replace is stored alone, over whatever its key held, and its damaged pack copy marked (core/packs packDamageKey):
      // a pack's bytes are fixed by its name, so it is never rewritten.
      const packs = planPacks(missing.filter((blob) => isPackable(blob.size) && !replace.has(blob.sha256))).map((pack) => ({
        pack,
        listing: { name: sha256Hex(packListText(pack)), blobs: pack.map((blob): [string, number] => [blob.sha256, blob.size]) },
      }));
      const alone = missing.filter((blob) => !isPackable(blob.size) || replace.has(blob.sha256));

      // Blobs are what moves, files are what people count: a file is done once every blob of it is stored.
      const waiting = new Map<string, number[]>(missing.map((blob) => [blob.sha256, []]));
      const blobsLeft = files.map((entry, index) => {
        const own = new Set(blobsOfEntry(entry).map((blob) => blob.sha256).filter((sha256) => waiting.has(sha256)));
        for (const sha256 of own) waiting.get(sha256)?.push(index);
        return own.size;
      });
      const progress: TransferProgress = {
        ...startProgress('uploadBlobs', missing),
        filesDone: blobsLeft.filter((left) => left === 0).length,
        filesTotal: files.length,
        blobsDone: 0,
        blobsTotal: missing.length,
      };
      const heartbeat = throttledHeartbeat(context);
      heartbeat(progress);
      const sent = { blobs: 0, bytes: 0 };
      const blobsStored = (stored: BlobToUpload[], wasSent: boolean) => {
        for (const blob of stored) {
          progress.bytesDone += blob.size;
          progress.blobsDone = (progress.blobsDone ?? 0) + 1;
          for (const index of waiting.get(blob.sha256) ?? []) if (--blobsLeft[index] === 0) progress.filesDone++;
          if (wasSent) {
            sent.blobs++;
            sent.bytes += blob.size;
          }
        }
        heartbeat(progress);
      };
      const readLimit = pLimit(tuning.readConcurrency);
      const packLimit = pLimit(tuning.packConcurrency);
      const largeLimit = pLimit(tuning.largeBlobConcurrency);
      try {
        await Promise.all([
          ...packs.map(({ pack, listing }) =>
            packLimit(async () => blobsStored(pack, await uploadPack(pack, listing, input.sourcePath, readLimit, abortSignal))),
          ),
          ...alone.map((blob) =>
            largeLimit(async () => {
              await uploadAlone(blob, input.sourcePath, abortSignal);
              // After the good copy is stored, so a reader never finds neither.
              if (replace.has(blob.sha256)) await blobs.markPackedCopyDamaged(blob.sha256, abortSignal);
              blobsStored([blob], true);
            }),
          ),
        ]);
        // After its packs: an index never names a pack that is not there.
        if (packs.length) await blobs.putPackIndex(packs.map(({ listing }) => listing), abortSignal);
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
        blobsUploaded: sent.blobs,
        bytesUploaded: sent.bytes,
        bytesSkipped: bytesTotal - sent.bytes,
        ...(input.replace ? { replaced: [...replace] } : {}),
      };
      context.log.info('blobs uploaded', { manifestDigest: input.manifestDigest, ...result, packs: packs.length, blobsAlone: alone.length });
      return result;
    },
  };
}
