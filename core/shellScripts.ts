/**
 * The POSIX shell scripts a `shell` or `ssm` target runs, and the parsers of
 * what they print. The scripts are constants: every value they need (paths,
 * URLs, digests, the command) arrives as an environment variable, and where
 * text must become shell input (the SSM prelude, the command line) it goes
 * through {@link shellQuote}. Nothing is ever spliced into a script.
 *
 * The scripts need GNU coreutils, findutils, tar and gzip, awk, curl and
 * setsid, as on Amazon Linux and Ubuntu. Each prints one line
 * `ferry-report {json}`; its values are numbers and names ferry chose, never
 * file names, so the line stays short (SSM keeps only the first 24,000
 * characters of stdout) and cannot be forged by file contents.
 */
import type { ManifestEntry } from './manifest';
import type { TargetFile } from './verify';

/** Thrown when a value cannot be passed to a shell at all (it holds NUL). */
export class UnquotableValueError extends Error {
  constructor(readonly value: string) {
    super(`a NUL byte cannot be passed to a shell: ${JSON.stringify(value.slice(0, 80))}`);
    this.name = 'UnquotableValueError';
  }
}

/**
 * One shell word holding exactly `value`: single quotes, with each `'`
 * written as `'\''`. Inside single quotes the shell interprets nothing
 * (no `$`, backquote, backslash or newline handling), so this is exact for
 * every string without NUL.
 */
export function shellQuote(value: string): string {
  if (value.includes('\0')) throw new UnquotableValueError(value);
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/** argv as one shell command line (each word quoted). */
export function quoteCommand(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `export NAME='value'` lines; names are checked, values quoted. */
export function exportLines(env: Readonly<Record<string, string>>): string {
  return Object.entries(env)
    .map(([name, value]) => {
      if (!ENV_NAME.test(name)) throw new Error(`not a shell variable name: ${JSON.stringify(name)}`);
      return `export ${name}=${shellQuote(value)}\n`;
    })
    .join('');
}

/** A script with its environment set in the script itself, for transports without an environment (SSM AWS-RunShellScript). */
export function withExportedEnv(script: string, env: Readonly<Record<string, string>>): string {
  return `${exportLines(env)}${script}`;
}

export const REPORT_PREFIX = 'ferry-report ';

export interface ScriptFailureReport {
  ok: false;
  /** Short machine-readable reason (`unsafe`, `checksum`, `download`, …). */
  reason: string;
}

/** The last `ferry-report` line of a script's stdout, parsed; undefined when there is none. */
export function parseReport<T extends object>(stdout: string): (T & { ok: true }) | ScriptFailureReport | undefined {
  const lines = stdout.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!;
    if (!line.startsWith(REPORT_PREFIX)) continue;
    try {
      return JSON.parse(line.slice(REPORT_PREFIX.length)) as (T & { ok: true }) | ScriptFailureReport;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

const PRELUDE = String.raw`set -eu
umask 022
report() { printf 'ferry-report %s\n' "$1"; }
fail() { printf 'ferry-report {"ok":false,"reason":"%s"}\n' "$1"; printf 'ferry: %s\n' "$2" >&2; exit 3; }
run="$FERRY_RUN_DIR"
`;

/**
 * Lists a tree on the target with sizes, modes and sha256 (for the delta
 * inventory and for verification) and PUTs the listing to a presigned URL:
 * listings can be far longer than SSM's output cap.
 *
 * env: FERRY_RUN_DIR, FERRY_TREE (folder inside the run dir, e.g. `current`),
 * FERRY_LISTING_URL. Listing format: see {@link parseTreeListing}.
 */
export const HASH_TREE_SCRIPT = `${PRELUDE}
if [ ! -d "$run/$FERRY_TREE" ]; then report '{"ok":true,"exists":false}'; exit 0; fi
cd -P "$run/$FERRY_TREE"
release=$(pwd -P); release=\${release##*/}
case $release in *[!A-Za-z0-9._-]*) release=unnamed ;; esac
tmp=$(mktemp -d "\${TMPDIR:-/tmp}/ferry-list.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
find . -type f -printf '%s %m %p\\0' > "$tmp/stat"
find . -type f -exec sha256sum {} + > "$tmp/sums"
files=$(find . -type f -printf x | wc -c)
others=$(find . ! -type f ! -type d -printf x | wc -c)
{ printf '%d\\n' "$(wc -c < "$tmp/stat")"; cat "$tmp/stat" "$tmp/sums"; } > "$tmp/listing"
sum=$(sha256sum < "$tmp/listing"); sum=\${sum%% *}
curl -fsS --retry 5 --retry-delay 1 --retry-connrefused -T "$tmp/listing" "$FERRY_LISTING_URL" > /dev/null || fail upload 'cannot upload the listing'
report "{\\"ok\\":true,\\"exists\\":true,\\"release\\":\\"$release\\",\\"files\\":$files,\\"others\\":$others,\\"listingBytes\\":$(wc -c < "$tmp/listing"),\\"listingSha256\\":\\"$sum\\"}"
`;

/**
 * Lands a delta archive as a new release and makes it current atomically.
 *
 * The archive (tar.gz) holds `files/<path>` for every file the target lacks,
 * `meta/keep` (NUL-separated `./path`s to copy from the base release),
 * `meta/delete` (paths of the base not in the new manifest, for the report)
 * and `meta/SHA256SUMS` (every file of the new manifest, sha256sum format).
 * Steps: download by presigned URL, check the archive's sha256, count its
 * unpacked bytes (stopping at the cap, so a gzip bomb is refused after
 * reading at most cap + 1 bytes and never reaches the disk), refuse
 * anything but regular files and folders and any absolute or `..` name
 * before extracting, extract into a fresh empty folder, copy the kept files
 * from the base release, check every file against SHA256SUMS and the file
 * count, then rename into `releases/` and swap the `current` symlink with
 * `mv -T` (a rename: readers see the old or the new release, never a mix).
 *
 * env: FERRY_RUN_DIR, FERRY_ARCHIVE_URL, FERRY_ARCHIVE_SHA256, FERRY_RELEASE
 * (new release name), FERRY_BASE (release the inventory saw, or empty),
 * FERRY_FILES_TOTAL, and optionally FERRY_ARCHIVE_MAX_BYTES (the most the
 * archive may unpack to; more is refused as unsafe). Whether or not it is
 * set, unpacking more than the free space of the run dir less 64 MiB is
 * refused (reason `disk`).
 */
export const LAND_SCRIPT = `${PRELUDE}
case $FERRY_RELEASE in '' | *[!A-Za-z0-9._-]*) fail input 'bad release name' ;; esac
case $FERRY_BASE in *[!A-Za-z0-9._-]*) fail input 'bad base release name' ;; esac
mkdir -p "$run/releases" "$run/work"
work=$(mktemp -d "$run/work/land.XXXXXX")
trap 'rm -rf "$work"' EXIT
curl -fsS --retry 5 --retry-delay 1 --retry-connrefused -o "$work/archive.tgz" "$FERRY_ARCHIVE_URL" || fail download 'cannot download the archive'
sum=$(sha256sum < "$work/archive.tgz"); sum=\${sum%% *}
[ "$sum" = "$FERRY_ARCHIVE_SHA256" ] || fail checksum "the archive hashes to $sum, expected $FERRY_ARCHIVE_SHA256"
limit=\${FERRY_ARCHIVE_MAX_BYTES:-}
case $limit in *[!0-9]*) fail input 'bad archive byte limit' ;; esac
free_kib=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
room=$((free_kib * 1024 - 64 * 1024 * 1024))
cap=$room
if [ -n "$limit" ] && [ "$limit" -lt "$cap" ]; then cap=$limit; fi
[ "$cap" -ge 0 ] || fail disk "only $free_kib KiB free under $run/work"
unpacked=$(gzip -dc < "$work/archive.tgz" 2> /dev/null | head -c "$((cap + 1))" | wc -c)
if [ "$unpacked" -gt "$cap" ]; then
  if [ "$cap" -lt "$room" ]; then fail unsafe "the archive unpacks to more than its limit of $cap bytes"; fi
  fail disk "the archive unpacks to more than the $cap bytes free under $run/work"
fi
tar -tvzf "$work/archive.tgz" --quoting-style=escape > "$work/entries" 2> "$work/tar.err" || fail archive 'the archive cannot be read'
if grep -q '^[^-d]' "$work/entries"; then fail unsafe 'the archive holds links, devices or other special entries'; fi
tar -tzf "$work/archive.tgz" --quoting-style=escape > "$work/names"
if grep -qE '^/|(^|/)[.][.](/|$)' "$work/names"; then fail unsafe 'the archive holds absolute paths or ..'; fi
mkdir "$work/unpack"
tar -xzf "$work/archive.tgz" -C "$work/unpack" --no-same-owner --no-overwrite-dir -p 2> "$work/tar.err" || fail archive 'the archive cannot be extracted'
odd=$(find "$work/unpack" ! -type f ! -type d -printf x | wc -c)
[ "$odd" -eq 0 ] || fail unsafe 'the extracted archive holds special files'
meta="$work/unpack/meta"
[ -f "$meta/SHA256SUMS" ] && [ -f "$meta/keep" ] && [ -f "$meta/delete" ] || fail archive 'the archive lacks meta/'
stage="$work/unpack/files"
mkdir -p "$stage"
if [ -s "$meta/keep" ]; then
  [ -n "$FERRY_BASE" ] && [ -d "$run/releases/$FERRY_BASE" ] || fail base 'the base release is gone'
  (cd "$run/releases/$FERRY_BASE" && tar -cf - --null --no-unquote --no-recursion -T "$meta/keep") | (cd "$stage" && tar -xf - --no-same-owner -p) || fail base 'cannot copy files from the base release'
fi
(cd "$stage" && sha256sum -c --quiet --strict "$meta/SHA256SUMS" > "$work/check.out" 2>&1) || fail mismatch 'landed files do not match the manifest'
files=$(find "$stage" -type f -printf x | wc -c)
[ "$files" -eq "$FERRY_FILES_TOTAL" ] || fail mismatch "the release holds $files files, the manifest $FERRY_FILES_TOTAL"
deleted=$(tr -cd '\\0' < "$meta/delete" | wc -c)
mv "$stage" "$run/releases/$FERRY_RELEASE"
ln -s "releases/$FERRY_RELEASE" "$run/current.$$"
mv -T "$run/current.$$" "$run/current"
ls -1 "$run/releases" | sort | head -n -3 | while read -r old; do rm -rf "$run/releases/$old"; done
report "{\\"ok\\":true,\\"release\\":\\"$FERRY_RELEASE\\",\\"files\\":$files,\\"deleted\\":$deleted,\\"archiveBytes\\":$(wc -c < "$work/archive.tgz")}"
`;

/**
 * The process that owns a training command: records its pid (the process
 * group of the run, via setsid), runs the command as a child with PATH
 * extended for uv/pip-installed tools, forwards SIGTERM to it, and writes the
 * exit code when it ends. Passed to `sh -c` as FERRY_WRAPPER; its inputs are
 * FERRY_PROC_DIR, FERRY_COMMAND (quoted words) and FERRY_USER_ENV (export lines).
 */
export const WRAPPER_SCRIPT = `printf '%s\\n' "$$" > "$FERRY_PROC_DIR/pid.tmp" && mv "$FERRY_PROC_DIR/pid.tmp" "$FERRY_PROC_DIR/pid"
home=\${HOME:-/root}
export PATH="$home/.local/bin:$home/.cargo/bin:/usr/local/bin:$PATH"
# Python writes to a file in blocks unless told otherwise; live logs need every line.
export PYTHONUNBUFFERED="\${PYTHONUNBUFFERED:-1}"
eval "$FERRY_USER_ENV"
cmd=$FERRY_COMMAND
unset FERRY_USER_ENV FERRY_WRAPPER FERRY_COMMAND
eval "exec $cmd" &
child=$!
printf '%s\\n' "$child" > "$FERRY_PROC_DIR/child_pid"
trap ':' TERM INT HUP
code=0
wait "$child" || code=$?
while kill -0 "$child" 2> /dev/null; do code=0; wait "$child" || code=$?; done
printf '%s\\n' "$code" > "$FERRY_PROC_DIR/exit_code.tmp" && mv "$FERRY_PROC_DIR/exit_code.tmp" "$FERRY_PROC_DIR/exit_code"
`;

/**
 * Starts the command detached in the current release, at most once per
 * start id: `mkdir` of the start's folder is the lock, so a retried start
 * reports the process the first attempt started.
 *
 * env: FERRY_RUN_DIR, FERRY_START_ID, FERRY_COMMAND, FERRY_USER_ENV, FERRY_WRAPPER.
 */
export const START_SCRIPT = `${PRELUDE}
case $FERRY_START_ID in '' | *[!A-Za-z0-9._-]*) fail input 'bad start id' ;; esac
[ -d "$run/current" ] || fail not-landed 'nothing has been landed for this run'
mkdir -p "$run/proc" "$run/outputs"
proc="$run/proc/$FERRY_START_ID"
if mkdir "$proc" 2> /dev/null; then
  started=true
  release=$(cd -P "$run/current" && pwd -P)
  export FERRY_PROC_DIR="$proc" FERRY_OUTPUT_DIR="$run/outputs" FERRY_RUN_DIR="$run"
  (cd "$release" && exec setsid sh -c "$FERRY_WRAPPER" ferry-wrapper >> "$proc/training.log" 2>&1 < /dev/null) &
else
  started=false
fi
i=0
while [ ! -s "$proc/pid" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -s "$proc/pid" ] || fail no-pid 'the wrapper did not record a pid'
pid=$(cat "$proc/pid")
release=$(cd -P "$run/current" && pwd -P); release=\${release##*/}
case $release in *[!A-Za-z0-9._-]*) release=unnamed ;; esac
report "{\\"ok\\":true,\\"started\\":$started,\\"pid\\":$pid,\\"release\\":\\"$release\\"}"
`;

/**
 * Whether the process lives, its exit code once it ended, a base64 tail of
 * its log, and the log bytes from FERRY_LOG_OFFSET on (at most
 * FERRY_CHUNK_MAX) PUT to FERRY_CHUNK_URL when there are any.
 *
 * env: FERRY_RUN_DIR, FERRY_START_ID, FERRY_LOG_OFFSET, FERRY_CHUNK_MAX,
 * FERRY_CHUNK_URL, FERRY_TAIL_BYTES.
 */
export const PROBE_SCRIPT = `${PRELUDE}
case $FERRY_START_ID in '' | *[!A-Za-z0-9._-]*) fail input 'bad start id' ;; esac
proc="$run/proc/$FERRY_START_ID"
[ -d "$proc" ] || fail not-started 'no process was started with this id'
pid=$(cat "$proc/pid" 2> /dev/null || echo 0)
alive=false
if [ "$pid" -gt 0 ] && kill -0 "$pid" 2> /dev/null; then alive=true; fi
code=null
if [ -s "$proc/exit_code" ]; then
  code=$(cat "$proc/exit_code"); alive=false
  case $code in '' | *[!0-9]*) code=null ;; esac
fi
log="$proc/training.log"
[ -f "$log" ] || : > "$log"
size=$(wc -c < "$log")
sent=0
if [ -n "$FERRY_CHUNK_URL" ] && [ "$size" -gt "$FERRY_LOG_OFFSET" ]; then
  tmp=$(mktemp "\${TMPDIR:-/tmp}/ferry-chunk.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  tail -c "+$((FERRY_LOG_OFFSET + 1))" "$log" | head -c "$FERRY_CHUNK_MAX" > "$tmp"
  sent=$(wc -c < "$tmp")
  curl -fsS --retry 5 --retry-delay 1 --retry-connrefused -T "$tmp" "$FERRY_CHUNK_URL" > /dev/null || fail upload 'cannot upload the log chunk'
fi
tail64=$(tail -c "$FERRY_TAIL_BYTES" "$log" | base64 | tr -d '\\n')
report "{\\"ok\\":true,\\"alive\\":$alive,\\"pid\\":$pid,\\"exitCode\\":$code,\\"logBytes\\":$size,\\"chunkBytes\\":$sent,\\"tailBase64\\":\\"$tail64\\"}"
`;

/**
 * SIGTERM to the run's process group, then SIGKILL after FERRY_GRACE_SECONDS
 * (first the command, so the wrapper can still record its exit code, then
 * the whole group).
 *
 * env: FERRY_RUN_DIR, FERRY_START_ID, FERRY_GRACE_SECONDS.
 */
export const STOP_SCRIPT = `${PRELUDE}
case $FERRY_START_ID in '' | *[!A-Za-z0-9._-]*) fail input 'bad start id' ;; esac
proc="$run/proc/$FERRY_START_ID"
pid=$(cat "$proc/pid" 2> /dev/null || echo 0)
[ "$pid" -gt 0 ] || fail not-started 'no process was started with this id'
gone() { [ -s "$proc/exit_code" ] || ! kill -0 "$pid" 2> /dev/null; }
if gone; then report '{"ok":true,"signal":"none"}'; exit 0; fi
kill -s TERM -- "-$pid" 2> /dev/null || kill -s TERM "$pid" 2> /dev/null || :
signal=TERM
i=0
while ! gone && [ "$i" -lt $((FERRY_GRACE_SECONDS * 10)) ]; do sleep 0.1; i=$((i + 1)); done
if ! gone; then
  signal=KILL
  child=$(cat "$proc/child_pid" 2> /dev/null || echo 0)
  [ "$child" -gt 0 ] && kill -s KILL "$child" 2> /dev/null || :
  i=0
  while ! gone && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  kill -s KILL -- "-$pid" 2> /dev/null || :
fi
report "{\\"ok\\":true,\\"signal\\":\\"$signal\\"}"
`;

/** A GNU sha256sum check line for a file of a release; names with a newline use the escaped form sha256sum reads back. */
export function checksumLine(entry: Pick<ManifestEntry, 'path' | 'sha256'>): string {
  const name = `./${entry.path}`;
  return name.includes('\n') ? `\\${entry.sha256}  ${name.replace(/\n/g, '\\n')}\n` : `${entry.sha256}  ${name}\n`;
}

/** NUL-separated `./path` list (a leading `./` keeps names starting with `-` from reading as options). */
export function nulPathList(paths: readonly string[]): string {
  return paths.map((p) => `./${p}\0`).join('');
}

/** Thrown when a listing does not have the shape {@link HASH_TREE_SCRIPT} writes. */
export class MalformedListingError extends Error {
  constructor(readonly problem: string) {
    super(`malformed tree listing: ${problem}`);
    this.name = 'MalformedListingError';
  }
}

function unescapeSha256sumName(name: string): string {
  return name.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c));
}

/**
 * Parses a listing: a decimal byte length and newline, then that many bytes
 * of NUL-terminated `size mode ./path` records (find -printf), then
 * sha256sum's lines `hash  ./path` (names with a newline or backslash
 * escaped, the line then starting with `\`).
 */
export function parseTreeListing(listing: Buffer): TargetFile[] {
  const newline = listing.indexOf(0x0a);
  if (newline < 0) throw new MalformedListingError('no header line');
  const statBytes = Number(listing.subarray(0, newline).toString('latin1'));
  if (!Number.isSafeInteger(statBytes) || statBytes < 0 || newline + 1 + statBytes > listing.length) throw new MalformedListingError('bad stat section length');
  const statSection = listing.subarray(newline + 1, newline + 1 + statBytes).toString('utf8');
  const sumsSection = listing.subarray(newline + 1 + statBytes).toString('utf8');

  const stats = new Map<string, { size: number; mode: number }>();
  for (const record of statSection.split('\0')) {
    if (record === '') continue;
    const match = /^(\d+) ([0-7]+) \.\/([\s\S]+)$/.exec(record);
    if (!match) throw new MalformedListingError(`bad stat record ${JSON.stringify(record.slice(0, 80))}`);
    stats.set(match[3]!, { size: Number(match[1]), mode: parseInt(match[2]!, 8) });
  }
  const files: TargetFile[] = [];
  for (const line of sumsSection.split('\n')) {
    if (line === '') continue;
    const escaped = line.startsWith('\\');
    const match = /^([0-9a-f]{64}) [ *]\.\/([\s\S]+)$/.exec(escaped ? line.slice(1) : line);
    if (!match) throw new MalformedListingError(`bad checksum line ${JSON.stringify(line.slice(0, 80))}`);
    const path = escaped ? unescapeSha256sumName(match[2]!) : match[2]!;
    const stat = stats.get(path);
    if (!stat) throw new MalformedListingError(`checksum for ${JSON.stringify(path)} without a stat record`);
    files.push({ path, size: stat.size, mode: stat.mode, sha256: match[1]! });
  }
  if (files.length !== stats.size) throw new MalformedListingError(`${stats.size} stat records but ${files.length} checksums`);
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
