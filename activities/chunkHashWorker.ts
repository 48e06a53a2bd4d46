/**
 * Runs in a worker thread (piscina): splits one file into content-defined
 * chunks and hashes each, while the activity's own thread reads the same
 * file for its whole-file sha256. Two threads keep one large file's
 * snapshot near the speed of a plain sha256 pass.
 */
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { ChunkSplitter } from '../core/chunking';
import type { ChunkRef } from '../core/manifest';

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

const READ_BLOCK_BYTES = 8 << 20;

export default function chunkFile({ fd }: ChunkFileTask): ChunkFileResult {
  const splitter = new ChunkSplitter();
  const chunks: ChunkRef[] = [];
  const addChunk = (chunk: Buffer) => chunks.push({ sha256: createHash('sha256').update(chunk).digest('hex'), size: chunk.length });
  const buffer = Buffer.allocUnsafe(READ_BLOCK_BYTES);
  let size = 0;
  // Blocking reads are fine here: this thread does nothing else.
  for (let bytesRead = readSync(fd, buffer, 0, buffer.length, size); bytesRead > 0; bytesRead = readSync(fd, buffer, 0, buffer.length, size)) {
    splitter.write(buffer.subarray(0, bytesRead), addChunk);
    size += bytesRead;
  }
  splitter.end(addChunk);
  return { chunks, size };
}
