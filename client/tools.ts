/**
 * The binaries ferry runs (the Temporal CLI, SeaweedFS, rclone, moto): from
 * `.tools/bin/` (made by scripts/install-tools.sh) or FERRY_<TOOL>_BIN, with
 * an error that says how to get one that is missing; and the project's root.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export type ToolName = 'temporal' | 'weed' | 'rclone' | 'moto';

const TOOL_LABEL: Record<ToolName, string> = {
  temporal: 'the Temporal CLI',
  weed: 'SeaweedFS (weed)',
  rclone: 'rclone',
  moto: "moto's AWS API emulator (moto_server)",
};

/** The executable each tool installs, when it differs from the tool's name. */
const TOOL_BINARY: Partial<Record<ToolName, string>> = { moto: 'moto_server' };

/** A required external binary is not installed (or an override points nowhere). */
export class ToolMissingError extends Error {
  override readonly name = 'ToolMissingError';
  constructor(
    readonly tool: ToolName,
    readonly hint: string,
    message?: string,
  ) {
    super(message ?? `${TOOL_LABEL[tool]} (${tool}) not found: ${hint}`);
  }
}

/** The environment variable that overrides a tool's binary, e.g. FERRY_TEMPORAL_BIN. */
export function toolEnvVar(name: ToolName): string {
  return `FERRY_${name.toUpperCase()}_BIN`;
}

function isExecutableFile(p: string): boolean {
  try {
    const st = fs.statSync(p); // follows symlinks: a dangling link is "missing"
    if (!st.isFile()) return false;
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Path of a tool's binary: FERRY_<NAME>_BIN if set, else
 * `<repoRoot>/.tools/bin/<name>`. Throws ToolMissingError otherwise.
 */
export function resolveTool(name: ToolName, repoRoot: string): string {
  const envVar = toolEnvVar(name);
  const override = process.env[envVar];
  if (override !== undefined && override !== '') {
    const abs = path.resolve(override);
    if (!isExecutableFile(abs)) {
      const hint = `${envVar}=${override} is not an executable file: point it at ${TOOL_LABEL[name]} or unset it`;
      throw new ToolMissingError(name, hint, hint);
    }
    return abs;
  }
  const local = path.join(repoRoot, '.tools', 'bin', TOOL_BINARY[name] ?? name);
  if (isExecutableFile(local)) return local;
  const only = name === 'temporal' || name === 'weed' ? 'temporal,weed' : name;
  const hint =
    `run \`npm run tools\` (scripts/install-tools.sh; \`bash scripts/install-tools.sh --only ${only}\` for just this) ` +
    `to install it into ${path.join(repoRoot, '.tools', 'bin')}, or set ${envVar} to an existing binary`;
  throw new ToolMissingError(name, hint);
}

let cachedRepoRoot: string | undefined;

/**
 * The project root: the nearest directory above this module holding a
 * package.json named "ferry" (works from client/ and from dist/client/).
 */
export function repoRoot(): string {
  if (cachedRepoRoot !== undefined) return cachedRepoRoot;
  let dir = __dirname;
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    try {
      const parsed = JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: unknown };
      if (parsed.name === 'ferry') {
        cachedRepoRoot = dir;
        return dir;
      }
    } catch {
      // no (readable) package.json here: keep walking up
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`cannot find the ferry project root (a package.json named "ferry") above ${__dirname}`);
    }
    dir = parent;
  }
}
