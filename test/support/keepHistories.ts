/**
 * `npm run histories:keep`: adds a representative set of the histories the
 * last `npm test` recorded to test/fixtures/histories, so later workflow
 * code must keep replaying them. Per workflow type and close status it keeps
 * the history with the most events and the one with the fewest; it adds
 * files and never replaces one (retire a fixture deliberately, with git rm).
 */
import { copyFile, mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { committedHistoriesDir, liveHistoriesDir, readRecordedHistories } from './histories';

/** A fixture larger than this is left out: the committed set stays small enough to review. */
const MAX_FIXTURE_BYTES = 256 * 1024;

async function main(): Promise<void> {
  const source = process.argv[2] ?? liveHistoriesDir();
  const target = committedHistoriesDir();
  const recorded = await readRecordedHistories(source);
  if (recorded.length === 0) throw new Error(`no recorded histories under ${source}: run npm test first`);
  const groups = new Map<string, { file: string; events: number }[]>();
  for (const { file, record, history } of recorded) {
    if ((await stat(path.join(source, file))).size > MAX_FIXTURE_BYTES) continue;
    const key = `${record.workflowType}-${record.status.toLowerCase()}`;
    groups.set(key, [...(groups.get(key) ?? []), { file, events: history.events?.length ?? 0 }]);
  }
  await mkdir(target, { recursive: true });
  const existing = new Set(await readdir(target));
  let added = 0;
  for (const [key, candidates] of [...groups].sort(([a], [b]) => a.localeCompare(b))) {
    candidates.sort((a, b) => b.events - a.events || a.file.localeCompare(b.file));
    const picks = new Set([candidates[0], candidates[candidates.length - 1]]);
    for (const pick of picks) {
      const name = `${key}-${pick.events}-events-${path.basename(pick.file)}`;
      if (existing.has(name)) continue;
      await copyFile(path.join(source, pick.file), path.join(target, name));
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
