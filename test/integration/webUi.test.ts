/**
 * Temporal Web, in a real browser: the finished demo pipeline's history,
 * as an engineer would open it, shows the session's steps by name.
 * playwright-core drives Debian's Chromium (headless, no background
 * networking); without Chromium the test is skipped, saying why, and under
 * CI=true it fails instead (test/support/requirements.ts).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { workflowUiUrl } from '../../core/config';
import { runDemoAgent } from '../../client/demoAgent';
import { PipelineClient } from '../../client/pipelineClient';
import { writeDemoInput } from '../../client/sampleData';
import { repoRoot } from '../../client/tools';
import { CHROMIUM, chromiumMissing, requireOrSkip } from '../support/requirements';
import { startTestStack, type TestStack } from '../support/testStack';

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];
const skip = requireOrSkip('Chromium', chromiumMissing());

let stack: TestStack;
let browser: Browser;
let work: string;

before(async () => {
  if (skip) return;
  stack = await startTestStack({ webUi: true });
  work = await mkdtemp(path.join(os.tmpdir(), 'ferry-webui-test-'));
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

describe('Temporal Web UI', { skip }, () => {
  it("shows the finished demo pipeline's provisionSession, verifyLanding, executeCode and collectArtifacts", async () => {
    const pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
    const { workflowId, runId } = await pipelines.start({ sessionId: 'webui', inputs: [{ path: writeDemoInput(path.join(work, 'input')) }] });
    await runDemoAgent(pipelines, workflowId);

    const page = await browser.newPage({ viewport: { width: 1600, height: 2400 } });
    await page.goto(workflowUiUrl(stack.config, workflowId, runId), { waitUntil: 'networkidle' });
    await page.getByText('collectArtifacts').first().waitFor({ timeout: 60_000 });
    // The full event list pages 100 events at a time; the compact view shows one row per activity.
    await page.getByText('Compact', { exact: true }).click();
    await page.getByText('provisionSession').first().waitFor({ timeout: 30_000 });
    const text = await page.locator('body').innerText();
    for (const activity of ['provisionSession', 'verifyLanding', 'executeCode', 'collectArtifacts']) {
      assert.ok(text.includes(activity), `the history page shows ${activity}`);
    }
    assert.match(text, /completed/i, 'the workflow shows as completed');
    const output = path.join(repoRoot(), 'test-output');
    await mkdir(output, { recursive: true });
    await page.screenshot({ path: path.join(output, 'webui-pipeline-history.png'), fullPage: true });
    await page.close();
  });
});
