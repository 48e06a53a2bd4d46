/**
 * Workflow histories recorded from test runs, for the replay test: every
 * test stack writes the history of each ferry workflow it ran when it stops,
 * and a curated set is kept in the repository so a change to workflow code
 * that breaks histories recorded by earlier code fails the build.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { historyFromJSON, historyToJSON } from '@temporalio/common/lib/proto-utils';
import type { History } from '@temporalio/common/lib/proto-utils';
import * as workflows from '../../workflows';
import { ENCRYPTED_ENCODING } from '../../temporal/payloadCodec';
import { repoRoot } from '../../client/tools';

/** One recorded history with what the replay needs besides the events. */
export interface RecordedHistory {
  workflowId: string;
  runId: string;
  workflowType: string;
  status: string;
  history: unknown;
}

/** Where this test run's stacks write their histories (cleared by the test command). */
export function liveHistoriesDir(): string {
  return path.join(repoRoot(), 'test-output', 'histories');
}

/** The committed histories, recorded by earlier workflow code. */
export function committedHistoriesDir(): string {
  return path.join(repoRoot(), 'test', 'fixtures', 'histories');
}

/**
 * Histories of a change that was deployed by draining, not by patching:
 * trainingWorkflow before one target model (landArchive, verifyInstanceLanding;
 * README "Upgrading"). Kept to show the replayer refuses them.
 */
export function retiredHistoriesDir(): string {
  return path.join(repoRoot(), 'test', 'fixtures', 'histories-retired');
}

const FERRY_WORKFLOW_TYPES = new Set(Object.keys(workflows));
const ENCRYPTED_ENCODING_BASE64 = Buffer.from(ENCRYPTED_ENCODING).toString('base64');

/**
 * Writes the history of every ferry workflow on the server to `dir/<label>/`.
 * Test-only workflow types and encrypted histories (their key is the test's)
 * are left out: the replay runs ferry's own bundle without a codec.
 */
export async function recordHistories(client: Client, dir: string, label: string): Promise<number> {
  const out = path.join(dir, label);
  let recorded = 0;
  for await (const execution of client.workflow.list()) {
    if (!FERRY_WORKFLOW_TYPES.has(execution.type)) continue;
    const history = await client.workflow.getHandle(execution.workflowId, execution.runId).fetchHistory();
    const json = historyToJSON(history);
    if (json.includes(ENCRYPTED_ENCODING_BASE64)) continue;
    const record: RecordedHistory = {
      workflowId: execution.workflowId,
      runId: execution.runId,
      workflowType: execution.type,
      status: execution.status.name,
      history: JSON.parse(json),
    };
    if (recorded === 0) await mkdir(out, { recursive: true });
    await writeFile(path.join(out, `${execution.workflowId}.${execution.runId}.json`.replace(/[^\w.-]/g, '_')), JSON.stringify(record));
    recorded++;
  }
  return recorded;
}

/** Every recorded history under `dir`, at any depth, with its file name. */
export async function readRecordedHistories(dir: string): Promise<{ file: string; record: RecordedHistory; history: History }[]> {
  let entries: string[];
  try {
    entries = (await readdir(dir, { recursive: true })).filter((name) => name.endsWith('.json')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return Promise.all(
    entries.map(async (file) => {
      const record = JSON.parse(await readFile(path.join(dir, file), 'utf8')) as RecordedHistory;
      return { file, record, history: historyFromJSON(record.history) };
    }),
  );
}
