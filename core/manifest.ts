/**
 * A snapshot of a folder: one entry per regular file (and per symlink kept
 * as a link), sorted by path. File bodies live in the blob store under their
 * sha256; the manifest itself is stored as a blob too and named by the
 * sha256 of its canonical JSON.
 */
import { quotePath, unsafePathReason, utf8Length } from './paths';

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
  /**
   * Set for a symlink kept as a link (link policy `copy`): the link text,
   * exactly as readlink gives it. The entry is then a link, not a file:
   * `size` and `sha256` are those of the text's UTF-8 bytes (so the
   * manifest stays content-addressed), `mode` is {@link LINK_MODE}, there
   * are no chunks, and no blob is stored. A target creates the link with
   * this text and never follows it; listing reports it the same way.
   */
  link?: string;
}

/** The mode of every link entry: Linux has no link permissions, lstat shows 0777. */
export const LINK_MODE = 0o777;
/** Longest link text, in bytes (Linux's PATH_MAX). */
export const MAX_LINK_BYTES = 4095;

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

/** One entry as canonical JSON: keys in fixed order, no whitespace. */
function canonicalEntryJson(f: ManifestEntry): string {
  const chunks = f.chunks ? `,"chunks":[${f.chunks.map((c) => `{"sha256":${JSON.stringify(c.sha256)},"size":${JSON.stringify(c.size)}}`).join(',')}]` : '';
  const link = f.link === undefined ? '' : `,"link":${JSON.stringify(f.link)}`;
  return `{"path":${JSON.stringify(f.path)},"size":${JSON.stringify(f.size)},"mode":${JSON.stringify(f.mode)},"sha256":${JSON.stringify(f.sha256)}${chunks}${link}}`;
}

/** Pieces of canonical JSON are cut at about this many characters. */
const PIECE_CHARS = 1 << 16;

/**
 * The exact bytes whose sha256 is the manifest digest (keys in fixed order,
 * entries sorted, no whitespace), in pieces of about 64 KiB: a manifest of
 * 100,000 files is 15 MB of JSON, which need never sit in memory as one
 * string beside the bytes made from it. Hashing is left to the caller so
 * this module stays importable from workflow code.
 */
export function* canonicalManifestPieces(manifest: Manifest): Generator<string> {
  const sorted = manifest.files.every((f, i, all) => i === 0 || comparePaths(all[i - 1].path, f.path) < 0);
  const files = sorted ? manifest.files : [...manifest.files].sort((a, b) => comparePaths(a.path, b.path));
  let piece = '{"version":1,"files":[';
  for (const [index, file] of files.entries()) {
    piece += (index === 0 ? '' : ',') + canonicalEntryJson(file);
    if (piece.length >= PIECE_CHARS) {
      yield piece;
      piece = '';
    }
  }
  yield `${piece}]}`;
}

/** The canonical JSON as one string; see {@link canonicalManifestPieces}. */
export function canonicalManifestJson(manifest: Manifest): string {
  return [...canonicalManifestPieces(manifest)].join('');
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
    if (entry.link !== undefined) {
      const linkProblem = linkEntryProblem(entry);
      if (linkProblem) problems.push(`files[${index}].link ${linkProblem}`);
    } else if (entry.chunks !== undefined) {
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

/** What is wrong with a link entry's fields (the text's sha256 is checked where hashing is possible). */
function linkEntryProblem(entry: Partial<ManifestEntry>): string | undefined {
  const { link } = entry;
  if (typeof link !== 'string' || link === '' || link.includes('\0')) return 'must be a non-empty string without NUL';
  const bytes = utf8Length(link);
  if (bytes > MAX_LINK_BYTES) return `is longer than ${MAX_LINK_BYTES} bytes`;
  if (entry.size !== bytes) return `is ${bytes} bytes, not the entry's size ${String(entry.size)}`;
  if (entry.mode !== LINK_MODE) return `entries must have mode ${LINK_MODE.toString(8)}`;
  if (entry.chunks !== undefined) return 'entries have no chunks';
  return undefined;
}

/** The blobs a file's body is stored as: its chunks, or the whole body; none for a link. */
export function blobsOfEntry(entry: Pick<ManifestEntry, 'sha256' | 'size' | 'chunks' | 'link'>): ChunkRef[] {
  if (entry.link !== undefined) return [];
  return entry.chunks ?? [{ sha256: entry.sha256, size: entry.size }];
}

/** Whether two entries hold the same thing: the same bytes, or links with the same text. */
export function sameContent(a: Pick<ManifestEntry, 'sha256' | 'link'>, b: Pick<ManifestEntry, 'sha256' | 'link'>): boolean {
  return a.sha256 === b.sha256 && a.link === b.link;
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
