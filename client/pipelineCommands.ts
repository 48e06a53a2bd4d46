/**
 * `ferry pipeline …`, `ferry exec`, `ferry stage finish` and `ferry status`:
 * the pipeline from a terminal or an agent's shell. Each formats for people
 * by default and prints one JSON object with --json.
 */
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Client } from '@temporalio/client';
import { workflowUiUrl, type FerryConfig } from '../core/config';
import { formatBytes, formatDurationMs } from '../core/duration';
import type { LogStream } from '../core/executionLogs';
import { DEFAULT_LINK_POLICY, type LinkPolicy } from '../core/sync';
import { inputRefProblem, type ExecuteLanguage, type ExecuteResult, type PipelineInputRef, type PipelineState } from '../core/pipeline';
import { CommandError } from './errors';
import { renderTable } from './format';
import { PipelineClient, type FollowedExecution, type StreamOffsets } from './pipelineClient';
import { withClient } from './temporal';
import { blobStoreFromConfig } from '../activities/s3BlobStore';

/** `--input` values: s3://… is an S3 prefix, anything else a folder on the worker's machine. */
/** An `--input`: an S3 prefix, or a folder snapshotted under the link policy. */
export function parseInputRef(value: string, links: LinkPolicy = DEFAULT_LINK_POLICY): PipelineInputRef {
  const ref: PipelineInputRef = value.startsWith('s3://') ? { s3: value } : { path: value, links };
  const problem = inputRefProblem(ref, '--input');
  if (problem) throw new CommandError(problem, 2);
  return ref;
}

/** The code to run: a file's contents, or stdin for "-". */
export async function readCode(source: string): Promise<string> {
  if (source !== '-') return readFile(source, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new CommandError(`cannot read --code ${source}: ${err.code ?? err.message}`, 2);
  });
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function pipelines(client: Client, config: FerryConfig): PipelineClient {
  return new PipelineClient(client, config.temporal.taskQueue);
}

export function formatStarted(config: FerryConfig, workflowId: string, runId: string): string {
  return [
    `pipeline ${workflowId} running (run ${runId})`,
    `  run code:      ferry exec ${workflowId} --lang bash --code script.sh`,
    `  finish stage:  ferry stage finish ${workflowId}`,
    `  state:         ferry status ${workflowId}`,
    `  web ui:        ${workflowUiUrl(config, workflowId, runId)}`,
  ].join('\n');
}

/** One line for stderr after the output (its tails, or all of it when `streamed`), like a shell prompt would tell you. */
export function formatExecSummary(result: ExecuteResult, streamed = false): string {
  const ending = result.timedOut ? 'timed out' : result.exitCode !== null ? `exit ${result.exitCode}` : `killed by ${result.signal}`;
  const cut = !streamed && (result.stdoutBytes > result.stdoutTail.length || result.stderrBytes > result.stderrTail.length) ? ` (tails shown; full logs: ${result.logKey}, ${result.stderrLogKey})` : '';
  return `${result.executionId} in stage ${result.stage}: ${ending} after ${formatDurationMs(result.durationMs)} on boot ${result.bootId.slice(0, 8)}${cut}`;
}

export interface ExecCommandOptions {
  lang?: ExecuteLanguage;
  code?: string;
  timeout?: number;
  requestId?: string;
  json: boolean;
  follow: boolean;
  attach: boolean;
  offset?: Partial<StreamOffsets>;
}

const writeStream = (stream: LogStream, bytes: Buffer) => (stream === 'stdout' ? process.stdout : process.stderr).write(bytes);

/**
 * `ferry exec`: send code (printing the output tails at the end, or the
 * whole output as it is produced with --follow), or with --attach replay
 * and follow an execution sent before, by its request id.
 */
export async function runExec(workflowId: string, attachTo: string | undefined, options: ExecCommandOptions): Promise<void> {
  if (options.attach) {
    if (!attachTo) throw new CommandError('--attach needs the request id of the execution: ferry exec --attach <workflowId> <requestId>', 2);
    if (options.code !== undefined || options.lang !== undefined || options.follow || options.json) throw new CommandError('--attach replays an execution sent before: it takes no --code, --lang, --follow or --json', 2);
    return runAttach(workflowId, attachTo, options.offset);
  }
  if (attachTo !== undefined) throw new CommandError(`unexpected argument ${JSON.stringify(attachTo)}: a request id is given with --request-id, or with --attach to re-attach`, 2);
  if (!options.lang || options.code === undefined) throw new CommandError('exec needs --lang and --code (or --attach <workflowId> <requestId>)', 2);
  if (options.follow && options.json) throw new CommandError('--follow prints the output as it comes; --json prints only the result: choose one', 2);
  const code = await readCode(options.code);
  // Always an id, so resends after a lost connection (here or by the user) return this run's result.
  const requestId = options.requestId ?? randomUUID();
  process.stderr.write(`ferry: request id ${requestId} (to get this execution's result again: --request-id ${requestId}; to follow it from elsewhere: ferry exec --attach ${workflowId} ${requestId})\n`);
  const result = await withClient(async (client, config) => {
    const pipeline = pipelines(client, config);
    const ended = pipeline.execute(workflowId, { language: options.lang!, code, timeoutSeconds: options.timeout }, {
      requestId,
      onRetry: (failure) => process.stderr.write(`ferry: Temporal did not answer (${failure.message}); resending request ${requestId} …\n`),
    });
    if (!options.follow) return ended;
    return followInterruptibly(workflowId, requestId, async () => {
      await pipeline.followExecution(workflowId, requestId, blobStoreFromConfig(config.s3), { write: writeStream, ended });
      return ended;
    });
  });
  if (options.json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  if (!options.follow) {
    process.stdout.write(result.stdoutTail);
    process.stderr.write(result.stderrTail);
  }
  process.stderr.write(`ferry: ${formatExecSummary(result, options.follow)}\n`);
  process.exitCode = result.exitCode ?? 1;
}

async function runAttach(workflowId: string, requestId: string, from: Partial<StreamOffsets> | undefined): Promise<void> {
  const followed = await withClient((client, config) =>
    followInterruptibly(workflowId, requestId, () =>
      pipelines(client, config).followExecution(workflowId, requestId, blobStoreFromConfig(config.s3), {
        from,
        write: writeStream,
        onWaiting: (why) => process.stderr.write(`ferry: waiting: ${why}\n`),
      }),
    ),
  );
  process.stderr.write(`ferry: ${formatFollowed(followed)}\n`);
  process.exitCode = followed.status === 'finished' ? (followed.exitCode ?? 1) : 1;
}

/** Ctrl-C stops following, not the execution: it says how to pick the stream up again. */
async function followInterruptibly<T>(workflowId: string, requestId: string, follow: () => Promise<T>): Promise<T> {
  const onInterrupt = () => {
    process.stderr.write(`\nferry: stopped following; the execution carries on. Re-attach with: ferry exec --attach ${workflowId} ${requestId}\n`);
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  try {
    return await follow();
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}

export function formatFollowed(followed: FollowedExecution): string {
  const ending = followed.status === 'failed' ? `failed (${followed.failure ?? 'unknown failure'})` : followed.exitCode !== null && followed.exitCode !== undefined ? `exit ${followed.exitCode}` : 'killed';
  return `${followed.executionId} in stage ${followed.stage}: ${ending}; output up to byte ${followed.written.stdout} of stdout and ${followed.written.stderr} of stderr`;
}

export function formatStatus(config: FerryConfig, workflowId: string, state: PipelineState): string {
  const lines = [`pipeline ${workflowId}: ${state.status}${state.stage ? `, stage ${state.stage}` : ''} (session ${state.sessionId}, run ${state.run})`];
  if (state.session) lines.push(`  session    ${state.session.target.kind} agent ${state.session.agentUrl}, boot ${state.session.bootId}, restarts detected ${state.restartsDetected}`);
  lines.push(`  data/      ${state.dataManifestDigest ? `manifest ${state.dataManifestDigest.slice(0, 16)}…, verified on boot ${state.verifiedBootId ?? '-'}` : 'no inputs'}`);
  lines.push('', renderTable(['STAGE', 'STATUS', 'EXECUTIONS', 'ARTIFACTS', 'SUMMARY'], state.stages.map((s) => [
    s.name,
    s.status,
    String(s.executions),
    s.artifacts ? `${s.artifacts.filesTotal} (${formatBytes(s.artifacts.bytesTotal)})` : '-',
    s.summary ?? '',
  ]), { alignRight: [false, false, true, true, false] }));
  if (state.inputs.length) {
    lines.push('', renderTable(['INPUT', 'FILES', 'SIZE', 'MANIFEST'], state.inputs.map((i) => [
      'path' in i.ref ? i.ref.path : i.ref.s3,
      String(i.filesTotal),
      formatBytes(i.bytesTotal),
      i.manifestDigest.slice(0, 16),
    ]), { alignRight: [false, true, true, false] }));
  }
  lines.push('', `web ui: ${workflowUiUrl(config, workflowId)}`);
  return lines.join('\n');
}
