#!/usr/bin/env bash
# Set up, then run the whole test suite (slow end-to-end checks included).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
