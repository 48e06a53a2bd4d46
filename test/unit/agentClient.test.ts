/**
 * The worker's side of the agent protocol under misbehaving agents: each
 * must fail the request quickly with a typed error, never hang the activity.
 */
import assert from 'node:assert/strict';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { AgentClient, AgentRequestError, pathBatches } from '../../activities/agentClient';

const servers: Server[] = [];
after(() => {
  for (const server of servers) {
    server.closeAllConnections();
    server.close();
  }
});

async function agentAt(handler: RequestListener): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const land = (client: AgentClient) => client.land({ dir: 'd', files: [] }, () => undefined);

function rejectsWith(type: string, message: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof AgentRequestError, String(err));
    assert.equal(err.type, type);
    assert.match(err.message, message);
    return true;
  };
}

describe('AgentClient', () => {
  it('gives up on an agent that accepts the connection and never answers', async () => {
    const url = await agentAt(() => undefined);
    await assert.rejects(new AgentClient({ url, token: 't' }, { idleTimeoutMs: 300 }).health(), rejectsWith('TargetUnavailable', /did not answer \/v1\/health within 300 ms/));
  });

  it('gives up on a stream that keeps sending the same progress line', async () => {
    const url = await agentAt((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      const line = `${JSON.stringify({ type: 'progress', filesDone: 0, filesTotal: 1, bytesDone: 0, bytesTotal: 10 })}\n`;
      const timer = setInterval(() => res.write(line), 50);
      res.on('close', () => clearInterval(timer));
    });
    const client = new AgentClient({ url, token: 't' }, { idleTimeoutMs: 1_000, progressTimeoutMs: 400 });
    await assert.rejects(land(client), rejectsWith('TargetUnavailable', /made no progress for 400 ms during \/v1\/land/));
  });

  it('treats a stream cut off before its result line as a failure', async () => {
    const url = await agentAt((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.end(`${JSON.stringify({ type: 'progress', filesDone: 0, filesTotal: 1, bytesDone: 0, bytesTotal: 10 })}\n`);
    });
    await assert.rejects(land(new AgentClient({ url, token: 't' })), rejectsWith('TargetUnavailable', /ended \/v1\/land without a result line/));
  });

  it('passes on the type and path of an error line and of an error response', async () => {
    const url = await agentAt((req, res) => {
      if (req.url === '/v1/land') {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.end(`${JSON.stringify({ type: 'error', error: { type: 'ChecksumMismatch', message: 'blob for "a" does not match', path: 'a' } })}\n`);
        return;
      }
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ type: 'error', error: { type: 'TargetUnauthorized', message: 'missing or wrong token' } }));
    });
    const client = new AgentClient({ url, token: 't' });
    await assert.rejects(land(client), (err: unknown) => err instanceof AgentRequestError && err.type === 'ChecksumMismatch' && err.path === 'a');
    await assert.rejects(client.health(), (err: unknown) => err instanceof AgentRequestError && err.type === 'TargetUnauthorized' && err.status === 401);
  });

  it('names an unreachable agent', async () => {
    const url = await agentAt(() => undefined);
    const closed = servers.pop()!;
    await new Promise((resolve) => closed.close(resolve));
    await assert.rejects(new AgentClient({ url, token: 't' }).health(), rejectsWith('TargetUnavailable', /unreachable for \/v1\/health: ECONNREFUSED/));
  });

  it('sends a request again after a 503 that asks to retry, and fails on a 503 that does not', async () => {
    let calls = 0;
    const url = await agentAt((_req, res) => {
      calls++;
      if (calls === 1) {
        res.writeHead(503, { 'retry-after': '1', 'content-type': 'application/json' });
        res.end(JSON.stringify({ type: 'error', error: { type: 'TargetUnavailable', message: 'busy; retry' } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, bootId: 'b1', startedAt: '', apiVersion: 1, root: '/' }));
    });
    assert.equal((await new AgentClient({ url, token: 't' }).health()).bootId, 'b1');
    assert.equal(calls, 2);

    const shuttingDown = await agentAt((_req, res) => {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ type: 'error', error: { type: 'TargetUnavailable', message: 'the agent is shutting down' } }));
    });
    await assert.rejects(new AgentClient({ url: shuttingDown, token: 't' }).health(), rejectsWith('TargetUnavailable', /shutting down/));
  });

  it('cuts long path lists into sorted, unique batches of bounded size', () => {
    const paths = Array.from({ length: 1000 }, (_, i) => `d/${String(999 - i).padStart(4, '0')}`);
    const batches = pathBatches([...paths, paths[0]!], 1000);
    assert.ok(batches.length > 1);
    for (const batch of batches) assert.ok(Buffer.byteLength(JSON.stringify(batch)) <= 1000 + 2);
    assert.deepEqual(batches.flat(), [...paths].sort());
    assert.deepEqual(pathBatches([]), [[]], 'an empty list is still one request');
  });
});
