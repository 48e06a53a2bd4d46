/**
 * Targets as the CLI names them: `--target <kind>[:<options>]` in each
 * registered driver's form (`local`, `shell:<root>`, `ssm:<instance-id>`, …), or the same
 * object as JSON (`--target '{"kind":"ssm","instanceId":"i-…","region":"eu-west-1"}'`),
 * and `ferry targets`, which lists every registered kind. Each driver parses
 * its own form (activities/targets).
 */
import { InvalidArgumentError, Option } from 'commander';
import { TARGET_DRIVERS, parseTargetSpec } from '../activities/targets';
import { TargetOptionsError } from '../activities/targets/driver';
import { DEFAULT_LINK_POLICY, LINK_POLICIES } from '../core/sync';
import { DEFAULT_TARGET, targetRefProblem, type TargetRef } from '../core/target';

/** The forms `--target` takes, for help texts. */
export const TARGET_FORMS = () => `${TARGET_DRIVERS.map((driver) => driver.spec).join(' | ')}, or a JSON object (default local)`;

/** commander parser for `--target`. */
export function targetArgument(value: string): TargetRef {
  if (value.trim().startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch (err) {
      throw new InvalidArgumentError(`--target JSON does not parse: ${(err as Error).message}`);
    }
    const problem = targetRefProblem(parsed, '--target');
    if (problem) throw new InvalidArgumentError(problem);
    const target = parsed as TargetRef;
    const driver = TARGET_DRIVERS.find((d) => d.kind === target.kind);
    if (!driver) throw new InvalidArgumentError(`unknown target kind ${JSON.stringify(target.kind)}; known: ${TARGET_DRIVERS.map((d) => d.kind).join(', ')}`);
    return checked(() => driver.normalize(target));
  }
  return checked(() => parseTargetSpec(value, process.cwd()));
}

function checked(parse: () => TargetRef): TargetRef {
  try {
    return parse();
  } catch (err) {
    if (err instanceof TargetOptionsError) throw new InvalidArgumentError(err.message);
    throw err;
  }
}

/** `--target`, parsed by the kind's own driver. */
export function targetOption(what: string): Option {
  return new Option('--target <target>', `${what}: ${TARGET_FORMS()}`).argParser(targetArgument).default(DEFAULT_TARGET, 'local');
}

/** `--links`: the snapshot's link policy (core/sync LinkPolicy), the same on every command that snapshots a folder. */
export function linksOption(): Option {
  return new Option('--links <policy>', 'symlinks pointing outside the folder (or to nothing): skip and list them, follow them, copy them as links, or error')
    .choices(LINK_POLICIES)
    .default(DEFAULT_LINK_POLICY);
}

/** `ferry targets`: each kind, what it is, its `--target` form and the settings it reads. */
export function formatTargets(): string {
  const lines: string[] = [];
  for (const driver of TARGET_DRIVERS) {
    lines.push(`${driver.spec}`, `    ${driver.summary}`, `    sessions ${driver.lifetime === 'persistent' ? 'persist (sync, pipeline, training)' : 'end with their workflow (pipeline, training)'}`);
    for (const setting of driver.settings) lines.push(`    ${setting.name}: ${setting.description}`);
    lines.push('');
  }
  lines.push('A target is also accepted as JSON, on --target and in `temporal workflow start --input` (e.g. {"kind":"shell","root":"/srv/ferry"}).');
  return lines.join('\n');
}
