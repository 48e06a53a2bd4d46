/**
 * The `shell` target: sessions in a folder of the worker's own machine,
 * reached by running ferry's POSIX scripts with bash there. A real target
 * (a single machine, a mounted volume) and the one the scripts are tested
 * on: `ssh` and `ssm` send the very same text elsewhere.
 */
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { absoluteRootProblem, type TargetRef } from '../../core/target';
import { TargetOptionsError, type TargetDriver } from './driver';
import { childOutcome, scriptBackend, type CommandChannel, type ScriptOutcome, type ScriptRun, type ScriptRunHooks } from './scriptReach';

export interface ShellTargetOptions extends TargetRef {
  kind: 'shell';
  /** Absolute folder holding the target's sessions. */
  root: string;
}

/** Variables of the worker's environment a script may see; S3 and AWS secrets are not among them. */
const PASSED_ENV = ['PATH', 'HOME', 'USER', 'LOGNAME', 'SHELL', 'LANG', 'LC_ALL', 'TMPDIR', 'TZ'];
/** Runs scripts with a local shell (bash; tests use dash too), in the target's root. */
export class ShellChannel implements CommandChannel {
  readonly description: string;

  constructor(
    private readonly root: string,
    private readonly shell = 'bash',
  ) {
    this.description = `shell:${root}`;
  }

  async run(run: ScriptRun, hooks: ScriptRunHooks = {}): Promise<ScriptOutcome> {
    await mkdir(this.root, { recursive: true });
    const env: NodeJS.ProcessEnv = {};
    for (const name of PASSED_ENV) if (process.env[name] !== undefined) env[name] = process.env[name];
    Object.assign(env, run.env);
    const child = spawn(this.shell, ['-c', run.script, `ferry-${run.purpose}`], { cwd: this.root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    return childOutcome(child, run, hooks, this.description);
  }
}

function checked(root: unknown): ShellTargetOptions {
  const problem = absoluteRootProblem(root);
  if (problem) throw new TargetOptionsError([`shell target root ${JSON.stringify(root)} ${problem}`]);
  return { kind: 'shell', root: (root as string).replace(/\/$/, '') };
}

export const shellTarget: TargetDriver<ShellTargetOptions> = {
  kind: 'shell',
  summary: "a folder on the worker's machine, reached with POSIX scripts run by bash (needs curl, GNU coreutils/findutils, tar, setsid)",
  spec: 'shell:<root>',
  settings: [],
  lifetime: 'persistent',
  parseSpec: (text, cwd) => {
    if (text === '') throw new TargetOptionsError(['shell needs a folder: shell:<root>']);
    return checked(path.resolve(cwd, text));
  },
  normalize: (raw) => checked(raw.root),
  configure: ({ blobs }) => scriptBackend<ShellTargetOptions>(blobs, (target) => ({ channel: new ShellChannel(target.root), root: target.root })),
};
