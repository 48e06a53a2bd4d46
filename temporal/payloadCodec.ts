/**
 * Optional payload encryption (FERRY_CODEC_KEY): every payload the worker
 * and the CLI send to Temporal — workflow inputs, results, heartbeat
 * details, log tails — is stored in history as AES-256-GCM ciphertext of
 * the original payload. The Temporal server and anyone reading history see
 * only `binary/encrypted` and a key id; the codec server (codecServer.ts)
 * lets the Web UI show the plaintext to people who can reach it.
 *
 * Search attributes are not payloads of this kind and stay readable (they
 * hold session ids and target kinds, by design).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { METADATA_ENCODING_KEY, type Payload, type PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** Thrown when a payload cannot be decrypted: another key, or altered bytes. */
export class PayloadDecryptionError extends Error {
  constructor(
    readonly keyId: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = 'PayloadDecryptionError';
  }
}

/** A short, non-secret name of a key, stored with each payload so a wrong key is named, not guessed. */
export function codecKeyId(key: Uint8Array): string {
  return createHash('sha256').update('ferry-codec-key-id:').update(key).digest('hex').slice(0, 16);
}

const text = (value: string) => new TextEncoder().encode(value);
const readText = (bytes: Uint8Array | null | undefined) => (bytes ? Buffer.from(bytes).toString('utf8') : undefined);

export class AesGcmPayloadCodec implements PayloadCodec {
  readonly keyId: string;

  constructor(private readonly key: Uint8Array) {
    if (key.length !== 32) throw new Error(`AES-256-GCM needs a 32-byte key, got ${key.length} bytes`);
    this.keyId = codecKeyId(key);
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', this.key, iv);
      const plain = temporal.api.common.v1.Payload.encode(payload).finish();
      const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return { metadata: { [METADATA_ENCODING_KEY]: text(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: text(this.keyId) }, data: sealed };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      // Payloads written before encryption was turned on stay readable.
      if (readText(payload.metadata?.[METADATA_ENCODING_KEY]) !== ENCRYPTED_ENCODING) return payload;
      const keyId = readText(payload.metadata?.[KEY_ID_METADATA]);
      if (keyId !== this.keyId)
        throw new PayloadDecryptionError(keyId, `payload was encrypted with key ${keyId ?? '(none named)'}, but FERRY_CODEC_KEY is key ${this.keyId}`);
      const sealed = Buffer.from(payload.data ?? new Uint8Array());
      if (sealed.length < IV_BYTES + TAG_BYTES) throw new PayloadDecryptionError(keyId, `encrypted payload is too short (${sealed.length} bytes)`);
      const decipher = createDecipheriv('aes-256-gcm', this.key, sealed.subarray(0, IV_BYTES));
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
      let plain: Buffer;
      try {
        plain = Buffer.concat([decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
      } catch {
        throw new PayloadDecryptionError(keyId, `encrypted payload failed authentication (altered, or another key with the same id)`);
      }
      return temporal.api.common.v1.Payload.decode(plain);
    });
  }
}

/** The data converter option for clients and workers: the codec when a key is configured, else nothing. */
export function payloadCodecsFor(codec: { key: Uint8Array } | undefined): { payloadCodecs: PayloadCodec[] } | undefined {
  return codec ? { payloadCodecs: [new AesGcmPayloadCodec(codec.key)] } : undefined;
}
