import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { CHUNKING, ChunkSplitter, chunkEnd, chunkingParamsProblems } from '../../core/chunking';
import { COARSE_RACY_MARGIN_NS, HashCache, RACY_MARGIN_NS, type StatSignature } from '../../core/hashCache';
import { chunksOf, seededBytes } from '../support/fixtures';

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

describe('core/chunking (FastCDC)', () => {
  const data = seededBytes(40 << 20, 7);

  it('chunks add up to the input, stay within the size bounds, and average near the target size', () => {
    const chunks = chunksOf(data, 8 << 20);
    assert.ok(Buffer.concat(chunks).equals(data));
    for (const chunk of chunks.slice(0, -1)) {
      assert.ok(chunk.length >= CHUNKING.minBytes && chunk.length <= CHUNKING.maxBytes, `${chunk.length} bytes`);
    }
    const average = data.length / chunks.length;
    assert.ok(average > CHUNKING.averageBytes / 2 && average < CHUNKING.averageBytes * 2, `average ${average} bytes over ${chunks.length} chunks`);
  });

  it('cuts at the same places however the bytes are written', () => {
    const reference = chunksOf(data, 8 << 20).map(sha);
    for (const writeBytes of [1 << 20, 3_333_333, 64 << 10, data.length]) assert.deepEqual(chunksOf(data, writeBytes).map(sha), reference, `writes of ${writeBytes}`);
  });

  it('a 1 MiB edit in the middle changes only the chunks around it; an insertion shifts no other chunk', () => {
    const before = new Set(chunksOf(data, 8 << 20).map(sha));
    const edited = Buffer.from(data);
    seededBytes(1 << 20, 99).copy(edited, 20 << 20);
    const inserted = Buffer.concat([data.subarray(0, 13 << 20), Buffer.from('a few inserted bytes'), data.subarray(13 << 20)]);
    for (const [name, changed, budget] of [['overwrite', edited, 5 << 20], ['insertion', inserted, 2 * CHUNKING.maxBytes]] as const) {
      const newChunks = chunksOf(changed, 8 << 20).filter((chunk) => !before.has(sha(chunk)));
      const newBytes = newChunks.reduce((sum, c) => sum + c.length, 0);
      assert.ok(newBytes <= budget, `${name}: ${newChunks.length} new chunks, ${newBytes} bytes`);
      assert.ok(newChunks.length >= 1);
    }
  });

  it('the final chunk may be short; an input at or under the minimum is one chunk; nothing in, nothing out', () => {
    assert.equal(chunkEnd(data, 0, 1000), 1000);
    assert.deepEqual(chunksOf(Buffer.alloc(0), 1), []);
    assert.equal(chunksOf(data.subarray(0, CHUNKING.minBytes), 4096).length, 1);
    const zeros = chunksOf(Buffer.alloc(10 << 20), 1 << 20);
    assert.ok(zeros.every((chunk, i) => chunk.length === CHUNKING.maxBytes || i === zeros.length - 1), 'bytes with no content match are cut at the maximum');
  });

  it('refuses parameters that cannot chunk', () => {
    assert.deepEqual(chunkingParamsProblems(CHUNKING), []);
    assert.equal(chunkingParamsProblems({ minBytes: 1 << 10, averageBytes: 3000, maxBytes: 1 << 20 }).length, 1);
    assert.throws(() => new ChunkSplitter({ minBytes: 1 << 20, averageBytes: 1 << 20, maxBytes: 1 << 19 }), RangeError);
  });
});

describe('core/hashCache', () => {
  const now = 1_800_000_000_123_456_789n;
  const signature = (changes: Partial<StatSignature> = {}): StatSignature => ({ dev: 1n, ino: 2n, size: 3n, mtimeNs: now - 10n ** 10n, ctimeNs: now - 10n ** 10n, ...changes });

  it('answers only for the exact signature it was given', () => {
    const cache = new HashCache<string>();
    assert.equal(cache.set('/a', signature(), now, 'digest'), true);
    assert.equal(cache.get('/a', signature()), 'digest');
    for (const changed of [{ ino: 9n }, { size: 4n }, { mtimeNs: now - 1n }, { ctimeNs: now - 10n ** 10n + 1n }, { dev: 7n }]) assert.equal(cache.get('/a', signature(changed)), undefined, JSON.stringify(changed, (_, v) => (typeof v === 'bigint' ? String(v) : v)));
    assert.equal(cache.get('/b', signature()), undefined);
  });

  it('does not keep a file that changed within the racy margin before it was read (a later write in the same tick would look unchanged)', () => {
    const cache = new HashCache<string>();
    assert.equal(cache.set('/racy', signature({ ctimeNs: now - RACY_MARGIN_NS + 1n }), now, 'digest'), false);
    assert.equal(cache.get('/racy', signature({ ctimeNs: now - RACY_MARGIN_NS + 1n })), undefined);
    assert.equal(cache.set('/racy', signature({ mtimeNs: now }), now, 'digest'), false, 'a future mtime is racy too');
    assert.equal(cache.set('/fine', signature({ ctimeNs: now - RACY_MARGIN_NS - 1n }), now, 'digest'), true);
    // Whole-second timestamps: the filesystem ticks in seconds, so 1.5 s ago may be the same tick as a write to come.
    const coarse = { mtimeNs: 1_800_000_000_000_000_000n - 1_000_000_000n, ctimeNs: 1_800_000_000_000_000_000n - 1_000_000_000n };
    assert.equal(cache.set('/coarse', signature(coarse), coarse.ctimeNs + 1_500_000_000n, 'digest'), false);
    assert.equal(cache.set('/coarse', signature(coarse), coarse.ctimeNs + COARSE_RACY_MARGIN_NS + 1n, 'digest'), true);
    cache.set('/old', signature(), now, 'first');
    cache.set('/old', signature({ ctimeNs: now }), now, 'second');
    assert.equal(cache.get('/old', signature()), undefined, 'a racy re-read forgets what was known before');
  });

  it('keeps at most its bound, dropping the oldest', () => {
    const cache = new HashCache<number>(2);
    for (const [i, path] of ['/1', '/2', '/3'].entries()) cache.set(path, signature(), now, i);
    assert.equal(cache.size, 2);
    assert.equal(cache.get('/1', signature()), undefined);
    assert.equal(cache.get('/3', signature()), 2);
  });
});
