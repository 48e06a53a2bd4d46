/**
 * The POSIX shell scripts the script-reached targets (`shell`, `ssh`, `ssm`)
 * run, and the parsers of what they print. The scripts are constants: every value they need (paths,
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
import { LINK_MODE, type ManifestEntry } from './manifest';
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

/**
 * Common start of every script: strict mode, the report helpers, and where
 * things are. FERRY_ROOT is the target's root (relative ones are under the
 * login's home); a session's files are in `$session`, ferry's own records of
 * it (process logs, staging) in `$state`, outside the folder code runs in.
 * Every report carries the machine's boot id: a new one means the target
 * restarted and nothing ferry verified there can be trusted any more.
 */
/**
 * `alive PID`: the process exists and is not a zombie. A zombie answers
 * `kill -0` too, and one whose parent left stays until init reaps it.
 */
const ALIVE = `alive() { [ "$1" -gt 0 ] && kill -0 "$1" 2> /dev/null && ! { s=$(cat "/proc/$1/stat" 2> /dev/null) && s=\${s##*) } && [ "\${s%% *}" = Z ]; }; }`;

const PRELUDE = `set -eu
umask 022
root=$FERRY_ROOT
case $root in /*) ;; *) root="\${HOME:?}/$root" ;; esac
case $FERRY_SESSION in '' | *[!A-Za-z0-9._-]* | .*) printf 'ferry-report {"ok":false,"reason":"input"}\\n'; exit 3 ;; esac
session="$root/sessions/$FERRY_SESSION"
state="$root/state/$FERRY_SESSION"
boot=$(cat /proc/sys/kernel/random/boot_id 2> /dev/null || echo unknown)
case $boot in *[!0-9a-f-]*) boot=unknown ;; esac
report() { printf 'ferry-report {"ok":true,"bootId":"%s",%s}\\n' "$boot" "$1"; }
${ALIVE}
fail() { printf 'ferry-report {"ok":false,"reason":"%s","bootId":"%s"}\\n' "$1" "$boot"; printf 'ferry: %s\\n' "$2" >&2; exit 3; }
`;

/** Tools the scripts use beyond POSIX sh; provisioning reports any that are missing. */
export const REQUIRED_TOOLS = ['curl', 'sha256sum', 'tar', 'gzip', 'find', 'xargs', 'setsid', 'base64', 'awk', 'mktemp'] as const;

/**
 * Creates the session's folders and checks the target can run the other
 * scripts. env: FERRY_ROOT, FERRY_SESSION, FERRY_DIRS (space-separated
 * folder names ferry chose).
 */
export const PREPARE_SCRIPT = `${PRELUDE}
missing=
for tool in ${REQUIRED_TOOLS.join(' ')}; do command -v "$tool" > /dev/null 2>&1 || missing="$missing,\\"$tool\\""; done
[ -z "$missing" ] || { printf 'ferry-report {"ok":false,"reason":"tools","missing":[%s],"bootId":"%s"}\\n' "\${missing#,}" "$boot"; exit 3; }
mkdir -p "$session" "$state"
for dir in \${FERRY_DIRS:-}; do
  case $dir in *[!A-Za-z0-9_-]*) fail input 'bad folder name' ;; esac
  [ ! -L "$session/$dir" ] || fail unsafe-path "$dir is a symlink"
  mkdir -p "$session/$dir"
done
path=$(cd -P "$session" && pwd -P)
case $path in *[\\"\\\\]*) fail input 'the session path holds a quote or backslash' ;; esac
report "\\"session\\":\\"$path\\""
`;

/** The machine's boot id, nothing else. env: FERRY_ROOT, FERRY_SESSION. */
export const BOOT_SCRIPT = `${PRELUDE}
report '"alive":true'
`;

/**
 * Lists the regular files under a folder of the session, with sizes, modes
 * and (unless FERRY_HASH=0) sha256, and the symlinks with their text, and
 * PUTs the listing to a presigned URL: listings can be far longer than SSM's
 * output cap. Links are never followed (find does not descend into them);
 * other non-files are counted.
 *
 * env: FERRY_ROOT, FERRY_SESSION, FERRY_DIR, FERRY_HASH (1 or 0),
 * FERRY_LISTING_URL. Listing format: see {@link parseTreeListing}.
 */
export const LIST_SCRIPT = `${PRELUDE}
dir="$session/$FERRY_DIR"
if [ -L "$dir" ]; then fail unsafe-path "$FERRY_DIR is a symlink"; fi
if [ ! -d "$dir" ]; then report '"exists":false,"files":0,"others":0'; exit 0; fi
cd "$dir"
tmp=$(mktemp -d "\${TMPDIR:-/tmp}/ferry-list.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
find . -type f -printf '%s %m %p\\0' > "$tmp/stat"
find . -type l -printf '%p\\0%l\\0' > "$tmp/links"
: > "$tmp/sums"
if [ "$FERRY_HASH" = 1 ]; then find . -type f -exec sha256sum {} + > "$tmp/sums"; fi
files=$(find . -type f -printf x | wc -c)
links=$(find . -type l -printf x | wc -c)
others=$(find . ! -type f ! -type d ! -type l -printf x | wc -c)
{ printf '%d %d\\n' "$(wc -c < "$tmp/stat")" "$(wc -c < "$tmp/links")"; cat "$tmp/stat" "$tmp/links" "$tmp/sums"; } > "$tmp/listing"
sum=$(sha256sum < "$tmp/listing"); sum=\${sum%% *}
curl -fsS -g --retry 5 --retry-delay 1 --retry-connrefused -T "$tmp/listing" "$FERRY_LISTING_URL" > /dev/null || fail upload 'cannot upload the listing'
report "\\"exists\\":true,\\"files\\":$files,\\"links\\":$links,\\"others\\":$others,\\"listingBytes\\":$(wc -c < "$tmp/listing"),\\"listingSha256\\":\\"$sum\\""
`;

/**
 * Refuses paths whose way down from FERRY_LAND_DEST passes a symlink or a
 * non-folder, so nothing lands (or is removed) outside the session through
 * a link code in the session planted. Arguments: `./relative/path`s.
 */
const CHECK_PARENTS = `for f do
  rel=\${f#./}
  case $rel in */*) parents=\${rel%/*} ;; *) continue ;; esac
  d=$FERRY_LAND_DEST
  while [ -n "$parents" ]; do
    d="$d/\${parents%%/*}"
    if [ -L "$d" ] || { [ -e "$d" ] && [ ! -d "$d" ]; }; then printf 'ferry: %s is not a folder\\n' "$d" >&2; exit 3; fi
    case $parents in */*) parents=\${parents#*/} ;; *) parents= ;; esac
  done
done
`;

/**
 * `walk CREATE PATH` enters PATH below the working folder one folder at a
 * time, refusing a link or a non-folder on the way; CREATE=1 makes missing
 * folders, otherwise a missing one returns 2. After each step the physical
 * working folder must be the one just entered, so a folder swapped for a
 * link between the check and the `cd` is caught; once inside, the working
 * folder is that folder itself, and later swaps of the path above it
 * redirect nothing. `enter CREATE PATH` does it from FERRY_LAND_DEST (a
 * physical path, found the same way). `enter_parent CREATE REL` enters the
 * folder of the file REL (relative to FERRY_LAND_DEST) unless the last call
 * entered it already, with the same returns, and sets `name` to REL's last
 * part: files come folder by folder, so a folder is walked once.
 */
const WALK = `walk() {
  create=$1
  rest=$2
  while [ -n "$rest" ]; do
    d=\${rest%%/*}
    case $rest in */*) rest=\${rest#*/} ;; *) rest= ;; esac
    if [ -L "$d" ] || { [ -e "$d" ] && [ ! -d "$d" ]; }; then printf 'ferry: %s is not a folder\\n' "$d" >&2; return 1; fi
    if [ ! -d "$d" ]; then
      [ "$create" = 1 ] || return 2
      mkdir -- "$d" || return 1
    fi
    here=$(pwd -P)
    cd -P -- "$d" || return 1
    [ "$(pwd -P)" = "\${here%/}/$d" ] || { printf 'ferry: %s changed on the way in\\n' "$d" >&2; return 1; }
  done
}
enter() {
  cd -P -- "$FERRY_LAND_DEST" && [ "$(pwd -P)" = "$FERRY_LAND_DEST" ] || { printf 'ferry: the destination changed\\n' >&2; return 1; }
  walk "$1" "$2"
}
at=
enter_parent() {
  case $2 in */*) parent=\${2%/*} ;; *) parent= ;; esac
  name=\${2##*/}
  [ "$at" = "/$parent" ] && return 0
  at=
  enter "$1" "$parent" || return
  at="/$parent"
}
`;

/**
 * Renames staged files (under FERRY_FROM) into place, one rename each (same
 * filesystem: a final path never holds part of a file), from inside the
 * file's folder entered with {@link WALK}: nothing lands outside the
 * destination, whatever is swapped meanwhile.
 */
const MOVE_INTO_PLACE = `${WALK}for f do
  rel=\${f#./}
  enter_parent 1 "$rel" || exit 3
  mv -fT -- "$FERRY_FROM/$rel" "./$name" || exit 3
done
`;

/** Deletes the paths given, each from inside its folder entered with {@link WALK}; a path whose folder is missing is already gone. */
const REMOVE_PATHS = `${WALK}for f do
  rel=\${f#./}
  enter_parent 0 "$rel"
  case $? in 0) ;; 2) continue ;; *) exit 3 ;; esac
  rm -f -- "./$name" || exit 3
done
`;

/**
 * Makes each link of the archive's `links/` (a file holding the link's
 * text) in place: a symlink with that text, made under a temp name and
 * renamed over the destination, so the path never follows anything on the
 * way and a link or file already there is replaced, not written through.
 */
const MAKE_LINKS = `${WALK}for f do
  rel=\${f#./}
  enter_parent 1 "$rel" || exit 3
  text=$(cat -- "$FERRY_FROM/$rel"; printf x)
  text=\${text%x}
  rm -f -- "$FERRY_LINK_TEMP"
  ln -s -- "$text" "$FERRY_LINK_TEMP" || exit 3
  mv -fT -- "$FERRY_LINK_TEMP" "./$name" || exit 3
done
`;

/**
 * Lands an archive of the files a session folder lacks, in place.
 *
 * The archive (tar.gz) holds `files/<path>` for every file to land,
 * `links/<path>` holding the text of every symlink to land (a link entry of
 * the manifest: the archive itself never holds a link),
 * `meta/SHA256SUMS` and `meta/LINKSUMS` (sha256sum format, of those files
 * and of those link texts: a link entry's sha256 is its text's) and `meta/remove`
 * (NUL-separated `./path`s to delete, for a landing that must leave exactly
 * a manifest). Steps: download by presigned URL, check the archive's
 * sha256, count its unpacked bytes (stopping at the cap, so a gzip bomb is
 * refused after reading at most cap + 1 bytes and never reaches the disk),
 * refuse anything but regular files and folders and any absolute or `..`
 * name before extracting, extract into a fresh staging folder beside the
 * session, check every file against SHA256SUMS and their count, refuse
 * destinations reached through a link, then rename each file into place and
 * delete the paths to remove.
 *
 * env: FERRY_ROOT, FERRY_SESSION, FERRY_DIR, FERRY_ARCHIVE_URL,
 * FERRY_ARCHIVE_SHA256, FERRY_FILES and FERRY_LINKS (files and links in
 * the archive) and optionally
 * FERRY_ARCHIVE_MAX_BYTES (the most it may unpack to; more is refused as
 * unsafe). Unpacking more than the free space less 64 MiB is refused
 * (reason `disk`).
 */
export const LAND_SCRIPT = `${PRELUDE}${WALK}
mkdir -p "$state/work"
dest=$(cd -P -- "$root" && walk 1 "sessions/$FERRY_SESSION/$FERRY_DIR" && pwd -P) || fail unsafe-path "the way to $FERRY_DIR passes a link or a file"
work=$(mktemp -d "$state/work/land.XXXXXX")
trap 'rm -rf "$work"' EXIT
curl -fsS -g --retry 5 --retry-delay 1 --retry-connrefused -o "$work/archive.tgz" "$FERRY_ARCHIVE_URL" || fail download 'cannot download the archive'
sum=$(sha256sum < "$work/archive.tgz"); sum=\${sum%% *}
[ "$sum" = "$FERRY_ARCHIVE_SHA256" ] || fail checksum "the archive hashes to $sum, expected $FERRY_ARCHIVE_SHA256"
limit=\${FERRY_ARCHIVE_MAX_BYTES:-}
case $limit in *[!0-9]*) fail input 'bad archive byte limit' ;; esac
free_kib=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
room=$((free_kib * 1024 - 64 * 1024 * 1024))
cap=$room
if [ -n "$limit" ] && [ "$limit" -lt "$cap" ]; then cap=$limit; fi
[ "$cap" -ge 0 ] || fail disk "only $free_kib KiB free under $root"
unpacked=$(gzip -dc < "$work/archive.tgz" 2> /dev/null | head -c "$((cap + 1))" | wc -c)
if [ "$unpacked" -gt "$cap" ]; then
  if [ "$cap" -lt "$room" ]; then fail unsafe "the archive unpacks to more than its limit of $cap bytes"; fi
  fail disk "the archive unpacks to more than the $cap bytes free under $root"
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
[ -f "$meta/SHA256SUMS" ] && [ -f "$meta/LINKSUMS" ] && [ -f "$meta/remove" ] || fail archive 'the archive lacks meta/'
stage="$work/unpack/files"
linked="$work/unpack/links"
mkdir -p "$stage" "$linked"
if [ -s "$meta/SHA256SUMS" ]; then (cd "$stage" && sha256sum -c --quiet --strict "$meta/SHA256SUMS" > "$work/check.out" 2>&1) || fail mismatch 'landed files do not match the manifest'; fi
if [ -s "$meta/LINKSUMS" ]; then (cd "$linked" && sha256sum -c --quiet --strict "$meta/LINKSUMS" > "$work/check.out" 2>&1) || fail mismatch 'landed links do not match the manifest'; fi
files=$(find "$stage" -type f -printf x | wc -c)
[ "$files" -eq "$FERRY_FILES" ] || fail mismatch "the archive holds $files files, expected $FERRY_FILES"
links=$(find "$linked" -type f -printf x | wc -c)
[ "$links" -eq "\${FERRY_LINKS:-0}" ] || fail mismatch "the archive holds $links links, expected \${FERRY_LINKS:-0}"
export FERRY_LAND_DEST="$dest" FERRY_LINK_TEMP="$work/link"
(cd "$stage" && find . -type f -exec sh -c '${CHECK_PARENTS.replace(/'/g, `'\\''`)}' ferry-check {} +) || fail unsafe-path 'a destination is reached through a symlink or a file'
(cd "$linked" && find . -type f -exec sh -c '${CHECK_PARENTS.replace(/'/g, `'\\''`)}' ferry-check {} +) || fail unsafe-path 'a link destination is reached through a symlink or a file'
xargs -0 sh -c '${CHECK_PARENTS.replace(/'/g, `'\\''`)}' ferry-check < "$meta/remove" || fail unsafe-path 'a path to remove is reached through a symlink or a file'
(cd "$stage" && FERRY_FROM="$stage" find . -type f -exec sh -c '${MOVE_INTO_PLACE.replace(/'/g, `'\\''`)}' ferry-move {} +) || fail unsafe-path 'a destination changed or is reached through a symlink or a file while landing'
(cd "$linked" && FERRY_FROM="$linked" find . -type f -exec sh -c '${MAKE_LINKS.replace(/'/g, `'\\''`)}' ferry-link {} +) || fail unsafe-path 'a link destination changed or is reached through a symlink or a file while landing'
removed=$(tr -cd '\\0' < "$meta/remove" | wc -c)
if [ "$removed" -gt 0 ]; then xargs -0 sh -c '${REMOVE_PATHS.replace(/'/g, `'\\''`)}' ferry-remove < "$meta/remove" || fail unsafe-path 'a path to remove changed or is reached through a symlink or a file'; fi
report "\\"files\\":$files,\\"links\\":$links,\\"removed\\":$removed"
`;

/**
 * The process that owns a command: records its pid (the leader of its own
 * session and process group, via setsid), runs the command in a process
 * group of its own, kills that group when FERRY_TIMEOUT_SECONDS pass, and
 * writes the exit code when it ends. Passed to `sh -c` as FERRY_WRAPPER;
 * inputs FERRY_PROC_DIR, FERRY_COMMAND (quoted words), FERRY_USER_ENV
 * (export lines) and FERRY_TIMEOUT_SECONDS (empty: no limit).
 */
export const WRAPPER_SCRIPT = `printf '%s\\n' "$$" > "$FERRY_PROC_DIR/pid.tmp" && mv "$FERRY_PROC_DIR/pid.tmp" "$FERRY_PROC_DIR/pid"
${ALIVE}
home=\${HOME:-/root}
export PATH="$home/.local/bin:$home/.cargo/bin:/usr/local/bin:$PATH"
# Python writes to a file in blocks unless told otherwise; live logs need every line.
export PYTHONUNBUFFERED="\${PYTHONUNBUFFERED:-1}"
eval "$FERRY_USER_ENV"
cmd=$FERRY_COMMAND
limit=\${FERRY_TIMEOUT_SECONDS:-}
proc=$FERRY_PROC_DIR
unset FERRY_USER_ENV FERRY_WRAPPER FERRY_COMMAND FERRY_TIMEOUT_SECONDS FERRY_PROC_DIR
eval "exec setsid $cmd" &
child=$!
printf '%s\\n' "$child" > "$proc/child_pid"
if [ -n "$limit" ]; then
  ( i=0
    while [ "$i" -lt "$limit" ] && alive "$child"; do sleep 1; i=$((i + 1)); done
    if alive "$child"; then : > "$proc/timed_out"; kill -s KILL -- "-$child" 2> /dev/null || kill -s KILL "$child" 2> /dev/null || :; fi ) &
fi
trap ':' TERM INT HUP
code=0
wait "$child" || code=$?
while alive "$child"; do code=0; wait "$child" || code=$?; done
date +%s%N > "$proc/ended_ns"
printf '%s\\n' "$code" > "$proc/exit_code.tmp" && mv "$proc/exit_code.tmp" "$proc/exit_code"
`;

/**
 * The status of a process, as PROBE and START report it: state, pid, exit
 * code, timeout, duration, log sizes, base64 tails of both logs and, once
 * it ended, the sha256 of each log. Reads `$proc`.
 */
const STATUS = `pid=$(cat "$proc/pid" 2> /dev/null || echo 0)
case $pid in '' | *[!0-9]*) pid=0 ;; esac
code=null
sums=
if [ -s "$proc/exit_code" ]; then
  state=exited
  code=$(cat "$proc/exit_code"); case $code in '' | *[!0-9]*) code=null ;; esac
  out_sum=$(sha256sum < "$proc/stdout.log"); err_sum=$(sha256sum < "$proc/stderr.log")
  sums=",\\"stdoutSha256\\":\\"\${out_sum%% *}\\",\\"stderrSha256\\":\\"\${err_sum%% *}\\""
elif [ "$(cat "$proc/boot" 2> /dev/null)" = "$boot" ] && alive "$pid"; then state=running
else state=lost
fi
timed_out=false; [ -e "$proc/timed_out" ] && timed_out=true
started_ns=$(cat "$proc/started_ns" 2> /dev/null || echo 0)
ended_ns=$(cat "$proc/ended_ns" 2> /dev/null || date +%s%N)
duration=$(( (ended_ns - started_ns) / 1000000 ))
out_bytes=$(wc -c < "$proc/stdout.log"); err_bytes=$(wc -c < "$proc/stderr.log")
out_tail=$(tail -c "$FERRY_TAIL_BYTES" "$proc/stdout.log" | base64 | tr -d '\\n')
err_tail=$(tail -c "$FERRY_TAIL_BYTES" "$proc/stderr.log" | base64 | tr -d '\\n')
status="\\"state\\":\\"$state\\",\\"pid\\":$pid,\\"exitCode\\":$code,\\"timedOut\\":$timed_out,\\"durationMs\\":$duration,\\"stdoutBytes\\":$out_bytes,\\"stderrBytes\\":$err_bytes,\\"stdoutTail64\\":\\"$out_tail\\",\\"stderrTail64\\":\\"$err_tail\\"$sums"
`;

/** Waits up to FERRY_WAIT_MS for the process in `$proc` to end. */
const WAIT_FOR_END = `i=0
while [ ! -s "$proc/exit_code" ] && [ "$i" -lt "$((\${FERRY_WAIT_MS:-0} / 100))" ]; do sleep 0.1; i=$((i + 1)); done`;

const PROCESS_ID_CHECK = `case $FERRY_PROCESS_ID in '' | *[!A-Za-z0-9._-]* | .*) fail input 'bad process id' ;; esac
proc="$state/proc/$FERRY_PROCESS_ID"
`;

/**
 * Starts a command detached, at most once per process id: `mkdir` of its
 * folder is the lock, so a retried start reports the process the first
 * attempt started. Output goes to `stdout.log` and `stderr.log` (both into
 * `stdout.log` when FERRY_OUTPUT is `combined`).
 *
 * env: FERRY_ROOT, FERRY_SESSION, FERRY_PROCESS_ID, FERRY_CWD (folder in the
 * session, empty for its root), FERRY_COMMAND, FERRY_USER_ENV,
 * FERRY_TIMEOUT_SECONDS, FERRY_OUTPUT, FERRY_WRAPPER, FERRY_TAIL_BYTES and
 * FERRY_WAIT_MS (report once the process ended or this long passed).
 */
export const START_SCRIPT = `${PRELUDE}
${PROCESS_ID_CHECK}
cwd="$session/$FERRY_CWD"
[ -d "$cwd" ] && [ ! -L "$cwd" ] || fail not-landed "no folder $FERRY_CWD in the session"
mkdir -p "$state/proc"
started=false
if mkdir "$proc" 2> /dev/null; then
  started=true
  printf '%s\\n' "$boot" > "$proc/boot"
  date +%s%N > "$proc/started_ns"
  : > "$proc/stderr.log"
  export FERRY_PROC_DIR="$proc"
  if [ "$FERRY_OUTPUT" = combined ]; then
    (cd "$cwd" && exec setsid sh -c "$FERRY_WRAPPER" ferry-wrapper > "$proc/stdout.log" 2>&1 < /dev/null) &
  else
    (cd "$cwd" && exec setsid sh -c "$FERRY_WRAPPER" ferry-wrapper > "$proc/stdout.log" 2> "$proc/stderr.log" < /dev/null) &
  fi
fi
i=0
while [ ! -s "$proc/pid" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -s "$proc/pid" ] || fail no-pid 'the wrapper did not record a pid'
${WAIT_FOR_END}
${STATUS}
report "\\"started\\":$started,$status"
`;

/**
 * The status of a process, after waiting up to FERRY_WAIT_MS for it to end,
 * and its stdout from FERRY_LOG_OFFSET on (at most FERRY_CHUNK_MAX bytes)
 * PUT to FERRY_CHUNK_URL when that is set and there is anything new; the
 * same for stderr with FERRY_ERR_LOG_OFFSET and FERRY_ERR_CHUNK_URL.
 *
 * env: FERRY_ROOT, FERRY_SESSION, FERRY_PROCESS_ID, FERRY_WAIT_MS,
 * FERRY_LOG_OFFSET, FERRY_CHUNK_MAX, FERRY_CHUNK_URL, FERRY_ERR_LOG_OFFSET,
 * FERRY_ERR_CHUNK_URL, FERRY_TAIL_BYTES.
 */
export const PROBE_SCRIPT = `${PRELUDE}
${PROCESS_ID_CHECK}
[ -d "$proc" ] || fail not-started 'no process was started with this id'
${WAIT_FOR_END}
tmp=
trap 'rm -f "$tmp"' EXIT
ship_chunk() {
  shipped=0
  [ -n "$3" ] && [ "$(wc -c < "$1")" -gt "$2" ] || return 0
  tmp=$(mktemp "\${TMPDIR:-/tmp}/ferry-chunk.XXXXXX")
  tail -c "+$(($2 + 1))" "$1" | head -c "$FERRY_CHUNK_MAX" > "$tmp"
  shipped=$(wc -c < "$tmp")
  curl -fsS -g --retry 5 --retry-delay 1 --retry-connrefused -T "$tmp" "$3" > /dev/null || fail upload 'cannot upload the log chunk'
  rm -f "$tmp"
}
ship_chunk "$proc/stdout.log" "$FERRY_LOG_OFFSET" "$FERRY_CHUNK_URL"
sent=$shipped
ship_chunk "$proc/stderr.log" "\${FERRY_ERR_LOG_OFFSET:-0}" "\${FERRY_ERR_CHUNK_URL:-}"
sent_err=$shipped
${STATUS}
report "\\"shipped\\":$sent,\\"shippedStderr\\":$sent_err,$status"
`;

/**
 * SIGTERM to the command's process group, then SIGKILL after
 * FERRY_GRACE_SECONDS (first the command's group, so the wrapper can still
 * record its exit code, then the wrapper's).
 *
 * env: FERRY_ROOT, FERRY_SESSION, FERRY_PROCESS_ID, FERRY_GRACE_SECONDS.
 */
export const STOP_SCRIPT = `${PRELUDE}
${PROCESS_ID_CHECK}
pid=$(cat "$proc/pid" 2> /dev/null || echo 0)
case $pid in '' | *[!0-9]*) pid=0 ;; esac
[ "$pid" -gt 0 ] || fail not-started 'no process was started with this id'
child=$(cat "$proc/child_pid" 2> /dev/null || echo 0)
case $child in '' | *[!0-9]*) child=0 ;; esac
gone() { [ -s "$proc/exit_code" ] || ! alive "$pid"; }
if gone; then report '"signal":"none"'; exit 0; fi
[ "$child" -gt 0 ] && { kill -s TERM -- "-$child" 2> /dev/null || kill -s TERM "$child" 2> /dev/null || :; }
signal=TERM
i=0
while ! gone && [ "$i" -lt $((FERRY_GRACE_SECONDS * 10)) ]; do sleep 0.1; i=$((i + 1)); done
if ! gone; then
  signal=KILL
  [ "$child" -gt 0 ] && { kill -s KILL -- "-$child" 2> /dev/null || kill -s KILL "$child" 2> /dev/null || :; }
  i=0
  while ! gone && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  kill -s KILL -- "-$pid" 2> /dev/null || :
fi
report "\\"signal\\":\\"$signal\\""
`;

/**
 * PUTs files to presigned URLs, each with the sha256 S3 must find in it.
 * The jobs come by presigned URL too (there may be thousands): NUL-separated
 * triples `relative path`, `URL`, `base64 sha256`. Files are read from a
 * folder of the session (FERRY_FROM=session, FERRY_DIR) or from a process's
 * logs (FERRY_FROM=process, FERRY_PROCESS_ID).
 *
 * env: FERRY_ROOT, FERRY_SESSION, FERRY_FROM, FERRY_DIR, FERRY_PROCESS_ID, FERRY_JOBS_URL.
 */
export const UPLOAD_SCRIPT = `${PRELUDE}
case $FERRY_FROM in
  session) base="$session/$FERRY_DIR"; [ ! -L "$base" ] || fail unsafe-path "$FERRY_DIR is a symlink" ;;
  process)
    case $FERRY_PROCESS_ID in '' | *[!A-Za-z0-9._-]* | .*) fail input 'bad process id' ;; esac
    base="$state/proc/$FERRY_PROCESS_ID" ;;
  *) fail input 'bad upload source' ;;
esac
[ -d "$base" ] || fail not-found 'nothing to upload from'
tmp=$(mktemp "\${TMPDIR:-/tmp}/ferry-jobs.XXXXXX")
trap 'rm -f "$tmp"' EXIT
curl -fsS -g --retry 5 --retry-delay 1 --retry-connrefused -o "$tmp" "$FERRY_JOBS_URL" || fail download 'cannot download the upload list'
cd "$base"
xargs -0 -n 3 sh -c 'curl -fsS -g --retry 5 --retry-delay 1 --retry-connrefused -H "x-amz-checksum-sha256: $3" -T "./$1" "$2" > /dev/null || { printf "ferry: upload of %s failed\\n" "$1" >&2; exit 255; }' ferry-upload < "$tmp" || fail upload 'a file could not be uploaded (it may have changed since it was listed)'
report "\\"uploaded\\":$(($(tr -cd '\\0' < "$tmp" | wc -c) / 3))"
`;

/**
 * Ends a session: kills every process it started that still runs (command
 * groups, then wrappers) and, with FERRY_REMOVE=1, deletes its folder and
 * records. env: FERRY_ROOT, FERRY_SESSION, FERRY_REMOVE.
 */
export const RELEASE_SCRIPT = `${PRELUDE}
stopped=0
for proc in "$state"/proc/*; do
  [ -d "$proc" ] && [ ! -s "$proc/exit_code" ] || continue
  [ "$(cat "$proc/boot" 2> /dev/null)" = "$boot" ] || continue
  pid=$(cat "$proc/pid" 2> /dev/null || echo 0); child=$(cat "$proc/child_pid" 2> /dev/null || echo 0)
  case $pid$child in *[!0-9]*) continue ;; esac
  if alive "$pid"; then
    [ "$child" -gt 0 ] && kill -s KILL -- "-$child" 2> /dev/null || :
    kill -s KILL -- "-$pid" 2> /dev/null || :
    stopped=$((stopped + 1))
  fi
done
if [ "$FERRY_REMOVE" = 1 ]; then rm -rf "$session" "$state"; fi
report "\\"stopped\\":$stopped"
`;

/** A GNU sha256sum check line for a landed file; names with a newline use the escaped form sha256sum reads back. */
export function checksumLine(entry: Pick<ManifestEntry, 'path' | 'sha256'>): string {
  const name = `./${entry.path}`;
  return name.includes('\n') ? `\\${entry.sha256}  ${name.replace(/\n/g, '\\n')}\n` : `${entry.sha256}  ${name}\n`;
}

/** NUL-separated `./path` list (a leading `./` keeps names starting with `-` from reading as options). */
export function nulPathList(paths: readonly string[]): string {
  return paths.map((p) => `./${p}\0`).join('');
}

/** Thrown when a listing does not have the shape {@link LIST_SCRIPT} writes. */
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
 * Parses a listing: a header line of two decimal byte lengths, then that
 * many bytes of NUL-terminated `size mode ./path` records (find -printf),
 * then that many bytes of symlinks as NUL-terminated `./path` and link text
 * pairs, then sha256sum's lines `hash  ./path` (names with a newline or
 * backslash escaped, the line then starting with `\`). An unhashed listing
 * (`hashed` false) has no checksum lines; its files get an empty sha256.
 * A symlink is reported as a link entry is written (core/manifest `link`):
 * its size and sha256 (`hashText`, given by the caller: core does no
 * hashing) are those of its text, its mode {@link LINK_MODE}.
 */
export function parseTreeListing(listing: Buffer, hashText: (text: string) => string, hashed = true): TargetFile[] {
  const newline = listing.indexOf(0x0a);
  if (newline < 0) throw new MalformedListingError('no header line');
  const header = /^(\d+) (\d+)$/.exec(listing.subarray(0, newline).toString('latin1'));
  const statBytes = Number(header?.[1]);
  const linkBytes = Number(header?.[2]);
  if (!header || !Number.isSafeInteger(statBytes) || !Number.isSafeInteger(linkBytes) || newline + 1 + statBytes + linkBytes > listing.length) {
    throw new MalformedListingError('bad section lengths');
  }
  const statSection = listing.subarray(newline + 1, newline + 1 + statBytes).toString('utf8');
  const linkSection = listing.subarray(newline + 1 + statBytes, newline + 1 + statBytes + linkBytes).toString('utf8');
  const sumsSection = listing.subarray(newline + 1 + statBytes + linkBytes).toString('utf8');
  const links = parseLinkSection(linkSection, hashText);

  const stats = new Map<string, { size: number; mode: number }>();
  for (const record of statSection.split('\0')) {
    if (record === '') continue;
    const match = /^(\d+) ([0-7]+) \.\/([\s\S]+)$/.exec(record);
    if (!match) throw new MalformedListingError(`bad stat record ${JSON.stringify(record.slice(0, 80))}`);
    stats.set(match[3]!, { size: Number(match[1]), mode: parseInt(match[2]!, 8) });
  }
  if (!hashed) return sortedByPath([...[...stats].map(([path, stat]) => ({ path, ...stat, sha256: '' })), ...links]);
  const files: TargetFile[] = [...links];
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
  if (files.length - links.length !== stats.size) throw new MalformedListingError(`${stats.size} stat records but ${files.length - links.length} checksums`);
  return sortedByPath(files);
}

function sortedByPath(files: TargetFile[]): TargetFile[] {
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The symlinks of a listing, as link entries. */
function parseLinkSection(section: string, hashText: (text: string) => string): TargetFile[] {
  const fields = section.split('\0');
  if (fields.pop() !== '' || fields.length % 2 !== 0) throw new MalformedListingError('bad link section');
  const links: TargetFile[] = [];
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!;
    const text = fields[i + 1]!;
    if (!name.startsWith('./') || name.length < 3) throw new MalformedListingError(`bad link record ${JSON.stringify(name.slice(0, 80))}`);
    links.push({ path: name.slice(2), size: Buffer.byteLength(text, 'utf8'), mode: LINK_MODE, sha256: hashText(text), link: text });
  }
  return links;
}
