/**
 * The local filesystem as a source: walk a folder the way git would see it
 * (.gitignore and .ferryignore at every level), hash every file, and store
 * the resulting manifest in the blob store.
 */
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { lstat, open, readFile, readdir, realpath, stat, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import ignore, { type Ignore } from 'ignore';
import pLimit from 'p-limit';
import { Piscina } from 'piscina';
import { isChunkedSize } from '../core/chunking';
import { FailureType } from '../core/errors';
import { HashCache, statSignature, type StatSignature } from '../core/hashCache';
import { createManifest, type ChunkRef, type ManifestEntry, type ManifestRef } from '../core/manifest';
import { unsafePathReason } from '../core/paths';
import { startProgress, type SkippedSource } from '../core/sync';
import type { ChunkFileResult, ChunkFileTask } from './chunkHashWorker';
import { nonRetryable, retryable } from './failures';
import { throttledHeartbeat } from './heartbeat';
import type { S3BlobStore } from './s3BlobStore';

export interface SnapshotSourceInput {
  /** Folder to snapshot, absolute or relative to the worker's working directory. */
  path: string;
  /** When given, only files matching one of these gitignore-style patterns are taken. */
  include?: string[];
  /** Files and folders matching these gitignore-style patterns are left out, whatever the ignore files say. */
  exclude?: string[];
  /** Fail non-retryably with EmptyProject when no file is left (training needs a project). */
  requireFiles?: boolean;
}

export interface SnapshotSourceResult extends ManifestRef {
  /** Absolute source path the manifest was taken from; uploadBlobs reads from it. */
  sourcePath: string;
  /** Entries left out, with the reason (first 100). */
  skipped: SkippedSource[];
  skippedTotal: number;
}

const IGNORE_FILES = ['.gitignore', '.ferryignore'];
/** Never synced: version-control internals are not project files. */
const ALWAYS_IGNORED = ['.git/'];
const HASH_CONCURRENCY = 4;
const STAT_CONCURRENCY = 32;
/** A file is re-read this many times when it changes under us before the attempt gives up. */
const MAX_READS_PER_FILE = 3;

interface IgnoreLevel {
  /** Directory of the ignore file, relative to the root ('' for the root). */
  base: string;
  rules: Ignore;
}

/** Git's precedence: deeper files win, and a later negation re-includes. */
function isIgnored(levels: IgnoreLevel[], relativePath: string, isDirectory: boolean): boolean {
  let ignored = false;
  for (const level of levels) {
    const local = level.base === '' ? relativePath : relativePath.slice(level.base.length + 1);
    const verdict = level.rules.test(isDirectory ? `${local}/` : local);
    if (verdict.ignored) ignored = true;
    else if (verdict.unignored) ignored = false;
  }
  return ignored;
}

async function readIgnoreLevel(directory: string, base: string): Promise<IgnoreLevel | undefined> {
  const texts: string[] = [];
  for (const name of IGNORE_FILES) {
    try {
      texts.push(await readFile(path.join(directory, name), 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return texts.length ? { base, rules: ignore().add(texts.join('\n')) } : undefined;
}

interface ListedFile {
  relativePath: string;
  absolutePath: string;
  size: number;
  /** From the listing's stat: a file whose signature the hash cache knows is not read again. */
  signature: StatSignature;
  mode: number;
}

interface SelectionRules {
  include?: Ignore;
  exclude?: Ignore;
}

/** Walks `root`, following symlinks only when they stay inside it. */
async function listSourceFiles(root: string, skipped: SkippedSource[], selection: SelectionRules = {}): Promise<ListedFile[]> {
  const files: ListedFile[] = [];
  const realRoot = await realpath(root);
  const rootLevel: IgnoreLevel = { base: '', rules: ignore().add(ALWAYS_IGNORED) };
  const statLimit = pLimit(STAT_CONCURRENCY);
  const lstatOrVanished = async (absolutePath: string): Promise<BigIntStats | 'vanished'> => {
    try {
      return await lstat(absolutePath, { bigint: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'vanished';
      throw err;
    }
  };

  const walk = async (directory: string, relativeDir: string, levels: IgnoreLevel[]): Promise<void> => {
    const own = await readIgnoreLevel(directory, relativeDir);
    const active = own ? [...levels, own] : levels;
    let names: string[];
    try {
      names = (await readdir(directory)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return skipVanished(relativeDir);
      throw err;
    }
    const relativePathOf = (name: string) => (relativeDir === '' ? name : `${relativeDir}/${name}`);
    // One lstat per entry, several at once: a stat is all a remembered file costs, so their latency is the snapshot's.
    const entries = await Promise.all(
      names.map((name) => (unsafePathReason(relativePathOf(name)) ? undefined : statLimit(() => lstatOrVanished(path.join(directory, name))))),
    );
    for (const [index, name] of names.entries()) {
      const relativePath = relativePathOf(name);
      const absolutePath = path.join(directory, name);
      const reason = unsafePathReason(relativePath);
      if (reason) {
        skipped.push({ path: relativePath, reason: `name cannot be synced safely: ${reason}` });
        continue;
      }
      let info = entries[index];
      if (info === 'vanished' || info === undefined) {
        skipVanished(relativePath);
        continue;
      }
      const isLink = info.isSymbolicLink();
      if (isLink) {
        const resolved = await resolveInsideRoot(realRoot, absolutePath, relativePath);
        if (!resolved) continue;
        info = resolved;
      }
      if (info.isDirectory()) {
        if (isIgnored(active, relativePath, true) || selection.exclude?.ignores(`${relativePath}/`)) continue;
        if (isLink) {
          skipped.push({ path: relativePath, reason: 'symlink to a directory inside the source: its target is synced under its own path' });
          continue;
        }
        await walk(absolutePath, relativePath, active);
      } else if (info.isFile()) {
        const selected = !selection.exclude?.ignores(relativePath) && (selection.include?.ignores(relativePath) ?? true);
        if (selected && !isIgnored(active, relativePath, false)) {
          files.push({ relativePath, absolutePath, size: Number(info.size), signature: statSignature(info), mode: Number(info.mode & 0o777n) });
        }
      } else if (!isIgnored(active, relativePath, false)) {
        skipped.push({ path: relativePath, reason: 'not a regular file (device, socket or fifo)' });
      }
    }
  };

  const skipVanished = (relativePath: string) => {
    skipped.push({ path: relativePath, reason: 'vanished while the folder was being listed' });
  };

  const resolveInsideRoot = async (realRootPath: string, absolutePath: string, relativePath: string): Promise<BigIntStats | undefined> => {
    let target: string;
    try {
      target = await realpath(absolutePath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        skipped.push({ path: relativePath, reason: 'dangling symlink' });
        return undefined;
      }
      throw err;
    }
    if (target !== realRootPath && !target.startsWith(realRootPath + path.sep)) {
      throw nonRetryable(FailureType.SymlinkOutsideRoot, `symlink ${JSON.stringify(relativePath)} points outside the source folder (to ${target})`, {
        path: relativePath,
        target,
      });
    }
    return stat(absolutePath, { bigint: true });
  };

  await walk(root, '', [rootLevel]);
  return files;
}

class FileChangedError extends Error {}

/** What a read of a file found: remembered under the file's stat signature. */
interface FileDigest {
  sha256: string;
  size: number;
  chunks?: ChunkRef[];
}

/** Reads per file are this big: large enough that a read costs little per byte. */
const READ_BLOCK_BYTES = 8 << 20;
const nowNs = () => BigInt(Date.now()) * 1_000_000n;

/** Splits and hashes one file's chunks in another thread; see chunkHashWorker. */
type ChunkFile = (task: ChunkFileTask) => Promise<ChunkFileResult>;

/**
 * Worker threads for chunking, one less than the cores (at least one), so the
 * activity's thread hashes the whole file at the same time. Threads start on
 * first use and end when idle, so a worker that syncs no large file has none.
 */
function chunkingPool(): ChunkFile {
  let pool: Piscina<ChunkFileTask, ChunkFileResult> | undefined;
  return (task) => {
    pool ??= new Piscina({ filename: path.join(__dirname, 'chunkHashWorker.js'), minThreads: 0, maxThreads: Math.max(1, availableParallelism() - 1), idleTimeout: 2_000 });
    return pool.run(task);
  };
}

async function sha256OfFile(handle: FileHandle, size: number, onBytes: (n: number) => void): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  // One byte more than the size reveals a file that grew; small files are read in one go.
  const buffer = Buffer.allocUnsafe(Math.min(READ_BLOCK_BYTES, size + 1));
  let bytes = 0;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, bytes);
    hash.update(buffer.subarray(0, bytesRead));
    bytes += bytesRead;
    onBytes(bytesRead);
    // A regular file reads short only at its end: no extra read to see 0 bytes (a syscall per file counts on big trees).
    if (bytesRead < buffer.length) break;
  }
  return { sha256: hash.digest('hex'), size: bytes };
}

/**
 * Hashes a file (and its chunks, in another thread, when it is large enough
 * to be chunked) and checks it did not change while being read (size,
 * mtime, ctime and byte counts). A file whose stat signature `known`
 * remembers is not read again.
 */
async function hashStableFile(file: ListedFile, known: HashCache<FileDigest>, chunkFile: ChunkFile, onBytes: (n: number) => void): Promise<FileDigest & { mode: number }> {
  const cached = known.get(file.absolutePath, file.signature);
  if (cached) {
    onBytes(cached.size);
    return { ...cached, mode: file.mode };
  }
  const handle = await open(file.absolutePath, 'r');
  try {
    const before = await handle.stat({ bigint: true });
    const readStartedNs = nowNs();
    const size = Number(before.size);
    const [whole, chunked] = await Promise.all([sha256OfFile(handle, size, onBytes), isChunkedSize(size) ? chunkFile({ fd: handle.fd }) : undefined]);
    const after = await handle.stat({ bigint: true });
    const sizes = chunked ? [whole.size, chunked.size] : [whole.size];
    if (sizes.some((read) => BigInt(read) !== before.size) || after.size !== before.size || after.mtimeNs !== before.mtimeNs || after.ctimeNs !== before.ctimeNs) {
      throw new FileChangedError(file.relativePath);
    }
    const digest: FileDigest = { ...whole, ...(chunked ? { chunks: chunked.chunks } : {}) };
    known.set(file.absolutePath, statSignature(before), readStartedNs, digest);
    return { ...digest, mode: Number(before.mode & 0o777n) };
  } finally {
    await handle.close();
  }
}

export function createLocalSourceActivities(deps: { blobs: S3BlobStore }) {
  // Per worker process: a no-change snapshot costs a stat per file (DESIGN principle 8).
  const known = new HashCache<FileDigest>();
  const chunkFile = chunkingPool();
  return {
    /** Walks the source folder, hashes every file and stores the manifest; returns a reference to it. */
    async snapshotSource(input: SnapshotSourceInput): Promise<SnapshotSourceResult> {
      const context = Context.current();
      const sourcePath = path.resolve(input.path);
      const rootInfo = await stat(sourcePath).catch(() => undefined);
      if (!rootInfo?.isDirectory()) {
        throw nonRetryable(FailureType.SourceNotFound, `source folder ${sourcePath} does not exist or is not a directory`, { path: sourcePath });
      }
      const skipped: SkippedSource[] = [];
      const selection: SelectionRules = {
        include: input.include?.length ? ignore().add(input.include) : undefined,
        exclude: input.exclude?.length ? ignore().add(input.exclude) : undefined,
      };
      const listed = await listSourceFiles(sourcePath, skipped, selection);
      const progress = startProgress('snapshotSource', listed);
      const heartbeat = throttledHeartbeat(context);
      heartbeat(progress);

      const limit = pLimit(HASH_CONCURRENCY);
      const entries: ManifestEntry[] = [];
      const hashOne = async (file: ListedFile): Promise<void> => {
        for (let read = 1; ; read++) {
          let counted = 0;
          try {
            const hashed = await hashStableFile(file, known, chunkFile, (n) => {
              counted += n;
              progress.bytesDone += n;
              heartbeat(progress);
            });
            entries.push({ path: file.relativePath, ...hashed });
            progress.bytesDone += hashed.size - counted;
            break;
          } catch (err) {
            progress.bytesDone -= counted;
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
              skipped.push({ path: file.relativePath, reason: 'vanished before it could be read' });
              break;
            }
            if (!(err instanceof FileChangedError)) throw err;
            if (read >= MAX_READS_PER_FILE) {
              throw retryable(FailureType.FileChangedDuringRead, `${JSON.stringify(file.relativePath)} kept changing while it was read (${read} reads)`, {
                path: file.relativePath,
              });
            }
          }
        }
        progress.filesDone++;
        heartbeat(progress);
      };
      // A remembered file is not read, so it does not wait for a reading slot.
      await Promise.all(listed.map((file) => (known.get(file.absolutePath, file.signature) ? hashOne(file) : limit(() => hashOne(file)))));

      context.heartbeat(progress);
      if (input.requireFiles && entries.length === 0) {
        throw nonRetryable(FailureType.EmptyProject, `no files to sync in ${sourcePath} after ignore rules${selection.include ? ' and include patterns' : ''}`, {
          path: sourcePath,
          include: input.include ?? [],
          exclude: input.exclude ?? [],
          skipped: skipped.slice(0, 20),
        });
      }
      const ref = await deps.blobs.putManifest(createManifest(entries));
      context.log.info('source snapshotted', {
        sourcePath,
        manifestDigest: ref.manifestDigest,
        filesTotal: ref.filesTotal,
        bytesTotal: ref.bytesTotal,
        skipped: skipped.length,
      });
      return { ...ref, sourcePath, skipped: skipped.slice(0, 100), skippedTotal: skipped.length };
    },
  };
}
