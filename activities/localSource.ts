/**
 * The local filesystem as a source: walk a folder the way git would see it
 * (.gitignore and .ferryignore at every level), apply the link policy, hash
 * every file, and store the resulting manifest in the blob store.
 *
 * The filesystem calls run in worker threads (./sourceWorker): a tree of
 * 100,000 small files costs half a million of them, which blocking calls in
 * a thread make in a fraction of the time promise-based ones take here.
 * Every file is opened without following a link and checked to be the file
 * the listing saw (device, inode, type), so a file swapped for a link after
 * listing is never read through it.
 */
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { lstat, open, readlink, realpath, stat, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import ignore, { type Ignore } from 'ignore';
import pLimit from 'p-limit';
import { Piscina } from 'piscina';
import { isChunkedSize } from '../core/chunking';
import { FailureType } from '../core/errors';
import { DEFAULT_MAX_ENTRIES, HashCache, signatureKey, statSignature, type StatSignature } from '../core/hashCache';
import { LINK_MODE, createManifest, type ChunkRef, type Manifest, type ManifestEntry, type ManifestRef } from '../core/manifest';
import { unsafePathReason, utf8Length } from '../core/paths';
import { FolderSizes } from '../core/sizeReport';
import {
  DEFAULT_LINK_POLICY,
  DEFAULT_SIZE_WARNING_BYTES,
  SKIPPED_LINKS_LISTED,
  type LinkPolicy,
  type SizeReport,
  type SkippedLink,
  type SkippedLinks,
  type SkippedSource,
  type TransferProgress,
} from '../core/sync';
import { nonRetryable, retryable } from './failures';
import { throttledHeartbeat } from './heartbeat';
import type { ContentStore } from './blobStore';
import {
  EntryKind,
  OPEN_NO_FOLLOW,
  READ_BLOCK_BYTES,
  ReadOutcome,
  entryKind,
  identityProblem,
  type ChunkFileResult,
  type ChunkFileTask,
  type DirectoryListing,
  type HashFilesTask,
  type HashedFiles,
} from './sourceWorker';

export interface SnapshotSourceInput {
  /** Folder to snapshot, absolute or relative to the worker's working directory. */
  path: string;
  /** When given, only files matching one of these gitignore-style patterns are taken. */
  include?: string[];
  /** Files and folders matching these gitignore-style patterns are left out, whatever the ignore files say. */
  exclude?: string[];
  /** Fail non-retryably with EmptyProject when no file is left (training needs a project). */
  requireFiles?: boolean;
  /** What to do with symlinks (core/sync LinkPolicy); default `skip`. */
  links?: LinkPolicy;
  /** Over this many bytes the result names the largest folders; default DEFAULT_SIZE_WARNING_BYTES. */
  sizeWarningBytes?: number;
}

export interface SnapshotSourceResult extends ManifestRef {
  /** Absolute source path the manifest was taken from; uploadBlobs reads from it. */
  sourcePath: string;
  /** Entries left out, with the reason (the first 100 by path). */
  skipped: SkippedSource[];
  skippedTotal: number;
  /** Symlinks the link policy left out: a count and the first few. */
  linksSkipped: SkippedLinks;
  /** Set when the snapshot is over its size warning or holds usually-ignored folders. */
  sizeReport?: SizeReport;
}

/**
 * A folder's snapshot in memory: what snapshotSource stores, and what a
 * step that plans against a target (a dry run's "what the target already
 * has") can compare with the target's listing without storing anything.
 */
export interface LocalSnapshot {
  sourcePath: string;
  manifest: Manifest;
  skipped: SkippedSource[];
  linksSkipped: SkippedLinks;
  sizeReport?: SizeReport;
}

const IGNORE_FILES = ['.gitignore', '.ferryignore'];
/** Never synced, whatever the ignore files say: version-control internals are not project files. */
const isVersionControlFolder = (name: string) => name.toLowerCase() === '.git';
/** Large files hashed at once (each also keeps a chunking thread busy). */
const LARGE_FILE_CONCURRENCY = 2;
/** A file is re-read this many times when it changes under us before the attempt gives up. */
const MAX_READS_PER_FILE = 3;
/** Small files go to a hashing thread in batches of at most this many files and bytes: the hand-over costs about as much as a few files. */
const BATCH_FILES = 256;
const BATCH_BYTES = 16 << 20;
export const SKIPPED_LISTED = 100;
/** Folders listed at once. */
const WALKERS = 4;
/** Batches and large files being read at once, at most: enough to keep every thread busy, few enough that the walk does not run far ahead of the reads. */
const MAX_READS_IN_FLIGHT = 16;

/**
 * Threads for the filesystem calls and the chunking: one less than the
 * cores, so the activity's thread has one, and at most four, since each
 * costs about 10 MB and small files are bound by system calls more than by
 * cores.
 */
const THREADS = Math.min(4, Math.max(1, availableParallelism() - 1));
let sourceThreads: Piscina | undefined;

/** The threads, shared by every snapshot of this process; they start on first use and end when idle. */
function threads(): Piscina {
  sourceThreads ??= new Piscina({
    filename: path.join(__dirname, 'sourceWorker.js'),
    minThreads: 0,
    maxThreads: THREADS,
    idleTimeout: 30_000,
    // The threads keep nothing between tasks: a small young generation is all they need, and spares memory.
    resourceLimits: { maxYoungGenerationSizeMb: 1 },
  });
  return sourceThreads;
}

/** Questions a pattern matcher answers before it is rebuilt; see {@link Patterns}. */
const MATCHER_QUESTIONS = 10_000;

/**
 * Gitignore-style patterns, matched by the `ignore` library. The library
 * remembers its answer for every path it is asked about; a snapshot asks
 * about every path once, so on a tree of 100,000 files that memory is tens
 * of megabytes never read again. The matcher is rebuilt from the patterns
 * every MATCHER_QUESTIONS questions instead.
 */
class Patterns {
  private matcher: Ignore;
  private questions = 0;

  constructor(private readonly patterns: string | string[]) {
    this.matcher = ignore().add(patterns);
  }

  /** Whether a pattern ignores the path, and whether a negation re-includes it. */
  test(relativePath: string): { ignored: boolean; unignored: boolean } {
    return this.current().test(relativePath);
  }

  ignores(relativePath: string): boolean {
    return this.current().ignores(relativePath);
  }

  private current(): Ignore {
    if (++this.questions > MATCHER_QUESTIONS) {
      this.matcher = ignore().add(this.patterns);
      this.questions = 1;
    }
    return this.matcher;
  }
}

interface IgnoreLevel {
  /** Directory of the ignore file, relative to the root ('' for the root). */
  base: string;
  rules: Patterns;
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

/** Reads the ignore files the listing found as regular files; like git (2.32 on), a symlinked one is not read. */
async function readIgnoreLevel(directory: string, base: string, present: Set<string>): Promise<IgnoreLevel | undefined> {
  const texts: string[] = [];
  for (const name of IGNORE_FILES) {
    if (!present.has(name)) continue;
    try {
      const handle = await open(path.join(directory, name), OPEN_NO_FOLLOW);
      try {
        texts.push(await handle.readFile('utf8'));
      } finally {
        await handle.close();
      }
    } catch (err) {
      // Gone, or swapped for a link, since it was listed: as if it were not there.
      if (!['ENOENT', 'ELOOP'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
    }
  }
  return texts.length ? { base, rules: new Patterns(texts.join('\n')) } : undefined;
}

/** A folder to walk: where it is, its path in the snapshot, and the ignore rules above it. */
interface Folder {
  directory: string;
  relativeDir: string;
  levels: IgnoreLevel[];
}

/** A regular file to snapshot, as the listing saw it. */
interface ListedFile {
  relativePath: string;
  /** Where the file is opened: its own path, or where a followed link leads. */
  absolutePath: string;
  size: number;
  mode: number;
  /** Its stat signature key (core/hashCache): the hash cache's key, and the identity the opened file must have. */
  signature: string;
}

interface SelectionRules {
  include?: Patterns;
  exclude?: Patterns;
}

const errorCode = (err: unknown) => (err as NodeJS.ErrnoException).code ?? '';

/**
 * `parent/name` as one flat string. These paths are kept for every file
 * (manifest entries, the hash cache): a concatenation would keep a rope of
 * its parts, and path.join's result is larger still, several times the
 * bytes of the path on trees of 100,000 files.
 */
function childPath(parent: string, name: string, separator: string): string {
  return parent.endsWith(separator) ? [parent.slice(0, -1), name].join(separator) : [parent, name].join(separator);
}
/** realpath's codes for a link that leads nowhere: missing, through a file, or round in a loop. */
const DANGLING_CODES = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

function linkEntry(relativePath: string, text: string): ManifestEntry {
  return { path: relativePath, size: utf8Length(text), mode: LINK_MODE, sha256: createHash('sha256').update(text, 'utf8').digest('hex'), link: text };
}

/** What a read of a file found. */
interface FileDigest {
  sha256: string;
  size: number;
  chunks?: ChunkRef[];
}

/**
 * Files' entries remembered under their stat signatures, by path in the
 * folder: the entry itself is remembered (and reused when the file is
 * taken again unchanged), so a file costs one object and no path of its
 * own beyond the entry's.
 */
type KnownEntries = HashCache<ManifestEntry>;

const nowNs = () => BigInt(Date.now()) * 1_000_000n;

async function sha256OfFile(handle: FileHandle, size: number, onBytes: (n: number) => void): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  // One byte more than the size reveals a file that grew.
  const buffer = Buffer.allocUnsafe(Math.min(READ_BLOCK_BYTES, size + 1));
  let bytes = 0;
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, bytes);
    hash.update(buffer.subarray(0, bytesRead));
    bytes += bytesRead;
    onBytes(bytesRead);
    if (bytesRead < buffer.length) break;
  }
  return { sha256: hash.digest('hex'), size: bytes };
}

/** Why a file could not be hashed this time. */
type ReadMiss = { outcome: 'replaced'; detail: string } | { outcome: 'changed' } | { outcome: 'vanished' };

/**
 * Hashes a large file here while a thread splits it into chunks from the
 * same descriptor, after checking the opened file is the listed one.
 */
async function hashLargeFile(file: ListedFile, onBytes: (n: number) => void): Promise<(FileDigest & { mode: number; signature: StatSignature; readStartedNs: bigint }) | ReadMiss> {
  let handle: FileHandle;
  try {
    handle = await open(file.absolutePath, OPEN_NO_FOLLOW);
  } catch (err) {
    if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return { outcome: 'vanished' };
    if (errorCode(err) === 'ELOOP') return { outcome: 'replaced', detail: 'was replaced by a symlink' };
    throw err;
  }
  try {
    const before = await handle.stat({ bigint: true });
    const problem = identityProblem(file.signature, before);
    if (problem) return { outcome: 'replaced', detail: problem };
    const readStartedNs = nowNs();
    const size = Number(before.size);
    const [whole, chunked] = await Promise.all([
      sha256OfFile(handle, size, onBytes),
      threads().run({ fd: handle.fd } satisfies ChunkFileTask) as Promise<ChunkFileResult>,
    ]);
    const after = await handle.stat({ bigint: true });
    if ([whole.size, chunked.size].some((read) => BigInt(read) !== before.size) || after.size !== before.size || after.mtimeNs !== before.mtimeNs || after.ctimeNs !== before.ctimeNs) {
      return { outcome: 'changed' };
    }
    return { ...whole, chunks: chunked.chunks, mode: Number(before.mode & 0o777n), signature: statSignature(before), readStartedNs };
  } finally {
    await handle.close();
  }
}

const byPath = (a: { path: string }, b: { path: string }) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/**
 * One snapshot: walks the folder (several subfolders at once) and hashes
 * files as their folders are listed, so only the files in flight are held,
 * never the whole listing. Ignore rules apply to a link as to a file (git
 * never follows a link); what happens to a link that is not ignored is the
 * link policy's call.
 */
class SnapshotRun {
  readonly entries: ManifestEntry[] = [];
  readonly skipped: SkippedSource[] = [];
  readonly linksSkipped: SkippedLink[] = [];
  readonly sizes = new FolderSizes();
  readonly progress: TransferProgress = { step: 'snapshotSource', filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0, listing: true };
  /** Folders outside the source walked through links (policy `follow`), each once: a loop or a second link to one adds nothing. */
  private readonly followed = new Map<string, string>();
  private batch: ListedFile[] = [];
  private batchBytes = 0;
  /** Reads under way (small-file batches and large files); the walk waits when there are too many. */
  private readonly reads = new Set<Promise<void>>();
  private readonly largeLimit = pLimit(LARGE_FILE_CONCURRENCY);
  private realRoot = '';
  private failure: unknown;
  /** Folders still to walk, newest first: depth first keeps the stack short. */
  private readonly folders: Folder[] = [];
  private busyWalkers = 0;
  private readonly idleWalkers: (() => void)[] = [];

  constructor(
    private readonly root: string,
    private readonly selection: SelectionRules,
    private readonly policy: LinkPolicy,
    private readonly known: KnownEntries,
    private readonly onProgress: (progress: TransferProgress) => void,
  ) {}

  async run(): Promise<void> {
    this.realRoot = await realpath(this.root);
    this.folders.push({ directory: this.root, relativeDir: '', levels: [] });
    await Promise.all(Array.from({ length: WALKERS }, () => this.walker()));
    if (this.failure) throw this.failure;
    delete this.progress.listing;
    this.flushBatch();
    while (this.reads.size) await Promise.all(this.reads);
  }

  /** Takes folders off the stack until none is left and no other walker can add one. */
  private async walker(): Promise<void> {
    for (;;) {
      if (this.failure) return;
      const folder = this.folders.pop();
      if (folder) {
        this.busyWalkers++;
        try {
          await this.walk(folder);
        } catch (err) {
          this.failure ??= err;
        } finally {
          this.busyWalkers--;
          this.wakeWalkers();
        }
        continue;
      }
      if (this.busyWalkers === 0) return this.wakeWalkers();
      await new Promise<void>((resolve) => this.idleWalkers.push(resolve));
    }
  }

  private wakeWalkers(): void {
    for (const wake of this.idleWalkers.splice(0)) wake();
  }

  private skip(relativePath: string, reason: string): void {
    this.skipped.push({ path: relativePath, reason });
  }

  private isSelectedFile(relativePath: string): boolean {
    return !this.selection.exclude?.ignores(relativePath) && (this.selection.include?.ignores(relativePath) ?? true);
  }

  private isExcludedDirectory(relativePath: string): boolean {
    return this.selection.exclude?.ignores(`${relativePath}/`) ?? false;
  }

  /** Lists one folder: its files go to reading, its subfolders onto the stack. */
  private async walk({ directory, relativeDir, levels }: Folder): Promise<void> {
    const listing = (await threads().run({ dir: directory }, { name: 'listDirectory' })) as DirectoryListing;
    if (listing.vanished) {
      if (relativeDir !== '') this.skip(relativeDir, 'vanished while the folder was being listed');
      return;
    }
    const { names, kinds } = listing;
    const ignoreFiles = new Set(names.filter((name, index) => IGNORE_FILES.includes(name) && kinds[index] === EntryKind.File));
    const own = ignoreFiles.size ? await readIgnoreLevel(directory, relativeDir, ignoreFiles) : undefined;
    const active = own ? [...levels, own] : levels;
    for (const [index, name] of names.entries()) {
      if (this.failure) return;
      const kind = kinds[index];
      if (kind === EntryKind.Directory && isVersionControlFolder(name)) continue;
      const relativePath = relativeDir === '' ? name : childPath(relativeDir, name, '/');
      const reason = unsafePathReason(relativePath);
      if (reason) {
        this.skip(relativePath, `name cannot be synced safely: ${reason}`);
        continue;
      }
      if (kind === EntryKind.Vanished) {
        this.skip(relativePath, 'vanished while the folder was being listed');
      } else if (kind === EntryKind.Directory) {
        if (!isIgnored(active, relativePath, true) && !this.isExcludedDirectory(relativePath)) this.folders.push({ directory: childPath(directory, name, path.sep), relativeDir: relativePath, levels: active });
      } else if (kind === EntryKind.File) {
        if (this.isSelectedFile(relativePath) && !isIgnored(active, relativePath, false)) {
          await this.addFile({ relativePath, absolutePath: childPath(directory, name, path.sep), size: listing.sizes[index], mode: listing.modes[index], signature: listing.signatures[index] });
        }
      } else if (kind === EntryKind.Symlink) {
        if (this.isSelectedFile(relativePath) && !isIgnored(active, relativePath, false)) await this.addLink(childPath(directory, name, path.sep), relativePath, active);
      } else if (!isIgnored(active, relativePath, false)) {
        this.skip(relativePath, 'not a regular file (device, socket or fifo)');
      }
    }
  }

  private leaveOut(relativePath: string, target: string, why: SkippedLink['why']): void {
    if (this.policy === 'error') {
      const where = why === 'dangling' ? 'points to nothing' : `points outside the source folder (to ${target})`;
      throw nonRetryable(FailureType.SymlinkOutsideRoot, `symlink ${JSON.stringify(relativePath)} ${where}; --links skip leaves such links out, --links copy keeps them as links`, {
        path: relativePath,
        target,
      });
    }
    this.linksSkipped.push({ path: relativePath, target, why });
  }

  private async addLink(absolutePath: string, relativePath: string, levels: IgnoreLevel[]): Promise<void> {
    let text: string;
    try {
      text = await readlink(absolutePath);
    } catch (err) {
      if (errorCode(err) !== 'ENOENT' && errorCode(err) !== 'EINVAL') throw err;
      return this.skip(relativePath, 'vanished while the folder was being listed');
    }
    if (this.policy === 'copy') return this.takeLink(linkEntry(relativePath, text));
    let real: string;
    try {
      real = await realpath(absolutePath);
    } catch (err) {
      if (!DANGLING_CODES.has(errorCode(err))) throw err;
      return this.leaveOut(relativePath, text, 'dangling');
    }
    const inside = real === this.realRoot || real.startsWith(this.realRoot + path.sep);
    // Only `follow` goes on past here with an outside link: nothing outside is even stat'ed otherwise.
    if (!inside && this.policy !== 'follow') return this.leaveOut(relativePath, text, 'outside');
    let info: BigIntStats;
    try {
      // realpath resolved every link on the way, so lstat sees what the link leads to (and does not follow one swapped in since).
      info = await lstat(real, { bigint: true });
    } catch (err) {
      if (errorCode(err) !== 'ENOENT') throw err;
      return this.leaveOut(relativePath, text, 'dangling');
    }
    const kind = entryKind(info);
    if (kind === EntryKind.File) {
      return this.addFile({ relativePath, absolutePath: real, size: Number(info.size), mode: Number(info.mode & 0o777n), signature: signatureKey(info) });
    }
    if (kind !== EntryKind.Directory) return this.skip(relativePath, 'symlink to something that is not a regular file (device, socket or fifo)');
    if (isVersionControlFolder(path.basename(relativePath)) || isIgnored(levels, relativePath, true) || this.isExcludedDirectory(relativePath)) return;
    if (inside) return this.skip(relativePath, 'symlink to a directory inside the source: its target is synced under its own path');
    const earlier = this.followed.get(real);
    if (earlier !== undefined) return this.skip(relativePath, `symlink to a folder already synced under ${JSON.stringify(earlier)}`);
    this.followed.set(real, relativePath);
    this.folders.push({ directory: real, relativeDir: relativePath, levels });
  }

  /** A listed file: known by its signature, or queued for reading; waits while too many reads are under way. */
  private async addFile(file: ListedFile): Promise<void> {
    this.progress.filesTotal++;
    this.progress.bytesTotal += file.size;
    this.sizes.add(file.relativePath, file.size);
    const cached = this.known.get(file.relativePath, file.signature);
    if (cached) {
      this.takeFile(file, cached, file.mode);
      return;
    }
    if (isChunkedSize(file.size)) this.startRead(this.largeLimit(() => this.hashLarge(file)));
    else {
      this.batch.push(file);
      this.batchBytes += file.size;
      if (this.batch.length >= BATCH_FILES || this.batchBytes >= BATCH_BYTES) this.flushBatch();
    }
    while (this.reads.size >= MAX_READS_IN_FLIGHT) await Promise.race(this.reads);
  }

  private flushBatch(): void {
    if (this.batch.length === 0) return;
    const batch = this.batch;
    this.batch = [];
    this.batchBytes = 0;
    this.startRead(this.hashSmall(batch, 1));
  }

  private startRead(read: Promise<void>): void {
    const tracked = read.finally(() => this.reads.delete(tracked));
    // The first failure stops the walk; every read's failure is seen here, so none goes unhandled.
    tracked.catch((err: unknown) => {
      this.failure ??= err;
    });
    this.reads.add(tracked);
  }

  private takeLink(entry: ManifestEntry): void {
    this.entries.push(entry);
    this.progress.filesTotal++;
    this.progress.filesDone++;
    this.progress.bytesTotal += entry.size;
    this.progress.bytesDone += entry.size;
    this.onProgress(this.progress);
  }

  /** The file's entry; `digest` is one when it was remembered for this very path and mode. */
  private takeFile(file: ListedFile, digest: FileDigest | ManifestEntry, mode: number): ManifestEntry {
    const same = 'path' in digest && digest.path === file.relativePath && digest.mode === mode;
    const entry: ManifestEntry = same ? digest : digest.chunks ? { path: file.relativePath, size: digest.size, mode, sha256: digest.sha256, chunks: digest.chunks } : { path: file.relativePath, size: digest.size, mode, sha256: digest.sha256 };
    this.entries.push(entry);
    // The listing's size is in the totals; the size read is what the manifest says.
    this.progress.bytesTotal += digest.size - file.size;
    this.sizes.add(file.relativePath, digest.size - file.size, 0);
    this.progress.filesDone++;
    this.progress.bytesDone += digest.size;
    this.onProgress(this.progress);
    return entry;
  }

  /** Settles a read that missed: true to read again, false when the file is gone; throws when the snapshot cannot go on. */
  private missed(file: ListedFile, miss: ReadMiss, reads: number): boolean {
    if (miss.outcome === 'vanished') {
      this.skip(file.relativePath, 'vanished before it could be read');
      this.progress.filesTotal--;
      this.progress.bytesTotal -= file.size;
      this.sizes.add(file.relativePath, -file.size, -1);
      return false;
    }
    if (miss.outcome === 'replaced') {
      throw retryable(FailureType.FileChangedDuringRead, `${JSON.stringify(file.relativePath)} ${miss.detail} after the folder was listed: the next attempt lists it again`, {
        path: file.relativePath,
      });
    }
    if (reads >= MAX_READS_PER_FILE) {
      throw retryable(FailureType.FileChangedDuringRead, `${JSON.stringify(file.relativePath)} kept changing while it was read (${reads} reads)`, { path: file.relativePath });
    }
    return true;
  }

  private async hashSmall(batch: ListedFile[], reads: number): Promise<void> {
    const task: HashFilesTask = { paths: batch.map((file) => file.absolutePath), signatures: batch.map((file) => file.signature) };
    const hashed = (await threads().run(task, { name: 'hashFiles' })) as HashedFiles;
    const digests = Buffer.from(hashed.digests.buffer, hashed.digests.byteOffset, hashed.digests.byteLength);
    const again: ListedFile[] = [];
    for (const [index, file] of batch.entries()) {
      const outcome = hashed.outcomes[index];
      if (outcome === ReadOutcome.Hashed) {
        const entry = this.takeFile(file, { sha256: digests.toString('hex', index * 32, index * 32 + 32), size: hashed.sizes[index] }, hashed.modes[index]);
        this.known.remember(file.relativePath, hashed.rememberable[index] ? hashed.signatures[index] || file.signature : undefined, entry);
        continue;
      }
      const miss: ReadMiss =
        outcome === ReadOutcome.Replaced ? { outcome: 'replaced', detail: hashed.details[index] } : outcome === ReadOutcome.Changed ? { outcome: 'changed' } : { outcome: 'vanished' };
      if (this.missed(file, miss, reads)) again.push(file);
    }
    if (again.length) await this.hashSmall(again, reads + 1);
  }

  private async hashLarge(file: ListedFile): Promise<void> {
    for (let reads = 1; ; reads++) {
      let counted = 0;
      const hashed = await hashLargeFile(file, (n) => {
        counted += n;
        this.progress.bytesDone += n;
        this.onProgress(this.progress);
      });
      this.progress.bytesDone -= counted;
      if ('sha256' in hashed) {
        const entry = this.takeFile(file, { sha256: hashed.sha256, size: hashed.size, chunks: hashed.chunks }, hashed.mode);
        this.known.set(file.relativePath, hashed.signature, hashed.readStartedNs, entry);
        return;
      }
      if (!this.missed(file, hashed, reads)) return;
    }
  }
}

/** Walks, applies the link policy and hashes a local folder; owns the hash caches that make a re-snapshot cost a stat per file. */
export class LocalSource {
  /**
   * Per worker process, a cache per source folder, the most recently
   * snapshotted last: a no-change snapshot costs a stat per file (DESIGN
   * principle 8). Together they stay within one cache's bound.
   */
  private readonly known = new Map<string, KnownEntries>();

  private knownIn(sourcePath: string): KnownEntries {
    const cache = this.known.get(sourcePath) ?? new HashCache<ManifestEntry>();
    this.known.delete(sourcePath);
    this.known.set(sourcePath, cache);
    let remembered = [...this.known.values()].reduce((sum, each) => sum + each.size, 0);
    for (const [folder, each] of this.known) {
      if (remembered <= DEFAULT_MAX_ENTRIES || folder === sourcePath) break;
      this.known.delete(folder);
      remembered -= each.size;
    }
    return cache;
  }

  async snapshot(input: SnapshotSourceInput, onProgress: (progress: TransferProgress) => void = () => undefined): Promise<LocalSnapshot> {
    const sourcePath = path.resolve(input.path);
    const rootInfo = await stat(sourcePath).catch(() => undefined);
    if (!rootInfo?.isDirectory()) {
      throw nonRetryable(FailureType.SourceNotFound, `source folder ${sourcePath} does not exist or is not a directory`, { path: sourcePath });
    }
    const selection: SelectionRules = {
      include: input.include?.length ? new Patterns(input.include) : undefined,
      exclude: input.exclude?.length ? new Patterns(input.exclude) : undefined,
    };
    const run = new SnapshotRun(sourcePath, selection, input.links ?? DEFAULT_LINK_POLICY, this.knownIn(sourcePath), onProgress);
    await run.run();
    if (input.requireFiles && run.entries.length === 0) {
      throw nonRetryable(FailureType.EmptyProject, `no files to sync in ${sourcePath} after ignore rules${selection.include ? ' and include patterns' : ''}`, {
        path: sourcePath,
        include: input.include ?? [],
        exclude: input.exclude ?? [],
        skipped: run.skipped.sort(byPath).slice(0, 20),
      });
    }
    const linksSkipped = run.linksSkipped.sort(byPath);
    const report = run.sizes.report(input.sizeWarningBytes ?? DEFAULT_SIZE_WARNING_BYTES);
    return {
      sourcePath,
      manifest: createManifest(run.entries),
      skipped: run.skipped.sort(byPath),
      linksSkipped: { total: linksSkipped.length, first: linksSkipped.slice(0, SKIPPED_LINKS_LISTED) },
      ...(report ? { sizeReport: report } : {}),
    };
  }
}

export function createLocalSourceActivities(deps: { blobs: ContentStore; source?: LocalSource }) {
  const source = deps.source ?? new LocalSource();
  return {
    /** Walks the source folder, hashes every file and stores the manifest; returns a reference to it. */
    async snapshotSource(input: SnapshotSourceInput): Promise<SnapshotSourceResult> {
      const context = Context.current();
      const snapshot = await source.snapshot(input, throttledHeartbeat(context));
      const { manifest, sourcePath, skipped, linksSkipped, sizeReport: report } = snapshot;
      const ref = await deps.blobs.putManifest(manifest);
      context.heartbeat({ step: 'snapshotSource', filesDone: ref.filesTotal, filesTotal: ref.filesTotal, bytesDone: ref.bytesTotal, bytesTotal: ref.bytesTotal } satisfies TransferProgress);
      if (linksSkipped.total > 0) {
        context.log.warn('symlinks left out by the link policy', { policy: input.links ?? DEFAULT_LINK_POLICY, total: linksSkipped.total, first: linksSkipped.first.slice(0, 5) });
      }
      if (report) context.log.warn('snapshot size explained', { bytesTotal: report.bytesTotal, large: report.large, folders: report.folders.map((f) => `${f.path} (${f.bytes} bytes)`) });
      context.log.info('source snapshotted', {
        sourcePath,
        manifestDigest: ref.manifestDigest,
        filesTotal: ref.filesTotal,
        bytesTotal: ref.bytesTotal,
        skipped: skipped.length,
      });
      return {
        ...ref,
        sourcePath,
        skipped: skipped.slice(0, SKIPPED_LISTED),
        skippedTotal: skipped.length,
        linksSkipped,
        ...(report ? { sizeReport: report } : {}),
      };
    },
  };
}
