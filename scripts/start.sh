#!/usr/bin/env bash
# The newcomer's first command (`npm run demo`, also `npm start`): prepares a fresh clone, then
# `ferry demo` starts the embedded stack (Temporal + Web UI, S3, worker, local
# runtime agent) and runs the agent pipeline on a sample sales CSV.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/prepare.sh
exec node bin/ferry.js demo
