#!/usr/bin/env bash
# Installs what is missing on a fresh clone (npm packages, the pinned Temporal
# CLI and SeaweedFS) and builds. Called by start.sh and test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
bash scripts/install-tools.sh --only temporal,weed
npx tsc -p tsconfig.json
