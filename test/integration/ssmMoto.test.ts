/**
 * The `ssm` driver's requests against moto's server: SendCommand and
 * GetCommandInvocation shapes the real API accepts. moto executes nothing
 * (it answers Success with empty output), so only shapes are checked here;
 * statuses and failures are covered with aws-sdk-client-mock in
 * test/unit/ssmTarget.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ListCommandsCommand, SSMClient } from '@aws-sdk/client-ssm';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { S3BlobStore, createS3Clients } from '../../activities/s3BlobStore';
import { SsmTarget } from '../../activities/ssmTarget';
import { createTrainingActivities } from '../../activities/training';
import { START_SCRIPT } from '../../core/shellScripts';
import { freePort, repoRoot, resolveTool, startMotoServer, type StartedServer } from '../../client/services';

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
    const outcome = await new SsmTarget({ client: ssm, instanceId, pollInitialMs: 50 }).run({
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

  it('startProcess sends START_SCRIPT, and an answer without a report line (moto runs nothing) is a retryable TargetScriptFailed', async () => {
    const { client, presignClient } = createS3Clients({ endpoint: moto.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'moto', secretAccessKey: 'moto' } });
    const activities = createTrainingActivities({ blobs: new S3BlobStore({ client, presignClient, bucket: 'ferry', prefix: '', presignExpirySeconds: 300 }), ssm });
    await assert.rejects(
      new MockActivityEnvironment().run(activities.startProcess, {
        runId: 'moto-run',
        target: { kind: 'ssm' as const, instanceId, root: '/opt/ferry' },
        startId: 'start-1',
        command: ['python3', 'train.py', '--epochs', '3'],
        env: { WANDB_MODE: 'offline' },
      }),
      (err: unknown) => err instanceof ApplicationFailure && err.type === 'TargetScriptFailed' && err.nonRetryable === false && /printed no report line/.test(err.message),
    );
    const { Commands } = await ssm.send(new ListCommandsCommand({}));
    const text = Commands?.at(-1)?.Parameters?.commands?.[0] ?? '';
    assert.match(text, /^export FERRY_RUN_DIR='\/opt\/ferry\/runs\/moto-run'\n/m);
    assert.match(text, /^export FERRY_COMMAND=''\\''python3'\\'' '\\''train\.py'\\'' '\\''--epochs'\\'' '\\''3'\\'''\n/m);
    assert.match(text, /^export FERRY_USER_ENV='export WANDB_MODE='\\''offline'\\''\n'\n/m);
    assert.ok(text.endsWith(START_SCRIPT));
  });
});
