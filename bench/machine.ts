/** The machine and tool versions a run measured on, for results.json and the report footer. */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { resolveTool } from '../client/services';
import { toolVersion } from './processes';

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  totalMemoryGiB: number;
  platform: string;
  node: string;
  ferry: string;
  tools: { rclone: string; weed: string; temporal: string; sha256sum: string };
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
      weed: await version('weed', ['version']),
      temporal: await version('temporal', ['--version']),
      sha256sum: await toolVersion('sha256sum', ['--version']),
    },
  };
}

export function machineSummary(machine: MachineInfo): string {
  return (
    `machine: ${machine.cpus} x ${machine.cpuModel}, ${machine.totalMemoryGiB} GiB RAM, ${machine.platform}, node ${machine.node}\n` +
    `tools: ${machine.tools.rclone}; weed ${machine.tools.weed}; ${machine.tools.temporal}; ${machine.tools.sha256sum}; ferry ${machine.ferry}\n`
  );
}
