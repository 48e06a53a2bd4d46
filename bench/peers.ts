/**
 * Finding the benchmark's performance peers before anything runs: rclone
 * (installed by `npm run bench`) and s5cmd (built from its Go module by
 * scripts/install-tools.sh on first use, reused after). Outside CI a
 * missing peer is reported and its rows are left out (targets judged
 * against it count as missed); under CI=true it stops the run.
 */
import path from 'node:path';
import { resolveTool } from '../client/tools';
import { ProcessError, runProcess, type PeerName } from './processes';
import type { MissingPeer } from './section';

/** A Go build of s5cmd takes about a minute on two cores; this bounds a stuck one. */
const S5CMD_BUILD_TIMEOUT_MS = 15 * 60_000;

export interface FoundPeers {
  binaries: { name: PeerName; binary: string }[];
  missing: MissingPeer[];
}

const isCi = () => ['true', '1'].includes((process.env.CI ?? '').toLowerCase());

/** s5cmd from .tools/bin, built there first when missing; install-tools.sh says why when it cannot be. */
async function findS5cmd(root: string, progress: (text: string) => void): Promise<string> {
  progress('s5cmd: scripts/install-tools.sh --only s5cmd (builds it from its Go module once, when go is present)');
  try {
    const run = await runProcess('bash', [path.join(root, 'scripts', 'install-tools.sh'), '--only', 's5cmd'], process.env, S5CMD_BUILD_TIMEOUT_MS);
    progress(run.stdout.trim());
  } catch (err) {
    if (!(err instanceof ProcessError)) throw err;
    // install-tools.sh's own words (go missing, download or build failed), without its closing summary line.
    const said = err.stderr
      .split('\n')
      .filter((line) => line.startsWith('install-tools: ') && !line.startsWith('install-tools: missing:') && !line.startsWith('install-tools: building'))
      .map((line) => line.slice('install-tools: '.length));
    throw new Error(said.join(' ') || err.message, { cause: err });
  }
  return path.join(root, '.tools', 'bin', 's5cmd');
}

export async function findPeers(root: string, progress: (text: string) => void): Promise<FoundPeers> {
  const found: FoundPeers = { binaries: [], missing: [] };
  const find = async (name: PeerName, locate: () => string | Promise<string>) => {
    try {
      found.binaries.push({ name, binary: await locate() });
    } catch (err) {
      found.missing.push({ name, reason: err instanceof Error ? err.message : String(err) });
    }
  };
  await find('rclone', () => resolveTool('rclone', root));
  await find('s5cmd', () => findS5cmd(root, progress));
  if (found.missing.length && isCi()) {
    throw new Error(`CI is set and a benchmark peer is missing: ${found.missing.map((m) => `${m.name}: ${m.reason}`).join('; ')}`);
  }
  for (const missing of found.missing) progress(`PEER MISSING: ${missing.name} (${missing.reason}); its rows are left out and targets judged against it are missed`);
  return found;
}
