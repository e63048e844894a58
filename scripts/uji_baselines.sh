#!/usr/bin/env bash
# The classical baselines (k-NN, random forest, logistic regression) on UJIIndoorLoc, for both
# label schemes (59 areas, 13 floors) and every input representation, on the prepared splits
# the neural sweeps use (grouped (user, phone) validation split, seed 0). Copies each run's
# baselines.csv (its summary; the full baselines.json stays in WORK) into
# docs/results/ujiindoorloc-baselines/<labels>-<rep>/ and prints their table.
#
#   scripts/uji_baselines.sh [UJIndoorLoc.zip] [WORK_DIR]
#
# Resumable: a finished run is skipped. About 25 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ZIP="${1:-../shared/data/UJIndoorLoc.zip}"
WORK="${2:-work/uji}"
TINYLOC=.venv/bin/tinyloc
DOCS=docs/results/ujiindoorloc-baselines

for labels in area floor; do
  for rep in powed dbm minmax relative; do
    data="$WORK/$labels-$rep"
    # the floors' powed data is the one scripts/uji_results.sh prepares as $WORK/floor
    [ "$labels-$rep" = floor-powed ] && data="$WORK/floor"
    [ -f "$data/meta.json" ] || \
      $TINYLOC data prepare uji --source "$ZIP" --out "$data" --labels "$labels" --representation "$rep"
    out="$WORK/baselines/$labels-$rep"
    [ -f "$out/baselines.json" ] || $TINYLOC baselines --data "$data" --out "$out" --jobs 2 --quiet
    mkdir -p "$DOCS/$labels-$rep"
    cp "$out/baselines.csv" "$DOCS/$labels-$rep/"
  done
done
.venv/bin/python scripts/baselines_table.py "$DOCS"/*/baselines.csv
