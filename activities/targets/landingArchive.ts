/**
 * The archive a script-reached target lands from: the files it lacks, read
 * from the blob store (each checked against its sha256 on the way), the
 * text of the links it lacks, plus the checksums the land script checks and the list of paths to remove
 * (core/shellScripts LAND_SCRIPT). One object, one download: thousands of
 * small files cost the target one request, not thousands. Blobs in packs
 * (core/packs) are read in ranges, many neighbouring blobs a request: the
 * files go into the archive in the order their bytes sit in the packs.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { createGzip } from 'node:zlib';
import { pack, type Pack } from 'tar-stream';
import { FailureType, fetchFailureDetail } from '../../core/errors';
import { blobsOfEntry, type ChunkRef, type ManifestEntry } from '../../core/manifest';
import { comparePlaces, type PackPlace } from '../../core/packs';
import { checksumLine, nulPathList } from '../../core/shellScripts';
import { nonRetryable, retryable } from '../failures';
import { SequentialPackReader } from '../packReads';
import type { TargetTransfer } from '../blobStore';

export interface LandingArchive {
  file: string;
  sha256: string;
  /** Compressed size. */
  bytes: number;
  /** Size of the tar stream before gzip: the land script refuses an archive that unpacks to more. */
  tarBytes: number;
}

/** The body of one blob (a whole file or one of its chunks), as a stream. */
async function openBlob(blobs: TargetTransfer, sha256: string, entry: ManifestEntry, signal: AbortSignal): Promise<Readable> {
  const url = await blobs.presignBlobGet(sha256);
  let response: Response;
  try {
    response = await fetch(url, { signal });
  } catch (err) {
    throw retryable(FailureType.BlobDownloadFailed, `cannot read blob ${sha256} for ${JSON.stringify(entry.path)}: ${fetchFailureDetail(err)}`, { path: entry.path });
  }
  if (!response.ok || !response.body) throw retryable(FailureType.BlobDownloadFailed, `blob ${sha256} for ${JSON.stringify(entry.path)} answered HTTP ${response.status}`, { path: entry.path });
  return Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
}

/** Where the archive's blobs come from: packed ones in order through `packed`, the others each by its own request. */
interface BlobBodies {
  places: Map<string, PackPlace>;
  packed: SequentialPackReader;
}

const sha256Hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * The next packed blob's bytes, checked against its sha256; bytes that do
 * not match are read once more on their own (damage on the way arrives whole
 * the second time) before the blob is reported damaged, by its sha256.
 */
async function packedBlob(blobs: TargetTransfer, bodies: BlobBodies, blob: ChunkRef, place: PackPlace, label: string, entry: ManifestEntry, signal: AbortSignal): Promise<Buffer> {
  const read = (attempt: () => Promise<Buffer>) =>
    attempt().catch((err: unknown) => {
      throw retryable(FailureType.BlobDownloadFailed, `cannot read ${label} from ${blobs.packKey(place.pack)}: ${(err as Error).message}`, { path: entry.path, sha256: blob.sha256 });
    });
  let bytes = await read(() => bodies.packed.read());
  if (sha256Hex(bytes) === blob.sha256) return bytes;
  bytes = await read(() => blobs.readPackRange(place.pack, place.offset, place.offset + place.size, signal));
  const actual = sha256Hex(bytes);
  if (actual === blob.sha256) return bytes;
  throw nonRetryable(FailureType.ChecksumMismatch, `${label} hashes to ${actual}, expected ${blob.sha256} (stored in ${blobs.packKey(place.pack)})`, { path: entry.path, sha256: blob.sha256 });
}

/** Appends one file to the archive from its blob (or its chunks, in order), checking its sha256 on the way. */
async function appendBlob(blobs: TargetTransfer, bodies: BlobBodies, tarball: Pack, entry: ManifestEntry, mtime: Date, onBytes: (n: number) => void, signal: AbortSignal): Promise<void> {
  const hash = createHash('sha256');
  let sinkError: Error | undefined;
  let sink!: ReturnType<Pack['entry']>;
  const written = new Promise<void>((resolve, reject) => {
    sink = tarball.entry({ name: `files/${entry.path}`, size: entry.size, mode: entry.mode, mtime, type: 'file' }, (err) => (err ? reject((sinkError = err)) : resolve()));
  });
  written.catch(() => undefined);
  const parts = blobsOfEntry(entry);
  for (const [index, blob] of parts.entries()) {
    const place = bodies.places.get(blob.sha256);
    if (place) {
      const label = entry.chunks ? `chunk ${index + 1} of ${parts.length} of ${JSON.stringify(entry.path)}` : `blob for ${JSON.stringify(entry.path)}`;
      const bytes = await packedBlob(blobs, bodies, blob, place, label, entry, signal);
      hash.update(bytes);
      onBytes(bytes.length);
      if (!sink.write(bytes)) await Promise.race([new Promise<void>((resolve) => sink.once('drain', () => resolve())), written]);
      if (sinkError) throw sinkError;
      continue;
    }
    const body = await openBlob(blobs, blob.sha256, entry, signal);
    await new Promise<void>((resolve, reject) => {
      body.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        onBytes(chunk.length);
        if (!sink.write(chunk)) body.pause();
      });
      const resume = () => body.resume();
      sink.on('drain', resume);
      body.once('end', () => {
        sink.off('drain', resume);
        resolve();
      });
      body.once('error', reject);
    });
    if (sinkError) throw sinkError;
  }
  sink.end(undefined);
  await written;
  const actual = hash.digest('hex');
  if (actual !== entry.sha256) throw nonRetryable(FailureType.ChecksumMismatch, `blob for ${JSON.stringify(entry.path)} hashes to ${actual}, expected ${entry.sha256}`, { path: entry.path, sha256: entry.sha256 });
}

/** Files in the order their first bytes sit in the packs (files stored alone last, as given). */
function inPackOrder(files: ManifestEntry[], places: Map<string, PackPlace>): ManifestEntry[] {
  const firstPlace = (entry: ManifestEntry) => places.get((entry.chunks?.[0] ?? entry).sha256);
  const packed = files.filter((entry) => firstPlace(entry) !== undefined).sort((a, b) => comparePlaces(firstPlace(a)!, firstPlace(b)!));
  return [...packed, ...files.filter((entry) => firstPlace(entry) === undefined)];
}

/** A link entry as `links/<path>`, a file holding its text: the land script makes the link (a tar link entry is refused). */
function appendLinkText(tarball: Pack, entry: ManifestEntry, mtime: Date): void {
  const text = Buffer.from(entry.link as string, 'utf8');
  const actual = createHash('sha256').update(text).digest('hex');
  if (actual !== entry.sha256) throw nonRetryable(FailureType.ChecksumMismatch, `link ${JSON.stringify(entry.path)}: its text hashes to ${actual}, the manifest says ${entry.sha256}`, { path: entry.path });
  tarball.entry({ name: `links/${entry.path}`, size: text.length, mode: 0o644, mtime }, text);
}

/** Writes `archive.tgz` into `workDir` holding `files` (from the blob store) and the meta lists. */
export async function buildLandingArchive(
  blobs: TargetTransfer,
  files: ManifestEntry[],
  remove: string[],
  workDir: string,
  onBytes: (n: number) => void,
  signal: AbortSignal,
): Promise<LandingArchive> {
  const file = path.join(workDir, 'archive.tgz');
  const archiveHash = createHash('sha256');
  const tarball = pack();
  let tarBytes = 0;
  const written = pipeline(
    tarball as unknown as NodeJS.ReadableStream,
    new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        tarBytes += chunk.length;
        callback(null, chunk);
      },
    }),
    createGzip({ level: 6 }),
    new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        archiveHash.update(chunk);
        callback(null, chunk);
      },
    }),
    createWriteStream(file),
  );
  written.catch(() => undefined);
  const mtime = new Date();
  const regular = files.filter((entry) => entry.link === undefined);
  const links = files.filter((entry) => entry.link !== undefined);
  const places = await blobs.locateBlobs(regular.flatMap((entry) => blobsOfEntry(entry).map((blob) => blob.sha256)), signal);
  const ordered = inPackOrder(regular, places);
  const sequence = ordered.flatMap((entry) => blobsOfEntry(entry).flatMap((blob) => places.get(blob.sha256) ?? []));
  const bodies: BlobBodies = { places, packed: new SequentialPackReader(blobs, sequence, signal) };
  for (const entry of ordered) await appendBlob(blobs, bodies, tarball, entry, mtime, onBytes, signal);
  for (const entry of links) appendLinkText(tarball, entry, mtime);
  const meta = (name: string, text: string) => tarball.entry({ name: `meta/${name}`, mode: 0o644, mtime }, Buffer.from(text, 'utf8'));
  meta('SHA256SUMS', ordered.map(checksumLine).join(''));
  meta('LINKSUMS', links.map(checksumLine).join(''));
  meta('remove', nulPathList(remove));
  tarball.finalize();
  await written;
  return { file, sha256: archiveHash.digest('hex'), bytes: (await stat(file)).size, tarBytes };
}
