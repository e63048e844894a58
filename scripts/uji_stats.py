"""Prepare UJIIndoorLoc with both label schemes and print the counts docs/data.md quotes.

    .venv/bin/python scripts/uji_stats.py [--source ../shared/data/UJIndoorLoc.zip] [--seed 0]

Prints, per scheme: rows per split, classes, per-class scan counts (min / median / max per
split, classes with no test scan), the facts recorded in meta.json, and the wall time of the
prepare step.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from tinyloc_tf.data import load_prepared
from tinyloc_tf.data.prepared import class_counts
from tinyloc_tf.data.uji import prepare_uji

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "UJIndoorLoc.zip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        for labels in ("area", "floor"):
            start = time.perf_counter()
            out = prepare_uji(args.source, Path(tmp) / labels, labels=labels, seed=args.seed)
            seconds = time.perf_counter() - start
            data = load_prepared(out)
            print(f"== labels={labels}: {data.num_classes} classes, prepare {seconds:.1f} s")
            for name in ("train", "val", "test"):
                counts = class_counts(data.split(name), data.num_classes)
                print(f"  {name:5s} {len(data.split(name)):6d} scans; per class min {counts.min()}, "
                      f"median {int(np.median(counts))}, max {counts.max()}, empty {int((counts == 0).sum())}")
            if labels == "area":
                print("  areas per floor:", json.dumps(data.meta["areas"]["per_floor"]))
                print("  hull area m2:   ", json.dumps(data.meta["areas"]["hull_area_m2"]))
                print("  facts:", json.dumps(data.meta["uji"], indent=None))


if __name__ == "__main__":
    from tinyloc_tf.errors import script_status

    raise SystemExit(script_status(main, "uji_stats"))
