/**
 * The `ssm` target: an EC2 instance reached through Systems Manager, no SSH.
 * A script goes out with SendCommand and its outcome is polled with
 * GetCommandInvocation, with backoff. SSM has no environment for
 * AWS-RunShellScript, so the script's values are prepended as quoted
 * `export` lines (core/shellScripts shellQuote). stdout comes back cut at
 * 24,000 characters: callers read the final report line, and large results
 * (listings, logs) travel through S3, never through stdout.
 */
import {
  GetCommandInvocationCommand,
  InvocationDoesNotExist,
  SendCommandCommand,
  ThrottlingException,
  type GetCommandInvocationCommandOutput,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import { setTimeout as sleep } from 'node:timers/promises';
import { withExportedEnv } from '../core/shellScripts';
import { TargetCommandError, type ScriptOutcome, type ScriptRun, type ScriptRunHooks, type ScriptRunner } from './shellTarget';

/** SSM's cap on StandardOutputContent in GetCommandInvocation. */
export const SSM_STDOUT_LIMIT = 24_000;

export interface SsmTargetOptions {
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

export class SsmTarget implements ScriptRunner {
  readonly description: string;
  private readonly documentName: string;

  constructor(private readonly options: SsmTargetOptions) {
    this.description = `ssm:${options.instanceId}`;
    this.documentName = options.documentName ?? 'AWS-RunShellScript';
  }

  private async send(run: ScriptRun): Promise<string> {
    const executionSeconds = Math.max(30, Math.ceil(run.timeoutMs / 1000));
    const response = await this.options.client.send(
      new SendCommandCommand({
        InstanceIds: [this.options.instanceId],
        DocumentName: this.documentName,
        Comment: `ferry ${run.purpose}`.slice(0, 100),
        // Delivery (instance offline, agent busy) gets its own bound; execution is bounded by the document.
        TimeoutSeconds: Math.max(30, Math.min(2_592_000, executionSeconds)),
        Parameters: { commands: [withExportedEnv(run.script, run.env)], executionTimeout: [String(executionSeconds)] },
      }),
    );
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
