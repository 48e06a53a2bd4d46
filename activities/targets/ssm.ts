/**
 * The `ssm` target: an EC2 instance (or any SSM-managed node) reached
 * through Systems Manager, no SSH. A script goes out with SendCommand and
 * its outcome is polled with GetCommandInvocation, with backoff. SSM has no
 * environment for AWS-RunShellScript, so the script's values are prepended
 * as quoted `export` lines (core/shellScripts shellQuote). stdout comes back
 * cut at 24,000 characters: callers read the final report line, and large
 * results (listings, logs) travel through S3, never through stdout.
 */
import {
  GetCommandInvocationCommand,
  InvalidInstanceId,
  InvocationDoesNotExist,
  SSMClient,
  SendCommandCommand,
  ThrottlingException,
  type GetCommandInvocationCommandOutput,
} from '@aws-sdk/client-ssm';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError } from '../../core/config';
import { withExportedEnv } from '../../core/shellScripts';
import { absoluteRootProblem, type TargetRef } from '../../core/target';
import { TargetOptionsError, type TargetDriver } from './driver';
import { TargetCommandError, scriptBackend, type CommandChannel, type ScriptOutcome, type ScriptRun, type ScriptRunHooks } from './scriptReach';

export interface SsmTargetOptions extends TargetRef {
  kind: 'ssm';
  instanceId: string;
  /** Default: the AWS SDK's default region. */
  region?: string;
  /** Folder holding the instance's sessions (default /opt/ferry). */
  root: string;
}

/** Where `ssm` targets keep sessions unless told otherwise. */
export const DEFAULT_SSM_ROOT = '/opt/ferry';

/** SSM's cap on StandardOutputContent in GetCommandInvocation. */
export const SSM_STDOUT_LIMIT = 24_000;

const INSTANCE_ID = /^(i|mi)-[0-9a-f]{8,32}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d$/;

export interface SsmChannelOptions {
  client: SSMClient;
  instanceId: string;
  /** Default AWS-RunShellScript; a custom document must take the same `commands` and `executionTimeout` parameters. */
  documentName?: string;
  /** First and longest wait between polls (defaults 500 ms and 5 s). */
  pollInitialMs?: number;
  pollMaxMs?: number;
  /** How long InvocationDoesNotExist right after SendCommand is taken as "not registered yet" (default 30 s). */
  registrationGraceMs?: number;
}

const WAITING = new Set(['Pending', 'InProgress', 'Delayed', 'Cancelling']);

export class SsmChannel implements CommandChannel {
  readonly description: string;
  // Each probe is a SendCommand and its GetCommandInvocation polls: at most one every 5 s per followed execution.
  readonly followEveryMs = 5_000;
  private readonly documentName: string;

  constructor(private readonly options: SsmChannelOptions) {
    this.description = `ssm:${options.instanceId}`;
    this.documentName = options.documentName ?? 'AWS-RunShellScript';
  }

  private async send(run: ScriptRun): Promise<string> {
    const executionSeconds = Math.max(30, Math.ceil(run.timeoutMs / 1000));
    let response;
    try {
      response = await this.options.client.send(
        new SendCommandCommand({
          InstanceIds: [this.options.instanceId],
          DocumentName: this.documentName,
          Comment: `ferry ${run.purpose}`.slice(0, 100),
          // Delivery (instance offline, agent busy) gets its own bound; execution is bounded by the document.
          TimeoutSeconds: Math.max(30, Math.min(2_592_000, executionSeconds)),
          Parameters: { commands: [withExportedEnv(run.script, run.env)], executionTimeout: [String(executionSeconds)] },
        }),
      );
    } catch (err) {
      if (err instanceof InvalidInstanceId) throw new TargetCommandError('undeliverable', `${this.description} is not a running, SSM-managed instance: ${err.message}`);
      throw err;
    }
    const commandId = response.Command?.CommandId;
    if (!commandId) throw new TargetCommandError('undeliverable', `SendCommand returned no command id for ${this.description}`);
    return commandId;
  }

  async run(run: ScriptRun, hooks: ScriptRunHooks = {}): Promise<ScriptOutcome> {
    // Every ferry script is idempotent, so a retried activity simply sends it again.
    const commandId = await this.send(run);
    const initial = this.options.pollInitialMs ?? 500;
    const longest = this.options.pollMaxMs ?? 5_000;
    const sentAt = Date.now();
    const deadline = sentAt + run.timeoutMs + 60_000;
    let wait = initial;
    for (;;) {
      await sleep(wait, undefined, { signal: hooks.signal });
      hooks.onWait?.();
      wait = Math.min(longest, wait * 2);
      let invocation: GetCommandInvocationCommandOutput;
      try {
        invocation = await this.options.client.send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: this.options.instanceId }), {
          abortSignal: hooks.signal,
        });
      } catch (err) {
        // Right after SendCommand the invocation may not be registered yet.
        if (err instanceof InvocationDoesNotExist && Date.now() - sentAt < (this.options.registrationGraceMs ?? 30_000)) continue;
        if (err instanceof ThrottlingException) {
          wait = longest;
          continue;
        }
        throw err;
      }
      const status = invocation.Status ?? 'Pending';
      const details = { commandId, instanceId: this.options.instanceId, status, statusDetails: invocation.StatusDetails, purpose: run.purpose };
      if (WAITING.has(status)) {
        if (Date.now() > deadline) throw new TargetCommandError('timedOut', `${run.purpose} command ${commandId} still ${status} after ${Math.round((Date.now() - sentAt) / 1000)} s`, details);
        continue;
      }
      const stdout = invocation.StandardOutputContent ?? '';
      const outcome: ScriptOutcome = {
        exitCode: invocation.ResponseCode ?? -1,
        stdout,
        stderr: invocation.StandardErrorContent ?? '',
        stdoutTruncated: stdout.length >= SSM_STDOUT_LIMIT,
      };
      if (status === 'Success') return outcome;
      if (status === 'Failed' && outcome.exitCode >= 0 && invocation.StatusDetails !== 'Undeliverable' && invocation.StatusDetails !== 'Terminated') return outcome;
      if (status === 'TimedOut')
        throw new TargetCommandError('timedOut', `${run.purpose} command ${commandId} timed out on ${this.description} (${invocation.StatusDetails ?? status})`, details);
      if (status === 'Cancelled') throw new TargetCommandError('cancelled', `${run.purpose} command ${commandId} was cancelled on ${this.description}`, details);
      throw new TargetCommandError('undeliverable', `${run.purpose} command ${commandId} ended ${status} (${invocation.StatusDetails ?? 'no details'}) on ${this.description}`, details);
    }
  }
}

function checked(raw: TargetRef): SsmTargetOptions {
  const problems: string[] = [];
  const { instanceId, region } = raw;
  const root = raw.root ?? DEFAULT_SSM_ROOT;
  if (typeof instanceId !== 'string' || !INSTANCE_ID.test(instanceId)) problems.push(`ssm target instanceId ${JSON.stringify(instanceId)} is not an instance id (i-0123456789abcdef0)`);
  if (region !== undefined && (typeof region !== 'string' || !REGION.test(region))) problems.push(`ssm target region ${JSON.stringify(region)} is not a region`);
  const rootProblem = absoluteRootProblem(root);
  if (rootProblem) problems.push(`ssm target root ${JSON.stringify(root)} ${rootProblem}`);
  if (problems.length) throw new TargetOptionsError(problems);
  return { kind: 'ssm', instanceId: instanceId as string, ...(region ? { region: region as string } : {}), root: (root as string).replace(/\/$/, '') };
}

export const ssmTarget: TargetDriver<SsmTargetOptions> = {
  kind: 'ssm',
  summary: 'an EC2 instance (or SSM-managed node) reached through SSM SendCommand with POSIX scripts, no SSH; files by presigned URL',
  spec: 'ssm:<instance-id>',
  settings: [
    { name: 'FERRY_SSM_DOCUMENT', description: 'SSM document scripts run with (default AWS-RunShellScript; a custom one takes the same `commands` and `executionTimeout` parameters)' },
    { name: 'FERRY_SSM_ENDPOINT', description: 'SSM endpoint URL (default: AWS; set for an emulator)' },
  ],
  lifetime: 'persistent',
  parseSpec: (text) => checked({ kind: 'ssm', instanceId: text }),
  normalize: checked,
  configure: ({ blobs, settings }) => {
    const documentName = settings('FERRY_SSM_DOCUMENT');
    const endpoint = settings('FERRY_SSM_ENDPOINT');
    if (endpoint !== undefined && !/^https?:\/\/[^\s/]+\/?$/.test(endpoint)) throw new ConfigError('FERRY_SSM_ENDPOINT', `expected an http(s) URL without a path, got ${JSON.stringify(endpoint)}`);
    const clients = new Map<string, SSMClient>();
    // The AWS SDK's default credentials and region; one client per region, made when first needed.
    const clientFor = (region: string | undefined) => {
      let client = clients.get(region ?? '');
      if (!client) clients.set(region ?? '', (client = new SSMClient({ maxAttempts: 5, ...(region ? { region } : {}), ...(endpoint ? { endpoint } : {}) })));
      return client;
    };
    return scriptBackend<SsmTargetOptions>(blobs, (target) => ({
      channel: new SsmChannel({ client: clientFor(target.region), instanceId: target.instanceId, documentName }),
      root: target.root,
    }));
  },
};
