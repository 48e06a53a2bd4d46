/**
 * pipelineWorkflow: one compute session, its inputs synced and verified into
 * data/, then the stages (coder → validator → reporter by default) driven by
 * an external agent through the `execute` update and the `finishStage`
 * signal. The workflow, not the agent, holds what the session has verified
 * (manifest digest and boot id), so code never runs on a session that lost
 * or never got its data: every execution is preceded by a check, the first
 * of each stage by a full re-hash on the target, and a restarted session is
 * landed and verified again first — all of it visible in history.
 */
import {
  ApplicationFailure,
  CancellationScope,
  allHandlersFinished,
  condition,
  continueAsNew,
  currentUpdateInfo,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { FerryActivities } from '../activities';
import { FailureType } from '../core/errors';
import { executionLogPrefix } from '../core/executionLogs';
import type { ManifestRef } from '../core/manifest';
import {
  AGENT_WAIT_TIMER_SUMMARY,
  EXECUTION_RECORDS_KEPT,
  describeInputRef,
  executeRequestProblems,
  inputRefsProblems,
  normalizePipelineInput,
  pipelineCarryOverProblems,
  type ExecuteRequest,
  type ExecuteResult,
  type ExecutionRecord,
  type PipelineCarryOver,
  type PipelineInput,
  type PipelineInputRef,
  type PipelineResult,
  type PipelineState,
  type TimelineStep,
} from '../core/pipeline';
import type { SkippedLinks } from '../core/sync';
import { SESSION_DIRS } from '../core/target';
import {
  FerrySessionId,
  FerryStage,
  FerryTarget,
  abortSignal,
  addInputsSignal,
  executeUpdate,
  finishStageSignal,
  pipelineStateQuery,
  pipelineTimelineQuery,
} from './definitions';
import { landAndVerify as landAndVerifyIn, snapshotAndUpload, type UploadSource } from './landing';
import { cheapCheckStep, executeStep, failureType, sessionStep, stepFailure, transferStep, verifyStep } from './steps';

const { provisionSession, checkSession, releaseSession, composeInputs } = proxyActivities<FerryActivities>(sessionStep);
const { snapshotS3Input, collectArtifacts } = proxyActivities<FerryActivities>(transferStep);
const { verifyLanding } = proxyActivities<FerryActivities>(verifyStep);
const { executeCode } = proxyActivities<FerryActivities>(executeStep);
const { checkSession: checkSessionLocally } = proxyLocalActivities<FerryActivities>(cheapCheckStep);

const DEFAULT_EXECUTE_TIMEOUT_SECONDS = 600;
/** Patch id: finishStage naming another stage than the current one is ignored. */
const FINISH_STAGE_CHECKS_NAME = 'finish-stage-checks-stage-name';
/** Patch id: the stage's idle clock is one timer per idle period, not one per update or signal. */
const STAGE_IDLE_CLOCK = 'stage-idle-clock';
/** Patch id: checkSession runs as a local activity; histories recorded before scheduled it on the task queue. */
const CHECK_SESSION_LOCALLY = 'check-session-as-local-activity';
/** Steps kept for the timeline query (and carried over on continue-as-new). */
const TIMELINE_STEPS_KEPT = 500;

/** Runs one critical section at a time, in arrival order: executions, input syncs and collection never interleave. */
class SessionLock {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(work: () => Promise<T>): Promise<T> {
    const next = this.tail.then(work, work);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

export async function pipelineWorkflow(rawInput: PipelineInput, carried?: PipelineCarryOver): Promise<PipelineResult> {
  const normalized = normalizePipelineInput(rawInput);
  if (!normalized.ok) {
    throw ApplicationFailure.create({
      type: FailureType.InvalidInput,
      message: `invalid pipeline input: ${normalized.problems.join('; ')}`,
      details: [{ problems: normalized.problems }],
      nonRetryable: true,
    });
  }
  const input = normalized.input;
  // Only the workflow's own continue-as-new passes a carry-over, but anyone can start it with a second argument.
  const carryOverProblems = carried === undefined ? [] : pipelineCarryOverProblems(carried);
  if (carryOverProblems.length) {
    throw ApplicationFailure.create({
      type: FailureType.InvalidInput,
      message: `invalid pipeline carry-over (second argument): ${carryOverProblems.join('; ')}`,
      details: [{ problems: carryOverProblems }],
      nonRetryable: true,
    });
  }
  const state: PipelineState = carried?.state ?? {
    sessionId: input.sessionId,
    status: 'provisioning',
    stages: input.stages.map((name) => ({ name, status: 'pending', executions: 0 })),
    inputs: [],
    restartsDetected: 0,
    executionsTotal: 0,
    run: 0,
  };
  state.run++;
  const timeline: TimelineStep[] = carried?.timeline ?? [];
  let executionCounter = carried?.executionCounter ?? 0;
  let pendingInputs: PipelineInputRef[] = carried?.pendingInputs ?? [...input.inputs];
  let stageIndex = carried?.stageIndex ?? 0;
  let stageVerified = carried?.stageFirstExecutionDone ?? false;
  let ready = carried !== undefined && state.session !== undefined;
  let finishRequested: { summary?: string } | undefined;
  let abortRequested: { reason: string } | undefined;
  /** Bumped by every update and signal: the stage's idle clock restarts on any of them. */
  let touches = 0;
  /** When the stage's idle clock last restarted (an update, a signal, the stage's start, an input sync): workflow time. */
  let idleSince: number;
  const touch = () => {
    touches++;
    idleSince = Date.now();
  };
  let executionsRunning = 0;
  let continuing = false;
  /** Why the pipeline is ending, for executions that arrive too late to run. */
  let endReason: string | undefined;
  /** Full verifications of data/ so far: an execution after one more than its predecessor saw runs on freshly re-hashed inputs. */
  let inputVerifications = 0;
  const lock = new SessionLock();
  const currentStage = () => state.stages[stageIndex];
  const ids = () => ({ sessionId: input.sessionId, stage: currentStage()?.name });

  setHandler(pipelineStateQuery, () => state);
  setHandler(pipelineTimelineQuery, () => timeline);

  /** Runs an activity as a named timeline step; failures keep their type and name the step. */
  const step = async <T>(name: string, run: () => Promise<T>, detail?: (result: T) => string): Promise<T> => {
    const entry: TimelineStep = { step: name, stage: state.stage, startedAt: new Date().toISOString() };
    timeline.push(entry);
    if (timeline.length > TIMELINE_STEPS_KEPT) timeline.splice(0, timeline.length - TIMELINE_STEPS_KEPT);
    try {
      const result = await run();
      Object.assign(entry, { endedAt: new Date().toISOString(), outcome: 'ok', detail: detail?.(result) });
      return result;
    } catch (err) {
      Object.assign(entry, { endedAt: new Date().toISOString(), outcome: 'failed', detail: failureType(err) ?? 'failed' });
      throw stepFailure(name, err);
    }
  };

  const landInput = (manifestDigest: string) => ({
    sessionId: input.sessionId,
    target: input.target,
    dest: SESSION_DIRS.data,
    manifestDigest,
    session: state.session,
  });

  /** The folders path inputs were uploaded from (the worker resolves them as their snapshots did), to put back a blob the store holds damaged. */
  const inputSources = (): UploadSource[] => state.inputs.flatMap((i) => ('path' in i.ref ? [{ manifestDigest: i.manifestDigest, sourcePath: i.ref.path }] : []));

  /** Lands data/ and verifies it on the same boot; a boot other than the handle's means the session restarted. */
  const landAndVerify = async (): Promise<void> => {
    const digest = state.dataManifestDigest;
    if (!digest || !state.session) return;
    const { verified } = await landAndVerifyIn({ ...landInput(digest), sources: inputSources() }, step, (landed) => noteBoot(landed.bootId));
    state.verifiedBootId = verified.bootId;
    inputVerifications++;
  };

  const noteBoot = (bootId: string) => {
    if (!state.session || bootId === state.session.bootId) return;
    state.restartsDetected++;
    log.warn('session restarted', { ...ids(), bootId: state.session.bootId, newBootId: bootId });
    state.session = { ...state.session, bootId };
  };

  const provision = async () => {
    state.session = await step('provisionSession', () => provisionSession({ sessionId: input.sessionId, target: input.target, purpose: 'pipeline' }), (s) => `boot ${s.bootId}`);
  };

  /** Snapshots the pending inputs, folds them into the data/ manifest, lands and verifies it. */
  const syncPendingInputs = async (): Promise<void> => {
    if (pendingInputs.length === 0) return;
    const batch = pendingInputs;
    pendingInputs = [];
    const previousStatus = state.status;
    state.status = 'syncing';
    for (const ref of batch) {
      let manifest: ManifestRef;
      let linksSkipped: SkippedLinks | undefined;
      if ('path' in ref) {
        const { snapshot } = await snapshotAndUpload({ path: ref.path, links: ref.links }, step);
        manifest = snapshot;
        // Absent from snapshot results recorded before link policies.
        if (snapshot.linksSkipped?.total) linksSkipped = snapshot.linksSkipped;
      } else {
        manifest = await step('snapshotS3Input', () => snapshotS3Input({ s3: ref.s3 }), (r) => `${r.filesTotal} files`);
      }
      state.inputs.push({ ref, manifestDigest: manifest.manifestDigest, filesTotal: manifest.filesTotal, bytesTotal: manifest.bytesTotal, ...(linksSkipped ? { linksSkipped } : {}) });
      log.info('input snapshotted', { ...ids(), input: describeInputRef(ref), manifestDigest: manifest.manifestDigest, linksSkipped: linksSkipped?.total ?? 0 });
    }
    const composed = await step('composeInputs', () => composeInputs({ manifestDigests: state.inputs.map((i) => i.manifestDigest) }));
    state.dataManifestDigest = composed.manifestDigest;
    await landAndVerify();
    state.status = previousStatus;
  };

  /**
   * Before any code runs: the session answers on the boot data/ was verified
   * on and still holds every file, else it is provisioned, landed and
   * verified again. The first execution of a stage re-hashes everything.
   */
  const ensureSessionVerified = async (): Promise<void> => {
    await syncPendingInputs();
    const checkInput = { session: state.session!, dataManifestDigest: state.dataManifestDigest };
    const check = await step('checkSession', () => (patched(CHECK_SESSION_LOCALLY) ? checkSessionLocally(checkInput) : checkSession(checkInput)), (r) =>
      !r.reachable ? 'unreachable' : r.restarted ? 'restarted' : r.missing.length + r.changed.length > 0 ? `${r.missing.length} missing, ${r.changed.length} changed` : 'ok',
    );
    if (!check.reachable) {
      log.warn('session unreachable; provisioning again', ids());
      const before = state.session!.bootId;
      await provision();
      if (state.session!.bootId !== before) state.restartsDetected++;
      await landAndVerify();
      return;
    }
    if (check.restarted || check.missing.length > 0 || check.changed.length > 0) {
      if (check.bootId) noteBoot(check.bootId);
      log.warn('session lost verified inputs; landing again', { ...ids(), missing: check.missing, changed: check.changed });
      await landAndVerify();
      return;
    }
    if (!stageVerified && state.dataManifestDigest) {
      const digest = state.dataManifestDigest;
      try {
        const verified = await step('verifyLanding', () => verifyLanding({ ...landInput(digest), expectedBootId: state.session!.bootId }), (r) => `${r.filesVerified} files verified`);
        state.verifiedBootId = verified.bootId;
        inputVerifications++;
      } catch (err) {
        const type = failureType(err);
        if (type !== FailureType.VerificationFailed && type !== FailureType.TargetRestarted) throw err;
        log.warn('inputs failed verification; landing again', { ...ids(), failure: type });
        await landAndVerify();
      }
    }
  };

  /** Keeps the record in the state, where `state` readers find an execution by its request id, dropping the oldest past the limit. */
  const remember = (record: ExecutionRecord) => {
    const records = (state.executions ??= []);
    records.push(record);
    if (records.length > EXECUTION_RECORDS_KEPT) records.splice(0, records.length - EXECUTION_RECORDS_KEPT);
  };

  const runExecution = async (request: ExecuteRequest, requestId: string): Promise<ExecuteResult> => {
    const stage = currentStage();
    const verificationsBefore = inputVerifications;
    await ensureSessionVerified();
    stageVerified = true;
    executionCounter++;
    // Counted for people, random so ids never repeat across sessions of one target and code in the session cannot predict the next.
    const executionId = `e${executionCounter}-${stage.name}-${uuid4()}`;
    const record: ExecutionRecord = {
      requestId,
      executionId,
      stage: stage.name,
      status: 'running',
      startedAt: new Date().toISOString(),
      logChunks: executionLogPrefix('', workflowInfo().workflowId, executionId),
      inputsVerified: inputVerifications > verificationsBefore,
    };
    remember(record);
    let result: ExecuteResult;
    try {
      result = await step(
        'executeCode',
        () =>
          executeCode({
            session: state.session!,
            stage: stage.name,
            executionId,
            code: request.code,
            language: request.language,
            timeoutSeconds: request.timeoutSeconds ?? DEFAULT_EXECUTE_TIMEOUT_SECONDS,
            logChunks: record.logChunks,
          }),
        (r) => `${executionId} exit ${r.exitCode ?? r.signal}`,
      );
    } catch (err) {
      Object.assign(record, { status: 'failed', endedAt: new Date().toISOString(), failure: failureType(err) ?? 'failed' });
      throw err;
    }
    Object.assign(record, { status: 'finished', endedAt: new Date().toISOString(), exitCode: result.exitCode, stdoutBytes: result.stdoutBytes, stderrBytes: result.stderrBytes });
    stage.executions++;
    state.executionsTotal++;
    return { ...result, requestId, inputsVerified: record.inputsVerified, logChunks: record.logChunks };
  };

  setHandler(
    executeUpdate,
    async (request) => {
      touch();
      // Every update has an id (the caller's request id, or one Temporal chose); records are found by it.
      const requestId = currentUpdateInfo()?.id ?? uuid4();
      // An execute sent right after finishStage belongs to the next stage.
      await condition(() => (ready && finishRequested === undefined) || abortRequested !== undefined || state.status === 'failed');
      if (abortRequested || state.status === 'failed') {
        const reason = abortRequested ? `aborted: ${abortRequested.reason}` : (endReason ?? 'the pipeline failed');
        throw ApplicationFailure.create({ type: FailureType.PipelineAborted, message: `nothing runs: ${reason}`, details: [{ reason }], nonRetryable: true });
      }
      executionsRunning++;
      try {
        return await lock.run(() => runExecution(request, requestId));
      } finally {
        executionsRunning--;
        touch();
      }
    },
    {
      validator: (request) => {
        // Refusals carry a failure type, as every failure does; a validator's refusal leaves no trace in history.
        const problems = executeRequestProblems(request);
        if (problems.length) throw ApplicationFailure.create({ type: FailureType.InvalidInput, message: `invalid execute request: ${problems.join('; ')}`, details: [{ problems }], nonRetryable: true });
        const closed = (message: string) => ApplicationFailure.create({ type: FailureType.PipelineClosed, message, details: [{ status: state.status, stage: currentStage()?.name }], nonRetryable: true });
        if (abortRequested || ['releasing', 'completed', 'failed'].includes(state.status)) throw closed(`pipeline ${input.sessionId} is ${abortRequested ? 'aborting' : state.status}; nothing more runs`);
        const last = stageIndex >= state.stages.length - 1;
        if (last && finishRequested) throw closed(`the last stage (${currentStage()?.name}) is finishing; nothing more runs`);
      },
      description: 'Run code in the current stage once the session inputs are verified',
    },
  );
  setHandler(finishStageSignal, (request) => {
    touch();
    const named = request?.stage;
    // A resent finishStage (a retried agent) arriving after its stage ended would otherwise finish the next stage unrun.
    // The patch keeps histories recorded before stage names were checked replaying as they ran.
    if (named !== undefined && named !== currentStage()?.name && patched(FINISH_STAGE_CHECKS_NAME)) {
      log.warn('finishStage ignored: it names a stage that is not the current one', { ...ids(), named });
      return;
    }
    finishRequested = { summary: request?.summary };
  });
  setHandler(addInputsSignal, (request) => {
    touch();
    const problems = request && Array.isArray(request.inputs) ? inputRefsProblems(request.inputs, 'inputs') : ['addInputs needs {"inputs": [...]}'];
    if (problems.length) {
      // A signal cannot be refused; the problem goes to the log and the inputs are ignored.
      log.warn('addInputs ignored', { ...ids(), problems });
      return;
    }
    pendingInputs.push(...request.inputs);
  });
  setHandler(abortSignal, (request) => {
    touch();
    abortRequested = { reason: typeof request?.reason === 'string' && request.reason !== '' ? request.reason : 'no reason given' };
  });

  const historyTooLong = () => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength >= input.maxHistoryEvents;

  upsertSearchAttributes([
    { key: FerrySessionId, value: input.sessionId },
    { key: FerryTarget, value: input.target.kind },
  ]);
  try {
    if (!state.session) {
      await provision();
      state.status = 'syncing';
      await lock.run(syncPendingInputs);
      ready = true;
    }
    for (; stageIndex < state.stages.length; stageIndex++) {
      const stage = currentStage();
      if (stage.status === 'pending') {
        stage.status = 'running';
        stageVerified = false;
        log.info('stage started', ids());
      }
      state.status = 'running';
      state.stage = stage.name;
      upsertSearchAttributes([{ key: FerryStage, value: stage.name }]);
      idleSince = Date.now();
      for (;;) {
        const seen = touches;
        // A finishStage that arrives while an execution runs waits for its end (which wakes this again).
        const due = () => (finishRequested !== undefined && executionsRunning === 0) || abortRequested !== undefined || pendingInputs.length > 0 || (executionsRunning === 0 && historyTooLong());
        // One timer per idle period: when it fires the clock is read again, and only a stage idle all along fails.
        // Histories recorded before restarted the timer on every update and signal (a cancel and a new timer each).
        const oneIdleTimer = patched(STAGE_IDLE_CLOCK);
        const idleLeftMs = executionsRunning > 0 ? input.stageIdleTimeoutMs : idleSince + input.stageIdleTimeoutMs - Date.now();
        const woken = oneIdleTimer
          ? await condition(due, Math.max(1, idleLeftMs), { summary: AGENT_WAIT_TIMER_SUMMARY })
          : await condition(() => due() || touches !== seen, input.stageIdleTimeoutMs, { summary: AGENT_WAIT_TIMER_SUMMARY });
        if (abortRequested) {
          throw ApplicationFailure.create({ type: FailureType.PipelineAborted, message: `aborted: ${abortRequested.reason}`, details: [{ reason: abortRequested.reason, stage: stage.name }], nonRetryable: true });
        }
        if (pendingInputs.length > 0) {
          await lock.run(syncPendingInputs);
          idleSince = Date.now();
        }
        if (finishRequested && executionsRunning === 0) break;
        // The timer a touch restarted never fires: before the patch, a fired timer meant idle.
        const idle = !woken && executionsRunning === 0 && (oneIdleTimer ? Date.now() - idleSince >= input.stageIdleTimeoutMs : !finishRequested);
        if (idle) {
          throw ApplicationFailure.create({
            type: FailureType.StageIdleTimeout,
            message: `stage ${stage.name} saw no execute, finishStage or other signal for ${input.stageIdleTimeoutMs / 1000} s`,
            details: [{ stage: stage.name, idleMs: input.stageIdleTimeoutMs }],
            nonRetryable: true,
          });
        }
        if (executionsRunning === 0 && historyTooLong()) {
          await condition(allHandlersFinished);
          continuing = true;
          log.info('continuing as new', { ...ids(), historyLength: workflowInfo().historyLength });
          await continueAsNew<typeof pipelineWorkflow>(rawInput, {
            state,
            timeline,
            executionCounter,
            pendingInputs,
            stageIndex,
            stageFirstExecutionDone: stageVerified,
          });
        }
      }
      state.status = 'collecting';
      stage.summary = finishRequested?.summary;
      const collected = await lock.run(() => step('collectArtifacts', () => collectArtifacts({ session: state.session!, stage: stage.name }), (r) => `${r.filesTotal} files`));
      stage.artifacts = { ...collected, stage: stage.name };
      stage.status = 'finished';
      finishRequested = undefined;
      log.info('stage finished', { ...ids(), artifacts: stage.artifacts.filesTotal });
    }
    state.status = 'completed';
    return {
      sessionId: input.sessionId,
      stages: state.stages,
      inputs: state.inputs,
      dataManifestDigest: state.dataManifestDigest,
      executionsTotal: state.executionsTotal,
      restartsDetected: state.restartsDetected,
    };
  } catch (err) {
    if (!continuing) {
      endReason = err instanceof Error ? err.message : String(err);
      state.status = 'failed';
    }
    throw err;
  } finally {
    // Continue-as-new hands the session to the next run; every other ending releases it, also on cancel.
    if (!continuing && state.session) {
      const session = state.session;
      const finalStatus = state.status;
      state.status = 'releasing';
      await CancellationScope.nonCancellable(() => step('releaseSession', () => releaseSession({ session }), (r) => r.detail)).catch((err) =>
        log.warn('session release failed', { ...ids(), error: String(err) }),
      );
      state.status = finalStatus;
    }
  }
}
