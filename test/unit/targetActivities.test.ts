import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { landBatches, landRequestFor, type BlobUrls } from '../../activities/targets/agentReach';
import type { ManifestEntry } from '../../core/manifest';
import type { PackPlace } from '../../core/packs';

const sha = (c: string) => c.repeat(64);

describe('landRequestFor', () => {
  it('signs one URL per pack and per distinct blob stored alone, and gives every entry (and every chunk) its place or its URL', async () => {
    const signed: string[] = [];
    const urls: BlobUrls = {
      blob: async (sha256) => {
        signed.push(`blob ${sha256.slice(0, 4)}`);
        return `https://s3.example/blobs/${sha256.slice(0, 4)}?X-Amz-Signature=${signed.length}`;
      },
      pack: async (name) => {
        signed.push(`pack ${name.slice(0, 4)}`);
        return `https://s3.example/blobs/packs/${name.slice(0, 4)}.pack?X-Amz-Signature=${signed.length}`;
      },
    };
    const places = new Map<string, PackPlace>([
      [sha('e'), { pack: sha('p'), offset: 0, size: 0 }],
      [sha('9'), { pack: sha('p'), offset: 0, size: 4 }],
      [sha('1'), { pack: sha('q'), offset: 8, size: 4 }],
    ]);
    const batch: ManifestEntry[] = [
      { path: 'a/empty-1', sha256: sha('e'), size: 0, mode: 0o644 },
      { path: 'a/empty-2', sha256: sha('e'), size: 0, mode: 0o644 },
      { path: 'b/data.csv', sha256: sha('9'), size: 4, mode: 0o644 },
      { path: 'b/alone.csv', sha256: sha('7'), size: 4, mode: 0o644 },
      { path: 'b/alone-copy.csv', sha256: sha('7'), size: 4, mode: 0o644 },
      { path: 'c/big.bin', sha256: sha('b'), size: 12, mode: 0o600, chunks: [{ sha256: sha('1'), size: 4 }, { sha256: sha('9'), size: 4 }, { sha256: sha('7'), size: 4 }] },
      { path: 'd/link', sha256: sha('4'), size: 6, mode: 0o777, link: 'target' },
    ];
    const request = await landRequestFor(batch, places, urls);
    assert.deepEqual(signed.sort(), ['blob 7777', `pack pppp`, 'pack qqqq'], 'each pack and each blob stored alone signed once; the chunked file itself has no blob');
    assert.deepEqual(
      request.packs.map((url) => new URL(url).pathname),
      ['/blobs/packs/pppp.pack', '/blobs/packs/qqqq.pack'],
      'packs numbered in the order the batch first names them',
    );
    const source = (blob: { url?: string; pack?: number; offset?: number }) => (blob.url !== undefined ? new URL(blob.url).pathname : `pack ${blob.pack} at ${blob.offset}`);
    assert.deepEqual(
      request.files.map((file) => [file.path, file.link ?? (file.chunks ? file.chunks.map(source) : source(file))]),
      [
        ['a/empty-1', 'pack 0 at 0'],
        ['a/empty-2', 'pack 0 at 0'],
        ['b/data.csv', 'pack 0 at 0'],
        ['b/alone.csv', '/blobs/7777'],
        ['b/alone-copy.csv', '/blobs/7777'],
        ['c/big.bin', ['pack 1 at 8', 'pack 0 at 0', '/blobs/7777']],
        ['d/link', 'target'],
      ],
    );
    assert.deepEqual(request.files[5].chunks?.map((c) => c.size), [4, 4, 4]);
  });
});

describe('landBatches', () => {
  const small = (i: number, place?: PackPlace): [ManifestEntry, PackPlace | undefined] => [{ path: `s${i}`, sha256: sha(String(i % 10)).slice(0, 60) + String(i).padStart(4, '0'), size: 1, mode: 0o644 }, place];
  const placesOf = (pairs: [ManifestEntry, PackPlace | undefined][]) => new Map(pairs.flatMap(([entry, place]) => (place ? [[entry.sha256, place] as [string, PackPlace]] : [])));

  it('orders files by where their bytes sit in the packs (files stored alone last, in order), so a request reads neighbouring bytes together', () => {
    const pairs = [small(0), small(1, { pack: sha('b'), offset: 0, size: 1 }), small(2, { pack: sha('a'), offset: 5, size: 1 }), small(3), small(4, { pack: sha('a'), offset: 1, size: 1 })];
    assert.deepEqual(
      landBatches(pairs.map(([entry]) => entry), placesOf(pairs)).map((batch) => batch.map((entry) => entry.path)),
      [['s4', 's2', 's1', 's0', 's3']],
    );
  });

  it('counts every chunk of a chunked file against the bodies of one request, and gives a file with more chunks than that a request of its own', () => {
    const chunked = (path: string, chunks: number): ManifestEntry => ({
      path,
      sha256: sha('b'),
      size: chunks,
      mode: 0o644,
      chunks: Array.from({ length: chunks }, () => ({ sha256: sha('c'), size: 1 })),
    });
    const entries = [...Array.from({ length: 4999 }, (_, i) => small(i)[0]), chunked('big', 600), small(4999)[0], chunked('huge', 7000), small(5000)[0]];
    const sizes = landBatches(entries, new Map()).map((batch) => (batch.length > 5 ? batch.length : batch.map((e) => e.path).join(',')));
    assert.deepEqual(sizes, [4999, 'big,s4999', 'huge', 's5000']);
    assert.deepEqual(landBatches([], new Map()), []);
  });

  it('keeps a request under 1 GiB of bodies', () => {
    const file = (path: string, size: number): ManifestEntry => ({ path, sha256: sha('d'), size, mode: 0o644 });
    const batches = landBatches([file('a', 600 << 20), file('b', 600 << 20), file('c', 100 << 20), file('d', 2 * 2 ** 30)], new Map());
    assert.deepEqual(batches.map((batch) => batch.map((entry) => entry.path)), [['a'], ['b', 'c'], ['d']]);
  });
});
