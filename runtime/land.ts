/**
 * `POST /v1/land`: fetch blobs by URL, or out of pack objects by range
 * (runtime/blobFetch), into `<root>/<dir>/<path>`.
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
import { lchown, open, readlink, rename, rm, symlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import pLimit from 'p-limit';
import type { LandChunk, LandFile, LandProgressEvent, LandRequest, LandResult } from '../core/agentProtocol';
import { ChunkSplitter } from '../core/chunking';
import { FailureType } from '../core/errors';
import { entriesProblems, fileDirectoryConflicts } from '../core/manifest';
import { comparePlaces } from '../core/packs';
import { joinRelative, quotePath, unsafePathReason } from '../core/paths';
import { type ConfinedDirectories, lstatOrUndefined, parentOf, requestDirProblem } from './confine';
import { allowedPackUrls, blobSource, fetchVerified, isPackedFile, mismatch, PackedChunks, PackedFiles, sha256Of } from './blobFetch';
import { AgentFailure, invalid, toAgentFailure } from './failure';
import { EMPTY_SHA256, openRegularFile, type FileHasher } from './fileHash';
import type { HeldFolder, HeldFolders, Owner } from './heldFolders';
import { type NdjsonStream, ProgressTicker } from './http';
import type { AgentLogger } from './log';
import type { UrlAllowlist } from './urlAllowlist';

/** Files landed at once: a small file costs a request, so many overlap. */
const DOWNLOAD_CONCURRENCY = 16;
/** Of those, chunked files: each holds CHUNKS_AHEAD chunks (up to 2 MiB each), or two ranges of its packs (up to 8 MiB each), in memory. */
const CHUNKED_FILE_CONCURRENCY = 4;
/** Chunks of one file fetched ahead of the one being written. */
const CHUNKS_AHEAD = 4;
const TEMP_PREFIX = '.ferry-tmp-';

export function isLandTempName(name: string): boolean {
  return name.startsWith(TEMP_PREFIX);
}

/** The request with only the fields the protocol defines, or an UnsafePath / InvalidInput / UrlNotAllowed failure. */
export function validateLandRequest(body: unknown, allowlist: UrlAllowlist): LandRequest {
  if (typeof body !== 'object' || body === null) throw invalid('land request is not an object');
  const { dir, files, packs } = body as Partial<LandRequest>;
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
  const packUrls = allowedPackUrls(packs, allowlist);
  // Only the fields the protocol defines are kept.
  const landed = entries.map((file): LandFile => {
    const { path, size, mode, sha256 } = file;
    if (file.link !== undefined) {
      // Chunks on a link are refused with the entries' problems; a url would be a blob fetched for nothing.
      if (file.url !== undefined || file.pack !== undefined) throw invalid(`link ${quotePath(path)} has a url`);
      if (sha256Of(Buffer.from(file.link, 'utf8')) !== sha256) throw invalid(`link ${quotePath(path)}: sha256 is not that of its text`);
      return { path, size, mode, sha256, link: file.link };
    }
    if (file.chunks === undefined) return { path, size, mode, sha256, ...blobSource(file, packUrls.length, allowlist, path) };
    if (file.url !== undefined || file.pack !== undefined) throw invalid(`file ${quotePath(path)} needs exactly one of url, pack or chunks`);
    return { path, size, mode, sha256, chunks: file.chunks.map((chunk) => ({ sha256: chunk.sha256, size: chunk.size, ...blobSource(chunk, packUrls.length, allowlist, path) })) };
  });
  return { dir: dir as string, files: landed, ...(packUrls.length ? { packs: packUrls } : {}) };
}

/** Read-only: refuses the request when an existing directory on the way to a file is a symlink or not a directory. */
export async function checkLandDirectories(request: LandRequest, directories: ConfinedDirectories): Promise<void> {
  await directories.inspect(request.dir);
  const parents = new Set(request.files.map((file) => parentOf(joinRelative(request.dir, file.path))));
  for (const parent of parents) await directories.inspect(parent);
}

export interface LandContext {
  bootId: string;
  /** Where files are written: folders held open, created as needed (runtime/heldFolders). */
  folders: HeldFolders;
  /** Who gets each landed file when code runs as another user than the agent's. */
  owner?: Owner;
  hasher: FileHasher;
  log: AgentLogger;
}

interface LandProgress {
  filesDone: number;
  bytesDone: number;
}

type FileOutcome = { kind: 'landed'; bytesDownloaded: number; bytesReused: number } | { kind: 'alreadyPresent' };

/** Where one request's bodies come from besides their own URLs: its packs, and the ranges its whole packed files are read in. */
interface LandSources {
  packUrls: string[];
  packedFiles: PackedFiles;
}

/**
 * Lands every file, writing progress lines and exactly one final `result`
 * or `error` line to `stream`. Never throws. Stops at the first failure;
 * `signal` (agent shutdown, client gone) stops it too.
 */
export async function landFiles(request: LandRequest, context: LandContext, stream: NdjsonStream, signal: AbortSignal): Promise<void> {
  const totals = { filesTotal: request.files.length, bytesTotal: request.files.reduce((sum, f) => sum + f.size, 0) };
  const progress: LandProgress = { filesDone: 0, bytesDone: 0 };
  const result: Required<LandResult> = {
    type: 'result',
    bootId: context.bootId,
    filesLanded: 0,
    bytesLanded: 0,
    filesAlreadyPresent: 0,
    bytesAlreadyPresent: 0,
    bytesDownloaded: 0,
    bytesReused: 0,
  };
  const ticker = new ProgressTicker(stream, (): LandProgressEvent => ({ type: 'progress', ...progress, ...totals }));
  // Aborted by the first failure, so files still queued are skipped and running downloads stop.
  const stop = new AbortController();
  const stopSignal = AbortSignal.any([signal, stop.signal]);
  let firstFailure: AgentFailure | undefined;
  const limit = pLimit(DOWNLOAD_CONCURRENCY);
  const chunkedLimit = pLimit(CHUNKED_FILE_CONCURRENCY);
  const started = Date.now();
  // Packed files in the order their bytes sit in the packs, so each range read is used up soon after it arrives.
  const packed = request.files.filter(isPackedFile).sort(comparePlaces);
  const sources: LandSources = { packUrls: request.packs ?? [], packedFiles: new PackedFiles(request.packs ?? [], packed, stopSignal) };

  await Promise.all(
    [...packed, ...request.files.filter((file) => !isPackedFile(file))].map((file) =>
      (file.chunks ? chunkedLimit : limit)(async () => {
        if (stopSignal.aborted) return;
        try {
          const outcome = await landFile(request.dir, file, context, progress, sources, stopSignal);
          if (outcome.kind === 'landed') {
            result.filesLanded++;
            result.bytesLanded += file.size;
            result.bytesDownloaded += outcome.bytesDownloaded;
            result.bytesReused += outcome.bytesReused;
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
  const fields = {
    dir: request.dir,
    ...totals,
    filesLanded: result.filesLanded,
    filesAlreadyPresent: result.filesAlreadyPresent,
    bytesDownloaded: result.bytesDownloaded,
    bytesReused: result.bytesReused,
    ms: Date.now() - started,
  };
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

/**
 * Lands one file in its folder, held open from the landing's first use of it
 * (runtime/heldFolders): the temp file is created, renamed and, on any
 * failure, removed in that very folder, so a folder on the way swapped for a
 * link meanwhile never redirects a write, and no temp file is left behind.
 */
async function landFile(dir: string, file: LandFile, context: LandContext, progress: LandProgress, sources: LandSources, signal: AbortSignal): Promise<FileOutcome> {
  const relative = joinRelative(dir, file.path);
  const folder = (await context.folders.hold(parentOf(relative))) as HeldFolder;
  try {
    const finalPath = join(folder.path, baseName(relative));
    if (file.link !== undefined) return await landLink(folder.path, finalPath, relative, file, file.link, context, progress);
    if (await isAlreadyPresent(finalPath, relative, file, context.hasher, signal)) {
      sources.packedFiles.skip(file);
      progress.bytesDone += file.size;
      return { kind: 'alreadyPresent' };
    }
    return await landBody(folder.path, finalPath, relative, file, context, progress, sources, signal);
  } finally {
    folder.release();
  }
}

async function landBody(folder: string, finalPath: string, relative: string, file: Exclude<LandFile, { link: string }>, context: LandContext, progress: LandProgress, sources: LandSources, signal: AbortSignal): Promise<FileOutcome> {
  const tempName = TEMP_PREFIX + randomBytes(8).toString('hex');
  const tempPath = join(folder, tempName);
  let renamed = false;
  try {
    let outcome: FileOutcome = { kind: 'landed', bytesDownloaded: 0, bytesReused: 0 };
    // 'wx+' creates exclusively: never opens (or follows) anything already at that name; readable, so a
    // chunked file that does not match can be read back to name the chunk that was wrong.
    const handle = await open(tempPath, 'wx+', 0o600);
    try {
      if (file.chunks) outcome = await assembleChunks(handle, file, file.chunks, finalPath, progress, sources.packUrls, signal);
      else if (isPackedFile(file)) {
        const body = await sources.packedFiles.body(file, blobLabel(file));
        await writeAll(handle, body);
        progress.bytesDone += body.length;
        outcome = { kind: 'landed', bytesDownloaded: file.size, bytesReused: 0 };
      } else if (file.size > 0 || file.sha256 !== EMPTY_SHA256) {
        await fetchVerified(file.url as string, file, blobLabel(file), file.path, signal, async (bytes) => {
          await writeAll(handle, bytes);
          progress.bytesDone += bytes.length;
        });
        outcome = { kind: 'landed', bytesDownloaded: file.size, bytesReused: 0 };
      }
      // chmod rather than a create mode, so the umask cannot strip bits the manifest asks for.
      await handle.chmod(file.mode);
      if (context.owner) await handle.chown(context.owner.uid, context.owner.gid);
    } finally {
      await handle.close();
    }
    await rename(tempPath, finalPath);
    renamed = true;
    return outcome;
  } finally {
    if (!renamed) await rm(tempPath, { force: true }).catch((err) => context.log.log('warn', 'could not remove temp file', { path: joinRelative(parentOf(relative), tempName), error: String(err) }));
  }
}

/**
 * A link entry: a symlink with the entry's text, made under a temp name and
 * renamed into place, which replaces whatever is at the final path (file or
 * link) without following it. The link is never followed here or later:
 * listing reports it by its text, and landing refuses a path through it.
 */
async function landLink(folder: string, finalPath: string, relative: string, file: LandFile, text: string, context: LandContext, progress: LandProgress): Promise<FileOutcome> {
  const stats = await lstatOrUndefined(finalPath);
  if (stats?.isDirectory()) throw new AgentFailure(FailureType.UnsafePath, `${JSON.stringify(relative)} exists and is a directory`, { path: file.path });
  progress.bytesDone += file.size;
  if (stats?.isSymbolicLink() && (await readlink(finalPath)) === text) return { kind: 'alreadyPresent' };
  const tempName = TEMP_PREFIX + randomBytes(8).toString('hex');
  const tempPath = join(folder, tempName);
  try {
    await symlink(text, tempPath);
    if (context.owner) await lchown(tempPath, context.owner.uid, context.owner.gid);
    await rename(tempPath, finalPath);
  } catch (err) {
    await rm(tempPath, { force: true }).catch((cleanup) => context.log.log('warn', 'could not remove temp link', { path: joinRelative(parentOf(relative), tempName), error: String(cleanup) }));
    throw err;
  }
  return { kind: 'landed', bytesDownloaded: 0, bytesReused: 0 };
}

const baseName = (relative: string) => relative.slice(relative.lastIndexOf('/') + 1);

/** Whether the final path already holds the file (fixing its mode if only that differs). */
async function isAlreadyPresent(finalPath: string, relative: string, file: LandFile, hasher: FileHasher, signal: AbortSignal): Promise<boolean> {
  const stats = await lstatOrUndefined(finalPath);
  if (stats?.isDirectory()) throw new AgentFailure(FailureType.UnsafePath, `${JSON.stringify(relative)} exists and is a directory`, { path: file.path });
  if (!stats?.isFile() || stats.size !== file.size) return false;
  const handle = await openRegularFile(finalPath);
  if (!handle) return false;
  try {
    const existing = await hasher.hashOpenFile(handle, finalPath, signal);
    if (existing.size !== file.size || existing.sha256 !== file.sha256) return false;
    if (existing.mode !== file.mode) await handle.chmod(file.mode);
    return true;
  } finally {
    await handle.close();
  }
}

const blobLabel = (file: LandFile) => `blob for ${JSON.stringify(file.path)}`;
const chunkLabel = (file: LandFile, index: number) => `chunk ${index + 1} of ${file.chunks?.length} of ${JSON.stringify(file.path)}`;

type HeldChunks = Map<string, { offset: number; size: number }>;

/** Past this many bytes of chunks not found where they sit in the new version, the old file is split to find them elsewhere. */
const SPLIT_OLD_FILE_FROM_BYTES = 8 << 20;

/**
 * Where the new version's chunks sit in the file already at its path. An
 * edit in place leaves every other chunk at its offset, which costs one read
 * and hash per chunk to confirm; when much is missing (bytes inserted or
 * removed shift everything after them), the old file is split the way the
 * worker split the new one, to find chunks wherever they moved.
 */
async function chunksAlreadyHeld(existing: FileHandle, chunks: LandChunk[], signal: AbortSignal): Promise<HeldChunks> {
  const held: HeldChunks = new Map();
  const existingSize = (await existing.stat()).size;
  const missing = new Set<string>();
  let missingBytes = 0;
  let offset = 0;
  for (const chunk of chunks) {
    signal.throwIfAborted();
    if (!held.has(chunk.sha256) && offset + chunk.size <= existingSize) {
      const bytes = Buffer.allocUnsafe(chunk.size);
      const { bytesRead } = await existing.read(bytes, 0, chunk.size, offset);
      if (bytesRead === chunk.size && sha256Of(bytes) === chunk.sha256) held.set(chunk.sha256, { offset, size: chunk.size });
    }
    if (!held.has(chunk.sha256)) {
      missing.add(chunk.sha256);
      missingBytes += chunk.size;
    }
    offset += chunk.size;
  }
  if (missingBytes > SPLIT_OLD_FILE_FROM_BYTES) {
    for (const [sha256, place] of await chunksBySplitting(existing, missing, signal)) if (!held.has(sha256)) held.set(sha256, place);
  }
  return held;
}

/** Where each wanted chunk sits in `existing`, found by splitting it into chunks. */
async function chunksBySplitting(existing: FileHandle, wanted: Set<string>, signal: AbortSignal): Promise<HeldChunks> {
  const held: HeldChunks = new Map();
  const splitter = new ChunkSplitter();
  const buffer = Buffer.allocUnsafe(8 << 20);
  let offset = 0;
  const note = (chunk: Buffer) => {
    const sha256 = sha256Of(chunk);
    if (wanted.has(sha256) && !held.has(sha256)) held.set(sha256, { offset, size: chunk.length });
    offset += chunk.length;
  };
  for (let position = 0; ; ) {
    signal.throwIfAborted();
    const { bytesRead } = await existing.read(buffer, 0, buffer.length, position);
    if (bytesRead === 0) break;
    position += bytesRead;
    splitter.write(buffer.subarray(0, bytesRead), note);
  }
  splitter.end(note);
  return held;
}

/**
 * Writes a chunked file in order: chunks the file already at `finalPath`
 * holds are copied from it (and re-hashed), the others are downloaded, a few
 * ahead of the one being written. The whole body is hashed on the way.
 */
async function assembleChunks(
  handle: FileHandle,
  file: LandFile,
  chunks: LandChunk[],
  finalPath: string,
  progress: LandProgress,
  packUrls: string[],
  signal: AbortSignal,
): Promise<FileOutcome> {
  const existing = await openRegularFile(finalPath);
  try {
    const held: HeldChunks = existing ? await chunksAlreadyHeld(existing, chunks, signal) : new Map();
    const packed = new PackedChunks(
      packUrls,
      chunks,
      chunks.flatMap((chunk, index) => (held.has(chunk.sha256) ? [] : [index])),
      signal,
    );
    const outcome = { kind: 'landed' as const, bytesDownloaded: 0, bytesReused: 0 };
    /** Chunks read from packs, not hashed on their own (the whole file is). */
    const unchecked: number[] = [];
    const chunkBytes = async (index: number): Promise<Buffer> => {
      const chunk = chunks[index];
      const copy = held.get(chunk.sha256);
      if (existing && copy && copy.size === chunk.size) {
        const bytes = Buffer.allocUnsafe(chunk.size);
        const { bytesRead } = await existing.read(bytes, 0, chunk.size, copy.offset);
        // Changed since it was split: fetch the chunk instead.
        if (bytesRead === chunk.size && sha256Of(bytes) === chunk.sha256) {
          outcome.bytesReused += chunk.size;
          return bytes;
        }
      }
      let bytes: Buffer;
      if (chunk.url === undefined) {
        bytes = await packed.chunk(index, chunkLabel(file, index), file.path);
        unchecked.push(index);
      } else {
        const parts: Uint8Array[] = [];
        await fetchVerified(chunk.url, chunk, chunkLabel(file, index), file.path, signal, async (part) => {
          parts.push(part);
        });
        bytes = Buffer.concat(parts);
      }
      outcome.bytesDownloaded += chunk.size;
      return bytes;
    };

    const whole = createHash('sha256');
    const ahead: Promise<Buffer>[] = [];
    let next = 0;
    const fetchNext = () => {
      const bytes = chunkBytes(next++);
      // Seen when its turn comes; this only keeps a failure after an earlier one from going unhandled.
      bytes.catch(() => undefined);
      ahead.push(bytes);
    };
    while (next < chunks.length && ahead.length < CHUNKS_AHEAD) fetchNext();
    let size = 0;
    while (ahead.length) {
      const bytes = await (ahead.shift() as Promise<Buffer>);
      if (next < chunks.length) fetchNext();
      whole.update(bytes);
      await writeAll(handle, bytes);
      size += bytes.length;
      progress.bytesDone += bytes.length;
    }
    const sha256 = whole.digest('hex');
    if (size !== file.size || sha256 !== file.sha256) {
      const damaged = await firstDamagedChunk(handle, chunks, unchecked);
      if (damaged) throw mismatch(chunkLabel(file, damaged.index), file.path, chunks[damaged.index], `sha256 ${damaged.sha256}`);
      throw mismatch(blobLabel(file), file.path, file, `${size} bytes with sha256 ${sha256}`);
    }
    return outcome;
  } finally {
    await existing?.close();
  }
}

/** The first of `indices` whose bytes in the written file do not hash to its chunk's sha256. */
async function firstDamagedChunk(handle: FileHandle, chunks: LandChunk[], indices: number[]): Promise<{ index: number; sha256: string } | undefined> {
  const offsets: number[] = [];
  chunks.reduce((offset, chunk, index) => ((offsets[index] = offset), offset + chunk.size), 0);
  for (const index of [...indices].sort((a, b) => a - b)) {
    const bytes = Buffer.allocUnsafe(chunks[index].size);
    const { bytesRead } = await handle.read(bytes, 0, bytes.length, offsets[index]);
    const sha256 = sha256Of(bytes.subarray(0, bytesRead));
    if (sha256 !== chunks[index].sha256) return { index, sha256 };
  }
  return undefined;
}

async function writeAll(handle: FileHandle, chunk: Uint8Array): Promise<void> {
  for (let offset = 0; offset < chunk.length; ) offset += (await handle.write(chunk, offset)).bytesWritten;
}
