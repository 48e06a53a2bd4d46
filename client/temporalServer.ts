/** The Temporal dev server (`temporal server start-dev`) for `ferry up`, the tests and the benchmark. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Connection } from '@temporalio/client';
import { spawnManaged, waitReady, ServiceStartError, stripInternal, tcpProbe, PORT_CLASH, START_ATTEMPTS, type StartedServer } from './managedProcess';
import { freePort, PortInUseError, assertPortsFree, hostPort } from './ports';

export type SearchAttributeType = 'Keyword' | 'Text' | 'Int' | 'Double' | 'Bool' | 'Datetime' | 'KeywordList';

export interface TemporalDevServerOptions {
  binary: string;
  /** SQLite file for persistent state; omitted: in memory. */
  dbFile?: string;
  host: string;
  port: number;
  /** Web UI port; undefined runs the server with --headless. */
  uiPort?: number;
  namespace: string;
  searchAttributes: Record<string, SearchAttributeType>;
  logFile: string;
  detached?: boolean;
  /** Readiness deadline (default 60 s). */
  readyTimeoutMs?: number;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Every history write is a SQLite commit. In SQLite's default rollback journal
 * each commit syncs the database and its journal; with a write-ahead log and
 * synchronous=normal a commit is one append, synced at checkpoints. Every
 * workflow task and activity waits on such writes: the benchmark's execute
 * round trip went from a median of about 165 ms to about 95 ms (the WAL alone:
 * about 115 ms). synchronous=normal can lose the last commits on a power cut,
 * never on a crash of the server, and never corrupts the file: right for a
 * single-machine dev server.
 */
const SQLITE_PRAGMAS = ['journal_mode=wal', 'synchronous=normal'];

/**
 * Runs `temporal server start-dev` and resolves once its gRPC frontend
 * answers a health check, getSystemInfo and DescribeNamespace(namespace).
 */
export async function startTemporalDevServer(opts: TemporalDevServerOptions): Promise<StartedServer> {
  for (const [key, type] of Object.entries(opts.searchAttributes)) {
    if (!IDENTIFIER.test(key)) throw new Error(`search attribute name "${key}" is not an identifier`);
    if (!['Keyword', 'Text', 'Int', 'Double', 'Bool', 'Datetime', 'KeywordList'].includes(type)) {
      throw new Error(`search attribute ${key} has unknown type "${type}"`);
    }
  }
  const wanted: { service: string; port: number; flag?: string }[] = [{ service: 'temporal', port: opts.port }];
  if (opts.uiPort !== undefined) wanted.push({ service: 'temporal-ui', port: opts.uiPort, flag: '--temporal-ui-port' });
  if (opts.dbFile) fs.mkdirSync(path.dirname(path.resolve(opts.dbFile)), { recursive: true });

  for (let attempt = 1; ; attempt++) {
    await assertPortsFree(wanted, opts.host);
    const httpPort = await freePort(opts.host);
    const metricsPort = await freePort(opts.host);
    const args = ['server', 'start-dev', '--ip', opts.host, '--port', String(opts.port)];
    if (opts.uiPort === undefined) args.push('--headless');
    else args.push('--ui-port', String(opts.uiPort), '--ui-disable-news-fetch');
    args.push('--http-port', String(httpPort), '--metrics-port', String(metricsPort));
    if (opts.dbFile) args.push('--db-filename', path.resolve(opts.dbFile), ...SQLITE_PRAGMAS.flatMap((pragma) => ['--sqlite-pragma', pragma]));
    args.push('--namespace', opts.namespace);
    for (const [key, type] of Object.entries(opts.searchAttributes)) args.push('--search-attribute', `${key}=${type}`);
    args.push('--log-level', 'warn');

    const ports: Record<string, number> = { grpc: opts.port, http: httpPort, metrics: metricsPort };
    if (opts.uiPort !== undefined) ports.ui = opts.uiPort;

    const started = Date.now();
    const proc = await spawnManaged({
      name: 'temporal',
      binary: opts.binary,
      args,
      env: process.env,
      logFile: opts.logFile,
      detached: opts.detached ?? false,
    });
    const address = hostPort(opts.host, opts.port);
    let last = 'gRPC port not accepting connections yet';
    try {
      await waitReady(
        proc,
        'temporal',
        opts.readyTimeoutMs ?? 60_000,
        async () => {
          if (!(await tcpProbe(opts.host, opts.port))) {
            last = 'gRPC port not accepting connections yet';
            return false;
          }
          let connection: Connection | undefined;
          try {
            connection = await Connection.connect({ address, connectTimeout: 2_000 });
            const health = await connection.healthService.check({});
            // 1 = SERVING (grpc.health.v1)
            if (health.status !== 1) {
              last = `health status ${String(health.status)}`;
              return false;
            }
            await connection.workflowService.getSystemInfo({});
            await connection.workflowService.describeNamespace({ namespace: opts.namespace });
            return true;
          } catch (e) {
            last = (e as Error).message;
            return false;
          } finally {
            await connection?.close().catch(() => undefined);
          }
        },
        () => last,
      );
    } catch (e) {
      const tail = e instanceof ServiceStartError ? e.logTail : '';
      if (!proc.isRunning() && PORT_CLASH.test(tail)) {
        if (tail.includes(`:${opts.port}:`) || tail.includes(`:${opts.port} `)) {
          throw new PortInUseError('temporal', opts.port, opts.host);
        }
        if (opts.uiPort !== undefined && tail.includes(`:${opts.uiPort}`)) {
          throw new PortInUseError('temporal-ui', opts.uiPort, opts.host, '--temporal-ui-port');
        }
        if (attempt < START_ATTEMPTS) continue; // one of our helper ports was taken meanwhile
      }
      throw e;
    }
    return Object.assign(stripInternal(proc), { ports, args, readyMs: Date.now() - started });
  }
}

