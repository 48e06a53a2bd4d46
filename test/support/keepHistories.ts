/**
 * `npm run histories:keep`: adds a representative set of the histories the
 * last `npm test` recorded to test/fixtures/histories, so later workflow
 * code must keep replaying them. Per workflow type, close status and set of
 * patch markers (the paths a later change is likeliest to break) it keeps
 * the history with the most events and the one with the fewest, unless one
 * with that outcome, patch set and event count is kept already.
 * It adds files and never replaces one (retire a fixture deliberately, with
 * git rm).
 */
import { copyFile, mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { committedHistoriesDir, liveHistoriesDir, readRecordedHistories } from './histories';

/** A fixture larger than this is left out: the committed set stays small enough to review. */
const MAX_FIXTURE_BYTES = 256 * 1024;
/** The marker Temporal's SDKs record for `patched()`. */
const PATCH_MARKER_NAME = 'core_patch';

interface Candidate {
  file: string;
  events: number;
}

async function main(): Promise<void> {
  const source = process.argv[2] ?? liveHistoriesDir();
  const target = committedHistoriesDir();
  const recorded = await readRecordedHistories(source);
  if (recorded.length === 0) throw new Error(`no recorded histories under ${source}: run npm test first`);
  const groups = new Map<string, Candidate[]>();
  for (const { file, record, history } of recorded) {
    if ((await stat(path.join(source, file))).size > MAX_FIXTURE_BYTES) continue;
    const patches = new Set<string>();
    for (const event of history.events ?? []) {
      const marker = event.markerRecordedEventAttributes;
      if (marker?.markerName !== PATCH_MARKER_NAME) continue;
      const id = marker.details?.['patch-data']?.payloads?.[0]?.data;
      patches.add(id ? (JSON.parse(Buffer.from(id).toString('utf8')) as { id?: string }).id ?? 'patch' : 'patch');
    }
    // The patch set is part of the group, not of the file name: a name says type, outcome and size, as before.
    const key = `${record.workflowType}-${record.status.toLowerCase()}`;
    const group = `${key}\0${[...patches].sort().join(',')}`;
    groups.set(group, [...(groups.get(group) ?? []), { file, events: history.events?.length ?? 0 }]);
  }
  await mkdir(target, { recursive: true });
  const existing = await readdir(target);
  let added = 0;
  for (const [group, candidates] of [...groups].sort(([a], [b]) => a.localeCompare(b))) {
    const key = group.split('\0')[0]!;
    candidates.sort((a, b) => b.events - a.events || a.file.localeCompare(b.file));
    for (const pick of new Set([candidates[0]!, candidates[candidates.length - 1]!])) {
      const outcome = `${key}-${pick.events}-events-`;
      if (existing.some((name) => name.startsWith(outcome))) continue;
      const name = `${outcome}${path.basename(pick.file)}`;
      if (existing.includes(name)) continue;
      await copyFile(path.join(source, pick.file), path.join(target, name));
      existing.push(name);
      process.stdout.write(`kept ${name}\n`);
      added++;
    }
  }
  process.stdout.write(`${added} histories added to ${path.relative(process.cwd(), target) || target}\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`histories:keep: ${err.message}\n`);
  process.exit(1);
});
