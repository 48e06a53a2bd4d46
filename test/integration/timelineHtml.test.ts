/**
 * `ferry timeline <id> --html`: the page of a real workflow (a sync whose
 * land failed twice before succeeding) rendered in headless Chromium: bars
 * exist for every attempt, the failed attempts are red, the retry backoff is
 * shaded. A screenshot is kept under test-output/ (git-ignored).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';
import type { SyncInput } from '../../core/sync';
import { repoRoot } from '../../client/services';
import { startFlakyAgent, type AgentDouble } from '../support/agentDoubles';
import { writeTree } from '../support/fixtures';
import { startTestStack, type TestStack } from '../support/testStack';

const run = promisify(execFile);
const chromiumPath = process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const skip = existsSync(chromiumPath) ? false : `no Chromium binary at ${chromiumPath} (set FERRY_CHROMIUM)`;
const outputDir = path.join(repoRoot(), 'test-output');

let stack: TestStack;
let work: string;
let flaky: AgentDouble;

describe('ferry timeline --html in headless Chromium', { skip }, () => {
  before(async () => {
    stack = await startTestStack();
    work = await mkdtemp(path.join(os.tmpdir(), 'ferry-timeline-html-'));
    await mkdir(outputDir, { recursive: true });
    flaky = await startFlakyAgent(stack.agent.url, 2, 'input.csv');
  });

  after(async () => {
    await flaky?.close();
    await stack?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('draws a bar per recorded attempt, failed attempts in red and the retry backoff shaded', async () => {
    const source = path.join(work, 'project');
    await writeTree(source, { 'input.csv': 'a,b\n1,2\n', 'src/main.py': 'print(1)\n' });
    const taskQueue = 'ferry-test-html';
    await stack.startWorker({ taskQueue, localAgent: { url: flaky.url, token: stack.agentToken } });
    const input: SyncInput = { sessionId: 'html', source: { path: source } };
    const handle = await stack.client.workflow.start('syncWorkflow', { taskQueue, workflowId: 'timeline-html-sync', args: [input] });
    await handle.result();

    const page = path.join(outputDir, 'timeline-html-sync.html');
    const { stdout } = await run(process.execPath, [path.join(repoRoot(), 'bin', 'ferry.js'), 'timeline', handle.workflowId, '--html', page, '--gap', '500ms'], {
      cwd: work,
      env: { ...process.env, ...stack.settings, FERRY_HOME: path.join(work, 'no-stack') },
      timeout: 60_000,
    });
    assert.equal(stdout.trim(), `wrote ${page}`);
    const html = await readFile(page, 'utf8');
    assert.doesNotMatch(html, /<script|<link|src="http/, 'the page is self-contained');

    const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_FLAGS });
    try {
      const tab = await browser.newPage({ viewport: { width: 1400, height: 700 } });
      await tab.goto(pathToFileURL(page).href);
      const bars = await tab.$$eval('.bar.attempt', (elements) =>
        elements.map((e) => {
          const box = e.getBoundingClientRect();
          // Runs in the page; this project compiles without the DOM library.
          const style = (globalThis as unknown as { getComputedStyle: (element: unknown) => { backgroundColor: string; backgroundImage: string } }).getComputedStyle(e);
          return {
            activity: e.getAttribute('data-activity'),
            attempt: e.getAttribute('data-attempt'),
            status: e.getAttribute('data-status'),
            width: box.width,
            height: box.height,
            background: style.backgroundColor,
            image: style.backgroundImage,
          };
        }),
      );
      assert.deepEqual(
        bars.map((b) => [b.activity, b.attempt, b.status]),
        [
          ['snapshotSource', '1', 'completed'],
          ['uploadBlobs', '1', 'completed'],
          ['landManifest', '1–2', 'failed'],
          ['landManifest', '3', 'completed'],
          ['verifyLanding', '1', 'completed'],
        ],
      );
      for (const bar of bars) assert.ok(bar.width >= 3 && bar.height > 0, `${bar.activity} attempt ${bar.attempt} is visible (${bar.width}×${bar.height})`);
      const earlier = bars[2];
      assert.match(earlier.image, /rgb\(217, 48, 37\)/, 'earlier, failed attempts are hatched red');
      assert.ok(earlier.width > bars[3].width, 'the retry stretch (two attempts and backoff) is wider than the last attempt');
      assert.equal(bars[3].background, 'rgb(30, 142, 62)');

      const gaps = await tab.$$eval('.gap', (elements) => elements.map((e) => ({ cause: e.getAttribute('data-gap-cause'), width: e.getBoundingClientRect().width })));
      assert.ok(gaps.some((g) => g.cause === 'retry-backoff' && g.width > 10), `retry backoff shaded: ${JSON.stringify(gaps)}`);
      assert.match((await tab.textContent('.verdict')) ?? '', /landManifest needed 3 attempts \(BlobDownloadFailed before\)/);

      const screenshot = path.join(outputDir, 'timeline-html-sync.png');
      await tab.screenshot({ path: screenshot, fullPage: true });
      assert.ok(existsSync(screenshot));
    } finally {
      await browser.close();
    }
  });
});
