/**
 * `ferry --version` and `ferry <command> --help` load no SDK: the Temporal,
 * AWS and MCP SDKs, the activities, workflows and worker load only in the
 * command that uses them, so the CLI starts fast (README, "CLI start").
 * Loaded modules are checked, not times, which depend on the machine.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { repoRoot } from '../../client/tools';

const run = promisify(execFile);
const root = repoRoot();
const preload = path.join(root, 'dist', 'test', 'support', 'loadedModules.js');

/** What the command line's registration path must not load. */
const HEAVY = [
  `${path.sep}node_modules${path.sep}@temporalio${path.sep}`,
  `${path.sep}node_modules${path.sep}@aws-sdk${path.sep}`,
  `${path.sep}node_modules${path.sep}@smithy${path.sep}`,
  `${path.sep}node_modules${path.sep}@modelcontextprotocol${path.sep}`,
  ...['activities', 'workflows', 'worker', 'temporal'].map((layer) => `${path.join(root, 'dist', layer)}${path.sep}`),
];

let scratch: string;
before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'ferry-cli-startup-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

async function ferry(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string; loaded: string[] }> {
  const loadedFile = path.join(scratch, `${args.join('-').replace(/[^A-Za-z0-9-]/g, '_')}.json`);
  const options = { cwd: scratch, env: { ...process.env, FERRY_HOME: scratch, ...env, FERRY_TEST_LOADED_MODULES: loadedFile } };
  let result: { code: number; stdout: string; stderr: string };
  try {
    result = { code: 0, ...(await run(process.execPath, ['--require', preload, path.join(root, 'bin', 'ferry.js'), ...args], options)) };
  } catch (err) {
    const failed = err as { code?: number; stdout?: string; stderr?: string };
    result = { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
  return { ...result, loaded: JSON.parse(await readFile(loadedFile, 'utf8')) as string[] };
}

const heavyIn = (loaded: string[]) => loaded.filter((file) => HEAVY.some((heavy) => file.includes(heavy)));

describe('CLI start', () => {
  it('--version prints the package version and loads no SDK', async () => {
    const { version } = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { version: string };
    const result = await ferry(['--version']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `${version}\n`);
    assert.ok(result.loaded.some((file) => file.endsWith(path.join('dist', 'client', 'cli.js'))), 'the preload saw the CLI load');
    assert.deepEqual(heavyIn(result.loaded), []);
  });

  const helps: { args: string[]; shows: RegExp[] }[] = [
    { args: ['--help'], shows: [/Usage: ferry/, /^ {2}sync /m, /^ {2}train /m, /^ {2}mcp /m] },
    { args: ['sync', '--help'], shows: [/--session <id>/, /--target <target>.*`ferry targets`/s, /--links <policy>/] },
    { args: ['pipeline', 'start', '--help'], shows: [/--input <path\|s3:\/\/bucket\/prefix\/>/, /--target <target>/] },
    { args: ['exec', '--help'], shows: [/--lang <language>/, /"python"/, /--offset <bytes>/] },
    { args: ['train', '--help'], shows: [/<command\.\.\.>/, /--grace <seconds>/] },
    { args: ['mcp', '--help'], shows: [/--http <port>/] },
    { args: ['up', '--help'], shows: [/--task-queue <name>/] },
  ];
  for (const { args, shows } of helps) {
    it(`${args.join(' ')} prints its usage and loads no SDK`, async () => {
      const result = await ferry(args);
      assert.equal(result.code, 0, result.stderr);
      for (const pattern of shows) assert.match(result.stdout, pattern);
      assert.deepEqual(heavyIn(result.loaded), []);
    });
  }

  it('up --help shows FERRY_TASK_QUEUE as the task queue default', async () => {
    const result = await ferry(['up', '--help'], { FERRY_TASK_QUEUE: 'from-the-env' });
    assert.match(result.stdout, /--task-queue <name>.*\(default: "from-the-env"\)/s);
  });

  it('a bad --target is refused before the command runs, in commander\'s words, naming the known kinds', async () => {
    const result = await ferry(['sync', scratch, '--session', 's1', '--target', 'k8s:pod']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^error: option '--target <target>' argument 'k8s:pod' is invalid\. unknown target kind "k8s"; known: local, shell:<root>/);
    assert.match(result.stderr, /\(run with --help for usage\)/);
    assert.equal(result.stdout, '');
  });
});
