import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { packIndexBody, readPackIndex } from '../../activities/packs';
import { coalescePlaces, comparePlaces, packIndexKey, packKey, packListText, parsePacksKey, planPacks, RANGE_LIMITS, type PackListing, type PackPlace } from '../../core/packs';

const sha = (c: string) => c.repeat(64);
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

describe('planPacks', () => {
  it('fills packs in the order given, closing one before a blob would take it past the target, and the same blobs always make the same packs', () => {
    const blobs = [5, 3, 4, 9, 1, 1, 0, 12].map((size, i) => ({ sha256: sha(String(i)), size }));
    const plan = planPacks(blobs, 10);
    assert.deepEqual(
      plan.map((pack) => pack.map((blob) => blob.size)),
      [[5, 3], [4], [9, 1], [1, 0], [12]],
      'a blob larger than the target gets a pack of its own',
    );
    assert.deepEqual(planPacks(blobs, 10), plan);
    assert.deepEqual(planPacks([], 10), []);
  });

  it('names a pack by its blob list: the same list, the same name; another order, another name', () => {
    const a = { sha256: sha('a'), size: 1 };
    const b = { sha256: sha('b'), size: 2 };
    assert.equal(packListText([a, b]), `${sha('a')} 1\n${sha('b')} 2\n`);
    assert.notEqual(packListText([a, b]), packListText([b, a]));
  });
});

describe('pack keys', () => {
  it('puts packs and indexes in one folder under the blob prefix, and reads back only well-formed names', () => {
    assert.equal(packKey('p/', sha('1')), `p/blobs/packs/${sha('1')}.pack`);
    assert.equal(packIndexKey('p/', sha('2')), `p/blobs/packs/${sha('2')}.index`);
    assert.deepEqual(parsePacksKey('p/', packKey('p/', sha('1'))), { kind: 'pack', name: sha('1') });
    assert.deepEqual(parsePacksKey('p/', packIndexKey('p/', sha('2'))), { kind: 'index', name: sha('2') });
    for (const key of [`p/blobs/packs/${sha('A')}.pack`, `p/blobs/packs/${sha('1')}.tmp`, `q/blobs/packs/${sha('1')}.pack`, `p/blobs/packs/x.pack`, `p/blobs/sha256/11/${sha('1')}`]) {
      assert.equal(parsePacksKey('p/', key), undefined, key);
    }
  });
});

describe('coalescePlaces', () => {
  const place = (pack: string, offset: number, size: number): PackPlace => ({ pack, offset, size });

  it('reads neighbours of one pack in one range, through small gaps, and starts a new range at another pack, a large gap or the size limit', () => {
    const limits = { maxBytes: 100, maxGapBytes: 10 };
    const places = [place('a', 0, 10), place('a', 10, 10), place('a', 25, 5), place('a', 50, 10), place('b', 0, 10), place('b', 10, 95), place('b', 105, 5)];
    const { ranges, rangeOf } = coalescePlaces(places, limits);
    assert.deepEqual(ranges, [
      { pack: 'a', start: 0, end: 30 },
      { pack: 'a', start: 50, end: 60 },
      { pack: 'b', start: 0, end: 10 },
      { pack: 'b', start: 10, end: 110 },
    ]);
    assert.deepEqual(rangeOf, [0, 0, 0, 1, 2, 3, 3]);
  });

  it('reads a blob named twice, or one inside a range already planned, from that range; one before its start gets a range of its own', () => {
    const { ranges, rangeOf } = coalescePlaces([place('a', 10, 10), place('a', 10, 10), place('a', 20, 5), place('a', 12, 3), place('a', 0, 4)], RANGE_LIMITS);
    assert.deepEqual(ranges, [
      { pack: 'a', start: 10, end: 25 },
      { pack: 'a', start: 0, end: 4 },
    ]);
    assert.deepEqual(rangeOf, [0, 0, 0, 0, 1]);
  });

  it('sorts by pack, then offset', () => {
    const sorted = [place('b', 5, 1), place('a', 9, 1), place('b', 0, 1), place('a', 1, 1)].sort(comparePlaces);
    assert.deepEqual(sorted.map((p) => `${p.pack}${p.offset}`), ['a1', 'a9', 'b0', 'b5']);
  });
});

describe('pack index objects', () => {
  const listing = (blobs: [string, number][]): PackListing => ({ name: sha256(packListText(blobs.map(([s, size]) => ({ sha256: s, size })))), blobs });

  it('reads back what was written, named by the sha256 of its bytes', () => {
    const listings = [listing([[sha('1'), 10], [sha('2'), 0]]), listing([[sha('3'), 7]])];
    const { name, body } = packIndexBody(listings);
    assert.equal(name, sha256(body.toString('utf8')));
    assert.deepEqual(readPackIndex(name, body), { listings });
  });

  it('refuses an index whose bytes do not hash to its name, that is malformed, or that names a pack by another list', () => {
    const good = listing([[sha('1'), 10]]);
    const { name, body } = packIndexBody([good]);
    const damaged = Buffer.from(body);
    damaged[5] ^= 1;
    assert.match((readPackIndex(name, damaged) as { problem: string }).problem, /hashes to/);
    const cases: [unknown, RegExp][] = [
      ['not an index', /not an object/],
      [{ version: 2, packs: [] }, /unsupported index version/],
      [{ version: 1, packs: [{ name: 'x', blobs: [[sha('1'), 1]] }] }, /name is not/],
      [{ version: 1, packs: [{ name: good.name, blobs: [] }] }, /non-empty array/],
      [{ version: 1, packs: [{ name: good.name, blobs: [[sha('1'), -1]] }] }, /not \[sha256, size/],
      [{ version: 1, packs: [{ name: good.name, blobs: [[sha('1'), 9 << 20]] }] }, /not \[sha256, size/],
      // The list says blob 1 is 11 bytes long: the name no longer matches, so the index cannot move a blob.
      [{ version: 1, packs: [{ name: good.name, blobs: [[sha('1'), 11]] }] }, /is not named by its blob list/],
    ];
    for (const [value, problem] of cases) {
      const text = Buffer.from(JSON.stringify(value), 'utf8');
      const read = readPackIndex(sha256(text.toString('utf8')), text);
      assert.ok('problem' in read, JSON.stringify(value));
      assert.match(read.problem, problem, JSON.stringify(value));
    }
  });
});
