/**
 * `ferry …` as a user runs it (`node bin/ferry.js`), against a stack of its
 * own that `ferry up` starts on free loopback ports: for the tests of the
 * CLI and of the embedded stack.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../client/ports';
import { repoRoot } from '../../client/tools';

const run = promisify(execFile);

export const FERRY_BIN = path.join(repoRoot(), 'bin', 'ferry.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface StackPorts {
  temporal: number;
  ui: number;
  s3: number;
  agent: number;
}

/** Runs `ferry args` to its end; a non-zero exit is a result to assert on, not a rejection. */
export async function runFerry(args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<CliResult> {
  try {
    const { stdout, stderr } = await run(process.execPath, [FERRY_BIN, ...args], { cwd: options.cwd, env: options.env, timeout: options.timeoutMs, maxBuffer: 16 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const failed = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

/** Four free loopback ports for a stack's services. */
export async function freeStackPorts(): Promise<StackPorts> {
  return { temporal: await freePort(), ui: await freePort(), s3: await freePort(), agent: await freePort() };
}

/** The `ferry up` flags that put a stack on those ports. */
export function stackPortArgs(ports: StackPorts): string[] {
  return ['--temporal-port', String(ports.temporal), '--ui-port', String(ports.ui), '--s3-port', String(ports.s3), '--agent-port', String(ports.agent)];
}
