/**
 * Reading packed blobs on the worker, in the order they are used (the
 * landing archive of a script-reached target): neighbouring blobs of a pack
 * are read in one range request (core/packs coalescePlaces), a few ranges
 * ahead of the blob being used, and each range is let go once its last
 * blob was taken.
 */
import { coalescePlaces, type PackPlace } from '../core/packs';

export interface PackRangeSource {
  readPackRange(name: string, start: number, end: number, abortSignal?: AbortSignal): Promise<Buffer>;
}

/** Ranges read ahead of the one in use: each up to 8 MiB in memory. */
const RANGES_AHEAD = 2;

export class SequentialPackReader {
  private readonly ranges: ReturnType<typeof coalescePlaces<string>>['ranges'];
  private readonly rangeOf: number[];
  private readonly fetched = new Map<number, Promise<Buffer>>();
  private next = 0;

  /** `places` in the order {@link read} will be asked for them. */
  constructor(
    private readonly source: PackRangeSource,
    private readonly places: PackPlace[],
    private readonly signal?: AbortSignal,
  ) {
    ({ ranges: this.ranges, rangeOf: this.rangeOf } = coalescePlaces(places));
  }

  /** The bytes of the next place, as stored (the caller checks them against the blob's sha256). */
  async read(): Promise<Buffer> {
    const index = this.next++;
    if (index >= this.places.length) throw new RangeError('every place was read');
    const place = this.places[index];
    const range = this.rangeOf[index];
    for (let ahead = range; ahead <= range + RANGES_AHEAD && ahead < this.ranges.length; ahead++) {
      if (this.fetched.has(ahead)) continue;
      const { pack, start, end } = this.ranges[ahead];
      const bytes = this.source.readPackRange(pack, start, end, this.signal);
      // Seen when its turn comes; this only keeps a failure of a range read ahead from going unhandled.
      bytes.catch(() => undefined);
      this.fetched.set(ahead, bytes);
    }
    const buffer = await this.fetched.get(range)!;
    // The last place of a range: nothing later reads it again.
    if (this.rangeOf[index + 1] !== range) this.fetched.delete(range);
    const start = place.offset - this.ranges[range].start;
    return buffer.subarray(start, start + place.size);
  }
}
