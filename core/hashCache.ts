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
const DEFAULT_MAX_ENTRIES = 1_000_000;

function signatureKey(signature: StatSignature): string {
  return `${signature.dev}:${signature.ino}:${signature.size}:${signature.mtimeNs}:${signature.ctimeNs}`;
}

export class HashCache<V> {
  private readonly entries = new Map<string, { signature: string; value: V }>();

  constructor(private readonly maxEntries = DEFAULT_MAX_ENTRIES) {}

  get size(): number {
    return this.entries.size;
  }

  /** What was remembered for `path` under exactly this signature. */
  get(path: string, signature: StatSignature): V | undefined {
    const entry = this.entries.get(path);
    return entry && entry.signature === signatureKey(signature) ? entry.value : undefined;
  }

  /**
   * Remembers `value` for the bytes read under `signature` (taken before the
   * read), unless the file changed too shortly before `readStartedNs`
   * (wall-clock ns) for a later write to be told apart.
   */
  set(path: string, signature: StatSignature, readStartedNs: bigint, value: V): boolean {
    const newest = signature.mtimeNs > signature.ctimeNs ? signature.mtimeNs : signature.ctimeNs;
    if (newest > readStartedNs - racyMarginNs(signature)) {
      this.entries.delete(path);
      return false;
    }
    this.entries.delete(path);
    this.entries.set(path, { signature: signatureKey(signature), value });
    if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    return true;
  }
}

/** The signature of a bigint stat (`stat(path, { bigint: true })`). */
export function statSignature(stats: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): StatSignature {
  return { dev: stats.dev, ino: stats.ino, size: stats.size, mtimeNs: stats.mtimeNs, ctimeNs: stats.ctimeNs };
}
