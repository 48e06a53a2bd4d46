/**
 * trainingWorkflow: provision a session on any target → snapshot the
 * project → upload what S3 lacks → land it in the session's `project/` and
 * verify it there (exactly the manifest, nothing else) → start the command
 * detached → confirm it survives its startup grace → probe it on a durable
 * timer, shipping its log to S3 → collect `outputs/` → release the session →
 * end with the exit code. Signals: `stop`, `resync`. Query: `progress`. Long
 * runs continue as new so history stays small.
 */
import {
  ApplicationFailure,
  CancellationScope,
  ContinueAsNew,
  condition,
  continueAsNew,
  log,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { FerryActivities } from '../activities';
import { FailureType } from '../core/errors';
import { TRAINING_DIRS, type CollectedFiles, type SessionHandle } from '../core/target';
import {
  normalizeTrainingInput,
  startIdFor,
  type ResyncSignalInput,
  type StopSignalInput,
  type TrainingInput,
  type TrainingProgress,
  type TrainingResult,
  type TrainingResume,
  type TrainingState,
} from '../core/training';
import { FerrySessionId, FerryTarget } from './definitions';
import { landAndVerify, snapshotAndUpload, uploadSourceOf, type StepRunner } from './landing';
import { processStep, sessionStep, stepFailure, transferStep } from './steps';
import { resyncTrainingSignal, stopTrainingSignal, trainingProgressQuery } from './trainingDefinitions';

const { provisionSession, releaseSession } = proxyActivities<FerryActivities>(sessionStep);
const { collectArtifacts } = proxyActivities<FerryActivities>(transferStep);
const { startProcess, probeProcess } = proxyActivities<FerryActivities>(processStep);

/** Continue as new past this many history events, even before the server suggests it. */
const MAX_HISTORY_EVENTS = 5_000;

const step: StepRunner = async (name, run) => {
  try {
    return await run();
  } catch (err) {
    throw stepFailure(name, err);
  }
};

export async function trainingWorkflow(rawInput: TrainingInput): Promise<TrainingResult> {
  const info = workflowInfo();
  const normalized = normalizeTrainingInput(rawInput, info.workflowId);
  if (!normalized.ok) {
    throw ApplicationFailure.create({
      type: FailureType.InvalidInput,
      message: `invalid training input: ${normalized.problems.join('; ')}`,
      details: [{ problems: normalized.problems }],
      nonRetryable: true,
    });
  }
  const input = normalized.input;
  const { runId, target } = input;
  const resume = input.resume;
  const progress: TrainingProgress = {
    runId,
    state: resume ? 'running' : 'validating',
    target,
    session: resume?.session,
    manifestDigest: resume?.manifestDigest,
    startId: resume?.startId,
    pid: resume?.pid,
    lastLines: [],
    logBytesShipped: resume?.logOffset ?? 0,
    logChunks: resume?.logChunks ?? 0,
    probes: resume?.probes ?? 0,
    resyncs: resume?.resyncs ?? 0,
    firstLogLineMs: resume?.firstLogLineMs,
  };
  setHandler(trainingProgressQuery, () => progress);
  let stopRequest: StopSignalInput | undefined;
  const resyncRequests: ResyncSignalInput[] = [];
  setHandler(stopTrainingSignal, (request) => {
    stopRequest = request ?? {};
  });
  setHandler(resyncTrainingSignal, (request) => {
    resyncRequests.push(request ?? {});
  });
  upsertSearchAttributes([
    { key: FerrySessionId, value: runId },
    { key: FerryTarget, value: target.kind },
  ]);

  const startedAtMs = resume?.startedAtMs ?? Date.now();
  const confirmGrace = input.startupGraceSeconds;
  const { confirmProcess } = proxyActivities<FerryActivities>({ ...processStep, startToCloseTimeout: `${confirmGrace + 360}s` });
  const { stopProcess } = proxyActivities<FerryActivities>({ ...processStep, startToCloseTimeout: `${input.stopGraceSeconds + 360}s` });
  let session: SessionHandle | undefined = resume?.session;
  /** The provisioned session, for steps that only run once it exists. */
  const inSession = () => session!;
  let starts = resume?.starts ?? 0;
  let logOffset = resume?.logOffset ?? 0;
  let stopped = false;
  let filesTotal = resume?.filesTotal ?? 0;
  let bytesTotal = resume?.bytesTotal ?? 0;
  let bytesLanded = resume?.bytesLanded ?? 0;
  let timeToConfirmMs = resume?.timeToConfirmMs ?? 0;

  const noteLog = (logBytes: number, lastLines: string[], seenAtMs = Date.now()) => {
    progress.lastLines = lastLines;
    if (logBytes > 0 && progress.firstLogLineMs === undefined) progress.firstLogLineMs = seenAtMs - startedAtMs;
  };

  /** A step whose name is the run's state while it runs (the `progress` query shows it). */
  const stepShown: StepRunner = (name, run) => {
    progress.state = name as TrainingState;
    return step(name, run);
  };

  /** Snapshot → upload → land in `project/` → verify there: exactly the manifest, re-hashed on the target. */
  const landProject = async (): Promise<void> => {
    progress.state = 'snapshotSource';
    const { snapshot } = await snapshotAndUpload(
      { path: input.project.path, include: input.project.include, exclude: input.project.exclude, links: input.project.links, requireFiles: true },
      stepShown,
    );
    if (snapshot.skippedTotal > 0) log.warn('project entries skipped', { runId, skipped: snapshot.skippedTotal, first: snapshot.skipped.slice(0, 5) });
    // Absent from snapshot results recorded before link policies.
    if (snapshot.linksSkipped?.total) log.warn('project symlinks left out by the link policy', { runId, total: snapshot.linksSkipped.total, first: snapshot.linksSkipped.first.slice(0, 5) });
    progress.manifestDigest = snapshot.manifestDigest;
    filesTotal = snapshot.filesTotal;
    bytesTotal = snapshot.bytesTotal;
    const { landed } = await landAndVerify(
      { session: inSession(), sessionId: runId, target, dest: TRAINING_DIRS.project, manifestDigest: snapshot.manifestDigest, exact: true, sources: [uploadSourceOf(snapshot)] },
      stepShown,
    );
    bytesLanded ||= landed.bytesLanded;
  };

  /** Starts the command under a new start id and waits out its startup grace. */
  const startAndConfirm = async (): Promise<{ exited: boolean }> => {
    starts++;
    const startId = startIdFor(starts);
    progress.startId = startId;
    logOffset = 0;
    progress.state = 'startProcess';
    const env = { ...input.env, FERRY_SESSION_DIR: inSession().root, FERRY_OUTPUT_DIR: `${inSession().root}/${TRAINING_DIRS.outputs}` };
    const started = await step('startProcess', () => startProcess({ session: inSession(), processId: startId, command: input.command, env, cwd: TRAINING_DIRS.project }));
    progress.pid = started.pid ?? undefined;
    progress.state = 'confirmProcess';
    const status = await step('confirmProcess', () => confirmProcess({ session: inSession(), processId: startId, graceSeconds: confirmGrace }));
    noteLog(status.logBytes, status.lastLines, status.firstLogSeenAtMs);
    timeToConfirmMs = Date.now() - startedAtMs;
    log.info('training process confirmed', { runId, startId, pid: started.pid, alive: status.alive });
    return { exited: !status.alive };
  };

  /** One probe: liveness plus the next log chunk. */
  const probe = async () => {
    const startId = progress.startId!;
    const result = await step('probeProcess', () => probeProcess({ session: inSession(), runId, processId: startId, logOffset }));
    progress.probes++;
    if (result.chunkBytes > 0) {
      logOffset += result.chunkBytes;
      progress.logChunks++;
    }
    progress.logBytesShipped = logOffset;
    progress.pid = result.pid ?? undefined;
    noteLog(result.logBytes, result.lastLines);
    return result;
  };

  /** Probes until the whole log of an ended process is shipped. */
  const drainLog = async () => {
    for (;;) {
      const result = await probe();
      if (result.logBytes <= logOffset || result.chunkBytes === 0) return result;
    }
  };

  /** Collects what the command left in `outputs/` (best effort: the run's outcome stands either way) and releases the session; its files stay where the target keeps them. */
  const finish = async (): Promise<CollectedFiles | undefined> => {
    if (!session) return undefined;
    progress.state = 'collectOutputs';
    const outputs = await step('collectArtifacts', () => collectArtifacts({ session: inSession(), dir: TRAINING_DIRS.outputs })).catch((err: unknown) => {
      log.warn('outputs were not collected', { runId, error: String(err) });
      return undefined;
    });
    progress.state = 'releasing';
    await step('releaseSession', () => releaseSession({ session: inSession(), keepFiles: true })).catch((err: unknown) => log.warn('session release failed', { runId, error: String(err) }));
    return outputs && { manifestDigest: outputs.manifestDigest, manifestKey: outputs.manifestKey, filesTotal: outputs.filesTotal, bytesTotal: outputs.bytesTotal, files: outputs.files };
  };

  let final: Awaited<ReturnType<typeof probe>>;
  try {
    let exited = false;
    if (!resume) {
      progress.state = 'provisionSession';
      session = await step('provisionSession', () => provisionSession({ sessionId: runId, target, purpose: 'training' }));
      progress.session = session;
      await landProject();
      exited = (await startAndConfirm()).exited;
    }
    progress.state = 'running';
    for (;;) {
      if (!exited && !stopped) await condition(() => stopRequest !== undefined || resyncRequests.length > 0, input.pollSeconds * 1000);
      if (stopRequest && !stopped && !exited) {
        progress.state = 'stopping';
        const grace = stopRequest.graceSeconds ?? input.stopGraceSeconds;
        const result = await step('stopProcess', () => stopProcess({ session: inSession(), processId: progress.startId!, graceSeconds: grace }));
        log.info('training stopped on request', { runId, signal: result.signal });
        stopped = true;
      } else if (resyncRequests.length > 0 && !exited && !stopped) {
        const request = resyncRequests.splice(0, resyncRequests.length).reduce((all, r) => ({ restart: all.restart || r.restart }), {} as ResyncSignalInput);
        progress.state = 'resyncing';
        await landProject();
        progress.resyncs++;
        if (request.restart) {
          await step('stopProcess', () => stopProcess({ session: inSession(), processId: progress.startId!, graceSeconds: input.stopGraceSeconds }));
          await drainLog();
          exited = (await startAndConfirm()).exited;
        }
        progress.state = 'running';
        continue;
      }
      const result = await probe();
      if (!result.alive) {
        final = result.logBytes > logOffset ? await drainLog() : result;
        break;
      }
      const idle = stopRequest === undefined && resyncRequests.length === 0;
      const now = workflowInfo();
      if (idle && !stopped && (now.continueAsNewSuggested || now.historyLength > MAX_HISTORY_EVENTS)) {
        const carried: TrainingResume = {
          manifestDigest: progress.manifestDigest!,
          session: inSession(),
          startId: progress.startId!,
          starts,
          pid: progress.pid!,
          logOffset,
          logChunks: progress.logChunks,
          resyncs: progress.resyncs,
          probes: progress.probes,
          startedAtMs,
          firstLogLineMs: progress.firstLogLineMs,
          filesTotal,
          bytesTotal,
          bytesLanded,
          timeToConfirmMs,
        };
        log.info('continuing as new to keep history small', { runId, probes: progress.probes });
        await continueAsNew<typeof trainingWorkflow>({ ...input, resume: carried });
      }
    }
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    await CancellationScope.nonCancellable(finish);
    progress.state = 'failed';
    throw err;
  }

  const outputs = await finish();
  progress.exitCode = final.exitCode;
  const result: TrainingResult = {
    runId,
    exitCode: final.exitCode,
    stopped,
    manifestDigest: progress.manifestDigest!,
    session: inSession(),
    filesTotal,
    bytesTotal,
    bytesLanded,
    logBytesShipped: logOffset,
    logChunks: progress.logChunks,
    probes: progress.probes,
    resyncs: progress.resyncs,
    lastLines: final.lastLines,
    timeToConfirmMs,
    firstLogLineMs: progress.firstLogLineMs,
    outputs,
  };
  if (stopped || final.exitCode === 0) {
    progress.state = stopped ? 'stopped' : 'succeeded';
    log.info('training finished', { runId, exitCode: final.exitCode, stopped });
    return result;
  }
  progress.state = 'failed';
  const code = final.exitCode === null ? 'without an exit code (killed or vanished)' : `with code ${final.exitCode}`;
  throw ApplicationFailure.create({
    type: FailureType.ProcessFailed,
    message: `training command exited ${code}; log tail:\n${final.lastLines.slice(-10).join('\n')}`,
    details: [{ runId, exitCode: final.exitCode, lastLines: final.lastLines }],
    nonRetryable: true,
  });
}
