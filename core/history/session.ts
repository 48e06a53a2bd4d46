/**
 * The session's story across a workflow and its children: provisioned,
 * landed, verified, restarted, re-landed, executed (and whether on inputs
 * verified on the same boot), refused, collected, released. Told from the
 * steps that act on a session, by what each one does to it.
 */
import { Activity, RetiredActivity } from '../activityNames';
import { FailureType } from '../errors';
import type { FailureSummary, WorkflowHistory } from './events';
import { upsertedStage } from './events';
import { sessionOf, type SessionRef, type StepRecord } from './steps';
import { clock, failurePaths, failureText, iso, numberField, short, stringField, stringList } from './values';

export type SessionEventKind =
  | 'provisioned'
  | 'checked'
  | 'restart-detected'
  | 'landed'
  | 're-landed'
  | 'land-failed'
  | 'verified'
  | 'verification-failed'
  | 'stage'
  | 'executed'
  | 'execution-failed'
  | 'execution-refused'
  | 'artifacts-collected'
  | 'process-started'
  | 'process-confirmed'
  | 'released';

export interface SessionEvent {
  at: string;
  workflowId: string;
  kind: SessionEventKind;
  sessionId?: string;
  bootId?: string;
  manifestDigest?: string;
  dest?: string;
  stage?: string;
  detail: string;
}

export interface SessionStory {
  events: SessionEvent[];
  /** Executions that ran on a boot whose inputs were never verified. */
  unverifiedExecutions: SessionEvent[];
  /** Executions on a boot other than the first one seen, with inputs verified again on that boot. */
  executionsAfterRestart: { execution: SessionEvent; verifiedAtMs: number; relanded: boolean }[];
}

type Role = 'provision' | 'check' | 'land' | 'verify' | 'execute' | 'collect' | 'release' | 'processStart' | 'processConfirm';

/** What each step does to a session; histories of earlier training runs name landing and verifying differently. */
const ROLES: Partial<Record<string, Role>> = {
  [Activity.provisionSession]: 'provision',
  [Activity.checkSession]: 'check',
  [Activity.landManifest]: 'land',
  [RetiredActivity.landArchive]: 'land',
  [Activity.verifyLanding]: 'verify',
  [RetiredActivity.verifyInstanceLanding]: 'verify',
  [Activity.executeCode]: 'execute',
  [Activity.collectArtifacts]: 'collect',
  [Activity.releaseSession]: 'release',
  [Activity.startProcess]: 'processStart',
  [Activity.confirmProcess]: 'processConfirm',
};

/** Whether a step lands or verifies a manifest, under any name history holds. */
export const isLanding = (name: string) => ROLES[name] === 'land';
export const isVerification = (name: string) => ROLES[name] === 'verify';

/** The pipeline's `execute` update (workflows/definitions.ts): one answered with a failure was a refused execution. */
const EXECUTE_UPDATE = 'execute';

type Fact =
  | { timeMs: number; workflowId: string; kind: 'step'; step: StepRecord }
  | { timeMs: number; workflowId: string; kind: 'stage'; stage: string }
  | { timeMs: number; workflowId: string; kind: 'refused'; failure: FailureSummary };

/** What a workflow tree's histories say about its session, in time order. */
function collectFacts(history: WorkflowHistory, stepsOf: (history: WorkflowHistory) => StepRecord[]): Fact[] {
  const facts: Fact[] = [];
  for (const step of stepsOf(history)) {
    if (ROLES[step.name] && step.closedMs !== undefined) facts.push({ timeMs: step.closedMs, workflowId: history.workflowId, kind: 'step', step });
  }
  for (const event of history.events) {
    const stage = upsertedStage(event);
    if (stage) facts.push({ timeMs: event.timeMs, workflowId: history.workflowId, kind: 'stage', stage });
    else if (event.kind === 'updateCompleted' && event.failure && event.name === EXECUTE_UPDATE) {
      facts.push({ timeMs: event.timeMs, workflowId: history.workflowId, kind: 'refused', failure: event.failure });
    }
  }
  for (const child of history.children ?? []) facts.push(...collectFacts(child, stepsOf));
  return facts;
}

export function tellSessionStory(history: WorkflowHistory, stepsOf: (history: WorkflowHistory) => StepRecord[]): SessionStory {
  const events: SessionEvent[] = [];
  const unverifiedExecutions: SessionEvent[] = [];
  const executionsAfterRestart: SessionStory['executionsAfterRestart'] = [];
  const boots = new Map<string, string>();
  const firstBoot = new Map<string, string>();
  /** Boot each manifest (session|dest|digest) was last landed on, and whether that landing was a repeat. */
  const landed = new Map<string, { bootId?: string; again: boolean }>();
  const verified = new Map<string, { bootId?: string; atMs: number; relanded: boolean; manifestDigest?: string }[]>();
  let stage: string | undefined;

  const push = (fact: Fact, kind: SessionEventKind, ref: SessionRef & { stage?: string }, detail: string) => {
    const { target: _target, ...where } = ref;
    const event: SessionEvent = { at: iso(fact.timeMs), workflowId: fact.workflowId, kind, ...(stage ? { stage } : {}), ...where, detail };
    events.push(event);
    return event;
  };
  /** Records a boot id seen for a session; a different one than before is a restart. */
  const seeBoot = (fact: Fact, ref: SessionRef, bootId: string | undefined, seenBy: string) => {
    if (!bootId) return;
    const session = ref.sessionId ?? '';
    const known = boots.get(session);
    if (!firstBoot.has(session)) firstBoot.set(session, bootId);
    if (known && known !== bootId) {
      push(fact, 'restart-detected', { ...ref, bootId }, `session ${session || '?'} restarted: boot ${short(known)} → ${short(bootId)} (seen by ${seenBy}); its inputs must be landed and verified again`);
    }
    boots.set(session, bootId);
  };

  for (const fact of collectFacts(history, stepsOf).sort((a, b) => a.timeMs - b.timeMs)) {
    if (fact.kind === 'stage') {
      if (fact.stage !== stage) {
        stage = fact.stage;
        push(fact, 'stage', {}, `stage ${fact.stage} began`);
      }
      continue;
    }
    if (fact.kind === 'refused') {
      const { missing } = failurePaths(fact.failure);
      push(fact, 'execution-refused', {}, `execution refused${stage ? ` in stage ${stage}` : ''}: ${failureText(fact.failure)}${missing.length ? ` (missing: ${missing.join(', ')})` : ''}`);
      continue;
    }
    const step = fact.step;
    const ref = sessionOf(step);
    const session = ref.sessionId ?? '';
    const ok = step.status === 'completed';
    const restart = step.failure?.type === FailureType.TargetRestarted;
    if (restart) {
      const details = step.failure?.details;
      seeBoot(fact, ref, stringField(details, 'expectedBootId') ?? stringField(details, 'bootId'), step.name);
      seeBoot(fact, ref, stringField(details, 'newBootId') ?? stringField(details, 'bootId'), step.name);
    }
    const key = `${session}|${ref.dest ?? ''}|${ref.manifestDigest ?? ''}`;
    switch (ROLES[step.name]) {
      case 'provision':
        if (!ok) break;
        push(fact, 'provisioned', ref, `session ${session || '?'} provisioned${ref.target ? ` on ${ref.target}` : ''} (boot ${short(ref.bootId)}${stringField(step.result, 'agentUrl') ? `, agent ${stringField(step.result, 'agentUrl')}` : ''})`);
        seeBoot(fact, ref, ref.bootId, step.name);
        break;
      case 'check': {
        if (!ok) break;
        const before = boots.get(session);
        seeBoot(fact, ref, ref.bootId, step.name);
        const gone = stringList(step.result, 'missing');
        if (!before || before === ref.bootId || gone.length) {
          push(fact, 'checked', ref, `session ${session || '?'} checked on boot ${short(ref.bootId)}${gone.length ? `: inputs gone (${gone.join(', ')})` : before === ref.bootId ? ': same boot' : ''}`);
        }
        break;
      }
      case 'land': {
        if (!ok) {
          if (!restart) push(fact, 'land-failed', ref, `${step.name} failed after ${step.attempts} attempt(s): ${failureText(step.failure)}`);
          break;
        }
        seeBoot(fact, ref, ref.bootId, step.name);
        const previous = landed.get(key);
        landed.set(key, { bootId: ref.bootId, again: previous !== undefined });
        const filesLanded = numberField(step.result, 'filesLanded');
        const present = numberField(step.result, 'filesAlreadyPresent');
        const counts = filesLanded !== undefined ? `: ${filesLanded} files fetched${present !== undefined ? `, ${present} already there` : ''}` : '';
        const why = !previous
          ? ''
          : previous.bootId && ref.bootId && previous.bootId !== ref.bootId
            ? ` (the session restarted: boot ${short(previous.bootId)} → ${short(ref.bootId)})`
            : ' (same boot: the earlier landing no longer held)';
        push(fact, previous ? 're-landed' : 'landed', ref, `${previous ? 're-landed' : 'landed'} manifest ${short(ref.manifestDigest)} into ${session || '?'}:${ref.dest ?? '?'} on boot ${short(ref.bootId)}${counts}${why}`);
        break;
      }
      case 'verify': {
        if (!ok) {
          if (restart) break;
          const { missing, short: shortFiles, mismatched } = failurePaths(step.failure);
          const named = [
            missing.length ? `missing: ${missing.join(', ')}` : '',
            shortFiles.length ? `short: ${shortFiles.join(', ')}` : '',
            mismatched.length ? `different bytes: ${mismatched.join(', ')}` : '',
          ].filter(Boolean);
          push(fact, 'verification-failed', ref, `verification of manifest ${short(ref.manifestDigest)} failed after ${step.attempts} attempt(s)${named.length ? ` — ${named.join('; ')}` : `: ${failureText(step.failure)}`}`);
          break;
        }
        seeBoot(fact, ref, ref.bootId, step.name);
        const list = verified.get(session) ?? [];
        list.push({ bootId: ref.bootId, atMs: fact.timeMs, relanded: landed.get(key)?.again ?? false, manifestDigest: ref.manifestDigest });
        verified.set(session, list);
        const files = numberField(step.result, 'filesVerified');
        push(fact, 'verified', ref, `verified manifest ${short(ref.manifestDigest)} in ${session || '?'}:${ref.dest ?? '?'} on boot ${short(ref.bootId)}${files !== undefined ? `: ${files} files re-hashed on the target` : ''}`);
        break;
      }
      case 'execute': {
        const bootId = ref.bootId ?? boots.get(session);
        if (ref.bootId) seeBoot(fact, ref, ref.bootId, step.name);
        const stageName = step.stage ?? stage;
        const proof = [...(verified.get(session) ?? [])].reverse().find((v) => v.bootId === bootId && v.atMs <= fact.timeMs);
        const exitCode = numberField(step.result, 'exitCode');
        const outcome = ok ? (exitCode !== undefined ? `exit ${exitCode}` : 'completed') : `failed: ${failureText(step.failure)}`;
        const detail = `${stageName ? `${stageName} ` : ''}executed on boot ${short(bootId)} (${outcome}); ${proof ? `inputs verified on this boot at ${clock(proof.atMs)}` : '⚠ no input was verified on this boot before it ran'}`;
        const event = push(fact, ok ? 'executed' : 'execution-failed', { ...ref, ...(bootId ? { bootId } : {}), ...(stageName ? { stage: stageName } : {}) }, detail);
        if (!proof) unverifiedExecutions.push(event);
        else if (bootId && firstBoot.get(session) !== bootId) executionsAfterRestart.push({ execution: event, verifiedAtMs: proof.atMs, relanded: proof.relanded });
        break;
      }
      case 'collect': {
        if (!ok) break;
        const digest = stringField(step.result, 'manifestDigest');
        const files = numberField(step.result, 'filesTotal');
        push(fact, 'artifacts-collected', ref, `artifacts collected${digest ? ` as manifest ${short(digest)}` : ''}${files !== undefined ? ` (${files} files)` : ''}`);
        break;
      }
      case 'processStart': {
        const pid = numberField(step.result, 'pid');
        if (ok) push(fact, 'process-started', ref, `process started${pid !== undefined ? ` (pid ${pid})` : ''}`);
        break;
      }
      case 'processConfirm':
        if (ok) push(fact, 'process-confirmed', ref, 'process confirmed alive');
        break;
      case 'release':
        if (ok) push(fact, 'released', ref, `session ${session || '?'} released`);
        break;
      default:
        break;
    }
  }
  return { events, unverifiedExecutions, executionsAfterRestart };
}

/** The part of a story that happened in the given workflows (a child's own story). */
export function storyOf(story: SessionStory, workflowIds: Set<string>): SessionStory {
  const mine = (event: SessionEvent) => workflowIds.has(event.workflowId);
  return {
    events: story.events.filter(mine),
    unverifiedExecutions: story.unverifiedExecutions.filter(mine),
    executionsAfterRestart: story.executionsAfterRestart.filter((e) => mine(e.execution)),
  };
}
