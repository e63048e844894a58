"""``tinyloc ensemble``: one model from several finished runs of the same configuration.

The runs (typically one configuration trained with seeds 0, 1, 2) become the members of an
:class:`~tinyloc_tf.models.ensemble.EnsembleEncoder` (``models.tagger.ensemble_of``): their
emissions and their CRF weights are averaged. Nothing is trained; the new run folder holds
the assembled ``model.keras``, its scores (validation, and test once, as for any run) and the
members it was made of, so it converts, evaluates, deploys and refits (each member refit,
then assembled again) like any other run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tinyloc_tf.errors import TinylocError
from tinyloc_tf.models.tagger import ensemble_of
from tinyloc_tf.training import trainer
from tinyloc_tf.training.artifacts import distinct_runs, load_run, read_metrics


def ensemble_run(member_runs, out: str | os.PathLike, *, data_dir=None, overwrite: bool = False) -> dict:
    """Assemble ``member_runs`` into the run folder ``out``; returns its ``metrics.json`` dict.

    The members must be finished runs of one configuration on the same prepared data
    (``data_fingerprint``); ``data_dir`` defaults to the first member's. Refit runs are
    refused: their validation scores are in-sample.
    """
    started = time.perf_counter()
    runs = distinct_runs(member_runs, what="member run")
    if len(runs) < 2:
        raise TinylocError(f"an ensemble needs at least two runs, got {len(runs)}")
    out = trainer.check_out(out, overwrite, inputs=runs)
    taggers, configs = [], []
    for run in runs:
        tagger, config = load_run(run, what="member run")
        kind = config.get("kind")
        if kind not in ("train", "distill"):
            raise TinylocError(f"member run {run} is a {kind or 'unknown'} run; members must be trained runs "
                               "(a refit's validation scores are in-sample: refit the ensemble instead)")
        taggers.append(tagger)
        configs.append(config)
    fingerprints = {config.get("data_fingerprint") for config in configs}
    if len(fingerprints) != 1:
        raise TinylocError(f"the member runs were trained on different data ({', '.join(str(r) for r in runs)})")
    data_dir = data_dir if data_dir is not None else configs[0]["data_dir"]
    data = trainer.load_data(data_dir)
    if data.fingerprint() not in fingerprints:
        raise TinylocError(f"{data_dir}: not the data the member runs were trained on (fingerprint differs)")
    model = ensemble_of(taggers)
    scores = trainer.score_splits(model, data)
    members = []
    for run, config in zip(runs, configs):
        metrics = read_metrics(run) or {}
        members.append({"run": str(run.absolute()), "seed": config.get("training", {}).get("seed"),
                        "val_macro_f1": metrics.get("val_macro_f1"), "best_epoch": metrics.get("best_epoch")})
    metrics = trainer.run_metrics(model, data, scores, best_epoch=None, epochs_run=0, fit_seconds=0.0,
                                  started=started, seed=members[0]["seed"] or 0)
    metrics["seed"] = [m["seed"] for m in members]
    metrics["ensemble"] = {"members": members, "combine": "mean of emissions and of CRF weights"}
    config = trainer.run_config("ensemble", model, data_dir, metrics, **configs[0]["training"])
    config["training"]["seed"] = metrics["seed"]
    config["training"]["selection"] = "none: the members' own runs chose their epochs on val"
    config["ensemble"] = metrics["ensemble"]
    import pandas as pd

    history = pd.DataFrame({"member": [Path(m["run"]).name for m in members],
                            "best_epoch": [m["best_epoch"] for m in members],
                            "val_macro_f1": [m["val_macro_f1"] for m in members]})
    trainer.write_run(out, model, history, config, metrics, overwrite=overwrite)
    return metrics
