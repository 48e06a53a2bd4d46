/**
 * Folders under the agent's root, opened one component at a time without
 * following links and held open while a request uses them, so a name is
 * always resolved inside the very folder that was checked. Node has no
 * openat(), but on Linux `/proc/self/fd/<fd>/<name>` resolves `<name>` in the
 * folder the descriptor holds, whatever was renamed or swapped on the path
 * since: a folder replaced by a symlink in the middle of a landing is never
 * followed, and a temp file, its final name and its cleanup are always in
 * one folder.
 *
 * Where /proc is missing (macOS), each path is checked component by
 * component before it is used (ConfinedDirectories), which a process racing
 * the agent can still defeat between the check and the use.
 */
import { existsSync } from 'node:fs';
import { constants } from 'node:fs';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { FailureType } from '../core/errors';
import { ConfinedDirectories, lstatOrUndefined, parentOf } from './confine';
import { AgentFailure, errorCode } from './failure';

/** Who owns what the agent creates under its root when code runs as another user. */
export interface Owner {
  uid: number;
  gid: number;
}

export interface HeldFolder {
  /** A folder path that names exactly the held folder: names inside it are `${path}/${name}`. */
  path: string;
  /** Lets the folder be closed; use nothing under `path` afterwards. */
  release(): void;
}

const OPEN_FOLDER = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
/** Folders kept open after their last use in one request, so files landing side by side do not walk the path again. */
const IDLE_FOLDERS_KEPT = 64;

interface Entry {
  handle: Promise<FileHandle | undefined>;
  users: number;
}

export function fdFoldersAvailable(): boolean {
  return existsSync('/proc/self/fd');
}

/** Folders under one root for one request; `close()` when the request is done. */
export class HeldFolders {
  private readonly entries = new Map<string, Entry>();
  /** Keys of idle entries, oldest first. */
  private readonly idle: string[] = [];
  private readonly fallback?: ConfinedDirectories;

  constructor(
    private readonly root: string,
    private readonly options: {
      /** Create missing folders (given to `owner`); otherwise a missing folder is answered with undefined. */
      create: boolean;
      owner?: Owner;
    },
  ) {
    if (!fdFoldersAvailable()) this.fallback = new ConfinedDirectories(root);
  }

  /** `<root>/<dir>` held open; UnsafePath when a component is a symlink or not a folder; undefined when missing and not created. */
  async hold(dir: string): Promise<HeldFolder | undefined> {
    if (this.fallback) return this.holdChecked(this.fallback, dir);
    let entry = this.entries.get(dir);
    if (entry) {
      if (entry.users++ === 0) this.idle.splice(this.idle.indexOf(dir), 1);
    } else {
      entry = { handle: this.open(dir), users: 1 };
      this.entries.set(dir, entry);
    }
    const handle = await entry.handle.catch((err: unknown) => {
      this.forget(dir, entry);
      throw err;
    });
    if (!handle) {
      this.forget(dir, entry);
      return undefined;
    }
    let released = false;
    return {
      path: `/proc/self/fd/${handle.fd}`,
      release: () => {
        if (released) return;
        released = true;
        this.release(dir, entry);
      },
    };
  }

  /** Closes every folder held; folders still in use are closed too. */
  async close(): Promise<void> {
    const handles = [...this.entries.values()].map((entry) => entry.handle);
    this.entries.clear();
    this.idle.length = 0;
    await Promise.all(handles.map((handle) => handle.then((h) => h?.close(), () => undefined)));
  }

  private forget(dir: string, entry: Entry): void {
    if (this.entries.get(dir) === entry) this.entries.delete(dir);
  }

  private release(dir: string, entry: Entry): void {
    if (--entry.users > 0 || this.entries.get(dir) !== entry) return;
    this.idle.push(dir);
    while (this.idle.length > IDLE_FOLDERS_KEPT) {
      const oldest = this.idle.shift() as string;
      const closing = this.entries.get(oldest);
      this.entries.delete(oldest);
      void closing?.handle.then((h) => h?.close(), () => undefined);
    }
  }

  private async open(dir: string): Promise<FileHandle | undefined> {
    if (dir === '') return open(this.root, OPEN_FOLDER);
    const parent = await this.hold(parentOf(dir));
    if (!parent) return undefined;
    try {
      const at = `${parent.path}/${dir.slice(dir.lastIndexOf('/') + 1)}`;
      const existing = await this.openFolder(at, dir);
      if (existing || !this.options.create) return existing;
      try {
        await mkdir(at);
      } catch (err) {
        // Made meanwhile by another request; the open below checks what is there.
        if (errorCode(err) !== 'EEXIST') throw err;
      }
      const created = await this.openFolder(at, dir);
      if (!created) throw new AgentFailure(FailureType.TargetUnavailable, `${JSON.stringify(dir)} vanished as it was created`, { path: dir });
      if (this.options.owner) await created.chown(this.options.owner.uid, this.options.owner.gid);
      return created;
    } finally {
      parent.release();
    }
  }

  /** The folder at `at`, never following a link; undefined when nothing is there. */
  private async openFolder(at: string, dir: string): Promise<FileHandle | undefined> {
    try {
      return await open(at, OPEN_FOLDER);
    } catch (err) {
      const code = errorCode(err);
      if (code === 'ENOENT') return undefined;
      if (code !== 'ELOOP' && code !== 'ENOTDIR') throw err;
      const stats = await lstatOrUndefined(at);
      if (stats?.isSymbolicLink()) throw new AgentFailure(FailureType.UnsafePath, `${JSON.stringify(dir)} is a symlink; the agent does not follow symlinks`, { path: dir });
      throw new AgentFailure(FailureType.UnsafePath, `${JSON.stringify(dir)} exists and is not a directory`, { path: dir });
    }
  }

  private async holdChecked(directories: ConfinedDirectories, dir: string): Promise<HeldFolder | undefined> {
    if (this.options.create) return { path: await directories.ensure(dir), release: () => undefined };
    if ((await directories.inspect(dir)) === 'missing') return undefined;
    return { path: directories.absolute(dir), release: () => undefined };
  }
}
