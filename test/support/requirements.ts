/**
 * What a test needs from the machine besides the servers it starts itself
 * (Chromium, sshd, root to mount a tmpfs, `ss`, recorded histories …).
 * Where one is missing, a developer's run skips the tests that need it,
 * saying why, and runs the rest; under CI=true those tests FAIL with the
 * same reason instead, so a CI run never passes on tests that did not run.
 */
import { existsSync } from 'node:fs';
import { it, type TestContext } from 'node:test';

/** CI=true: a missing dependency is a failure, not a skip. */
export function dependenciesRequired(): boolean {
  return process.env.CI === 'true';
}

function missingReason(what: string, missing: string): string {
  return `${what} is missing: ${missing}`;
}

function ciFailure(what: string, missing: string): Error {
  return new Error(`${missingReason(what, missing)} (CI=true: a missing dependency fails the tests that need it)`);
}

/**
 * The `skip` option of a suite or test that needs `what`, given why it is
 * missing (undefined when it is there): false, or the reason. Under CI=true
 * a missing dependency also adds a failing test, `needs <what>`, carrying
 * the reason, next to the skipped ones.
 */
export function requireOrSkip(what: string, missing: string | undefined): string | false {
  if (missing === undefined) return false;
  if (dependenciesRequired()) {
    it(`needs ${what}`, () => {
      throw ciFailure(what, missing);
    });
  }
  return missingReason(what, missing);
}

/**
 * For a dependency a running test finds missing (a mount refused): true
 * when it is there; otherwise the test is skipped with the reason and this
 * returns false, or under CI=true the test fails with it.
 */
export function requireOrSkipTest(t: TestContext, what: string, missing: string | undefined): boolean {
  if (missing === undefined) return true;
  if (dependenciesRequired()) throw ciFailure(what, missing);
  t.skip(missingReason(what, missing));
  return false;
}

/** Debian's Chromium (scripts/install-browser.sh installs it), or FERRY_CHROMIUM. */
export const CHROMIUM = process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium';

/** Why the browser tests cannot run here, or undefined when they can. */
export function chromiumMissing(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `no Chromium at ${CHROMIUM} (install Debian's chromium package: scripts/install-browser.sh; or set FERRY_CHROMIUM)`;
}
