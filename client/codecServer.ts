/** `ferry codec-server`: the codec server in the foreground until Ctrl-C. */
import { ConfigError, type FerryConfig } from '../core/config';
import { startCodecServer } from '../temporal/codecServer';
import { AesGcmPayloadCodec } from '../temporal/payloadCodec';

export async function runCodecServer(config: FerryConfig, options: { port: number; host: string; origin?: string[] }, print: (line: string) => void): Promise<void> {
  if (!config.codec) throw new ConfigError('FERRY_CODEC_KEY', 'is not set: payloads are not encrypted, so there is nothing to decode');
  const codec = new AesGcmPayloadCodec(config.codec.key);
  const allowedOrigins = options.origin ?? [new URL(config.temporal.webUiUrl).origin];
  const server = await startCodecServer({ codec, host: options.host, port: options.port, allowedOrigins });
  print(`codec server ${server.url} (key ${codec.keyId}); allowed origins: ${allowedOrigins.join(', ')}`);
  print(`in the Web UI: Settings (top right) → Codec Server → ${server.url}; or start the UI with --ui-codec-endpoint ${server.url}`);
  await new Promise<void>((resolve) => {
    const stop = () => void server.close().then(resolve);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
