/** Small generated source trees for tests; deterministic so failures reproduce. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { chmod, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ChunkSplitter } from '../../core/chunking';

/** Writes `files` (relative path → content) under `root`. */
export async function writeTree(root: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [relative, content] of Object.entries(files)) {
    const absolute = path.join(root, relative);
    await mkdir(path.dirname(absolute), { recursive: true });
    await writeFile(absolute, content);
  }
}

/** Deterministic pseudo-random bytes (xorshift), so "large" fixtures need no storage. */
export function seededBytes(size: number, seed: number): Buffer {
  const buffer = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    for (let byte = 0; byte < 4 && i + byte < size; byte++) buffer[i + byte] = (x >>> (8 * byte)) & 0xff;
  }
  return buffer;
}

/** The content-defined chunks (core/chunking) `content` is stored as, fed in writes of `writeBytes`. */
export function chunksOf(content: Buffer, writeBytes = content.length || 1): Buffer[] {
  const chunks: Buffer[] = [];
  const splitter = new ChunkSplitter();
  const keep = (chunk: Buffer) => chunks.push(Buffer.from(chunk));
  for (let offset = 0; offset < content.length; offset += writeBytes) splitter.write(content.subarray(offset, offset + writeBytes), keep);
  splitter.end(keep);
  return chunks;
}

export const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

/** Every regular file under `root` as relative path → sha256 (what should have landed). */
export async function treeHashes(root: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  const walk = async (dir: string, prefix: string) => {
    for (const name of (await readdir(dir)).sort()) {
      const absolute = path.join(dir, name);
      const relative = prefix ? `${prefix}/${name}` : name;
      const info = await stat(absolute);
      if (info.isDirectory()) await walk(absolute, relative);
      else result[relative] = sha256(await readFile(absolute));
    }
  };
  await walk(root, '');
  return result;
}

/**
 * Asserts that none of `names` is in the folder `dir`, which must exist and
 * be readable: an absence checked where nothing could be would pass for the
 * wrong reason.
 */
export function assertNoneIn(dir: string, names: string[], message?: string): void {
  const present = readdirSync(dir).filter((name) => names.includes(name));
  assert.deepEqual(present, [], message ?? `none of ${names.join(', ')} in ${dir}`);
}

/** A small project like a user's: nested folders, ignore rules, an executable, a binary file. */
export async function writeSampleProject(root: string): Promise<{ synced: string[]; ignored: string[] }> {
  await writeTree(root, {
    '.gitignore': 'build/\n*.tmp\n!keep.tmp\n',
    '.ferryignore': 'secrets.env\n',
    'README.md': '# sample\n',
    'data/sales.csv': '날짜,카테고리,제품명,수량,단가,금액\n2023-01-01,과일,사과,3,1000,3000\n',
    'data/nested/deep/values.bin': seededBytes(200_000, 7),
    'scripts/run.sh': '#!/bin/sh\necho hello\n',
    'build/output.o': 'compiled',
    'scratch.tmp': 'temporary',
    'keep.tmp': 'kept by negation',
    'secrets.env': 'TOKEN=do-not-sync',
    'sub/.gitignore': '*.log\n',
    'sub/app.log': 'ignored by nested rule',
    'sub/app.py': 'print("hi")\n',
  });
  await chmod(path.join(root, 'scripts/run.sh'), 0o755);
  return {
    synced: ['.ferryignore', '.gitignore', 'README.md', 'data/nested/deep/values.bin', 'data/sales.csv', 'keep.tmp', 'scripts/run.sh', 'sub/.gitignore', 'sub/app.py'],
    ignored: ['build/output.o', 'scratch.tmp', 'secrets.env', 'sub/app.log'],
  };
}

/** Polls `probe` every `intervalMs` until it returns a value, failing with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}
