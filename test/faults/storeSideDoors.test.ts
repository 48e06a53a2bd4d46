/**
 * The embedded S3 server's side doors (issue 17, item 3): `weed mini` opens
 * a master, a volume server, a filer and an admin server next to S3, each
 * with an HTTP and a gRPC port on 127.0.0.1, which every local user can
 * reach. S3 demands a signature; this suite checks that every other TCP
 * port the real server process listens on refuses an unauthenticated read
 * of a stored blob, a listing of the blobs, and a write over one, and that
 * its unix sockets sit in the data folder only its user can enter.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import http2 from 'node:http2';
import { connect as netConnect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import protobuf from 'protobufjs';
import { freePort } from '../../client/ports';
import { repoRoot, resolveTool } from '../../client/tools';
import { startS3Server } from '../../client/s3Server';
import { type StartedServer } from '../../client/managedProcess';
import { sha256 } from '../support/fixtures';

const HOST = '127.0.0.1';
const BUCKET = 'ferry';
const ACCESS_KEY = 'sidedoor';
const SECRET_KEY = 'sidedoor-secret-0123456789abcdef';

/** The messages of SeaweedFS's filer.proto (package filer_pb) the probes send and read. */
const filerProto = protobuf.parse(`
  syntax = "proto3";
  package filer_pb;
  message FileChunk { string file_id = 1; int64 offset = 2; uint64 size = 3; }
  message FuseAttributes { uint64 file_size = 1; int64 mtime = 2; uint32 file_mode = 3; }
  message Entry { string name = 1; bool is_directory = 2; repeated FileChunk chunks = 3; FuseAttributes attributes = 4; bytes content = 9; }
  message LookupDirectoryEntryRequest { string directory = 1; string name = 2; }
  message LookupDirectoryEntryResponse { Entry entry = 1; }
  message CreateEntryRequest { string directory = 1; Entry entry = 2; }
`).root;
const LookupRequest = filerProto.lookupType('filer_pb.LookupDirectoryEntryRequest');
const LookupResponse = filerProto.lookupType('filer_pb.LookupDirectoryEntryResponse');
const CreateRequest = filerProto.lookupType('filer_pb.CreateEntryRequest');

let tmp: string;
let s3: StartedServer;
let client: S3Client;
/** A stored blob, its content holding a marker no probe's URL contains. */
const marker = `side-door-marker-${randomUUID()}`;
const content = Buffer.from(`${marker}\n`.repeat(2048));
const digest = sha256(content);
const blobDir = `blobs/sha256/${digest.slice(0, 2)}`;
const blobKey = `${blobDir}/${digest}`;
const filerDir = `/buckets/${BUCKET}/${blobDir}`;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'ferry-side-doors-'));
  const port = await freePort(HOST);
  s3 = await startS3Server({
    binary: resolveTool('weed', repoRoot()),
    dataDir: path.join(tmp, 's3'),
    host: HOST,
    port,
    accessKeyId: ACCESS_KEY,
    secretAccessKey: SECRET_KEY,
    bucket: BUCKET,
    logFile: path.join(tmp, 'weed.log'),
  });
  client = new S3Client({
    endpoint: `http://${HOST}:${port}`,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY },
  });
  await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: blobKey, Body: content }));
});

after(async () => {
  client?.destroy();
  await s3?.stop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** Socket inodes of a process's open descriptors. */
function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    const target = (() => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return '';
      }
    })();
    const match = /^socket:\[(\d+)\]$/.exec(target);
    if (match) inodes.add(match[1]!);
  }
  return inodes;
}

/** Every TCP port the process listens on (IPv4 and IPv6), from /proc. */
function listeningTcpPorts(pid: number): number[] {
  const inodes = socketInodes(pid);
  const ports = new Set<number>();
  for (const table of ['tcp', 'tcp6']) {
    const lines = readFileSync(`/proc/${pid}/net/${table}`, 'utf8').trim().split('\n').slice(1);
    for (const line of lines) {
      const fields = line.trim().split(/\s+/);
      // local_address is HEXIP:HEXPORT, st 0A is LISTEN, field 9 the inode.
      if (fields[3] === '0A' && inodes.has(fields[9]!)) ports.add(parseInt(fields[1]!.split(':')[1]!, 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

/** Paths of the unix sockets the process listens on. */
function listeningUnixSockets(pid: number): string[] {
  const inodes = socketInodes(pid);
  const lines = readFileSync(`/proc/${pid}/net/unix`, 'utf8').trim().split('\n').slice(1);
  const paths: string[] = [];
  for (const line of lines) {
    const fields = line.trim().split(/\s+/);
    // Flags 00010000 is __SO_ACCEPTCON (listening); field 6 the inode, field 7 the path.
    if (fields[3] === '00010000' && inodes.has(fields[6]!) && fields[7]) paths.push(fields[7]);
  }
  return paths;
}

interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One plain HTTP request; undefined when the port does not speak HTTP or drops the connection. */
function httpProbe(port: number, method: string, route: string, body?: Buffer): Promise<HttpAnswer | undefined> {
  return new Promise((resolve) => {
    const req = http.request({ host: HOST, port, method, path: route, timeout: 5_000, headers: body ? { 'content-length': body.length } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('latin1') }));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end(body);
  });
}

interface GrpcAnswer {
  /** grpc-status from the trailers (0 = OK); undefined when the call never got that far. */
  status?: number;
  message: Buffer;
  error?: string;
}

/**
 * One unary gRPC call over HTTP/2: in clear text (h2c) or over TLS, with or
 * without the client certificate weed's servers were given.
 */
function grpcCall(to: number | string, method: string, request: Uint8Array, tls?: { cert?: Buffer; key?: Buffer }): Promise<GrpcAnswer> {
  return new Promise((resolve) => {
    const authority = `${tls ? 'https' : 'http'}://${HOST}:${typeof to === 'number' ? to : 80}`;
    // A string is a unix socket's path.
    const socket = typeof to === 'string' ? { createConnection: () => (tls ? tlsConnect({ path: to, ...tls, rejectUnauthorized: false, ALPNProtocols: ['h2'] }) : netConnect(to)) } : {};
    const session = http2.connect(authority, { ...(tls ? { ...tls, rejectUnauthorized: false } : {}), ...socket });
    const done = (answer: GrpcAnswer) => {
      session.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => done({ message: Buffer.alloc(0), error: 'timeout' }), 5_000);
    session.on('error', (err) => {
      clearTimeout(timer);
      done({ message: Buffer.alloc(0), error: err.message });
    });
    const frame = Buffer.alloc(5 + request.length);
    frame.writeUInt32BE(request.length, 1);
    Buffer.from(request).copy(frame, 5);
    const stream = session.request({ ':method': 'POST', ':path': method, 'content-type': 'application/grpc', te: 'trailers' });
    const chunks: Buffer[] = [];
    let status: number | undefined;
    stream.on('response', (headers) => {
      if (headers['grpc-status'] !== undefined) status = Number(headers['grpc-status']);
    });
    stream.on('trailers', (trailers) => {
      if (trailers['grpc-status'] !== undefined) status = Number(trailers['grpc-status']);
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', (err) => {
      clearTimeout(timer);
      done({ status, message: Buffer.alloc(0), error: err.message });
    });
    stream.on('end', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      done({ status, message: all.length >= 5 ? all.subarray(5, 5 + all.readUInt32BE(1)) : Buffer.alloc(0) });
    });
    stream.end(frame);
  });
}

const LOOKUP = '/filer_pb.SeaweedFiler/LookupDirectoryEntry';
const CREATE = '/filer_pb.SeaweedFiler/CreateEntry';
const lookupBlob = () => LookupRequest.encode({ directory: filerDir, name: digest }).finish();

/** A variable of the weed process's environment (this test runs as the same user). */
function weedEnv(name: string): string | undefined {
  const environ = readFileSync(`/proc/${s3.pid}/environ`, 'utf8').split('\0');
  return environ.find((entry) => entry.startsWith(`${name}=`))?.slice(name.length + 1);
}

/** The client certificate weed's own parts present to its gRPC servers (none: they talk in clear text). */
function weedClientCertificate(): { cert: Buffer; key: Buffer } | undefined {
  const certFile = weedEnv('WEED_GRPC_CLIENT_CERT');
  const keyFile = weedEnv('WEED_GRPC_CLIENT_KEY');
  return certFile && keyFile ? { cert: readFileSync(certFile), key: readFileSync(keyFile) } : undefined;
}

/** The blob as S3 serves it to a signed request. */
async function storedBlob(): Promise<Buffer> {
  const got = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: blobKey }));
  return Buffer.from(await got.Body!.transformToByteArray());
}

describe('the embedded S3 server has no unauthenticated side doors', () => {
  it('every TCP port of the weed process refuses unauthenticated reads, listings and writes of stored blobs', async (t: TestContext) => {
    const ports = listeningTcpPorts(s3.pid);
    assert.ok(ports.includes(s3.ports['s3.port']!), `the S3 port is among the listening ports ${ports.join(',')}`);
    assert.ok(ports.length >= 5, `weed listens on its other servers' ports too: ${ports.join(',')}`);

    // The blob's volume file id, read as weed's own parts read it: gRPC with the certificate. This also
    // shows the gRPC probes below can succeed, so a refusal is the server's, not the probe's.
    const filerGrpc = s3.ports['filer.port.grpc']!;
    const authorized = await grpcCall(filerGrpc, LOOKUP, lookupBlob(), weedClientCertificate());
    assert.equal(authorized.status, 0, `an authorized lookup works (${authorized.error ?? ''})`);
    const entry = LookupResponse.toObject(LookupResponse.decode(authorized.message), { longs: Number }) as { entry?: { chunks?: { fileId: string }[] } };
    const fileIds = (entry.entry?.chunks ?? []).map((chunk) => chunk.fileId);
    assert.ok(fileIds.length > 0, 'the blob is stored in volume chunks');
    const fid = fileIds[0]!;

    const leaks: string[] = [];
    const forged = Buffer.from(`forged-${randomUUID()}`);
    for (const port of ports) {
      const reads: [string, string][] = [
        ['GET', `/buckets/${BUCKET}/${blobKey}`],
        ['GET', `/${BUCKET}/${blobKey}`],
        ['GET', `/${fid}`],
        ['GET', `/${fid.replace(',', '/')}`],
      ];
      for (const [method, route] of reads) {
        let answer = await httpProbe(port, method, route);
        // The master redirects file ids to the volume server: follow it once, as a client would.
        if (answer && answer.status >= 300 && answer.status < 400 && answer.headers.location) {
          const location = new URL(answer.headers.location, `http://${HOST}:${port}`);
          answer = await httpProbe(Number(location.port), method, location.pathname + location.search);
        }
        if (answer?.body.includes(marker)) leaks.push(`${port} ${method} ${route}: ${answer.status}, the blob's bytes`);
      }
      for (const route of [`/buckets/${BUCKET}/${blobDir}/`, `/buckets/${BUCKET}/${blobDir}/?pretty=y`, `/${BUCKET}?list-type=2`]) {
        const answer = await httpProbe(port, 'GET', route);
        if (answer?.body.includes(digest)) leaks.push(`${port} GET ${route}: ${answer.status}, lists the blob`);
      }
      for (const route of [`/dir/lookup?fileId=${fid}`, '/dir/assign']) {
        const answer = await httpProbe(port, 'GET', route);
        if (answer?.status === 200 && (answer.headers.authorization || /"fid"/.test(answer.body))) leaks.push(`${port} GET ${route}: a write token or file id`);
      }
      const writes: [string, string][] = [
        ['PUT', `/buckets/${BUCKET}/${blobKey}`],
        ['POST', `/buckets/${BUCKET}/${blobDir}/`],
        ['PUT', `/${BUCKET}/${blobKey}`],
        ['POST', `/${fid}`],
        ['PUT', `/${fid}`],
        ['DELETE', `/${fid}`],
        ['POST', '/submit'],
      ];
      for (const [method, route] of writes) {
        const answer = await httpProbe(port, method, route, forged);
        if (answer && answer.status >= 200 && answer.status < 300) leaks.push(`${port} ${method} ${route}: ${answer.status}`);
      }
      const overwrite = CreateRequest.encode({ directory: filerDir, entry: { name: digest, content: forged, attributes: { fileSize: forged.length, mtime: Math.floor(Date.now() / 1000), fileMode: 0o644 } } }).finish();
      for (const tls of [undefined, {}]) {
        const how = tls ? 'gRPC over TLS without a client certificate' : 'gRPC in clear text';
        const lookup = await grpcCall(port, LOOKUP, lookupBlob(), tls);
        if (lookup.status === 0 && lookup.message.includes(Buffer.from(fid))) leaks.push(`${port} ${how} LookupDirectoryEntry: the blob's file ids`);
        const create = await grpcCall(port, CREATE, overwrite, tls);
        if (create.status === 0) leaks.push(`${port} ${how} CreateEntry: accepted`);
      }
    }

    assert.deepEqual(leaks, [], 'no port serves the blob, its listing or a write without credentials');
    assert.ok((await storedBlob()).equals(content), 'the stored blob is intact');
    const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET }));
    assert.deepEqual(listed.Contents?.map((object) => object.Key), [blobKey], 'nothing was added to the bucket');
    t.diagnostic(`figures: ${ports.length} TCP ports probed (${ports.join(', ')}), each with 4 reads, 3 listings, 2 token requests, 7 writes over HTTP and a lookup and an overwrite over clear-text gRPC and TLS without a certificate; blob file id ${fid}`);
  });

  it("weed's unix sockets are in its data folder, which only its user may enter, or demand the certificate", async (t: TestContext) => {
    const dataDir = path.join(tmp, 's3');
    assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    const sockets = listeningUnixSockets(s3.pid);
    assert.ok(sockets.length > 0, 'weed listens on unix sockets');
    // weed puts its gRPC servers' sockets in /tmp whatever the flags say; each serves the same mutual-TLS gRPC server as the port.
    const outside = sockets.filter((socket) => !socket.startsWith(dataDir + path.sep));
    const open: string[] = [];
    for (const socket of outside) {
      for (const tls of [undefined, {}]) {
        const lookup = await grpcCall(socket, LOOKUP, lookupBlob(), tls);
        if (lookup.status === 0) open.push(`${socket} ${tls ? 'over TLS without a certificate' : 'in clear text'}`);
      }
    }
    assert.deepEqual(open, [], 'sockets outside the data folder refuse unauthenticated gRPC');
    t.diagnostic(`figures: ${sockets.length} unix sockets, ${sockets.length - outside.length} in the data folder, ${outside.length} in /tmp refusing unauthenticated gRPC (${outside.join(', ')})`);
    const keyFile = weedEnv('WEED_GRPC_CLIENT_KEY');
    assert.ok(keyFile, "weed's gRPC servers demand a client certificate");
    assert.equal(statSync(keyFile).mode & 0o777, 0o600, 'its key is readable by its owner only');
  });
});
