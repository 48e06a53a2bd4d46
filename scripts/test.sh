#!/usr/bin/env bash
# The test command (`npm test`, and what .ci/run calls): prepares a fresh
# clone, then runs unit and integration tests against real local servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
# moto emulates the ECS and SSM APIs for the driver tests.
bash scripts/install-tools.sh --only moto
# Chromium for the Web UI browser test (skipped, with the reason, when it cannot be installed).
bash scripts/install-browser.sh
# ferry pins AWS SDK releases that support Node 20; their notice about future releases is noise in test output.
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
# Every test stack writes its workflows' histories here; the replay test, last, replays them against the workflow code.
rm -rf test-output/histories
export FERRY_RECORD_HISTORIES="$PWD/test-output/histories"
# One file at a time: integration files each start their own servers, and the machine has 2 cores.
# `--faults` runs only the fault-injection and hostile-input suite (npm run test:faults).
suites=(dist/test/unit/ dist/test/integration/ dist/test/faults/ dist/test/replay/)
if [ "${1:-}" = "--faults" ]; then
  shift
  suites=(dist/test/faults/)
fi
node --test --test-concurrency=1 --test-reporter=spec "$@" "${suites[@]}"
