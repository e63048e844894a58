#!/usr/bin/env bash
# Reproduce docs/results/ujiindoorloc/: prepare UJIIndoorLoc (area labels), run the small-grid
# sweep with every compression variant, write the report and copy it into the docs.
#
#   scripts/uji_results.sh [UJIndoorLoc.zip] [WORK_DIR]
#
# Resumable: rerunning skips what is finished. About 45 minutes on a busy 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ZIP="${1:-../shared/data/UJIndoorLoc.zip}"
WORK="${2:-work/uji}"
TINYLOC=.venv/bin/tinyloc

[ -f "$WORK/data/meta.json" ] || $TINYLOC data prepare uji --source "$ZIP" --out "$WORK/data"
$TINYLOC sweep --data "$WORK/data" --out "$WORK/sweep" --family both --grid small \
    --epochs 40 --patience 8 --batch-size 128 --lr 0.001 --seed 0 --jobs 2 \
    --quant int8,dynamic,selective,qat
$TINYLOC report "$WORK/sweep"

DEST=docs/results/ujiindoorloc
mkdir -p "$DEST"
cp "$WORK/sweep/report.md" "$WORK/sweep/results.csv" "$WORK"/sweep/*.png "$DEST/"
echo "copied the report into $DEST"
