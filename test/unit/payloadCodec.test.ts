/**
 * Payload encryption: what history would hold is ciphertext that decodes
 * back to the exact payload; a wrong key or altered bytes fail loudly; the
 * codec server speaks the Web UI's protocol and answers CORS only for the
 * configured origin.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { defaultPayloadConverter } from '@temporalio/common';
import { payloadFromJson, payloadToJson, startCodecServer, type JsonPayload, type RunningCodecServer } from '../../temporal/codecServer';
import { AesGcmPayloadCodec, ENCRYPTED_ENCODING, PayloadDecryptionError } from '../../temporal/payloadCodec';

const key = randomBytes(32);
const codec = new AesGcmPayloadCodec(key);
const secretInput = { sessionId: 's1', source: { path: '/home/ana/very-private-project' } };

describe('AES-GCM payload codec', () => {
  it('round-trips payloads and leaves no plaintext in the encoded bytes', async () => {
    const payloads = [defaultPayloadConverter.toPayload(secretInput), defaultPayloadConverter.toPayload(null), defaultPayloadConverter.toPayload('x'.repeat(100_000))];
    const encoded = await codec.encode(payloads);
    for (const payload of encoded) {
      assert.equal(Buffer.from(payload.metadata!.encoding!).toString(), ENCRYPTED_ENCODING);
      assert.ok(!Buffer.from(payload.data!).includes('very-private-project'));
    }
    const decoded = await codec.decode(encoded);
    assert.deepEqual(defaultPayloadConverter.fromPayload(decoded[0]), secretInput);
    assert.equal(defaultPayloadConverter.fromPayload(decoded[1]), null);
    assert.equal((defaultPayloadConverter.fromPayload(decoded[2]) as string).length, 100_000);
    // A fresh IV per payload: the same input never encrypts to the same bytes.
    const [again] = await codec.encode([payloads[0]]);
    assert.notDeepEqual(Buffer.from(again.data!), Buffer.from(encoded[0].data!));
  });

  it('passes unencrypted payloads through on decode (history from before encryption was on)', async () => {
    const plain = defaultPayloadConverter.toPayload({ a: 1 });
    assert.deepEqual(await codec.decode([plain]), [plain]);
  });

  it('names the key when another key encrypted the payload, and refuses altered bytes', async () => {
    const [encoded] = await codec.encode([defaultPayloadConverter.toPayload(secretInput)]);
    const other = new AesGcmPayloadCodec(randomBytes(32));
    await assert.rejects(other.decode([encoded]), (err: unknown) => err instanceof PayloadDecryptionError && err.message.includes(codec.keyId));
    const data = Buffer.from(encoded.data!);
    data[20] ^= 1;
    await assert.rejects(codec.decode([{ ...encoded, data }]), (err: unknown) => err instanceof PayloadDecryptionError && /failed authentication/.test(err.message));
  });
});

describe('codec server', () => {
  let server: RunningCodecServer;
  const origin = 'http://127.0.0.1:8233';
  before(async () => {
    server = await startCodecServer({ codec, port: 0, allowedOrigins: [origin] });
  });
  after(() => server.close());

  it('decodes what /encode produced, in proto3 JSON', async () => {
    const payload = payloadToJson(defaultPayloadConverter.toPayload(secretInput));
    const encoded = await fetch(`${server.url}/encode`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-namespace': 'default' }, body: JSON.stringify({ payloads: [payload] }) });
    assert.equal(encoded.status, 200);
    const encodedBody = (await encoded.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    assert.equal(Buffer.from(encodedBody.payloads[0].metadata.encoding, 'base64').toString(), ENCRYPTED_ENCODING);
    const decoded = await fetch(`${server.url}/decode`, { method: 'POST', headers: { 'content-type': 'application/json', origin }, body: JSON.stringify(encodedBody) });
    assert.equal(decoded.status, 200);
    assert.equal(decoded.headers.get('access-control-allow-origin'), origin);
    const decodedBody = (await decoded.json()) as { payloads: JsonPayload[] };
    assert.deepEqual(defaultPayloadConverter.fromPayload(payloadFromJson(decodedBody.payloads[0])), secretInput);
  });

  it('answers the Web UI preflight for its origin only, and refuses other origins', async () => {
    const preflight = await fetch(`${server.url}/decode`, { method: 'OPTIONS', headers: { origin, 'access-control-request-headers': 'content-type,x-namespace' } });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), origin);
    assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /X-Namespace/);
    const evil = await fetch(`${server.url}/decode`, { method: 'POST', headers: { origin: 'https://evil.example' }, body: JSON.stringify({ payloads: [] }) });
    assert.equal(evil.status, 403);
    assert.equal(evil.headers.get('access-control-allow-origin'), null);
    const bad = await fetch(`${server.url}/decode`, { method: 'POST', body: 'nope' });
    assert.equal(bad.status, 400);
  });
});
