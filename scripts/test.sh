#!/usr/bin/env bash
# The test command (`npm test`, and what .ci/run calls): installs what is
# missing (npm packages, the pinned Temporal CLI and SeaweedFS), builds, and
# runs unit then integration tests against real local servers.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
bash scripts/install-tools.sh --only temporal,weed
npx tsc -p tsconfig.json
# One file at a time: integration files each start their own servers, and the machine has 2 cores.
node --test --test-concurrency=1 --test-reporter=spec "$@" dist/test/unit/ dist/test/integration/
