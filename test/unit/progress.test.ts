/**
 * Progress a person can read: the rate and time left the activities put in
 * their heartbeats (core/progress), the line the CLI prints from them, and
 * the summary's counts (files as files, blobs as blobs, "1 file").
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatDryRun, formatSyncSummary, type SyncSummary } from '../../client/commands';
import { countOf, describeProgress, progressLine } from '../../client/progress';
import { RateMeter } from '../../core/progress';
import type { SyncDryRun, SyncResult, TransferProgress } from '../../core/sync';

const MiB = 2 ** 20;
const upload = (bytesDone: number): TransferProgress => ({ step: 'uploadBlobs', filesDone: 3, filesTotal: 10, bytesDone, bytesTotal: 100 * MiB, blobsDone: 4, blobsTotal: 40 });

describe('core/progress RateMeter', () => {
  it('gives no rate for the first half second, then bytes per second over the last five seconds and the time left', () => {
    const meter = new RateMeter();
    assert.deepEqual(meter.stamp(0, upload(0)), upload(0));
    assert.equal(meter.stamp(250, upload(MiB)).bytesPerSecond, undefined);
    const at1s = meter.stamp(1000, upload(10 * MiB));
    assert.equal(at1s.bytesPerSecond, 10 * MiB);
    assert.equal(at1s.etaSeconds, 9);
    // The rate drops: samples older than the window stop counting.
    for (let t = 2000; t <= 10_000; t += 1000) meter.stamp(t, upload(10 * MiB + ((t - 1000) / 1000) * MiB));
    const late = meter.stamp(11_000, upload(20 * MiB));
    assert.equal(late.bytesPerSecond, MiB);
    assert.equal(late.etaSeconds, 80);
  });

  it('gives a rate but no time left while the totals are still growing, and replaces stale figures', () => {
    const meter = new RateMeter();
    const listing: TransferProgress = { step: 'snapshotSource', filesDone: 5, filesTotal: 9, bytesDone: 0, bytesTotal: 10, listing: true, bytesPerSecond: 99, etaSeconds: 99 };
    assert.deepEqual(meter.stamp(0, listing), { step: 'snapshotSource', filesDone: 5, filesTotal: 9, bytesDone: 0, bytesTotal: 10, listing: true });
    const later = meter.stamp(1000, { ...listing, bytesDone: 5 });
    assert.equal(later.bytesPerSecond, 5);
    assert.equal(later.etaSeconds, undefined);
  });
});

describe('client/progress lines', () => {
  it('counts blobs as blobs and files as files, with rate and ETA', () => {
    const line = progressLine({ activityType: 'uploadBlobs', attempt: 1, progress: { ...upload(25 * MiB), bytesPerSecond: 5 * MiB, etaSeconds: 15 } });
    assert.equal(line, 'uploadBlobs 25% 4/40 blobs · 3/10 files · 25.0 MiB/100.0 MiB · 5.0 MiB/s · ETA 15.0s');
    assert.equal(progressLine({ activityType: 'landManifest', attempt: 2 }), 'landManifest (attempt 2)');
    assert.equal(
      describeProgress({ step: 'snapshotSource', filesDone: 1, filesTotal: 1200, bytesDone: 10, bytesTotal: 2048, listing: true }),
      'listing: 1,200 files found · 10 B/2.0 KiB',
    );
    assert.deepEqual([countOf(1, 'file'), countOf(0, 'file'), countOf(1400, 'blob')], ['1 file', '0 files', '1,400 blobs']);
  });
});

describe('client/commands summaries', () => {
  const base = { workflowId: 'sync-s-1', sessionId: 's', target: { kind: 'local' as const }, dest: 'data', manifestDigest: 'd'.repeat(64), runId: 'r', webUiUrl: 'http://ui' };
  const noLinks = { total: 0, first: [] };

  it('says "1 file" and "1 blob", and lists links left out with what to do about them', () => {
    const result: SyncResult = {
      ...base,
      manifestKey: 'k',
      filesTotal: 1,
      bytesTotal: 5,
      blobsUploaded: 1,
      bytesUploaded: 5,
      bytesSkipped: 0,
      filesLanded: 1,
      bytesLanded: 5,
      bytesDownloaded: 5,
      bytesReused: 0,
      filesVerified: 1,
      verified: true,
      bootId: 'b',
      skipped: [],
      linksSkipped: { total: 2, first: [{ path: 'site.py', target: '/etc/python/site.py', why: 'outside' }, { path: 'old', target: 'gone.txt', why: 'dangling' }] },
      durationsMs: { snapshotSource: 1, uploadBlobs: 1, landManifest: 1, verifyLanding: 1 },
    };
    const text = formatSyncSummary(result as SyncSummary);
    assert.match(text, /^✔ synced 1 file \(5 B\)/);
    assert.match(text, /uploaded {3}5 B in 1 blob;/);
    assert.match(text, /landed {5}5 B in 1 file;/);
    assert.match(text, /verified {3}1 file re-hashed/);
    assert.match(text, /links {6}2 symlinks left out.*--links follow.*--links copy/);
    assert.match(text, /site\.py -> \/etc\/python\/site\.py\n/);
    assert.match(text, /old -> gone\.txt \(dangling\)/);
  });

  it('a dry run says what would sync and what the store lacks, and that nothing changed', () => {
    const plan: SyncDryRun = { ...base, dryRun: true, filesTotal: 3, bytesTotal: 3 * MiB, store: { blobsTotal: 3, blobsNew: 1, bytesNew: MiB }, landing: { description: 'local agent session s', filesHeld: 1, bytesHeld: MiB, filesToLand: 2, bytesToLand: 2 * MiB }, skipped: [], skippedTotal: 0, linksSkipped: noLinks };
    const text = formatDryRun({ ...plan, webUiUrl: 'http://ui' });
    assert.match(text, /^dry run: 3 files \(3\.0 MiB\) would sync into session s:data; nothing was stored, uploaded or landed/);
    assert.match(text, /store {6}1 blob of 3 new to the store: 1\.0 MiB to upload/);
    assert.match(text, /target {5}local agent session s holds 1 file of 3 \(1\.0 MiB\): 2 files \(2\.0 MiB\) to land/);
    assert.equal(formatSyncSummary({ ...plan, runId: 'r', webUiUrl: 'http://ui' }), text);
  });
});
