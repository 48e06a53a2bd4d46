/**
 * core/sizeReport: which folders a large snapshot names, and whether the
 * ignore line it gives for each really leaves that folder out (checked with
 * the same gitignore matcher the snapshot uses).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import ignore from 'ignore';
import { FolderSizes, ignorePattern } from '../../core/sizeReport';

const MiB = 2 ** 20;

function sizesOf(files: Record<string, number>): FolderSizes {
  const sizes = new FolderSizes();
  for (const [path, size] of Object.entries(files)) sizes.add(path, size);
  return sizes;
}

describe('core/sizeReport', () => {
  it('says nothing about a small tree without usually-ignored folders', () => {
    assert.equal(sizesOf({ 'src/a.py': 10, 'README.md': 5, 'data/x.csv': 100 }).report(1000), undefined);
  });

  it('names the largest folders of a large tree, narrowed to where the bytes are, each with a line that ignores it', () => {
    const files: Record<string, number> = { 'train.py': 1_000 };
    for (let i = 0; i < 40; i++) files[`outputs/run3/weights/step${i}.bin`] = 50 * MiB;
    files['outputs/run3/log.txt'] = 1_000;
    for (let i = 0; i < 200; i++) files[`data/raw/part${i}.csv`] = MiB;
    files['src/model.py'] = 5_000;
    const report = sizesOf(files).report(1024 * MiB);
    assert.ok(report);
    assert.equal(report.large, true);
    assert.equal(report.filesTotal, 243);
    assert.deepEqual(
      report.folders.map((f) => [f.path, f.bytes, f.files, f.ignoreLine]),
      [
        ['outputs/run3/weights', 40 * 50 * MiB, 40, '/outputs/run3/weights/'],
        ['data/raw', 200 * MiB, 200, '/data/raw/'],
        ['src', 5_000, 1, '/src/'],
      ],
    );
    for (const folder of report.folders) assert.ok(ignore().add(folder.ignoreLine).ignores(`${folder.path}/`), folder.ignoreLine);
  });

  it('names usually-ignored folders at their outermost level even when the tree is small, with one line for every level', () => {
    const report = sizesOf({
      'web/package.json': 100,
      'web/node_modules/react/index.js': 3_000,
      'web/node_modules/react/lib/big.js': 90_000,
      'web/node_modules/react/node_modules/x/y.js': 1_000,
      'web/dist/app.js': 2_000,
      'scripts/build/run.sh': 50,
      'lib/__pycache__/m.cpython-312.pyc': 700,
      '.venv/bin/python': 400,
      'app.py': 10,
    }).report(1024 * MiB);
    assert.ok(report);
    assert.equal(report.large, false);
    const ignored = report.folders.filter((f) => f.usuallyIgnored);
    assert.deepEqual(
      ignored.map((f) => [f.path, f.bytes, f.files, f.ignoreLine, f.usuallyIgnored]),
      [
        ['web/node_modules', 94_000, 3, 'node_modules/', 'npm packages'],
        ['web/dist', 2_000, 1, 'dist/', 'build output'],
        ['lib/__pycache__', 700, 1, '__pycache__/', 'Python bytecode'],
        ['.venv', 400, 1, '.venv/', 'a Python virtualenv'],
      ],
      'a build/ of scripts with no project file beside it is not build output',
    );
    assert.ok(!report.folders.some((f) => f.path.startsWith('web/node_modules/')), 'nothing inside a folder already named');
    const rules = ignore().add(ignored.map((f) => f.ignoreLine));
    for (const folder of ignored) assert.ok(rules.ignores(`${folder.path}/`), folder.path);
    assert.equal(rules.ignores('scripts/build/'), false);
  });

  it('takes a file back out when it vanished, and escapes names that gitignore would read as patterns', () => {
    const sizes = sizesOf({ '#notes/a': 2 * MiB, '!keep/b': MiB, 'star*/c': MiB, 'trailing /d': MiB });
    sizes.add('#notes/a', -2 * MiB, -1);
    const report = sizes.report(MiB);
    assert.ok(report);
    assert.deepEqual(report.folders.map((f) => [f.path, f.files]), [['!keep', 1], ['star*', 1], ['trailing ', 1]]);
    for (const folder of report.folders) {
      const rules = ignore().add(folder.ignoreLine);
      assert.ok(rules.ignores(`${folder.path}/`), `${folder.ignoreLine} ignores ${folder.path}/`);
    }
    assert.equal(ignore().add(`${ignorePattern('star*')}/`).ignores('starry/'), false, 'the * is literal');
  });
});
