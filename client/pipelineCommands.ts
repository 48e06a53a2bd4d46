/**
 * `ferry pipeline …`, `ferry exec`, `ferry stage finish` and `ferry status`:
 * the pipeline from a terminal or an agent's shell. Each formats for people
 * by default and prints one JSON object with --json.
 */
import { readFile } from 'node:fs/promises';
import type { Client } from '@temporalio/client';
import { workflowUiUrl, type FerryConfig } from '../core/config';
import { formatBytes, formatDurationMs } from '../core/duration';
import { inputRefProblem, type ExecuteResult, type PipelineInputRef, type PipelineState } from '../core/pipeline';
import { CommandError } from './commands';
import { renderTable } from './format';
import { PipelineClient } from './pipelineClient';

/** `--input` values: s3://… is an S3 prefix, anything else a folder on the worker's machine. */
export function parseInputRef(value: string): PipelineInputRef {
  const ref: PipelineInputRef = value.startsWith('s3://') ? { s3: value } : { path: value };
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

/** One line for stderr after the output tails, like a shell prompt would tell you. */
export function formatExecSummary(result: ExecuteResult): string {
  const ending = result.timedOut ? 'timed out' : result.exitCode !== null ? `exit ${result.exitCode}` : `killed by ${result.signal}`;
  const cut = result.stdoutBytes > result.stdoutTail.length || result.stderrBytes > result.stderrTail.length ? ` (tails shown; full logs: ${result.logKey}, ${result.stderrLogKey})` : '';
  return `${result.executionId} in stage ${result.stage}: ${ending} after ${formatDurationMs(result.durationMs)} on boot ${result.bootId.slice(0, 8)}${cut}`;
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
