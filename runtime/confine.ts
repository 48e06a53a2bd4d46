/**
 * Keeps every file operation inside the agent's root. Request paths are
 * already safe strings (core/paths), but the tree under the root is written
 * by user code too: a directory there may have been replaced by a symlink
 * (`data -> /etc`) or a file. So directories are walked one component at a
 * time with lstat, and a symlink or non-directory on the way is refused
 * rather than followed.
 *
 * This is a check, not a sandbox: Node has no openat(), so a process racing
 * the agent could still swap a component between the check and the write.
 */
import { lstat, mkdir } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import { unsafePathReason } from '../core/paths';
import { FailureType } from '../core/errors';
import { AgentFailure, errorCode } from './failure';

/** The agent's own state (exec logs and results), `<root>/.ferry-agent/`. */
export const STATE_DIR = '.ferry-agent';

/** Why a caller-supplied directory (land/files `dir`, exec `cwd`) cannot be used, or undefined. */
export function requestDirProblem(dir: unknown): string | undefined {
  const reason = unsafePathReason(dir);
  if (reason !== undefined) return reason;
  if ((dir as string).split('/')[0] === STATE_DIR) return `${STATE_DIR} holds the agent's own state`;
  return undefined;
}

export function parentOf(relative: string): string {
  const slash = relative.lastIndexOf('/');
  return slash < 0 ? '' : relative.slice(0, slash);
}

export async function lstatOrUndefined(absolute: string): Promise<Stats | undefined> {
  try {
    return await lstat(absolute);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

function assertPlainDirectory(relative: string, stats: Stats): void {
  if (stats.isSymbolicLink()) throw new AgentFailure(FailureType.UnsafePath, `${JSON.stringify(relative)} is a symlink; the agent does not follow symlinks`, { path: relative });
  if (!stats.isDirectory()) throw new AgentFailure(FailureType.UnsafePath, `${JSON.stringify(relative)} exists and is not a directory`, { path: relative });
}

type DirectoryState = 'directory' | 'missing';

/**
 * Directories under one root, checked component by component. Results are
 * remembered for the lifetime of the instance (one request), so a request
 * with many files in few directories costs few lstat calls.
 */
export class ConfinedDirectories {
  private readonly inspected = new Map<string, Promise<DirectoryState>>();
  private readonly ensured = new Map<string, Promise<string>>();

  constructor(readonly root: string) {}

  absolute(relative: string): string {
    return relative === '' ? this.root : join(this.root, relative);
  }

  /** Read-only: whether `<root>/<dir>` exists. Throws UnsafePath when an existing component is a symlink or not a directory. */
  inspect(dir: string): Promise<DirectoryState> {
    let state = this.inspected.get(dir);
    if (!state) {
      state = this.inspectUncached(dir);
      this.inspected.set(dir, state);
    }
    return state;
  }

  /** Creates missing components one at a time, checking each existing one; returns the absolute path. */
  ensure(dir: string): Promise<string> {
    let absolute = this.ensured.get(dir);
    if (!absolute) {
      absolute = this.ensureUncached(dir);
      this.ensured.set(dir, absolute);
    }
    return absolute;
  }

  private async inspectUncached(dir: string): Promise<DirectoryState> {
    if (dir === '') return 'directory';
    if ((await this.inspect(parentOf(dir))) === 'missing') return 'missing';
    const stats = await lstatOrUndefined(this.absolute(dir));
    if (!stats) return 'missing';
    assertPlainDirectory(dir, stats);
    return 'directory';
  }

  private async ensureUncached(dir: string): Promise<string> {
    if (dir === '') return this.root;
    await this.ensure(parentOf(dir));
    const absolute = this.absolute(dir);
    let stats = await lstatOrUndefined(absolute);
    if (!stats) {
      try {
        await mkdir(absolute);
      } catch (err) {
        // Another request created it meanwhile; the lstat below still checks what is there.
        if (errorCode(err) !== 'EEXIST') throw err;
      }
      stats = await lstat(absolute);
    }
    assertPlainDirectory(dir, stats);
    return absolute;
  }
}
