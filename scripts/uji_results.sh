#!/usr/bin/env bash
# Reproduce docs/results/ujiindoorloc/ and docs/results/ujiindoorloc-floors/: prepare
# UJIIndoorLoc (grouped (user, phone) validation split, powed inputs), sweep, report, run the
# baselines on the other representations too, ship the best model per budget (refit on
# train + val) and copy the reports into the docs.
#
#   scripts/uji_results.sh [UJIndoorLoc.zip] [WORK_DIR]
#
# Resumable: rerunning skips what is finished. About an hour on a busy 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
ZIP="${1:-../shared/data/UJIndoorLoc.zip}"
WORK="${2:-work/uji}"
TINYLOC=.venv/bin/tinyloc

for rep in powed minmax dbm; do
  [ -f "$WORK/area-$rep/meta.json" ] || $TINYLOC data prepare uji --source "$ZIP" --out "$WORK/area-$rep" --representation "$rep"
done
[ -f "$WORK/floor/meta.json" ] || $TINYLOC data prepare uji --source "$ZIP" --out "$WORK/floor" --labels floor

$TINYLOC sweep --data "$WORK/area-powed" --out "$WORK/sweep-area" --family both --grid budget \
    --epochs 20 --patience 5 --batch-size 128 --lr 0.003 --seed 0 --jobs 2 --quant int8,qat --no-distill
for rep in minmax dbm; do
  [ -f "$WORK/sweep-area/baselines-$rep/baselines.json" ] || \
    $TINYLOC baselines --data "$WORK/area-$rep" --out "$WORK/sweep-area/baselines-$rep" --quiet
done
# the same areas sweep with a moving average of the weights (--ema 0.998, chosen on validation:
# docs/training.md); the areas models are shipped over both sweeps
$TINYLOC sweep --data "$WORK/area-powed" --out "$WORK/sweep-area-ema" --family both --grid budget \
    --epochs 20 --patience 5 --batch-size 128 --lr 0.003 --seed 0 --jobs 2 --quant int8,qat --no-distill --ema 0.998
$TINYLOC sweep --data "$WORK/floor" --out "$WORK/sweep-floor" --family both --grid budget \
    --epochs 20 --patience 5 --batch-size 128 --lr 0.003 --seed 0 --jobs 2 --quant int8,qat --no-distill

for kind in area area-ema floor; do
  $TINYLOC report "$WORK/sweep-$kind" --overwrite
  case "$kind" in area) dest=docs/results/ujiindoorloc ;; area-ema) dest=docs/results/ujiindoorloc-ema ;;
    floor) dest=docs/results/ujiindoorloc-floors ;; esac
  mkdir -p "$dest"
  cp "$WORK/sweep-$kind/report.md" "$WORK/sweep-$kind/results.csv" "$WORK/sweep-$kind"/*.png "$dest/"
  echo "copied the report into $dest"
done
.venv/bin/python scripts/ship_models.py "$WORK/sweep-area" "$WORK/sweep-area-ema" --name ujiindoorloc --out models --refit
.venv/bin/python scripts/ship_models.py "$WORK/sweep-floor" --name ujiindoorloc-floors --out models --refit
