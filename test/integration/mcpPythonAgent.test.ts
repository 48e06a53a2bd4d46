/**
 * examples/mcp_agent.py, the Python agent example, run as a user runs it:
 * the PyPI `mcp` client (installed by `scripts/install-tools.sh --only
 * mcp-python`) starts `ferry mcp` and drives a coder → validator → reporter
 * pipeline on the sample CSV against the real stack.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { PipelineClient } from '../../client/pipelineClient';
import { writeDemoInput } from '../../client/sampleData';
import { repoRoot } from '../../client/tools';
import { requireOrSkipTest } from '../support/requirements';
import { startTestStack, type TestStack } from '../support/testStack';

const run = promisify(execFile);
const python = path.join(repoRoot(), '.tools', 'mcp-python', 'bin', 'python');
const example = path.join(repoRoot(), 'examples', 'mcp_agent.py');
let stack: TestStack | undefined;
let work: string;

/** Why the example cannot run here, or undefined when the pinned client imports. */
async function clientMissing(): Promise<string | undefined> {
  if (!existsSync(python)) return `${python} is missing: run bash scripts/install-tools.sh --only mcp-python`;
  try {
    await run(python, ['-c', 'import mcp']);
    return undefined;
  } catch (err) {
    return `${python} cannot import mcp (${(err as { stderr?: string }).stderr?.trim().split('\n').at(-1) ?? (err as Error).message}): run bash scripts/install-tools.sh --only mcp-python`;
  }
}

let missing: string | undefined;

before(async () => {
  missing = await clientMissing();
  if (missing) return;
  stack = await startTestStack();
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-mcp-python-'));
});

after(async () => {
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('examples/mcp_agent.py', () => {
  it('drives coder → validator → reporter through ferry mcp with the PyPI mcp client', async (t: TestContext) => {
    if (!requireOrSkipTest(t, 'the PyPI mcp client (bash scripts/install-tools.sh --only mcp-python)', missing)) return;
    const input = writeDemoInput(path.join(work, 'input'));
    const { stdout, stderr } = await run(python, [example, '--session', 'py-demo', '--input', input, '--node', process.execPath], {
      cwd: work,
      env: { ...process.env, ...stack!.settings, FERRY_HOME: path.join(work, 'home') },
      timeout: 300_000,
      maxBuffer: 16 << 20,
    });
    assert.match(stdout, /^# Sales by category\n\n1000 rows; validator: totals verified against the data\n/);
    assert.match(stdout, /\| 정육 \| 47,722,600 \| 56\.3% \|/);
    assert.match(stderr, /\[coder\] exit 0 in \d+ ms \(inputs re-verified\)/);
    assert.match(stderr, /\[coder\] exit 0 in \d+ ms \(inputs checked\)/);
    assert.match(stderr, /\[reporter\] finished: 3 artifacts collected/);
    assert.match(stderr, /pipeline completed after 5 executions/);
    const state = await new PipelineClient(stack!.client, stack!.config.temporal.taskQueue).state('pipeline-py-demo');
    assert.equal(state.status, 'completed');
    assert.deepEqual(state.stages.map((s) => [s.name, s.status]), [['coder', 'finished'], ['validator', 'finished'], ['reporter', 'finished']]);

    // A tool error reaches the agent as its type and cause, and the agent stops with it.
    const refused = await run(python, [example, '--session', 'bad/id', '--input', input, '--node', process.execPath], { cwd: work, env: { ...process.env, ...stack!.settings, FERRY_HOME: path.join(work, 'home') }, timeout: 120_000 }).then(
      () => assert.fail('the agent should fail on a refused session id'),
      (err: { code?: number; stderr?: string }) => err,
    );
    assert.equal(refused.code, 1);
    assert.match(refused.stderr ?? '', /^agent: start_session: InvalidInput: /m);
  });
});
