/** The registry of target kinds: `--target` forms, JSON options, settings and how each driver refuses what it cannot use. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { S3BlobStore } from '../../activities/s3BlobStore';
import { TARGET_DRIVERS, configureTargets, parseTargetSpec, targetDriver, targetSettings } from '../../activities/targets';
import { TargetOptionsError } from '../../activities/targets/driver';
import { formatTargets, targetArgument } from '../../client/targets';
import { ConfigError } from '../../core/config';

const refused = (parse: () => unknown, problem: RegExp) => assert.throws(parse, (err: unknown) => err instanceof TargetOptionsError && problem.test(err.message));
/** Configuring reads only settings; no driver touches the store until a session is provisioned. */
const unusedStore = {} as S3BlobStore;

describe('target registry', () => {
  it('parses every kind\'s --target form, resolving a relative shell root against the working folder', () => {
    assert.deepEqual(parseTargetSpec('local', '/work'), { kind: 'local' });
    assert.deepEqual(parseTargetSpec('shell:runs', '/work'), { kind: 'shell', root: '/work/runs' });
    assert.deepEqual(parseTargetSpec('shell:/srv/ferry/', '/work'), { kind: 'shell', root: '/srv/ferry' });
    assert.deepEqual(parseTargetSpec('ssm:i-0123456789abcdef0', '/work'), { kind: 'ssm', instanceId: 'i-0123456789abcdef0', root: '/opt/ferry' });
    assert.deepEqual(parseTargetSpec('ecs', '/work'), { kind: 'ecs' });
  });

  it('refuses unknown kinds (listing the known ones) and options a kind does not take', () => {
    refused(() => parseTargetSpec('k8s:pod', '/'), /unknown target kind "k8s"; known: local, shell:<root>/);
    refused(() => parseTargetSpec('local:/x', '/'), /local takes no options/);
    refused(() => parseTargetSpec('ecs:cluster', '/'), /ecs takes no options on the command line/);
    refused(() => parseTargetSpec('shell:', '/'), /shell needs a folder/);
    refused(() => parseTargetSpec('shell:/', '/'), /must not be \//);
    refused(() => parseTargetSpec('ssm:web-1', '/'), /"web-1" is not an instance id/);
  });

  it('checks JSON options the same way, each driver naming every problem', () => {
    refused(() => targetDriver('ssm')!.normalize({ kind: 'ssm', instanceId: 'i-1', region: 'mars', root: 'rel' }), /instanceId "i-1".*; ssm target region "mars" is not a region; ssm target root "rel" must be an absolute path/);
    refused(() => targetDriver('local')!.normalize({ kind: 'local', root: '/x' }), /local target takes no options, got root/);
    refused(() => targetDriver('ecs')!.normalize({ kind: 'ecs', cluster: 'c' }), /ecs target takes no options/);
    assert.deepEqual(targetDriver('ssm')!.normalize({ kind: 'ssm', instanceId: 'i-0123456789abcdef0', region: 'eu-west-1' }), { kind: 'ssm', instanceId: 'i-0123456789abcdef0', region: 'eu-west-1', root: '/opt/ferry' });
  });

  it('--target takes a form or a JSON object, and says why it refuses one', () => {
    assert.deepEqual(targetArgument('{"kind":"ssm","instanceId":"i-0123456789abcdef0","root":"/data/ferry"}'), { kind: 'ssm', instanceId: 'i-0123456789abcdef0', root: '/data/ferry' });
    assert.throws(() => targetArgument('{"kind":'), /--target JSON does not parse/);
    assert.throws(() => targetArgument('{"kind":"nope"}'), /unknown target kind "nope"/);
    assert.throws(() => targetArgument('shell:/'), /must not be \//);
  });

  it('ferry targets lists every kind with its form, what its sessions are, and every setting it reads', () => {
    const listing = formatTargets();
    for (const driver of TARGET_DRIVERS) {
      assert.ok(listing.includes(driver.spec), driver.kind);
      assert.ok(listing.includes(driver.summary), driver.kind);
      for (const setting of driver.settings) assert.ok(listing.includes(`${setting.name}: ${setting.description}`), setting.name);
    }
    assert.deepEqual(
      targetSettings().map((s) => s.name).filter((name, i, all) => all.indexOf(name) !== i),
      [],
      'no two drivers declare the same setting',
    );
  });

  it('a worker configures each kind from its settings: a missing setting turns the kind off with the reason, a bad one stops the worker naming it', () => {
    const settings = (values: Record<string, string>) => (name: string) => values[name];
    const none = configureTargets({ settings: settings({}), blobs: unusedStore });
    assert.match(String(none.get('local')), /no local runtime agent: start the stack with `ferry up`/);
    assert.match(String(none.get('ecs')), /set FERRY_ECS_CLUSTER/);
    assert.equal(typeof none.get('shell'), 'object', 'shell needs no settings');
    assert.throws(() => configureTargets({ settings: settings({ FERRY_LOCAL_AGENT_URL: 'http://127.0.0.1:1' }), blobs: unusedStore }), (err: unknown) => err instanceof ConfigError && err.variable === 'FERRY_LOCAL_AGENT_TOKEN');
    assert.throws(() => configureTargets({ settings: settings({ FERRY_ECS_CLUSTER: 'c', FERRY_ECS_TASK_DEFINITION: 't', FERRY_ECS_SUBNETS: 'subnet-0a' }), blobs: unusedStore }), (err: unknown) => err instanceof ConfigError && err.variable === 'FERRY_SESSION_SECRET');
    assert.throws(() => configureTargets({ settings: settings({ FERRY_SSM_ENDPOINT: 'ftp://x' }), blobs: unusedStore }), (err: unknown) => err instanceof ConfigError && err.variable === 'FERRY_SSM_ENDPOINT');
  });
});
