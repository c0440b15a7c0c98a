#!/usr/bin/env bash
# The test command: set up (idempotent) and run the whole suite on a real local Ray and a moto S3 server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/bootstrap.sh
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0
exec .venv/bin/python -m pytest tests -q -rs --durations=15 "$@"
