/**
 * The `ssh` target: sessions in a folder of any host reached over SSH, with
 * the same POSIX scripts as `shell` and `ssm` (the host needs sh, GNU
 * coreutils/findutils, tar, curl and setsid; nothing of ferry's). It uses
 * the system OpenSSH client: its known_hosts handling is the reference one,
 * and one master connection per host is reused across scripts
 * (ControlMaster), so a script costs a round trip, not a handshake.
 *
 * The host key is always checked against the configured known_hosts file
 * (StrictHostKeyChecking=yes; an unknown or changed key is refused, never
 * learned), and only the configured key is offered. Script values travel
 * as quoted `export` lines on the script's stdin, never on a command line.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../core/config';
import { unsafePathReason } from '../../core/paths';
import { withExportedEnv } from '../../core/shellScripts';
import { absoluteRootProblem, type TargetRef } from '../../core/target';
import { TargetOptionsError, type TargetDriver } from './driver';
import { TargetCommandError, childOutcome, scriptBackend, type CommandChannel, type ScriptOutcome, type ScriptRun, type ScriptRunHooks } from './scriptReach';

export interface SshTargetOptions extends TargetRef {
  kind: 'ssh';
  host: string;
  /** Default: the worker's own user name. */
  user?: string;
  port: number;
  /** Folder holding the host's sessions: absolute, or relative to the login's home (default `ferry`). */
  root: string;
}

export interface SshSettings {
  /** Private key file offered to every host. */
  identityFile: string;
  /** known_hosts file every host key is checked against. */
  knownHostsFile: string;
}

const DEFAULT_ROOT = 'ferry';
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*|\[[0-9A-Fa-f:.]+\])$/;
const USER = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;
const SPEC = /^(?:([^@]+)@)?(\[[^\]]+\]|[^:/[\]]+)(?::(\d+))?(\/.*)?$/;
/** What ssh's exit status 255 means, from its message: a refusal no retry fixes, or a host that may answer later. */
function connectionFailure(stderr: string, description: string, knownHostsFile: string): TargetCommandError {
  const line = stderr.trim().split('\n').filter(Boolean).at(-1) ?? 'no message';
  if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No .* host key is known/i.test(stderr)) {
    return new TargetCommandError('unauthorized', `${description}: the host's key is not the one ${knownHostsFile} holds for it, so ferry will not talk to it (${line})`, { knownHostsFile });
  }
  if (/Permission denied|Too many authentication failures/i.test(stderr)) return new TargetCommandError('unauthorized', `${description}: the host refused the configured key (${line})`);
  return new TargetCommandError('undeliverable', `${description} is unreachable: ${line}`);
}

export class SshChannel implements CommandChannel {
  readonly description: string;

  constructor(
    private readonly target: SshTargetOptions,
    private readonly settings: SshSettings,
    /** Folder for master-connection sockets, private to this worker. */
    private readonly controlDir: string,
  ) {
    this.description = describe(target);
  }

  async run(run: ScriptRun, hooks: ScriptRunHooks = {}): Promise<ScriptOutcome> {
    const { target, settings } = this;
    const args = [
      // Only what is set here applies: no user config can turn host key checking off.
      '-F', '/dev/null',
      '-o', 'BatchMode=yes',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', `UserKnownHostsFile=${settings.knownHostsFile}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'IdentitiesOnly=yes',
      '-i', settings.identityFile,
      '-o', 'ControlMaster=auto',
      '-o', `ControlPath=${path.join(this.controlDir, '%C')}`,
      '-o', 'ControlPersist=60',
      '-o', 'ConnectTimeout=20',
      '-o', 'ServerAliveInterval=15',
      '-o', 'ServerAliveCountMax=3',
      '-p', String(target.port),
      ...(target.user ? ['-l', target.user] : []),
      '--', target.host.replace(/^\[(.*)\]$/, '$1'),
      'sh', '-s', '--', `ferry-${run.purpose}`,
    ];
    const child = spawn('ssh', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    // The host closing its end early is reported through the exit status.
    child.stdin.on('error', () => undefined);
    child.stdin.end(withExportedEnv(run.script, run.env));
    const outcome = await childOutcome(child, run, hooks, this.description, (err) => new TargetCommandError('undeliverable', `cannot run ssh for ${this.description}: ${err.message}`));
    // 255 is ssh's own failure; ferry's scripts end 0 or 3.
    if (outcome.exitCode === 255) throw connectionFailure(outcome.stderr, this.description, settings.knownHostsFile);
    return outcome;
  }
}

function describe(target: SshTargetOptions): string {
  return `ssh:${target.user ? `${target.user}@` : ''}${target.host}:${target.port}${target.root.startsWith('/') ? target.root : `/~/${target.root}`}`;
}

function checked(raw: TargetRef): SshTargetOptions {
  const problems: string[] = [];
  const { host, user } = raw;
  const port = raw.port ?? 22;
  const root = raw.root ?? DEFAULT_ROOT;
  if (typeof host !== 'string' || !HOST.test(host)) problems.push(`ssh target host ${JSON.stringify(host)} is not a host name or an [IPv6] address`);
  if (user !== undefined && (typeof user !== 'string' || !USER.test(user))) problems.push(`ssh target user ${JSON.stringify(user)} is not a user name`);
  if (!Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) problems.push(`ssh target port ${JSON.stringify(port)} is not a port number`);
  const rootProblem = typeof root !== 'string' ? 'must be a path' : root.startsWith('/') ? absoluteRootProblem(root) : unsafePathReason(root.replace(/\/$/, ''));
  if (rootProblem) problems.push(`ssh target root ${JSON.stringify(root)} ${rootProblem}`);
  if (problems.length) throw new TargetOptionsError(problems);
  return { kind: 'ssh', host: host as string, ...(user ? { user: user as string } : {}), port: port as number, root: (root as string).replace(/(.)\/$/, '$1') };
}

export const sshTarget: TargetDriver<SshTargetOptions> = {
  kind: 'ssh',
  summary: 'a folder on any host reached over SSH (system OpenSSH, host key checked against a known_hosts file), with POSIX scripts; files by presigned URL',
  spec: 'ssh:[user@]host[:port][/<root>]',
  settings: [
    { name: 'FERRY_SSH_IDENTITY_FILE', description: 'private key file offered to ssh hosts (required for the ssh target; default none: the ssh target is off)' },
    { name: 'FERRY_SSH_KNOWN_HOSTS', description: 'known_hosts file every ssh host key is checked against; an unknown or changed key is refused (required for the ssh target)' },
  ],
  lifetime: 'persistent',
  parseSpec: (text) => {
    const match = SPEC.exec(text);
    if (!match) throw new TargetOptionsError([`"ssh:${text}" is not ssh:[user@]host[:port][/<root>]`]);
    const [, user, host, port, root] = match;
    return checked({ kind: 'ssh', host, ...(user !== undefined ? { user } : {}), ...(port !== undefined ? { port: Number(port) } : {}), ...(root !== undefined ? { root } : {}) });
  },
  normalize: checked,
  configure: ({ blobs, settings }) => {
    const identityFile = settings('FERRY_SSH_IDENTITY_FILE');
    const knownHostsFile = settings('FERRY_SSH_KNOWN_HOSTS');
    if (identityFile === undefined && knownHostsFile === undefined) return 'set FERRY_SSH_IDENTITY_FILE and FERRY_SSH_KNOWN_HOSTS on the worker';
    for (const [name, file] of [['FERRY_SSH_IDENTITY_FILE', identityFile], ['FERRY_SSH_KNOWN_HOSTS', knownHostsFile]] as const) {
      if (file === undefined) throw new ConfigError(name, 'required with the other FERRY_SSH_* setting');
      if (!path.isAbsolute(file) || !existsSync(file)) throw new ConfigError(name, `expected an absolute path to an existing file, got ${JSON.stringify(file)}`);
    }
    let controlDir: string | undefined;
    // Made on first use, so a worker that never reaches an ssh host leaves nothing behind.
    const controlDirOf = () => (controlDir ??= mkdtempSync(path.join(os.tmpdir(), 'ferry-ssh-')));
    return scriptBackend<SshTargetOptions>(blobs, (target) => ({
      channel: new SshChannel(target, { identityFile: identityFile!, knownHostsFile: knownHostsFile! }, controlDirOf()),
      root: target.root,
    }));
  },
};
