/**
 * deploy/ templates agree with the code: the agent's task definition has
 * the container, port and root the ECS driver expects and no task role; the
 * worker's task definition sets only real settings and resolves to a valid
 * config; the worker's IAM policy grants every AWS call the activities make
 * and nothing wider.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { RegisterTaskDefinitionCommandInput } from '@aws-sdk/client-ecs';
import { targetSettings } from '../../activities/targets';
import { ECS_AGENT_ROOT, resolveEcsSettings } from '../../activities/targets/ecs';
import { repoRoot } from '../../client/tools';
import { resolveConfig, SETTINGS } from '../../core/config';
import { deployTemplate } from '../support/deployTemplates';

interface Statement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action: string | string[];
  Resource: string | string[];
  Condition?: Record<string, Record<string, unknown>>;
}
const list = (value: string | string[]) => (Array.isArray(value) ? value : [value]);

/** The IAM action each SDK command the activities send needs (HeadObject is authorised as GetObject, and so on). */
const IAM_ACTION_OF_COMMAND: Record<string, string> = {
  GetObjectCommand: 's3:GetObject',
  HeadObjectCommand: 's3:GetObject',
  PutObjectCommand: 's3:PutObject',
  CreateMultipartUploadCommand: 's3:PutObject',
  UploadPartCommand: 's3:PutObject',
  CompleteMultipartUploadCommand: 's3:PutObject',
  AbortMultipartUploadCommand: 's3:AbortMultipartUpload',
  ListObjectsV2Command: 's3:ListBucket',
  DeleteObjectsCommand: 's3:DeleteObject',
  RunTaskCommand: 'ecs:RunTask',
  DescribeTasksCommand: 'ecs:DescribeTasks',
  ListTasksCommand: 'ecs:ListTasks',
  StopTaskCommand: 'ecs:StopTask',
  SendCommandCommand: 'ssm:SendCommand',
  GetCommandInvocationCommand: 'ssm:GetCommandInvocation',
  ListCommandInvocationsCommand: 'ssm:ListCommandInvocations',
};

describe('deploy/ templates', () => {
  const agent = deployTemplate<RegisterTaskDefinitionCommandInput>('ecs/runtime-task-definition.json');
  const worker = deployTemplate<RegisterTaskDefinitionCommandInput>('ecs/worker-task-definition.json');

  it('the agent task definition is what the ECS driver starts: Fargate, awsvpc, container and port as configured, no task role, no token baked in', () => {
    const defaults = resolveEcsSettings(resolveConfig({ FERRY_ECS_CLUSTER: 'c', FERRY_ECS_TASK_DEFINITION: 'ferry-agent', FERRY_ECS_SUBNETS: 'subnet-0a' }).settings)!;
    assert.deepEqual(agent.requiresCompatibilities, ['FARGATE']);
    assert.equal(agent.networkMode, 'awsvpc');
    assert.equal(agent.taskRoleArn, undefined, 'blobs come by presigned URL: the agent needs no AWS permissions');
    const [container] = agent.containerDefinitions!;
    assert.equal(container.name, defaults.containerName);
    assert.deepEqual(container.portMappings, [{ containerPort: defaults.agentPort, protocol: 'tcp' }]);
    const env = Object.fromEntries(container.environment!.map((e) => [e.name, e.value]));
    assert.equal(env.FERRY_AGENT_ROOT, ECS_AGENT_ROOT);
    assert.equal(env.FERRY_AGENT_PORT, String(defaults.agentPort));
    assert.equal(env.FERRY_AGENT_TOKEN, undefined, 'the token is per session, passed as a container override');
    const dockerfile = readFileSync(path.join(repoRoot(), 'runtime', 'Dockerfile'), 'utf8');
    // The agent starts as root (the image's user) so that the code it runs is another user's, the one the image creates.
    assert.equal(container.user, undefined, 'the task runs as the image user');
    assert.doesNotMatch(dockerfile, /^USER /m, 'the image user is root');
    assert.match(dockerfile, new RegExp(`useradd --uid \\d+ [^\\n]* ${env.FERRY_AGENT_RUN_AS} \\\\$`, 'm'), 'code runs as a user the image creates');
    assert.match(dockerfile, new RegExp(`FERRY_AGENT_STATE_DIR=${env.FERRY_AGENT_STATE_DIR}\\b`), "the image's state folder");
    assert.match(dockerfile, new RegExp(`install -d -m 0700 -o root -g root ${env.FERRY_AGENT_STATE_DIR}\\b`), 'made 0700 for root alone');
  });

  it('the worker task definition sets only real settings, and they resolve to a config that starts sessions from the agent task definition', () => {
    const [container] = worker.containerDefinitions!;
    const names = [...container.environment!.map((e) => e.name!), ...container.secrets!.map((s) => s.name!)];
    const known = new Set([...Object.keys(SETTINGS), ...targetSettings().map((s) => s.name)]);
    for (const name of names) assert.ok(known.has(name), `${name} is not a ferry setting`);
    const env = Object.fromEntries(container.environment!.map((e) => [e.name!, e.value!]));
    const config = resolveConfig({
      ...env,
      FERRY_SESSION_SECRET: 's'.repeat(64),
      FERRY_TEMPORAL_API_KEY: 'key',
      FERRY_CODEC_KEY: Buffer.alloc(32, 1).toString('base64'),
      FERRY_ECS_SECURITY_GROUPS: 'sg-0a9e',
    });
    const ecs = resolveEcsSettings(config.settings);
    assert.equal(ecs?.taskDefinition, agent.family);
    assert.equal(ecs?.containerName, agent.containerDefinitions![0].name);
    assert.deepEqual(ecs?.subnets, ['subnet-0aaa', 'subnet-0bbb']);
    assert.ok(config.temporal.tls, 'an API key means TLS');
    assert.equal(worker.taskRoleArn, 'arn:aws:iam::123456789012:role/ferry-worker');
  });

  it('the worker policy grants every AWS call the activities make, scoped, with no wildcard actions', () => {
    const policy = deployTemplate<{ Version: string; Statement: Statement[] }>('iam/worker-policy.json');
    assert.equal(policy.Version, '2012-10-17');
    const granted = new Set(policy.Statement.filter((s) => s.Effect === 'Allow').flatMap((s) => list(s.Action)));
    const activities = path.join(repoRoot(), 'activities');
    const commands = readdirSync(activities, { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.ts'))
      .flatMap((file) => [...readFileSync(path.join(activities, file), 'utf8').matchAll(/new (\w+Command)\(/g)].map((m) => m[1]));
    assert.ok(commands.includes('RunTaskCommand') && commands.includes('PutObjectCommand'), 'the scan finds the calls');
    for (const command of new Set(commands)) {
      const action = IAM_ACTION_OF_COMMAND[command];
      assert.ok(action, `${command}: add its IAM action to this test and to deploy/iam/worker-policy.json`);
      assert.ok(granted.has(action), `${command} needs ${action}`);
    }
    // RunTask with tags needs TagResource; a task definition with roles needs PassRole.
    assert.ok(granted.has('ecs:TagResource') && granted.has('iam:PassRole'));
    for (const statement of policy.Statement) {
      for (const action of list(statement.Action)) assert.doesNotMatch(action, /\*/, `${statement.Sid}: wildcard action ${action}`);
      const unscoped = list(statement.Resource).includes('*');
      if (unscoped) {
        const allowedUnscoped = list(statement.Action).every((a) => ['ssm:GetCommandInvocation', 'ssm:ListCommandInvocations'].includes(a)) || statement.Condition !== undefined;
        assert.ok(allowedUnscoped, `${statement.Sid}: Resource "*" without a condition`);
      }
    }
    const deletes = policy.Statement.filter((s) => list(s.Action).includes('s3:DeleteObject'));
    for (const resource of deletes.flatMap((s) => list(s.Resource))) {
      assert.match(resource, /^arn:aws:s3:::[\w-]+\/ferry\/tmp\/\*$/, 'the worker deletes only temporary objects, never blobs or logs');
    }
    const passRole = policy.Statement.find((s) => list(s.Action).includes('iam:PassRole'))!;
    assert.equal(passRole.Resource, agent.executionRoleArn, 'PassRole names exactly the agent execution role');
  });
});
