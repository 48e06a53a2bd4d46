/** Free loopback ports for the servers ferry starts, and a clear error for one already taken. */
import * as net from 'node:net';

/** The ports `ferry up` gives the embedded stack's services unless told others. */
export const DEFAULT_PORTS = { temporal: 7233, ui: 8233, s3: 8333, agent: 8390 };

/** A port a server needs is already bound by something else. */
export class PortInUseError extends Error {
  override readonly name = 'PortInUseError';
  constructor(
    readonly service: string,
    readonly port: number,
    readonly host: string = '127.0.0.1',
    flag: string = `--${service}-port`,
  ) {
    super(
      `port ${port} (${service}) is already in use on ${host}: stop what holds it ` +
        `(ss -ltnp 'sport = :${port}') or pick another port with ${flag}`,
    );
  }
}

/** host:port, with brackets for IPv6 literals. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Ports this process handed out recently, so two allocations never return the same port. */
const handedOut = new Map<number, number>();
const HANDED_OUT_TTL_MS = 60_000;

function recentlyHandedOut(port: number): boolean {
  const at = handedOut.get(port);
  if (at === undefined) return false;
  if (Date.now() - at > HANDED_OUT_TTL_MS) {
    handedOut.delete(port);
    return false;
  }
  return true;
}

function listenOnce(port: number, host: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(undefined));
    srv.listen({ port, host, exclusive: true }, () => {
      const addr = srv.address();
      const got = typeof addr === 'object' && addr !== null ? addr.port : undefined;
      srv.close(() => resolve(got));
    });
  });
}

/** True when nothing listens on host:port (we could bind it). */
export async function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return (await listenOnce(port, host)) !== undefined;
}

/** A port the OS says is free on host right now. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await listenOnce(0, host);
    if (port === undefined) throw new Error(`cannot bind any port on ${host}`);
    if (recentlyHandedOut(port)) continue;
    handedOut.set(port, Date.now());
    return port;
  }
  throw new Error(`cannot find a free port on ${host}`);
}

/**
 * A free port P such that P + offset is free too. SeaweedFS derives some
 * gRPC addresses as "HTTP port + 10000" no matter what the -*.port.grpc
 * flag says (its admin worker does), so its services get such pairs.
 * Both ports lie below the usual ephemeral range (32768+), so outgoing
 * connections never occupy them by chance.
 */
export async function freePortPair(host = '127.0.0.1', offset = 10_000): Promise<[number, number]> {
  const lo = 10_000;
  const hi = Math.min(32_767, 65_535) - offset; // P + offset stays <= 32767
  for (let i = 0; i < 500; i++) {
    const p = lo + Math.floor(Math.random() * (hi - lo));
    const q = p + offset;
    if (recentlyHandedOut(p) || recentlyHandedOut(q)) continue;
    if (!(await isPortFree(p, host)) || !(await isPortFree(q, host))) continue;
    const now = Date.now();
    handedOut.set(p, now);
    handedOut.set(q, now);
    return [p, q];
  }
  throw new Error(`cannot find two free ports ${offset} apart on ${host}`);
}

/** Throws PortInUseError for the first port that something already holds. */
export async function assertPortsFree(
  ports: { service: string; port: number; flag?: string }[],
  host = '127.0.0.1',
): Promise<void> {
  for (const p of ports) {
    if (!(await isPortFree(p.port, host))) throw new PortInUseError(p.service, p.port, host, p.flag);
  }
}
