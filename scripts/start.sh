#!/usr/bin/env bash
# The newcomer's first command (`npm start`): installs what is missing, then
# `ferry demo` starts the embedded stack (Temporal + Web UI, S3, worker, local
# runtime agent) and syncs a sample folder into a session.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
bash scripts/install-tools.sh --only temporal,weed
npx tsc -p tsconfig.json
exec node bin/ferry.js demo
