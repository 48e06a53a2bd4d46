#!/usr/bin/env bash
# The test command (`npm test`, and what .ci/run calls): prepares a fresh
# clone, then runs the unit, integration and fault suites against real local
# servers and, last, replays the workflow histories they recorded. Each suite
# is one step whose TAP report test/support/suiteCheck.ts judges: a suite
# folder without tests, fewer tests than its minimum, a failure, or (under
# CI=true) any skipped test fails the command, after every step has run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
# The lint is part of the tests: zero warnings (eslint.config.mjs says what it holds).
npx eslint . --max-warnings=0
# moto emulates the ECS and SSM APIs for the driver tests.
bash scripts/install-tools.sh --only moto
# The PyPI mcp client for the Python agent example's test (it fails under CI=true, with the reason, when this could not install it).
bash scripts/install-tools.sh --only mcp-python || true
# Chromium for the Web UI and timeline page tests (skipped, with the reason, when it cannot be installed; failed under CI=true).
bash scripts/install-browser.sh
# A real sshd for the ssh target's tests (skipped, with the reason, when it cannot be installed; failed under CI=true).
bash scripts/install-sshd.sh
# ferry pins AWS SDK releases that support Node 20; their notice about future releases is noise in test output.
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
# Every test stack writes its workflows' histories here; the replay step, last, replays them against the workflow code.
# Servers', agents' and workers' logs go to test-output/logs/<test file>/, the TAP reports to test-output/tap/.
rm -rf test-output/histories test-output/logs test-output/tap
mkdir -p test-output/tap
# The workflow code, bundled once for the run: every test stack, and every worker a test spawns, loads it instead of
# running webpack itself (built after tsc, so it is this checkout's code, which the replay step replays too).
node dist/worker/bundle.js test-output/workflow-bundle.js >test-output/bundle.log 2>&1 || { cat test-output/bundle.log >&2; exit 1; }
export FERRY_WORKFLOW_BUNDLE="$PWD/test-output/workflow-bundle.js"
export FERRY_RECORD_HISTORIES="$PWD/test-output/histories"
# One step per suite, in this order: node sorts the files of all the folders it is given, so a single
# `node --test` over them would run replay/ before unit/. `--faults` runs only the fault-injection and
# hostile-input suite (npm run test:faults). Further arguments go to node (e.g. --test-name-pattern);
# such a narrowed run is not held to the suites' minimum test counts.
suites=(unit integration faults replay)
if [ "${1:-}" = "--faults" ]; then
  shift
  suites=(faults)
fi
filtered=()
if [ "$#" -gt 0 ]; then filtered=(--filtered); fi
failed=()
for suite in "${suites[@]}"; do
  echo "== $suite (dist/test/$suite/)"
  started=$SECONDS
  status=0
  # One file at a time: integration files each start their own servers, and the machine has 2 cores.
  node --test --test-concurrency=1 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="test-output/tap/$suite.tap" \
    "$@" "dist/test/$suite/" || status=$?
  node dist/test/support/suiteCheck.js "$suite" "test-output/tap/$suite.tap" "$status" "${filtered[@]}" || failed+=("$suite")
  echo "== $suite took $((SECONDS - started)) s"
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "test: failed suites: ${failed[*]} (reports in test-output/tap/, logs in test-output/logs/)" >&2
  exit 1
fi
echo "test: every suite passed in ${SECONDS} s"
