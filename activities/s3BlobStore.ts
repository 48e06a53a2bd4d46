/**
 * Content-addressed storage on S3: blobs under their sha256, manifests under
 * the sha256 of their canonical JSON. Every write sends the sha256 so the
 * server checks the bytes it stored; every manifest read is re-hashed so a
 * corrupted or substituted manifest is caught before it is acted on.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NotFound,
  NoSuchKey,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import pLimit from 'p-limit';
import type { FerryConfig } from '../core/config';
import { BlobSourceChangedError, BodyDigestRejectedError, MalformedManifestError, ManifestMissingError, PackRangeShortError, StoredChecksumMismatchError, type ContentStore, type StoredObjects, type TargetTransfer } from './blobStore';
import { blobKey, blobsStoredMarkerKey, canonicalManifestPieces, manifestKey, manifestProblems, manifestTotals, type Manifest, type ManifestRef } from '../core/manifest';
import { packDamageKey, packIndexKey, packKey, type PackListing, type PackPlace } from '../core/packs';
import { PackCatalog, packIndexBody, type IgnoredPackIndex } from './packs';

export interface S3BlobStoreOptions {
  /** Client used for every request. */
  client: S3Client;
  /**
   * Client used only to presign URLs. It must be built with
   * `requestChecksumCalculation: 'WHEN_REQUIRED'`, or presigned URLs carry an
   * empty-body checksum that the server later rejects.
   */
  presignClient: S3Client;
  bucket: string;
  prefix: string;
  presignExpirySeconds: number;
  /** How existence checks list instead of HEAD; defaults suit any bucket size. */
  listing?: Partial<ListingTuning>;
}

export interface ListingTuning {
  /** From this many blobs on, listing beats one HEAD request per blob. */
  fromBlobs: number;
  /** Keys per list request (S3's maximum is 1,000). */
  pageSize: number;
  /** Listing may read this many times the pages the request itself needs before falling back to HEAD. */
  pageBudgetFactor: number;
}

const DEFAULT_LISTING: ListingTuning = { fromBlobs: 64, pageSize: 1000, pageBudgetFactor: 4 };
const HEAD_CONCURRENCY = 32;

interface MultipartState {
  sha256: string;
  uploadId: string;
}

const EMPTY_SHA256 = createHash('sha256').digest('hex');
const hexToBase64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');

function isDigestRejection(err: unknown): boolean {
  return err instanceof S3ServiceException && ['BadDigest', 'XAmzContentSHA256Mismatch', 'InvalidDigest'].includes(err.name);
}

/** Blobs remembered as stored (about 100 bytes each), so re-syncs of edited trees check only what is new. */
const KNOWN_STORED_BLOBS = 1_000_000;
/** The sha256 and length of the manifest's canonical JSON, made piece by piece (core/manifest canonicalManifestPieces). */
function measureManifest(manifest: Manifest): { digest: string; bytes: number } {
  const hash = createHash('sha256');
  let bytes = 0;
  for (const piece of canonicalManifestPieces(manifest)) {
    hash.update(piece, 'utf8');
    bytes += Buffer.byteLength(piece, 'utf8');
  }
  return { digest: hash.digest('hex'), bytes };
}

/** Manifest entries kept in memory across the manifests last read (about 150 bytes each). */
const MANIFEST_CACHE_ENTRIES = 500_000;

export class S3BlobStore implements ContentStore, TargetTransfer, StoredObjects {
  private readonly listing: ListingTuning;
  private readonly manifests = new Map<string, Manifest>();
  /** Blobs stored alone (under blobKey) that this store saw stored. */
  private readonly knownStored = new Set<string>();
  private readonly packs: PackCatalog;
  private packWarnings: IgnoredPackIndex[] = [];
  private manifestEntries = 0;

  constructor(private readonly options: S3BlobStoreOptions) {
    this.listing = { ...DEFAULT_LISTING, ...options.listing };
    this.packs = new PackCatalog(this);
  }

  /** Key prefix of everything this store writes ('' or ending in '/'). */
  get keyPrefix(): string {
    return this.options.prefix;
  }

  blobKey(sha256: string): string {
    return blobKey(this.options.prefix, sha256);
  }

  async hasObject(key: string, abortSignal?: AbortSignal): Promise<boolean> {
    try {
      await this.options.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: key }), { abortSignal });
      return true;
    } catch (err) {
      if (err instanceof NotFound || err instanceof NoSuchKey) return false;
      throw err;
    }
  }

  /**
   * Which of these blobs the store already holds, in a pack (core/packs) or
   * stored alone: what an upload may skip. Packed blobs are found in the
   * pack catalog, which lists the packs folder once when asked about a blob
   * it cannot place; the rest are looked for alone ({@link findStandaloneBlobs}).
   */
  async findStoredBlobs(sha256s: string[], abortSignal?: AbortSignal): Promise<Set<string>> {
    const stored = new Set<string>();
    const unplaced: string[] = [];
    for (const sha of new Set(sha256s)) {
      if (this.packs.placeOf(sha)) stored.add(sha);
      else unplaced.push(sha);
    }
    if (unplaced.length === 0) return stored;
    await this.refreshPacks(abortSignal);
    const alone = unplaced.filter((sha) => !this.packs.placeOf(sha));
    for (const sha of unplaced) if (this.packs.placeOf(sha)) stored.add(sha);
    for (const sha of await this.findStandaloneBlobs(alone, abortSignal)) stored.add(sha);
    return stored;
  }

  /**
   * Which of these blobs are stored alone, each under its own key
   * (blobKey): what a result naming that key may rely on (collected
   * artifacts, logs). Many blobs are checked by listing the blob prefix
   * (1,000 keys a request) with a page budget scaled to the request, so a
   * huge bucket cannot make it slow; keys past what the budget covered are
   * checked one by one. Blobs are immutable and ferry never deletes them,
   * so one this store saw stored is not asked about again.
   */
  async findStandaloneBlobs(sha256s: string[], abortSignal?: AbortSignal): Promise<Set<string>> {
    const stored = new Set<string>();
    const wanted: string[] = [];
    for (const sha of new Set(sha256s)) {
      if (this.knownStored.has(sha)) stored.add(sha);
      else wanted.push(sha);
    }
    try {
      await this.findUnknownBlobs(wanted, stored, abortSignal);
    } finally {
      for (const sha of stored) this.rememberStored(sha);
    }
    return stored;
  }

  /**
   * Where each packed blob of these sits; a blob absent from the answer is
   * not in a pack (stored alone, or not at all). The packs folder is listed
   * once when a blob is neither placed nor known to be stored alone.
   */
  async locateBlobs(sha256s: Iterable<string>, abortSignal?: AbortSignal): Promise<Map<string, PackPlace>> {
    const wanted = [...new Set(sha256s)];
    if (wanted.some((sha) => !this.packs.placeOf(sha) && !this.knownStored.has(sha))) await this.refreshPacks(abortSignal);
    const places = new Map<string, PackPlace>();
    for (const sha of wanted) {
      const place = this.packs.placeOf(sha);
      if (place) places.set(sha, place);
    }
    return places;
  }

  private async refreshPacks(abortSignal?: AbortSignal): Promise<void> {
    this.packWarnings.push(...(await this.packs.refresh(abortSignal)));
  }

  /** Index objects left out since the last call (damaged or malformed): their blobs count as not stored. */
  takePackWarnings(): IgnoredPackIndex[] {
    const warnings = this.packWarnings;
    this.packWarnings = [];
    return warnings;
  }

  /** Whether a pack of this name is stored (as of the last listing): an upload retried after a crash finds its packs again. */
  hasPack(name: string): boolean {
    return this.packs.hasPack(name);
  }

  /**
   * Stores a pack (core/packs) under its name. The worker checked every
   * blob in it against its sha256 before; S3 checks the body's CRC32, so
   * damage on the way is refused (BodyDigestRejectedError) instead of
   * stored. The payload is not hashed again for the signature: a pack's
   * blobs are each re-hashed by whoever reads them.
   */
  async putPack(name: string, body: Buffer, abortSignal?: AbortSignal): Promise<void> {
    const key = packKey(this.options.prefix, name);
    const checksum = Buffer.alloc(4);
    checksum.writeUInt32BE(crc32(body));
    const command = new PutObjectCommand({ Bucket: this.options.bucket, Key: key, Body: body, ContentLength: body.length, ChecksumCRC32: checksum.toString('base64') });
    command.middlewareStack.add(
      (next) => async (args) => {
        (args.request as { headers: Record<string, string> }).headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        return next(args);
      },
      { step: 'build', name: 'ferryUnsignedPackPayload' },
    );
    try {
      await this.options.client.send(command, { abortSignal });
    } catch (err) {
      if (isDigestRejection(err)) throw new BodyDigestRejectedError(key, err);
      throw err;
    }
  }

  /** Stores the index object of packs just written; from then on their blobs count as stored. */
  async putPackIndex(listings: PackListing[], abortSignal?: AbortSignal): Promise<string> {
    const { name, body } = packIndexBody(listings);
    const key = packIndexKey(this.options.prefix, name);
    await this.putVerified(key, body, name, abortSignal);
    this.packs.rememberWritten(listings);
    return key;
  }

  /** The bytes `[start, end)` of a pack. */
  async readPackRange(name: string, start: number, end: number, abortSignal?: AbortSignal): Promise<Buffer> {
    const key = packKey(this.options.prefix, name);
    let response;
    try {
      response = await this.options.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: key, Range: `bytes=${start}-${end - 1}` }), { abortSignal });
    } catch (err) {
      // The range starts past the pack's end.
      if (err instanceof S3ServiceException && err.name === 'InvalidRange') throw new PackRangeShortError(key, start, end, 0);
      // Deleted since it was listed (found damaged by another worker): its blobs are stored no more.
      if (err instanceof NoSuchKey || err instanceof NotFound) this.packs.forgetPack(name);
      throw err;
    }
    const body = Buffer.from(await response.Body!.transformToByteArray());
    if (body.length !== end - start) throw new PackRangeShortError(key, start, end, body.length);
    return body;
  }

  /** A short-lived GET URL for one pack: scoped to that key, expiring in minutes; readers send a Range header. */
  presignPackGet(name: string): Promise<string> {
    return this.presignGet(packKey(this.options.prefix, name));
  }

  /** Key of the pack object named `name`. */
  packKey(name: string): string {
    return packKey(this.options.prefix, name);
  }

  /**
   * Whether the stored copy of a blob (in its pack, or alone) still hashes
   * to its name, read back and hashed here; read twice before it is called
   * damaged, as bytes damaged on the way arrive whole the second time.
   */
  async checkStoredBlob(sha256: string, abortSignal?: AbortSignal): Promise<'intact' | 'damaged' | 'missing'> {
    try {
      await this.readBlob(sha256, abortSignal);
      return 'intact';
    } catch (err) {
      if (err instanceof StoredChecksumMismatchError || err instanceof PackRangeShortError) return 'damaged';
      if (err instanceof NoSuchKey || err instanceof NotFound) return 'missing';
      throw err;
    }
  }

  /**
   * Marks the pack copies of a blob damaged (an empty marker object per
   * pack, core/packs packDamageKey), once a good copy is stored alone: every
   * catalog that lists the packs folder then takes the blob from its own key.
   * Packs are not rewritten or deleted (their name fixes their bytes, and the
   * worker's role may not delete blobs). Returns the markers written.
   */
  async markPackedCopyDamaged(sha256: string, abortSignal?: AbortSignal): Promise<string[]> {
    const written: string[] = [];
    for (let place = (await this.locateBlobs([sha256], abortSignal)).get(sha256); place; place = this.packs.placeOf(sha256)) {
      const key = packDamageKey(this.options.prefix, place.pack, sha256);
      await this.options.client.send(new PutObjectCommand({ Bucket: this.options.bucket, Key: key, Body: Buffer.alloc(0), ContentLength: 0 }), { abortSignal });
      this.packs.rememberDamaged(place.pack, sha256);
      written.push(key);
    }
    return written;
  }

  private rememberStored(sha256: string): void {
    this.knownStored.delete(sha256);
    this.knownStored.add(sha256);
    if (this.knownStored.size > KNOWN_STORED_BLOBS) this.knownStored.delete(this.knownStored.values().next().value as string);
  }

  private async findUnknownBlobs(wanted: string[], stored: Set<string>, abortSignal?: AbortSignal): Promise<void> {
    let coveredUpTo = '';
    if (wanted.length >= this.listing.fromBlobs) {
      const wantedKeys = new Map(wanted.map((sha) => [this.blobKey(sha), sha]));
      const pageBudget = Math.ceil(wanted.length / this.listing.pageSize) * this.listing.pageBudgetFactor;
      let continuationToken: string | undefined;
      for (let page = 0; page < pageBudget; page++) {
        const listing = await this.options.client.send(
          new ListObjectsV2Command({
            Bucket: this.options.bucket,
            Prefix: `${this.options.prefix}blobs/sha256/`,
            MaxKeys: this.listing.pageSize,
            ContinuationToken: continuationToken,
          }),
          { abortSignal },
        );
        for (const object of listing.Contents ?? []) {
          const sha = wantedKeys.get(object.Key ?? '');
          if (sha) stored.add(sha);
        }
        if (!listing.IsTruncated) return;
        coveredUpTo = listing.Contents?.at(-1)?.Key ?? coveredUpTo;
        continuationToken = listing.NextContinuationToken;
      }
    }
    const limit = pLimit(HEAD_CONCURRENCY);
    await Promise.all(
      wanted
        .filter((sha) => this.blobKey(sha) > coveredUpTo)
        .map((sha) =>
          limit(async () => {
            if (await this.hasObject(this.blobKey(sha), abortSignal)) stored.add(sha);
          }),
        ),
    );
  }

  /** Stores one blob (a small file's body or a chunk) under its sha256. */
  async putBlob(sha256: string, body: Buffer, abortSignal?: AbortSignal): Promise<void> {
    await this.putVerified(this.blobKey(sha256), body, sha256, abortSignal);
    this.rememberStored(sha256);
  }

  /** Stores `body` (bytes, or a stream of a known length) under its sha256, which S3 checks against the bytes it receives. */
  async putVerified(key: string, body: Buffer | { stream: Readable; bytes: number }, sha256: string, abortSignal?: AbortSignal): Promise<void> {
    const [Body, ContentLength] = Buffer.isBuffer(body) ? [body, body.length] : [body.stream, body.bytes];
    try {
      await this.options.client.send(
        new PutObjectCommand({ Bucket: this.options.bucket, Key: key, Body, ContentLength, ChecksumSHA256: hexToBase64(sha256) }),
        { abortSignal },
      );
    } catch (err) {
      if (isDigestRejection(err)) throw new BodyDigestRejectedError(key, err);
      throw err;
    }
  }

  /**
   * Stores the file at `absolutePath` as the blob `sha256` unless the store
   * has it; large files go up in parts. S3 checks every body's sha256, so a
   * file that no longer matches `sha256` is refused, never stored.
   * Returns whether bytes were sent.
   */
  async putFileAsBlob(absolutePath: string, sha256: string, size: number, partSizeBytes = 8 << 20): Promise<boolean> {
    if (await this.hasObject(this.blobKey(sha256))) return false;
    const handle = await open(absolutePath, 'r');
    try {
      const readAt = async (position: number, length: number) => {
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await handle.read(buffer, 0, length, position);
        return buffer.subarray(0, bytesRead);
      };
      if (size <= partSizeBytes) {
        await this.putVerified(this.blobKey(sha256), await readAt(0, size), sha256);
        return true;
      }
      const state = await this.createMultipart(sha256);
      try {
        const parts: CompletedPart[] = [];
        // Each part's checksum is checked by S3; the whole must hash to its key before it is completed.
        const whole = createHash('sha256');
        for (let position = 0, partNumber = 1; position < size; position += partSizeBytes, partNumber++) {
          const body = await readAt(position, Math.min(partSizeBytes, size - position));
          whole.update(body);
          parts.push(await this.uploadPart(state, partNumber, body));
        }
        const actual = whole.digest('hex');
        if (actual !== sha256) throw new BlobSourceChangedError(absolutePath, sha256, actual);
        await this.completeMultipart(state, parts);
      } catch (err) {
        await this.abortMultipart(state).catch(() => undefined);
        throw err;
      }
      return true;
    } finally {
      await handle.close();
    }
  }

  /** Every object under `prefix` of `bucket` (any bucket these credentials can read), in key order. */
  async *listObjects(bucket: string, prefix: string): AsyncGenerator<{ key: string; size: number }> {
    let continuationToken: string | undefined;
    do {
      const page = await this.options.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: continuationToken }));
      for (const object of page.Contents ?? []) yield { key: object.Key!, size: object.Size ?? 0 };
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken);
  }

  /** Saves one object to `destination`, hashing on the way. */
  async downloadObject(bucket: string, key: string, destination: string): Promise<{ size: number; sha256: string }> {
    const response = await this.options.client.send(new GetObjectCommand({ Bucket: bucket, Key: key, ChecksumMode: 'ENABLED' }));
    const hash = createHash('sha256');
    let size = 0;
    const out = createWriteStream(destination);
    try {
      for await (const chunk of response.Body as AsyncIterable<Uint8Array>) {
        hash.update(chunk);
        size += chunk.length;
        if (!out.write(chunk)) await once(out, 'drain');
      }
    } finally {
      out.end();
      await once(out, 'close');
    }
    return { size, sha256: hash.digest('hex') };
  }

  /** A blob's bytes (from its pack, or stored alone), checked against its sha256. For small blobs (reports, logs people read). */
  getBlob(sha256: string): Promise<Buffer> {
    return this.readBlob(sha256);
  }

  private async readBlob(sha256: string, abortSignal?: AbortSignal, listedAgain = false): Promise<Buffer> {
    const place = (await this.locateBlobs([sha256], abortSignal)).get(sha256);
    if (!place) return this.readVerified(this.blobKey(sha256), sha256, abortSignal);
    let actual = '';
    for (let read = 0; read < 2; read++) {
      const body = await this.readPackRange(place.pack, place.offset, place.offset + place.size, abortSignal);
      actual = createHash('sha256').update(body).digest('hex');
      if (actual === sha256) return body;
    }
    // Another worker may have put the blob back and marked this copy since the catalog listed the packs: list again once.
    if (!listedAgain) {
      await this.refreshPacks(abortSignal);
      const now = this.packs.placeOf(sha256);
      if (now?.pack !== place.pack || now.offset !== place.offset) return this.readBlob(sha256, abortSignal, true);
    }
    throw new StoredChecksumMismatchError(`${this.packKey(place.pack)} bytes ${place.offset}-${place.offset + place.size - 1}`, sha256, actual);
  }

  /**
   * An object's bytes, checked against the sha256 it is stored under. A
   * mismatch is read once more: bytes damaged on the way arrive whole the
   * second time, bytes damaged at rest mismatch again and are reported.
   */
  private async readVerified(key: string, sha256: string, abortSignal?: AbortSignal): Promise<Buffer> {
    let actual = '';
    for (let read = 0; read < 2; read++) {
      const response = await this.options.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: key }), { abortSignal });
      const body = Buffer.from(await response.Body!.transformToByteArray());
      actual = createHash('sha256').update(body).digest('hex');
      if (actual === sha256) return body;
    }
    throw new StoredChecksumMismatchError(key, sha256, actual);
  }

  /** The manifest's reference as it would be stored, without storing it (a dry run's). */
  manifestRef(manifest: Manifest): ManifestRef {
    const { digest } = measureManifest(manifest);
    return { manifestDigest: digest, manifestKey: manifestKey(this.options.prefix, digest), ...manifestTotals(manifest) };
  }

  /**
   * Stores the manifest under the sha256 of its canonical JSON. The JSON is
   * made twice, once to hash and measure it and once as the request body,
   * so a manifest of 100,000 files (15 MB) is never held whole in memory.
   */
  async putManifest(manifest: Manifest): Promise<ManifestRef> {
    const { digest, bytes } = measureManifest(manifest);
    const key = manifestKey(this.options.prefix, digest);
    if (!(await this.hasObject(key))) {
      const stream = Readable.from((function* () {
        for (const piece of canonicalManifestPieces(manifest)) yield Buffer.from(piece, 'utf8');
      })());
      await this.putVerified(key, { stream, bytes }, digest);
    }
    return { manifestDigest: digest, manifestKey: key, ...manifestTotals(manifest) };
  }

  /**
   * Reads a manifest and checks that it hashes to its digest and is
   * well-formed with safe paths. Manifests are immutable (named by their
   * sha256), so the last few read are kept and the activities of one sync
   * read theirs from S3 once.
   */
  async getManifest(digest: string): Promise<Manifest> {
    const known = this.manifests.get(digest);
    if (known) return { version: 1, files: [...known.files] };
    const manifest = await this.readManifest(digest);
    this.manifests.set(digest, manifest);
    this.manifestEntries += manifest.files.length;
    for (const [oldest, held] of this.manifests) {
      if (this.manifestEntries <= MANIFEST_CACHE_ENTRIES || oldest === digest) break;
      this.manifests.delete(oldest);
      this.manifestEntries -= held.files.length;
    }
    return { version: 1, files: [...manifest.files] };
  }

  private async readManifest(digest: string): Promise<Manifest> {
    const key = manifestKey(this.options.prefix, digest);
    let body: Buffer;
    try {
      body = await this.readVerified(key, digest);
    } catch (err) {
      if (err instanceof NoSuchKey || err instanceof NotFound) throw new ManifestMissingError(digest);
      throw err;
    }
    const manifest = JSON.parse(body.toString('utf8')) as unknown;
    const problems = manifestProblems(manifest);
    if (problems.length) throw new MalformedManifestError(digest, problems);
    return manifest as Manifest;
  }

  /** Whether every blob of the manifest was stored by an upload that finished (see blobsStoredMarkerKey). */
  blobsMarkedStored(digest: string, abortSignal?: AbortSignal): Promise<boolean> {
    return this.hasObject(blobsStoredMarkerKey(this.options.prefix, digest), abortSignal);
  }

  async markBlobsStored(digest: string, abortSignal?: AbortSignal): Promise<void> {
    await this.putVerified(blobsStoredMarkerKey(this.options.prefix, digest), Buffer.alloc(0), EMPTY_SHA256, abortSignal);
  }

  /** A short-lived GET URL for one blob: scoped to that key, expiring in minutes. */
  presignBlobGet(sha256: string): Promise<string> {
    return getSignedUrl(this.options.presignClient, new GetObjectCommand({ Bucket: this.options.bucket, Key: this.blobKey(sha256) }), {
      expiresIn: this.options.presignExpirySeconds,
    });
  }

  /** The URL prefix every presigned blob URL starts with; targets allow fetching only below it. */
  async blobUrlPrefix(): Promise<string> {
    const probe = new URL(await this.presignBlobGet('0'.repeat(64)));
    const keyStart = probe.pathname.indexOf(`${this.options.prefix}blobs/`);
    return probe.origin + probe.pathname.slice(0, keyStart) + `${this.options.prefix}blobs/`;
  }

  /** A short-lived GET URL for any key of the store (training archives, temporary objects). */
  presignGet(key: string): Promise<string> {
    return getSignedUrl(this.options.presignClient, new GetObjectCommand({ Bucket: this.options.bucket, Key: key }), {
      expiresIn: this.options.presignExpirySeconds,
    });
  }

  /** A short-lived PUT URL for one key, for a target to upload a listing or a log chunk without credentials. */
  presignPut(key: string): Promise<string> {
    return getSignedUrl(this.options.presignClient, new PutObjectCommand({ Bucket: this.options.bucket, Key: key }), {
      expiresIn: this.options.presignExpirySeconds,
    });
  }

  /**
   * A short-lived PUT URL for the blob `sha256`, for a target to store a file
   * it holds: the request must carry the returned header, and S3 refuses a
   * body that does not hash to the key.
   */
  async presignBlobPut(sha256: string): Promise<{ url: string; checksumHeader: string }> {
    const checksum = hexToBase64(sha256);
    const url = await getSignedUrl(this.options.presignClient, new PutObjectCommand({ Bucket: this.options.bucket, Key: this.blobKey(sha256), ChecksumSHA256: checksum }), {
      expiresIn: this.options.presignExpirySeconds,
      // Signed as a header, so the request cannot leave it out.
      unhoistableHeaders: new Set(['x-amz-checksum-sha256']),
    });
    return { url, checksumHeader: checksum };
  }

  /** Stores a local file under `key`; S3 checks it against `sha256`. */
  async putFile(key: string, filePath: string, size: number, sha256: string, abortSignal?: AbortSignal): Promise<void> {
    try {
      await this.options.client.send(
        new PutObjectCommand({ Bucket: this.options.bucket, Key: key, Body: createReadStream(filePath), ContentLength: size, ChecksumSHA256: hexToBase64(sha256) }),
        { abortSignal },
      );
    } catch (err) {
      if (isDigestRejection(err)) throw new BodyDigestRejectedError(key, err);
      throw err;
    }
  }

  /** The bytes of an object, or undefined when there is none. */
  async getObjectBytes(key: string, abortSignal?: AbortSignal): Promise<Buffer | undefined> {
    try {
      const response = await this.options.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: key, ChecksumMode: 'ENABLED' }), { abortSignal });
      return Buffer.from(await response.Body!.transformToByteArray());
    } catch (err) {
      if (err instanceof NoSuchKey || err instanceof NotFound) return undefined;
      throw err;
    }
  }

  /** Keys under `prefix` (full keys), in S3's lexicographic order. */
  async listKeys(prefix: string, abortSignal?: AbortSignal): Promise<{ key: string; size: number }[]> {
    const keys: { key: string; size: number }[] = [];
    let continuationToken: string | undefined;
    do {
      const page = await this.options.client.send(
        new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: prefix, ContinuationToken: continuationToken }),
        { abortSignal },
      );
      for (const object of page.Contents ?? []) if (object.Key) keys.push({ key: object.Key, size: object.Size ?? 0 });
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken);
    return keys;
  }

  /** Deletes every object under `prefix`; returns how many. */
  async deletePrefix(prefix: string): Promise<number> {
    const keys = await this.listKeys(prefix);
    for (let start = 0; start < keys.length; start += 1000) {
      await this.options.client.send(
        new DeleteObjectsCommand({ Bucket: this.options.bucket, Delete: { Objects: keys.slice(start, start + 1000).map(({ key }) => ({ Key: key })), Quiet: true } }),
      );
    }
    return keys.length;
  }

  private async createMultipart(sha256: string): Promise<MultipartState> {
    const response = await this.options.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.options.bucket, Key: this.blobKey(sha256), ChecksumAlgorithm: 'SHA256' }),
    );
    return { sha256, uploadId: response.UploadId! };
  }

  private async uploadPart(state: MultipartState, partNumber: number, body: Buffer, abortSignal?: AbortSignal): Promise<CompletedPart> {
    const checksum = createHash('sha256').update(body).digest('base64');
    try {
      const response = await this.options.client.send(
        new UploadPartCommand({
          Bucket: this.options.bucket,
          Key: this.blobKey(state.sha256),
          UploadId: state.uploadId,
          PartNumber: partNumber,
          Body: body,
          ContentLength: body.length,
          ChecksumSHA256: checksum,
        }),
        { abortSignal },
      );
      return { PartNumber: partNumber, ETag: response.ETag, ChecksumSHA256: response.ChecksumSHA256 ?? checksum };
    } catch (err) {
      if (isDigestRejection(err)) throw new BodyDigestRejectedError(this.blobKey(state.sha256), err);
      throw err;
    }
  }

  private async completeMultipart(state: MultipartState, parts: CompletedPart[]): Promise<void> {
    await this.options.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.options.bucket,
        Key: this.blobKey(state.sha256),
        UploadId: state.uploadId,
        MultipartUpload: { Parts: [...parts].sort((a, b) => a.PartNumber! - b.PartNumber!) },
      }),
    );
  }

  private async abortMultipart(state: MultipartState): Promise<void> {
    await this.options.client.send(
      new AbortMultipartUploadCommand({ Bucket: this.options.bucket, Key: this.blobKey(state.sha256), UploadId: state.uploadId }),
    );
  }
}

/** Builds the two clients a blob store needs from plain settings. */
export function createS3Clients(settings: {
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}): { client: S3Client; presignClient: S3Client } {
  const base = {
    endpoint: settings.endpoint,
    region: settings.region,
    forcePathStyle: settings.forcePathStyle,
    credentials: settings.credentials,
    maxAttempts: 5,
  };
  return {
    // Reads the store hashes itself (manifests, blobs) must fail as StoredChecksumMismatchError, with the key;
    // the SDK's own check would throw an untyped error first. Reads it does not hash ask for the SDK's check.
    client: new S3Client({ ...base, responseChecksumValidation: 'WHEN_REQUIRED' }),
    presignClient: new S3Client({ ...base, requestChecksumCalculation: 'WHEN_REQUIRED' }),
  };
}

/** The blob store a configuration names (the worker's, and the CLI's for reading logs and artifacts). */
export function blobStoreFromConfig(s3: FerryConfig['s3']): S3BlobStore {
  const { client, presignClient } = createS3Clients(s3);
  return new S3BlobStore({ client, presignClient, bucket: s3.bucket, prefix: s3.prefix, presignExpirySeconds: s3.presignExpirySeconds });
}
