/** Signals and updates a workflow received: ticks on the page, and what ended a wait for the agent. */
import type { HistoryEventSummary } from './events';
import { iso } from './values';

export interface MessageMark {
  at: string;
  kind: 'signal' | 'update';
  name: string;
  /** An update answered with a failure (a refused `execute`). */
  failed?: boolean;
}

export function messageMarks(events: HistoryEventSummary[]): MessageMark[] {
  const failedUpdates = new Set(events.flatMap((e) => (e.kind === 'updateCompleted' && e.failure && e.updateId ? [e.updateId] : [])));
  return events.flatMap((event): MessageMark[] => {
    if (event.kind === 'signal') return [{ at: iso(event.timeMs), kind: 'signal', name: event.name }];
    if (event.kind !== 'update') return [];
    const failed = event.updateId !== undefined && failedUpdates.has(event.updateId);
    return [{ at: iso(event.timeMs), kind: 'update', name: event.name, ...(failed ? { failed } : {}) }];
  });
}

/** The signal or update that ended a wait at `toMs` (an update is accepted a few ms after its workflow task is scheduled). */
export function messageEnding(events: HistoryEventSummary[], fromMs: number, toMs: number): string | undefined {
  const messages = events.filter((e) => (e.kind === 'signal' || e.kind === 'update') && e.timeMs >= fromMs);
  const ending = messages.find((e) => e.timeMs >= toMs - 1 && e.timeMs <= toMs + 10_000) ?? messages.filter((e) => e.timeMs <= toMs).pop();
  return ending && (ending.kind === 'signal' || ending.kind === 'update') ? `${ending.kind} ${ending.name}` : undefined;
}
