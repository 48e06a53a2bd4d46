/**
 * Reaching a session through the runtime agent (core/agentProtocol) over
 * HTTP: the `local` and `ecs` kinds. The agent fetches blobs itself by
 * presigned URL, hashes on its side and runs processes; the worker streams
 * logs and files it stores from the agent into the blob store.
 *
 * One agent may serve many sessions (the local agent keeps each under
 * `sessions/<id>`), so every path is joined to the session's `base` here.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PACKS_API_VERSION, type LandFile } from '../../core/agentProtocol';
import { FailureType, knownFailureType, type FailureTypeName } from '../../core/errors';
import type { LogStream } from '../../core/executionLogs';
import { blobsOfEntry, type ManifestEntry } from '../../core/manifest';
import { comparePlaces, type PackPlace } from '../../core/packs';
import { joinRelative } from '../../core/paths';
import { AgentClient, AgentRequestError, type AgentEndpoint } from '../agentClient';
import { nonRetryable, retryable } from '../failures';
import type { TargetTransfer } from '../blobStore';
import { BlobSourceChangedError } from '../blobStore';
import type { LandOutcome, LandSessionRequest, LogShipment, ProbeOutcome, SessionReach, StartSessionProcess, StoredFile } from './driver';

/** The sha256 of no bytes: an empty log's blob. */
const EMPTY_SHA256 = createHash('sha256').digest('hex');

const NON_RETRYABLE_AGENT_ERRORS = new Set<FailureTypeName>([
  FailureType.UnsafePath,
  FailureType.InvalidInput,
  FailureType.UrlNotAllowed,
  FailureType.TargetUnauthorized,
  // Retrying the same landing does not free space; minutes of retries would only hide the cause.
  FailureType.TargetDiskFull,
]);

/** Agent errors become failures of the same type; bad input, auth and a full disk are not retried. */
export function agentFailure(err: unknown): unknown {
  if (!(err instanceof AgentRequestError)) return err;
  const details = { path: err.path, status: err.status };
  const type = knownFailureType(err.type) ?? FailureType.TargetUnavailable;
  return NON_RETRYABLE_AGENT_ERRORS.has(type) ? nonRetryable(type, err.message, details) : retryable(type, err.message, details);
}

/**
 * Bodies per land request (a chunked file counts each chunk), and bytes:
 * bound a request's size and how long its presigned URLs must stay valid.
 */
const LAND_BATCH_ENTRIES = 5000;
const LAND_BATCH_BYTES = 1 << 30;

/** How the worker names where a blob may be fetched from. */
export interface BlobUrls {
  /** A presigned GET of a blob stored alone. */
  blob(sha256: string): Promise<string>;
  /** A presigned GET of a pack object, read by range. */
  pack(name: string): Promise<string>;
}

/**
 * The batch's entries as one land request: each blob in a pack by its place
 * (one URL per pack, however many of the batch's blobs it holds), any other
 * blob by a URL of its own. URLs are made once per batch: a signature costs
 * about a millisecond, and trees of many identical files (empty ones above
 * all) are common.
 */
export async function landRequestFor(batch: ManifestEntry[], places: Map<string, PackPlace>, urls: BlobUrls): Promise<{ files: LandFile[]; packs: string[] }> {
  const blobUrls = new Map<string, Promise<string>>();
  const packNumbers = new Map<string, number>();
  const urlOf = (sha256: string) => {
    let url = blobUrls.get(sha256);
    if (!url) blobUrls.set(sha256, (url = urls.blob(sha256)));
    return url;
  };
  const source = async (sha256: string): Promise<{ url: string } | { pack: number; offset: number }> => {
    const place = places.get(sha256);
    if (!place) return { url: await urlOf(sha256) };
    let pack = packNumbers.get(place.pack);
    if (pack === undefined) packNumbers.set(place.pack, (pack = packNumbers.size));
    return { pack, offset: place.offset };
  };
  const files = await Promise.all(
    batch.map(async ({ path, size, mode, sha256, chunks, link }): Promise<LandFile> => {
      if (link !== undefined) return { path, size, mode, sha256, link };
      if (!chunks) return { path, size, mode, sha256, ...(await source(sha256)) };
      return { path, size, mode, sha256, chunks: await Promise.all(chunks.map(async (chunk) => ({ ...chunk, ...(await source(chunk.sha256)) }))) };
    }),
  );
  const packs = await Promise.all([...packNumbers.keys()].map((name) => urls.pack(name)));
  return { files, packs };
}

/**
 * Entries in the order their bytes sit in the packs (entries not in a pack
 * last, as given), split into land requests of at most LAND_BATCH_ENTRIES
 * bodies and LAND_BATCH_BYTES; a larger file goes alone.
 */
export function landBatches(entries: ManifestEntry[], places: Map<string, PackPlace>): ManifestEntry[][] {
  const firstPlace = (entry: ManifestEntry) => places.get((entry.chunks?.[0] ?? entry).sha256);
  const packed = entries.filter((entry) => entry.link === undefined && firstPlace(entry) !== undefined);
  packed.sort((a, b) => comparePlaces(firstPlace(a)!, firstPlace(b)!));
  const ordered = [...packed, ...entries.filter((entry) => entry.link !== undefined || firstPlace(entry) === undefined)];
  const batches: ManifestEntry[][] = [];
  let current: ManifestEntry[] = [];
  let bodies = 0;
  let bytes = 0;
  for (const entry of ordered) {
    const count = entry.chunks?.length ?? 1;
    if (current.length && (bodies + count > LAND_BATCH_ENTRIES || bytes + entry.size > LAND_BATCH_BYTES)) {
      batches.push(current);
      current = [];
      bodies = 0;
      bytes = 0;
    }
    current.push(entry);
    bodies += count;
    bytes += entry.size;
  }
  if (current.length) batches.push(current);
  return batches;
}

export interface AgentReachOptions {
  endpoint: AgentEndpoint;
  /** The session's folder under the agent's root ('' when the agent serves only this session). */
  base: string;
  blobs: TargetTransfer;
  description: string;
}

/** Runs an agent call, turning its errors into typed failures. */
async function typed<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw agentFailure(err);
  }
}

export class AgentReach implements SessionReach {
  readonly description: string;
  // A status request long-polls the agent: cheap enough to follow output each second.
  readonly followEveryMs = 1_000;
  private readonly agent: AgentClient;

  constructor(private readonly options: AgentReachOptions) {
    this.description = options.description;
    this.agent = new AgentClient(options.endpoint);
  }

  private at(relative: string): string {
    return joinRelative(this.options.base, relative);
  }

  bootId(): Promise<string> {
    return typed(async () => (await this.agent.health()).bootId);
  }

  /** The agent's health: its boot id and root. */
  health() {
    return typed(() => this.agent.health());
  }

  async makeDirs(dirs: string[]): Promise<void> {
    await typed(() => this.agent.makeDirs([this.options.base, ...dirs.map((dir) => this.at(dir))].filter((dir) => dir !== '')));
  }

  listFiles(request: { dir: string; paths?: string[]; hash: boolean }, onProgress?: (filesDone: number, bytesDone: number) => void) {
    const listing = { dir: this.at(request.dir), paths: request.paths };
    return typed(() =>
      request.hash ? this.agent.hashedFiles(listing, onProgress) : this.agent.statFiles(listing).then(({ bootId, files }) => ({ bootId, files: files.map((f) => ({ ...f, sha256: '' })) })),
    );
  }

  land(request: LandSessionRequest, onProgress: (filesDone: number, bytesDone: number) => void): Promise<LandOutcome> {
    return typed(async () => {
      const dir = this.at(request.dir);
      const { bootId, apiVersion } = await this.agent.health();
      const outcome: LandOutcome = { bootId, filesLanded: 0, bytesLanded: 0, bytesDownloaded: 0, bytesReused: 0, filesRemoved: 0 };
      const { blobs } = this.options;
      const places = await blobs.locateBlobs(request.files.flatMap((entry) => blobsOfEntry(entry).map((blob) => blob.sha256)));
      if (places.size > 0 && apiVersion < PACKS_API_VERSION) {
        throw nonRetryable(FailureType.TargetUnsupported, `${this.description} runs a runtime agent of API version ${apiVersion}, which cannot read blobs out of packs (version ${PACKS_API_VERSION} on): upgrade its image`, {
          apiVersion,
          needed: PACKS_API_VERSION,
        });
      }
      const batches = landBatches(request.files, places);
      const urls: BlobUrls = { blob: (sha256) => blobs.presignBlobGet(sha256), pack: (name) => blobs.presignPackGet(name) };
      const signBatch = (batch: ManifestEntry[]) => landRequestFor(batch, places, urls);
      // The next batch is signed while the target lands this one: signing stays off the critical path, and no URL is older than one batch's landing.
      let signed = batches.length ? signBatch(batches[0]) : undefined;
      let done = { files: 0, bytes: 0 };
      for (const [index, batch] of batches.entries()) {
        const { files, packs } = await (signed as ReturnType<typeof signBatch>);
        signed = index + 1 < batches.length ? signBatch(batches[index + 1]) : undefined;
        signed?.catch(() => undefined);
        const base = done;
        const result = await this.agent.land({ dir, files, ...(packs.length ? { packs } : {}) }, (event) => {
          if (event.type === 'progress') onProgress(base.files + event.filesDone, base.bytes + event.bytesDone);
        });
        if (result.bootId !== bootId) {
          throw retryable(FailureType.TargetRestarted, `${this.description} restarted while landing (boot ${bootId} → ${result.bootId})`, { bootId, newBootId: result.bootId });
        }
        outcome.filesLanded += result.filesLanded;
        outcome.bytesLanded += result.bytesLanded;
        // Agents from before chunking download every byte they land.
        outcome.bytesDownloaded += result.bytesDownloaded ?? result.bytesLanded;
        outcome.bytesReused += result.bytesReused ?? 0;
        done = { files: base.files + batch.length, bytes: base.bytes + batch.reduce((sum, f) => sum + f.size, 0) };
        onProgress(done.files, done.bytes);
      }
      if (request.remove.length) outcome.filesRemoved = (await this.agent.remove(request.remove.map((p) => joinRelative(dir, p)))).removed;
      return outcome;
    });
  }

  startProcess(request: StartSessionProcess) {
    return typed(() =>
      this.agent.startProcess({
        processId: request.processId,
        command: request.command,
        // The agent's own root is named by leaving cwd out.
        cwd: this.at(request.cwd) || undefined,
        env: request.env,
        timeoutSeconds: request.timeoutSeconds,
        output: request.output,
        waitMs: request.waitMs,
      }),
    );
  }

  probeProcess(processId: string, options: { waitMs: number; ship?: LogShipment; shipStderr?: LogShipment }): Promise<ProbeOutcome> {
    return typed(async () => {
      const status = await this.agent.processStatus(processId, options.waitMs);
      const shipLog = async (stream: 'stdout' | 'stderr', ship: LogShipment | undefined, logBytes: number): Promise<number> => {
        if (!ship || logBytes <= ship.offset) return 0;
        const bytes = await this.agent.processLog(processId, stream, ship.offset, ship.maxBytes);
        if (bytes.length === 0) return 0;
        await putToUrl(ship.url, bytes);
        return bytes.length;
      };
      const [shipped, shippedStderr] = await Promise.all([shipLog('stdout', options.ship, status.stdoutBytes), shipLog('stderr', options.shipStderr, status.stderrBytes)]);
      return { status, shipped, shippedStderr };
    });
  }

  stopProcess(processId: string, graceSeconds: number) {
    return typed(() => this.agent.stopProcess(processId, graceSeconds));
  }

  storeFiles(dir: string, files: StoredFile[], onStored: (file: StoredFile) => void): Promise<void> {
    return typed(() =>
      withScratch(async (scratch) => {
        for (const [index, file] of files.entries()) {
          await this.storeFromAgent(scratch, `file-${index}`, (into) => this.agent.downloadFile(this.at(joinRelative(dir, file.path)), into), file.sha256, file.path);
          onStored(file);
        }
      }),
    );
  }

  storeLogs(processId: string, bytes: Record<LogStream, number>): Promise<{ stdout: StoredFile; stderr: StoredFile }> {
    return typed(() =>
      withScratch(async (scratch) => {
        const store = async (stream: LogStream): Promise<StoredFile> => {
          const name = `${stream}.log`;
          // An empty log (stderr of most runs, both of `true`) is the empty blob: nothing to fetch from the agent.
          if (bytes[stream] === 0) return { path: name, size: 0, sha256: await this.storeEmptyBlob() };
          return { path: name, ...(await this.storeFromAgent(scratch, name, (into) => this.agent.downloadLog(processId, stream, into))) };
        };
        // Both at once: each is a download from the agent and a store round trip, and every execution waits for them.
        // Both settle before the scratch folder goes, even when one fails.
        const [stdout, stderr] = await Promise.allSettled([store('stdout'), store('stderr')]);
        if (stdout.status === 'rejected') throw stdout.reason;
        if (stderr.status === 'rejected') throw stderr.reason;
        return { stdout: stdout.value, stderr: stderr.value };
      }),
    );
  }

  /** Removes the session's folder, stopping the processes running in it. */
  async removeSession(): Promise<{ processesStopped: number }> {
    return typed(() => this.agent.remove([this.options.base]));
  }

  /** The empty blob's sha256, once the store holds it (it remembers blobs it has seen, so this is mostly free). */
  private async storeEmptyBlob(): Promise<string> {
    const { blobs } = this.options;
    if (!(await blobs.findStandaloneBlobs([EMPTY_SHA256])).has(EMPTY_SHA256)) await blobs.putBlob(EMPTY_SHA256, Buffer.alloc(0));
    return EMPTY_SHA256;
  }

  /** Copies bytes from the agent into the blob store; they must hash to `expectedSha256` when given. */
  private async storeFromAgent(scratch: string, name: string, fetchInto: (file: string) => Promise<{ size: number; sha256: string }>, expectedSha256?: string, shownAs = name) {
    const file = path.join(scratch, name);
    const got = await fetchInto(file);
    if (expectedSha256 !== undefined && got.sha256 !== expectedSha256) {
      throw retryable(FailureType.ArtifactChanged, `${shownAs} changed while it was stored (sha256 ${got.sha256}, listed as ${expectedSha256})`, { path: shownAs });
    }
    try {
      await this.options.blobs.putFileAsBlob(file, got.sha256, got.size);
    } catch (err) {
      if (err instanceof BlobSourceChangedError) throw retryable(FailureType.ArtifactChanged, err.message, { path: shownAs });
      throw err;
    }
    return got;
  }
}

/** Runs `work` with a scratch folder on the worker that is removed afterwards. */
async function withScratch<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ferry-session-'));
  try {
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** PUTs bytes to a presigned URL (a log chunk). */
async function putToUrl(url: string, body: Buffer): Promise<void> {
  let response: Response;
  try {
    response = await fetch(url, { method: 'PUT', body, signal: AbortSignal.timeout(60_000) });
  } catch (err) {
    throw new AgentRequestError(FailureType.TargetUnavailable, `log upload to the blob store failed: ${(err as Error).message}`);
  }
  if (!response.ok) throw new AgentRequestError(FailureType.TargetUnavailable, `log upload to the blob store answered HTTP ${response.status}`);
}
