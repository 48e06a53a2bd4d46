/**
 * The `ssm` driver's requests against moto's server: SendCommand and
 * GetCommandInvocation shapes the real API accepts, sent through the driver
 * as the worker configures it (FERRY_SSM_ENDPOINT). moto executes nothing
 * (it answers Success with empty output), so only shapes are checked here;
 * statuses and failures are covered with aws-sdk-client-mock in
 * test/unit/ssmTarget.test.ts, and the scripts themselves run for real on
 * the shell and ssh targets.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ListCommandsCommand, SSMClient } from '@aws-sdk/client-ssm';
import { ApplicationFailure } from '@temporalio/common';
import { S3BlobStore, createS3Clients } from '../../activities/s3BlobStore';
import { createSessionActivities } from '../../activities/session';
import { configureTargets } from '../../activities/targets';
import { SsmChannel } from '../../activities/targets/ssm';
import { PREPARE_SCRIPT, START_SCRIPT } from '../../core/shellScripts';
import { freePort } from '../../client/ports';
import { repoRoot, resolveTool } from '../../client/tools';
import { startMotoServer } from '../support/motoServer';
import { type StartedServer } from '../../client/managedProcess';
import { activityEnvironment } from '../support/testLogs';

let moto: StartedServer & { endpoint: string };
let dir: string;
let ssm: SSMClient;
const instanceId = 'i-0abcdef1234567890';

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-moto-ssm-'));
  moto = await startMotoServer({ binary: resolveTool('moto', repoRoot()), host: '127.0.0.1', port: await freePort(), logFile: path.join(dir, 'moto.log') });
  ssm = new SSMClient({ endpoint: moto.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'moto', secretAccessKey: 'moto' } });
});

after(async () => {
  ssm?.destroy();
  await moto?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('ssm driver against moto', () => {
  it('SendCommand carries the document, instance, comment, timeout and the script with its quoted environment', async () => {
    const outcome = await new SsmChannel({ client: ssm, instanceId, pollInitialMs: 50 }).run({
      purpose: 'land',
      script: 'echo "$FERRY_X"',
      env: { FERRY_X: "quote ' and $(subshell)" },
      timeoutMs: 120_000,
    });
    assert.deepEqual(outcome, { exitCode: 0, stdout: '', stderr: '', stdoutTruncated: false });

    const { Commands } = await ssm.send(new ListCommandsCommand({}));
    const command = Commands?.at(-1);
    assert.equal(command?.DocumentName, 'AWS-RunShellScript');
    assert.deepEqual(command?.InstanceIds, [instanceId]);
    assert.equal(command?.Comment, 'ferry land');
    assert.deepEqual(command?.Parameters?.commands, [`export FERRY_X='quote '\\'' and $(subshell)'\necho "$FERRY_X"`]);
    assert.deepEqual(command?.Parameters?.executionTimeout, ['120']);
  });

  it('through the activities and the configured driver: provisioning sends PREPARE_SCRIPT, a start START_SCRIPT, and an answer without a report line (moto runs nothing) is a retryable TargetScriptFailed', async () => {
    const { client, presignClient } = createS3Clients({ endpoint: moto.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'moto', secretAccessKey: 'moto' } });
    const blobs = new S3BlobStore({ client, presignClient, bucket: 'ferry', prefix: '', presignExpirySeconds: 300 });
    const settings: Record<string, string> = { FERRY_SSM_ENDPOINT: moto.endpoint };
    const previous = { region: process.env.AWS_REGION, key: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    // The driver uses the AWS SDK's default chain, as on a worker; moto accepts any credentials.
    Object.assign(process.env, { AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'moto', AWS_SECRET_ACCESS_KEY: 'moto' });
    try {
      const activities = createSessionActivities({ blobs, targets: configureTargets({ settings: (name) => settings[name], blobs }) });
      const target = { kind: 'ssm', instanceId };
      const purpose = 'training' as const;
      const failsWithoutReport = (err: unknown) => err instanceof ApplicationFailure && err.type === 'TargetScriptFailed' && err.nonRetryable === false && /printed no report line/.test(err.message);
      await assert.rejects(activityEnvironment().run(activities.provisionSession, { sessionId: 'moto-run', target, purpose }), failsWithoutReport);
      let { Commands } = await ssm.send(new ListCommandsCommand({}));
      const prepare = Commands?.at(-1)?.Parameters?.commands?.[0] ?? '';
      assert.match(prepare, /^export FERRY_ROOT='\/opt\/ferry'\nexport FERRY_SESSION='moto-run'\nexport FERRY_DIRS='project outputs'\n/);
      assert.ok(prepare.endsWith(PREPARE_SCRIPT));

      const session = { sessionId: 'moto-run', target: { ...target, root: '/opt/ferry' }, bootId: 'b', root: '/opt/ferry/sessions/moto-run', details: {} };
      await assert.rejects(
        activityEnvironment().run(activities.startProcess, { session, processId: 'start-1', command: ['python3', 'train.py', '--epochs', '3'], env: { WANDB_MODE: 'offline' }, cwd: 'project' }),
        failsWithoutReport,
      );
      ({ Commands } = await ssm.send(new ListCommandsCommand({})));
      const text = Commands?.at(-1)?.Parameters?.commands?.[0] ?? '';
      assert.match(text, /^export FERRY_CWD='project'\n/m);
      assert.match(text, /^export FERRY_COMMAND=''\\''python3'\\'' '\\''train\.py'\\'' '\\''--epochs'\\'' '\\''3'\\'''\n/m);
      assert.match(text, /^export FERRY_USER_ENV='export WANDB_MODE='\\''offline'\\''\n'\n/m);
      assert.ok(text.endsWith(START_SCRIPT));
    } finally {
      for (const [name, value] of [['AWS_REGION', previous.region], ['AWS_ACCESS_KEY_ID', previous.key], ['AWS_SECRET_ACCESS_KEY', previous.secret]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});
