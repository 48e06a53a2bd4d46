/**
 * Targets as the CLI names them: `--target <kind>[:<options>]` in each
 * registered driver's form (`local`, `shell:<root>`, `ssm:<instance-id>`, …), or the same
 * object as JSON (`--target '{"kind":"ssm","instanceId":"i-…","region":"eu-west-1"}'`),
 * and `ferry targets`, which lists every registered kind. Each driver parses
 * its own form (activities/targets); loading them loads the AWS SDK, so only
 * a command that takes a `--target` or lists them imports this module
 * (client/options parses `--target` through it).
 */
import { InvalidArgumentError } from 'commander';
import { TARGET_DRIVERS, parseTargetSpec } from '../activities/targets';
import { TargetOptionsError } from '../activities/targets/driver';
import { targetRefProblem, type TargetRef } from '../core/target';

/** The forms `--target` takes, for help texts that may load the drivers (the MCP tools). */
export const TARGET_FORMS = (): string => `${TARGET_DRIVERS.map((driver) => driver.spec).join(' | ')}, or a JSON target object (default local)`;

/** Parses a `--target` value; a bad one is an InvalidArgumentError naming the problem. */
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
