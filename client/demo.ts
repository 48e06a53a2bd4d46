/**
 * `ferry demo`: the newcomer's first run. Brings the embedded stack up if it
 * is not running, syncs a sample folder into a session, and prints the
 * summary, the timeline and where to look in the Web UI.
 */
import path from 'node:path';
import { workflowUiUrl } from '../core/config';
import { formatSyncSummary, formatTimeline, loadTimeline, runSync } from './commands';
import { loadConfig, readStackState, stackDir } from './config';
import { writeDemoInput } from './sampleData';
import { isPidAlive } from './services';
import { DEFAULT_PORTS, startStack } from './stack';
import { connectClient } from './temporal';

export async function runDemo(print: (text: string) => void, report: (line: string) => void): Promise<void> {
  const state = readStackState();
  if (!state?.services.every((s) => isPidAlive(s.pid))) {
    await startStack({ detach: true, ports: DEFAULT_PORTS, taskQueue: process.env.FERRY_TASK_QUEUE ?? 'ferry', report });
  } else {
    report(`using the running ferry stack in ${stackDir()}`);
  }
  const input = writeDemoInput(path.join(stackDir(), 'demo', 'input'));
  const config = loadConfig();
  const { client, close } = await connectClient(config);
  try {
    report(`syncing ${input} into session demo …`);
    const summary = await runSync(client, config, { dir: input, sessionId: 'demo', dest: 'data', showProgress: true });
    print(formatSyncSummary(summary));
    print('');
    const gapMs = 30_000;
    print(formatTimeline(await loadTimeline(client, summary.workflowId, gapMs), gapMs, workflowUiUrl(config, summary.workflowId, summary.runId)));
    print('');
    print(`what the target holds, hashed on the target:  npx ferry files demo`);
    print(`the same steps as JSON:                       npx ferry timeline ${summary.workflowId} --json`);
    print(`the stack keeps running for the Web UI (${config.temporal.webUiUrl}); stop it with: npx ferry down`);
  } finally {
    await close();
  }
}
