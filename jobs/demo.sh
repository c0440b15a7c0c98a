#!/usr/bin/env bash
# The main job: set up (idempotent), copy the Python standard library's sources as the demo corpus,
# train a BPE tokenizer on it, run it through an embedded local Ray to shards, print the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/bootstrap.sh
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0
STDLIB="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"
mkdir -p demo-data
if [ ! -d demo-data/stdlib ]; then
  echo "demo: copying $STDLIB (*.py, without site-packages) to demo-data/stdlib" >&2
  mkdir -p demo-data/stdlib
  (cd "$STDLIB" && find . -name '*.py' -not -path './site-packages/*' -print0 | tar --null -cf - -T -) \
    | tar -xf - -C demo-data/stdlib
fi
if [ ! -f demo-data/tokenizer.json ]; then
  echo "demo: training a byte-level BPE (vocab 16384) on the corpus" >&2
  .venv/bin/tokenmill train --input demo-data/stdlib --modality code --vocab-size 16384 \
    --output demo-data/tokenizer.json
fi
.venv/bin/tokenmill run jobs/demo.yaml "$@"
.venv/bin/tokenmill status demo-data/out
