import type { Context } from '@temporalio/activity';

/** Heartbeats at most this often from per-file loops. */
const HEARTBEAT_EVERY_MS = 250;

/**
 * A heartbeat for loops that report per file or per block: the SDK already
 * throttles what it sends to the server, but every call converts its details,
 * which adds up over a tree of 100,000 files. The first call always goes out.
 */
export function throttledHeartbeat(context: Context): (details: unknown) => void {
  let lastAt = 0;
  return (details) => {
    const now = Date.now();
    if (now - lastAt < HEARTBEAT_EVERY_MS) return;
    lastAt = now;
    context.heartbeat(details);
  };
}
