/**
 * Pipeline inputs that are not local folders, and combining a session's
 * inputs into the one manifest its data/ folder is verified against.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { S3ServiceException } from '@aws-sdk/client-s3';
import { FailureType } from '../core/errors';
import { createManifest, sameContent, type ManifestEntry, type ManifestRef } from '../core/manifest';
import { unsafePathReason } from '../core/paths';
import { blobStoreFailure } from './blobStore';
import { nonRetryable } from './failures';
import type { ContentStore } from './blobStore';

/** `s3://bucket/some/prefix/` → bucket and key prefix. */
export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
  if (!match) throw nonRetryable(FailureType.InvalidInput, `not an s3:// URL: ${JSON.stringify(url)}`, { url });
  return { bucket: match[1], prefix: match[2] };
}

export function createInputActivities(deps: { blobs: ContentStore }) {
  const { blobs } = deps;
  return {
    /**
     * Every object under an S3 prefix becomes a file (its key below the
     * prefix is the path), stored as a content-addressed blob: the data is
     * hashed here once, so the target can verify it like any other input.
     */
    async snapshotS3Input(input: { s3: string }): Promise<ManifestRef> {
      const context = Context.current();
      const { bucket, prefix } = parseS3Url(input.s3);
      const scratch = await mkdtemp(path.join(os.tmpdir(), 'ferry-s3-input-'));
      const entries: ManifestEntry[] = [];
      try {
        for await (const object of blobs.listObjects(bucket, prefix)) {
          const relative = object.key.slice(prefix.length).replace(/^\/+/, '');
          // Folder markers (keys ending in "/") hold no file.
          if (relative === '' || relative.endsWith('/')) continue;
          const reason = unsafePathReason(relative);
          if (reason) throw nonRetryable(FailureType.UnsafePath, `s3://${bucket}/${object.key}: ${reason}`, { path: relative, url: input.s3 });
          const file = path.join(scratch, 'object');
          const got = await blobs.downloadObject(bucket, object.key, file);
          await blobs.putFileAsBlob(file, got.sha256, got.size);
          entries.push({ path: relative, size: got.size, mode: 0o644, sha256: got.sha256 });
          context.heartbeat({ step: 'snapshotS3Input', filesDone: entries.length });
        }
      } catch (err) {
        if (err instanceof S3ServiceException && (err.name === 'NoSuchBucket' || err.name === 'AccessDenied' || err.$metadata.httpStatusCode === 403)) {
          throw nonRetryable(FailureType.InputNotFound, `cannot read ${input.s3}: ${err.name}`, { url: input.s3 });
        }
        throw blobStoreFailure(err);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
      if (entries.length === 0) throw nonRetryable(FailureType.InputNotFound, `${input.s3} holds no objects`, { url: input.s3 });
      return blobs.putManifest(createManifest(entries));
    },

    /** One manifest holding every input's files; a path two inputs hold with different contents is refused. */
    async composeInputs(input: { manifestDigests: string[] }): Promise<ManifestRef> {
      const byPath = new Map<string, ManifestEntry>();
      for (const digest of input.manifestDigests) {
        const manifest = await blobs.getManifest(digest).catch((err) => {
          throw blobStoreFailure(err);
        });
        for (const entry of manifest.files) {
          const earlier = byPath.get(entry.path);
          if (earlier && !sameContent(earlier, entry)) {
            throw nonRetryable(FailureType.InputConflict, `two inputs hold data/${entry.path} with different contents`, { path: entry.path, sha256s: [earlier.sha256, entry.sha256] });
          }
          byPath.set(entry.path, entry);
        }
      }
      return blobs.putManifest(createManifest([...byPath.values()]));
    },
  };
}
