/**
 * `node dist/bench/profileSync.js <folder> [runs] [profile.cpuprofile] [cold|no-change]`:
 * one cold sync of a folder and `runs` no-change syncs on the test stack with
 * the agent in this process, so one CPU profile (of the cold run or of the
 * no-change runs, when a file is named) covers the worker and the agent.
 * Prints each run's step durations. Open the profile in Chrome DevTools or
 * VS Code.
 */
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { performance } from 'node:perf_hooks';
import type { SyncResult } from '../core/sync';
import { startTestStack } from '../test/support/testStack';

async function main(): Promise<void> {
  const [folder, runsText = '3', profileFile, profiled = 'no-change'] = process.argv.slice(2);
  if (!folder || !['cold', 'no-change'].includes(profiled)) throw new Error('usage: profileSync.js <folder> [no-change runs] [profile.cpuprofile] [cold|no-change]');
  const profileFrom = profiled === 'cold' ? 0 : 1;
  const profileTo = profiled === 'cold' ? 0 : Number(runsText);
  const inspector = new Session();
  const stack = await startTestStack();
  try {
    const sessionId = `profile-${Date.now()}`;
    for (let run = 0; run <= Number(runsText); run++) {
      if (run === profileFrom && profileFile) {
        inspector.connect();
        await inspector.post('Profiler.enable');
        await inspector.post('Profiler.start');
      }
      const started = performance.now();
      const result = (await stack.client.workflow.execute('syncWorkflow', {
        taskQueue: stack.config.temporal.taskQueue,
        workflowId: `${sessionId}-${run}`,
        args: [{ sessionId, source: { path: folder } }],
      })) as SyncResult;
      process.stdout.write(`${run === 0 ? 'cold' : 'no-change'} ${((performance.now() - started) / 1000).toFixed(2)} s ${JSON.stringify(result.durationsMs)} uploaded ${result.bytesUploaded}\n`);
      if (run === profileTo && profileFile) {
        const { profile } = await inspector.post('Profiler.stop');
        await writeFile(profileFile, JSON.stringify(profile));
      }
    }
  } finally {
    await stack.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  },
);
