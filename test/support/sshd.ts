/**
 * A real OpenSSH server (Debian openssh-server) for the ssh target's tests:
 * on a free 127.0.0.1 port, with a host key and a user key generated for the
 * test, a known_hosts file holding exactly that host key, and a config that
 * allows nothing but that key. Run as the test's own process and stopped by
 * the test. `scripts/install-sshd.sh` (run by `npm test`) installs it.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../client/ports';
import { spawnManaged } from '../../client/managedProcess';

const run = promisify(execFile);
export const SSHD = '/usr/sbin/sshd';

export interface RunningSshd {
  host: string;
  port: number;
  /** The login the user key is authorised for: this process's user. */
  user: string;
  identityFile: string;
  knownHostsFile: string;
  /** The known_hosts line of this server's host key. */
  knownHostsLine: string;
  logFile: string;
  /** ssh settings for a worker reaching this server. */
  settings: Record<string, string>;
  stop(): Promise<void>;
}

/** Why sshd cannot run here, or undefined when it can. */
export function sshdMissing(): string | undefined {
  if (!existsSync(SSHD)) return `${SSHD} is not installed (Debian package openssh-server; scripts/install-sshd.sh installs it)`;
  if (!existsSync('/usr/bin/ssh') && !existsSync('/bin/ssh')) return 'the OpenSSH client (ssh) is not installed';
  return undefined;
}

async function keypair(file: string): Promise<string> {
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'ferry-test', '-f', file]);
  return (await readFile(`${file}.pub`, 'utf8')).trim();
}

/** Waits until the server sends its SSH banner. */
async function banner(port: number, deadline: number): Promise<void> {
  for (;;) {
    const answered = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.setTimeout(1_000);
      socket.once('data', (data) => {
        socket.destroy();
        resolve(data.toString().startsWith('SSH-2.0'));
      });
      socket.once('error', () => resolve(false));
      socket.once('timeout', () => {
        socket.destroy();
        resolve(false);
      });
    });
    if (answered) return;
    if (Date.now() > deadline) throw new Error(`sshd did not answer on port ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export async function startSshd(dir: string): Promise<RunningSshd> {
  const missing = sshdMissing();
  if (missing) throw new Error(missing);
  await mkdir(dir, { recursive: true });
  // sshd checks its privilege-separation folder exists, even when it runs unprivileged.
  if (!existsSync('/run/sshd') && process.getuid?.() === 0) await mkdir('/run/sshd', { mode: 0o755 });
  const hostKey = path.join(dir, 'host_ed25519');
  const userKey = path.join(dir, 'user_ed25519');
  const hostPublic = await keypair(hostKey);
  const userPublic = await keypair(userKey);
  const authorizedKeys = path.join(dir, 'authorized_keys');
  await writeFile(authorizedKeys, `${userPublic}\n`, { mode: 0o600 });
  const port = await freePort();
  const user = os.userInfo().username;
  const config = path.join(dir, 'sshd_config');
  await writeFile(
    config,
    [
      'ListenAddress 127.0.0.1',
      `Port ${port}`,
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'UsePAM no',
      // The keys live under the test's temp folder, which is world-writable above.
      'StrictModes no',
      `AllowUsers ${user}`,
      'PermitRootLogin prohibit-password',
      'MaxStartups 100',
      'MaxSessions 100',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  );
  await chmod(config, 0o600);
  const knownHostsFile = path.join(dir, 'known_hosts');
  const knownHostsLine = `[127.0.0.1]:${port} ${hostPublic.split(' ').slice(0, 2).join(' ')}`;
  await writeFile(knownHostsFile, `${knownHostsLine}\n`, { mode: 0o600 });
  const logFile = path.join(dir, 'sshd.log');
  const server = await spawnManaged({ name: 'sshd', binary: SSHD, args: ['-D', '-e', '-f', config], env: { PATH: process.env.PATH }, logFile, detached: false });
  try {
    await banner(port, Date.now() + 20_000);
  } catch (err) {
    await server.stop();
    throw err;
  }
  return {
    host: '127.0.0.1',
    port,
    user,
    identityFile: userKey,
    knownHostsFile,
    knownHostsLine,
    logFile,
    settings: { FERRY_SSH_IDENTITY_FILE: userKey, FERRY_SSH_KNOWN_HOSTS: knownHostsFile },
    stop: () => server.stop(),
  };
}
