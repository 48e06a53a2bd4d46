/**
 * A folder swapped for a symlink while a target lands into it (issue 17,
 * item 5), on the real stack, on the runtime agent (local) and through the
 * land script (shell, as ssh and ssm run it): a sync of 2,000 files into `data/sub/deeper/`
 * while another process, standing in for code running in the session,
 * swaps `data/sub` for a symlink to a folder outside the session root —
 * atomically (renameat2 RENAME_EXCHANGE) or by rename and symlink — again
 * and again, with the outside folder holding a mirror of `deeper/` so
 * every path through the link resolves. Nothing may be written outside the
 * root, and no temp file may be left anywhere, whether the landing ends
 * verified or refused.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { sessionRoot, type SyncResult } from '../../core/sync';
import type { TargetRef } from '../../core/target';
import { isLandTempName } from '../../runtime/land';
import { writeTree } from '../support/fixtures';
import { resultOf, startTestStack, type TestStack } from '../support/testStack';

const FILES = 2_000;

let stack: TestStack;
let work: string;

before(async () => {
  stack = await startTestStack({ agentProcess: true });
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-landing-race-'));
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/**
 * Waits for the landing's first file in `<data>/sub/deeper`, then swaps
 * `<data>/sub` for a link to the outside folder for three seconds (or until
 * the stop file appears) and puts the folder back; prints how many swaps it
 * made and how many files `sub/deeper` held when it began. Started before
 * the landing, so it reacts within a millisecond instead of a process start.
 */
const SWAPPER = String.raw`
import ctypes, os, sys, time
data, mode, outside, stop = sys.argv[1:5]
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
sub, swap, moved = (os.path.join(data, name).encode() for name in ('sub', 'sub-swap', 'sub-moved'))
deeper = os.path.join(data, 'sub', 'deeper')
while not (os.path.isdir(deeper) and os.listdir(deeper)):
    if os.path.exists(stop):
        sys.exit('the landing never began')
    time.sleep(0.0005)
landed_at_start = len(os.listdir(deeper))
if mode == 'exchange':
    os.symlink(outside, swap)
def exchange():
    if libc.renameat2(AT_FDCWD, sub, AT_FDCWD, swap, RENAME_EXCHANGE) != 0:
        raise OSError(ctypes.get_errno(), 'renameat2')
swaps = 0
until = time.monotonic() + 3
while time.monotonic() < until and not os.path.exists(stop):
    if mode == 'exchange':
        exchange()
        exchange()
    else:
        os.rename(sub, moved)
        os.symlink(outside, sub)
        time.sleep(0.001)
        os.unlink(sub)
        # The agent may have made a new sub meanwhile (it was missing): it goes, the real one comes back.
        if os.path.isdir(sub):
            os.rename(sub, sub + b'-made')
        os.rename(moved, sub)
    swaps += 1
print(swaps, landed_at_start)
`;

/** Every path under `dir` (links not followed), relative. */
async function treeOf(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).sort();
}

/** Temp files of a landing anywhere under `dir`, links not followed. */
async function tempFilesUnder(dir: string): Promise<string[]> {
  return (await treeOf(dir)).filter((entry) => isLandTempName(path.basename(entry)));
}

/** The runtime agent lands with its own walk (runtime/heldFolders); the shell target with the land script's (core/shellScripts WALK), as ssh and ssm do. */
const KINDS = [
  { name: 'local', target: (): TargetRef => ({ kind: 'local' }), root: () => stack.agentRoot },
  { name: 'shell', target: (): TargetRef => ({ kind: 'shell', root: path.join(work, 'shell-target') }), root: () => path.join(work, 'shell-target') },
];

describe('a folder swapped for a symlink during a landing', () => {
  for (const kind of KINDS)
  for (const mode of ['exchange', 'rename'] as const) {
    it(`${kind.name} target: ${mode === 'exchange' ? 'atomic swap (RENAME_EXCHANGE)' : 'plain swap (rename, then symlink)'} of data/sub for a link to a mirrored outside folder, over and over while ${FILES} files land: nothing is written outside the root and no temp file is left`, async (t: TestContext) => {
      const sessionId = `race-${kind.name}-${mode}`;
      const source = path.join(work, `source-${kind.name}-${mode}`);
      await writeTree(source, Object.fromEntries(Array.from({ length: FILES }, (_, i) => [`sub/deeper/f${String(i).padStart(4, '0')}.txt`, `file ${i} ${randomUUID()}\n`])));
      const outside = path.join(work, `outside-${kind.name}-${mode}`);
      // The mirror: every path the agent could take through the link exists outside.
      await mkdir(path.join(outside, 'deeper'), { recursive: true });
      const session = path.join(kind.root(), sessionRoot(sessionId));
      const data = path.join(session, 'data');
      const stop = path.join(work, `stop-${kind.name}-${mode}`);

      const swapper = new Promise<string>((resolve, reject) =>
        execFile('python3', ['-c', SWAPPER, data, mode, outside, stop], (err, stdout, stderr) => (err ? reject(new Error(`${err.message}: ${stderr}`)) : resolve(stdout))),
      );
      swapper.catch(() => undefined);
      const handle = await stack.client.workflow.start('syncWorkflow', {
        taskQueue: stack.config.temporal.taskQueue,
        workflowId: `landing-race-${kind.name}-${mode}-${randomUUID()}`,
        args: [{ sessionId, source: { path: source }, target: kind.target() }],
      });
      const result = resultOf<SyncResult>(handle);
      let outcome: string;
      try {
        const synced = await result;
        outcome = `verified ${synced.verified}, ${synced.filesTotal} files`;
      } catch (err) {
        // Refused by landing (a walk met the link, or the folder was away) or by verification (the listing met the link): never followed.
        assert.ok(err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure, String(err));
        assert.ok(err.cause.type === 'UnsafePath' || err.cause.type === 'VerificationFailed', `${err.cause.type}: ${err.cause.message}`);
        if (err.cause.type === 'UnsafePath') assert.match(err.cause.message, kind.name === 'local' ? /data\/sub" is a symlink/ : /changed or is reached through a symlink|passes a link/);
        outcome = `${err.cause.type}: ${err.cause.message.slice(0, 120)}`;
      } finally {
        await writeFile(stop, '');
      }
      const [swaps, landedAtStart] = (await swapper).trim().split(' ').map(Number);
      assert.ok(swaps > 0 && landedAtStart < FILES, `the swapping overlapped the landing (${swaps} swaps; ${landedAtStart} of ${FILES} files landed when it began)`);

      assert.deepEqual(await treeOf(outside), ['deeper'], 'nothing was written outside the session root');
      assert.deepEqual(await tempFilesUnder(session), [], 'no temp file left in the session');
      if (kind.name === 'shell') assert.deepEqual(await treeOf(path.join(kind.root(), 'state', sessionId, 'work')), [], 'no staging left beside the session');
      const landed = (await treeOf(data)).filter((entry) => /\/f\d{4}\.txt$/.test(entry)).length;
      t.diagnostic(`figures: ${kind.name} ${mode}: ${swaps} swaps in 3 s of the landing (${landedAtStart} files in place when they began); ${landed} landed files inside the root, none outside; ${outcome}`);
    });
  }
});
