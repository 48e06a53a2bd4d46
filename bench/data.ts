/**
 * Benchmark data sets: deterministic, incompressible trees generated from a
 * fixed seed under bench/.data, reused across runs when a marker proves the
 * bytes on disk are still exactly what the parameters produce.
 *
 * Bytes come from AES-256-CTR over zeros with a key derived from (seed, path,
 * variant): seeded, incompressible, and generated natively at GB/s, so a
 * 192 MiB set takes well under a second to (re)write.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { mkdir, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { BenchOptions } from './options';

export interface SmallTreeParams {
  kind: 'small';
  seed: number;
  files: number;
  folders: number;
  minBytes: number;
  maxBytes: number;
}

export interface LargeFilesParams {
  kind: 'large';
  seed: number;
  files: number;
  bytesPerFile: number;
}

export type DataSetParams = SmallTreeParams | LargeFilesParams;

export interface FileSpec {
  /** Relative, '/'-separated. */
  path: string;
  size: number;
}

export interface DataSet {
  name: string;
  /** The folder that is synced / copied. */
  dir: string;
  params: DataSetParams;
  specs: FileSpec[];
  files: number;
  bytes: number;
  /** hashTree() digest of the pristine set. */
  digest: string;
}

interface Marker {
  version: number;
  params: DataSetParams;
  /** 'mutated' while a benchmark has one file changed; such a set is regenerated if the run died before restoring it. */
  state: 'clean' | 'mutated';
  files: number;
  bytes: number;
  digest: string;
}

const MARKER_VERSION = 1;
const CHUNK = 8 << 20;
const ZEROS = Buffer.alloc(CHUNK);

/** mulberry32: a tiny seeded PRNG for layout decisions (sizes, folders), not for file bytes. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The files a parameter set consists of; the same parameters always give the same plan. */
export function planFiles(params: DataSetParams): FileSpec[] {
  if (params.kind === 'large') {
    return Array.from({ length: params.files }, (_, i) => ({ path: `blob-${i}.bin`, size: params.bytesPerFile }));
  }
  const random = prng(params.seed);
  // Nested folders: each hangs under the root or an earlier folder, at most 5 deep, like a source tree.
  const folders: { path: string; depth: number }[] = [];
  for (let i = 0; i < params.folders; i++) {
    const candidates = [{ path: '', depth: 0 }, ...folders].filter((f) => f.depth < 5);
    const parent = candidates[Math.floor(random() * candidates.length)];
    const name = `dir${String(i).padStart(2, '0')}`;
    folders.push({ path: parent.path ? `${parent.path}/${name}` : name, depth: parent.depth + 1 });
  }
  // Log-uniform sizes: many small files and a tail of larger ones, as in real trees.
  const ratio = params.maxBytes / params.minBytes;
  return Array.from({ length: params.files }, (_, i) => {
    const folder = folders[Math.floor(random() * folders.length)];
    const size = Math.round(params.minBytes * Math.pow(ratio, random()));
    return { path: `${folder.path}/file${String(i).padStart(5, '0')}.dat`, size };
  });
}

/** A keystream unique to (seed, path, variant). */
function keystream(seed: number, relativePath: string, variant: string) {
  const key = createHash('sha256').update(`ferry-bench\0${seed}\0${relativePath}\0${variant}`).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
}

/** Seeded bytes of `size` for (seed, path, variant), in one buffer (used for partial rewrites). */
export function seededBuffer(seed: number, relativePath: string, variant: string, size: number): Buffer {
  return keystream(seed, relativePath, variant).update(Buffer.alloc(size));
}

async function writeSeededFile(absolutePath: string, seed: number, relativePath: string, variant: string, size: number): Promise<void> {
  const cipher = keystream(seed, relativePath, variant);
  const handle = await open(absolutePath, 'w');
  try {
    for (let done = 0; done < size; ) {
      const n = Math.min(CHUNK, size - done);
      const bytes = cipher.update(n === CHUNK ? ZEROS : ZEROS.subarray(0, n));
      await handle.write(bytes, 0, bytes.length, done);
      done += n;
    }
  } finally {
    await handle.close();
  }
}

/** Digest of a whole tree (sorted paths, sizes, contents): equal digests mean equal trees. */
export async function hashTree(root: string): Promise<{ digest: string; files: number; bytes: number }> {
  const lines: string[] = [];
  let bytes = 0;
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
      const absolute = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(absolute, relative);
      else {
        const content = await readFile(absolute);
        bytes += content.length;
        lines.push(`${relative}\0${content.length}\0${createHash('sha256').update(content).digest('hex')}\n`);
      }
    }
  };
  await walk(root, '');
  return { digest: createHash('sha256').update(lines.join('')).digest('hex'), files: lines.length, bytes };
}

const markerPath = (dataRoot: string, name: string) => path.join(dataRoot, `${name}.json`);

async function readMarker(file: string): Promise<Marker | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as Marker;
  } catch {
    return undefined;
  }
}

async function writeMarker(file: string, marker: Marker): Promise<void> {
  await writeFile(file, `${JSON.stringify(marker, null, 2)}\n`);
}

/**
 * Returns the data set `name`, generating it unless the marker matches the
 * parameters and the tree on disk hashes to the marker's digest. The hash pass
 * also leaves the set in the page cache, so no tool pays for the first cold read.
 */
export async function ensureDataSet(dataRoot: string, name: string, params: DataSetParams): Promise<{ set: DataSet; generated: boolean }> {
  const dir = path.join(dataRoot, name);
  const specs = planFiles(params);
  const marker = await readMarker(markerPath(dataRoot, name));
  const base = { name, dir, params, specs, files: specs.length, bytes: specs.reduce((sum, f) => sum + f.size, 0) };
  if (marker && marker.version === MARKER_VERSION && marker.state === 'clean' && JSON.stringify(marker.params) === JSON.stringify(params)) {
    const onDisk = await stat(dir).then(
      () => hashTree(dir),
      () => undefined,
    );
    if (onDisk && onDisk.digest === marker.digest) return { set: { ...base, digest: marker.digest }, generated: false };
  }

  await rm(dir, { recursive: true, force: true });
  for (const spec of specs) {
    const absolute = path.join(dir, ...spec.path.split('/'));
    await mkdir(path.dirname(absolute), { recursive: true });
    await writeSeededFile(absolute, params.seed, spec.path, 'original', spec.size);
  }
  const tree = await hashTree(dir);
  if (tree.files !== base.files || tree.bytes !== base.bytes) throw new Error(`generated ${name} has ${tree.files} files / ${tree.bytes} bytes, planned ${base.files} / ${base.bytes}`);
  await writeMarker(markerPath(dataRoot, name), { version: MARKER_VERSION, params, state: 'clean', files: tree.files, bytes: tree.bytes, digest: tree.digest });
  return { set: { ...base, digest: tree.digest }, generated: true };
}

export interface Mutation {
  path: string;
  /** Bytes rewritten in place. */
  bytesChanged: number;
}

/**
 * The "one file changed" edit: a small-tree file gets new bytes of the same
 * size; a large file gets 1 MiB rewritten in its middle. The marker says
 * 'mutated' first, so a crash before restoreDataSet() forces regeneration.
 */
export async function mutateOneFile(dataRoot: string, set: DataSet): Promise<Mutation> {
  const file = markerPath(dataRoot, set.name);
  const marker = await readMarker(file);
  if (marker) await writeMarker(file, { ...marker, state: 'mutated' });

  const spec = set.params.kind === 'small' ? set.specs[Math.floor(set.specs.length / 2)] : set.specs[Math.min(1, set.specs.length - 1)];
  const absolute = path.join(set.dir, ...spec.path.split('/'));
  if (set.params.kind === 'small') {
    await writeSeededFile(absolute, set.params.seed, spec.path, 'changed', spec.size);
    return { path: spec.path, bytesChanged: spec.size };
  }
  const length = Math.min(1 << 20, spec.size);
  const offset = Math.floor((spec.size - length) / 2);
  const handle = await open(absolute, 'r+');
  try {
    await handle.write(seededBuffer(set.params.seed, spec.path, 'changed', length), 0, length, offset);
  } finally {
    await handle.close();
  }
  return { path: spec.path, bytesChanged: length };
}

/** Puts the mutated file back to its original bytes and marks the set clean again. */
export async function restoreDataSet(dataRoot: string, set: DataSet, mutation: Mutation): Promise<void> {
  const spec = set.specs.find((s) => s.path === mutation.path);
  if (!spec) throw new Error(`unknown file ${mutation.path} in ${set.name}`);
  await writeSeededFile(path.join(set.dir, ...spec.path.split('/')), set.params.seed, spec.path, 'original', spec.size);
  const file = markerPath(dataRoot, set.name);
  const marker = await readMarker(file);
  if (marker) await writeMarker(file, { ...marker, state: 'clean' });
}

/** Checks a copy is byte-for-byte the source (untimed): a fast wrong answer is not a result. */
export async function sameTree(source: string, copy: string): Promise<string | undefined> {
  const [expected, actual] = await Promise.all([hashTree(source), hashTree(copy).catch(() => undefined)]);
  if (!actual) return `${copy} is missing`;
  if (actual.digest !== expected.digest) return `${copy} differs from the source (${actual.files} files / ${actual.bytes} bytes, expected ${expected.files} / ${expected.bytes})`;
  return undefined;
}

const SEED = 20251121;

export type DataSetName = 'small-tree' | 'large-files' | 'delta-file' | 'large-tree';

/** The benchmark's data sets, sized by the options. */
export function dataSetParams(name: DataSetName, options: BenchOptions): DataSetParams {
  switch (name) {
    case 'small-tree':
      return { kind: 'small', seed: SEED, files: options.smallFiles, folders: 50, minBytes: 512, maxBytes: 32 << 10 };
    case 'large-files':
      return { kind: 'large', seed: SEED + 1, files: options.largeFiles, bytesPerFile: options.largeMiB << 20 };
    case 'delta-file':
      return { kind: 'large', seed: SEED + 2, files: 1, bytesPerFile: options.deltaMiB << 20 };
    case 'large-tree':
      // 100-byte files, about 500 to a folder: the walk and per-file costs dominate, not the bytes.
      return { kind: 'small', seed: SEED + 3, files: options.treeFiles, folders: Math.max(1, Math.round(options.treeFiles / 500)), minBytes: 100, maxBytes: 100 };
  }
}
