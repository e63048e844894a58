"""Model cards: the JSON record beside each shipped model.

A shipped model is ``models/<dataset>/<budget>kb.tflite``; its card is
``models/<dataset>/<budget>kb.json`` (:func:`shipped_names`), written by
``scripts/ship_models.py`` with :func:`make_card` and :func:`write_card`, and checked by
``tests/test_shipped_models.py``, which rebuilds the data with :func:`prepare_from_recipe` and
expects ``tinyloc evaluate`` to print the card's numbers again. See ``docs/shipped_models.md``.

A card (``format``: :data:`CARD_FORMAT`) is one JSON object, two-space indented, keys in this
order (:func:`render_card`):

``format``
    :data:`CARD_FORMAT`, ``"tinyloc-model-card/1"``.
``dataset``, ``budget_kb``
    The folder name under ``models/`` (lower-case letters, digits, dashes) and the budget in
    KiB that both the flash (the ``.tflite`` file) and the tensor arena fit.
``file``, ``tflite_sha256``
    The model's file name beside the card and the sha256 of its bytes.
``model``
    What the file is: the sweep's ``run``, ``family``, ``hidden``, ``layers``, ``variant``
    (``int8``, ``selective`` or ``qat``), ``kind`` (``train`` / ``distill``), ``params``,
    ``int8_friendly``, ``agreement_with_keras`` (per split, the share of steps whose Viterbi
    label equals the float Keras model's, measured by the sweep), ``steps``, ``features``,
    ``classes``, ``training`` (the run's settings), ``epochs_run``, ``best_epoch`` and
    ``keras_float32`` (the Keras model's val/test macro-F1 and test accuracy). A refit model
    adds ``refit`` (``tinyloc refit``'s record, ``val_in_sample: true`` and a note: it was
    selected on validation as the sweep's run, then retrained on train + val); a distilled one
    adds ``distilled_from`` (the teacher run; an ensemble's runs joined by " + ") and ``distill``
    (``alpha``, ``method``); an ensemble of seeds adds ``ensemble`` (``members``, ``seeds``,
    ``combine``). A streaming step model (``variant`` ``stream-int8`` or ``stream-int16x8``,
    ``scripts/ship_models.py --streaming``) adds ``streaming``: the ``decoder``, ``lag`` and
    ``reset_every`` (samples, null: never) it was scored with, and its ``state_bytes``.
``selection``
    ``rule`` (:data:`SELECTION_RULE`, or :data:`STREAM_SELECTION_RULE`), ``budget_bytes``,
    ``candidates_fitting`` (int8-family TFLM variants, or streaming step models, that fit),
    ``val_macro_f1`` the choice was made on, and ``sweep`` (the sweep folder,
    repository-relative); ``rivals`` when other sweeps competed through their committed
    ``results.csv`` (``scripts/ship_models.py --rivals``; their candidates are counted too);
    ``over_seeds`` when candidates were ranked on their mean validation macro-F1 over the same
    sweep run with other seeds (``scripts/ship_models.py --seeds-of``): the ``rule``,
    ``val_macro_f1_mean`` and ``_sd``, and the ``sweeps``, ``seeds`` and per-seed ``val_macro_f1``.
``metrics``
    ``runtime`` and, for ``test`` and ``val``, the :data:`HEADLINE` keys (``macro_f1``,
    ``accuracy``, ``steps``, ``windows``) of the evaluate report below; for a streaming model
    :data:`STREAM_HEADLINE` (its decoder's ``macro_f1`` and ``accuracy`` over every sample,
    ``samples``, ``streams``).
``flash_bytes``, ``arena_bytes``, ``metadata_bytes``, ``params``
    As ``tinyloc evaluate`` reports them on test (host TFLM arena: the smallest it runs in).
``data``
    ``dataset``, ``labels``, ``house``, ``synthetic``, ``T``, ``features``, ``classes``,
    ``counts``, ``prepared_sha256`` (:meth:`tinyloc_tf.data.PreparedDataset.fingerprint`) and
    ``prepared_sha256_is`` (what that hashes), ``source_sha256`` and ``source_files_sha256``
    of the raw data, and ``recipe`` (:func:`data_recipe`): the arguments that rebuild the
    prepared folder byte for byte.
``paper``
    The paper's headline number for this dataset and budget
    (:data:`tinyloc_tf.reports.paper.PAPER_HEADLINE`) with a note, or null.
``conversion``
    The converter's report without the QAT history: ``quant``, op counts, ops kept in float,
    representative set, selective threshold, int8 weight tensors, QAT settings.
``commands``
    Shell command lines, repository-relative (:func:`shell_command`): ``data`` (prepare, and
    synthesise for the synthetic house), ``sweep``, ``report``, ``ship``, for a refit model
    ``refit`` (:func:`refit_commands`), and ``evaluate`` (:func:`evaluate_commands`).
``evaluate``
    ``test`` and ``val``: exactly the JSON ``tinyloc evaluate <file> --data DIR --split S
    --runtime tflm`` prints (:func:`tinyloc_tf.deployment.host.evaluate_tflite`, per-class F1
    included), ``model`` being the file's repository-relative path; for a streaming model what
    ``tinyloc evaluate <file> --streaming --lags LAG [--reset-every N]`` prints
    (:func:`tinyloc_tf.deployment.streaming.evaluate_streaming`, :func:`evaluate_arguments`).
``versions``
    Python, tinyloc-tf, tensorflow-cpu, keras, numpy and tflite-micro versions
    (:func:`library_versions`).

Cards name no absolute path of the machine that made them: paths are written relative to the
repository (:func:`repo_relative`), ``../`` for its siblings.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from dataclasses import fields
from importlib import metadata as importlib_metadata
from pathlib import Path

from tinyloc_tf.errors import TinylocError
from tinyloc_tf.training.artifacts import sweep_run, variant_path
from tinyloc_tf.training.recipe import ADDED_LATER, Recipe, flag_words

#: The repository root: cards record their paths relative to it.
REPO = Path(__file__).resolve().parents[2]
CARD_FORMAT = "tinyloc-model-card/1"
#: Keys of an evaluate report that are the card's headline metrics (``metrics.test``, ``metrics.val``).
HEADLINE = ("macro_f1", "accuracy", "steps", "windows")
#: A streaming card's headline: its decoder's macro-F1 and accuracy, and what they were scored over.
STREAM_HEADLINE = ("macro_f1", "accuracy", "samples", "streams")
SELECTION_RULE = ("tinyloc_tf.reports.report.best_under over the int8, selective and qat variants: among "
                  "those TFLM runs whose flash and arena both fit the budget, the highest validation macro-F1 "
                  "(ties: smaller flash); test scores are read off afterwards")
STREAM_SELECTION_RULE = ("tinyloc_tf.reports.report.best_under(streaming=True) over the streaming step models "
                         "(stream-*): among those whose flash and host-TFLM arena both fit the budget, the highest "
                         "validation macro-F1 over whole streams with the sweep's decoder, lag and resets (ties: "
                         "smaller flash); test scores are read off afterwards")
#: The packages whose versions a card records.
VERSIONED = ("tinyloc-tf", "tensorflow-cpu", "keras", "numpy", "tflite-micro")


# --------------------------------------------------------------------------- files and paths


def shipped_names(budget_kb: int) -> tuple[str, str]:
    """``(model, card)`` file names of the model shipped for ``budget_kb`` in its dataset folder."""
    return f"{budget_kb}kb.tflite", f"{budget_kb}kb.json"


def find_cards(models_dir: str | os.PathLike) -> list[Path]:
    """Every card under ``models_dir`` (``<dataset>/<budget>kb.json``), sorted by path; a folder
    being written (hidden: ``.NAME.partial-*``, :mod:`tinyloc_tf.atomic`) is not shipped yet."""
    return sorted(p for p in Path(models_dir).glob("*/*kb.json") if not p.parent.name.startswith("."))


def find_models(models_dir: str | os.PathLike, streaming: bool | None = None) -> list[Path]:
    """The ``.tflite`` beside every card under ``models_dir``, sorted by path; ``streaming``
    True or False keeps only the step models (``model.streaming`` in the card) or the window models."""
    paths = []
    for card_path in find_cards(models_dir):
        card = read_card(card_path)
        if streaming is None or streaming == ("streaming" in card["model"]):
            paths.append(card_path.parent / card["file"])
    return paths


def repo_relative(path) -> str:
    """``path`` relative to the repository (``../data/uji`` for a sibling folder): a card or doc
    names no absolute path of the machine that made it."""
    return os.path.relpath(Path(path).absolute(), REPO)


def display_path(path: Path) -> Path:
    """``path`` relative to the repository when inside it (``models/...``), as the card
    records it and as ``tinyloc evaluate`` run from the repository root prints it."""
    resolved = path.resolve()
    return resolved.relative_to(REPO) if resolved.is_relative_to(REPO) else path


def shell_command(*words) -> str:
    """A shell command line; absolute paths among ``words`` become repository-relative."""
    return " ".join(shlex.quote(repo_relative(word) if isinstance(word, Path) or os.path.isabs(str(word))
                                else str(word)) for word in words)


def relative_command(text: str) -> str:
    """A command line given as text (``--made-by``), with its absolute paths made repository-relative."""
    return shell_command(*shlex.split(text))


# --------------------------------------------------------------------------- recipes and commands


def data_recipe(meta: dict, data_dir: Path) -> tuple[dict, list[str]]:
    """``(recipe, commands)`` that rebuild the prepared folder ``data_dir`` byte for byte.

    The recipe holds the arguments of the prepare (and synthesis) functions, read from the
    prepared ``meta.json`` and, for the synthetic house, the ``synthetic.json`` the generator
    left in the raw house folder. Its ``kind`` is ``uji`` (``source``, ``source_sha256``,
    ``labels``, ``seed``, ``val_fraction``, ``split``, ``representation``, ``areas`` for area
    labels), ``inhome`` (``source``, ``source_sha256``, ``prepare``) or ``synthetic-inhome``
    (``source_sha256``, ``synth``: the generator's arguments, ``prepare``: those of
    :func:`tinyloc_tf.data.inhome.prepare_inhome`). :func:`prepare_from_recipe` reads it back.
    """
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
        return recipe, [shell_command(*words)]
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
        prepare_cmd = shell_command(
            "tinyloc", "data", "prepare", "inhome", "--source", raw_root, "--house", prepare["house"],
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
        synth_cmd = shell_command(
            "tinyloc", "data", "synth", "--out", raw_root, "--seed", synth["seed"],
            "--house", synth["house"], "--floors", synth["floors"],
            "--fingerprint-sessions", synth["fingerprint_sessions"],
            "--fingerprint-minutes", synth["fingerprint_minutes"],
            "--living-sessions", synth["living_sessions"], "--living-minutes", synth["living_minutes"])
        recipe = {"kind": "synthetic-inhome", "source_sha256": meta["source_sha256"], "synth": synth,
                  "prepare": prepare}
        return recipe, [synth_cmd, prepare_cmd]
    raise TinylocError(f"{data_dir}/meta.json: unknown dataset {meta.get('dataset')!r}; cannot record its recipe")


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def prepare_from_recipe(recipe: dict, root: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """Rebuild a card's prepared folder from its ``recipe`` (:func:`data_recipe`) as ``root/data``.

    ``source``: the raw data (the UJIIndoorLoc archive, or the in-home raw folder) when not at
    the recipe's repository-relative ``source``; a UJIIndoorLoc archive must have the recipe's
    ``source_sha256``. The synthetic house is synthesised again from its seed into ``root/raw``.
    Cards made before splits and representations were options used the stratified split and
    per-AP min-max; those defaults apply where the recipe names neither. Returns the folder.
    """
    root = Path(root)
    kind = recipe["kind"]
    if kind == "uji":
        from tinyloc_tf.data.uji import prepare_uji

        archive = Path(source) if source is not None else REPO / recipe["source"]
        if _sha256_file(archive) != recipe["source_sha256"]:
            raise TinylocError(f"{archive} is not the archive the card was made from "
                               f"(sha256 {recipe['source_sha256']})")
        options = {"areas": recipe["areas"]} if "areas" in recipe else {}
        return prepare_uji(archive, root / "data", labels=recipe["labels"], seed=recipe["seed"],
                           val_fraction=recipe["val_fraction"], split=recipe.get("split", "stratified"),
                           representation=recipe.get("representation", "minmax"), **options)
    if kind in ("inhome", "synthetic-inhome"):
        from tinyloc_tf.data.inhome import prepare_inhome

        if kind == "synthetic-inhome":
            from tinyloc_tf.data.synth import synthesize_house

            raw = synthesize_house(root / "raw", **recipe["synth"])
        else:
            raw = Path(source) if source is not None else REPO / recipe["source"]
        prepare = dict(recipe["prepare"])
        prepare.setdefault("representation", "minmax")
        return prepare_inhome(raw, prepare.pop("house"), root / "data", **prepare)
    raise TinylocError(f"unknown recipe kind {kind!r}")


def sweep_command(settings: dict) -> str:
    """The ``tinyloc sweep`` invocation equivalent to a sweep's ``sweep.json``."""
    words = ["tinyloc", "sweep", "--data", settings["data"], "--out", settings["sweep_dir"],
             "--family", settings["family"], "--grid", settings["grid"]]
    if settings.get("max_params") is not None:
        words += ["--max-params", settings["max_params"]]
    if settings.get("ensemble", 1) > 1:
        words += ["--ensemble", settings["ensemble"]]
    words += ["--epochs", settings["epochs"], "--patience", settings["patience"], "--batch-size", settings["batch_size"],
              "--lr", settings["lr"], "--seed", settings["seed"]]
    if not settings.get("int8_friendly", True):
        words.append("--exact")
    recipe = settings.get("recipe")
    if recipe:  # every Recipe field as its flag (a switch only when on); unset (None) ones and
        # fields added later, left off, are omitted
        for field in fields(Recipe):
            value = recipe.get(field.name, ADDED_LATER.get(field.name))
            if value is None or (field.name in ADDED_LATER and value == ADDED_LATER[field.name]):
                continue
            words += flag_words(field.name, value)
    if settings.get("distill") is False:
        words.append("--no-distill")
    words += ["--distill-method", settings["distill_method"], "--alpha", settings["alpha"],
              "--quant", ",".join(settings["variants"])]
    if "convert_options" in settings:  # every conversion option, as its flag
        options = {k: v for k, v in settings["convert_options"].items() if k != "seed"}  # the sweep's --seed
        for key, value in options.items():
            words += flag_words(key, value)
    else:  # sweeps from before conversion options were recorded: only the QAT epochs were settable
        words += ["--qat-epochs", settings["qat_epochs"]]
    words += ["--ray", settings["ray"]] if settings.get("ray") else ["--jobs", settings.get("jobs", 1)]
    return shell_command(*words)


def card_commands(data_commands: list[str], settings: dict, sweep_dir: Path, ship_command: str,
                  made_by: list[str] = ()) -> dict:
    """The card's ``commands`` common to a sweep's models: ``data`` (from :func:`data_recipe`),
    ``sweep`` (``made_by``, the commands that produced the sweep, else :func:`sweep_command`),
    ``report`` and ``ship``; each model adds ``refit`` and ``evaluate``."""
    return {
        "data": data_commands,
        "sweep": [relative_command(text) for text in made_by] or [sweep_command(settings)],
        "report": [shell_command("tinyloc", "report", sweep_dir)],
        "ship": [ship_command],
    }


def refit_commands(run_dir: Path, refit_dir: Path, variant: str, data, tflite: Path) -> list[str]:
    """The ``tinyloc refit`` and ``tinyloc convert`` calls that made a refit model's ``tflite``
    (``--streaming --quant int16x8`` for the variant ``stream-int16x8``)."""
    from tinyloc_tf.compression.variants import get_variant

    quant = get_variant(variant).streaming
    convert = ("--streaming", "--quant", quant) if quant else ("--quant", variant)
    return [shell_command("tinyloc", "refit", run_dir, "--out", refit_dir),
            shell_command("tinyloc", "convert", refit_dir, *convert, "--data", data, "--out", tflite)]


def evaluate_arguments(streaming: dict | None) -> list[str]:
    """The ``tinyloc evaluate`` options a card's numbers were made with: ``--runtime tflm`` for a
    window model; ``--streaming``, the decoder's lag and the resets for a step model."""
    if streaming is None:
        return ["--runtime", "tflm"]
    reset = ["--reset-every", str(streaming["reset_every"])] if streaming.get("reset_every") else []
    return ["--streaming", "--lags", str(streaming["lag"]), *reset]


def evaluate_commands(shipped: Path, data, streaming: dict | None = None) -> list[str]:
    """The ``tinyloc evaluate`` calls whose output is the card's ``evaluate.test`` and ``evaluate.val``."""
    return [shell_command("tinyloc", "evaluate", shipped, "--data", data, "--split", split,
                          *evaluate_arguments(streaming)) for split in ("test", "val")]


def headline(report: dict, streaming: dict | None = None) -> dict:
    """The card's ``metrics`` entry of one evaluate report: :data:`HEADLINE`, or for a step model
    (``streaming``: the card's ``model.streaming``) its decoder's scores (:data:`STREAM_HEADLINE`)."""
    if streaming is None:
        return {key: report[key] for key in HEADLINE}
    from tinyloc_tf.deployment.streaming import decoder_label

    values = {**report, **report["decoders"][decoder_label(streaming["decoder"], streaming["lag"])]}
    return {key: values[key] for key in STREAM_HEADLINE}


def evaluate_shipped(buf: bytes, dataset, shipped: Path, streaming: dict | None = None) -> dict:
    """``{split: report}`` for test and val: what ``tinyloc evaluate <shipped> --split S`` with
    :func:`evaluate_arguments` prints."""
    from tinyloc_tf.deployment.host import evaluate_tflite
    from tinyloc_tf.deployment.streaming import evaluate_streaming

    reports = {}
    for split in ("test", "val"):
        if streaming is None:
            report = evaluate_tflite(buf, dataset, split=split, runtime="tflm")
        else:
            report = evaluate_streaming(buf, dataset, split=split, lags=[streaming["lag"]],
                                        reset_every=streaming.get("reset_every"))
        report["model"] = str(shipped)  # what `tinyloc evaluate <shipped path>` prints
        reports[split] = report
    return reports


def library_versions() -> dict:
    """Python's version and those of :data:`VERSIONED` (None where not installed)."""
    versions = {"python": sys.version.split()[0]}
    for package in VERSIONED:
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


def check_against_sweep(row, variant: dict, reports: dict, where: Path, streaming: dict | None = None) -> None:
    """Raise unless the re-evaluation ``reports`` (``test``, ``val``) reproduce what the sweep
    recorded in ``variant`` (its ``variants/<name>.json``) and selection used (``row``)."""
    problems = []
    for split in ("val", "test"):
        scores = headline(reports[split], streaming)
        for key in ("macro_f1", "accuracy"):
            if not _same(scores[key], variant[split][key]):
                problems.append(f"{split} {key}: sweep {variant[split][key]!r}, now {scores[key]!r}")
    for key in ("arena_bytes", "flash_bytes"):
        if not _same(reports["test"][key], row[key]):
            problems.append(f"{key}: sweep {row[key]!r}, now {reports['test'][key]!r}")
    deployable = reports["test"].get("tflm_deployable", True)  # a streaming report is TFLM's by construction
    if reports["test"]["runtime"] != "tflm" or not deployable:
        problems.append(f"runtime {reports['test']['runtime']} (tflm_deployable {deployable})")
    if problems:
        raise TinylocError(f"{where}: re-evaluating in host TFLM does not reproduce the sweep's record "
                           f"({'; '.join(problems)}); rerun the sweep's compression phase before shipping")


def seed_mean_record(row, over_seeds: dict) -> dict:
    """The card's ``selection.over_seeds``: the rule, and the sweeps (``{folder: seed}``, the
    pick's own first), seeds and validation macro-F1s the pick's mean was taken over."""
    from tinyloc_tf.reports.report import SEED_MEAN

    return {
        "rule": "ranked on the mean validation macro-F1 of the candidate over the same sweep run with other "
                "seeds (same run and variant names); the file shipped is this sweep's",
        "val_macro_f1_mean": float(row[SEED_MEAN]),
        "val_macro_f1_sd": float(row["val_macro_f1_seed_sd"]),
        "sweeps": [repo_relative(path) for path in over_seeds],
        "seeds": list(over_seeds.values()),
        "val_macro_f1": [float(value) for value in row["val_macro_f1_seeds"]],
    }


def distilled_from(distill: dict) -> str | None:
    """The teacher run's folder name; an ensemble's names joined by `` + ``."""
    runs = distill.get("teacher_run") or []
    names = [Path(run).name for run in ([runs] if isinstance(runs, str) else runs)]
    return " + ".join(names) or None


def make_card(*, name: str, budget_kb: int, row, sweep_dir: Path, dataset, shipped: Path,
              buf: bytes, commands: dict, recipe: dict, candidates: int, run_dir: Path | None = None,
              variant: dict | None = None, rivals: list[str] = (), over_seeds: dict | None = None) -> dict:
    """Re-evaluate ``buf`` (the chosen variant's bytes) on test and val and build its card.

    ``row``: the sweep's row the model was selected as (:func:`tinyloc_tf.reports.report.collect_rows`);
    ``dataset``: the prepared data it was swept on; ``shipped``: the model's path as the card
    records it (:func:`display_path`); ``commands``: the card's ``commands``; ``recipe``: from
    :func:`data_recipe`; ``candidates``: the int8-family variants that fit ``budget_kb``.
    ``run_dir``: the run the shipped file was converted from (default: the sweep's selected run;
    a refit of it with ``--refit``). ``variant``: the variant's record in ``run_dir`` when the caller
    has read it already (default: read here). ``over_seeds``: ``{sweep folder: seed}``, ``sweep_dir``
    first, when selection ranked the mean validation macro-F1 over the same sweep run with
    these seeds (``row`` then has :func:`~tinyloc_tf.reports.report.with_seed_mean`'s columns). Raises (:func:`check_against_sweep`) when host TFLM does not
    reproduce the sweep's record of the file. A streaming step model (``stream-*``) is scored as
    the sweep scored it, over whole streams with its decoder, lag and resets."""
    from tinyloc_tf.reports.paper import PAPER_HEADLINE, paper_key

    run_dir = run_dir or sweep_run(sweep_dir, row["run"])
    record_path = variant_path(run_dir, row["variant"], ".json")
    if variant is None:
        variant = json.loads(record_path.read_text())
    if run_dir.parent.name == "refits":  # the refit's own record: sizes and scores of the shipped file
        row = {**row, "flash_bytes": variant["flash_bytes"], "arena_bytes": variant["arena_bytes"]}
    run_config = json.loads((run_dir / "config.json").read_text())
    run_metrics = json.loads((run_dir / "metrics.json").read_text())
    streaming = variant.get("streaming")
    if streaming is not None:
        streaming = {key: streaming[key] for key in ("decoder", "lag", "reset_every", "state_bytes")}

    reports = evaluate_shipped(buf, dataset, shipped, streaming)
    check_against_sweep(row, variant, reports, record_path, streaming)

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
    if streaming is not None:
        model["streaming"] = streaming
    if "refit" in run_metrics:
        model["refit"] = {**run_metrics["refit"], "val_in_sample": True,
                          "note": "selected on validation as the sweep's run, then retrained on train + val for "
                                  "its best epoch count; val scores of the shipped file are in-sample"}
    if "ensemble" in run_metrics:
        members = run_metrics["ensemble"]["members"]
        model["ensemble"] = {"members": [Path(m["run"]).name for m in members], "seeds": [m["seed"] for m in members],
                             "combine": run_metrics["ensemble"]["combine"]}
    if "distill" in run_metrics:
        distill = run_metrics["distill"]
        model["distilled_from"] = distilled_from(distill)
        model["distill"] = {key: distill[key] for key in ("alpha", "method") if key in distill}
    return {
        "format": CARD_FORMAT,
        "dataset": name,
        "budget_kb": budget_kb,
        "file": shipped.name,
        "tflite_sha256": hashlib.sha256(buf).hexdigest(),
        "model": model,
        "selection": {
            "rule": SELECTION_RULE if streaming is None else STREAM_SELECTION_RULE,
            "budget_bytes": budget_kb * 1024,
            "candidates_fitting": candidates,
            "val_macro_f1": float(row["val_macro_f1"]),
            "sweep": repo_relative(sweep_dir),
            **({"rivals": list(rivals)} if rivals else {}),
            **({"over_seeds": seed_mean_record(row, over_seeds)} if over_seeds else {}),
        },
        "metrics": {
            "runtime": "tflm (tflite-micro host interpreter, reference kernels)" + (
                "" if streaming is None else "; one sample per invoke, state carried, decoded online"),
            "test": headline(test, streaming),
            "val": headline(val, streaming),
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
        "versions": library_versions(),
    }


# --------------------------------------------------------------------------- reading and writing


def render_card(card: dict) -> str:
    """The card's text as shipped: two-space-indented JSON, keys in insertion order, a final newline."""
    return json.dumps(card, indent=2) + "\n"


def write_card(card: dict, path: str | os.PathLike) -> Path:
    """Write :func:`render_card`'s text to ``path``; returns the path."""
    path = Path(path)
    path.write_text(render_card(card))
    return path


def read_card(path: str | os.PathLike) -> dict:
    """A card read back; raises :class:`~tinyloc_tf.errors.TinylocError` unless it is a JSON
    object of format :data:`CARD_FORMAT`."""
    path = Path(path)
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TinylocError(f"{path}: not a readable model card ({exc})") from exc
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise TinylocError(f"{path}: not a model card of format {CARD_FORMAT!r} (found {found!r})")
    return card
