/**
 * Where a test file's logs go, so the console shows the test report and
 * nothing else: test-output/logs/<file>/ (e.g. logs/test/integration/sync.test/),
 * emptied when the file first asks for it. The worker's Runtime logger
 * (workflow, activity and SDK core logs) writes worker.log there; each test
 * stack writes its servers' and agent's output in a folder of its own.
 * scripts/test.sh prints the last lines of a failing file's logs.
 */
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { inspect } from 'node:util';
import type { Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime, type LogEntry, type LogLevel } from '@temporalio/worker';
import { repoRoot } from '../../client/tools';

/** Every test file's log folder lives here. */
function testLogsRoot(): string {
  return path.join(repoRoot(), 'test-output', 'logs');
}

/**
 * The log folder of a compiled test file (or other entry point) under dist/:
 * its path from dist/ without `.js`. scripts/test.sh maps a failing test's
 * location to its folder the same way.
 */
export function logDirOf(file: string): string {
  const relative = path.relative(path.join(repoRoot(), 'dist'), file);
  const name = relative.startsWith('..') || path.isAbsolute(relative) ? path.basename(file) : relative;
  return path.join(testLogsRoot(), name.replace(/\.js$/, ''));
}

let currentDir: string | undefined;

/** This process's log folder, emptied of an earlier run's logs the first time it is asked for. */
export function testLogDir(): string {
  if (currentDir === undefined) {
    currentDir = logDirOf(process.argv[1] ?? 'unknown');
    rmSync(currentDir, { recursive: true, force: true });
    mkdirSync(currentDir, { recursive: true });
  }
  return currentDir;
}

/** A log file in this process's log folder (or a folder under it), written synchronously so a crash keeps its last lines. */
function openTestLog(name: string): { write(text: string): void; close(): void } {
  const file = path.join(testLogDir(), name);
  mkdirSync(path.dirname(file), { recursive: true });
  const fd = openSync(file, 'a');
  let open = true;
  return {
    write: (text) => {
      if (open) writeSync(fd, text);
    },
    close: () => {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}

function formatEntry({ level, message, meta, timestampNanos }: LogEntry): string {
  const at = new Date(Number(timestampNanos / 1_000_000n)).toISOString();
  const text = `${message}${meta && Object.keys(meta).length ? ` ${inspect(meta, { depth: 4, breakLength: Infinity })}` : ''}`;
  // One line per entry (stacks joined with ⏎), so the failure report can pick warnings and errors by line.
  return `${at} [${level}] ${text.replace(/\n\s*/g, ' ⏎ ')}\n`;
}

let workerLogger: DefaultLogger | undefined;

/** The logger writing worker.log, at INFO or the level FERRY_TEST_LOG names. */
function testLogger(): DefaultLogger {
  if (workerLogger === undefined) {
    const log = openTestLog('worker.log');
    workerLogger = new DefaultLogger((process.env.FERRY_TEST_LOG ?? 'INFO') as LogLevel, (entry) => log.write(formatEntry(entry)));
  }
  return workerLogger;
}

let runtimeInstalled = false;

/**
 * Installs the process's Temporal Runtime with the worker.log logger:
 * ferry's workflow and activity logs and the SDK core's (forwarded).
 */
export function installTestRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: testLogger(), telemetryOptions: { logging: { forward: {}, filter: { core: 'WARN', other: 'ERROR' } } } });
}

/** A MockActivityEnvironment, for running one activity outside a worker, whose activity logs go to worker.log too. */
export function activityEnvironment(info?: Partial<Info>): MockActivityEnvironment {
  return new MockActivityEnvironment(info, { logger: testLogger() });
}

/** A logger for the workflow bundler, writing beside the worker's logs. */
export function bundlerLogger(): DefaultLogger {
  const log = openTestLog('bundler.log');
  return new DefaultLogger('WARN', (entry) => log.write(formatEntry(entry)));
}
