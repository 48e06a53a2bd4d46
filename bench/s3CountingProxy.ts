/**
 * Child process of the benchmark: a counting HTTP proxy on loopback in front
 * of the S3 server, so every tool's S3 requests can be counted the same way
 * (ferry's worker, the runtime agent's presigned downloads, rclone, s5cmd).
 * Its own process, so forwarding costs no time on the event loop that runs
 * the worker. Requests pass with their Host header unchanged, so SigV4
 * signatures and presigned URLs stay valid.
 *
 *   node dist/bench/s3CountingProxy.js http://127.0.0.1:<s3 port>
 *
 * Prints one JSON line {"url": ...} once listening. GET /__bench/requests
 * answers the counts so far (RequestCounts; "__bench" cannot be a bucket
 * name, so no S3 request can mean it). Exits when its stdin closes, so it
 * never outlives the benchmark.
 */
import { Agent, createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { classifyS3Request } from '../test/support/s3FaultProxy';
import { COUNTS_PATH, type RequestCounts, type Signing } from './requestCounts';

function main(): void {
  const target = process.argv[2];
  if (!target) throw new Error('usage: node dist/bench/s3CountingProxy.js <S3 endpoint URL>');
  const upstream = new URL(target);
  const upstreamAgent = new Agent({ keepAlive: true });
  const counts: RequestCounts = { header: {}, presigned: {} };

  const server = createServer((incoming, response) => {
    if (incoming.url === COUNTS_PATH) {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify(counts));
      return;
    }
    const request = classifyS3Request(incoming.method ?? 'GET', incoming.url ?? '/');
    const signing: Signing = request.presigned ? 'presigned' : 'header';
    const tally = (counts[signing][request.operation] ??= { requests: 0, failed: 0, requestBytes: 0, responseBytes: 0 });
    tally.requests++;
    incoming.on('data', (chunk: Buffer) => (tally.requestBytes += chunk.length));
    const outgoing = httpRequest({ agent: upstreamAgent, host: upstream.hostname, port: upstream.port, method: incoming.method, path: incoming.url, headers: incoming.headers });
    outgoing.on('response', (answer) => {
      if ((answer.statusCode ?? 500) >= 400) tally.failed++;
      response.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.on('data', (chunk: Buffer) => (tally.responseBytes += chunk.length));
      answer.on('error', () => incoming.socket.destroy());
      answer.pipe(response);
    });
    // S3 unreachable: the client sees its connection drop, as it would without the proxy.
    outgoing.on('error', () => incoming.socket.destroy());
    incoming.pipe(outgoing);
  });
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo;
    process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${port}` })}\n`);
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

main();
