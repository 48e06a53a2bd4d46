/**
 * Content-addressed storage on S3: blobs under their sha256, manifests under
 * the sha256 of their canonical JSON. Every write sends the sha256 so the
 * server checks the bytes it stored; every manifest read is re-hashed so a
 * corrupted or substituted manifest is caught before it is acted on.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
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
import { blobKey, blobsStoredMarkerKey, canonicalManifestJson, manifestKey, manifestProblems, manifestTotals, type Manifest, type ManifestRef } from '../core/manifest';

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

/** Thrown when a manifest is not in the store. */
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

export interface MultipartState {
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
/** Manifest entries kept in memory across the manifests last read (about 150 bytes each). */
const MANIFEST_CACHE_ENTRIES = 500_000;

export class S3BlobStore {
  private readonly listing: ListingTuning;
  private readonly manifests = new Map<string, Manifest>();
  private readonly knownStored = new Set<string>();
  private manifestEntries = 0;

  constructor(private readonly options: S3BlobStoreOptions) {
    this.listing = { ...DEFAULT_LISTING, ...options.listing };
  }

  get bucket(): string {
    return this.options.bucket;
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
   * Which of these blobs the store already holds. Many blobs are checked by
   * listing the blob prefix (1,000 keys a request) with a page budget scaled
   * to the request, so a huge bucket cannot make it slow; keys past what the
   * budget covered are checked one by one. Blobs are immutable and ferry
   * never deletes them, so one this store saw stored is not asked about again.
   */
  async findStoredBlobs(sha256s: string[], abortSignal?: AbortSignal): Promise<Set<string>> {
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

  /** Stores `body` under its sha256, which S3 checks against the bytes it receives. */
  async putVerified(key: string, body: Buffer, sha256: string, abortSignal?: AbortSignal): Promise<void> {
    try {
      await this.options.client.send(
        new PutObjectCommand({ Bucket: this.options.bucket, Key: key, Body: body, ContentLength: body.length, ChecksumSHA256: hexToBase64(sha256) }),
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

  /** A blob's bytes, checked against its key. For small blobs (reports, logs people read). */
  async getBlob(sha256: string): Promise<Buffer> {
    return this.readVerified(this.blobKey(sha256), sha256);
  }

  /**
   * An object's bytes, checked against the sha256 it is stored under. A
   * mismatch is read once more: bytes damaged on the way arrive whole the
   * second time, bytes damaged at rest mismatch again and are reported.
   */
  private async readVerified(key: string, sha256: string): Promise<Buffer> {
    let actual = '';
    for (let read = 0; read < 2; read++) {
      const response = await this.options.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: key }));
      const body = Buffer.from(await response.Body!.transformToByteArray());
      actual = createHash('sha256').update(body).digest('hex');
      if (actual === sha256) return body;
    }
    throw new StoredChecksumMismatchError(key, sha256, actual);
  }

  async putManifest(manifest: Manifest): Promise<ManifestRef> {
    const body = Buffer.from(canonicalManifestJson(manifest), 'utf8');
    const digest = createHash('sha256').update(body).digest('hex');
    const key = manifestKey(this.options.prefix, digest);
    if (!(await this.hasObject(key))) await this.putVerified(key, body, digest);
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

  async createMultipart(sha256: string): Promise<MultipartState> {
    const response = await this.options.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.options.bucket, Key: this.blobKey(sha256), ChecksumAlgorithm: 'SHA256' }),
    );
    return { sha256, uploadId: response.UploadId! };
  }

  async uploadPart(state: MultipartState, partNumber: number, body: Buffer, abortSignal?: AbortSignal): Promise<CompletedPart> {
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

  async completeMultipart(state: MultipartState, parts: CompletedPart[]): Promise<void> {
    await this.options.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.options.bucket,
        Key: this.blobKey(state.sha256),
        UploadId: state.uploadId,
        MultipartUpload: { Parts: [...parts].sort((a, b) => a.PartNumber! - b.PartNumber!) },
      }),
    );
  }

  async abortMultipart(state: MultipartState): Promise<void> {
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
