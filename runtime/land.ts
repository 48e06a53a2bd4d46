/**
 * `POST /v1/land`: fetch blobs by URL into `<root>/<dir>/<path>`.
 *
 * The whole request is checked before the disk is touched (paths, URLs, and
 * the directories already on disk), so a refused request writes nothing.
 * Each body is streamed into a temp file next to its final path, hashed and
 * counted on the way, and renamed into place only when size and sha256
 * match: a final path never holds a partial or wrong file.
 *
 * No fsync before the rename: a target that crashes comes back with a new
 * bootId, and the worker verifies (re-hashes) after landing anyway.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import type { LandFile, LandProgressEvent, LandRequest, LandResult } from '../core/agentProtocol';
import { FailureType, fetchFailureDetail } from '../core/errors';
import { entriesProblems, fileDirectoryConflicts } from '../core/manifest';
import { joinRelative, quotePath, unsafePathReason } from '../core/paths';
import { ConfinedDirectories, lstatOrUndefined, parentOf, requestDirProblem } from './confine';
import { AgentFailure, invalid, toAgentFailure } from './failure';
import { EMPTY_SHA256, hashOpenFile, openRegularFile } from './fileHash';
import { NdjsonStream, ProgressTicker } from './http';
import type { AgentLogger } from './log';
import type { UrlAllowlist } from './urlAllowlist';

const DOWNLOAD_CONCURRENCY = 8;
/** A blob server that sends nothing for this long is treated as dead. */
const BLOB_IDLE_TIMEOUT_MS = 60_000;
const TEMP_PREFIX = '.ferry-tmp-';

export function isLandTempName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX);
}

/** The request with only the fields the protocol defines, or an UnsafePath / InvalidInput / UrlNotAllowed failure. */
export function validateLandRequest(body: unknown, allowlist: UrlAllowlist): LandRequest {
  if (typeof body !== 'object' || body === null) throw invalid('land request is not an object');
  const { dir, files } = body as Partial<LandRequest>;
  const dirProblem = requestDirProblem(dir);
  if (dirProblem !== undefined) throw new AgentFailure(FailureType.UnsafePath, `dir ${quotePath(dir)}: ${dirProblem}`, { path: String(dir) });
  if (!Array.isArray(files)) throw invalid('land request files is not an array');
  // Unsafe paths first, so they are reported as UnsafePath rather than as one shape problem among others.
  for (const file of files as Partial<LandFile>[]) {
    const reason = unsafePathReason(file?.path);
    if (reason !== undefined) throw new AgentFailure(FailureType.UnsafePath, `path ${quotePath(file?.path)}: ${reason}`, { path: String(file?.path) });
  }
  const problems = entriesProblems(files);
  if (problems.length) throw invalid(`land request files are invalid: ${problems.join('; ')}`);
  const entries = files as LandFile[];
  const conflicts = fileDirectoryConflicts(entries);
  if (conflicts.length) throw invalid(`paths are both a file and a folder: ${conflicts.slice(0, 5).map((p) => JSON.stringify(p)).join(', ')}`);
  for (const file of entries) allowlist.check(file.url, file.path);
  return { dir: dir as string, files: entries.map(({ path, size, mode, sha256, url }) => ({ path, size, mode, sha256, url })) };
}

/** Read-only: refuses the request when an existing directory on the way to a file is a symlink or not a directory. */
export async function checkLandDirectories(request: LandRequest, directories: ConfinedDirectories): Promise<void> {
  await directories.inspect(request.dir);
  const parents = new Set(request.files.map((file) => parentOf(joinRelative(request.dir, file.path))));
  for (const parent of parents) await directories.inspect(parent);
}

export interface LandContext {
  bootId: string;
  directories: ConfinedDirectories;
  log: AgentLogger;
}

interface LandProgress {
  filesDone: number;
  bytesDone: number;
}

type FileOutcome = 'landed' | 'alreadyPresent';

/**
 * Lands every file, writing progress lines and exactly one final `result`
 * or `error` line to `stream`. Never throws. Stops at the first failure;
 * `signal` (agent shutdown, client gone) stops it too.
 */
export async function landFiles(request: LandRequest, context: LandContext, stream: NdjsonStream, signal: AbortSignal): Promise<void> {
  const totals = { filesTotal: request.files.length, bytesTotal: request.files.reduce((sum, f) => sum + f.size, 0) };
  const progress: LandProgress = { filesDone: 0, bytesDone: 0 };
  const result: LandResult = { type: 'result', bootId: context.bootId, filesLanded: 0, bytesLanded: 0, filesAlreadyPresent: 0, bytesAlreadyPresent: 0 };
  const ticker = new ProgressTicker(stream, (): LandProgressEvent => ({ type: 'progress', ...progress, ...totals }));
  // Aborted by the first failure, so files still queued are skipped and running downloads stop.
  const stop = new AbortController();
  const stopSignal = AbortSignal.any([signal, stop.signal]);
  let firstFailure: AgentFailure | undefined;
  const limit = pLimit(DOWNLOAD_CONCURRENCY);
  const started = Date.now();

  await Promise.all(
    request.files.map((file) =>
      limit(async () => {
        if (stopSignal.aborted) return;
        try {
          const outcome = await landFile(request.dir, file, context, progress, stopSignal);
          if (outcome === 'landed') {
            result.filesLanded++;
            result.bytesLanded += file.size;
          } else {
            result.filesAlreadyPresent++;
            result.bytesAlreadyPresent += file.size;
          }
          progress.filesDone++;
        } catch (err) {
          if (stopSignal.aborted) return;
          firstFailure = toAgentFailure(err, file.path);
          stop.abort();
        }
      }),
    ),
  );

  const failure = firstFailure ?? (signal.aborted ? new AgentFailure(FailureType.TargetUnavailable, 'landing was cancelled: the agent is shutting down or the client went away') : undefined);
  const fields = { dir: request.dir, ...totals, filesLanded: result.filesLanded, filesAlreadyPresent: result.filesAlreadyPresent, ms: Date.now() - started };
  if (failure) {
    ticker.stop();
    context.log.log('warn', 'land failed', { ...fields, errorType: failure.type, error: failure.message, path: failure.path });
    await stream.send(failure.toBody());
  } else {
    ticker.finish();
    context.log.log('info', 'land done', fields);
    await stream.send(result);
  }
}

async function landFile(dir: string, file: LandFile, context: LandContext, progress: LandProgress, signal: AbortSignal): Promise<FileOutcome> {
  const relative = joinRelative(dir, file.path);
  const parent = await context.directories.ensure(parentOf(relative));
  const finalPath = context.directories.absolute(relative);
  if (await isAlreadyPresent(finalPath, relative, file, signal)) {
    progress.bytesDone += file.size;
    return 'alreadyPresent';
  }

  const tempPath = join(parent, TEMP_PREFIX + randomBytes(8).toString('hex'));
  let renamed = false;
  try {
    // 'wx' creates exclusively: never opens (or follows) anything already at that name.
    const handle = await open(tempPath, 'wx', 0o600);
    try {
      if (file.size > 0 || file.sha256 !== EMPTY_SHA256) await downloadInto(handle, file, progress, signal);
      // chmod rather than a create mode, so the umask cannot strip bits the manifest asks for.
      await handle.chmod(file.mode);
    } finally {
      await handle.close();
    }
    await rename(tempPath, finalPath);
    renamed = true;
    return 'landed';
  } finally {
    if (!renamed) await rm(tempPath, { force: true }).catch((err) => context.log.log('warn', 'could not remove temp file', { path: tempPath, error: String(err) }));
  }
}

/** Whether the final path already holds the file (fixing its mode if only that differs). */
async function isAlreadyPresent(finalPath: string, relative: string, file: LandFile, signal: AbortSignal): Promise<boolean> {
  const stats = await lstatOrUndefined(finalPath);
  if (stats?.isDirectory()) throw new AgentFailure(FailureType.UnsafePath, `${JSON.stringify(relative)} exists and is a directory`, { path: file.path });
  if (!stats?.isFile() || stats.size !== file.size) return false;
  const handle = await openRegularFile(finalPath);
  if (!handle) return false;
  try {
    const existing = await hashOpenFile(handle, signal);
    if (existing.size !== file.size || existing.sha256 !== file.sha256) return false;
    if (existing.mode !== file.mode) await handle.chmod(file.mode);
    return true;
  } finally {
    await handle.close();
  }
}

/** Streams the blob into `handle`, checking size and sha256 as the bytes pass. */
async function downloadInto(handle: FileHandle, file: LandFile, progress: LandProgress, signal: AbortSignal): Promise<void> {
  const origin = new URL(file.url).origin;
  const fail = (message: string) => new AgentFailure(FailureType.BlobDownloadFailed, `blob for ${JSON.stringify(file.path)} from ${origin}: ${message}`, { path: file.path, url: origin });
  const idle = new AbortController();
  const idleTimer = setTimeout(() => idle.abort(), BLOB_IDLE_TIMEOUT_MS);
  const downloadSignal = AbortSignal.any([signal, idle.signal]);
  // Node 20's fetch can leave the next read of a body pending forever when its signal aborts while
  // the reader is between reads (one download failing while others write hung the whole landing).
  // Cancelling through the reader itself ends that read at once.
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  const cancelRead = () => void reader?.cancel(downloadSignal.reason).catch(() => undefined);
  downloadSignal.addEventListener('abort', cancelRead, { once: true });
  try {
    const response = await fetch(file.url, { redirect: 'error', signal: downloadSignal });
    if (!response.ok || !response.body) {
      await response.body?.cancel().catch(() => undefined);
      throw fail(`HTTP status ${response.status}`);
    }
    const hash = createHash('sha256');
    let size = 0;
    reader = response.body.getReader();
    downloadSignal.throwIfAborted();
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      idleTimer.refresh();
      size += chunk.value.length;
      // Stop early instead of filling the disk with a blob that can no longer match.
      if (size > file.size) throw mismatch(file, `more than ${file.size} bytes`);
      hash.update(chunk.value);
      await writeAll(handle, chunk.value);
      progress.bytesDone += chunk.value.length;
    }
    // A read ended by cancelling is not the end of the blob.
    downloadSignal.throwIfAborted();
    const sha256 = hash.digest('hex');
    if (size !== file.size || sha256 !== file.sha256) throw mismatch(file, `${size} bytes with sha256 ${sha256}`);
  } catch (err) {
    if (err instanceof AgentFailure) throw err;
    if (idle.signal.aborted) throw fail(`no bytes received for ${BLOB_IDLE_TIMEOUT_MS / 1000} s`);
    if (signal.aborted) throw err;
    // Errors with a syscall (ENOSPC among them) come from writing the temp file; fetch reports network trouble as TypeError with a cause.
    if (typeof (err as { syscall?: unknown }).syscall === 'string') throw toAgentFailure(err, file.path);
    throw fail(fetchFailureDetail(err));
  } finally {
    clearTimeout(idleTimer);
    downloadSignal.removeEventListener('abort', cancelRead);
    // Releases the connection when the loop stopped early (too many bytes, a failed write); a no-op after the end.
    void reader?.cancel().catch(() => undefined);
  }
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  for (let offset = 0; offset < chunk.length; ) offset += (await handle.write(chunk, offset)).bytesWritten;
}

function mismatch(file: LandFile, actual: string): AgentFailure {
  return new AgentFailure(FailureType.ChecksumMismatch, `blob for ${JSON.stringify(file.path)} does not match: expected ${file.size} bytes with sha256 ${file.sha256}, got ${actual}`, {
    path: file.path,
  });
}
