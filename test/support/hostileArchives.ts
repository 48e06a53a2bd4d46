/**
 * Hostile inputs for the fault tests: tar.gz archives with entries no
 * landing may honour (absolute names, `..`, links, devices), a gzip bomb
 * that is small on the wire and huge unpacked, and trees too deep for
 * ordinary path APIs, plus the before/after listings that show nothing
 * escaped a root.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync, type Dirent } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';

const run = promisify(execFile);

export interface ArchiveEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  body?: string | Buffer;
  linkname?: string;
  mode?: number;
  devmajor?: number;
  devminor?: number;
}

/** The uncompressed tar stream of `entries`, written in order (tar-stream adds PAX headers for long names). */
export async function tarBytes(entries: ArchiveEntry[]): Promise<Buffer> {
  const tarball = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of tarball) chunks.push(chunk as Buffer);
  })();
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    const header = { name: entry.name, type, mode: entry.mode ?? (type === 'directory' ? 0o755 : 0o644), linkname: entry.linkname, devmajor: entry.devmajor, devminor: entry.devminor };
    if (type === 'file') tarball.entry(header, Buffer.from(entry.body ?? ''));
    else tarball.entry(header);
  }
  tarball.finalize();
  await collected;
  return Buffer.concat(chunks);
}

export async function tarGz(entries: ArchiveEntry[]): Promise<Buffer> {
  return gzipSync(await tarBytes(entries));
}

/** The meta/ entries the land script requires, empty unless given. */
export function emptyMeta(sha256sums = ''): ArchiveEntry[] {
  return [
    { name: 'meta/remove', body: '' },
    { name: 'meta/SHA256SUMS', body: sha256sums },
    { name: 'meta/LINKSUMS', body: '' },
  ];
}

/** A ustar header of a regular file of `size` bytes (sizes below 8 GiB), written by hand so the body need not exist. */
function ustarFileHeader(name: string, size: number): Buffer {
  const header = Buffer.alloc(512);
  const octal = (value: number, width: number) => `${value.toString(8).padStart(width - 1, '0')}\0`;
  header.write(name, 0, 100, 'utf8');
  header.write(octal(0o644, 8), 100);
  header.write(octal(0, 8), 108);
  header.write(octal(0, 8), 116);
  header.write(octal(size, 12), 124);
  header.write(octal(Math.floor(Date.now() / 1000), 12), 136);
  header.fill(' ', 148, 156);
  header.write('0', 156);
  header.write('ustar\u000000', 257, 'latin1');
  let checksum = 0;
  for (const byte of header) checksum += byte;
  header.write(`${checksum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return header;
}

/**
 * A valid tar.gz holding `files/zeros` of `unpackedBytes` zero bytes (a
 * multiple of 1 MiB) and empty meta/ lists. Built from concatenated gzip
 * members (one compressed MiB repeated), so 1 GiB unpacked costs about
 * 1 MB and no gigabyte is ever held in memory.
 */
export async function gzipBomb(unpackedBytes: number): Promise<Buffer> {
  const mebibyte = 1 << 20;
  if (unpackedBytes % mebibyte !== 0) throw new Error('the bomb size must be a whole number of MiB');
  const zeros = gzipSync(Buffer.alloc(mebibyte), { level: 9 });
  const members = [gzipSync(ustarFileHeader('files/zeros', unpackedBytes))];
  for (let i = 0; i < unpackedBytes / mebibyte; i++) members.push(zeros);
  members.push(gzipSync(await tarBytes(emptyMeta())));
  return Buffer.concat(members);
}

/**
 * Creates `depth` nested folders named `segment` under `dir` and a file
 * `leaf.txt` at the bottom. Paths that deep exceed PATH_MAX, so this walks
 * down with relative mkdir/chdir; it is synchronous, so no other code of
 * this process runs while the working directory is borrowed.
 */
export function writeDeepTree(dir: string, depth: number, segment = 'd'): void {
  const before = process.cwd();
  try {
    process.chdir(dir);
    for (let level = 0; level < depth; level++) {
      mkdirSync(segment);
      process.chdir(segment);
    }
    writeFileSync('leaf.txt', 'at the bottom\n');
  } finally {
    process.chdir(before);
  }
}

/** Removes a tree of any depth (GNU rm walks with openat; Node's rm would hit ENAMETOOLONG). */
export async function removeDeepTree(dir: string): Promise<void> {
  await run('rm', ['-rf', '--one-file-system', dir]);
}

/**
 * Every entry under `dir` as `relative path:type` (f, d, l, o), sorted,
 * without descending past `maxDepth` levels: what "nothing appeared
 * outside the root" is checked against, before and after. A folder that
 * cannot be read, `dir` included, throws: "nothing written" must not pass
 * because nothing could be listed.
 */
export function listTree(dir: string, maxDepth = 64): string[] {
  const found: string[] = [];
  const walk = (absolute: string, relative: string, depth: number) => {
    const entries: Dirent[] = readdirSync(absolute, { withFileTypes: true });
    for (const entry of entries) {
      const child = relative ? `${relative}/${entry.name}` : entry.name;
      const type = entry.isSymbolicLink() ? 'l' : entry.isDirectory() ? 'd' : entry.isFile() ? 'f' : 'o';
      found.push(`${child}:${type}`);
      if (type === 'd' && depth < maxDepth) walk(path.join(absolute, entry.name), child, depth + 1);
    }
  };
  walk(dir, '', 1);
  return found.sort();
}
