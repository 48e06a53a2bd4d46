#!/usr/bin/env bash
# Installs what is missing on a fresh clone (npm packages, the pinned Temporal
# CLI and SeaweedFS) and builds. Called by start.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
bash scripts/install-tools.sh --only temporal,weed
# The embedded S3 server's gRPC ports demand a certificate, made with openssl at each start.
if ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl) >/tmp/ferry-install-openssl.log 2>&1 \
      || { echo "prepare: apt-get could not install openssl (see /tmp/ferry-install-openssl.log)" >&2; exit 1; }
  else
    echo "prepare: openssl not found: install it (Debian: apt-get install openssl)" >&2
    exit 1
  fi
fi
npx tsc -p tsconfig.json
