/**
 * `ferry`: the command line. Thin: parses arguments, loads configuration,
 * calls client/commands or client/stack, prints, and exits non-zero with a
 * one-line cause on failure.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, workflowUiUrl } from '../core/config';
import { parseDurationMs } from '../core/duration';
import { unsafePathReason } from '../core/paths';
import { sessionIdProblem } from '../core/sync';
import { CommandError, formatFiles, formatSyncSummary, formatTimeline, listTargetFiles, loadTimeline, runSync } from './commands';
import { loadConfig } from './config';
import { runDemo } from './demo';
import { repoRoot } from './services';
import { DEFAULT_PORTS, startStack, stopStack } from './stack';
import { connectClient } from './temporal';
import { registerTrainingCommands } from './training';

const print = (text: string) => process.stdout.write(`${text}\n`);

function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(repoRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

function sessionArgument(value: string): string {
  const problem = sessionIdProblem(value);
  if (problem) throw new InvalidArgumentError(problem);
  return value;
}

function destArgument(value: string): string {
  const problem = unsafePathReason(value);
  if (problem) throw new InvalidArgumentError(`${JSON.stringify(value)}: ${problem}`);
  return value;
}

function durationArgument(value: string): number {
  try {
    return parseDurationMs(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function portArgument(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`${JSON.stringify(value)} is not a port number`);
  return port;
}

async function withClient<T>(run: (client: Awaited<ReturnType<typeof connectClient>>['client'], config: ReturnType<typeof loadConfig>) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const { client, close } = await connectClient(config);
  try {
    return await run(client, config);
  } finally {
    await close();
  }
}

export function buildProgram(): Command {
  const program = new Command('ferry')
    .description('Durable, verified code and data sync into compute sessions, orchestrated by Temporal.')
    .version(packageVersion())
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ sortSubcommands: false });

  program
    .command('up')
    .description('start the embedded stack on 127.0.0.1: Temporal dev server + Web UI, S3 server, worker and a local runtime agent')
    .option('--detach', 'return once every service answers its health check (stop it with `ferry down`)', false)
    .addOption(new Option('--temporal-port <port>', 'Temporal gRPC port').default(DEFAULT_PORTS.temporal).argParser(portArgument))
    .addOption(new Option('--ui-port <port>', 'Temporal Web UI port').default(DEFAULT_PORTS.ui).argParser(portArgument))
    .addOption(new Option('--s3-port <port>', 'S3 server port').default(DEFAULT_PORTS.s3).argParser(portArgument))
    .addOption(new Option('--agent-port <port>', 'local runtime agent port').default(DEFAULT_PORTS.agent).argParser(portArgument))
    .option('--task-queue <name>', 'task queue the worker polls', process.env.FERRY_TASK_QUEUE ?? 'ferry')
    .action(async (options: { detach: boolean; temporalPort: number; uiPort: number; s3Port: number; agentPort: number; taskQueue: string }) => {
      await startStack({
        detach: options.detach,
        ports: { temporal: options.temporalPort, ui: options.uiPort, s3: options.s3Port, agent: options.agentPort },
        taskQueue: options.taskQueue,
        report: (line) => process.stderr.write(`${line}\n`),
      });
    });

  program
    .command('demo')
    .description('start the embedded stack if needed, sync a sample folder into session "demo", and show the summary and timeline')
    .action(async () => {
      await runDemo(print, (line) => process.stderr.write(`${line}\n`));
    });

  program
    .command('down')
    .description('stop the embedded stack started by `ferry up --detach`')
    .action(async () => {
      print(await stopStack());
    });

  program
    .command('sync')
    .description('snapshot <dir>, upload what S3 lacks, land it in the session on the target and verify it there')
    .argument('<dir>', 'folder to sync')
    .requiredOption('--session <id>', 'compute session to sync into', sessionArgument)
    .option('--dest <path>', 'folder inside the session', destArgument, 'data')
    .option('--json', 'print one JSON object instead of the summary', false)
    .action(async (dir: string, options: { session: string; dest: string; json: boolean }) => {
      await withClient(async (client, config) => {
        const summary = await runSync(client, config, { dir, sessionId: options.session, dest: options.dest, showProgress: !options.json });
        print(options.json ? JSON.stringify(summary) : formatSyncSummary(summary));
      });
    });

  program
    .command('files')
    .description('list what the target holds for a session, with sizes and sha256 computed on the target')
    .argument('<session>', 'session id', sessionArgument)
    .option('--dest <path>', 'folder inside the session', destArgument, 'data')
    .option('--json', 'print JSON', false)
    .action(async (session: string, options: { dest: string; json: boolean }) => {
      const listing = await listTargetFiles(loadConfig(), session, options.dest);
      print(options.json ? JSON.stringify({ sessionId: session, dest: options.dest, ...listing }) : formatFiles(session, options.dest, listing));
    });

  program
    .command('timeline')
    .description("every activity of a workflow from its history: attempts, times, failures, and the gaps between steps")
    .argument('<workflowId>', 'workflow id')
    .addOption(new Option('--gap <duration>', 'flag gaps longer than this (e.g. 30s, 5m)').argParser(durationArgument).default(30_000, '30s'))
    .option('--json', 'print JSON', false)
    .action(async (workflowId: string, options: { gap: number; json: boolean }) => {
      await withClient(async (client, config) => {
        const timeline = await loadTimeline(client, workflowId, options.gap);
        const webUiUrl = workflowUiUrl(config, workflowId);
        print(options.json ? JSON.stringify({ ...timeline, webUiUrl }) : formatTimeline(timeline, options.gap, webUiUrl));
      });
    });

  registerTrainingCommands(program);

  return program;
}

/** Runs the CLI; every failure becomes one line on stderr and a non-zero exit code. */
export async function main(argv: string[]): Promise<void> {
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    const exitCode = err instanceof CommandError ? err.exitCode : 1;
    const message = err instanceof ConfigError || err instanceof Error ? err.message : String(err);
    process.stderr.write(`ferry: ${message}\n`);
    process.exitCode = exitCode;
  }
}
