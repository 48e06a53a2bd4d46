/**
 * `ferry explain`: reads a workflow's history (and its children's), runs
 * core/diagnosis over it and prints a short diagnosis: failed or retried
 * steps with their typed failures, gaps with their causes, the session's
 * story, one verdict line, and Web UI links.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { FerryConfig } from '../core/config';
import { workflowUiUrl } from '../core/config';
import { diagnose, failurePaths, type Diagnosis, type DiagnosisInput, type ProblemStep } from '../core/diagnosis';
import { formatDurationMs } from '../core/duration';
import { CommandError } from './commands';
import { clockTime, renderTable } from './format';
import { summarizeHistory, summarizePendingActivities } from './history';

/** Children deeper than this, or more than this many per workflow, are not fetched: a diagnosis stays quick. */
const MAX_CHILD_DEPTH = 3;
const MAX_CHILDREN = 50;

/** One workflow's history summaries, pending activities and Web UI link; its children's too. */
export async function loadDiagnosisInput(client: Client, config: FerryConfig, workflowId: string, runId?: string, depth = 0): Promise<DiagnosisInput> {
  let description;
  try {
    description = await client.workflow.getHandle(workflowId, runId).describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new CommandError(`no workflow ${workflowId}${runId ? ` (run ${runId})` : ''} in namespace ${config.temporal.namespace}`);
    throw err;
  }
  const history = await client.workflow.getHandle(workflowId, description.runId).fetchHistory();
  const events = summarizeHistory(history.events ?? []);
  const input: DiagnosisInput = {
    workflowId,
    runId: description.runId,
    workflowType: description.type,
    events,
    pendingActivities: summarizePendingActivities(description.raw.pendingActivities ?? []),
    nowMs: Date.now(),
    webUiUrl: workflowUiUrl(config, workflowId, description.runId),
  };
  if (depth < MAX_CHILD_DEPTH) {
    const started = events.flatMap((e) => (e.kind === 'childWorkflowStarted' ? [{ workflowId: e.workflowId, runId: e.runId }] : [])).slice(0, MAX_CHILDREN);
    input.children = await Promise.all(started.map((child) => loadDiagnosisInput(client, config, child.workflowId, child.runId, depth + 1)));
  }
  return input;
}

export async function explainWorkflow(client: Client, config: FerryConfig, workflowId: string, gapThresholdMs: number): Promise<Diagnosis> {
  return diagnose(await loadDiagnosisInput(client, config, workflowId), { gapThresholdMs });
}

function detailsText(step: ProblemStep): string[] {
  const failure = step.outcome === 'retried' || step.outcome === 'retrying' ? step.lastRetryFailure : step.failure;
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

const STEP_MARK: Record<ProblemStep['outcome'], string> = { failed: '✗', timedOut: '✗', canceled: '✗', refused: '✗', retried: '↻', retrying: '↻' };

function formatOne(diagnosis: Diagnosis, indent: string, withSession: boolean): string[] {
  const lines: string[] = [];
  const took = diagnosis.durationMs !== undefined ? ` ${diagnosis.status === 'running' ? 'for' : 'in'} ${formatDurationMs(diagnosis.durationMs)}` : '';
  lines.push(`${indent}${diagnosis.workflowType} ${diagnosis.workflowId}: ${diagnosis.status}${took} (started ${diagnosis.startedAt ?? '?'})`);
  lines.push(`${indent}verdict: ${diagnosis.verdict}`);
  if (diagnosis.steps.length) {
    lines.push('', `${indent}failed or retried steps:`);
    for (const step of diagnosis.steps) {
      lines.push(`${indent}  ${STEP_MARK[step.outcome]} ${step.summary}`);
      for (const detail of detailsText(step)) lines.push(`${indent}      ${detail}`);
    }
  }
  const threshold = formatDurationMs(diagnosis.gapThresholdMs);
  if (diagnosis.gaps.length) {
    lines.push('', `${indent}gaps longer than ${threshold}:`);
    for (const gap of diagnosis.gaps) {
      lines.push(`${indent}  ⚠ ${clockTime(gap.from)} → ${gap.ongoing ? 'now' : clockTime(gap.to)} (${formatDurationMs(gap.durationMs)}) ${gap.cause}: ${gap.detail}`);
    }
  } else lines.push('', `${indent}no gaps longer than ${threshold}`);
  if (withSession && diagnosis.session.length) {
    lines.push('', `${indent}session:`);
    const rows = diagnosis.session.map((event) => [clockTime(event.at), event.kind, event.detail]);
    lines.push(...renderTable(['TIME', 'EVENT', 'DETAIL'], rows).split('\n').map((line) => `${indent}  ${line}`));
  }
  if (diagnosis.webUiUrl) lines.push('', `${indent}web ui: ${diagnosis.webUiUrl}`);
  for (const child of diagnosis.children) lines.push('', ...formatOne(child, `${indent}  `, false));
  return lines;
}

/** The diagnosis as people read it; the session story (which spans the children) is printed once, with the root. */
export function formatDiagnosis(diagnosis: Diagnosis): string {
  return formatOne(diagnosis, '', true).join('\n');
}
