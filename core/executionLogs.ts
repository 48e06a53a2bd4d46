/**
 * Where a pipeline execution's output lives while it runs: stdout and
 * stderr shipped to S3 in chunks, each keyed by the byte offset it starts
 * at, under a prefix per workflow and execution id. executeCode writes
 * them; `ferry exec --follow/--attach` and `ferry mcp` read them back, so a
 * stream outlives the CLI, the worker and the session.
 *
 * A chunk may be written again (a retried probe, an activity attempt
 * resuming from an older offset) and then holds at least the bytes it held
 * before, so readers go by byte offsets, never by chunk names alone.
 */

export const LOG_STREAMS = ['stdout', 'stderr'] as const;
export type LogStream = (typeof LOG_STREAMS)[number];

/** Offsets are zero-padded in keys so that S3's lexicographic listing is log order. */
const OFFSET_DIGITS = 15;

/**
 * Key prefix of one execution's log chunks: `executions/<workflowId>/<executionId>/`
 * below `prefix` (the blob store's key prefix; '' gives the part the
 * workflow records, which does not know the store's prefix). The workflow id
 * is URI-encoded, so no id can reach into another's folder.
 */
export function executionLogPrefix(prefix: string, workflowId: string, executionId: string): string {
  return `${prefix}executions/${encodeURIComponent(workflowId)}/${encodeURIComponent(executionId)}/`;
}

/** The key of the chunk of `stream` that starts at byte `offset`, below a prefix from executionLogPrefix. */
export function executionLogChunkKey(logPrefix: string, stream: LogStream, offset: number): string {
  return `${logPrefix}${stream}/${String(offset).padStart(OFFSET_DIGITS, '0')}.log`;
}

export interface LogChunk {
  key: string;
  stream: LogStream;
  /** Byte offset in its stream where the chunk starts. */
  offset: number;
  size: number;
}

/** Listed objects below an execution's log prefix as chunks, by stream, each in offset order; other keys are left out. */
export function chunksFromListing(logPrefix: string, objects: readonly { key: string; size: number }[]): Record<LogStream, LogChunk[]> {
  const chunks: Record<LogStream, LogChunk[]> = { stdout: [], stderr: [] };
  for (const { key, size } of objects) {
    if (!key.startsWith(logPrefix)) continue;
    const match = /^(stdout|stderr)\/(\d+)\.log$/.exec(key.slice(logPrefix.length));
    if (!match) continue;
    const stream = match[1] as LogStream;
    chunks[stream].push({ key, stream, offset: Number(match[2]), size });
  }
  for (const stream of LOG_STREAMS) chunks[stream].sort((a, b) => a.offset - b.offset);
  return chunks;
}

/** Part of a chunk to read: bytes [from, to) of the chunk object. */
export interface ChunkRead {
  chunk: LogChunk;
  from: number;
  to: number;
}

/**
 * The reads that continue a stream from byte `position` without a gap or a
 * repeat: each chunk that starts at or before the position and reaches past
 * it, in order. Stops at the first gap (a chunk not shipped yet, or listed
 * out of step): the bytes after it come on a later pass.
 */
export function readsFrom(chunks: readonly LogChunk[], position: number): ChunkRead[] {
  const reads: ChunkRead[] = [];
  let at = position;
  for (const chunk of chunks) {
    const end = chunk.offset + chunk.size;
    if (end <= at) continue;
    if (chunk.offset > at) break;
    reads.push({ chunk, from: at - chunk.offset, to: chunk.size });
    at = end;
  }
  return reads;
}
