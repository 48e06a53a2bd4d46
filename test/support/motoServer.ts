/** moto's server (an AWS API emulator) for the ECS and SSM drivers' protocol-level tests. */
import { spawnManaged, waitReady, stripInternal, httpStatus, type StartedServer } from '../../client/managedProcess';
import { assertPortsFree, hostPort } from '../../client/ports';

export interface MotoServerOptions {
  binary: string;
  host: string;
  port: number;
  logFile: string;
  /** Readiness deadline (default 60 s). */
  readyTimeoutMs?: number;
}

/**
 * Runs `moto_server` (one port for every AWS service) and resolves once its
 * `/moto-api/` page answers. It checks no signatures: any credentials do.
 */
export async function startMotoServer(opts: MotoServerOptions): Promise<StartedServer & { endpoint: string }> {
  await assertPortsFree([{ service: 'moto', port: opts.port }], opts.host);
  const args = ['-H', opts.host, '-p', String(opts.port)];
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AWS_')) env[k] = v;
  const started = Date.now();
  const proc = await spawnManaged({ name: 'moto', binary: opts.binary, args, env, logFile: opts.logFile, detached: false });
  const endpoint = `http://${hostPort(opts.host, opts.port)}`;
  let last = '/moto-api/ not answering yet';
  await waitReady(
    proc,
    'moto',
    opts.readyTimeoutMs ?? 60_000,
    async () => {
      const status = await httpStatus(`${endpoint}/moto-api/`);
      last = status === undefined ? '/moto-api/ not answering yet' : `/moto-api/ answered ${status}`;
      return status === 200;
    },
    () => last,
  );
  return Object.assign(stripInternal(proc), { ports: { moto: opts.port }, args, readyMs: Date.now() - started, endpoint });
}
