/**
 * Path rules shared by the snapshotter, the worker and the runtime agent.
 * Every path that crosses a boundary (manifest entry, agent request) is a
 * relative POSIX path that cannot leave the directory it is resolved in.
 */

/** Deeper paths are refused outright, so hostile input cannot cost memory or time. */
export const MAX_PATH_DEPTH = 256;
export const MAX_PATH_BYTES = 4096;
export const MAX_SEGMENT_BYTES = 255;

/** Characters of a path quoted in a message; the rest is counted, not copied. */
const QUOTED_PATH_CHARS = 200;

/**
 * `path` as JSON for messages, cut to its first 200 characters with its
 * length noted: a hostile path may be megabytes long, and messages end up
 * in error bodies and workflow history.
 */
export function quotePath(path: unknown): string {
  if (typeof path !== 'string' || path.length <= QUOTED_PATH_CHARS) return JSON.stringify(path) ?? String(path);
  return `${JSON.stringify(path.slice(0, QUOTED_PATH_CHARS))}… (${path.length} characters)`;
}

export class UnsafePathError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`unsafe path ${quotePath(path)}: ${reason}`);
    this.name = 'UnsafePathError';
  }
}

/** Bytes of `text` in UTF-8. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/**
 * Why `path` is not a safe relative path, or undefined when it is.
 * Safe means: non-empty, relative, `/`-separated, no `.`/`..`/empty segments,
 * no backslash or NUL, bounded length and depth.
 */
export function unsafePathReason(path: unknown): string | undefined {
  if (typeof path !== 'string') return 'not a string';
  if (path.length === 0) return 'empty';
  if (utf8Length(path) > MAX_PATH_BYTES) return `longer than ${MAX_PATH_BYTES} bytes`;
  if (path.includes('\0')) return 'contains NUL';
  if (path.includes('\\')) return 'contains a backslash';
  if (path.startsWith('/')) return 'absolute';
  const segments = path.split('/');
  if (segments.length > MAX_PATH_DEPTH) return `deeper than ${MAX_PATH_DEPTH} levels`;
  for (const segment of segments) {
    if (segment === '') return 'empty segment';
    if (segment === '.' || segment === '..') return `contains "${segment}"`;
    if (utf8Length(segment) > MAX_SEGMENT_BYTES) return `segment longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  return undefined;
}

/** Throws {@link UnsafePathError} unless `path` is a safe relative path. */
export function assertSafeRelativePath(path: unknown): string {
  const reason = unsafePathReason(path);
  if (reason !== undefined) throw new UnsafePathError(String(path), reason);
  return path as string;
}

/** Joins safe relative paths; `joinRelative('data', 'a/b')` is `data/a/b`. Empty parts are dropped. */
export function joinRelative(...parts: string[]): string {
  return parts.filter((part) => part.length > 0).join('/');
}
