/**
 * Pack files: the storage layout of small blobs (whole small files and the
 * chunks of large ones), below the blob store and invisible to manifests.
 * As in restic and kopia, many blobs are written into one pack object of up
 * to {@link PACK_TARGET_BYTES}, and index objects say which blob sits in
 * which pack, so a cold sync of thousands of small files costs a request
 * per pack each way instead of one per file.
 *
 * - A pack is its blobs' bytes, back to back, nothing else. It is named by
 *   the sha256 of its blob list ({@link packListText}): the list fixes the
 *   bytes, so the name is content-addressed without hashing the bytes again,
 *   and an upload retried after a crash packs the same blobs under the same
 *   name instead of storing them twice.
 * - An index object lists packs with their blobs, in order (offsets follow
 *   from the sizes), and is named by the sha256 of its JSON. One is written
 *   per upload, after its packs. A reader checks every pack's name against
 *   its list, so an index cannot place a blob where it is not.
 * - A blob counts as stored in a pack only while that pack is listed in the
 *   store: a pack written without its index (a crashed upload) is found again
 *   by name, and a pack deleted because it was damaged takes its blobs with it.
 *
 * Pure: the hashing is the caller's (core stays importable from workflows).
 */
import { isSha256Hex } from './manifest';

/** Packs are closed before they pass this size; a blob larger than this is stored alone. */
export const PACK_TARGET_BYTES = 8 << 20;

/** Pack objects and index objects share one folder of the blob prefix, so one listing finds both. */
export const PACKS_FOLDER = 'blobs/packs/';
const PACK_SUFFIX = '.pack';
const INDEX_SUFFIX = '.index';

const DAMAGED_SUFFIX = '.damaged';

export const packKey = (prefix: string, name: string) => `${prefix}${PACKS_FOLDER}${name}${PACK_SUFFIX}`;
export const packIndexKey = (prefix: string, name: string) => `${prefix}${PACKS_FOLDER}${name}${INDEX_SUFFIX}`;
/**
 * An empty marker saying a pack holds damaged bytes for one blob. Packs are
 * never rewritten or deleted in place (their name fixes their bytes, and a
 * worker's role may not delete), so a blob found damaged in a pack is stored
 * again alone and this marker, listed with the packs, makes every reader
 * take it from there instead.
 */
export const packDamageKey = (prefix: string, pack: string, sha256: string) => `${prefix}${PACKS_FOLDER}${pack}.${sha256}${DAMAGED_SUFFIX}`;

export type PacksKey = { kind: 'pack' | 'index'; name: string } | { kind: 'damaged'; pack: string; sha256: string };

/** What a key listed under the packs folder is: a pack, an index, a damage marker, or neither (ignored). */
export function parsePacksKey(prefix: string, key: string): PacksKey | undefined {
  const folder = `${prefix}${PACKS_FOLDER}`;
  if (!key.startsWith(folder)) return undefined;
  const rest = key.slice(folder.length);
  if (rest.endsWith(DAMAGED_SUFFIX)) {
    const [pack, sha256, more] = rest.slice(0, -DAMAGED_SUFFIX.length).split('.');
    return more === undefined && isSha256Hex(pack) && isSha256Hex(sha256) ? { kind: 'damaged', pack, sha256 } : undefined;
  }
  for (const [suffix, kind] of [
    [PACK_SUFFIX, 'pack'],
    [INDEX_SUFFIX, 'index'],
  ] as const) {
    const name = rest.slice(0, -suffix.length);
    if (rest.endsWith(suffix) && isSha256Hex(name)) return { kind, name };
  }
  return undefined;
}

export interface PackedBlobRef {
  sha256: string;
  size: number;
}

/** Whether a blob goes into a pack rather than an object of its own. */
export const isPackable = (size: number) => size <= PACK_TARGET_BYTES;

/**
 * Blobs cut into packs in the order given, each pack closed before the next
 * blob would take it past `targetBytes`. The same blobs in the same order
 * always make the same packs, which is what lets a retried upload find the
 * packs an earlier attempt stored.
 */
export function planPacks<T extends PackedBlobRef>(blobs: T[], targetBytes = PACK_TARGET_BYTES): T[][] {
  const packs: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const blob of blobs) {
    if (current.length && bytes + blob.size > targetBytes) {
      packs.push(current);
      current = [];
      bytes = 0;
    }
    current.push(blob);
    bytes += blob.size;
  }
  if (current.length) packs.push(current);
  return packs;
}

/** The text whose sha256 names a pack: one `<sha256> <size>` line per blob, in pack order. */
export function packListText(blobs: PackedBlobRef[]): string {
  return blobs.map((blob) => `${blob.sha256} ${blob.size}\n`).join('');
}

/** One pack as an index object lists it. */
export interface PackListing {
  /** sha256 of {@link packListText} of `blobs`. */
  name: string;
  /** `[sha256, size]` of each blob, in the order of their bytes in the pack. */
  blobs: [string, number][];
}

/** The JSON of an index object. */
export interface PackIndexFile {
  version: 1;
  packs: PackListing[];
}

/** Most blobs one index may list: an upload of a million small files. */
const MAX_INDEX_BLOBS = 1 << 20;

/**
 * Problems with an index object read back from the store (shape only; the
 * caller checks each pack's name against the sha256 of its list).
 */
export function packIndexProblems(value: unknown): string[] {
  if (typeof value !== 'object' || value === null) return ['index is not an object'];
  const { version, packs } = value as Partial<PackIndexFile>;
  if (version !== 1) return [`unsupported index version ${JSON.stringify(version)}`];
  if (!Array.isArray(packs)) return ['index packs is not an array'];
  let blobs = 0;
  for (const [index, pack] of (packs as unknown[]).entries()) {
    const { name, blobs: list } = (pack ?? {}) as Partial<PackListing>;
    if (!isSha256Hex(name)) return [`packs[${index}].name is not a lower-case hex sha256`];
    if (!Array.isArray(list) || list.length === 0) return [`packs[${index}].blobs is not a non-empty array`];
    blobs += list.length;
    if (blobs > MAX_INDEX_BLOBS) return [`index lists more than ${MAX_INDEX_BLOBS} blobs`];
    for (const entry of list as unknown[]) {
      if (!Array.isArray(entry) || entry.length !== 2 || !isSha256Hex(entry[0]) || !Number.isSafeInteger(entry[1]) || (entry[1] as number) < 0 || (entry[1] as number) > PACK_TARGET_BYTES) {
        return [`packs[${index}].blobs holds an entry that is not [sha256, size of at most ${PACK_TARGET_BYTES}]`];
      }
    }
  }
  return [];
}

/** A byte range of one pack: `[start, end)`. The pack is named (worker) or numbered within a land request (agent). */
export interface PackRange<Pack extends string | number = string> {
  pack: Pack;
  start: number;
  end: number;
}

/** Where one blob sits: its pack and the offset of its first byte. */
export interface PackPlace<Pack extends string | number = string> {
  pack: Pack;
  offset: number;
  size: number;
}

export interface CoalescingLimits {
  /** Most bytes one request reads. */
  maxBytes: number;
  /** Bytes between two blobs read through (and thrown away) rather than costing another request. */
  maxGapBytes: number;
}

/** 8 MiB requests, reading through gaps of up to 256 KiB: about the cost of a request on a fast link. */
export const RANGE_LIMITS: CoalescingLimits = { maxBytes: PACK_TARGET_BYTES, maxGapBytes: 256 << 10 };

/**
 * Places in the order they will be used, grouped into as few range reads as
 * the limits allow: each place joins the previous range when it lies in the
 * same pack, starts inside that range or at most a gap after it, and the
 * range stays within `maxBytes` (a blob used twice is read once). Returns
 * the ranges and, per place, the index of its range. Sort places with
 * {@link comparePlaces} first to coalesce across a whole request.
 */
export function coalescePlaces<Pack extends string | number>(places: PackPlace<Pack>[], limits: CoalescingLimits = RANGE_LIMITS): { ranges: PackRange<Pack>[]; rangeOf: number[] } {
  const ranges: PackRange<Pack>[] = [];
  const rangeOf: number[] = [];
  for (const place of places) {
    const last = ranges.at(-1);
    const end = place.offset + place.size;
    const joins =
      last !== undefined && last.pack === place.pack && place.offset >= last.start && place.offset <= last.end + limits.maxGapBytes && Math.max(last.end, end) - last.start <= limits.maxBytes;
    if (joins) last.end = Math.max(last.end, end);
    else ranges.push({ pack: place.pack, start: place.offset, end });
    rangeOf.push(ranges.length - 1);
  }
  return { ranges, rangeOf };
}

/** Orders places by pack, then offset: the order in which a request's ranges read them. */
export function comparePlaces<Pack extends string | number>(a: PackPlace<Pack>, b: PackPlace<Pack>): number {
  return a.pack < b.pack ? -1 : a.pack > b.pack ? 1 : a.offset - b.offset;
}
