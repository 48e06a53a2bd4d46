/**
 * trainingWorkflow: snapshot a project → upload what S3 lacks → land a delta
 * archive on the instance → verify it there → start the command detached →
 * confirm it survives its startup grace → probe it on a durable timer,
 * shipping its log to S3 → end with its exit code. Signals: `stop`,
 * `resync`. Query: `progress`. Long runs continue as new so history stays
 * small.
 */
import {
  ApplicationFailure,
  ContinueAsNew,
  condition,
  continueAsNew,
  log,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { FerryActivities } from '../activities';
import { FailureType } from '../core/errors';
import {
  normalizeTrainingInput,
  startIdFor,
  type ResyncSignalInput,
  type StopSignalInput,
  type TrainingInput,
  type TrainingProgress,
  type TrainingResult,
  type TrainingResume,
} from '../core/training';
import { FerrySessionId, FerryTarget } from './definitions';
import { retry, snapshotStep, stepFailure, transferStep, verifyStep } from './steps';
import { resyncTrainingSignal, stopTrainingSignal, trainingProgressQuery } from './trainingDefinitions';

/** Re-hashing on the instance; over SSM a script's first output can take tens of seconds, so a longer heartbeat than the agent targets. */
const instanceVerifyStep: ActivityOptions = { ...verifyStep, heartbeatTimeout: '60s' };
/** One short script (start, probe); SSM delivery can take tens of seconds. */
const scriptStep: ActivityOptions = { startToCloseTimeout: '6m', heartbeatTimeout: '60s', retry: { ...retry, maximumAttempts: 10 } };
/** Deleting temporary objects; the activity itself turns a failure into a warning. */
const cleanupStep: ActivityOptions = { startToCloseTimeout: '2m', retry: { ...retry, maximumAttempts: 3 } };

const { snapshotSource } = proxyActivities<FerryActivities>(snapshotStep);
const { uploadBlobs, landArchive } = proxyActivities<FerryActivities>(transferStep);
const { verifyInstanceLanding } = proxyActivities<FerryActivities>(instanceVerifyStep);
const { startProcess, probeProcess } = proxyActivities<FerryActivities>(scriptStep);
const { cleanupTrainingObjects } = proxyActivities<FerryActivities>(cleanupStep);

/** Continue as new past this many history events, even before the server suggests it. */
const MAX_HISTORY_EVENTS = 5_000;

async function step<T>(name: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    throw stepFailure(name, err);
  }
}

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
    manifestDigest: resume?.manifestDigest,
    release: resume?.release,
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
  const { confirmProcess } = proxyActivities<FerryActivities>({ ...scriptStep, startToCloseTimeout: `${confirmGrace + 360}s` });
  const { stopProcess } = proxyActivities<FerryActivities>({ ...scriptStep, startToCloseTimeout: `${input.stopGraceSeconds + 360}s` });
  const targetStep = { runId, target };
  let starts = resume?.starts ?? 0;
  let logOffset = resume?.logOffset ?? 0;
  let stopped = false;
  let filesTotal = resume?.filesTotal ?? 0;
  let bytesTotal = resume?.bytesTotal ?? 0;
  let archiveBytes = resume?.archiveBytes ?? 0;
  let timeToConfirmMs = resume?.timeToConfirmMs ?? 0;

  const noteLog = (logBytes: number, lastLines: string[], seenAtMs = Date.now()) => {
    progress.lastLines = lastLines;
    if (logBytes > 0 && progress.firstLogLineMs === undefined) progress.firstLogLineMs = seenAtMs - startedAtMs;
  };

  /** Snapshot → upload → land → verify; leaves the verified release as the target's `current`. */
  const landProject = async (): Promise<void> => {
    progress.state = 'snapshotSource';
    const snapshot = await step('snapshotSource', () =>
      snapshotSource({ path: input.project.path, include: input.project.include, exclude: input.project.exclude, requireFiles: true }),
    );
    if (snapshot.skippedTotal > 0) log.warn('project entries skipped', { runId, skipped: snapshot.skippedTotal, first: snapshot.skipped.slice(0, 5) });
    progress.manifestDigest = snapshot.manifestDigest;
    filesTotal = snapshot.filesTotal;
    bytesTotal = snapshot.bytesTotal;
    progress.state = 'uploadBlobs';
    await step('uploadBlobs', () => uploadBlobs({ manifestDigest: snapshot.manifestDigest, sourcePath: snapshot.sourcePath }));
    progress.state = 'landArchive';
    const landed = await step('landArchive', () => landArchive({ ...targetStep, manifestDigest: snapshot.manifestDigest }));
    archiveBytes ||= landed.archiveBytes;
    progress.state = 'verifyInstanceLanding';
    await step('verifyInstanceLanding', () => verifyInstanceLanding({ ...targetStep, manifestDigest: snapshot.manifestDigest, release: landed.release }));
    progress.release = landed.release;
  };

  /** Starts the command under a new start id and waits out its startup grace. */
  const startAndConfirm = async (): Promise<{ exited: boolean }> => {
    starts++;
    const startId = startIdFor(starts);
    progress.startId = startId;
    logOffset = 0;
    progress.state = 'startProcess';
    const started = await step('startProcess', () => startProcess({ ...targetStep, startId, command: input.command, env: input.env }));
    progress.pid = started.pid;
    progress.state = 'confirmProcess';
    const status = await step('confirmProcess', () => confirmProcess({ ...targetStep, startId, graceSeconds: confirmGrace }));
    noteLog(status.logBytes, status.lastLines, status.firstLogSeenAtMs);
    timeToConfirmMs = Date.now() - startedAtMs;
    log.info('training process confirmed', { runId, startId, pid: started.pid, alive: status.alive });
    return { exited: !status.alive };
  };

  /** One probe: liveness plus the next log chunk. */
  const probe = async () => {
    const startId = progress.startId!;
    const result = await step('probeProcess', () => probeProcess({ ...targetStep, startId, logOffset }));
    progress.probes++;
    if (result.chunkBytes > 0) {
      logOffset += result.chunkBytes;
      progress.logChunks++;
    }
    progress.logBytesShipped = logOffset;
    progress.pid = result.pid;
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

  const cleanup = async (): Promise<string | undefined> => {
    progress.state = 'cleanup';
    const cleaned = await cleanupTrainingObjects({ runId });
    return cleaned.warning;
  };

  let final: Awaited<ReturnType<typeof probe>>;
  try {
    let exited = false;
    if (!resume) {
      await landProject();
      exited = (await startAndConfirm()).exited;
    }
    progress.state = 'running';
    for (;;) {
      if (!exited && !stopped) await condition(() => stopRequest !== undefined || resyncRequests.length > 0, input.pollSeconds * 1000);
      if (stopRequest && !stopped && !exited) {
        progress.state = 'stopping';
        const grace = stopRequest.graceSeconds ?? input.stopGraceSeconds;
        const result = await step('stopProcess', () => stopProcess({ ...targetStep, startId: progress.startId!, graceSeconds: grace }));
        log.info('training stopped on request', { runId, signal: result.signal });
        stopped = true;
      } else if (resyncRequests.length > 0 && !exited && !stopped) {
        const request = resyncRequests.splice(0, resyncRequests.length).reduce((all, r) => ({ restart: all.restart || r.restart }), {} as ResyncSignalInput);
        progress.state = 'resyncing';
        await landProject();
        progress.resyncs++;
        if (request.restart) {
          await step('stopProcess', () => stopProcess({ ...targetStep, startId: progress.startId!, graceSeconds: input.stopGraceSeconds }));
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
          release: progress.release!,
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
          archiveBytes,
          timeToConfirmMs,
        };
        log.info('continuing as new to keep history small', { runId, probes: progress.probes });
        await continueAsNew<typeof trainingWorkflow>({ ...input, resume: carried });
      }
    }
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    progress.state = 'failed';
    await cleanup();
    throw err;
  }

  const cleanupWarning = await cleanup();
  progress.exitCode = final.exitCode;
  const result: TrainingResult = {
    runId,
    exitCode: final.exitCode,
    stopped,
    manifestDigest: progress.manifestDigest!,
    release: progress.release!,
    filesTotal,
    bytesTotal,
    archiveBytes,
    logBytesShipped: logOffset,
    logChunks: progress.logChunks,
    probes: progress.probes,
    resyncs: progress.resyncs,
    lastLines: final.lastLines,
    timeToConfirmMs,
    firstLogLineMs: progress.firstLogLineMs,
    cleanupWarning,
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
