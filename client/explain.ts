/**
 * `ferry explain`: the analysis client/history loads, worded as a diagnosis:
 * failed or retried steps with their typed failures, the stages, gaps with
 * their causes, the session's story, one verdict line, and Web UI links.
 */
import { formatDurationMs } from '../core/duration';
import type { HistoryAnalysis } from '../core/history/analysis';
import type { Problem } from '../core/history/problems';
import { failurePaths } from '../core/history/values';
import { clockTime, gapLine, renderTable, stageTable } from './format';

function detailsText(problem: Problem): string[] {
  const failure = problem.outcome === 'retried' || problem.outcome === 'retrying' ? problem.lastRetryFailure : problem.failure;
  const lines: string[] = [];
  if (!failure) return lines;
  const { missing, short, mismatched } = failurePaths(failure);
  if (missing.length) lines.push(`missing: ${missing.join(', ')}`);
  if (short.length) lines.push(`short: ${short.join(', ')}`);
  if (mismatched.length) lines.push(`different bytes: ${mismatched.join(', ')}`);
  if (!lines.length && failure.details !== undefined) lines.push(`details: ${JSON.stringify(failure.details).slice(0, 300)}`);
  if (failure.rootCause) lines.push(`cause: ${failure.rootCause}`);
  return lines;
}

const PROBLEM_MARK: Record<Problem['outcome'], string> = { failed: '✗', timedOut: '✗', canceled: '✗', refused: '✗', retried: '↻', retrying: '↻' };

function formatOne(analysis: HistoryAnalysis, indent: string, withSession: boolean): string[] {
  const lines: string[] = [];
  const took = analysis.durationMs !== undefined ? ` ${analysis.status === 'running' ? 'for' : 'in'} ${formatDurationMs(analysis.durationMs)}` : '';
  lines.push(`${indent}${analysis.workflowType} ${analysis.workflowId}: ${analysis.status}${took} (started ${analysis.startedAt ?? '?'})`);
  lines.push(`${indent}verdict: ${analysis.verdict}`);
  if (analysis.problems.length) {
    lines.push('', `${indent}failed or retried steps:`);
    for (const problem of analysis.problems) {
      lines.push(`${indent}  ${PROBLEM_MARK[problem.outcome]} ${problem.summary}`);
      for (const detail of detailsText(problem)) lines.push(`${indent}      ${detail}`);
    }
  }
  if (analysis.stages.length) lines.push('', `${indent}stages:`, ...stageTable(analysis.stages).split('\n').map((line) => `${indent}  ${line}`));
  const threshold = formatDurationMs(analysis.gapThresholdMs);
  if (analysis.gaps.length) {
    lines.push('', `${indent}gaps longer than ${threshold}:`);
    for (const gap of analysis.gaps) lines.push(`${indent}  ${gapLine(gap)}`);
  } else lines.push('', `${indent}no gaps longer than ${threshold}`);
  if (withSession && analysis.session.length) {
    lines.push('', `${indent}session:`);
    const rows = analysis.session.map((event) => [clockTime(event.at), event.kind, event.detail]);
    lines.push(...renderTable(['TIME', 'EVENT', 'DETAIL'], rows).split('\n').map((line) => `${indent}  ${line}`));
  }
  if (analysis.webUiUrl) lines.push('', `${indent}web ui: ${analysis.webUiUrl}`);
  for (const child of analysis.children) lines.push('', ...formatOne(child, `${indent}  `, false));
  return lines;
}

/** The analysis as a diagnosis people read; the session story (which spans the children) is printed once, with the root. */
export function formatExplanation(analysis: HistoryAnalysis): string {
  return formatOne(analysis, '', true).join('\n');
}
