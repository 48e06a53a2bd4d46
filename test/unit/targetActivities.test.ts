import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { withBlobUrls } from '../../activities/target';

describe('withBlobUrls', () => {
  it('signs one URL per distinct blob in a batch and gives every entry the URL of its own blob', async () => {
    const signed: string[] = [];
    const presign = async (sha256: string) => {
      signed.push(sha256);
      return `https://s3.example/blobs/${sha256}?X-Amz-Signature=${signed.length}`;
    };
    const batch = [
      { path: 'a/empty-1', sha256: 'e3b0', size: 0 },
      { path: 'a/empty-2', sha256: 'e3b0', size: 0 },
      { path: 'b/data.csv', sha256: '9f86', size: 4 },
      { path: 'b/copy.csv', sha256: '9f86', size: 4 },
      { path: 'c/empty-3', sha256: 'e3b0', size: 0 },
    ];
    const withUrls = await withBlobUrls(batch, presign);
    assert.deepEqual(signed, ['e3b0', '9f86']);
    assert.deepEqual(
      withUrls.map(({ path, url }) => [path, url]),
      [
        ['a/empty-1', 'https://s3.example/blobs/e3b0?X-Amz-Signature=1'],
        ['a/empty-2', 'https://s3.example/blobs/e3b0?X-Amz-Signature=1'],
        ['b/data.csv', 'https://s3.example/blobs/9f86?X-Amz-Signature=2'],
        ['b/copy.csv', 'https://s3.example/blobs/9f86?X-Amz-Signature=2'],
        ['c/empty-3', 'https://s3.example/blobs/e3b0?X-Amz-Signature=1'],
      ],
    );
  });
});
