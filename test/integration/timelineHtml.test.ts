/**
 * `ferry timeline <id> --html`: pages of real workflows rendered in headless
 * Chromium. A sync whose land failed twice before succeeding: bars exist for
 * every attempt, the failed attempts are red, the retry backoff is shaded.
 * Pipelines (the demo's coder → validator → reporter, and one aborted in
 * its validator stage): one lane per stage with its duration and outcome.
 * Screenshots are kept under test-output/ (git-ignored).
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
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { chromium, type Browser, type Page } from 'playwright-core';
import { runDemoAgent } from '../../client/demoAgent';
import { PipelineClient } from '../../client/pipelineClient';
import { writeDemoInput } from '../../client/sampleData';
import { repoRoot } from '../../client/tools';
import type { SyncInput } from '../../core/sync';
import { startFlakyAgent, type AgentDouble } from '../support/agentDoubles';
import { writeTree } from '../support/fixtures';
import { CHROMIUM, chromiumMissing, requireOrSkip } from '../support/requirements';
import { startTestStack, type TestStack } from '../support/testStack';

const run = promisify(execFile);
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const skip = requireOrSkip('Chromium', chromiumMissing());
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

  /** Writes the page of a workflow with the CLI, as a user would, and returns its path. */
  async function writePage(workflowId: string, gap: string): Promise<string> {
    const page = path.join(outputDir, `${workflowId}.html`);
    const { stdout } = await run(process.execPath, [path.join(repoRoot(), 'bin', 'ferry.js'), 'timeline', workflowId, '--html', page, '--gap', gap], {
      cwd: work,
      env: { ...process.env, ...stack.settings, FERRY_HOME: path.join(work, 'no-stack') },
      timeout: 60_000,
    });
    assert.equal(stdout.trim(), `wrote ${page}`);
    assert.doesNotMatch(await readFile(page, 'utf8'), /<script|<link|src="http/, 'the page is self-contained');
    return page;
  }

  /** Opens a page in headless Chromium, hands it to `check`, and keeps a screenshot. */
  async function inChromium(page: string, check: (tab: Page) => Promise<void>): Promise<void> {
    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
    try {
      const tab = await browser.newPage({ viewport: { width: 1400, height: 700 } });
      await tab.goto(pathToFileURL(page).href);
      await check(tab);
      const screenshot = page.replace(/\.html$/, '.png');
      await tab.screenshot({ path: screenshot, fullPage: true });
      assert.ok(existsSync(screenshot));
    } finally {
      await browser.close();
    }
  }

  interface LaneOnPage {
    stage: string | null;
    outcome: string | null;
    head: string;
    bar?: { left: number; width: number; height: number };
    activities: (string | null)[];
  }

  /** Each stage lane as the browser lays it out: its head, its bar's box and the steps drawn in it. */
  const lanesOf = (tab: Page): Promise<LaneOnPage[]> =>
    tab.$$eval('.lane', (elements) =>
      elements.map((lane) => {
        const bar = lane.querySelector('.stage-bar')?.getBoundingClientRect();
        return {
          stage: lane.getAttribute('data-stage'),
          outcome: lane.getAttribute('data-outcome'),
          head: (lane.querySelector('.lane-head .label')?.textContent ?? '').trim(),
          bar: bar && { left: bar.left, width: bar.width, height: bar.height },
          activities: [...lane.querySelectorAll('.bar.attempt')].map((e) => e.getAttribute('data-activity')),
        };
      }),
    );

  it('draws a bar per recorded attempt, failed attempts in red and the retry backoff shaded', async () => {
    const source = path.join(work, 'project');
    await writeTree(source, { 'input.csv': 'a,b\n1,2\n', 'src/main.py': 'print(1)\n' });
    const taskQueue = 'ferry-test-html';
    await stack.startWorker({ taskQueue, localAgent: { url: flaky.url, token: stack.agentToken } });
    const input: SyncInput = { sessionId: 'html', source: { path: source } };
    const handle = await stack.client.workflow.start('syncWorkflow', { taskQueue, workflowId: 'timeline-html-sync', args: [input] });
    await handle.result();

    const page = await writePage(handle.workflowId, '500ms');
    await inChromium(page, async (tab) => {
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
          ['provisionSession', '1', 'completed'],
          ['snapshotSource', '1', 'completed'],
          ['uploadBlobs', '1', 'completed'],
          ['landManifest', '1–2', 'failed'],
          ['landManifest', '3', 'completed'],
          ['verifyLanding', '1', 'completed'],
        ],
      );
      for (const bar of bars) assert.ok(bar.width >= 3 && bar.height > 0, `${bar.activity} attempt ${bar.attempt} is visible (${bar.width}×${bar.height})`);
      const earlier = bars[3];
      assert.match(earlier.image, /rgb\(217, 48, 37\)/, 'earlier, failed attempts are hatched red');
      assert.ok(earlier.width > bars[4].width, 'the retry stretch (two attempts and backoff) is wider than the last attempt');
      assert.equal(bars[4].background, 'rgb(30, 142, 62)');

      const gaps = await tab.$$eval('.gap', (elements) => elements.map((e) => ({ cause: e.getAttribute('data-gap-cause'), width: e.getBoundingClientRect().width })));
      assert.ok(gaps.some((g) => g.cause === 'retry-backoff' && g.width > 10), `retry backoff shaded: ${JSON.stringify(gaps)}`);
      assert.match((await tab.textContent('.verdict')) ?? '', /landManifest needed 3 attempts \(BlobDownloadFailed before\)/);
      assert.equal(await tab.$$eval('.lane', (lanes) => lanes.length), 0, 'a sync has no stages');
    });
  });

  it("groups a pipeline's steps into one lane per stage, each with its duration and outcome", async () => {
    const pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
    const input = writeDemoInput(path.join(work, 'pipeline-input'));
    const { workflowId } = await pipelines.start({ sessionId: 'html-lanes', inputs: [{ path: input }], stageIdleTimeout: '2m' });
    const result = await runDemoAgent(pipelines, workflowId);
    assert.deepEqual(result.stages.map((s) => s.status), ['finished', 'finished', 'finished']);

    await inChromium(await writePage(workflowId, '30s'), async (tab) => {
      const lanes = await lanesOf(tab);
      assert.deepEqual(lanes.map((l) => [l.stage, l.outcome]), [
        ['coder', 'finished'],
        ['validator', 'finished'],
        ['reporter', 'finished'],
      ]);
      for (const lane of lanes) {
        assert.match(lane.head, new RegExp(`^${lane.stage} [\\d.hms]+ · finished`), `the head names the stage, its duration and outcome: ${lane.head}`);
        assert.ok(lane.bar && lane.bar.width >= 3 && lane.bar.height > 0, `${lane.stage}'s span is visible: ${JSON.stringify(lane.bar)}`);
        assert.ok(lane.activities.includes('executeCode'), `${lane.stage} holds its executions: ${lane.activities.join(', ')}`);
        assert.equal(lane.activities.at(-1), 'collectArtifacts', `${lane.stage} ends with its artifacts`);
      }
      for (let i = 1; i < lanes.length; i++) assert.ok(lanes[i].bar!.left >= lanes[i - 1].bar!.left + lanes[i - 1].bar!.width - 1, `${lanes[i].stage} begins after ${lanes[i - 1].stage} ends`);
      const outside = await tab.$$eval('.workflow > .chart > .row .bar.attempt, .after-stages .bar.attempt', (bars) => bars.map((b) => b.getAttribute('data-activity')));
      assert.equal(outside[0], 'provisionSession');
      assert.equal(outside.at(-1), 'releaseSession', 'the release belongs to no stage');
      const summary = await tab.$$eval('table.stages tr[data-stage]', (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => (td.textContent ?? '').trim())));
      assert.deepEqual(summary.map((row) => [row[0], row[2]]), [
        ['coder', 'finished'],
        ['validator', 'finished'],
        ['reporter', 'finished'],
      ]);
      assert.equal(summary.filter((row) => row[1].endsWith('(slowest)')).length, 1, 'the slowest stage is marked');
    });
  });

  it('a pipeline aborted in its validator stage: coder finished, validator failed with the reason, reporter not reached', async () => {
    const pipelines = new PipelineClient(stack.client, stack.config.temporal.taskQueue);
    const input = writeDemoInput(path.join(work, 'abort-input'));
    const { workflowId } = await pipelines.start({ sessionId: 'html-abort', inputs: [{ path: input }], stageIdleTimeout: '2m' });
    await pipelines.execute(workflowId, { language: 'bash', code: 'ls ./data/' });
    await pipelines.finishStage(workflowId, 'listed', { stage: 'coder' });
    // An execute sent after finishStage runs in the next stage: the validator has begun once it returns.
    assert.equal((await pipelines.execute(workflowId, { language: 'bash', code: 'exit 3' })).exitCode, 3);
    await pipelines.abort(workflowId, 'the validator found nothing to check');
    await assert.rejects(pipelines.result(workflowId), (err: unknown) => err instanceof WorkflowFailedError && err.cause instanceof ApplicationFailure && err.cause.type === 'PipelineAborted');

    await inChromium(await writePage(workflowId, '30s'), async (tab) => {
      const lanes = await lanesOf(tab);
      assert.deepEqual(lanes.map((l) => [l.stage, l.outcome]), [
        ['coder', 'finished'],
        ['validator', 'failed'],
        ['reporter', 'not-reached'],
      ]);
      assert.match(lanes[1].head, /^validator [\d.hms]+ · failed/);
      assert.ok(lanes[1].bar && lanes[1].bar.width >= 3, 'the failed stage spans until the workflow gave up');
      const barColour = await tab.$eval('.lane[data-stage="validator"] .stage-bar', (bar) => (globalThis as unknown as { getComputedStyle: (element: unknown) => { borderTopColor: string } }).getComputedStyle(bar).borderTopColor);
      assert.equal(barColour, 'rgb(217, 48, 37)', 'the failed stage is drawn red');
      assert.equal(lanes[2].bar, undefined, 'a stage never reached has no span');
      assert.match(lanes[2].head, /^reporter not reached/);
      const validator = await tab.$eval('table.stages tr[data-stage="validator"]', (row) => (row.textContent ?? '').trim());
      assert.match(validator, /1 failed or exited non-zero; failed: PipelineAborted: aborted: the validator found nothing to check/);
      assert.match((await tab.textContent('.verdict')) ?? '', /^pipelineWorkflow failed: PipelineAborted: aborted: the validator found nothing to check; stage validator failed after /);
    });
  });
});
