/**
 * How `POST /v1/land` fetches bodies: a whole blob object by its presigned
 * URL, or byte ranges of pack objects (core/packs), where one request reads
 * many neighbouring blobs. Every blob's bytes are checked against its size
 * and sha256 before anything is made of them, whichever way they came.
 *
 * Ranges are planned from the land request: the whole small files in packs
 * are sorted by place and coalesced across the request (core/packs
 * coalescePlaces), a chunked file's missing chunks in file order. A range is
 * held in memory from its arrival until every blob in it was taken, and one
 * range ahead is fetched while the current one is written.
 */
import { createHash } from 'node:crypto';
import type { LandChunk, LandFile, PackedAt } from '../core/agentProtocol';
import { FailureType, fetchFailureDetail } from '../core/errors';
import { coalescePlaces, type PackPlace, type PackRange } from '../core/packs';
import { quotePath } from '../core/paths';
import { AgentFailure, invalid, toAgentFailure } from './failure';
import type { UrlAllowlist } from './urlAllowlist';

/** A blob server that sends nothing for this long is treated as dead. */
const BLOB_IDLE_TIMEOUT_MS = 60_000;
/** Ranges fetched ahead of the one being used: each up to 8 MiB in memory. */
const RANGES_AHEAD = 1;

/** A land request's pack URLs, each an allowed blob-store URL. */
export function allowedPackUrls(packs: unknown, allowlist: UrlAllowlist): string[] {
  if (packs === undefined) return [];
  if (!Array.isArray(packs)) throw invalid('land request packs is not an array');
  packs.forEach((url, index) => allowlist.check(url, `pack ${index}`));
  return packs as string[];
}

/**
 * Where one blob (a file's body or a chunk) is fetched from: an allowed
 * `url`, or a place in one of the request's `packCount` packs; exactly one.
 * Returns those fields alone.
 */
export function blobSource(blob: { url?: unknown; pack?: unknown; offset?: unknown }, packCount: number, allowlist: UrlAllowlist, path: string): { url: string } | PackedAt {
  const inPack = blob.pack !== undefined || blob.offset !== undefined;
  if ((blob.url !== undefined) === inPack) throw invalid(`file ${quotePath(path)} needs exactly one of url, pack or chunks for each body`);
  if (!inPack) {
    allowlist.check(blob.url, path);
    return { url: blob.url as string };
  }
  const { pack, offset } = blob as { pack: number; offset: number };
  if (!Number.isSafeInteger(pack) || pack < 0 || pack >= packCount) throw invalid(`file ${quotePath(path)} names pack ${JSON.stringify(pack)}, not one of the request's ${packCount}`);
  if (!Number.isSafeInteger(offset) || offset < 0) throw invalid(`file ${quotePath(path)} has a pack offset that is not a non-negative integer`);
  return { pack, offset };
}

export const sha256Of = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

export function mismatch(label: string, path: string, expected: { size: number; sha256: string }, actual: string): AgentFailure {
  return new AgentFailure(FailureType.ChecksumMismatch, `${label} does not match: expected ${expected.size} bytes with sha256 ${expected.sha256}, got ${actual}`, { path });
}

/** Checks one blob's bytes (from an object or a range) against its size and sha256. */
export function checkBlob(bytes: Uint8Array, expected: { size: number; sha256: string }, label: string, path: string): void {
  const sha256 = sha256Of(bytes);
  if (bytes.length !== expected.size || sha256 !== expected.sha256) throw mismatch(label, path, expected, `${bytes.length} bytes with sha256 ${sha256}`);
}

/**
 * Streams the body at `url` (bytes `[range.start, range.end)` of it when a
 * range is given) to `write`, at most `maxBytes` of it (more fails with
 * `excess()`); returns how many bytes came. Network trouble, a bad status and silence are
 * BlobDownloadFailed (retryable by the caller's caller); a failed write
 * keeps its own type.
 */
async function streamBody(
  url: string,
  range: { start: number; end: number } | undefined,
  maxBytes: number,
  excess: () => AgentFailure,
  label: string,
  path: string,
  signal: AbortSignal,
  write: (bytes: Uint8Array) => Promise<void> | void,
): Promise<number> {
  const origin = new URL(url).origin;
  const fail = (message: string) => new AgentFailure(FailureType.BlobDownloadFailed, `${label} from ${origin}: ${message}`, { path, url: origin });
  const idle = new AbortController();
  const idleTimer = setTimeout(() => idle.abort(), BLOB_IDLE_TIMEOUT_MS);
  const downloadSignal = AbortSignal.any([signal, idle.signal]);
  // Node 20's fetch can leave the next read of a body pending forever when its signal aborts while
  // the reader is between reads (one download failing while others write hung the whole landing).
  // Cancelling through the reader itself ends that read at once.
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  const cancelRead = () => void reader?.cancel(downloadSignal.reason).catch(() => undefined);
  downloadSignal.addEventListener('abort', cancelRead, { once: true });
  try {
    const headers = range ? { range: `bytes=${range.start}-${range.end - 1}` } : undefined;
    const response = await fetch(url, { redirect: 'error', signal: downloadSignal, headers });
    // A server that ignores the range answers 200 with the whole object: the bytes before the range are skipped.
    const okStatus = range ? response.status === 206 || response.status === 200 : response.ok;
    if (!okStatus || !response.body) {
      await response.body?.cancel().catch(() => undefined);
      throw fail(`HTTP status ${response.status}`);
    }
    let skip = range && response.status === 200 ? range.start : 0;
    let size = 0;
    reader = response.body.getReader();
    downloadSignal.throwIfAborted();
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      idleTimer.refresh();
      let bytes = chunk.value;
      if (skip > 0) {
        const skipped = Math.min(skip, bytes.length);
        skip -= skipped;
        bytes = bytes.subarray(skipped);
      }
      if (bytes.length === 0) continue;
      const room = maxBytes - size;
      // Stop early instead of filling the disk with bytes that can no longer match.
      if (bytes.length > room) {
        if (range && response.status === 200) {
          size += room;
          await write(bytes.subarray(0, room));
          break;
        }
        throw excess();
      }
      size += bytes.length;
      await write(bytes);
    }
    // A read ended by cancelling is not the end of the body.
    downloadSignal.throwIfAborted();
    return size;
  } catch (err) {
    if (err instanceof AgentFailure) throw err;
    if (idle.signal.aborted) throw fail(`no bytes received for ${BLOB_IDLE_TIMEOUT_MS / 1000} s`);
    if (signal.aborted) throw err;
    // Errors with a syscall (ENOSPC among them) come from writing the temp file; fetch reports network trouble as TypeError with a cause.
    if (typeof (err as { syscall?: unknown }).syscall === 'string') throw toAgentFailure(err, path);
    throw fail(fetchFailureDetail(err));
  } finally {
    clearTimeout(idleTimer);
    downloadSignal.removeEventListener('abort', cancelRead);
    // Releases the connection when the loop stopped early (too many bytes, a failed write); a no-op after the end.
    void reader?.cancel().catch(() => undefined);
  }
}

/** Streams the blob at `url` to `write`, checking size and sha256 as the bytes pass. */
export async function fetchVerified(
  url: string,
  expected: { size: number; sha256: string },
  label: string,
  path: string,
  signal: AbortSignal,
  write: (bytes: Uint8Array) => Promise<void>,
): Promise<void> {
  const hash = createHash('sha256');
  const excess = () => mismatch(label, path, expected, `more than ${expected.size} bytes`);
  const size = await streamBody(url, undefined, expected.size, excess, label, path, signal, async (bytes) => {
    hash.update(bytes);
    await write(bytes);
  });
  const sha256 = hash.digest('hex');
  if (size !== expected.size || sha256 !== expected.sha256) throw mismatch(label, path, expected, `${size} bytes with sha256 ${sha256}`);
}

/** Bytes `[start, end)` of the pack at `url`, all of them or a BlobDownloadFailed. */
export async function fetchRange(url: string, range: { start: number; end: number }, label: string, path: string, signal: AbortSignal): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(range.end - range.start);
  let filled = 0;
  const origin = new URL(url).origin;
  const excess = () => new AgentFailure(FailureType.BlobDownloadFailed, `${label} from ${origin}: more than the ${buffer.length} bytes asked for at ${range.start}-${range.end - 1}`, { path, url: origin });
  const size = await streamBody(url, range, buffer.length, excess, label, path, signal, (bytes) => {
    buffer.set(bytes, filled);
    filled += bytes.length;
  });
  if (size !== buffer.length) {
    throw new AgentFailure(FailureType.BlobDownloadFailed, `${label} from ${origin}: ${size} bytes at ${range.start}-${range.end - 1}, not ${buffer.length}`, { path, url: origin });
  }
  return buffer;
}

/** Ranges of one request's packs, each fetched once, kept while blobs in it are still to be taken. */
class RangeReader {
  private readonly fetched: (Promise<Buffer> | undefined)[];
  private readonly users: number[];

  constructor(
    private readonly urls: string[],
    private readonly ranges: PackRange<number>[],
    users: number[],
    private readonly signal: AbortSignal,
  ) {
    this.fetched = ranges.map(() => undefined);
    this.users = users;
  }

  /** The bytes of range `index` (fetching it and the next ones, if not yet), and its start. */
  async bytes(index: number, label: string, path: string): Promise<{ buffer: Buffer; start: number }> {
    for (let ahead = index; ahead <= index + RANGES_AHEAD && ahead < this.ranges.length; ahead++) {
      if (this.fetched[ahead] !== undefined || this.users[ahead] <= 0) continue;
      const range = this.ranges[ahead];
      const fetched = fetchRange(this.urls[range.pack], range, ahead === index ? label : `pack ${range.pack} bytes ${range.start}-${range.end - 1}`, path, this.signal);
      // Seen when its turn comes; this only keeps a failure of a range fetched ahead from going unhandled.
      fetched.catch(() => undefined);
      this.fetched[ahead] = fetched;
    }
    const buffer = await (this.fetched[index] ?? fetchRange(this.urls[this.ranges[index].pack], this.ranges[index], label, path, this.signal));
    return { buffer, start: this.ranges[index].start };
  }

  /** One user of range `index` is done with it; the last one lets its bytes go. */
  release(index: number): void {
    if (--this.users[index] <= 0) this.fetched[index] = undefined;
  }
}

type PackedFile = LandFile & PackedAt;
type PackedChunk = LandChunk & PackedAt;

export const isPackedFile = (file: LandFile): file is PackedFile => file.pack !== undefined;
const isPackedChunk = (chunk: LandChunk): chunk is PackedChunk => chunk.pack !== undefined;

const placeOf = (blob: PackedAt & { size: number }): PackPlace<number> => ({ pack: blob.pack, offset: blob.offset, size: blob.size });

/**
 * The whole files of one land request whose bodies sit in packs, read in
 * as few ranges as their places allow. Give them sorted by place
 * (core/packs comparePlaces) and land them in that order, so each range is
 * taken whole soon after it arrived.
 */
export class PackedFiles {
  private readonly reader: RangeReader;
  private readonly rangeOf = new Map<PackedFile, number>();

  constructor(urls: string[], files: PackedFile[], signal: AbortSignal) {
    const withBytes = files.filter((file) => file.size > 0);
    const { ranges, rangeOf } = coalescePlaces(withBytes.map(placeOf));
    const users = ranges.map(() => 0);
    withBytes.forEach((file, index) => {
      this.rangeOf.set(file, rangeOf[index]);
      users[rangeOf[index]]++;
    });
    this.reader = new RangeReader(urls, ranges, users, signal);
  }

  /** The file's body, checked against its size and sha256. */
  async body(file: PackedFile, label: string): Promise<Buffer> {
    const index = this.rangeOf.get(file);
    if (index === undefined) {
      checkBlob(Buffer.alloc(0), file, label, file.path);
      return Buffer.alloc(0);
    }
    try {
      const { buffer, start } = await this.reader.bytes(index, label, file.path);
      const bytes = buffer.subarray(file.offset - start, file.offset - start + file.size);
      checkBlob(bytes, file, label, file.path);
      return bytes;
    } finally {
      this.reader.release(index);
    }
  }

  /** The file is not fetched after all (already there): its range need not wait for it. */
  skip(file: LandFile): void {
    const index = isPackedFile(file) ? this.rangeOf.get(file) : undefined;
    if (index !== undefined) this.reader.release(index);
  }
}

/**
 * The chunks of one file still to be fetched from packs, in file order,
 * read in runs of neighbouring chunks. A chunk asked for that was not
 * planned (the copy from the old version changed under it) is read alone.
 */
export class PackedChunks {
  private readonly reader: RangeReader;
  private readonly runOf = new Map<number, number>();

  constructor(
    private readonly urls: string[],
    private readonly chunks: LandChunk[],
    wanted: number[],
    private readonly signal: AbortSignal,
  ) {
    const packed = wanted.filter((index) => isPackedChunk(chunks[index]));
    const { ranges, rangeOf } = coalescePlaces(packed.map((index) => placeOf(chunks[index] as PackedChunk)));
    const users = ranges.map(() => 0);
    packed.forEach((chunkIndex, index) => {
      this.runOf.set(chunkIndex, rangeOf[index]);
      users[rangeOf[index]]++;
    });
    this.reader = new RangeReader(urls, ranges, users, signal);
  }

  /**
   * Chunk `index`'s bytes from its pack, as read: not hashed on their own,
   * since the whole file is hashed as it is written and a wrong chunk makes
   * it mismatch (the caller then finds which chunk it was).
   */
  async chunk(index: number, label: string, path: string): Promise<Buffer> {
    const chunk = this.chunks[index] as PackedChunk;
    const run = this.runOf.get(index);
    let bytes: Buffer;
    if (run === undefined) bytes = await fetchRange(this.urls[chunk.pack], { start: chunk.offset, end: chunk.offset + chunk.size }, label, path, this.signal);
    else {
      try {
        const { buffer, start } = await this.reader.bytes(run, label, path);
        bytes = buffer.subarray(chunk.offset - start, chunk.offset - start + chunk.size);
      } finally {
        this.reader.release(run);
      }
    }
    if (bytes.length !== chunk.size) throw mismatch(label, path, chunk, `${bytes.length} bytes`);
    return bytes;
  }
}
