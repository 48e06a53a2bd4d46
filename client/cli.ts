/**
 * `ferry`: the command line. Thin: parses arguments, loads configuration,
 * calls client/commands or client/stack, prints, and exits non-zero with a
 * one-line cause on failure. Each command imports what runs it inside its
 * action, so `ferry --version` and `--help` load none of the Temporal, AWS
 * or MCP SDKs (test/unit/cliStartup.test.ts holds this).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ConfigError, taskQueueSetting, workflowUiUrl } from '../core/config';
import { parseBytes, parseDurationMs } from '../core/duration';
import { unsafePathReason } from '../core/paths';
import { EXECUTE_LANGUAGES } from '../core/pipeline';
import { sessionIdProblem, type LinkPolicy } from '../core/sync';
import type { TargetRef } from '../core/target';
import { linksOption, parseStreamOffsets, parseTargetOption, targetOption, withClient } from './commandLine';
import { loadConfig } from './config';
import { CommandError } from './errors';
import { registerMcpCommand } from './mcpCommand';
import type { ExecCommandOptions } from './pipelineCommands';
import { DEFAULT_PORTS } from './ports';
import { repoRoot } from './tools';
import { registerTrainingCommands } from './trainingCommands';

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

function sizeArgument(value: string): number {
  try {
    return parseBytes(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

function portArgument(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`${JSON.stringify(value)} is not a port number`);
  return port;
}

export function buildProgram(): Command {
  const program = new Command('ferry')
    .description('Durable, verified code and data sync into compute sessions, orchestrated by Temporal.')
    .version(packageVersion())
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ sortSubcommands: false })
    .hook('preAction', parseTargetOption);

  program
    .command('up')
    .description('start the embedded stack on 127.0.0.1: Temporal dev server + Web UI, S3 server, worker and a local runtime agent')
    .option('--detach', 'return once every service answers its health check (stop it with `ferry down`)', false)
    .addOption(new Option('--temporal-port <port>', 'Temporal gRPC port').default(DEFAULT_PORTS.temporal).argParser(portArgument))
    .addOption(new Option('--ui-port <port>', 'Temporal Web UI port').default(DEFAULT_PORTS.ui).argParser(portArgument))
    .addOption(new Option('--s3-port <port>', 'S3 server port').default(DEFAULT_PORTS.s3).argParser(portArgument))
    .addOption(new Option('--agent-port <port>', 'local runtime agent port').default(DEFAULT_PORTS.agent).argParser(portArgument))
    .option('--task-queue <name>', 'task queue the worker polls', taskQueueSetting(process.env))
    .action(async (options: { detach: boolean; temporalPort: number; uiPort: number; s3Port: number; agentPort: number; taskQueue: string }) => {
      const { startStack } = await import('./stack');
      await startStack({
        detach: options.detach,
        ports: { temporal: options.temporalPort, ui: options.uiPort, s3: options.s3Port, agent: options.agentPort },
        taskQueue: options.taskQueue,
        report: (line) => process.stderr.write(`${line}\n`),
      });
    });

  program
    .command('demo')
    .description('start the embedded stack if needed, run the coder → validator → reporter pipeline on a sample sales CSV, and show the report and timeline')
    .action(async () => {
      const { runDemo } = await import('./demo');
      await runDemo(print, (line) => process.stderr.write(`${line}\n`));
    });

  program
    .command('down')
    .description('stop the embedded stack started by `ferry up --detach`')
    .action(async () => {
      const { stopStack } = await import('./stack');
      print(await stopStack());
    });

  program
    .command('sync')
    .description('snapshot <dir>, upload what S3 lacks, land it in the session on the target and verify it there')
    .argument('<dir>', 'folder to sync')
    .requiredOption('--session <id>', 'compute session to sync into', sessionArgument)
    .option('--dest <path>', 'folder inside the session', destArgument, 'data')
    .addOption(targetOption('where the session lives'))
    .addOption(linksOption())
    .option('--size-warning <size>', 'over this size (e.g. 500MB, 2GiB) name the largest folders before upload (default FERRY_SIZE_WARNING, else 1GiB)', sizeArgument)
    .option('--dry-run', 'snapshot and print the plan (files, bytes, what is new to the store, what the target already has); store, upload and land nothing', false)
    .option('--json', 'print one JSON object instead of the summary', false)
    .action(async (dir: string, options: { session: string; dest: string; target: TargetRef; links: LinkPolicy; sizeWarning?: number; dryRun: boolean; json: boolean }) => {
      const { formatSyncSummary, runSync } = await import('./commands');
      await withClient(async (client, config) => {
        const summary = await runSync(client, config, {
          dir,
          sessionId: options.session,
          dest: options.dest,
          target: options.target,
          showProgress: !options.json,
          links: options.links,
          sizeWarningBytes: options.sizeWarning,
          dryRun: options.dryRun,
        });
        print(options.json ? JSON.stringify(summary) : formatSyncSummary(summary));
      });
    });

  program
    .command('files')
    .description('list what the target holds for a session, with sizes and sha256 computed on the target')
    .argument('<session>', 'session id', sessionArgument)
    .option('--dest <path>', 'folder inside the session', destArgument, 'data')
    .addOption(targetOption('where the session lives'))
    .option('--json', 'print JSON', false)
    .action(async (session: string, options: { dest: string; target: TargetRef; json: boolean }) => {
      const { formatFiles, listSessionFiles } = await import('./commands');
      await withClient(async (client, config) => {
        const listing = await listSessionFiles(client, config, { sessionId: session, dest: options.dest, target: options.target });
        print(options.json ? JSON.stringify(listing) : formatFiles(listing));
      });
    });

  program
    .command('targets')
    .description('the kinds of target sessions can live on: what each is, its --target form and the settings it reads')
    .action(async () => {
      const { formatTargets } = await import('./targets');
      print(formatTargets());
    });

  program
    .command('timeline')
    .description("every activity of a workflow from its history: attempts, times, failures, and the gaps between steps")
    .argument('<workflowId>', 'workflow id')
    .addOption(new Option('--gap <duration>', 'flag gaps longer than this (e.g. 30s, 5m)').argParser(durationArgument).default(30_000, '30s'))
    .option('--json', 'print JSON', false)
    .option('--html <file>', 'write the timeline as a self-contained page: a bar per attempt, a lane per pipeline stage, gaps shaded by cause, failures in red')
    .action(async (workflowId: string, options: { gap: number; json: boolean; html?: string }) => {
      const { analyseWorkflow } = await import('./history');
      await withClient(async (client, config) => {
        const analysis = await analyseWorkflow(client, config, workflowId, options.gap);
        if (options.html) {
          const { renderTimelineHtml } = await import('./timelineHtml');
          writeFileSync(options.html, renderTimelineHtml(analysis));
          print(`wrote ${path.resolve(options.html)}`);
          return;
        }
        const { formatTimeline } = await import('./commands');
        print(options.json ? JSON.stringify(analysis) : formatTimeline(analysis));
      });
    });

  const pipeline = program.command('pipeline').description('agent pipelines: a session with verified inputs and stages driven by execute updates');
  pipeline
    .command('start')
    .description('start the pipeline of a session (or return the one already running for it)')
    .requiredOption('--session <id>', 'session id; the workflow id is pipeline-<id>', sessionArgument)
    .option('--input <path|s3://bucket/prefix/>', 'an input for data/ (repeatable)', (value: string, all: string[]) => [...all, value], [] as string[])
    .option('--stages <names>', 'comma-separated stage names', 'coder,validator,reporter')
    .option('--idle-timeout <duration>', 'fail a stage that sees no execute or signal for this long', '30m')
    .addOption(targetOption('where the session runs'))
    .addOption(linksOption())
    .option('--json', 'print JSON', false)
    .action(async (options: { session: string; input: string[]; stages: string; idleTimeout: string; target: TargetRef; links: LinkPolicy; json: boolean }) => {
      const { formatStarted, parseInputRef, pipelines } = await import('./pipelineCommands');
      await withClient(async (client, config) => {
        const started = await pipelines(client, config).start({
          sessionId: options.session,
          target: options.target,
          inputs: options.input.map((input) => parseInputRef(input, options.links)),
          stages: options.stages.split(',').map((s) => s.trim()),
          stageIdleTimeout: options.idleTimeout,
        });
        print(options.json ? JSON.stringify({ ...started, webUiUrl: workflowUiUrl(config, started.workflowId, started.runId) }) : formatStarted(config, started.workflowId, started.runId));
      });
    });
  pipeline
    .command('add-inputs')
    .description('sync more inputs into data/; they are verified before the next execution')
    .argument('<workflowId>', 'pipeline workflow id')
    .requiredOption('--input <path|s3://bucket/prefix/>', 'an input (repeatable)', (value: string, all: string[]) => [...all, value], [] as string[])
    .addOption(linksOption())
    .action(async (workflowId: string, options: { input: string[]; links: LinkPolicy }) => {
      const { parseInputRef, pipelines } = await import('./pipelineCommands');
      await withClient((client, config) => pipelines(client, config).addInputs(workflowId, options.input.map((input) => parseInputRef(input, options.links))));
      print(`inputs sent to ${workflowId}`);
    });
  pipeline
    .command('abort')
    .description('release the session and fail the pipeline with a reason')
    .argument('<workflowId>', 'pipeline workflow id')
    .requiredOption('--reason <text>', 'why')
    .action(async (workflowId: string, options: { reason: string }) => {
      const { pipelines } = await import('./pipelineCommands');
      await withClient((client, config) => pipelines(client, config).abort(workflowId, options.reason));
      print(`abort sent to ${workflowId}`);
    });

  program
    .command('exec')
    .description("run code in a pipeline's current stage once its inputs are verified; prints the output (its tails, or all of it as it comes with --follow) and exits with the code's exit status; --attach replays and follows an execution sent before")
    .argument('<workflowId>', 'pipeline workflow id')
    .argument('[requestId]', 'with --attach: the request id of the execution to re-attach to')
    .addOption(new Option('--lang <language>', 'interpreter').choices([...EXECUTE_LANGUAGES]))
    .option('--code <file|->', 'file holding the code, or - for stdin')
    .option('--timeout <seconds>', 'kill the code after this many seconds (default 600)', (v: string) => Number(v))
    .option('--request-id <id>', 'idempotency key: resending the same id returns the first result (default: a new id, printed)')
    .option('-f, --follow', "print stdout and stderr as the code produces them (from the chunks the workflow ships to S3)", false)
    .option('--attach', 'replay the output of the execution sent with <requestId> from the start, then follow it to its end (running or finished, any time later)', false)
    .option('--offset <bytes>', 'with --attach: skip this many bytes of stdout (and, after a comma, of stderr)', parseStreamOffsets)
    .option('--json', 'print the result as JSON (exit 0 whatever the code returned)', false)
    .action(async (workflowId: string, requestId: string | undefined, options: ExecCommandOptions) => {
      const { runExec } = await import('./pipelineCommands');
      await runExec(workflowId, requestId, options);
    });

  program
    .command('stage')
    .description('pipeline stages')
    .command('finish')
    .description("collect the current stage's artifacts and begin the next stage")
    .argument('<workflowId>', 'pipeline workflow id')
    .option('--summary <text>', 'what the stage did, kept in the result')
    .option('--stage <name>', 'the stage to finish (default: the current one, read from the pipeline); a resend naming a stage already finished is ignored')
    .action(async (workflowId: string, options: { summary?: string; stage?: string }) => {
      const { pipelines } = await import('./pipelineCommands');
      const stage = await withClient(async (client, config) => {
        const pipeline = pipelines(client, config);
        // Naming the stage makes a duplicated delivery of this signal harmless.
        const named = options.stage ?? (await pipeline.state(workflowId)).stage;
        await pipeline.finishStage(workflowId, options.summary, { stage: named });
        return named;
      });
      print(`finishStage${stage ? ` (stage ${stage})` : ''} sent to ${workflowId}`);
    });

  program
    .command('status')
    .description('a pipeline: stage, executions, verified inputs, session and artifacts')
    .argument('<workflowId>', 'pipeline workflow id')
    .option('--json', 'print JSON', false)
    .action(async (workflowId: string, options: { json: boolean }) => {
      const { formatStatus, pipelines } = await import('./pipelineCommands');
      await withClient(async (client, config) => {
        const state = await pipelines(client, config).state(workflowId);
        print(options.json ? JSON.stringify(state) : formatStatus(config, workflowId, state));
      });
    });

  program
    .command('explain')
    .description('diagnose a workflow (and its children) from history: failed and retried steps, gaps and their causes, the session story, a verdict')
    .argument('<workflowId>', 'workflow id')
    .addOption(new Option('--gap-threshold <duration>', 'report gaps longer than this (e.g. 30s, 5m)').argParser(durationArgument).default(30_000, '30s'))
    .option('--json', 'print the diagnosis as JSON', false)
    .action(async (workflowId: string, options: { gapThreshold: number; json: boolean }) => {
      const { formatExplanation } = await import('./explain');
      const { analyseWorkflow } = await import('./history');
      await withClient(async (client, config) => {
        const analysis = await analyseWorkflow(client, config, workflowId, options.gapThreshold);
        print(options.json ? JSON.stringify(analysis) : formatExplanation(analysis));
      });
    });

  program
    .command('codec-server')
    .description('serve the payload codec (POST /encode, /decode) so the Temporal Web UI can show encrypted payloads; needs FERRY_CODEC_KEY')
    .addOption(new Option('--port <port>', 'port to listen on').default(8888).argParser(portArgument))
    .option('--host <host>', 'address to bind (anyone who can reach it can decrypt history)', '127.0.0.1')
    .option('--origin <url...>', 'browser origins allowed to call it (default: FERRY_WEB_UI_URL)')
    .action(async (options: { port: number; host: string; origin?: string[] }) => {
      const { runCodecServer } = await import('./codecServer');
      await runCodecServer(loadConfig(), options, print);
    });
  registerTrainingCommands(program);
  registerMcpCommand(program);

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
