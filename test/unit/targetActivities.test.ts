import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { landBatches, landFilesWithUrls } from '../../activities/target';
import type { ManifestEntry } from '../../core/manifest';

const sha = (c: string) => c.repeat(64);

describe('landFilesWithUrls', () => {
  it('signs one URL per distinct blob in a batch and gives every entry (and every chunk) the URL of its own blob', async () => {
    const signed: string[] = [];
    const presign = async (sha256: string) => {
      signed.push(sha256);
      return `https://s3.example/blobs/${sha256.slice(0, 4)}?X-Amz-Signature=${signed.length}`;
    };
    const batch: ManifestEntry[] = [
      { path: 'a/empty-1', sha256: sha('e'), size: 0, mode: 0o644 },
      { path: 'a/empty-2', sha256: sha('e'), size: 0, mode: 0o644 },
      { path: 'b/data.csv', sha256: sha('9'), size: 4, mode: 0o644 },
      { path: 'b/copy.csv', sha256: sha('9'), size: 4, mode: 0o644 },
      { path: 'c/big.bin', sha256: sha('b'), size: 12, mode: 0o600, chunks: [{ sha256: sha('1'), size: 4 }, { sha256: sha('9'), size: 4 }, { sha256: sha('1'), size: 4 }] },
    ];
    const withUrls = await landFilesWithUrls(batch, presign);
    assert.deepEqual(signed, [sha('e'), sha('9'), sha('1')], 'each distinct blob signed once, chunks included; the chunked file itself has no blob');
    assert.deepEqual(
      withUrls.map((file) => [file.path, file.url ?? file.chunks?.map((c) => c.url)]),
      [
        ['a/empty-1', 'https://s3.example/blobs/eeee?X-Amz-Signature=1'],
        ['a/empty-2', 'https://s3.example/blobs/eeee?X-Amz-Signature=1'],
        ['b/data.csv', 'https://s3.example/blobs/9999?X-Amz-Signature=2'],
        ['b/copy.csv', 'https://s3.example/blobs/9999?X-Amz-Signature=2'],
        ['c/big.bin', ['https://s3.example/blobs/1111?X-Amz-Signature=3', 'https://s3.example/blobs/9999?X-Amz-Signature=2', 'https://s3.example/blobs/1111?X-Amz-Signature=3']],
      ],
    );
    assert.deepEqual(withUrls[4].chunks?.map((c) => c.size), [4, 4, 4]);
  });
});

describe('landBatches', () => {
  it('counts every chunk of a chunked file against the URLs of one request, and gives a file with more chunks than that a request of its own', () => {
    const small = (i: number): ManifestEntry => ({ path: `s${i}`, sha256: sha('a'), size: 1, mode: 0o644 });
    const chunked = (path: string, chunks: number): ManifestEntry => ({
      path,
      sha256: sha('b'),
      size: chunks,
      mode: 0o644,
      chunks: Array.from({ length: chunks }, () => ({ sha256: sha('c'), size: 1 })),
    });
    const entries = [...Array.from({ length: 999 }, (_, i) => small(i)), chunked('big', 600), small(999), chunked('huge', 1500), small(1000)];
    const sizes = landBatches(entries).map((batch) => batch.map((e) => e.path).join(',').length > 40 ? batch.length : batch.map((e) => e.path).join(','));
    assert.deepEqual(sizes, [999, 'big,s999', 'huge', 's1000']);
    assert.deepEqual(landBatches([]), []);
  });
});
