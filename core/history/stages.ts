/**
 * Stages: a pipeline's steps grouped by the stage they ran in (coder,
 * validator, reporter), each stage with its span, duration and outcome, so
 * "which stage was slow or failed" has a one-line answer. A stage begins
 * with its FerryStage upsert and ends when its artifacts are collected (or
 * when the next stage begins, the session is released, or the workflow
 * ends).
 */
import { Activity } from '../activityNames';
import { DEFAULT_STAGES } from '../pipeline';
import type { FailureSummary, WorkflowHistory } from './events';
import { upsertedStage } from './events';
import { isFailedStatus, type StepRecord } from './steps';
import { failureText, field, iso, numberField, withoutUndefined } from './values';

/** finished: its artifacts were collected (or the next stage began); continued: the run continued as new inside it; not-reached / pending: planned, never begun (the workflow ended / is still running). */
export type StageOutcome = 'finished' | 'failed' | 'running' | 'continued' | 'not-reached' | 'pending';

export interface StageLane {
  workflowId: string;
  name: string;
  outcome: StageOutcome;
  startedAt?: string;
  endedAt?: string;
  durationMs?: number;
  /** The stage is still running: its span ends now. */
  ongoing?: boolean;
  /** Steps that ran in the stage. */
  steps: number;
  executions: number;
  /** Executions that failed or exited non-zero. */
  failedExecutions: number;
  /** For a failed stage: the failure that ended it. */
  failure?: FailureSummary;
  detail: string;
}

/** How the run the stages belong to ended, or that it is still running at `endMs`. */
export interface RunEnd {
  status: string;
  endMs: number;
  failure?: FailureSummary;
}

/** The pipeline's workflow type (workflows/pipeline.ts): its input's stages default to DEFAULT_STAGES. */
const PIPELINE_WORKFLOW = 'pipelineWorkflow';

/** The stages the run set out to go through, as far as its input says. */
function plannedStages(history: WorkflowHistory): readonly string[] {
  const started = history.events.find((e) => e.kind === 'workflowStarted');
  if (started?.kind !== 'workflowStarted') return [];
  const stages = field(started.input, 'stages');
  if (Array.isArray(stages) && stages.every((s) => typeof s === 'string')) return stages;
  return (history.workflowType ?? started.workflowType) === PIPELINE_WORKFLOW ? DEFAULT_STAGES : [];
}

function plural(count: number, word: string): string {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}

/** The stage lanes of one workflow run; none for a workflow that never entered a stage. */
export function stageLanes(history: WorkflowHistory, steps: StepRecord[], end: RunEnd): StageLane[] {
  const begun = new Map<string, number>();
  for (const event of history.events) {
    const stage = upsertedStage(event);
    if (stage && !begun.has(stage)) begun.set(stage, event.timeMs);
  }
  for (const step of steps) if (step.stage && !begun.has(step.stage)) begun.set(step.stage, step.scheduledMs);
  if (begun.size === 0) return [];

  const order = [...begun].sort((a, b) => a[1] - b[1]);
  const lanes: StageLane[] = order.map(([name, startMs], index) => {
    const mine = steps.filter((s) => s.stage === name);
    const collected = mine.find((s) => s.name === Activity.collectArtifacts && s.status === 'completed');
    const next = order[index + 1];
    const last = next === undefined;
    // Without its artifacts collected, a stage ends when the next begins, or when the workflow moves on to steps of no stage (the release).
    const leftAt = steps.find((s) => !s.stage && s.scheduledMs > startMs)?.scheduledMs;
    const endMs = collected?.closedMs ?? next?.[1] ?? leftAt ?? end.endMs;
    const outcome: StageOutcome =
      collected || !last ? 'finished' : end.status === 'running' ? 'running' : end.status === 'completed' ? 'finished' : end.status === 'continuedAsNew' ? 'continued' : 'failed';
    const executions = mine.filter((s) => s.name === Activity.executeCode);
    const failedExecutions = executions.filter((s) => isFailedStatus(s.status) || (numberField(s.result, 'exitCode') ?? 0) !== 0).length;
    const failure = outcome === 'failed' ? ([...mine].reverse().find((s) => isFailedStatus(s.status))?.failure ?? end.failure) : undefined;
    const files = numberField(collected?.result, 'filesTotal');
    const detail = [
      plural(executions.length, 'execution'),
      failedExecutions ? `${failedExecutions} failed or exited non-zero` : '',
      collected ? `artifacts collected${files !== undefined ? ` (${plural(files, 'file')})` : ''}` : '',
      failure ? `failed: ${failureText(failure)}` : '',
      outcome === 'continued' ? 'continued in the next run' : '',
    ]
      .filter(Boolean)
      .join('; ');
    return withoutUndefined<StageLane>({
      workflowId: history.workflowId,
      name,
      outcome,
      startedAt: iso(startMs),
      endedAt: outcome === 'running' ? undefined : iso(endMs),
      durationMs: endMs - startMs,
      ongoing: outcome === 'running' ? true : undefined,
      steps: mine.length,
      executions: executions.length,
      failedExecutions,
      failure,
      detail,
    });
  });

  // Planned stages after the last one begun: never reached, or still to come.
  const planned = plannedStages(history);
  const lastBegun = Math.max(...lanes.map((lane) => planned.indexOf(lane.name)));
  if (lastBegun < 0) return lanes;
  const ahead = end.status === 'running' || end.status === 'continuedAsNew';
  const endedIn = lanes[lanes.length - 1].name;
  for (const name of planned.slice(lastBegun + 1)) {
    if (begun.has(name)) continue;
    lanes.push({
      workflowId: history.workflowId,
      name,
      outcome: ahead ? 'pending' : 'not-reached',
      steps: 0,
      executions: 0,
      failedExecutions: 0,
      detail: ahead ? 'not begun yet' : `not reached: the workflow ${end.status === 'completed' ? 'completed' : `${end.status} in ${endedIn}`}`,
    });
  }
  return lanes;
}
