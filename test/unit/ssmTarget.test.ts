/**
 * The `ssm` driver at the API level, with aws-sdk-client-mock: every
 * invocation status, registration lag, throttling, output truncation, and
 * how the session activities turn each outcome into a typed failure.
 */
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { GetCommandInvocationCommand, InvocationDoesNotExist, SendCommandCommand, SSMClient, ThrottlingException, type GetCommandInvocationCommandOutput } from '@aws-sdk/client-ssm';
import { ApplicationFailure } from '@temporalio/common';
import { mockClient } from 'aws-sdk-client-mock';
import { S3BlobStore, createS3Clients } from '../../activities/s3BlobStore';
import { createSessionActivities } from '../../activities/session';
import { TargetCommandError, scriptBackend } from '../../activities/targets/scriptReach';
import { SSM_STDOUT_LIMIT, SsmChannel, type SsmTargetOptions } from '../../activities/targets/ssm';
import { PROBE_SCRIPT } from '../../core/shellScripts';
import type { SessionHandle } from '../../core/target';
import { activityEnvironment } from '../support/testLogs';

const client = new SSMClient({ region: 'eu-west-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
const ssm = mockClient(client);
const instanceId = 'i-0123456789abcdef0';
const fast = { pollInitialMs: 1, pollMaxMs: 2 };

beforeEach(() => {
  ssm.reset();
  ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-1' } });
});

const invocation = (output: Partial<GetCommandInvocationCommandOutput>): GetCommandInvocationCommandOutput => ({ $metadata: {}, ...output });
const notYet = () => new InvocationDoesNotExist({ message: 'not yet', $metadata: {} });
const target = (options: Partial<ConstructorParameters<typeof SsmChannel>[0]> = {}) => new SsmChannel({ client, instanceId, ...fast, ...options });
const script = { purpose: 'probe', script: 'echo "$GREETING"', env: { GREETING: "it's $(id)" }, timeoutMs: 60_000 };

describe('SsmChannel', () => {
  it('sends the script with its environment as quoted exports, and polls through registration lag and every waiting status', async () => {
    ssm
      .on(GetCommandInvocationCommand)
      .rejectsOnce(notYet())
      .resolvesOnce(invocation({ Status: 'Pending' }))
      .resolvesOnce(invocation({ Status: 'InProgress' }))
      .resolvesOnce(invocation({ Status: 'Delayed' }))
      .resolvesOnce(invocation({ Status: 'Success', ResponseCode: 0, StandardOutputContent: 'ferry-report {"ok":true}\n' }));
    let waits = 0;
    const outcome = await target().run(script, { onWait: () => waits++ });
    assert.deepEqual(outcome, { exitCode: 0, stdout: 'ferry-report {"ok":true}\n', stderr: '', stdoutTruncated: false });
    assert.equal(waits, 5);

    const [send] = ssm.commandCalls(SendCommandCommand);
    const input = send!.args[0].input;
    assert.deepEqual(input.InstanceIds, [instanceId]);
    assert.equal(input.DocumentName, 'AWS-RunShellScript');
    assert.equal(input.Comment, 'ferry probe');
    assert.deepEqual(input.Parameters?.commands, [`export GREETING='it'\\''s $(id)'\necho "$GREETING"`]);
    assert.deepEqual(input.Parameters?.executionTimeout, ['60']);
    assert.equal(ssm.commandCalls(GetCommandInvocationCommand, { CommandId: 'cmd-1', InstanceId: instanceId }).length, 5);
  });

  it('returns a Failed script with its exit code, for the caller to read the report', async () => {
    ssm.on(GetCommandInvocationCommand).resolves(invocation({ Status: 'Failed', StatusDetails: 'Failed', ResponseCode: 3, StandardOutputContent: 'ferry-report {"ok":false,"reason":"unsafe"}\n', StandardErrorContent: 'ferry: bad' }));
    const outcome = await target().run(script);
    assert.equal(outcome.exitCode, 3);
    assert.equal(outcome.stderr, 'ferry: bad');
  });

  for (const [status, statusDetails, kind] of [
    ['TimedOut', 'DeliveryTimedOut', 'timedOut'],
    ['TimedOut', 'ExecutionTimedOut', 'timedOut'],
    ['Cancelled', 'Cancelled', 'cancelled'],
    ['Failed', 'Undeliverable', 'undeliverable'],
    ['Failed', 'Terminated', 'undeliverable'],
  ] as const) {
    it(`${status} (${statusDetails}) throws a ${kind} TargetCommandError naming the command`, async () => {
      ssm.on(GetCommandInvocationCommand).resolves(invocation({ Status: status, StatusDetails: statusDetails, ResponseCode: -1 }));
      await assert.rejects(target().run(script), (err: unknown) => {
        assert.ok(err instanceof TargetCommandError);
        assert.equal(err.kind, kind);
        assert.match(err.message, /probe command cmd-1/);
        assert.equal(err.details.statusDetails, statusDetails);
        return true;
      });
    });
  }

  it('backs off on throttling and carries on', async () => {
    const throttled = () => new ThrottlingException({ message: 'Rate exceeded', Message: 'Rate exceeded', $metadata: {} });
    ssm
      .on(GetCommandInvocationCommand)
      .rejectsOnce(throttled())
      .rejectsOnce(throttled())
      .resolvesOnce(invocation({ Status: 'Success', ResponseCode: 0, StandardOutputContent: 'ferry-report {"ok":true}' }));
    assert.equal((await target().run(script)).exitCode, 0);
    assert.equal(ssm.commandCalls(GetCommandInvocationCommand).length, 3);
  });

  it('InvocationDoesNotExist past the registration grace is an error, not an endless wait', async () => {
    ssm.on(GetCommandInvocationCommand).rejects(notYet());
    await assert.rejects(target({ registrationGraceMs: 20 }).run(script), InvocationDoesNotExist);
  });

  it('marks stdout cut at the SSM limit as truncated', async () => {
    ssm.on(GetCommandInvocationCommand).resolves(invocation({ Status: 'Success', ResponseCode: 0, StandardOutputContent: 'x'.repeat(SSM_STDOUT_LIMIT) }));
    assert.equal((await target().run(script)).stdoutTruncated, true);
  });
});

describe('session activities over the ssm driver', () => {
  const { client: s3, presignClient } = createS3Clients({ endpoint: 'http://127.0.0.1:9', region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
  const blobs = new S3BlobStore({ client: s3, presignClient, bucket: 'ferry', prefix: '', presignExpirySeconds: 300 });
  const backend = scriptBackend<SsmTargetOptions>(blobs, (options) => ({ channel: new SsmChannel({ client, instanceId: options.instanceId, ...fast }), root: options.root }));
  const activities = createSessionActivities({ blobs, targets: new Map([['ssm', backend]]) });
  const session: SessionHandle = { sessionId: 'r1', target: { kind: 'ssm', instanceId, root: '/opt/ferry' }, bootId: 'b', root: '/opt/ferry/sessions/r1', details: {} };
  const probe = () => activityEnvironment().run(activities.probeProcess, { session, runId: 'r1', processId: 'start-1', logOffset: 10 });

  it('a probe reads its report line; the presigned chunk URL and the session travel in the script, the root from the target', async () => {
    const tail = Buffer.from('epoch 3/3\n').toString('base64');
    ssm.on(GetCommandInvocationCommand).resolves(
      invocation({
        Status: 'Success',
        ResponseCode: 0,
        StandardOutputContent: `ferry-report {"ok":true,"bootId":"b","shipped":89,"state":"running","pid":42,"exitCode":null,"timedOut":false,"durationMs":5,"stdoutBytes":99,"stderrBytes":0,"stdoutTail64":"${tail}","stderrTail64":""}\n`,
      }),
    );
    const result = await probe();
    assert.deepEqual(result, { alive: true, pid: 42, exitCode: null, logBytes: 99, chunkBytes: 89, lastLines: ['epoch 3/3'] });
    const text = ssm.commandCalls(SendCommandCommand)[0]!.args[0].input.Parameters!.commands![0]!;
    assert.match(text, /^export FERRY_ROOT='\/opt\/ferry'\nexport FERRY_SESSION='r1'\n/);
    assert.match(text, /export FERRY_CHUNK_URL='http:\/\/127\.0\.0\.1:9\/ferry\/training\/r1\/logs\/start-1\/000000000000010\.log\?X-Amz-/);
    assert.ok(text.endsWith(PROBE_SCRIPT));
  });

  it('truncated output without a report line is a retryable TargetScriptFailed that says why', async () => {
    ssm.on(GetCommandInvocationCommand).resolves(invocation({ Status: 'Success', ResponseCode: 0, StandardOutputContent: 'noise'.repeat(SSM_STDOUT_LIMIT / 5) }));
    await assert.rejects(probe(), (err: unknown) => err instanceof ApplicationFailure && err.type === 'TargetScriptFailed' && !err.nonRetryable && /cut by the transport/.test(err.message));
  });

  it('a refusal in the report is non-retryable bad input; a timeout is a retryable TargetCommandTimedOut', async () => {
    ssm.on(GetCommandInvocationCommand).resolves(invocation({ Status: 'Failed', StatusDetails: 'Failed', ResponseCode: 3, StandardOutputContent: 'ferry-report {"ok":false,"reason":"not-started"}\n' }));
    await assert.rejects(probe(), (err: unknown) => err instanceof ApplicationFailure && err.type === 'InvalidInput' && err.nonRetryable === true);
    ssm.on(GetCommandInvocationCommand).resolves(invocation({ Status: 'TimedOut', StatusDetails: 'ExecutionTimedOut' }));
    await assert.rejects(probe(), (err: unknown) => err instanceof ApplicationFailure && err.type === 'TargetCommandTimedOut' && err.nonRetryable === false);
  });
});
