#!/usr/bin/env bash
# Set up, then run the main job on the embedded synthetic house (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/tinyloc pipeline "$@"
