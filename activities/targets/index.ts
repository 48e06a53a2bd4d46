/**
 * The registry of target kinds: one line per driver. Adding a kind is one
 * driver file (see ./driver.ts) and one line here; the CLI's `--target`,
 * `ferry targets`, the worker's settings and every workflow pick it up from
 * this list.
 */
import { FailureType } from '../../core/errors';
import type { TargetRef } from '../../core/target';
import { nonRetryable } from '../failures';
import { TargetOptionsError, type TargetBackend, type TargetDriver, type TargetEnvironment, type TargetSetting } from './driver';
import { ecsTarget } from './ecs';
import { localTarget } from './local';
import { shellTarget } from './shell';
import { sshTarget } from './ssh';
import { ssmTarget } from './ssm';

export const TARGET_DRIVERS: readonly TargetDriver[] = [localTarget, shellTarget, sshTarget, ssmTarget, ecsTarget];

export function targetDriver(kind: string): TargetDriver | undefined {
  return TARGET_DRIVERS.find((driver) => driver.kind === kind);
}

export const TARGET_KINDS = (): string[] => TARGET_DRIVERS.map((driver) => driver.kind);

/** `--target` text (`kind` or `kind:options`) as a target reference; throws TargetOptionsError. */
export function parseTargetSpec(text: string, cwd: string): TargetRef {
  const colon = text.indexOf(':');
  const kind = colon < 0 ? text : text.slice(0, colon);
  const driver = targetDriver(kind);
  if (!driver) throw new TargetOptionsError([`unknown target kind ${JSON.stringify(kind)}; known: ${TARGET_DRIVERS.map((d) => d.spec).join(', ')}`]);
  return driver.parseSpec(colon < 0 ? '' : text.slice(colon + 1), cwd);
}

/** A target reference from a workflow, checked and completed by its kind's driver; bad options are `InvalidInput`. */
export function normalizeTarget(raw: TargetRef): { driver: TargetDriver; target: TargetRef } {
  const driver = targetDriver(raw.kind);
  if (!driver) throw nonRetryable(FailureType.InvalidInput, `unknown target kind ${JSON.stringify(raw.kind)}; known kinds: ${TARGET_KINDS().join(', ')}`, { target: raw });
  try {
    return { driver, target: driver.normalize(raw) };
  } catch (err) {
    if (!(err instanceof TargetOptionsError)) throw err;
    throw nonRetryable(FailureType.InvalidInput, `invalid ${driver.kind} target: ${err.message}`, { target: raw, problems: err.problems });
  }
}

/** The backend this worker has for a target's kind; `UnknownTarget` when it has none or cannot run it. */
export function backendOf(targets: Map<string, TargetBackend | string>, target: TargetRef): TargetBackend {
  const backend = targets.get(target.kind);
  if (backend === undefined) {
    throw nonRetryable(FailureType.UnknownTarget, `unknown target kind ${JSON.stringify(target.kind)}; this worker knows ${TARGET_KINDS().join(', ')}`, { target });
  }
  if (typeof backend === 'string') throw nonRetryable(FailureType.UnknownTarget, `this worker cannot reach ${JSON.stringify(target.kind)} targets: ${backend}`, { target });
  return backend;
}

/** Every setting a driver declares. */
export function targetSettings(): TargetSetting[] {
  return TARGET_DRIVERS.flatMap((driver) => driver.settings);
}

/** Each kind on this worker: its backend, or why it cannot run here. Throws ConfigError for a setting with a bad value. */
export function configureTargets(environment: TargetEnvironment): Map<string, TargetBackend | string> {
  return new Map(TARGET_DRIVERS.map((driver) => [driver.kind, driver.configure(environment)]));
}
