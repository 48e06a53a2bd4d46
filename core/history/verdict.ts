/** The verdict: one line summing up a workflow tree's outcome, the stage it failed in, its session's story, its retries and its longest gap. */
import { formatDurationMs } from '../duration';
import type { HistoryAnalysis } from './analysis';
import { noWorker, type Gap, type GapCause } from './gaps';
import type { Problem } from './problems';
import { isLanding, isVerification, type SessionStory } from './session';
import { clock, failurePaths, failureText, short } from './values';

/** The analysis of one workflow of the tree, before its verdict and story are known. */
export type RunFacts = Pick<HistoryAnalysis, 'workflowType' | 'status' | 'durationMs' | 'failure' | 'steps' | 'stages' | 'problems' | 'gaps'>;

const CAUSE_PHRASE: Record<GapCause, string> = {
  'waiting-for-agent': 'waiting for the agent',
  'waiting-for-worker': 'waiting for a worker',
  'retry-backoff': 'retrying',
  'durable-timer': 'on a durable timer',
  'slow-activity': 'in a running activity',
  'child-workflow': 'in a child workflow',
  'workflow-task': 'in a workflow task',
};

function gapPhrase(gap: Gap): string {
  if (gap.cause === 'waiting-for-worker') return noWorker(gap.taskQueue);
  if (gap.cause === 'waiting-for-agent') return `waiting for the agent${gap.endedBy ? ` (until ${gap.endedBy})` : ''}`;
  if (gap.cause === 'slow-activity' || gap.cause === 'retry-backoff') return `${CAUSE_PHRASE[gap.cause]} (${gap.activityType})`;
  return CAUSE_PHRASE[gap.cause];
}

const ended = (status: string) => status !== 'running' && status !== 'completed' && status !== 'continuedAsNew';

/** The step that failed the workflow: the last failed or timed-out step, else the last refused update (a refusal alone fails nothing). */
function decisiveFailure(tree: RunFacts[]): Problem | undefined {
  const byTime = (a: Problem, b: Problem) => a.at.localeCompare(b.at);
  const problems = tree.flatMap((run) => run.problems).filter((p) => p.kind !== 'child');
  const failed = problems.filter((p) => p.outcome === 'failed' || p.outcome === 'timedOut').sort(byTime);
  return failed.at(-1) ?? problems.filter((p) => p.outcome === 'refused').sort(byTime).at(-1);
}

/** What the session's story says about executions (or, with none, about the last verification). */
function storyClause(story: SessionStory, includeVerification: boolean): string | undefined {
  const unverified = story.unverifiedExecutions[0];
  const afterRestart = story.executionsAfterRestart[0];
  if (unverified) return `⚠ ${unverified.stage ?? 'code'} executed on boot ${short(unverified.bootId)} without inputs verified on that boot`;
  if (afterRestart) {
    return `${afterRestart.execution.stage ?? 'code'} ran on a restarted session; inputs were ${afterRestart.relanded ? 're-landed and ' : ''}verified at ${clock(afterRestart.verifiedAtMs)} before execution`;
  }
  if (story.events.some((e) => e.kind === 'executed' || e.kind === 'execution-failed')) {
    const reLanded = story.events.filter((e) => e.kind === 're-landed');
    const healed = reLanded.length ? `; inputs that vanished from the session were re-landed ${reLanded.length}× and verified before the next execution (last at ${reLanded.at(-1)!.at.slice(11, 19)})` : '';
    return `every execution ran on inputs verified on the same boot${healed}`;
  }
  return includeVerification ? story.events.filter((e) => e.kind === 'verified').pop()?.detail : undefined;
}

/** The verdict on `root`, given every workflow of its tree (root first) and the story they tell. */
export function verdict(root: RunFacts, tree: RunFacts[], story: SessionStory): string {
  const parts: string[] = [];
  const gaps = tree.flatMap((run) => run.gaps).filter((g) => g.cause !== 'child-workflow' && g.cause !== 'workflow-task');
  const longest = [...gaps].sort((a, b) => b.durationMs - a.durationMs)[0];
  const retried = tree.flatMap((run) => run.problems).filter((p) => p.outcome === 'retried' || p.outcome === 'retrying');
  const took = root.durationMs !== undefined ? ` ${root.status === 'running' ? 'for' : 'in'} ${formatDurationMs(root.durationMs)}` : '';
  const decisive = ended(root.status) ? decisiveFailure(tree) : undefined;

  if (root.status === 'running') {
    const now = gaps.filter((g) => g.ongoing).sort((a, b) => b.durationMs - a.durationMs)[0];
    parts.push(`${root.workflowType} running${took}${now ? `; now ${gapPhrase(now)} for ${formatDurationMs(now.durationMs)}: ${now.detail}` : ''}`);
  } else if (decisive) {
    let line = `${root.workflowType} ${root.status}: ${decisive.summary}`;
    if (isVerification(decisive.name) && failurePaths(decisive.failure).missing.length) {
      const land = tree.flatMap((run) => run.steps).filter((s) => isLanding(s.name) && s.status === 'completed').pop();
      if (land) line += ` — although ${land.name} had answered success`;
    }
    parts.push(line);
  } else if (ended(root.status)) {
    parts.push(`${root.workflowType} ${root.status}${root.failure ? `: ${failureText(root.failure)}` : ''}`);
  } else parts.push(`${root.workflowType} ${root.status === 'completed' ? 'completed' : 'continued as new'}${took}`);

  const failedStage = root.stages.find((lane) => lane.outcome === 'failed');
  if (failedStage) parts.push(`stage ${failedStage.name} failed after ${formatDurationMs(failedStage.durationMs ?? 0)}`);
  const clause = storyClause(story, root.status === 'completed' || root.status === 'continuedAsNew');
  if (clause) parts.push(clause);
  const refused = tree.flatMap((run) => run.problems).filter((p) => p.outcome === 'refused' && p !== decisive);
  if (refused.length) {
    const { missing } = failurePaths(refused[0].failure);
    parts.push(`${refused[0].name} refused ${refused.length}× (${refused[0].failure?.type ?? 'failure'}${missing.length ? `: missing ${missing.join(', ')}` : ''})`);
  }
  for (const problem of retried.slice(0, 3)) parts.push(`${problem.name} needed ${problem.attempts} attempts (${problem.lastRetryFailure?.type ?? 'failure'} before)`);
  if (longest && !(root.status === 'running' && longest.ongoing)) parts.push(`longest gap ${formatDurationMs(longest.durationMs)} ${gapPhrase(longest)}`);
  return parts.join('; ');
}
