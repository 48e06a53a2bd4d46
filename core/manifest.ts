/**
 * A snapshot of a folder: one entry per regular file, sorted by path.
 * File bodies live in the blob store under their sha256; the manifest itself
 * is stored as a blob too and named by the sha256 of its canonical JSON.
 */
import { quotePath, unsafePathReason } from './paths';

export interface ManifestEntry {
  /** Relative POSIX path, see core/paths. */
  path: string;
  size: number;
  /** Permission bits only (e.g. 0o644 or 0o755). */
  mode: number;
  /** Lower-case hex sha256 of the file body. */
  sha256: string;
  /**
   * Large files (core/chunking): the body as content-defined chunks, in
   * order, each stored as its own blob. Absent: the body is one blob.
   */
  chunks?: ChunkRef[];
}

/** One chunk of a file's body: a blob of its own. */
export interface ChunkRef {
  sha256: string;
  size: number;
}

export interface Manifest {
  version: 1;
  files: ManifestEntry[];
}

/** What travels through workflow history instead of the manifest itself. */
export interface ManifestRef {
  manifestDigest: string;
  /** Blob-store key of the canonical manifest JSON. */
  manifestKey: string;
  filesTotal: number;
  bytesTotal: number;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function isSha256Hex(value: unknown): value is string {
  return typeof value === 'string' && SHA256_HEX.test(value);
}

/** Blob-store key of a blob; two-level fan-out keeps listings short. */
export function blobKey(prefix: string, sha256: string): string {
  return `${prefix}blobs/sha256/${sha256.slice(0, 2)}/${sha256}`;
}

export function manifestKey(prefix: string, digest: string): string {
  return `${prefix}manifests/sha256/${digest}.json`;
}

/**
 * Written (empty) once every blob of the manifest is stored, so a re-sync
 * of the same snapshot skips listing them. Blobs are never deleted by ferry;
 * a lifecycle rule that expires blobs must expire these markers first.
 */
export function blobsStoredMarkerKey(prefix: string, digest: string): string {
  return `${prefix}manifests/sha256/${digest}.blobs-stored`;
}

function comparePaths(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Builds a manifest with entries sorted by path (code-unit order, stable across platforms). */
export function createManifest(files: ManifestEntry[]): Manifest {
  return { version: 1, files: [...files].sort((a, b) => comparePaths(a.path, b.path)) };
}

/**
 * The exact bytes whose sha256 is the manifest digest: keys in fixed order,
 * entries sorted, no whitespace. Hashing is left to the caller so this
 * module stays importable from workflow code.
 */
export function canonicalManifestJson(manifest: Manifest): string {
  const files = [...manifest.files]
    .sort((a, b) => comparePaths(a.path, b.path))
    .map((f) => ({ path: f.path, size: f.size, mode: f.mode, sha256: f.sha256, ...(f.chunks ? { chunks: f.chunks.map((c) => ({ sha256: c.sha256, size: c.size })) } : {}) }));
  return JSON.stringify({ version: 1, files });
}

/** Problems with a manifest received from outside (file, agent request); empty when valid. */
export function manifestProblems(value: unknown): string[] {
  if (typeof value !== 'object' || value === null) return ['manifest is not an object'];
  const candidate = value as { version?: unknown; files?: unknown };
  if (candidate.version !== 1) return [`unsupported manifest version ${JSON.stringify(candidate.version)}`];
  if (!Array.isArray(candidate.files)) return ['manifest.files is not an array'];
  return entriesProblems(candidate.files);
}

/** Problems with a list of entries: unsafe or duplicate paths, bad sizes, modes or hashes. */
export function entriesProblems(files: unknown[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const [index, raw] of files.entries()) {
    if (problems.length >= 20) break;
    const entry = raw as Partial<ManifestEntry> | null;
    if (typeof entry !== 'object' || entry === null) {
      problems.push(`files[${index}] is not an object`);
      continue;
    }
    const reason = unsafePathReason(entry.path);
    if (reason) problems.push(`files[${index}].path ${quotePath(entry.path)}: ${reason}`);
    else if (seen.has(entry.path as string)) problems.push(`files[${index}].path ${quotePath(entry.path)}: duplicate`);
    else seen.add(entry.path as string);
    if (!Number.isSafeInteger(entry.size) || (entry.size as number) < 0) problems.push(`files[${index}].size is not a non-negative integer`);
    if (!Number.isInteger(entry.mode) || (entry.mode as number) < 0 || (entry.mode as number) > 0o7777) problems.push(`files[${index}].mode is not a permission mode`);
    if (!isSha256Hex(entry.sha256)) problems.push(`files[${index}].sha256 is not a lower-case hex sha256`);
    if (entry.chunks !== undefined) {
      const chunkProblem = chunksProblem(entry.chunks, entry.size);
      if (chunkProblem) problems.push(`files[${index}].chunks ${chunkProblem}`);
    }
  }
  return problems;
}

/** Most chunks one file may have: a 2 TiB file at the average chunk size. */
const MAX_CHUNKS_PER_FILE = 4 << 20;

function chunksProblem(chunks: unknown, size: unknown): string | undefined {
  if (!Array.isArray(chunks) || chunks.length === 0 || chunks.length > MAX_CHUNKS_PER_FILE) return `must be a non-empty array of at most ${MAX_CHUNKS_PER_FILE} chunks`;
  let total = 0;
  for (const chunk of chunks as Partial<ChunkRef>[]) {
    if (typeof chunk !== 'object' || chunk === null || !isSha256Hex(chunk.sha256) || !Number.isSafeInteger(chunk.size) || (chunk.size as number) <= 0)
      return 'must each have a lower-case hex sha256 and a positive integer size';
    total += chunk.size as number;
  }
  return total === size ? undefined : `add up to ${total} bytes, not the file's ${String(size)}`;
}

/** The blobs a file's body is stored as: its chunks, or the whole body. */
export function blobsOfEntry(entry: Pick<ManifestEntry, 'sha256' | 'size' | 'chunks'>): ChunkRef[] {
  return entry.chunks ?? [{ sha256: entry.sha256, size: entry.size }];
}

/** Files whose paths are prefixes of other files' directories (`a` and `a/b`) cannot both land. */
export function fileDirectoryConflicts(files: ManifestEntry[]): string[] {
  const paths = new Set(files.map((f) => f.path));
  const conflicts: string[] = [];
  for (const file of files) {
    const segments = file.path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const parent = segments.slice(0, i).join('/');
      if (paths.has(parent)) conflicts.push(parent);
    }
  }
  return [...new Set(conflicts)];
}

export function manifestTotals(manifest: Manifest): { filesTotal: number; bytesTotal: number } {
  return { filesTotal: manifest.files.length, bytesTotal: manifest.files.reduce((sum, f) => sum + f.size, 0) };
}
