/**
 * Explaining a snapshot's size before it is uploaded: users of job launchers
 * lose minutes syncing a node_modules, a virtualenv or a checkpoint folder
 * by accident. When a snapshot is over its size warning or holds folders
 * that are usually ignored, the report names them with their sizes, file
 * counts and the ignore line that would drop each. Pure: the snapshot
 * adds the files it lists.
 */
import type { FolderSize, SizeReport } from './sync';

/** Folder names that hold generated or installed files, and what they hold. */
const USUALLY_IGNORED: Record<string, string> = {
  node_modules: 'npm packages',
  '.venv': 'a Python virtualenv',
  venv: 'a Python virtualenv',
  __pycache__: 'Python bytecode',
  '.tox': 'tox environments',
  '.nox': 'nox environments',
  '.mypy_cache': 'mypy cache',
  '.pytest_cache': 'pytest cache',
  '.ruff_cache': 'ruff cache',
  '.ipynb_checkpoints': 'Jupyter checkpoints',
  '.gradle': 'Gradle cache',
  '.next': 'Next.js build output',
  '.terraform': 'Terraform providers',
  '.cache': 'a cache',
  checkpoints: 'model checkpoints',
  checkpoint: 'model checkpoints',
  ckpt: 'model checkpoints',
  wandb: 'Weights & Biases runs',
  mlruns: 'MLflow runs',
  lightning_logs: 'PyTorch Lightning logs',
};

/**
 * Names that are build output only beside a project file saying so: a
 * `build/` next to setup.py is generated, a `build/` of shell scripts is not.
 */
const BUILD_OUTPUT: Record<string, { what: string; besides: string[] }> = {
  dist: { what: 'build output', besides: ['package.json', 'setup.py', 'pyproject.toml', 'setup.cfg'] },
  build: { what: 'build output', besides: ['package.json', 'setup.py', 'pyproject.toml', 'setup.cfg', 'CMakeLists.txt', 'build.gradle', 'build.gradle.kts'] },
  target: { what: 'Rust or Maven build output', besides: ['Cargo.toml', 'pom.xml'] },
};

const PROJECT_FILES = new Set(Object.values(BUILD_OUTPUT).flatMap((output) => output.besides));

/** Folders named besides the usually-ignored ones. */
const LARGEST_LISTED = 5;
/** Usually-ignored folders named at most. */
const USUALLY_IGNORED_LISTED = 10;
/** A folder this share of whose bytes sit in one subfolder is named by that subfolder instead. */
const DOMINANT_SHARE = 0.8;

interface FolderTotals {
  bytes: number;
  files: number;
  subfolders: Set<string>;
}

/** A name as a gitignore pattern that matches it literally: wildcards, a leading # or ! and trailing spaces escaped. */
export function ignorePattern(name: string): string {
  return name
    .replace(/[*?[\]]/g, '\\$&')
    .replace(/^[#!]/, '\\$&')
    .replace(/ +$/, (spaces) => spaces.replace(/ /g, '\\ '));
}

const parentOf = (path: string) => {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '' : path.slice(0, slash);
};
const nameOf = (path: string) => path.slice(path.lastIndexOf('/') + 1);

/**
 * Sizes of a snapshot's folders, added up file by file as the snapshot
 * lists them. Only per-folder totals are kept, never the files, so a tree
 * of 100,000 files costs a few hundred entries.
 */
export class FolderSizes {
  /** Bytes and files directly in each folder ('' is the source itself). */
  private readonly direct = new Map<string, { bytes: number; files: number }>();
  /** Project files (package.json, setup.py, …) seen, by path: a `build/` beside one is build output. */
  private readonly projectFiles = new Set<string>();

  /** Counts a file in; a negative `count` (and size) takes one back out, e.g. when it vanished before it was read. */
  add(path: string, size: number, count = 1): void {
    const folder = parentOf(path);
    let totals = this.direct.get(folder);
    if (!totals) this.direct.set(folder, (totals = { bytes: 0, files: 0 }));
    totals.bytes += size;
    totals.files += count;
    if (count > 0 && PROJECT_FILES.has(nameOf(path))) this.projectFiles.add(path);
  }

  /**
   * The report, or undefined when the snapshot is within
   * `sizeWarningBytes` and holds no usually-ignored folder. Usually-ignored
   * folders are named at the outermost level (a node_modules inside a
   * node_modules is part of the first); the largest others are the top
   * folders, each narrowed to a subfolder that holds most of its bytes.
   */
  report(sizeWarningBytes: number): SizeReport | undefined {
    const folders = new Map<string, FolderTotals>();
    const folder = (path: string) => {
      let totals = folders.get(path);
      if (!totals) folders.set(path, (totals = { bytes: 0, files: 0, subfolders: new Set() }));
      return totals;
    };
    for (const [path, own] of this.direct) {
      // Every file of it taken back out (vanished before it was read): not a folder of the snapshot.
      if (own.files <= 0) continue;
      for (let dir = path, child = ''; ; child = dir, dir = parentOf(dir)) {
        const totals = folder(dir);
        totals.bytes += own.bytes;
        totals.files += own.files;
        if (child !== '') totals.subfolders.add(child);
        if (dir === '') break;
      }
    }
    const root = folder('');
    const large = root.bytes > sizeWarningBytes;

    const ignored: FolderSize[] = [];
    const findIgnored = (path: string) => {
      const why = this.usuallyIgnored(path);
      const totals = folders.get(path) as FolderTotals;
      if (why) ignored.push({ path, bytes: totals.bytes, files: totals.files, ignoreLine: `${ignorePattern(nameOf(path))}/`, usuallyIgnored: why });
      else for (const child of totals.subfolders) findIgnored(child);
    };
    for (const child of root.subfolders) findIgnored(child);
    if (!large && ignored.length === 0) return undefined;

    const narrowed = (path: string): string => {
      const totals = folders.get(path) as FolderTotals;
      for (const child of totals.subfolders) if ((folders.get(child) as FolderTotals).bytes >= DOMINANT_SHARE * totals.bytes) return narrowed(child);
      return path;
    };
    // A folder inside one already named adds nothing: its ignore line is covered.
    const named = (path: string) => ignored.some((f) => path === f.path || path.startsWith(`${f.path}/`));
    const largest: FolderSize[] = [...root.subfolders]
      .map(narrowed)
      .filter((path) => !named(path))
      .map((path) => {
        const totals = folders.get(path) as FolderTotals;
        return { path, bytes: totals.bytes, files: totals.files, ignoreLine: `/${path.split('/').map(ignorePattern).join('/')}/` };
      });
    const bySize = (a: FolderSize, b: FolderSize) => b.bytes - a.bytes || (a.path < b.path ? -1 : 1);
    return {
      filesTotal: root.files,
      bytesTotal: root.bytes,
      sizeWarningBytes,
      large,
      folders: [...ignored.sort(bySize).slice(0, USUALLY_IGNORED_LISTED), ...largest.sort(bySize).slice(0, LARGEST_LISTED)],
    };
  }

  /** What a folder holds when it is usually ignored, or undefined. */
  private usuallyIgnored(path: string): string | undefined {
    const name = nameOf(path);
    if (Object.hasOwn(USUALLY_IGNORED, name)) return USUALLY_IGNORED[name];
    if (!Object.hasOwn(BUILD_OUTPUT, name)) return undefined;
    const { what, besides } = BUILD_OUTPUT[name];
    const parent = parentOf(path);
    return besides.some((projectFile) => this.projectFiles.has(parent === '' ? projectFile : `${parent}/${projectFile}`)) ? what : undefined;
  }
}
