/**
 * What the commands' registrations share: options, their parsers, and a way
 * to reach Temporal. Registering a command must not load what runs it (the
 * Temporal client, the AWS SDK, the target drivers), so `ferry --version`
 * and `ferry <command> --help` stay fast: this module imports only
 * commander, core/ and light client modules at load, and `--target`, whose
 * parser is the target registry, is parsed just before the command runs.
 */
import type { Client } from '@temporalio/client';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { FerryConfig } from '../core/config';
import { DEFAULT_LINK_POLICY, LINK_POLICIES } from '../core/sync';
import { DEFAULT_TARGET } from '../core/target';
import { CommandError } from './errors';
import type { StreamOffsets } from './pipelineClient';

/**
 * `--target`, as text until `parseTargetOption` runs. The help names no
 * forms: they come from the drivers, which load the AWS SDK; `ferry targets`
 * lists them.
 */
export function targetOption(what: string): Option {
  return new Option('--target <target>', `${what}: a target kind and its options, as \`ferry targets\` lists them, or a JSON object`).default(DEFAULT_TARGET, 'local');
}

/**
 * preAction hook: parses a `--target` given on the command line with its
 * kind's driver, and refuses a bad one with commander's own words for an
 * invalid option value.
 */
export async function parseTargetOption(_hooked: Command, command: Command): Promise<void> {
  if (command.getOptionValueSource('target') !== 'cli') return;
  const text = command.getOptionValue('target') as string;
  const { targetArgument } = await import('./targets');
  try {
    command.setOptionValueWithSource('target', targetArgument(text), 'cli');
  } catch (err) {
    if (!(err instanceof InvalidArgumentError)) throw err;
    const flags = command.options.find((option) => option.attributeName() === 'target')?.flags ?? '--target <target>';
    command.error(`error: option '${flags}' argument '${text}' is invalid. ${err.message}`, { exitCode: err.exitCode, code: err.code });
  }
}

/** `--links`: the snapshot's link policy (core/sync LinkPolicy), the same on every command that snapshots a folder. */
export function linksOption(): Option {
  return new Option('--links <policy>', 'symlinks pointing outside the folder (or to nothing): skip and list them, follow them, copy them as links, or error')
    .choices(LINK_POLICIES)
    .default(DEFAULT_LINK_POLICY);
}

/** `--offset <stdout>[,<stderr>]`: bytes of each stream to skip when replaying. */
export function parseStreamOffsets(value: string): Partial<StreamOffsets> {
  const parts = value.split(',');
  const numbers = parts.map((part) => Number(part.trim()));
  if (parts.length > 2 || numbers.some((n) => !Number.isSafeInteger(n) || n < 0)) throw new CommandError(`--offset ${JSON.stringify(value)}: expected <stdout bytes>[,<stderr bytes>], e.g. 1200 or 1200,40`, 2);
  return { stdout: numbers[0], stderr: numbers[1] ?? 0 };
}

/** client/temporal's withClient, loaded (with the Temporal SDK) when a command first needs it. */
export async function withClient<T>(run: (client: Client, config: FerryConfig) => Promise<T>): Promise<T> {
  const temporal = await import('./temporal');
  return temporal.withClient(run);
}
