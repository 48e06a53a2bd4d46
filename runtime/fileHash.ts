/**
 * Hashing a file that already sits on the target, for the "already present"
 * check of land and for the listing that verification trusts. What is
 * hashed is read from the disk, except that a file whose stat signature has
 * not changed since this agent last read it is known by that read
 * (core/hashCache, DESIGN principle 8): a restarted agent, a rewritten file
 * or one written just before it was read is read again.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, type FileHandle } from 'node:fs/promises';
import { HashCache, statSignature } from '../core/hashCache';
import { errorCode } from './failure';

export interface HashedFile {
  size: number;
  /** Permission bits, as in a manifest entry. */
  mode: number;
  sha256: string;
}

const READ_CHUNK_BYTES = 1 << 20;
// O_NOFOLLOW: a symlink at the last component is refused instead of followed.
// O_NONBLOCK: a fifo planted where a file was expected cannot block the open.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const NOT_A_FILE_CODES = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

export const EMPTY_SHA256 = createHash('sha256').digest('hex');

/**
 * Opens the regular file at `absolute` for reading, or returns undefined when
 * there is none there (missing, a symlink, a directory or anything else).
 */
export async function openRegularFile(absolute: string): Promise<FileHandle | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(absolute, OPEN_FLAGS);
  } catch (err) {
    if (NOT_A_FILE_CODES.has(errorCode(err) ?? '')) return undefined;
    throw err;
  }
  let isFile = false;
  try {
    isFile = (await handle.stat()).isFile();
  } finally {
    if (!isFile) await handle.close();
  }
  return isFile ? handle : undefined;
}

async function readSha256(handle: FileHandle, signal?: AbortSignal): Promise<{ size: number; sha256: string }> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);
  let size = 0;
  for (;;) {
    signal?.throwIfAborted();
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, size);
    hash.update(buffer.subarray(0, bytesRead));
    size += bytesRead;
    // A regular file reads short only at its end.
    if (bytesRead < buffer.length) break;
  }
  return { size, sha256: hash.digest('hex') };
}

const nowNs = () => BigInt(Date.now()) * 1_000_000n;

/** Hashes files on the target, remembering each under its stat signature for this agent's lifetime. */
export class FileHasher {
  private readonly known = new HashCache<{ size: number; sha256: string }>();

  async hashOpenFile(handle: FileHandle, absolute: string, signal?: AbortSignal): Promise<HashedFile> {
    const stats = await handle.stat({ bigint: true });
    const mode = Number(stats.mode & 0o7777n);
    const signature = statSignature(stats);
    const known = this.known.get(absolute, signature);
    if (known) return { ...known, mode };
    const readStartedNs = nowNs();
    // Size is what was hashed, not what stat said, so the two always describe the same bytes.
    const read = await readSha256(handle, signal);
    if (BigInt(read.size) === stats.size) this.known.set(absolute, signature, readStartedNs, read);
    return { ...read, mode };
  }

  /** Size, mode and sha256 of the regular file at `absolute`, or undefined when there is none. */
  async hashRegularFile(absolute: string, signal?: AbortSignal): Promise<HashedFile | undefined> {
    // A known file costs one lstat (which, like O_NOFOLLOW, never follows a symlink); anything else is opened and read.
    const stats = await lstat(absolute, { bigint: true }).catch(() => undefined);
    const known = stats?.isFile() ? this.known.get(absolute, statSignature(stats)) : undefined;
    if (stats && known) return { ...known, mode: Number(stats.mode & 0o7777n) };
    const handle = await openRegularFile(absolute);
    if (!handle) return undefined;
    try {
      return await this.hashOpenFile(handle, absolute, signal);
    } finally {
      await handle.close();
    }
  }
}

/** Size and mode of the regular file at `absolute` without reading it, or undefined when there is none. */
export async function statRegularFile(absolute: string): Promise<{ size: number; mode: number } | undefined> {
  const handle = await openRegularFile(absolute);
  if (!handle) return undefined;
  try {
    const stats = await handle.stat();
    return { size: stats.size, mode: stats.mode & 0o7777 };
  } finally {
    await handle.close();
  }
}
