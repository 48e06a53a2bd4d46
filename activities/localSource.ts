/**
 * The local filesystem as a source: walk a folder the way git would see it
 * (.gitignore and .ferryignore at every level), hash every file, and store
 * the resulting manifest in the blob store.
 */
import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { lstat, open, readFile, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import ignore, { type Ignore } from 'ignore';
import pLimit from 'p-limit';
import { FailureType } from '../core/errors';
import { createManifest, type ManifestEntry, type ManifestRef } from '../core/manifest';
import { unsafePathReason } from '../core/paths';
import { startProgress, type SkippedSource } from '../core/sync';
import { nonRetryable, retryable } from './failures';
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
    for (const name of names) {
      const relativePath = relativeDir === '' ? name : `${relativeDir}/${name}`;
      const absolutePath = path.join(directory, name);
      const reason = unsafePathReason(relativePath);
      if (reason) {
        skipped.push({ path: relativePath, reason: `name cannot be synced safely: ${reason}` });
        continue;
      }
      let info: Stats;
      try {
        info = await lstat(absolutePath);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          skipVanished(relativePath);
          continue;
        }
        throw err;
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
        if (selected && !isIgnored(active, relativePath, false)) files.push({ relativePath, absolutePath, size: info.size });
      } else if (!isIgnored(active, relativePath, false)) {
        skipped.push({ path: relativePath, reason: 'not a regular file (device, socket or fifo)' });
      }
    }
  };

  const skipVanished = (relativePath: string) => {
    skipped.push({ path: relativePath, reason: 'vanished while the folder was being listed' });
  };

  const resolveInsideRoot = async (realRootPath: string, absolutePath: string, relativePath: string): Promise<Stats | undefined> => {
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
    return stat(absolutePath);
  };

  await walk(root, '', [rootLevel]);
  return files;
}

class FileChangedError extends Error {}

/** Hashes a file and checks it did not change while being read (size, mtime, ctime and byte count). */
async function hashStableFile(file: ListedFile, onBytes: (n: number) => void): Promise<{ sha256: string; size: number; mode: number }> {
  const handle = await open(file.absolutePath, 'r');
  try {
    const before = await handle.stat();
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of handle.createReadStream({ autoClose: false, highWaterMark: 1 << 20, start: 0 })) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
      onBytes((chunk as Buffer).length);
    }
    const after = await handle.stat();
    if (bytes !== before.size || after.size !== before.size || after.mtimeMs !== before.mtimeMs || after.ctimeMs !== before.ctimeMs) {
      throw new FileChangedError(file.relativePath);
    }
    return { sha256: hash.digest('hex'), size: bytes, mode: before.mode & 0o777 };
  } finally {
    await handle.close();
  }
}

export function createLocalSourceActivities(deps: { blobs: S3BlobStore }) {
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
      context.heartbeat(progress);

      const limit = pLimit(HASH_CONCURRENCY);
      const entries: ManifestEntry[] = [];
      await Promise.all(
        listed.map((file) =>
          limit(async () => {
            for (let read = 1; ; read++) {
              let counted = 0;
              try {
                const hashed = await hashStableFile(file, (n) => {
                  counted += n;
                  progress.bytesDone += n;
                  context.heartbeat(progress);
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
            context.heartbeat(progress);
          }),
        ),
      );

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
