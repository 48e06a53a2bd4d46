/** The settings for running beyond one machine: defaults, and errors naming the variable. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { targetSettings } from '../../activities/targets';
import { resolveEcsSettings } from '../../activities/targets/ecs';
import { ConfigError, resolveConfig, SETTINGS } from '../../core/config';

const failsWith = (resolve: () => unknown, variable: string, message?: RegExp) =>
  assert.throws(resolve, (err: unknown) => err instanceof ConfigError && err.variable === variable && err.message.startsWith(`${variable}:`) && (!message || message.test(err.message)));
const fails = (env: Record<string, string>, variable: string, message?: RegExp) => failsWith(() => resolveConfig(env), variable, message);
const ecsSettings = (env: Record<string, string>) => resolveEcsSettings(resolveConfig(env).settings);
const ecsFails = (env: Record<string, string>, variable: string, message?: RegExp) => failsWith(() => ecsSettings(env), variable, message);

describe('deployment settings', () => {
  it('defaults: plain connection, no ECS, no encryption, documented worker tuning', () => {
    const config = resolveConfig({});
    assert.equal(config.temporal.tls, undefined);
    assert.equal(config.temporal.apiKey, undefined);
    assert.equal(ecsSettings({}), undefined);
    assert.equal(config.codec, undefined);
    assert.deepEqual(config.worker, {
      maxCachedWorkflows: undefined,
      maxConcurrentActivities: 20,
      maxConcurrentWorkflowTasks: 40,
      workflowBundlePath: undefined,
      metricsAddress: undefined,
      shutdownGraceSeconds: 25,
    });
  });

  it('Temporal Cloud: an API key turns TLS on; mTLS needs both files', () => {
    const cloud = resolveConfig({ FERRY_TEMPORAL_ADDRESS: 'ferry.a1b2c.tmprl.cloud:7233', FERRY_NAMESPACE: 'ferry.a1b2c', FERRY_TEMPORAL_API_KEY: 'key' });
    assert.deepEqual(cloud.temporal.tls, { serverName: undefined, caFile: undefined, clientCertFile: undefined, clientKeyFile: undefined });
    assert.equal(cloud.temporal.apiKey, 'key');
    fails({ FERRY_TEMPORAL_TLS_CERT: '/c.pem' }, 'FERRY_TEMPORAL_TLS_KEY');
    fails({ FERRY_TEMPORAL_TLS: 'false', FERRY_TEMPORAL_API_KEY: 'k' }, 'FERRY_TEMPORAL_TLS', /needs TLS/);
    fails({ FERRY_TEMPORAL_TLS: 'yes' }, 'FERRY_TEMPORAL_TLS');
    fails({ FERRY_TEMPORAL_TLS_CA: '/ca.pem' }, 'FERRY_TEMPORAL_TLS_CA');
  });

  it('ECS: cluster turns the target on; task definition and subnets are required; ids are checked', () => {
    const env = { FERRY_ECS_CLUSTER: 'ferry', FERRY_ECS_TASK_DEFINITION: 'ferry-agent:3', FERRY_ECS_SUBNETS: 'subnet-0a1, subnet-0b2', FERRY_S3_REGION: 'eu-west-1' };
    assert.deepEqual(ecsSettings(env), {
      cluster: 'ferry',
      taskDefinition: 'ferry-agent:3',
      containerName: 'ferry-agent',
      subnets: ['subnet-0a1', 'subnet-0b2'],
      securityGroups: [],
      assignPublicIp: false,
      agentPort: 8390,
      region: 'eu-west-1',
      endpoint: undefined,
    });
    ecsFails({ FERRY_ECS_CLUSTER: 'ferry', FERRY_ECS_SUBNETS: 'subnet-0a1' }, 'FERRY_ECS_TASK_DEFINITION');
    ecsFails({ FERRY_ECS_CLUSTER: 'ferry', FERRY_ECS_TASK_DEFINITION: 't' }, 'FERRY_ECS_SUBNETS');
    ecsFails({ ...env, FERRY_ECS_SUBNETS: 'sn-1' }, 'FERRY_ECS_SUBNETS', /"sn-1" is not a subnet id/);
    ecsFails({ ...env, FERRY_ECS_SECURITY_GROUPS: 'default' }, 'FERRY_ECS_SECURITY_GROUPS');
    ecsFails({ ...env, FERRY_ECS_AGENT_PORT: '70000' }, 'FERRY_ECS_AGENT_PORT');
    ecsFails({ ...env, FERRY_ECS_ASSIGN_PUBLIC_IP: 'ENABLED' }, 'FERRY_ECS_ASSIGN_PUBLIC_IP');
    ecsFails({ FERRY_ECS_SUBNETS: 'subnet-0a1' }, 'FERRY_ECS_SUBNETS', /without FERRY_ECS_CLUSTER/);
  });

  it('worker tuning, metrics and the codec key are validated', () => {
    const config = resolveConfig({ FERRY_WORKER_MAX_CACHED_WORKFLOWS: '500', FERRY_METRICS_ADDRESS: '0.0.0.0:9464', FERRY_CODEC_KEY: Buffer.alloc(32, 7).toString('base64') });
    assert.equal(config.worker.maxCachedWorkflows, 500);
    assert.equal(config.worker.metricsAddress, '0.0.0.0:9464');
    assert.equal(config.codec?.key.length, 32);
    fails({ FERRY_WORKER_MAX_CONCURRENT_ACTIVITIES: '0' }, 'FERRY_WORKER_MAX_CONCURRENT_ACTIVITIES');
    fails({ FERRY_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS: '1' }, 'FERRY_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS');
    fails({ FERRY_METRICS_ADDRESS: 'http://x:1' }, 'FERRY_METRICS_ADDRESS');
    fails({ FERRY_CODEC_KEY: Buffer.alloc(16).toString('base64') }, 'FERRY_CODEC_KEY', /32 random bytes/);
    fails({ FERRY_CODEC_KEY: 'not base64!' }, 'FERRY_CODEC_KEY');
  });

  it('documents a default (or "required"/"none"/"unset") for every setting, the target drivers\' included', () => {
    const documented = [...Object.entries(SETTINGS), ...targetSettings().map((s) => [s.name, s.description] as const)];
    for (const [name, doc] of documented) assert.match(doc, /default|required|unset|set by|sets it/i, `${name}: ${doc}`);
    assert.ok(documented.some(([name]) => name === 'FERRY_ECS_CLUSTER') && documented.some(([name]) => name === 'FERRY_LOCAL_AGENT_URL'));
  });
});
