#!/usr/bin/env bash
# Makes Debian's Chromium available for the Web UI browser tests
# (test/integration/webUi.test.ts drives it with playwright-core).
# Never fails the caller: without Chromium those tests are skipped and say why
# (under CI=true they fail, saying why).
set -uo pipefail
CHROMIUM="${FERRY_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  echo "ok chromium ($CHROMIUM)"
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: installing Debian's chromium package for the Web UI test ..." >&2
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium) >/tmp/ferry-install-chromium.log 2>&1; then
    echo "ok chromium (/usr/bin/chromium, from apt)"
    exit 0
  fi
  echo "install-browser: apt-get could not install chromium (see /tmp/ferry-install-chromium.log); the Web UI and timeline page tests will be skipped, or fail under CI=true" >&2
  exit 0
fi
echo "install-browser: no Chromium at $CHROMIUM and no root apt-get to install it; the Web UI and timeline page tests will be skipped, or fail under CI=true (install Debian's chromium or set FERRY_CHROMIUM)" >&2
exit 0
