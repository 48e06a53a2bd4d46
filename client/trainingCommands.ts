/**
 * `ferry train`, `ferry logs` and `ferry stop` on the command line; what
 * they run (client/training, with the Temporal and S3 clients) loads only
 * when one of them runs.
 */
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { LinkPolicy } from '../core/sync';
import type { TargetRef } from '../core/target';
import { linksOption, targetOption, withClient } from './commandLine';

function keyValue(value: string, previous: Record<string, string>): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError(`${JSON.stringify(value)}: expected NAME=value`);
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}

const collect = (value: string, previous: string[]) => [...previous, value];

function secondsArgument(value: string): number {
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds < 0) throw new InvalidArgumentError(`${JSON.stringify(value)} is not a number of seconds`);
  return seconds;
}

/** Adds `train`, `logs` and `stop` to the CLI. */
export function registerTrainingCommands(program: Command): void {
  program
    .command('train')
    .description('sync <dir> to a target, start <command> there, confirm it runs and follow its log to the end')
    .argument('<dir>', 'project folder')
    .argument('<command...>', 'training command, after -- (e.g. -- python train.py --epochs 3)')
    .addOption(targetOption('where to train'))
    .addOption(linksOption())
    .option('--run-id <id>', 'run id (default <dir name>-<timestamp>)')
    .option('--env <NAME=value>', 'environment variable for the command (repeatable)', keyValue, {})
    .option('--include <pattern>', 'sync only matching paths (gitignore syntax, repeatable)', collect, [])
    .option('--exclude <pattern>', 'leave matching paths out (gitignore syntax, repeatable)', collect, [])
    .addOption(new Option('--grace <seconds>', 'startup grace: the command must survive this long').argParser(secondsArgument))
    .addOption(new Option('--poll <seconds>', 'seconds between probes').argParser(secondsArgument))
    .option('--detach', 'return once started', false)
    .action(
      async (
        dir: string,
        command: string[],
        options: { target: TargetRef; links: LinkPolicy; runId?: string; env: Record<string, string>; include: string[]; exclude: string[]; grace?: number; poll?: number; detach: boolean },
      ) => {
        const target = options.target;
        const { formatTrainingResult, runTrain } = await import('./training');
        await withClient(async (client, config) => {
          const { result } = await runTrain(
            client,
            config,
            {
              dir,
              target,
              command,
              runId: options.runId,
              env: options.env,
              include: options.include,
              exclude: options.exclude,
              links: options.links,
              startupGraceSeconds: options.grace,
              pollSeconds: options.poll,
              detach: options.detach,
            },
            { log: (bytes) => process.stdout.write(bytes), status: (line) => process.stderr.write(`${line}\n`) },
          );
          if (result) process.stderr.write(`${formatTrainingResult(result)}\n`);
        });
      },
    );

  program
    .command('logs')
    .description('print the log a training run shipped to S3; -f follows it until the run ends')
    .argument('<workflowId>', 'training workflow id (train-<runId>)')
    .option('-f, --follow', 'keep following until the run ends', false)
    .action(async (workflowId: string, options: { follow: boolean }) => {
      const { followLogs } = await import('./training');
      const { blobStoreFromConfig } = await import('../activities/s3BlobStore');
      await withClient(async (client, config) => {
        await followLogs(client, blobStoreFromConfig(config.s3), workflowId, options.follow, (bytes) => process.stdout.write(bytes));
      });
    });

  program
    .command('stop')
    .description('stop a training run: SIGTERM, then SIGKILL after the grace period')
    .argument('<workflowId>', 'training workflow id (train-<runId>)')
    .addOption(new Option('--grace <seconds>', 'seconds between SIGTERM and SIGKILL').argParser(secondsArgument))
    .action(async (workflowId: string, options: { grace?: number }) => {
      const { formatTrainingResult, stopTraining } = await import('./training');
      const result = await withClient((client) => stopTraining(client, workflowId, options.grace, (line) => process.stderr.write(`${line}\n`)));
      process.stderr.write(`${formatTrainingResult(result)}\n`);
    });
}
