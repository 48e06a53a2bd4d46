/**
 * A file's hash remembered under its stat signature, as git's index does
 * (DESIGN principle 8): any write to a file changes its ctime, and a
 * replaced file has another inode, so an unchanged signature means unchanged
 * bytes and a re-check costs one stat.
 *
 * The one hole is git's "racy clean" case: a write in the same timestamp
 * tick as the read that hashed the file leaves the signature unchanged. So
 * an entry is only kept when the file had not changed for a margin before
 * the read began: longer than the filesystem's timestamp tick. A file
 * written just before it was read is read again next time.
 */

export interface StatSignature {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/**
 * Timestamps with a sub-second part come from a filesystem that keeps fine
 * ones (ext4, xfs, btrfs, tmpfs: a tick of at most 10 ms); 100 ms is ten of
 * those. Whole-second timestamps (1 s or 2 s ticks) get 3 s.
 */
export const RACY_MARGIN_NS = 100_000_000n;
export const COARSE_RACY_MARGIN_NS = 3_000_000_000n;

function racyMarginNs(signature: StatSignature): bigint {
  const fine = signature.mtimeNs % 1_000_000_000n !== 0n || signature.ctimeNs % 1_000_000_000n !== 0n;
  return fine ? RACY_MARGIN_NS : COARSE_RACY_MARGIN_NS;
}

/** Entries kept at most; the oldest go first. About 200 bytes each. */
export const DEFAULT_MAX_ENTRIES = 1_000_000;

/**
 * A signature as one string, `dev:ino:size:mtimeNs:ctimeNs`, which is how
 * entries are kept and compared. One flat string: a template literal would
 * build a rope of ten pieces, several hundred bytes per remembered file.
 */
export function signatureKey(signature: StatSignature): string {
  return [signature.dev, signature.ino, signature.size, signature.mtimeNs, signature.ctimeNs].join(':');
}

/** The `dev:ino` part of a signature key: which file it is, whatever its contents. */
export function fileIdentity(key: string): string {
  return key.slice(0, key.indexOf(':', key.indexOf(':') + 1));
}

/**
 * Whether bytes read from `readStartedNs` (wall-clock ns) on may be
 * remembered under `signature` (taken before the read): not when the file
 * changed too shortly before the read for a later write to be told apart.
 */
export function isRememberable(signature: StatSignature, readStartedNs: bigint): boolean {
  const newest = signature.mtimeNs > signature.ctimeNs ? signature.mtimeNs : signature.ctimeNs;
  return newest <= readStartedNs - racyMarginNs(signature);
}

export class HashCache<V> {
  private readonly entries = new Map<string, { signature: string; value: V }>();

  constructor(private readonly maxEntries = DEFAULT_MAX_ENTRIES) {}

  get size(): number {
    return this.entries.size;
  }

  /** What was remembered for `path` under exactly this signature (or signature key). */
  get(path: string, signature: StatSignature | string): V | undefined {
    const entry = this.entries.get(path);
    return entry && entry.signature === (typeof signature === 'string' ? signature : signatureKey(signature)) ? entry.value : undefined;
  }

  /**
   * Remembers `value` for the bytes read under `signature` (taken before the
   * read), unless the file changed too shortly before `readStartedNs`
   * (wall-clock ns) for a later write to be told apart.
   */
  set(path: string, signature: StatSignature, readStartedNs: bigint, value: V): boolean {
    const rememberable = isRememberable(signature, readStartedNs);
    this.remember(path, rememberable ? signatureKey(signature) : undefined, value);
    return rememberable;
  }

  /**
   * As {@link set}, for a reader that applied {@link isRememberable} where it
   * read (another thread) and passes the signature's key, or undefined when
   * the read may not be remembered.
   */
  remember(path: string, key: string | undefined, value: V): void {
    this.entries.delete(path);
    if (key === undefined) return;
    this.entries.set(path, { signature: key, value });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
  }
}

/** The signature of a bigint stat (`stat(path, { bigint: true })`). */
export function statSignature(stats: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): StatSignature {
  return { dev: stats.dev, ino: stats.ino, size: stats.size, mtimeNs: stats.mtimeNs, ctimeNs: stats.ctimeNs };
}
