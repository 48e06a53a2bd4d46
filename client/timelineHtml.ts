/**
 * `ferry timeline <id> --html out.html`: the diagnosis as a picture. One
 * self-contained page (inline CSS, no scripts, no network): a time axis, one
 * row per activity with a bar per recorded attempt, gaps shaded by cause
 * behind the rows, failures in red, signals and updates as ticks, the
 * verdict and the session's story underneath.
 *
 * Temporal records only an activity's last attempt; the earlier attempts and
 * their backoff are drawn as one red, hatched bar spanning them.
 */
import { failureText, type ActivityRun, type DiagnosedGap, type Diagnosis, type WaitCause } from '../core/diagnosis';
import { formatDurationMs } from '../core/duration';
import { clockTime } from './format';

const GAP_COLOURS: Record<WaitCause, string> = {
  'waiting-for-agent': '#f5d76e',
  'waiting-for-worker': '#f0a35e',
  'retry-backoff': '#f28b82',
  'durable-timer': '#a7c7e7',
  'slow-activity': '#c5b3e6',
  'child-workflow': '#cfe8cf',
  'workflow-task': '#dddddd',
};

const GAP_LABELS: Record<WaitCause, string> = {
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

function workflowEndMs(diagnosis: Diagnosis): number {
  const start = ms(diagnosis.startedAt) ?? 0;
  return Math.max(ms(diagnosis.closedAt) ?? start + (diagnosis.durationMs ?? 0), ...diagnosis.children.map(workflowEndMs));
}

function workflowStartMs(diagnosis: Diagnosis): number {
  return Math.min(ms(diagnosis.startedAt) ?? Number.POSITIVE_INFINITY, ...diagnosis.children.map(workflowStartMs));
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

function activityBars(activity: ActivityRun, axis: Axis, nowMs: number): string {
  const scheduled = ms(activity.scheduledAt)!;
  const started = ms(activity.startedAt);
  const closed = ms(activity.closedAt) ?? nowMs;
  const failed = activity.status === 'failed' || activity.status === 'timedOut' || activity.status === 'canceled';
  const bars: string[] = [];
  const data = `data-activity="${escapeHtml(activity.activityType)}" data-activity-id="${escapeHtml(activity.activityId)}"`;
  if (started !== undefined && activity.attempts > 1) {
    const earlier = activity.attempts > 2 ? `1–${activity.attempts - 1}` : '1';
    const title = `${activity.activityType}: attempt${activity.attempts > 2 ? 's' : ''} ${earlier} failed and ${activity.attempts > 2 ? 'were' : 'was'} retried with backoff; last failure: ${failureText(activity.lastRetryFailure)}`;
    bars.push(`<div class="bar attempt earlier failed" ${data} data-attempt="${earlier}" data-status="failed" style="${span(axis, scheduled, started)}" title="${escapeHtml(title)}"></div>`);
  } else if (activity.status === 'scheduled' && activity.attempts > 1 && activity.lastAttemptEndedAt) {
    const title = `${activity.activityType}: attempt${activity.attempts > 2 ? `s 1–${activity.attempts}` : ` ${activity.attempts}`} failed; waiting to retry. Last failure: ${failureText(activity.lastRetryFailure)}`;
    bars.push(`<div class="bar attempt earlier failed" ${data} data-attempt="1–${activity.attempts}" data-status="failed" style="${span(axis, scheduled, ms(activity.lastAttemptEndedAt)!)}" title="${escapeHtml(title)}"></div>`);
  } else {
    const queuedUntil = started ?? closed;
    bars.push(`<div class="wait" style="${span(axis, scheduled, queuedUntil)}" title="${escapeHtml(`${activity.activityType} queued for ${formatDurationMs(queuedUntil - scheduled)}${activity.taskQueue ? ` on task queue ${activity.taskQueue}` : ''}`)}"></div>`);
  }
  if (started !== undefined) {
    const title = [
      `${activity.activityType} attempt ${activity.attempts}: ${activity.status}`,
      `${clockTime(activity.startedAt)} → ${activity.closedAt ? clockTime(activity.closedAt) : 'now'} (${formatDurationMs(closed - started)})`,
      activity.failure ? failureText(activity.failure) : '',
      activity.session?.bootId ? `boot ${activity.session.bootId}` : '',
    ]
      .filter(Boolean)
      .join('\n');
    const statusClass = failed ? 'failed' : activity.status === 'completed' ? 'completed' : 'running';
    bars.push(
      `<div class="bar attempt ${statusClass}" ${data} data-attempt="${activity.attempts}" data-status="${activity.status}" style="${span(axis, started, closed)}" title="${escapeHtml(title)}"></div>`,
    );
  } else if (failed) {
    // Closed without a recorded start (schedule-to-start timeout, cancel): the failure still shows.
    bars.push(`<div class="bar attempt failed" ${data} data-attempt="${activity.attempts}" data-status="${activity.status}" style="${span(axis, closed, closed)}" title="${escapeHtml(failureText(activity.failure))}"></div>`);
  }
  return bars.join('');
}

function gapBand(gap: DiagnosedGap, axis: Axis): string {
  const title = `${GAP_LABELS[gap.cause]} · ${clockTime(gap.from)} → ${gap.ongoing ? 'now' : clockTime(gap.to)} (${formatDurationMs(gap.durationMs)})\n${gap.detail}`;
  return `<div class="gap gap-${gap.cause}" data-gap-cause="${gap.cause}" style="${span(axis, ms(gap.from)!, ms(gap.to)!)};background:${GAP_COLOURS[gap.cause]}" title="${escapeHtml(title)}"></div>`;
}

function workflowSection(diagnosis: Diagnosis, axis: Axis, nowMs: number, depth: number): string {
  const rows: string[] = [];
  for (const activity of diagnosis.activities) {
    const label = `${activity.activityType}${activity.attempts > 1 ? ` ×${activity.attempts}` : ''}`;
    rows.push(`<div class="row"><div class="label" title="${escapeHtml(label)}">${escapeHtml(label)}</div><div class="track">${activityBars(activity, axis, nowMs)}</div></div>`);
  }
  if (diagnosis.messages.length) {
    const marks = diagnosis.messages
      .map((m) => `<div class="mark ${m.kind}${m.failed ? ' failed' : ''}" data-message="${escapeHtml(m.name)}" style="${span(axis, ms(m.at)!, ms(m.at)!)}" title="${escapeHtml(`${m.kind} ${m.name} at ${clockTime(m.at)}${m.failed ? ' (answered with a failure)' : ''}`)}"></div>`)
      .join('');
    rows.push(`<div class="row"><div class="label">signals · updates</div><div class="track">${marks}</div></div>`);
  }
  const bands = diagnosis.gaps.map((gap) => gapBand(gap, axis)).join('');
  const took = diagnosis.durationMs !== undefined ? ` · ${formatDurationMs(diagnosis.durationMs)}` : '';
  const link = diagnosis.webUiUrl ? ` · <a href="${escapeHtml(diagnosis.webUiUrl)}">Web UI</a>` : '';
  const failed = diagnosis.status !== 'completed' && diagnosis.status !== 'running' && diagnosis.status !== 'continuedAsNew';
  const children = diagnosis.children.map((child) => workflowSection(child, axis, nowMs, depth + 1)).join('');
  return `<section class="workflow depth-${Math.min(depth, 3)}" data-workflow-id="${escapeHtml(diagnosis.workflowId)}">
<h2><span class="status ${failed ? 'failed' : escapeHtml(diagnosis.status)}">${escapeHtml(diagnosis.status)}</span> ${escapeHtml(diagnosis.workflowType)} <code>${escapeHtml(diagnosis.workflowId)}</code>${took}${link}</h2>
<div class="chart"><div class="bands">${bands}</div>${rows.join('\n') || '<div class="row"><div class="label">(no activities)</div><div class="track"></div></div>'}</div>
</section>
${children}`;
}

function legend(): string {
  const gaps = (Object.keys(GAP_COLOURS) as WaitCause[])
    .map((cause) => `<span class="key"><i style="background:${GAP_COLOURS[cause]}"></i>${GAP_LABELS[cause]}</span>`)
    .join('');
  return `<div class="legend"><span class="key"><i class="bar completed"></i>attempt completed</span><span class="key"><i class="bar running"></i>running</span><span class="key"><i class="bar failed"></i>failed</span><span class="key"><i class="bar earlier failed"></i>earlier attempts + backoff</span><span class="key"><i class="wait"></i>queued</span> · gaps: ${gaps}</div>`;
}

function stepList(diagnosis: Diagnosis): string {
  const steps = [diagnosis, ...diagnosis.children].flatMap((d) => d.steps);
  if (!steps.length) return '';
  const items = steps.map((s) => `<li class="${s.outcome === 'retried' || s.outcome === 'retrying' ? 'retried' : 'failed'}">${escapeHtml(s.summary)}</li>`).join('');
  return `<h3>Failed or retried steps</h3><ul class="steps">${items}</ul>`;
}

function storyTable(diagnosis: Diagnosis): string {
  if (!diagnosis.session.length) return '';
  const rows = diagnosis.session.map((e) => `<tr class="story-${e.kind}"><td>${clockTime(e.at)}</td><td>${escapeHtml(e.kind)}</td><td>${escapeHtml(e.detail)}</td></tr>`).join('');
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
table.story{border-collapse:collapse;font-size:12px}table.story td,table.story th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
`;

/** The diagnosis of a workflow tree as one self-contained HTML page. */
export function renderTimelineHtml(diagnosis: Diagnosis): string {
  const startMs = workflowStartMs(diagnosis);
  const endMs = Math.max(workflowEndMs(diagnosis), startMs + 1);
  // A running workflow's open bars end at the moment the diagnosis was taken.
  const nowMs = endMs;
  const axis: Axis = { startMs, endMs };
  const verdictClass = diagnosis.status === 'completed' ? 'completed' : diagnosis.status === 'running' ? 'running' : 'failed';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(`${diagnosis.workflowType} ${diagnosis.workflowId} — ferry timeline`)}</title>
<style>${STYLE}</style></head>
<body>
<h1>${escapeHtml(diagnosis.workflowType)} <code>${escapeHtml(diagnosis.workflowId)}</code></h1>
<div class="verdict ${verdictClass}">${escapeHtml(diagnosis.verdict)}</div>
${legend()}
<div class="chart">${axisRow(axis)}</div>
${workflowSection(diagnosis, axis, nowMs, 0)}
${stepList(diagnosis)}
${storyTable(diagnosis)}
<p class="legend">Gaps longer than ${formatDurationMs(diagnosis.gapThresholdMs)} are shaded. Temporal records each activity's last attempt; earlier attempts and their backoff are one hatched bar. Generated by ferry at ${new Date().toISOString()}.</p>
</body></html>
`;
}
