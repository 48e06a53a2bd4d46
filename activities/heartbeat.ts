import type { Context } from '@temporalio/activity';
import { RateMeter } from '../core/progress';
import type { TransferProgress } from '../core/sync';

/** Heartbeats at most this often from per-file loops. */
const HEARTBEAT_EVERY_MS = 250;

/**
 * A heartbeat for loops that report per file or per block: the SDK already
 * throttles what it sends to the server, but every call converts its details,
 * which adds up over a tree of 100,000 files. The first call always goes out.
 * Each heartbeat sent carries the rate and time left (core/progress), so the
 * Web UI shows the same figures as `ferry sync`.
 */
export function throttledHeartbeat(context: Context): (progress: TransferProgress) => void {
  const meter = new RateMeter();
  let lastAt = 0;
  return (progress) => {
    const now = Date.now();
    if (now - lastAt < HEARTBEAT_EVERY_MS) return;
    lastAt = now;
    context.heartbeat(meter.stamp(now, progress));
  };
}
