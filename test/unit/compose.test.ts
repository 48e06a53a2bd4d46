/**
 * docker-compose.yml is checked without an engine: `docker compose config`
 * where the plugin exists, else the compose-spec JSON schema (vendored in
 * test/fixtures/compose-spec). Then ferry's own wiring: every FERRY_*
 * variable a service sets is a real setting (core/config SETTINGS, one a
 * target driver declares, or one the runtime agent reads), the worker and agent agree on ports and the S3
 * bucket, and the agent image's pinned dependency matches package.json.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import Ajv2019 from 'ajv/dist/2019';
import { parse } from 'yaml';
import { targetSettings } from '../../activities/targets';
import { SETTINGS } from '../../core/config';
import { repoRoot } from '../../client/tools';

const run = promisify(execFile);
const root = repoRoot();
const composeFile = path.join(root, 'docker-compose.yml');
const compose = parse(readFileSync(composeFile, 'utf8')) as {
  services: Record<string, { environment?: Record<string, string>; ports?: string[]; build?: { dockerfile: string }; image?: string; command?: string[] }>;
};
const interpolationEnv = { FERRY_S3_SECRET_ACCESS_KEY: 'x'.repeat(40), FERRY_LOCAL_AGENT_TOKEN: 'y'.repeat(48), PWD: root };

async function composePluginAvailable(): Promise<boolean> {
  try {
    await run('docker', ['compose', 'version']);
    return true;
  } catch {
    return false;
  }
}

/** The variable a `${NAME…}` value interpolates. */
const variableOf = (value: string | undefined) => /^\$\{(\w+)/.exec(value ?? '')?.[1];
/** A setting of core/config or one a target driver declares. */
const isFerrySetting = (name: string) => name in SETTINGS || targetSettings().some((setting) => setting.name === name);

/**
 * The schema labels its parts with draft-04 `"id": "#/definitions/…"`, which
 * Ajv refuses; its `$ref`s are JSON pointers that do not need them.
 */
function withoutLegacyIds(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutLegacyIds);
  if (typeof node !== 'object' || node === null) return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key, value]) => !(key === 'id' && typeof value === 'string' && (value.startsWith('#') || value.endsWith('.json'))))
      .map(([key, value]) => [key, withoutLegacyIds(value)]),
  );
}

/** Compose's duration format: 1h2m3s, 500ms, 10s … */
const DURATION = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;

describe('docker-compose.yml', () => {
  it('is valid: `docker compose config`, or the compose-spec schema when the plugin is missing', async (t) => {
    if (await composePluginAvailable()) {
      const { stdout } = await run('docker', ['compose', '-f', composeFile, 'config', '--quiet'], { env: { ...process.env, ...interpolationEnv } });
      assert.equal(stdout.trim(), '');
      return;
    }
    t.diagnostic('docker compose plugin not found: validating against the vendored compose-spec schema');
    const { $schema: dialect, ...schema } = JSON.parse(readFileSync(path.join(root, 'test', 'fixtures', 'compose-spec', 'compose-spec.json'), 'utf8')) as { $schema: string };
    assert.match(dialect, /draft\/2019-09/, 'Ajv2019 speaks the dialect the schema declares');
    // The schema uses draft-04 style "id"s and formats of its own; strict mode would reject the schema, not the file.
    const ajv = new Ajv2019({ strict: false, allErrors: true });
    ajv.addFormat('duration', DURATION);
    for (const format of ['expose', 'ports', 'subnet_ip_address']) ajv.addFormat(format, true);
    const validate = ajv.compile(withoutLegacyIds(schema) as object);
    const valid = validate(compose);
    assert.ok(valid, JSON.stringify(validate.errors, null, 2));

    // The validator rejects what it should: an unknown key, and a malformed duration.
    const broken = structuredClone(compose) as Record<string, unknown> & { services: Record<string, Record<string, unknown>> };
    broken.services.worker.stop_grace_period = 'thirty seconds';
    assert.equal(validate(broken), false);
    const unknown = structuredClone(compose) as { services: Record<string, Record<string, unknown>> };
    unknown.services.worker.enviroment = {};
    assert.equal(validate(unknown), false);
  });

  it('sets only real ferry settings, and every ${…} it reads is one', () => {
    const agentSource = readFileSync(path.join(root, 'runtime', 'main.ts'), 'utf8');
    const agentSetting = (name: string) => new RegExp(`['"]${name}['"]|env\\.${name}\\b`).test(agentSource);
    for (const [service, definition] of Object.entries(compose.services)) {
      for (const name of Object.keys(definition.environment ?? {})) {
        if (!name.startsWith('FERRY_')) {
          assert.equal(service, 's3', `${service} sets ${name}, which is not a ferry setting`);
          continue;
        }
        const known = name.startsWith('FERRY_AGENT_') ? agentSetting(name) : isFerrySetting(name);
        assert.ok(known, `${service} sets ${name}, which ferry does not read`);
      }
    }
    const referenced = [...readFileSync(composeFile, 'utf8').matchAll(/\$\{(\w+)/g)].map((m) => m[1]);
    for (const name of referenced) assert.ok(name === 'PWD' || isFerrySetting(name), `\${${name}} is not a ferry setting`);
  });

  it('wires the worker, agent and S3 server to each other', () => {
    const { worker, agent, s3, temporal } = compose.services;
    const workerEnv = worker.environment!;
    const agentEnv = agent.environment!;
    assert.equal(workerEnv.FERRY_LOCAL_AGENT_URL, `http://agent:${agentEnv.FERRY_AGENT_PORT}`);
    assert.equal(variableOf(workerEnv.FERRY_LOCAL_AGENT_TOKEN), 'FERRY_LOCAL_AGENT_TOKEN');
    assert.equal(variableOf(agentEnv.FERRY_AGENT_TOKEN), 'FERRY_LOCAL_AGENT_TOKEN');
    assert.equal(agentEnv.FERRY_AGENT_ALLOWED_URL_PREFIXES, `${workerEnv.FERRY_S3_ENDPOINT}/${workerEnv.FERRY_S3_BUCKET}/`);
    assert.ok(s3.command?.includes(`-bucket=${workerEnv.FERRY_S3_BUCKET}`), 'the S3 server creates the bucket the worker uses');
    assert.equal(variableOf(workerEnv.FERRY_S3_SECRET_ACCESS_KEY), 'FERRY_S3_SECRET_ACCESS_KEY');
    assert.equal(variableOf(s3.environment!.AWS_SECRET_ACCESS_KEY), 'FERRY_S3_SECRET_ACCESS_KEY');
    assert.equal(workerEnv.FERRY_S3_ACCESS_KEY_ID, s3.environment!.AWS_ACCESS_KEY_ID);
    assert.equal(workerEnv.FERRY_TEMPORAL_ADDRESS, 'temporal:7233');
    for (const attribute of ['FerrySessionId', 'FerryStage', 'FerryTarget']) assert.ok(temporal.command?.includes(`--search-attribute=${attribute}=Keyword`), attribute);
    for (const definition of Object.values(compose.services)) for (const port of definition.ports ?? []) assert.match(port, /^127\.0\.0\.1:/, 'host ports bind to loopback');
  });

  it("pins the agent image's only npm dependency to package.json's version", () => {
    const dockerfile = readFileSync(path.join(root, 'runtime', 'Dockerfile'), 'utf8');
    assert.match(dockerfile, /dependencies\['p-limit'\]/);
    const imports = readdirSync(path.join(root, 'runtime'))
      .filter((name) => name.endsWith('.ts'))
      .map((name) => readFileSync(path.join(root, 'runtime', name), 'utf8'))
      .flatMap((source) => [...source.matchAll(/from '([^.][^']*)'/g)].map((m) => m[1]))
      .filter((name) => !name.startsWith('node:'));
    assert.deepEqual([...new Set(imports)], ['p-limit'], 'the runtime image carries only p-limit');
  });
});

describe('runtime agent image contents', () => {
  it('starts from only what runtime/Dockerfile copies (dist/core, dist/runtime, p-limit) and answers health', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ferry-image-'));
    try {
      const opt = path.join(dir, 'opt', 'ferry');
      for (const folder of ['dist/core', 'dist/runtime', 'node_modules/p-limit', 'node_modules/yocto-queue'])
        cpSync(path.join(root, folder), path.join(opt, folder), { recursive: true });
      const token = 't'.repeat(32);
      const child = spawn(process.execPath, [path.join(opt, 'dist', 'runtime', 'main.js')], {
        cwd: dir,
        // Code as this process's user: the image's own user (FERRY_AGENT_RUN_AS=ferry) does not exist here.
        env: { PATH: process.env.PATH, FERRY_AGENT_ROOT: path.join(dir, 'app'), FERRY_AGENT_TOKEN: token, FERRY_AGENT_PORT: '0', FERRY_AGENT_ALLOWED_URL_PREFIXES: 'http://s3:8333/ferry/', FERRY_AGENT_RUN_AS: `${process.getuid!()}:${process.getgid!()}` },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
      const { url } = JSON.parse(line) as { url: string };
      const health = await fetch(`${url}/v1/health`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(health.status, 200);
      assert.equal(((await health.json()) as { ok: boolean }).ok, true);
      child.kill('SIGTERM');
      const [code] = (await once(child, 'exit')) as [number];
      assert.equal(code, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
