/**
 * One analysis of a workflow run, built once from its history and its
 * children's: every step, the stages they ran in, the problems, the gaps
 * and their causes, the session's story and a verdict. `ferry timeline`
 * (the table and the page) and `ferry explain` render this one model, so
 * they never tell the same gap two ways.
 *
 * Pure: client/history maps Temporal's history (and a running workflow's
 * pending activities) to summaries and calls {@link analyseHistory}.
 */
import type { FailureSummary, WorkflowHistory } from './events';
import { findGaps, type Gap } from './gaps';
import { messageMarks, type MessageMark } from './messages';
import { findProblems, type Problem } from './problems';
import { storyOf, tellSessionStory, type SessionEvent, type SessionStory } from './session';
import { stageLanes, type StageLane } from './stages';
import { readSteps, toStep, type Step, type StepRecord } from './steps';
import { iso } from './values';
import { verdict, type RunFacts } from './verdict';

export interface AnalysisOptions {
  /** Stretches shorter than this are not reported as gaps. */
  gapThresholdMs: number;
}

export interface HistoryAnalysis {
  workflowId: string;
  runId?: string;
  workflowType: string;
  status: string;
  startedAt?: string;
  closedAt?: string;
  /** Start to close, or to now while running. */
  durationMs?: number;
  webUiUrl?: string;
  failure?: FailureSummary;
  /** One line summing up the whole tree (this workflow and its children). */
  verdict: string;
  gapThresholdMs: number;
  /** Every activity the workflow scheduled, in order. */
  steps: Step[];
  /** The pipeline stages the steps ran in (none for a workflow without stages). */
  stages: StageLane[];
  /** Failed or retried steps, refused updates, failed children and workflow tasks. */
  problems: Problem[];
  gaps: Gap[];
  /** The session's story across this workflow and its children, in time order. */
  session: SessionEvent[];
  messages: MessageMark[];
  children: HistoryAnalysis[];
}

interface Analysed {
  facts: Omit<HistoryAnalysis, 'verdict' | 'session' | 'children'>;
  children: Analysed[];
}

function analyseOne(history: WorkflowHistory, options: AnalysisOptions, stepsOf: Map<WorkflowHistory, StepRecord[]>): Analysed {
  const records = readSteps(history);
  stepsOf.set(history, records);
  const started = history.events.find((e) => e.kind === 'workflowStarted');
  const closed = history.events.find((e) => e.kind === 'workflowClosed');
  const startMs = started?.timeMs ?? history.events[0]?.timeMs ?? history.nowMs;
  const endMs = closed?.timeMs ?? Math.max(history.nowMs, startMs);
  const status = closed?.kind === 'workflowClosed' ? closed.status : 'running';
  const failure = closed?.kind === 'workflowClosed' ? closed.failure : undefined;
  return {
    facts: {
      workflowId: history.workflowId,
      runId: history.runId,
      workflowType: history.workflowType ?? (started?.kind === 'workflowStarted' ? started.workflowType : undefined) ?? 'workflow',
      status,
      startedAt: iso(startMs),
      closedAt: closed ? iso(closed.timeMs) : undefined,
      durationMs: endMs - startMs,
      webUiUrl: history.webUiUrl,
      failure,
      gapThresholdMs: options.gapThresholdMs,
      steps: records.map(toStep),
      stages: stageLanes(history, records, { status, endMs, failure }),
      problems: findProblems(history, records),
      gaps: findGaps(history, records, { startMs, endMs, open: !closed }, options.gapThresholdMs),
      messages: messageMarks(history.events),
    },
    children: (history.children ?? []).map((child) => analyseOne(child, options, stepsOf)),
  };
}

function flatten(analysed: Analysed): RunFacts[] {
  return [analysed.facts, ...analysed.children.flatMap(flatten)];
}

function workflowIds(analysed: Analysed): string[] {
  return [analysed.facts.workflowId, ...analysed.children.flatMap(workflowIds)];
}

/** Each workflow of the tree with its own verdict and the part of the session story that happened in it and below. */
function finish(analysed: Analysed, story: SessionStory): HistoryAnalysis {
  const own = storyOf(story, new Set(workflowIds(analysed)));
  return {
    ...analysed.facts,
    verdict: verdict(analysed.facts, flatten(analysed), own),
    session: own.events,
    children: analysed.children.map((child) => finish(child, story)),
  };
}

/** Analyses a workflow run and its children from their history summaries. */
export function analyseHistory(history: WorkflowHistory, options: AnalysisOptions): HistoryAnalysis {
  const stepsOf = new Map<WorkflowHistory, StepRecord[]>();
  const analysed = analyseOne(history, options, stepsOf);
  return finish(analysed, tellSessionStory(history, (h) => stepsOf.get(h) ?? []));
}

/** Every gap of an analysis tree, parent first. */
export function allGaps(analysis: HistoryAnalysis): Gap[] {
  return [...analysis.gaps, ...analysis.children.flatMap(allGaps)];
}
