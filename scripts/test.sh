#!/usr/bin/env bash
# The test command (`npm test`, and what .ci/run calls): prepares a fresh
# clone, then runs unit and integration tests against real local servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
# One file at a time: integration files each start their own servers, and the machine has 2 cores.
node --test --test-concurrency=1 --test-reporter=spec "$@" dist/test/unit/ dist/test/integration/
