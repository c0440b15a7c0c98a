#!/usr/bin/env bash
# Set up everything tokenmill needs on a fresh machine, idempotently: a virtualenv in .venv with
# torch (CPU build first, so pip never pulls a CUDA build), tokenmill[dev], and the Debian tools
# the tests use (chromium for the report screenshot, espeak-ng for real speech).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
STAMP=.venv/.tokenmill-installed
WANT="$(sha256sum pyproject.toml | cut -c1-16)"

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[dev]"
  .venv/bin/python -m pip check
  echo "$WANT" > "$STAMP"
fi

# Debian tools used by tests (optional: tests that need them say so and skip when absent)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  command -v chromium >/dev/null || missing="$missing chromium"
  command -v espeak-ng >/dev/null || missing="$missing espeak-ng"
  if [ -n "$missing" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
      || echo "bootstrap: could not install$missing; the tests that need them will skip" >&2
  fi
fi
echo "bootstrap: ready (.venv)" >&2
