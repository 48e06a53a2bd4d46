/**
 * `ferry timeline <id> --html out.html`: the analysis as a picture. One
 * self-contained page (inline CSS, no scripts, no network): a time axis, one
 * row per activity with a bar per recorded attempt, a pipeline's rows
 * grouped in one lane per stage (its span, duration and outcome on the
 * lane's head), gaps shaded by cause behind the rows, failures in red,
 * signals and updates as ticks, the verdict and the session's story
 * underneath.
 *
 * Temporal records only an activity's last attempt; the earlier attempts and
 * their backoff are drawn as one red, hatched bar spanning them.
 */
import { formatDurationMs } from '../core/duration';
import type { HistoryAnalysis } from '../core/history/analysis';
import type { Gap, GapCause } from '../core/history/gaps';
import type { StageLane, StageOutcome } from '../core/history/stages';
import type { Step } from '../core/history/steps';
import { failureText } from '../core/history/values';
import { clockTime } from './format';

const GAP_COLOURS: Record<GapCause, string> = {
  'waiting-for-agent': '#f5d76e',
  'waiting-for-worker': '#f0a35e',
  'retry-backoff': '#f28b82',
  'durable-timer': '#a7c7e7',
  'slow-activity': '#c5b3e6',
  'child-workflow': '#cfe8cf',
  'workflow-task': '#dddddd',
};

const GAP_LABELS: Record<GapCause, string> = {
  'waiting-for-agent': 'waiting for the agent',
  'waiting-for-worker': 'waiting for a worker',
  'retry-backoff': 'retry backoff',
  'durable-timer': 'durable timer',
  'slow-activity': 'slow activity',
  'child-workflow': 'child workflow',
  'workflow-task': 'workflow task',
};

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);

const ms = (isoTime: string | undefined) => (isoTime ? Date.parse(isoTime) : undefined);

interface Axis {
  startMs: number;
  endMs: number;
}

function span(axis: Axis, fromMs: number, toMs: number): string {
  const total = Math.max(axis.endMs - axis.startMs, 1);
  const left = ((fromMs - axis.startMs) / total) * 100;
  const width = ((toMs - fromMs) / total) * 100;
  return `left:${left.toFixed(3)}%;width:${Math.max(width, 0).toFixed(3)}%`;
}

function workflowEndMs(analysis: HistoryAnalysis): number {
  const start = ms(analysis.startedAt) ?? 0;
  return Math.max(ms(analysis.closedAt) ?? start + (analysis.durationMs ?? 0), ...analysis.children.map(workflowEndMs));
}

function workflowStartMs(analysis: HistoryAnalysis): number {
  return Math.min(ms(analysis.startedAt) ?? Number.POSITIVE_INFINITY, ...analysis.children.map(workflowStartMs));
}

/** A tick step giving 4–10 ticks across the axis. */
function tickStepMs(totalMs: number): number {
  const steps = [100, 250, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000, 86_400_000];
  return steps.find((step) => totalMs / step <= 10) ?? steps[steps.length - 1];
}

function axisRow(axis: Axis): string {
  const step = tickStepMs(axis.endMs - axis.startMs);
  const ticks: string[] = [];
  for (let t = Math.ceil(axis.startMs / step) * step; t <= axis.endMs; t += step) {
    const label = step < 1000 ? clockTime(new Date(t).toISOString()).slice(0, 12) : clockTime(new Date(t).toISOString()).slice(0, 8);
    ticks.push(`<div class="tick" style="${span(axis, t, t)}"><span>${label}</span></div>`);
  }
  return `<div class="row axis"><div class="label">UTC</div><div class="track">${ticks.join('')}</div></div>`;
}

function stepBars(step: Step, axis: Axis, nowMs: number): string {
  const scheduled = ms(step.scheduledAt)!;
  const started = ms(step.startedAt);
  const closed = ms(step.closedAt) ?? nowMs;
  const failed = step.status === 'failed' || step.status === 'timedOut' || step.status === 'canceled';
  const bars: string[] = [];
  const data = `data-activity="${escapeHtml(step.name)}" data-activity-id="${escapeHtml(step.activityId)}"`;
  if (started !== undefined && step.attempts > 1) {
    const earlier = step.attempts > 2 ? `1–${step.attempts - 1}` : '1';
    const title = `${step.name}: attempt${step.attempts > 2 ? 's' : ''} ${earlier} failed and ${step.attempts > 2 ? 'were' : 'was'} retried with backoff; last failure: ${failureText(step.lastRetryFailure)}`;
    bars.push(`<div class="bar attempt earlier failed" ${data} data-attempt="${earlier}" data-status="failed" style="${span(axis, scheduled, started)}" title="${escapeHtml(title)}"></div>`);
  } else if (step.status === 'scheduled' && step.attempts > 1 && step.lastAttemptEndedAt) {
    const title = `${step.name}: attempt${step.attempts > 2 ? `s 1–${step.attempts}` : ` ${step.attempts}`} failed; waiting to retry. Last failure: ${failureText(step.lastRetryFailure)}`;
    bars.push(`<div class="bar attempt earlier failed" ${data} data-attempt="1–${step.attempts}" data-status="failed" style="${span(axis, scheduled, ms(step.lastAttemptEndedAt)!)}" title="${escapeHtml(title)}"></div>`);
  } else {
    const queuedUntil = started ?? closed;
    bars.push(`<div class="wait" style="${span(axis, scheduled, queuedUntil)}" title="${escapeHtml(`${step.name} queued for ${formatDurationMs(queuedUntil - scheduled)}${step.taskQueue ? ` on task queue ${step.taskQueue}` : ''}`)}"></div>`);
  }
  if (started !== undefined) {
    const title = [
      `${step.name} attempt ${step.attempts}: ${step.status}`,
      `${clockTime(step.startedAt)} → ${step.closedAt ? clockTime(step.closedAt) : 'now'} (${formatDurationMs(closed - started)})`,
      step.failure ? failureText(step.failure) : '',
      step.session?.bootId ? `boot ${step.session.bootId}` : '',
    ]
      .filter(Boolean)
      .join('\n');
    const statusClass = failed ? 'failed' : step.status === 'completed' ? 'completed' : 'running';
    bars.push(`<div class="bar attempt ${statusClass}" ${data} data-attempt="${step.attempts}" data-status="${step.status}" style="${span(axis, started, closed)}" title="${escapeHtml(title)}"></div>`);
  } else if (failed) {
    // Closed without a recorded start (schedule-to-start timeout, cancel): the failure still shows.
    bars.push(`<div class="bar attempt failed" ${data} data-attempt="${step.attempts}" data-status="${step.status}" style="${span(axis, closed, closed)}" title="${escapeHtml(failureText(step.failure))}"></div>`);
  }
  return bars.join('');
}

function stepRow(step: Step, axis: Axis, nowMs: number): string {
  const label = `${step.name}${step.attempts > 1 ? ` ×${step.attempts}` : ''}`;
  return `<div class="row"><div class="label" title="${escapeHtml(label)}">${escapeHtml(label)}</div><div class="track">${stepBars(step, axis, nowMs)}</div></div>`;
}

const STAGE_OUTCOME_LABELS: Record<StageOutcome, string> = {
  finished: 'finished',
  failed: 'failed',
  running: 'running',
  continued: 'continued as new',
  'not-reached': 'not reached',
  pending: 'not begun',
};

/** `12.3s · finished`: how long the stage took and how it ended. */
function stageSummaryText(lane: StageLane): string {
  return [lane.durationMs === undefined ? undefined : formatDurationMs(lane.durationMs), STAGE_OUTCOME_LABELS[lane.outcome]].filter(Boolean).join(' · ');
}

/** One stage: a head row whose bar spans the stage, then the rows of the steps that ran in it. */
function stageLane(lane: StageLane, steps: Step[], axis: Axis, nowMs: number, slowest: boolean): string {
  const startMs = ms(lane.startedAt);
  const bar =
    startMs === undefined
      ? ''
      : `<div class="stage-bar outcome-${lane.outcome}" style="${span(axis, startMs, ms(lane.endedAt) ?? nowMs)}" title="${escapeHtml(`stage ${lane.name}: ${lane.detail}`)}"></div>`;
  const head = `<div class="row lane-head"><div class="label" title="${escapeHtml(lane.detail)}"><span class="stage-name">${escapeHtml(lane.name)}</span> <span class="stage-summary">${escapeHtml(stageSummaryText(lane))}</span>${slowest ? ' <span class="slowest">slowest</span>' : ''}</div><div class="track">${bar}</div></div>`;
  const rows = steps.map((step) => stepRow(step, axis, nowMs)).join('\n');
  return `<div class="lane outcome-${lane.outcome}" data-stage="${escapeHtml(lane.name)}" data-outcome="${lane.outcome}">${head}${rows}</div>`;
}

/** The stage that took longest, when there are at least two to compare. */
function slowestStage(lanes: StageLane[]): StageLane | undefined {
  const timed = lanes.filter((lane) => lane.durationMs !== undefined);
  return timed.length < 2 ? undefined : timed.reduce((a, b) => (b.durationMs! > a.durationMs! ? b : a));
}

/** The steps in chart order: those before the first stage, each stage's lane, then those after (the release). */
function stepRows(analysis: HistoryAnalysis, axis: Axis, nowMs: number): string[] {
  if (!analysis.stages.length) return analysis.steps.map((step) => stepRow(step, axis, nowMs));
  const firstStageMs = Math.min(...analysis.stages.flatMap((lane) => (lane.startedAt ? [ms(lane.startedAt)!] : [])));
  const unstaged = analysis.steps.filter((step) => !step.stage);
  const slowest = slowestStage(analysis.stages);
  const after = unstaged.filter((step) => ms(step.scheduledAt)! >= firstStageMs).map((step) => stepRow(step, axis, nowMs));
  return [
    ...unstaged.filter((step) => ms(step.scheduledAt)! < firstStageMs).map((step) => stepRow(step, axis, nowMs)),
    ...analysis.stages.map((lane) => stageLane(lane, analysis.steps.filter((step) => step.stage === lane.name), axis, nowMs, lane === slowest)),
    ...(after.length ? [`<div class="after-stages">${after.join('\n')}</div>`] : []),
  ];
}

function gapBand(gap: Gap, axis: Axis): string {
  const title = `${GAP_LABELS[gap.cause]} · ${clockTime(gap.from)} → ${gap.ongoing ? 'now' : clockTime(gap.to)} (${formatDurationMs(gap.durationMs)})\n${gap.detail}`;
  return `<div class="gap gap-${gap.cause}" data-gap-cause="${gap.cause}" data-gap-from="${gap.from}" data-gap-to="${gap.to}" style="${span(axis, ms(gap.from)!, ms(gap.to)!)};background:${GAP_COLOURS[gap.cause]}" title="${escapeHtml(title)}"></div>`;
}

/** The stages at a glance: how long each took and how it ended. */
function stageSummary(analysis: HistoryAnalysis): string {
  if (!analysis.stages.length) return '';
  const slowest = slowestStage(analysis.stages);
  const rows = analysis.stages
    .map(
      (lane) =>
        `<tr class="outcome-${lane.outcome}${lane === slowest ? ' slowest' : ''}" data-stage="${escapeHtml(lane.name)}"><td>${escapeHtml(lane.name)}</td><td>${lane.durationMs === undefined ? '–' : formatDurationMs(lane.durationMs)}${lane === slowest ? ' (slowest)' : ''}</td><td><span class="outcome">${STAGE_OUTCOME_LABELS[lane.outcome]}</span></td><td>${escapeHtml(lane.detail)}</td></tr>`,
    )
    .join('');
  return `<table class="stages"><tr><th>stage</th><th>duration</th><th>outcome</th><th>detail</th></tr>${rows}</table>`;
}

function workflowSection(analysis: HistoryAnalysis, axis: Axis, nowMs: number, depth: number): string {
  const rows = stepRows(analysis, axis, nowMs);
  if (analysis.messages.length) {
    const marks = analysis.messages
      .map((m) => `<div class="mark ${m.kind}${m.failed ? ' failed' : ''}" data-message="${escapeHtml(m.name)}" style="${span(axis, ms(m.at)!, ms(m.at)!)}" title="${escapeHtml(`${m.kind} ${m.name} at ${clockTime(m.at)}${m.failed ? ' (answered with a failure)' : ''}`)}"></div>`)
      .join('');
    rows.push(`<div class="row"><div class="label">signals · updates</div><div class="track">${marks}</div></div>`);
  }
  const bands = analysis.gaps.map((gap) => gapBand(gap, axis)).join('');
  const took = analysis.durationMs !== undefined ? ` · ${formatDurationMs(analysis.durationMs)}` : '';
  const link = analysis.webUiUrl ? ` · <a href="${escapeHtml(analysis.webUiUrl)}">Web UI</a>` : '';
  const failed = analysis.status !== 'completed' && analysis.status !== 'running' && analysis.status !== 'continuedAsNew';
  const children = analysis.children.map((child) => workflowSection(child, axis, nowMs, depth + 1)).join('');
  return `<section class="workflow depth-${Math.min(depth, 3)}" data-workflow-id="${escapeHtml(analysis.workflowId)}">
<h2><span class="status ${failed ? 'failed' : escapeHtml(analysis.status)}">${escapeHtml(analysis.status)}</span> ${escapeHtml(analysis.workflowType)} <code>${escapeHtml(analysis.workflowId)}</code>${took}${link}</h2>
${stageSummary(analysis)}
<div class="chart"><div class="bands">${bands}</div>${rows.join('\n') || '<div class="row"><div class="label">(no activities)</div><div class="track"></div></div>'}</div>
</section>
${children}`;
}

function legend(): string {
  const gaps = (Object.keys(GAP_COLOURS) as GapCause[])
    .map((cause) => `<span class="key"><i style="background:${GAP_COLOURS[cause]}"></i>${GAP_LABELS[cause]}</span>`)
    .join('');
  return `<div class="legend"><span class="key"><i class="bar completed"></i>attempt completed</span><span class="key"><i class="bar running"></i>running</span><span class="key"><i class="bar failed"></i>failed</span><span class="key"><i class="bar earlier failed"></i>earlier attempts + backoff</span><span class="key"><i class="wait"></i>queued</span> · gaps: ${gaps}</div>`;
}

function problemList(analysis: HistoryAnalysis): string {
  const problems = [analysis, ...analysis.children].flatMap((a) => a.problems);
  if (!problems.length) return '';
  const items = problems.map((p) => `<li class="${p.outcome === 'retried' || p.outcome === 'retrying' ? 'retried' : 'failed'}">${escapeHtml(p.summary)}</li>`).join('');
  return `<h3>Failed or retried steps</h3><ul class="steps">${items}</ul>`;
}

function storyTable(analysis: HistoryAnalysis): string {
  if (!analysis.session.length) return '';
  const rows = analysis.session.map((e) => `<tr class="story-${e.kind}"><td>${clockTime(e.at)}</td><td>${escapeHtml(e.kind)}</td><td>${escapeHtml(e.detail)}</td></tr>`).join('');
  return `<h3>Session</h3><table class="story"><tr><th>time</th><th>event</th><th>detail</th></tr>${rows}</table>`;
}

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:18px;margin:0 0 4px}h2{font-size:14px;margin:18px 0 6px}h3{font-size:14px;margin:20px 0 6px}
.verdict{padding:8px 12px;background:#f6f6f6;border-left:4px solid #888;margin:8px 0 12px}
.verdict.failed{border-color:#d93025}.verdict.completed{border-color:#1e8e3e}
.status{display:inline-block;padding:0 6px;border-radius:3px;background:#ddd;font-size:12px}
.status.completed{background:#ceead6}.status.failed{background:#fad2cf}.status.running{background:#d2e3fc}
.chart{position:relative}
.bands{position:absolute;top:0;bottom:0;left:220px;right:0;pointer-events:none}
.gap{position:absolute;top:0;bottom:0;opacity:.55;pointer-events:auto}
.row{display:flex;height:24px;align-items:center;position:relative}
.label{width:212px;flex:none;padding-right:8px;text-align:right;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;font-size:12px}
.track{position:relative;flex:1;height:100%;border-bottom:1px solid #eee}
.bar{position:absolute;top:5px;height:14px;min-width:3px;border-radius:2px}
.bar.completed{background:#1e8e3e}.bar.running{background:#1a73e8}.bar.failed{background:#d93025}
.bar.earlier{background:repeating-linear-gradient(45deg,#d93025 0 4px,#f4b6b0 4px 8px)}
.wait{position:absolute;top:11px;height:2px;background:#999;min-width:1px}
.mark{position:absolute;top:3px;height:18px;width:3px;min-width:3px;margin-left:-1px;background:#5f6368}
.mark.update{background:#9334e6}.mark.failed{background:#d93025}
.axis .track{border-bottom:1px solid #999}.tick{position:absolute;top:0;height:100%;border-left:1px solid #ccc}
.tick span{position:absolute;left:3px;top:3px;font-size:11px;color:#555;white-space:nowrap}
.depth-1{margin-left:16px}.depth-2,.depth-3{margin-left:32px}
.legend{font-size:12px;margin:6px 0}.key{margin-right:12px;white-space:nowrap}
.key i{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle;position:static}
.key i.wait{height:2px}
ul.steps li.failed{color:#a50e0e}ul.steps li.retried{color:#8a4b00}
table.story,table.stages{border-collapse:collapse;font-size:12px}
table.story td,table.story th,table.stages td,table.stages th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
table.stages{margin:0 0 8px 16px}table.stages tr.slowest td:nth-child(2){font-weight:600}
.outcome{display:inline-block;padding:0 6px;border-radius:3px;background:#ddd}
.outcome-finished .outcome{background:#ceead6}.outcome-failed .outcome{background:#fad2cf}.outcome-running .outcome{background:#d2e3fc}
.lane,.after-stages{border-top:1px solid #bbb;margin-top:2px}
.lane-head .label{font-weight:600}.lane-head .stage-summary{font-weight:400;color:#555}
span.slowest{color:#8a4b00;font-size:11px}
.stage-bar{position:absolute;top:3px;height:18px;min-width:3px;border-radius:3px;box-sizing:border-box;border:2px solid #1e8e3e;background:rgba(30,142,62,.15)}
.stage-bar.outcome-failed{border-color:#d93025;background:rgba(217,48,37,.2)}
.stage-bar.outcome-running{border-color:#1a73e8;background:rgba(26,115,232,.15)}
.stage-bar.outcome-continued{border-color:#888;background:rgba(0,0,0,.06)}
.lane.outcome-not-reached .lane-head .label,.lane.outcome-pending .lane-head .label{color:#999}
`;

/** The analysis of a workflow tree as one self-contained HTML page. */
export function renderTimelineHtml(analysis: HistoryAnalysis): string {
  const startMs = workflowStartMs(analysis);
  const endMs = Math.max(workflowEndMs(analysis), startMs + 1);
  // A running workflow's open bars end at the moment the analysis was taken.
  const nowMs = endMs;
  const axis: Axis = { startMs, endMs };
  const verdictClass = analysis.status === 'completed' ? 'completed' : analysis.status === 'running' ? 'running' : 'failed';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(`${analysis.workflowType} ${analysis.workflowId} — ferry timeline`)}</title>
<style>${STYLE}</style></head>
<body>
<h1>${escapeHtml(analysis.workflowType)} <code>${escapeHtml(analysis.workflowId)}</code></h1>
<div class="verdict ${verdictClass}">${escapeHtml(analysis.verdict)}</div>
${legend()}
<div class="chart">${axisRow(axis)}</div>
${workflowSection(analysis, axis, nowMs, 0)}
${problemList(analysis)}
${storyTable(analysis)}
<p class="legend">Gaps longer than ${formatDurationMs(analysis.gapThresholdMs)} are shaded. Temporal records each activity's last attempt; earlier attempts and their backoff are one hatched bar. A pipeline's steps are grouped in one lane per stage; the lane's bar spans the stage from its start to its artifacts' collection. Generated by ferry at ${new Date().toISOString()}.</p>
</body></html>
`;
}
