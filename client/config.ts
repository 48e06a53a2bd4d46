/**
 * Where the CLI finds its settings: FERRY_* environment variables first,
 * then the state file of a running embedded stack (`.ferry/stack.json`,
 * found in the working directory or any parent, as git finds `.git`).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { resolveConfig, stackHomeSetting, type FerryConfig, type StackSettings } from '../core/config';

export const STACK_DIR_NAME = '.ferry';
export const STACK_FILE_NAME = 'stack.json';

/** What `ferry up` records about the stack it started. */
export interface StackState {
  startedAt: string;
  /** The settings clients need to use this stack (FERRY_* names). */
  settings: StackSettings;
  services: { name: string; pid: number; logFile: string; url?: string }[];
  webUiUrl?: string;
  detached: boolean;
}

/** The stack folder to use: FERRY_HOME, else the nearest `.ferry` with a stack file, else `./.ferry`. */
export function stackDir(cwd = process.cwd()): string {
  const home = stackHomeSetting(process.env);
  if (home !== undefined) return path.resolve(home);
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, STACK_DIR_NAME, STACK_FILE_NAME))) return path.join(dir, STACK_DIR_NAME);
    if (path.dirname(dir) === dir) return path.resolve(cwd, STACK_DIR_NAME);
  }
}

export function readStackState(dir = stackDir()): StackState | undefined {
  const file = path.join(dir, STACK_FILE_NAME);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as StackState;
}

export function loadConfig(env: Record<string, string | undefined> = process.env): FerryConfig {
  return resolveConfig(env, readStackState()?.settings ?? {});
}
