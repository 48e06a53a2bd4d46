/**
 * `POST /v1/files`: what `<root>/<dir>` holds right now, hashed on the
 * target. Verification trusts this listing, so every file is hashed from
 * the disk (or known by an earlier read under the same stat signature, see
 * runtime/fileHash). Symlinks are never followed: each is listed by its
 * text, as a link entry of a manifest is written (core/manifest `link`),
 * so a landed link verifies and a link where a file belongs does not.
 */
import { createHash } from 'node:crypto';
import { readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ListedFileEvent, ListFilesProgressEvent, ListFilesRequest, ListFilesResult } from '../core/agentProtocol';
import { FailureType } from '../core/errors';
import { LINK_MODE } from '../core/manifest';
import { joinRelative, quotePath, unsafePathReason } from '../core/paths';
import { type ConfinedDirectories, parentOf, requestDirProblem } from './confine';
import { AgentFailure, errorCode, toAgentFailure } from './failure';
import { statRegularFile, type FileHasher, type HashedFile } from './fileHash';
import { type NdjsonStream, ProgressTicker } from './http';
import { isLandTempName } from './land';
import type { AgentLogger } from './log';

const HASH_CONCURRENCY = 16;

type ListedFile = Omit<HashedFile, 'sha256'> & { sha256?: string; link?: string };

/** The symlink at `absolute` as a link entry, or undefined when there is none there. */
async function linkAt(absolute: string): Promise<ListedFile | undefined> {
  let text: string;
  try {
    text = await readlink(absolute);
  } catch (err) {
    // Not a link (EINVAL), or gone.
    if (['EINVAL', 'ENOENT', 'ENOTDIR'].includes(errorCode(err) ?? '')) return undefined;
    throw err;
  }
  const bytes = Buffer.from(text, 'utf8');
  return { size: bytes.length, mode: LINK_MODE, sha256: createHash('sha256').update(bytes).digest('hex'), link: text };
}

export function validateListFilesRequest(body: unknown): ListFilesRequest {
  if (typeof body !== 'object' || body === null) throw new AgentFailure(FailureType.InvalidInput, 'files request is not an object');
  const { dir, paths, hash } = body as Partial<ListFilesRequest>;
  const dirProblem = requestDirProblem(dir);
  if (dirProblem !== undefined) throw new AgentFailure(FailureType.UnsafePath, `dir ${quotePath(dir)}: ${dirProblem}`, { path: String(dir) });
  if (hash !== undefined && typeof hash !== 'boolean') throw new AgentFailure(FailureType.InvalidInput, 'files request hash must be true or false');
  if (paths === undefined) return { dir: dir as string, hash };
  if (!Array.isArray(paths)) throw new AgentFailure(FailureType.InvalidInput, 'files request paths is not an array');
  for (const path of paths) {
    const reason = unsafePathReason(path);
    if (reason !== undefined) throw new AgentFailure(FailureType.UnsafePath, `path ${quotePath(path)}: ${reason}`, { path: String(path) });
  }
  return { dir: dir as string, paths: paths as string[], hash };
}

export interface ListFilesContext {
  bootId: string;
  directories: ConfinedDirectories;
  hasher: FileHasher;
  log: AgentLogger;
}

/** The relative paths (under `dir`) to hash, sorted like a manifest. */
async function selectFilesToList(request: ListFilesRequest, directories: ConfinedDirectories, signal: AbortSignal): Promise<string[]> {
  if ((await directories.inspect(request.dir)) === 'missing') return [];
  if (request.paths === undefined) {
    const all: string[] = [];
    await collectFilesAndLinks(directories.absolute(request.dir), '', all, signal);
    return all.sort();
  }
  const selected: string[] = [];
  for (const path of new Set(request.paths)) {
    if (await parentIsPlainDirectory(directories, parentOf(joinRelative(request.dir, path)))) selected.push(path);
  }
  return selected.sort();
}

/** A requested path behind a symlink or a file is simply not there, like a missing one. */
async function parentIsPlainDirectory(directories: ConfinedDirectories, parent: string): Promise<boolean> {
  try {
    return (await directories.inspect(parent)) === 'directory';
  } catch (err) {
    if (err instanceof AgentFailure && err.type === FailureType.UnsafePath) return false;
    throw err;
  }
}

async function collectFilesAndLinks(absoluteDir: string, relativeDir: string, files: string[], signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  let entries;
  try {
    entries = await readdir(absoluteDir, { withFileTypes: true });
  } catch (err) {
    // Removed (or replaced by a file) while walking: nothing to list there.
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return;
    throw err;
  }
  for (const entry of entries) {
    const relative = joinRelative(relativeDir, entry.name);
    // No manifest can name a path that is too deep or too long (or has a backslash), so it is not walked:
    // a 10,000-level tree written under the root costs 256 levels of lstat, not ENAMETOOLONG after megabytes of paths.
    if (unsafePathReason(relative) !== undefined) continue;
    // Dirent types come from lstat semantics: a symlink is neither a file nor a directory here, and is not walked into.
    // Temp files and links are landings in progress, not entries yet.
    if (entry.isDirectory()) await collectFilesAndLinks(join(absoluteDir, entry.name), relative, files, signal);
    else if ((entry.isFile() || entry.isSymbolicLink()) && !isLandTempName(entry.name)) files.push(relative);
  }
}

/**
 * Writes a `file` line for each regular file selected by the request, in
 * path order, then exactly one `result` or `error` line. Never throws. The
 * caller inspects `dir` first, so a `dir` that is a symlink is a 400 rather
 * than an error line; walking a big tree happens with the stream (and its
 * keepalive progress lines) already running.
 */
export async function listFiles(request: ListFilesRequest, context: ListFilesContext, stream: NdjsonStream, signal: AbortSignal): Promise<void> {
  const progress = { filesDone: 0, bytesDone: 0 };
  const ticker = new ProgressTicker(stream, (): ListFilesProgressEvent => ({ type: 'progress', ...progress }));
  const started = Date.now();
  try {
    const paths = await selectFilesToList(request, context.directories, signal);
    const inspectFile = request.hash === false ? statRegularFile : (absolute: string, abort: AbortSignal) => context.hasher.hashRegularFile(absolute, abort);
    // A regular file, else a link; the link's text is read only when the path holds no regular file.
    const inspect = async (absolute: string): Promise<ListedFile | undefined> => (await inspectFile(absolute, signal)) ?? linkAt(absolute);
    await forEachInOrder(
      paths,
      (path) => inspect(context.directories.absolute(joinRelative(request.dir, path))),
      async (file, path) => {
        if (!file) return;
        progress.filesDone++;
        progress.bytesDone += file.size;
        const event: ListedFileEvent = { type: 'file', path, size: file.size, mode: file.mode, sha256: file.sha256, ...(file.link === undefined ? {} : { link: file.link }) };
        await stream.send(event);
      },
    );
    ticker.finish();
    const result: ListFilesResult = { type: 'result', bootId: context.bootId, filesListed: progress.filesDone, bytesListed: progress.bytesDone };
    context.log.log('info', 'files listed', { dir: request.dir, filesListed: result.filesListed, bytesListed: result.bytesListed, ms: Date.now() - started });
    await stream.send(result);
  } catch (err) {
    ticker.stop();
    const failure = toAgentFailure(err);
    context.log.log('warn', 'files listing failed', { dir: request.dir, errorType: failure.type, error: failure.message });
    await stream.send(failure.toBody());
  }
}

/** Runs `work` on up to HASH_CONCURRENCY items at once but hands results to `consume` in input order. */
async function forEachInOrder(
  items: string[],
  work: (item: string) => Promise<ListedFile | undefined>,
  consume: (result: ListedFile | undefined, item: string) => Promise<void>,
): Promise<void> {
  const running: Promise<ListedFile | undefined>[] = [];
  let next = 0;
  const startNext = () => {
    const promise = work(items[next++]);
    // Rejections are seen when this promise's turn comes; this only stops one that never gets a turn from crashing the process.
    promise.catch(() => undefined);
    running.push(promise);
  };
  while (next < items.length && running.length < HASH_CONCURRENCY) startNext();
  for (const item of items) {
    const result = await (running.shift() as Promise<ListedFile | undefined>);
    if (next < items.length) startNext();
    await consume(result, item);
  }
}
