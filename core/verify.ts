/**
 * Compares what a target reports holding with what a manifest says it must
 * hold. Pure, so the same rule decides in the worker, in tests and in
 * `ferry files`.
 */
import { sameContent, type ManifestEntry } from './manifest';

/** A file as the target reports it, hashed on the target; a symlink there is reported with its text, as a link entry. */
export interface TargetFile {
  path: string;
  size: number;
  mode: number;
  sha256: string;
  link?: string;
}

/** Whether the target holds the entry: the same bytes in a file, or a link with the same text (a file holding a link's text is not the link). */
function holds(found: TargetFile, entry: ManifestEntry): boolean {
  return found.size === entry.size && sameContent(found, entry);
}

export interface LandingMismatch {
  path: string;
  expectedSize: number;
  actualSize: number;
  expectedSha256: string;
  actualSha256: string;
}

export interface LandingComparison {
  verified: number;
  bytesVerified: number;
  missing: string[];
  /** Same path, fewer bytes than expected (an interrupted download looks like this). */
  short: LandingMismatch[];
  /** Same path, different bytes. */
  mismatched: LandingMismatch[];
}

export function compareLanding(expected: ManifestEntry[], actual: TargetFile[]): LandingComparison {
  const byPath = new Map(actual.map((file) => [file.path, file]));
  const result: LandingComparison = { verified: 0, bytesVerified: 0, missing: [], short: [], mismatched: [] };
  for (const entry of expected) {
    const found = byPath.get(entry.path);
    if (!found) {
      result.missing.push(entry.path);
      continue;
    }
    if (holds(found, entry)) {
      result.verified++;
      result.bytesVerified += entry.size;
      continue;
    }
    const mismatch: LandingMismatch = {
      path: entry.path,
      expectedSize: entry.size,
      actualSize: found.size,
      expectedSha256: entry.sha256,
      actualSha256: found.sha256,
    };
    if (found.size < entry.size) result.short.push(mismatch);
    else result.mismatched.push(mismatch);
  }
  return result;
}

export function landingIsComplete(comparison: LandingComparison): boolean {
  return comparison.missing.length === 0 && comparison.short.length === 0 && comparison.mismatched.length === 0;
}

/** One line naming the first few bad paths, for failure messages. */
export function describeLandingProblems(comparison: LandingComparison, limit = 5): string {
  const parts: string[] = [];
  const name = (paths: string[]) =>
    paths.slice(0, limit).map((p) => JSON.stringify(p)).join(', ') + (paths.length > limit ? ` and ${paths.length - limit} more` : '');
  if (comparison.missing.length) parts.push(`${comparison.missing.length} missing (${name(comparison.missing)})`);
  if (comparison.short.length) parts.push(`${comparison.short.length} short (${name(comparison.short.map((m) => m.path))})`);
  if (comparison.mismatched.length)
    parts.push(`${comparison.mismatched.length} with different content (${name(comparison.mismatched.map((m) => m.path))})`);
  return parts.join('; ');
}

/** Entries the target does not hold intact (missing, short or different): what landing must still fetch. */
export function entriesNotHeld(expected: ManifestEntry[], actual: TargetFile[]): ManifestEntry[] {
  const byPath = new Map(actual.map((file) => [file.path, file]));
  return expected.filter((entry) => {
    const found = byPath.get(entry.path);
    return !found || !holds(found, entry);
  });
}
