/**
 * Content-defined chunking (FastCDC, Xia et al. 2016, with normalized
 * chunking): cut points depend on the bytes around them, not on offsets, so
 * an edit in the middle of a large file changes only the chunks it touches
 * and every other chunk keeps its sha256. Large files are stored and landed
 * as chunks; an edit costs the changed chunks, not the file.
 *
 * Pure and deterministic: the worker (snapshot) and the runtime agent (which
 * splits the file it already holds to reuse its chunks) must cut the same
 * bytes at the same places, so both use this module with the same parameters.
 */

export interface ChunkingParams {
  minBytes: number;
  /** Expected chunk size; a power of two. */
  averageBytes: number;
  maxBytes: number;
}

/** 128 KiB / 512 KiB / 2 MiB: a 1 MB edit costs about 2 MB of chunks, and a 500 MB file about 1,000 entries. */
export const CHUNKING: ChunkingParams = { minBytes: 128 << 10, averageBytes: 512 << 10, maxBytes: 2 << 20 };

/** Files at least this big are chunked; smaller ones are one blob. */
export const CHUNKED_FROM_BYTES = 8 << 20;

export function isChunkedSize(size: number): boolean {
  return size >= CHUNKED_FROM_BYTES;
}

/** Fixed pseudo-random table (a 32-bit LCG from a fixed seed): changing it changes every cut point. */
const GEAR = (() => {
  const table = new Int32Array(256);
  let state = 0x9e3779b9;
  for (let i = 0; i < 256; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) | 0;
    table[i] = state;
  }
  return table;
})();

/** Each gear value shifted left once: lets the hot loop roll two bytes per step (FastCDC 2020). */
const GEAR_SHIFTED = GEAR.map((value) => (value << 1) | 0);

/**
 * `bits` set bits ending at bit 30. High bits of a left-shifting gear hash
 * depend on the most bytes; bit 31 stays clear so the mask shifted left once
 * (for the two-bytes-per-step check) loses none of them.
 */
function highBitsMask(bits: number): number {
  return (((1 << bits) - 1) << (31 - bits)) | 0;
}

interface CutMasks {
  /** Harder to match, used before the average size: fewer small chunks. */
  small: number;
  /** Easier to match, used after it: fewer chunks near the maximum. */
  large: number;
}

function cutMasks(params: ChunkingParams): CutMasks {
  const bits = Math.round(Math.log2(params.averageBytes));
  return { small: highBitsMask(bits + 2), large: highBitsMask(bits - 2) };
}

/**
 * The first index in `[from, to)` where the gear hash (started at 0 at
 * `from`) matches `mask`, plus one; `to` when none does. Two bytes a step:
 * after the first byte the hash is checked in its shifted form, which is the
 * same test without the second shift.
 */
function scanForCut(data: Uint8Array, from: number, to: number, mask: number, hash: number): { end: number; hash: number } {
  const shiftedMask = mask << 1;
  let i = from;
  for (; i + 1 < to; i += 2) {
    hash = ((hash << 2) + GEAR_SHIFTED[data[i]]) | 0;
    if ((hash & shiftedMask) === 0) return { end: i + 1, hash };
    hash = (hash + GEAR[data[i + 1]]) | 0;
    if ((hash & mask) === 0) return { end: i + 2, hash };
  }
  if (i < to) {
    hash = ((hash << 1) + GEAR[data[i]]) | 0;
    if ((hash & mask) === 0) return { end: i + 1, hash };
  }
  return { end: -1, hash };
}

/** Problems with chunking parameters; empty when usable. */
export function chunkingParamsProblems(params: ChunkingParams): string[] {
  const problems: string[] = [];
  const { minBytes, averageBytes, maxBytes } = params;
  if (!Number.isSafeInteger(minBytes) || minBytes < 64) problems.push('minBytes must be an integer of at least 64');
  if (!Number.isSafeInteger(averageBytes) || averageBytes <= minBytes || 2 ** Math.round(Math.log2(averageBytes)) !== averageBytes)
    problems.push('averageBytes must be a power of two above minBytes');
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= averageBytes) problems.push('maxBytes must be above averageBytes');
  return problems;
}

/**
 * Where the chunk starting at `start` ends in `data[start, end)`: an index in
 * `(start, end]`. Only the final chunk of a file may be cut at `end` without
 * a content match, so callers pass at least `maxBytes` unless it is the end.
 */
export function chunkEnd(data: Uint8Array, start: number, end: number, params: ChunkingParams = CHUNKING, masks: CutMasks = cutMasks(params)): number {
  const available = end - start;
  if (available <= params.minBytes) return end;
  const limit = start + Math.min(available, params.maxBytes);
  const normal = start + Math.min(available, params.averageBytes);
  const beforeNormal = scanForCut(data, start + params.minBytes, normal, masks.small, 0);
  if (beforeNormal.end >= 0) return beforeNormal.end;
  const afterNormal = scanForCut(data, normal, limit, masks.large, beforeNormal.hash);
  return afterNormal.end >= 0 ? afterNormal.end : limit;
}

/**
 * Splits a stream of bytes into chunks: feed it with `write`, finish with
 * `end`. Each chunk is handed to `onChunk` as a view that is only valid
 * during the call (hash or copy it there). Holds at most `maxBytes` between
 * writes.
 */
export class ChunkSplitter {
  private pending: Buffer = Buffer.alloc(0);
  private readonly masks: CutMasks;

  constructor(private readonly params: ChunkingParams = CHUNKING) {
    const problems = chunkingParamsProblems(params);
    if (problems.length) throw new RangeError(`chunking parameters: ${problems.join('; ')}`);
    this.masks = cutMasks(params);
  }

  write(data: Uint8Array, onChunk: (chunk: Buffer) => void): void {
    const buffer = this.pending.length ? Buffer.concat([this.pending, data]) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    let start = 0;
    // Cut only while a whole maximum-size window is there: a cut never depends on where a write ended.
    while (buffer.length - start >= this.params.maxBytes) {
      const end = chunkEnd(buffer, start, buffer.length, this.params, this.masks);
      onChunk(buffer.subarray(start, end));
      start = end;
    }
    this.pending = Buffer.from(buffer.subarray(start));
  }

  end(onChunk: (chunk: Buffer) => void): void {
    let start = 0;
    while (start < this.pending.length) {
      const end = chunkEnd(this.pending, start, this.pending.length, this.params, this.masks);
      onChunk(this.pending.subarray(start, end));
      start = end;
    }
    this.pending = Buffer.alloc(0);
  }
}
