/**
 * What the worker knows of the packs in the store (core/packs): which blob
 * sits in which pack, read from the index objects.
 *
 * Finding what is stored must not cost a request per blob. The packs folder
 * is listed whole — one request per 1,000 packs and indexes — and each index
 * object not read before is read once: indexes are immutable (named by the
 * sha256 of their bytes), so what was read stays true for the worker's
 * lifetime and is kept. A listing is made only when a lookup asks about a
 * blob the catalog cannot place, so a re-sync of content this worker has
 * seen costs no request at all. The listing also says which packs exist: a
 * blob counts as stored only while its pack is listed.
 *
 * Memory: about 150 bytes per packed blob known (a 64-character key and its
 * place), so a million small files cost about 150 MB of worker memory.
 */
import { createHash } from 'node:crypto';
import pLimit from 'p-limit';
import { packIndexKey, packIndexProblems, packListText, parsePacksKey, PACKS_FOLDER, type PackIndexFile, type PackListing, type PackPlace } from '../core/packs';

/** The store operations the catalog reads with. */
export interface PackStoreReader {
  readonly keyPrefix: string;
  listKeys(prefix: string, abortSignal?: AbortSignal): Promise<{ key: string; size: number }[]>;
  getObjectBytes(key: string, abortSignal?: AbortSignal): Promise<Buffer | undefined>;
}

const INDEX_READ_CONCURRENCY = 8;

const sha256Hex = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');

/** An index object's bytes as pack listings, or why they cannot be trusted. */
export function readPackIndex(name: string, body: Buffer): { listings: PackListing[] } | { problem: string } {
  const actual = sha256Hex(body);
  if (actual !== name) return { problem: `it hashes to ${actual}` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return { problem: 'it is not JSON' };
  }
  const problems = packIndexProblems(parsed);
  if (problems.length) return { problem: problems.join('; ') };
  const { packs } = parsed as PackIndexFile;
  for (const pack of packs) {
    const listed = sha256Hex(packListText(pack.blobs.map(([sha256, size]) => ({ sha256, size }))));
    if (listed !== pack.name) return { problem: `pack ${pack.name} is not named by its blob list (${listed})` };
  }
  return { listings: packs };
}

/** The canonical bytes of an index object and its name. */
export function packIndexBody(listings: PackListing[]): { name: string; body: Buffer } {
  const file: PackIndexFile = { version: 1, packs: listings };
  const body = Buffer.from(JSON.stringify(file), 'utf8');
  return { name: sha256Hex(body), body };
}

/** An index object the catalog did not take, and why (reported once). */
export interface IgnoredPackIndex {
  key: string;
  reason: string;
}

export class PackCatalog {
  /** Every place a blob was listed in, first seen first (a blob two uploads packed at once sits in two packs). */
  private readonly places = new Map<string, PackPlace | PackPlace[]>();
  /** Packs the last listing found, plus those this worker wrote since. */
  private listedPacks = new Set<string>();
  /** Packs written while a listing runs, which that listing may have missed. */
  private writtenWhileListing: Set<string> | undefined;
  private readonly indexesRead = new Set<string>();
  /** `<pack> <sha256>` of blobs a damage marker says their pack holds wrong: never placed there. */
  private damaged = new Set<string>();
  private listing: Promise<IgnoredPackIndex[]> | undefined;

  constructor(private readonly store: PackStoreReader) {}

  /** Where the blob is, if a listed pack holds it. */
  placeOf(sha256: string): PackPlace | undefined {
    const known = this.places.get(sha256);
    if (known === undefined) return undefined;
    const usable = (place: PackPlace) => this.listedPacks.has(place.pack) && !this.damaged.has(`${place.pack} ${sha256}`);
    if (!Array.isArray(known)) return usable(known) ? known : undefined;
    return known.find(usable);
  }

  /** Takes a damage marker this worker just wrote: the blob is no longer placed in that pack. */
  rememberDamaged(pack: string, sha256: string): void {
    this.damaged.add(`${pack} ${sha256}`);
  }

  /** Whether a pack of this name is in the store (as of the last listing, or written by this worker since). */
  hasPack(name: string): boolean {
    return this.listedPacks.has(name);
  }

  /**
   * Lists the packs folder and reads every index object not read before.
   * Callers at the same time share one listing. Indexes that cannot be
   * trusted (damaged, malformed, naming a pack wrongly) are left out and
   * returned, so the blobs they list count as not stored and are uploaded
   * again.
   */
  refresh(abortSignal?: AbortSignal): Promise<IgnoredPackIndex[]> {
    this.listing ??= this.list(abortSignal).finally(() => {
      this.listing = undefined;
    });
    return this.listing;
  }

  private async list(abortSignal?: AbortSignal): Promise<IgnoredPackIndex[]> {
    const prefix = this.store.keyPrefix;
    const packs = new Set<string>();
    const damaged = new Set(this.damaged);
    const written = (this.writtenWhileListing = new Set());
    const unread: string[] = [];
    for (const { key } of await this.store.listKeys(`${prefix}${PACKS_FOLDER}`, abortSignal)) {
      const parsed = parsePacksKey(prefix, key);
      if (parsed?.kind === 'pack') packs.add(parsed.name);
      else if (parsed?.kind === 'index' && !this.indexesRead.has(parsed.name)) unread.push(parsed.name);
      else if (parsed?.kind === 'damaged') damaged.add(`${parsed.pack} ${parsed.sha256}`);
    }
    this.damaged = damaged;
    const ignored: IgnoredPackIndex[] = [];
    const limit = pLimit(INDEX_READ_CONCURRENCY);
    await Promise.all(
      unread.map((name) =>
        limit(async () => {
          const key = packIndexKey(prefix, name);
          const body = await this.store.getObjectBytes(key, abortSignal);
          // Listed a moment ago and gone now: nothing to learn from it.
          if (body === undefined) return;
          const read = readPackIndex(name, body);
          this.indexesRead.add(name);
          if ('problem' in read) ignored.push({ key, reason: read.problem });
          else this.learn(read.listings);
        }),
      ),
    );
    for (const name of written) packs.add(name);
    this.writtenWhileListing = undefined;
    this.listedPacks = packs;
    return ignored;
  }

  /** Takes the packs this worker just wrote, and the index that lists them. */
  rememberWritten(listings: PackListing[]): void {
    this.learn(listings);
    for (const listing of listings) {
      this.listedPacks.add(listing.name);
      this.writtenWhileListing?.add(listing.name);
    }
  }

  /** Forgets that a pack exists (it was deleted): its blobs are no longer stored in it. */
  forgetPack(name: string): void {
    this.listedPacks.delete(name);
  }

  private learn(listings: PackListing[]): void {
    for (const { name, blobs } of listings) {
      let offset = 0;
      for (const [sha256, size] of blobs) {
        const place: PackPlace = { pack: name, offset, size };
        offset += size;
        const known = this.places.get(sha256);
        if (known === undefined) this.places.set(sha256, place);
        else if (!Array.isArray(known)) {
          if (known.pack !== name) this.places.set(sha256, [known, place]);
        } else if (!known.some((other) => other.pack === name)) known.push(place);
      }
    }
  }
}
