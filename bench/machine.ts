/** The machine and tool versions a run measured on, for results.json and the report footer. */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { resolveTool } from '../client/tools';
import { toolVersion } from './processes';

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  totalMemoryGiB: number;
  platform: string;
  node: string;
  ferry: string;
  tools: { rclone: string; s5cmd: string; weed: string; temporal: string; sha256sum: string };
}

export async function machineInfo(root: string): Promise<MachineInfo> {
  const cpus = os.cpus();
  const version = async (tool: 'rclone' | 'weed' | 'temporal', args: string[]) => {
    try {
      return await toolVersion(resolveTool(tool, root), args);
    } catch {
      return 'not installed';
    }
  };
  const s5cmd = path.join(root, '.tools', 'bin', 's5cmd');
  const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { version: string };
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    totalMemoryGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    ferry: pkg.version,
    tools: {
      rclone: await version('rclone', ['version']),
      // Not one of ferry's tools: the benchmark builds it into .tools/bin (bench/peers.ts).
      s5cmd: existsSync(s5cmd) ? `s5cmd ${await toolVersion(s5cmd, ['version'])}` : 'not installed',
      weed: await version('weed', ['version']),
      temporal: await version('temporal', ['--version']),
      sha256sum: await toolVersion('sha256sum', ['--version']),
    },
  };
}

export function machineSummary(machine: MachineInfo): string {
  return (
    `machine: ${machine.cpus} x ${machine.cpuModel}, ${machine.totalMemoryGiB} GiB RAM, ${machine.platform}, node ${machine.node}\n` +
    `tools: ${machine.tools.rclone}; ${machine.tools.s5cmd}; weed ${machine.tools.weed}; ${machine.tools.temporal}; ${machine.tools.sha256sum}; ferry ${machine.ferry}\n`
  );
}
