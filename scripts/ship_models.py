#!/usr/bin/env python
"""Ship the best TFLM model of a sweep per RAM/flash budget, each with a model card.

    .venv/bin/python scripts/ship_models.py SWEEP --name ujiindoorloc --out models/
    .venv/bin/python scripts/ship_models.py runs/pipeline/sweep --name synth-house-a --out models/ \\
        --made-by "tinyloc pipeline --work runs/pipeline --seed 0 --grid small --epochs 25 --patience 5 --jobs 1"

For each budget (64 and 32 KiB) the model is chosen as ``tinyloc report`` chooses it, by
:func:`tinyloc_tf.reports.report.best_under` over the int8-family variants (int8, selective,
QAT): of those TFLM runs whose flash *and* arena fit, the best validation macro-F1. The chosen
``.tflite`` is copied to ``OUT/NAME/<budget>kb.tflite`` and re-evaluated on val and test with
:func:`tinyloc_tf.deployment.host.evaluate_tflite`, the function behind ``tinyloc evaluate``,
so the card ``OUT/NAME/<budget>kb.json`` holds exactly what ``tinyloc evaluate`` prints
(``evaluate.test`` / ``evaluate.val``), plus the selection, the model's configuration, the
data's sha256s, the recipe that rebuilds the prepared data, and the commands that made it.
``tests/test_shipped_models.py`` rebuilds the data from that recipe and checks every number.

The folder ``OUT/NAME`` is written under a temporary name and swapped in at the end, so a
failed run leaves the previous models untouched and never a half-written set.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARD_FORMAT = "tinyloc-model-card/1"
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# Keys of an evaluate report that are the card's headline metrics.
HEADLINE = ("macro_f1", "accuracy", "steps", "windows")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path, help="sweep folder made by `tinyloc sweep` (runs/*/variants/*.tflite)")
    parser.add_argument("--name", required=True, help="dataset name, the folder under --out (e.g. ujiindoorloc)")
    parser.add_argument("--out", type=Path, default=Path("models"), help="models folder (default models)")
    parser.add_argument("--budgets", default="64,32", help="budgets in KiB, comma-separated (default 64,32)")
    parser.add_argument("--made-by", action="append", default=[], metavar="COMMAND",
                        help="command that produced the sweep, recorded in the card (repeatable; "
                             "default: the `tinyloc sweep` command rebuilt from SWEEP/sweep.json)")
    parser.add_argument("--refit", action="store_true",
                        help="retrain each selected run on train + val for its best epoch count before converting "
                             "(`tinyloc refit`); selection stays on validation")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- recipes and commands


def repo_relative(path) -> str:
    """``path`` relative to the repository (``../data/uji`` for a sibling folder): a card or doc
    names no absolute path of the machine that made it."""
    return os.path.relpath(Path(path).absolute(), REPO)


def _cmd(*words) -> str:
    """A shell command line; absolute paths among ``words`` become repository-relative."""
    return " ".join(shlex.quote(repo_relative(word) if isinstance(word, Path) or os.path.isabs(str(word))
                                else str(word)) for word in words)


def relative_command(text: str) -> str:
    """A command line given as text (``--made-by``), with its absolute paths made repository-relative."""
    return _cmd(*shlex.split(text))


def data_recipe(meta: dict, data_dir: Path) -> tuple[dict, list[str]]:
    """``(recipe, commands)`` that rebuild the prepared folder ``data_dir`` byte for byte.

    The recipe holds the arguments of the prepare (and synthesis) functions, read from the
    prepared ``meta.json`` and, for the synthetic house, the ``synthetic.json`` the generator
    left in the raw house folder.
    """
    from tinyloc_tf.errors import TinylocError

    split = meta.get("split") or {}
    if meta.get("dataset") == "ujiindoorloc":
        recipe = {
            "kind": "uji",
            "source": repo_relative(meta["source"]),
            "source_sha256": meta["source_sha256"],
            "labels": meta["labels"],
            "seed": int(split["seed"]),
            "val_fraction": float(split["val_fraction"]),
            "split": split.get("scheme", "stratified"),
            "representation": meta["scaling"].get("representation", "minmax"),
        }
        words = ["tinyloc", "data", "prepare", "uji", "--source", meta["source"], "--out", data_dir,
                 "--labels", recipe["labels"], "--seed", recipe["seed"], "--val-fraction", recipe["val_fraction"],
                 "--split", recipe["split"], "--representation", recipe["representation"]]
        if meta["labels"] == "area":
            recipe["areas"] = int(meta["areas"]["total"])
            words += ["--areas", recipe["areas"]]
        return recipe, [_cmd(*words)]
    if meta.get("dataset") == "inhome":
        prepare = {
            "house": str(meta["house"]),
            "seed": int(split["seed"]),
            "val_fraction": float(split["val_fraction"]),
            "block_seconds": float(split["block_seconds"]),
            "representation": meta["scaling"].get("representation", "minmax"),
        }
        house_dir = Path(meta["source"])
        raw_root = house_dir.parent
        prepare_cmd = _cmd("tinyloc", "data", "prepare", "inhome", "--source", raw_root, "--house", prepare["house"],
                           "--out", data_dir, "--seed", prepare["seed"], "--val-fraction", prepare["val_fraction"],
                           "--block-seconds", prepare["block_seconds"], "--representation", prepare["representation"])
        if not meta.get("synthetic"):
            recipe = {"kind": "inhome", "source": repo_relative(raw_root), "source_sha256": meta["source_sha256"],
                      "prepare": prepare}
            return recipe, [prepare_cmd]
        description_path = house_dir / "synthetic.json"
        if not description_path.is_file():
            raise TinylocError(f"{description_path}: not found; the synthetic house's generator settings "
                               f"(seed, floors, minutes) are needed to record how {data_dir} was made")
        description = json.loads(description_path.read_text())
        synth = {key: description[key] for key in ("seed", "house", "floors", "fingerprint_minutes",
                                                  "fingerprint_sessions", "living_minutes", "living_sessions")}
        synth_cmd = _cmd("tinyloc", "data", "synth", "--out", raw_root, "--seed", synth["seed"],
                         "--house", synth["house"], "--floors", synth["floors"],
                         "--fingerprint-sessions", synth["fingerprint_sessions"],
                         "--fingerprint-minutes", synth["fingerprint_minutes"],
                         "--living-sessions", synth["living_sessions"], "--living-minutes", synth["living_minutes"])
        recipe = {"kind": "synthetic-inhome", "source_sha256": meta["source_sha256"], "synth": synth,
                  "prepare": prepare}
        return recipe, [synth_cmd, prepare_cmd]
    raise TinylocError(f"{data_dir}/meta.json: unknown dataset {meta.get('dataset')!r}; cannot record its recipe")


def sweep_command(settings: dict) -> str:
    """The ``tinyloc sweep`` invocation equivalent to a sweep's ``sweep.json``."""
    words = ["tinyloc", "sweep", "--data", settings["data"], "--out", settings["sweep_dir"],
             "--family", settings["family"], "--grid", settings["grid"]]
    if settings.get("max_params") is not None:
        words += ["--max-params", settings["max_params"]]
    words += ["--epochs", settings["epochs"], "--patience", settings["patience"], "--batch-size", settings["batch_size"],
              "--lr", settings["lr"], "--seed", settings["seed"]]
    if not settings.get("int8_friendly", True):
        words.append("--exact")
    recipe = settings.get("recipe")
    if recipe:
        words += ["--schedule", recipe["schedule"], "--warmup-epochs", recipe["warmup_epochs"],
                  "--weight-decay", recipe["weight_decay"]]
        words += ["--dropout", recipe["dropout"]] if recipe.get("dropout") is not None else []
        words += ["--ap-dropout", recipe["ap_dropout"], "--noise-db", recipe["noise_db"], "--gain-db", recipe["gain_db"],
                  "--packet-drop", recipe["packet_drop"], "--time-shift", recipe["time_shift"]]
    if settings.get("distill") is False:
        words.append("--no-distill")
    words += ["--distill-method", settings["distill_method"], "--alpha", settings["alpha"],
              "--quant", ",".join(settings["variants"]), "--qat-epochs", settings["qat_epochs"]]
    words += ["--ray", settings["ray"]] if settings.get("ray") else ["--jobs", settings.get("jobs", 1)]
    return _cmd(*words)


def _versions() -> dict:
    versions = {"python": sys.version.split()[0]}
    for package in ("tinyloc-tf", "tensorflow-cpu", "keras", "numpy", "tflite-micro"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = None
    return versions


# --------------------------------------------------------------------------- one card


def _conversion_summary(conversion: dict) -> dict:
    """The converter's report without the per-epoch QAT history."""
    summary = {key: conversion[key] for key in ("quant", "ops", "float_ops", "kept_float", "representative",
                                                 "selective_threshold", "int8_weight_tensors") if key in conversion}
    if "qat" in conversion:
        summary["qat"] = {key: value for key, value in conversion["qat"].items() if key != "history"}
    return summary


def _same(a, b) -> bool:
    return a is not None and b is not None and float(a) == float(b)


def check_against_sweep(row, variant: dict, reports: dict, where: Path) -> None:
    """The re-evaluation must reproduce what the sweep recorded (and selection used)."""
    from tinyloc_tf.errors import TinylocError

    problems = []
    for split in ("val", "test"):
        for key in ("macro_f1", "accuracy"):
            if not _same(reports[split][key], variant[split][key]):
                problems.append(f"{split} {key}: sweep {variant[split][key]!r}, now {reports[split][key]!r}")
    for key in ("arena_bytes", "flash_bytes"):
        if not _same(reports["test"][key], row[key]):
            problems.append(f"{key}: sweep {row[key]!r}, now {reports['test'][key]!r}")
    if reports["test"]["runtime"] != "tflm" or not reports["test"]["tflm_deployable"]:
        problems.append(f"runtime {reports['test']['runtime']} (tflm_deployable {reports['test']['tflm_deployable']})")
    if problems:
        raise TinylocError(f"{where}: re-evaluating in host TFLM does not reproduce the sweep's record "
                           f"({'; '.join(problems)}); rerun the sweep's compression phase before shipping")


def make_card(*, name: str, budget_kb: int, row, sweep_dir: Path, dataset, shipped: Path,
              buf: bytes, commands: dict, recipe: dict, candidates: int, run_dir: Path | None = None) -> dict:
    """Re-evaluate ``buf`` (the chosen variant's bytes) on test and val and build its card.

    ``run_dir``: the run the shipped file was converted from (default: the sweep's selected run;
    a refit of it with ``--refit``)."""
    from tinyloc_tf.deployment.host import evaluate_tflite
    from tinyloc_tf.reports.paper import PAPER_HEADLINE, paper_key

    run_dir = run_dir or sweep_dir / "runs" / row["run"]
    variant_path = run_dir / "variants" / f"{row['variant']}.json"
    variant = json.loads(variant_path.read_text())
    if run_dir.parent.name == "refits":  # the refit's own record: sizes and scores of the shipped file
        row = {**row, "flash_bytes": variant["flash_bytes"], "arena_bytes": variant["arena_bytes"]}
    run_config = json.loads((run_dir / "config.json").read_text())
    run_metrics = json.loads((run_dir / "metrics.json").read_text())

    reports = {}
    for split in ("test", "val"):
        report = evaluate_tflite(buf, dataset, split=split, runtime="tflm")
        report["model"] = str(shipped)  # what `tinyloc evaluate <shipped path>` prints
        reports[split] = report
    check_against_sweep(row, variant, reports, variant_path)

    meta = dataset.meta
    paper = (PAPER_HEADLINE.get(paper_key(meta)) or {}).get(budget_kb)
    test, val = reports["test"], reports["val"]
    build = run_config.get("build_config", {})
    model = {
        "run": row["run"],
        "family": row["family"],
        "hidden": int(row["hidden"]),
        "layers": int(row["layers"]),
        "variant": row["variant"],
        "kind": row["kind"],
        "params": int(row["params"]),
        "int8_friendly": build.get("int8_friendly"),
        # share of steps whose Viterbi label equals the float Keras model's (measured by the sweep)
        "agreement_with_keras": {split: variant[split].get("agreement_with_keras") for split in ("val", "test")},
        "steps": build.get("steps"),
        "features": build.get("features"),
        "classes": build.get("classes"),
        "training": run_config.get("training"),
        "epochs_run": run_metrics.get("epochs_run"),
        "best_epoch": run_metrics.get("best_epoch"),
        "keras_float32": {"val_macro_f1": run_metrics["val_macro_f1"], "test_macro_f1": run_metrics["test_macro_f1"],
                          "test_accuracy": run_metrics["test_accuracy"]},
    }
    if "refit" in run_metrics:
        model["refit"] = {**run_metrics["refit"], "val_in_sample": True,
                          "note": "selected on validation as the sweep's run, then retrained on train + val for "
                                  "its best epoch count; val scores of the shipped file are in-sample"}
    if "distill" in run_metrics:
        distill = run_metrics["distill"]
        teacher = Path(distill.get("teacher_run", "")).name
        model["distilled_from"] = teacher or None
        model["distill"] = {key: distill[key] for key in ("alpha", "method") if key in distill}
    return {
        "format": CARD_FORMAT,
        "dataset": name,
        "budget_kb": budget_kb,
        "file": shipped.name,
        "tflite_sha256": hashlib.sha256(buf).hexdigest(),
        "model": model,
        "selection": {
            "rule": "tinyloc_tf.reports.report.best_under over the int8, selective and qat variants: among "
                    "those TFLM runs whose flash and arena both fit the budget, the highest validation macro-F1 "
                    "(ties: smaller flash); test scores are read off afterwards",
            "budget_bytes": budget_kb * 1024,
            "candidates_fitting": candidates,
            "val_macro_f1": float(row["val_macro_f1"]),
            "sweep": repo_relative(sweep_dir),
        },
        "metrics": {
            "runtime": "tflm (tflite-micro host interpreter, reference kernels)",
            "test": {key: test[key] for key in HEADLINE},
            "val": {key: val[key] for key in HEADLINE},
        },
        "flash_bytes": test["flash_bytes"],
        "arena_bytes": test["arena_bytes"],
        "metadata_bytes": test["metadata_bytes"],
        "params": test["params"],
        "data": {
            "dataset": meta.get("dataset"),
            "labels": meta.get("labels"),
            "house": meta.get("house"),
            "synthetic": bool(meta.get("synthetic", False)),
            "T": dataset.steps,
            "features": dataset.num_features,
            "classes": dataset.class_names,
            "counts": meta.get("counts"),
            "prepared_sha256": dataset.fingerprint(),
            "prepared_sha256_is": "sha256 over the sha256s of train.npz, val.npz, test.npz "
                                  "(tinyloc_tf.data.PreparedDataset.fingerprint)",
            "source_sha256": meta.get("source_sha256"),
            "source_files_sha256": meta.get("source_files_sha256"),
            "recipe": recipe,
        },
        "paper": None if paper is None else {**paper, "note": "test macro-F1/accuracy in percent; the paper's size "
                                                              "is a float state-dict file / 1000, not flash or RAM"},
        "conversion": _conversion_summary(variant.get("conversion") or {}),
        "commands": commands,
        "evaluate": {"test": test, "val": val},
        "versions": _versions(),
    }


# --------------------------------------------------------------------------- the whole set


def _display_path(path: Path) -> Path:
    """``path`` relative to the repository when inside it (``models/...``), as the card
    records it and as ``tinyloc evaluate`` run from the repository root prints it."""
    resolved = path.resolve()
    return resolved.relative_to(REPO) if resolved.is_relative_to(REPO) else path


def refit_variant(sweep_dir: Path, row, settings: dict, dataset) -> Path:
    """Retrain the selected run on train + val (``tinyloc refit``) and convert it into the
    selected variant, scored like the sweep's variants; returns the refit run folder."""
    from tinyloc_tf.training.sweep import compress_run
    from tinyloc_tf.training.trainer import refit_run

    refit_dir = sweep_dir / "refits" / row["run"]
    if not (refit_dir / "metrics.json").is_file():
        refit_run(sweep_dir / "runs" / row["run"], refit_dir, data_dir=settings["data"], verbose=0)
    compress_run(refit_dir, dataset, [row["variant"]], seed=settings.get("seed", 0),
                 qat_options={"epochs": settings.get("qat_epochs", 3)})
    return refit_dir


def ship(sweep_dir: Path, name: str, out: Path, budgets: list[int], made_by: list[str],
         ship_command: str, progress: bool = True, refit: bool = False) -> list[Path]:
    """Select, copy, re-evaluate and card the best model per budget; return the written paths."""
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.errors import TinylocError
    from tinyloc_tf.reports.report import INT8_VARIANTS, best_under, collect_rows, fits

    if not NAME_PATTERN.match(name):
        raise TinylocError(f"--name {name!r}: use lower-case letters, digits and dashes (e.g. synth-house-a)")
    settings_path = sweep_dir / "sweep.json"
    if not settings_path.is_file():
        raise TinylocError(f"{settings_path}: not found (is {sweep_dir} a sweep folder?)")
    settings = json.loads(settings_path.read_text())
    dataset = load_prepared(settings["data"])
    if settings.get("data_sha256") not in (None, dataset.fingerprint()):
        raise TinylocError(f"{settings['data']} is not the data {sweep_dir} was run on (fingerprints differ)")
    frame = collect_rows(sweep_dir)
    recipe, data_commands = data_recipe(dataset.meta, Path(settings["data"]))
    commands = {
        "data": data_commands,
        "sweep": [relative_command(text) for text in made_by] or [sweep_command(settings)],
        "report": [_cmd("tinyloc", "report", sweep_dir)],
        "ship": [ship_command],
    }

    # best_under only considers int8-family variants (int8, selective, qat) that run in TFLM.
    picks = []
    for budget in budgets:
        row = best_under(frame, budget)
        if row is None:
            raise TinylocError(f"{sweep_dir}: no {'/'.join(INT8_VARIANTS)} variant fits {budget} KiB of flash and arena")
        int8_family = frame[frame["variant"].isin(INT8_VARIANTS)]
        candidates = int((int8_family["deployable"].astype(bool) & fits(int8_family, budget)).sum())
        picks.append((budget, row, candidates))

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out))
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the shipped folder is not
    try:
        iterator = picks
        if progress:
            from tqdm import tqdm

            iterator = tqdm(picks, desc=f"ship {name}", unit="model")
        for budget, row, candidates in iterator:
            run_dir = refit_variant(sweep_dir, row, settings, dataset) if refit else sweep_dir / "runs" / row["run"]
            source = run_dir / "variants" / f"{row['variant']}.tflite"
            buf = source.read_bytes()
            record = json.loads(source.with_suffix(".json").read_text())
            if max(record["flash_bytes"], record["arena_bytes"] or 0) > budget * 1024:
                raise TinylocError(f"{source}: flash {record['flash_bytes']} B / arena {record['arena_bytes']} B "
                                   f"no longer fit {budget} KiB")
            shipped = _display_path(out / name / f"{budget}kb.tflite")
            if refit:
                commands = dict(commands, refit=[
                    _cmd("tinyloc", "refit", sweep_dir / "runs" / row["run"], "--out", run_dir),
                    _cmd("tinyloc", "convert", run_dir, "--quant", row["variant"], "--data", settings["data"],
                         "--out", source)])
            card_commands = dict(commands, evaluate=[
                _cmd("tinyloc", "evaluate", shipped, "--data", settings["data"], "--split", split, "--runtime", "tflm")
                for split in ("test", "val")])
            card = make_card(name=name, budget_kb=budget, row=row, sweep_dir=sweep_dir, dataset=dataset,
                             shipped=shipped, buf=buf, commands=card_commands, recipe=recipe, candidates=candidates,
                             run_dir=run_dir)
            (staging / shipped.name).write_bytes(buf)
            (staging / f"{budget}kb.json").write_text(json.dumps(card, indent=2) + "\n")
        final = out / name
        retired = None
        if final.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=out))
            os.replace(final, retired / name)
        os.replace(staging, final)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    written = []
    for budget, _, _ in picks:
        written += [out / name / f"{budget}kb.tflite", out / name / f"{budget}kb.json"]
    return written


def summary_line(card: dict) -> str:
    test, model = card["metrics"]["test"], card["model"]
    return (f"{card['dataset']} {card['budget_kb']} KiB: {model['run']} {model['variant']} - "
            f"test macro-F1 {100 * test['macro_f1']:.2f}, acc {100 * test['accuracy']:.2f}, "
            f"flash {card['flash_bytes']} B, arena {card['arena_bytes']} B")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = parse_args(argv)
    from tinyloc_tf.errors import TinylocError

    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    words = sys.argv[1:] if argv is None else argv
    # a word with spaces is a command given as text (--made-by): its paths are made relative too
    invoked = _cmd(".venv/bin/python", "scripts/ship_models.py",
                   *(relative_command(word) if " " in word else word for word in words))
    try:
        written = ship(args.sweep, args.name, args.out, budgets, args.made_by, invoked,
                       progress=not args.quiet and sys.stderr.isatty(), refit=args.refit)
    except TinylocError as exc:
        print(f"ship_models: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        if path.suffix == ".json":
            print(f"{path}: {summary_line(json.loads(path.read_text()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
