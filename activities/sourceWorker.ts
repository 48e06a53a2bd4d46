/**
 * Runs in worker threads (piscina) for snapshotSource: the filesystem calls
 * of a snapshot, made with blocking calls, which cost a few microseconds each
 * where the activity's promise-based calls cost tens: on a tree of 100,000
 * small files those calls are the snapshot's time. Blocking is fine here,
 * since these threads do nothing else, and it keeps the activity's thread
 * free for heartbeats.
 *
 * - `listDirectory`: a folder's entries with their lstat (never following links).
 * - `hashFiles`: sha256 of a batch of files, each opened without following a
 *   link and checked to be the file the listing saw (device and inode).
 * - `chunkFile` (default): splits one large file into content-defined chunks
 *   while the activity's thread reads the same file for its whole sha256.
 */
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, readdirSync, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { ChunkSplitter } from '../core/chunking';
import { fileIdentity, isRememberable, signatureKey } from '../core/hashCache';
import type { ChunkRef } from '../core/manifest';

/** What an entry of a folder is, as lstat says (links are never followed). */
export const EntryKind = { Vanished: 0, File: 1, Directory: 2, Symlink: 3, Other: 4 } as const;

/**
 * A folder's entries in parallel arrays: results cross between threads as
 * typed arrays and a few strings, since a message of one object per entry
 * costs the activity's thread more (in time and in garbage that outlives
 * it) than the calls that made it.
 */
export interface DirectoryListing {
  /** The folder itself vanished (or became a file) before it was read. */
  vanished?: true;
  /** Sorted. */
  names: string[];
  /** An EntryKind per name; Vanished for one gone between readdir and lstat. */
  kinds: Uint8Array;
  /** Size (files), permission bits and stat signature key (core/hashCache signatureKey; '' but for files) per name. */
  sizes: Float64Array;
  modes: Uint16Array;
  signatures: string[];
}

export function entryKind(stats: BigIntStats): number {
  if (stats.isFile()) return EntryKind.File;
  if (stats.isDirectory()) return EntryKind.Directory;
  return stats.isSymbolicLink() ? EntryKind.Symlink : EntryKind.Other;
}

const errorCode = (err: unknown) => (err as NodeJS.ErrnoException).code;

export function listDirectory({ dir }: { dir: string }): DirectoryListing {
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return { vanished: true, names: [], kinds: new Uint8Array(0), sizes: new Float64Array(0), modes: new Uint16Array(0), signatures: [] };
    throw err;
  }
  const listing: DirectoryListing = { names, kinds: new Uint8Array(names.length), sizes: new Float64Array(names.length), modes: new Uint16Array(names.length), signatures: [] };
  for (const [index, name] of names.entries()) {
    let stats: BigIntStats;
    try {
      stats = lstatSync(path.join(dir, name), { bigint: true });
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
      listing.signatures.push('');
      continue;
    }
    const kind = entryKind(stats);
    listing.kinds[index] = kind;
    listing.sizes[index] = Number(stats.size);
    listing.modes[index] = Number(stats.mode & 0o777n);
    listing.signatures.push(kind === EntryKind.File ? signatureKey(stats) : '');
  }
  return listing;
}

/** Files to hash: where to open each and the signature key the listing saw there. */
export interface HashFilesTask {
  paths: string[];
  signatures: string[];
}

/** What a read of a file came to. */
export const ReadOutcome = {
  Hashed: 0,
  /** Not the file the listing saw: a link now, another inode, or not a regular file (`details` says which). */
  Replaced: 1,
  /** Changed (size, mtime or ctime) while it was read: read it again. */
  Changed: 2,
  Vanished: 3,
} as const;

/** Outcomes of a HashFilesTask, per file, in parallel arrays (see DirectoryListing). */
export interface HashedFiles {
  outcomes: Uint8Array;
  /** 32 bytes per file: the sha256 of hashed files. */
  digests: Uint8Array;
  sizes: Float64Array;
  modes: Uint16Array;
  /**
   * The signature key the bytes belong to, taken after opening and before
   * reading: '' when it is the listed one, and '' too when the read may not
   * be remembered (`rememberable` 0, core/hashCache isRememberable).
   */
  signatures: string[];
  rememberable: Uint8Array;
  /** Why a Replaced file is not the listed one; '' for the others. */
  details: string[];
}

/**
 * O_NOFOLLOW: a link at the last component is refused, never followed.
 * O_NONBLOCK: a fifo planted where a file was is not waited on.
 */
export const OPEN_NO_FOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** Reads of this size: large enough that a read costs little per byte. */
export const READ_BLOCK_BYTES = 8 << 20;
let readBuffer: Buffer | undefined;

const nowNs = () => BigInt(Date.now()) * 1_000_000n;

/** Why the opened file (`stats`) is not the one the listing saw (its signature key), or undefined when it is. */
export function identityProblem(listedSignature: string, stats: BigIntStats): string | undefined {
  if (!stats.isFile()) return 'is no longer a regular file';
  if (fileIdentity(signatureKey(stats)) !== fileIdentity(listedSignature)) return 'was replaced by another file';
  return undefined;
}

function hashOne(into: HashedFiles, index: number, absolutePath: string, listedSignature: string): number {
  let fd: number;
  try {
    fd = openSync(absolutePath, OPEN_NO_FOLLOW);
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return ReadOutcome.Vanished;
    if (errorCode(err) !== 'ELOOP') throw err;
    into.details[index] = 'was replaced by a symlink';
    return ReadOutcome.Replaced;
  }
  try {
    const before = fstatSync(fd, { bigint: true });
    const problem = identityProblem(listedSignature, before);
    if (problem) {
      into.details[index] = problem;
      return ReadOutcome.Replaced;
    }
    const readStartedNs = nowNs();
    const hash = createHash('sha256');
    readBuffer ??= Buffer.allocUnsafe(READ_BLOCK_BYTES);
    // One byte more than the size reveals a file that grew; a regular file reads short only at its end.
    const wanted = Math.min(readBuffer.length, Number(before.size) + 1);
    let size = 0;
    for (;;) {
      const bytesRead = readSync(fd, readBuffer, 0, wanted, size);
      hash.update(readBuffer.subarray(0, bytesRead));
      size += bytesRead;
      if (bytesRead < wanted) break;
    }
    const after = fstatSync(fd, { bigint: true });
    if (BigInt(size) !== before.size || after.size !== before.size || after.mtimeNs !== before.mtimeNs || after.ctimeNs !== before.ctimeNs) return ReadOutcome.Changed;
    hash.digest().copy(into.digests, index * 32);
    into.sizes[index] = size;
    into.modes[index] = Number(before.mode & 0o777n);
    const key = signatureKey(before);
    into.rememberable[index] = isRememberable(before, readStartedNs) ? 1 : 0;
    if (key !== listedSignature && into.rememberable[index]) into.signatures[index] = key;
    return ReadOutcome.Hashed;
  } finally {
    closeSync(fd);
  }
}

export function hashFiles({ paths, signatures }: HashFilesTask): HashedFiles {
  const count = paths.length;
  const into: HashedFiles = {
    outcomes: new Uint8Array(count),
    digests: new Uint8Array(count * 32),
    sizes: new Float64Array(count),
    modes: new Uint16Array(count),
    signatures: new Array<string>(count).fill(''),
    rememberable: new Uint8Array(count),
    details: new Array<string>(count).fill(''),
  };
  for (let index = 0; index < count; index++) into.outcomes[index] = hashOne(into, index, paths[index], signatures[index]);
  return into;
}

export interface ChunkFileTask {
  /**
   * A descriptor the activity holds open: threads share the process's
   * descriptors, so both threads read the same file even if its path is
   * replaced meanwhile.
   */
  fd: number;
}

export interface ChunkFileResult {
  chunks: ChunkRef[];
  /** Bytes read: the caller compares it with its own count and the file's size. */
  size: number;
}

export default function chunkFile({ fd }: ChunkFileTask): ChunkFileResult {
  const splitter = new ChunkSplitter();
  const chunks: ChunkRef[] = [];
  const addChunk = (chunk: Buffer) => chunks.push({ sha256: createHash('sha256').update(chunk).digest('hex'), size: chunk.length });
  const buffer = Buffer.allocUnsafe(READ_BLOCK_BYTES);
  let size = 0;
  for (let bytesRead = readSync(fd, buffer, 0, buffer.length, size); bytesRead > 0; bytesRead = readSync(fd, buffer, 0, buffer.length, size)) {
    splitter.write(buffer.subarray(0, bytesRead), addChunk);
    size += bytesRead;
  }
  splitter.end(addChunk);
  return { chunks, size };
}
