/**
 * Rate and time left of a transfer, from its bytes done over time. Pure:
 * callers pass the clock, so the activity that heartbeats and a test can
 * use the same arithmetic.
 */
import type { TransferProgress } from './sync';

/** The rate is measured over about this long: short enough to follow a change, long enough not to jump per file. */
const WINDOW_MS = 5_000;
/** No rate is given before this much of a window has passed: the first files say little. */
const MIN_SPAN_MS = 500;

export class RateMeter {
  private readonly samples: { atMs: number; bytes: number }[] = [];

  /** Notes `bytesDone` at `nowMs`; returns bytes per second over the window, or undefined while too early to tell. */
  sample(nowMs: number, bytesDone: number): number | undefined {
    this.samples.push({ atMs: nowMs, bytes: bytesDone });
    while (this.samples.length > 2 && nowMs - this.samples[1].atMs >= WINDOW_MS) this.samples.shift();
    const first = this.samples[0];
    const spanMs = nowMs - first.atMs;
    if (spanMs < MIN_SPAN_MS) return undefined;
    return Math.max(0, ((bytesDone - first.bytes) * 1000) / spanMs);
  }

  /** `progress` with bytesPerSecond and etaSeconds filled in (left out while unknown). */
  stamp(nowMs: number, progress: TransferProgress): TransferProgress {
    const rate = this.sample(nowMs, progress.bytesDone);
    const { bytesPerSecond: _rate, etaSeconds: _eta, ...rest } = progress;
    if (rate === undefined) return rest;
    const stamped = { ...rest, bytesPerSecond: Math.round(rate) };
    // Totals still growing say nothing about the time left.
    if (progress.listing || rate === 0) return stamped;
    return { ...stamped, etaSeconds: Math.ceil(Math.max(0, progress.bytesTotal - progress.bytesDone) / rate) };
  }
}
