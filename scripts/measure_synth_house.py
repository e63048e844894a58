"""Measure the default synthetic house: raw size, synth and prepare time, window counts, class
shares, and how hard it is for per-step scikit-learn classifiers (a sanity check that the
house is neither trivial nor hopeless; the neural models are measured by the training stage).

    .venv/bin/python scripts/measure_synth_house.py [--seed 0] [--floors 2] [--keep DIR]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--floors", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="write here instead of a temporary folder")
    args = parser.parse_args()

    started = time.perf_counter()
    import pandas  # noqa: F401  (imports timed apart from the work)
    import scipy.signal  # noqa: F401

    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.data.inhome import prepare_inhome
    from tinyloc_tf.data.synth import synthesize_house
    imports_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as scratch:
        base = args.keep or Path(scratch)
        t0 = time.perf_counter()
        root = synthesize_house(base / "raw", seed=args.seed, floors=args.floors)
        synth_s = time.perf_counter() - t0
        raw_bytes = sum(p.stat().st_size for p in (root / "house_A").rglob("*") if p.is_file())
        t0 = time.perf_counter()
        data = load_prepared(prepare_inhome(root, "A", base / "prepared", seed=args.seed))
        prepare_s = time.perf_counter() - t0

        from sklearn.ensemble import RandomForestClassifier
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score

        def steps(split):
            part = data.split(split)
            return part.X.reshape(-1, data.num_features), part.y.reshape(-1)

        X_train, y_train = steps("train")
        baselines = {}
        for name, model in (("random_forest", RandomForestClassifier(100, random_state=0, n_jobs=2)),
                            ("logistic_regression", LogisticRegression(max_iter=2000))):
            model.fit(X_train, y_train)
            for split in ("val", "test"):
                X, y = steps(split)
                predicted = model.predict(X)
                baselines[f"{name}/{split}"] = {
                    "accuracy": round(float(accuracy_score(y, predicted)), 4),
                    "macro_f1": round(float(f1_score(y, predicted, average="macro")), 4),
                }
        shares = {
            split: {name: round(float(share), 4) for name, share in zip(
                data.class_names, np.bincount(data.split(split).y.reshape(-1), minlength=data.num_classes)
                / data.split(split).y.size)}
            for split in ("train", "val", "test")
        }
        report = {
            "seed": args.seed,
            "floors": args.floors,
            "raw_mb": round(raw_bytes / 1e6, 2),
            "imports_s": round(imports_s, 2),
            "synth_s": round(synth_s, 2),
            "prepare_s": round(prepare_s, 2),
            "windows": data.meta["counts"],
            "removed": data.meta["removed"],
            "class_share": shares,
            "per_step_baselines": baselines,
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
