"""``tinyloc report SWEEP``: the results table, the paper-style tables and the plots.

Reads what a sweep left (``runs/*/metrics.json``, ``runs/*/variants/*.json`` from the
compression phase, ``baselines/baselines.json``) and writes into the sweep folder (or
``--out``):

- ``results.csv``: one row per model and deployment variant, baselines included;
- ``report.md``: the best model per RAM/flash budget beside the classical baselines and the
  paper's numbers, every scored model, then the paper-style table (Baseline | Static int8 |
  Dynamic | Distillation | Distill + int8) per budget;
- ``f1_vs_size.png``, ``confusion_<budget>kb.png`` and, for windowed data, ``timeline.png``.

Selection rule: "best under a budget" is the candidate with the highest *validation*
macro-F1 among those whose flash and arena both fit; its test scores are only read off.
Candidates are the variants that run in TFLM (``deployable`` in their JSON: int8,
selective, qat); a float32 Keras model or a dynamic-range model never is one.

Sizes: ``flash_bytes`` of a converted variant is its ``.tflite`` file, which the firmware
embeds whole (its metadata carries the CRF weights Viterbi needs; see
``workflows.compress.compress_run``); of a float32 model 4 bytes per parameter (the paper's
"size"); of a classical baseline its 8-bit footprint. ``arena_bytes`` is the smallest tensor arena host TFLM runs the model in.
Budgets are KiB (1024 bytes), the unit of MCU RAM and flash sizes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from tinyloc_tf.compression.variants import calibrated_variant_names, get_variant, variant_names
from tinyloc_tf.deployment.streaming import decoding_text
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.families import family_names, get_family
from tinyloc_tf.training.artifacts import load_run, sweep_run, sweep_runs, variant_path, variant_records
from tinyloc_tf.reports.paper import PAPER_HEADLINE, paper_key

BUDGETS_KB = (64, 32)
# Variants that are int8 models (calibrated, compression/variants.py): the only candidates
# for "best under a budget".
INT8_VARIANTS = calibrated_variant_names()
# Streaming step models (stream-*): candidates of their own, marked as such in the report.
STREAM_VARIANTS = calibrated_variant_names(streaming=True)
# Paper table columns: (column title, run kind, variant). Selective and QAT columns are
# added when the sweep made those variants.
PAPER_COLUMNS = (
    ("Baseline", "train", "float32"),
    ("Static int8", "train", "int8"),
    ("Dynamic", "train", "dynamic"),
    ("Distillation", "distill", "float32"),
    ("Distill + int8", "distill", "int8"),
)
EXTRA_COLUMNS = (
    ("Selective", "train", "selective"),
    ("QAT", "train", "qat"),
    ("Distill + QAT", "distill", "qat"),
    ("Ensemble", "ensemble", "float32"),
    ("Ensemble int8", "ensemble", "int8"),
    ("Ensemble QAT", "ensemble", "qat"),
)
COLUMNS = (
    "run", "config", "family", "hidden", "layers", "kind", "params", "variant", "runtime", "deployable",
    "val_macro_f1", "val_accuracy", "test_macro_f1", "test_accuracy", "flash_bytes", "arena_bytes",
    "metadata_bytes", "agreement_with_keras", "note", "refit_test_macro_f1", "refit_test_accuracy",
)


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise TinylocError(f"{path}: not valid JSON ({exc})") from exc


def _need(record: dict, keys, path: Path) -> None:
    missing = [key for key in keys if key not in record]
    if missing:
        raise TinylocError(f"{path}: missing field(s) {', '.join(missing)}")


# --------------------------------------------------------------------------- the table


def collect_rows(sweep_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per (run, variant): the float32 Keras model itself and every converted file,
    plus one row per classical baseline. Columns: :data:`COLUMNS`."""
    sweep_dir = Path(sweep_dir)
    rows = []
    for run_dir in sorted(sweep_runs(sweep_dir).glob("*")):
        metrics_path = run_dir / "metrics.json"
        if not metrics_path.is_file():
            continue  # unfinished runs never get a folder; anything else here is not a run
        metrics = _read_json(metrics_path)
        _need(metrics, ("family", "hidden", "layers", "params", "val_macro_f1", "val_accuracy",
                        "test_macro_f1", "test_accuracy"), metrics_path)
        members = len((metrics.get("ensemble") or {}).get("members", ()))
        base = {
            "run": run_dir.name,
            "config": f"{metrics['family']}-H{metrics['hidden']}L{metrics['layers']}" + (f"x{members}" if members else ""),
            "family": metrics["family"], "hidden": metrics["hidden"], "layers": metrics["layers"],
            "kind": "distill" if "distill" in metrics else "ensemble" if members else "train",
            "params": metrics["params"],
        }
        rows.append({
            **base, "variant": "float32", "runtime": "keras", "deployable": False,
            "val_macro_f1": metrics["val_macro_f1"], "val_accuracy": metrics["val_accuracy"],
            "test_macro_f1": metrics["test_macro_f1"], "test_accuracy": metrics["test_accuracy"],
            # The paper's "size": float32 weights, as its state-dict file.
            "flash_bytes": 4 * metrics["params"], "arena_bytes": np.nan, "metadata_bytes": np.nan,
            "agreement_with_keras": 1.0, "note": "Keras float32 model (not converted)",
        })
        for record_path in variant_records(run_dir):
            variant = _read_json(record_path)
            _need(variant, ("runtime", "deployable", "flash_bytes", "val", "test"), record_path)
            for split in ("val", "test"):
                _need(variant[split], ("macro_f1", "accuracy"), record_path)
            arena = variant.get("arena_bytes")
            rows.append({
                **base, "variant": record_path.stem, "runtime": variant["runtime"],
                "deployable": bool(variant["deployable"]),
                "val_macro_f1": variant["val"]["macro_f1"], "val_accuracy": variant["val"]["accuracy"],
                "test_macro_f1": variant["test"]["macro_f1"], "test_accuracy": variant["test"]["accuracy"],
                "flash_bytes": variant["flash_bytes"], "arena_bytes": np.nan if arena is None else arena,
                "metadata_bytes": variant.get("metadata_bytes", np.nan),
                "agreement_with_keras": variant["test"].get("agreement_with_keras", np.nan),
                "note": variant.get("note") or "",
            })
    # SWEEP/baselines: on the sweep's own data; SWEEP/baselines-<name>: the same splits in
    # another input representation (`tinyloc baselines --data OTHER --out SWEEP/baselines-<name>`),
    # so no baseline is judged only in the representation the neural models prefer.
    for baselines_path in sorted(sweep_dir.glob("baselines*/baselines.json")):
        results = _read_json(baselines_path)
        if not isinstance(results, list):
            raise TinylocError(f"{baselines_path}: expected a list of baseline results")
        suffix = baselines_path.parent.name[len("baselines"):].lstrip("-")
        for result in results:
            _need(result, ("name", "val_macro_f1", "val_accuracy", "test_macro_f1", "test_accuracy",
                           "footprint_bytes"), baselines_path)
            name = result["name"] + (f" [{suffix}]" if suffix else "")
            rows.append({
                "run": name, "config": name, "family": "baseline", "kind": "baseline",
                "hidden": np.nan, "layers": np.nan, "params": np.nan, "variant": "sklearn",
                "runtime": "scikit-learn", "deployable": False,
                "val_macro_f1": result["val_macro_f1"], "val_accuracy": result["val_accuracy"],
                "test_macro_f1": result["test_macro_f1"], "test_accuracy": result["test_accuracy"],
                "flash_bytes": result["footprint_bytes"], "arena_bytes": np.nan, "metadata_bytes": np.nan,
                "agreement_with_keras": np.nan,
                "note": f"8-bit footprint; params {json.dumps(result.get('params'), sort_keys=True)}",
                # the chosen grid point refitted on train + val (training/baselines.py)
                "refit_test_macro_f1": (result.get("refit") or {}).get("test_macro_f1", np.nan),
                "refit_test_accuracy": (result.get("refit") or {}).get("test_accuracy", np.nan),
            })
    if not rows:
        raise TinylocError(f"{sweep_dir}: no finished runs (runs/*/metrics.json) to report")
    return pd.DataFrame(rows, columns=list(COLUMNS))


def fits(frame: pd.DataFrame, budget_kb: int) -> pd.Series:
    """Flash and arena both within the budget (KiB). A missing arena (not measured: float,
    dynamic range, baselines) never fits."""
    limit = budget_kb * 1024
    return (frame["flash_bytes"] <= limit) & (frame["arena_bytes"] <= limit)


def ranked_under(frame: pd.DataFrame, budget_kb: int, streaming: bool = False,
                 score: str = "val_macro_f1") -> pd.DataFrame:
    """The candidates for ``budget_kb``, best first: the int8 rows (int8, selective, QAT) that run
    in TFLM and fit, ranked on validation macro-F1 (ties: smaller flash). A "dynamic" file of a
    tiny model can come out all float and still run in TFLM; it is not an int8 model, so it is
    never a candidate. ``streaming``: the streaming step models (stream-*) instead of the window
    models. ``score``: the column ranked, e.g. :data:`SEED_MEAN` of :func:`with_seed_mean`; a
    row without a score is never a candidate."""
    int8_family = frame["variant"].isin(STREAM_VARIANTS if streaming else INT8_VARIANTS)
    candidates = frame[int8_family & frame["deployable"].astype(bool) & fits(frame, budget_kb)
                       & frame[score].notna()]
    return candidates.sort_values([score, "flash_bytes", "run", "variant"],
                                  ascending=[False, True, True, True], kind="stable")


def best_under(frame: pd.DataFrame, budget_kb: int, streaming: bool = False,
               score: str = "val_macro_f1") -> pd.Series | None:
    """The first of :func:`ranked_under`: the best candidate for ``budget_kb``, None when
    nothing fits."""
    ranked = ranked_under(frame, budget_kb, streaming=streaming, score=score)
    return None if ranked.empty else ranked.iloc[0]


def best_over(frames: dict, budget_kb: int, streaming: bool = False, score: str = "val_macro_f1"):
    """:func:`best_under` over several sweeps' rows (``{key: frame}``, e.g. one per training
    recipe on the same data): ``(key, row)`` of the best ``score`` (validation macro-F1), the
    first key on a tie; None when nothing fits. ``streaming``: among the streaming step models
    instead."""
    best = None
    for key, frame in frames.items():
        row = best_under(frame, budget_kb, streaming=streaming, score=score)
        if row is not None and (best is None or row[score] > best[1][score]):
            best = (key, row)
    return best


# The validation macro-F1 of a candidate averaged over the same sweep run with other seeds.
SEED_MEAN = "val_macro_f1_seed_mean"


def with_seed_mean(frame: pd.DataFrame, replicates: list[pd.DataFrame]) -> pd.DataFrame:
    """``frame`` (a sweep's rows, :func:`collect_rows`) with three columns more, from it and
    ``replicates``, the rows of the same sweep command run with other ``--seed`` values (a row is
    the same candidate when its run and variant names are): :data:`SEED_MEAN` (the mean of the
    validation macro-F1s), ``val_macro_f1_seed_sd`` (their sample standard deviation) and
    ``val_macro_f1_seeds`` (the tuple, ``frame``'s first), and ``test_macro_f1_seed_mean`` for
    the report's rank agreement. A row missing from a replicate gets
    NaN there and so is never a candidate of :func:`best_under` with ``score=SEED_MEAN``.

    Why: one seed's validation score of a configuration can vary by more than what separates
    the configurations (docs/training.md), so ranking them on one seed picks the luckiest seed."""
    key = ["run", "variant"]
    for rows in [frame, *replicates]:
        if rows.duplicated(key).any():
            raise TinylocError(f"rows repeat a (run, variant): {rows[rows.duplicated(key)][key].iloc[0].tolist()}")

    def over_seeds(column: str) -> pd.DataFrame:
        table = pd.concat([rows.set_index(key)[column].astype(float).rename(i)
                           for i, rows in enumerate([frame, *replicates])], axis=1)
        return table.reindex(pd.MultiIndex.from_frame(frame[key]))

    table = over_seeds("val_macro_f1")
    out = frame.copy()
    out[SEED_MEAN] = table.mean(axis=1, skipna=False).to_numpy()
    out["val_macro_f1_seed_sd"] = table.std(axis=1, ddof=1, skipna=False).to_numpy() if replicates else 0.0
    out["val_macro_f1_seeds"] = [tuple(values) for values in table.to_numpy()]
    if all("test_macro_f1" in rows for rows in [frame, *replicates]):
        # read off like the sweep's own test scores: for the report's rank agreement, never for selection
        out["test_macro_f1_seed_mean"] = over_seeds("test_macro_f1").mean(axis=1, skipna=False).to_numpy()
    return out


def over_seeds_frame(sweep_dir: Path, frame: pd.DataFrame, seed_dirs: list[Path]) -> tuple[pd.DataFrame, dict]:
    """``frame`` (the rows of ``sweep_dir``) with :func:`with_seed_mean`'s columns over it and
    ``seed_dirs``, the same sweep run with other seeds, and ``{sweep folder: seed}``,
    ``sweep_dir`` first. Raises unless each is the same sweep command (``sweep.json``) but for its
    seed, or when a seed repeats."""

    def settings_of(folder: Path) -> dict:
        path = Path(folder) / "sweep.json"
        if not path.is_file():
            raise TinylocError(f"--seeds-of {folder}: no sweep.json (is it a sweep folder?)")
        return _read_json(path)

    def command(settings: dict) -> dict:
        convert = {key: value for key, value in settings.get("convert_options", {}).items() if key != "seed"}
        return {**{key: value for key, value in settings.items() if key not in ("seed", "sweep_dir", "jobs")},
                "convert_options": convert}

    settings = settings_of(sweep_dir)
    ours = command(settings)
    seeds, frames = {sweep_dir: settings.get("seed")}, []
    for other in seed_dirs:
        other_settings = settings_of(other)
        theirs = command(other_settings)
        differ = sorted(key for key in set(ours) | set(theirs) if ours.get(key) != theirs.get(key))
        if differ:
            raise TinylocError(f"--seeds-of {other}: not the sweep of {sweep_dir} with another seed "
                               f"({differ[0]}: {theirs.get(differ[0])!r} against {ours.get(differ[0])!r})")
        if other_settings.get("seed") in seeds.values():
            raise TinylocError(f"--seeds-of {other}: seed {other_settings.get('seed')} is already given")
        seeds[other] = other_settings.get("seed")
        frames.append(collect_rows(other))
    return with_seed_mean(frame, frames), seeds


def seed_ranking_lines(frame: pd.DataFrame, budget_kb: int, streaming: bool = False, top: int = 5) -> list[str]:
    """The ``top`` candidates for ``budget_kb`` on :data:`SEED_MEAN`, a title line and one line
    each: mean ± sd and the per-seed validation macro-F1s (percent)."""
    lines = [f"{budget_kb} KiB, validation macro-F1 over seeds (mean ± sd: per seed):"]
    for _, row in ranked_under(frame, budget_kb, streaming=streaming, score=SEED_MEAN).head(top).iterrows():
        values = " ".join(f"{100 * value:.2f}" for value in row["val_macro_f1_seeds"])
        lines.append(f"  {row['run']} {row['variant']}: {100 * row[SEED_MEAN]:.2f} ± "
                     f"{100 * row['val_macro_f1_seed_sd']:.2f}: {values}")
    return lines


# --------------------------------------------------------------------------- markdown


def _pct(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{100 * value:.2f}"


def _kb(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{value / 1024:.1f}"


def paper_columns(frame: pd.DataFrame) -> tuple:
    present = {(kind, variant) for kind, variant in zip(frame["kind"], frame["variant"])}
    return PAPER_COLUMNS + tuple(c for c in EXTRA_COLUMNS if (c[1], c[2]) in present)


def paper_table(frame: pd.DataFrame, budget_kb: int) -> str:
    """Rows: configurations with at least one cell within the budget; each cell
    ``test F1 / acc / flash KiB / arena KiB``. A deployable cell fits when flash and arena
    do; a float or dynamic-range cell (no TFLM arena) when its size does - marked as such."""
    models = frame[frame["kind"] != "baseline"]
    columns = paper_columns(frame)
    lines = ["| model | params | " + " | ".join(title for title, _, _ in columns) + " |",
             "|" + "---|" * (len(columns) + 2)]
    limit = budget_kb * 1024
    for config, group in models.groupby("config", sort=False):
        cells, any_fit = [], False
        for _, kind, variant in columns:
            match = group[(group["kind"] == kind) & (group["variant"] == variant)]
            if match.empty:
                cells.append("n/a")
                continue
            row = match.iloc[0]
            if row["deployable"]:
                fit = bool(fits(match, budget_kb).iloc[0])
                note = ""
            else:
                fit = bool(row["flash_bytes"] <= limit)
                note = " (float)" if get_variant(variant).runs_in_tflm else " (host only)"
            any_fit |= fit
            cell = (f"{_pct(row['test_macro_f1'])} / {_pct(row['test_accuracy'])} / "
                    f"{_kb(row['flash_bytes'])} / {_kb(row['arena_bytes'])}{note}")
            cells.append(cell if fit else f"~~{cell}~~")
        if any_fit:
            lines.append(f"| {config} | {int(group['params'].iloc[0]):,} | " + " | ".join(cells) + " |")
    if len(lines) == 2:
        lines.append(f"| no model has a variant within {budget_kb} KiB |" + " |" * (len(columns) + 1))
    return "\n".join(lines)


def all_models_table(frame: pd.DataFrame) -> str:
    models = frame[frame["kind"] != "baseline"].sort_values(["family", "params", "kind", "variant"])
    lines = ["| run | variant | runtime | params | val F1 | test F1 | test acc | flash KiB | arena KiB | "
             "agreement with Keras (test) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for _, row in models.iterrows():
        lines.append(
            f"| {row['run']} | {row['variant']} | {row['runtime']} | {int(row['params']):,} | "
            f"{_pct(row['val_macro_f1'])} | {_pct(row['test_macro_f1'])} | {_pct(row['test_accuracy'])} | "
            f"{_kb(row['flash_bytes'])} | {_kb(row['arena_bytes'])} | {_pct(row['agreement_with_keras'])} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def rank_agreement(frame: pd.DataFrame, val: str = "val_macro_f1",
                   test: str = "test_macro_f1") -> tuple[float, int] | None:
    """Spearman rank correlation between validation and test macro-F1 (the columns ``val`` and
    ``test``, e.g. the means over seeds of :func:`with_seed_mean`) over every neural model and
    variant of the sweep (baselines excluded), and how many rows it covers."""
    from scipy.stats import spearmanr

    if val not in frame or test not in frame:
        return None
    rows = frame[frame["kind"] != "baseline"].dropna(subset=[val, test])
    if len(rows) < 3:
        return None
    rho = spearmanr(rows[val], rows[test]).statistic
    return float(rho), int(len(rows))


def rank_agreement_lines(frame: pd.DataFrame, meta: dict) -> list[str]:
    found = rank_agreement(frame)
    if found is None:
        return []
    rho, count = found
    scheme = (meta.get("split") or {}).get("scheme") or ("blocks" if meta.get("dataset") == "inhome" else "stratified")
    lines = ["", "## Does validation rank models as test does?", "",
             f"Spearman rank correlation between validation and test macro-F1 over the {count} neural "
             f"models and variants of this sweep: **{rho:.3f}** (validation split: `{scheme}`). Selection "
             "is only as good as this number: near 1, the best on validation is the best on test."]
    over_seeds = rank_agreement(frame, SEED_MEAN, "test_macro_f1_seed_mean")
    if over_seeds is not None:
        lines += ["", f"Over the seeds (`--seeds-of`), between the mean validation and the mean test macro-F1 "
                      f"of the {over_seeds[1]} models and variants every seed has: **{over_seeds[0]:.3f}** (each "
                      f"seed's own number is in its sweep's report)."]
    return lines


def collapse_lines(frame: pd.DataFrame, meta: dict) -> list[str]:
    """Every trained configuration against half of its family's best validation macro-F1."""
    runs = frame[(frame["variant"] == "float32") & (frame["kind"] != "baseline")]
    if runs.empty:
        return []
    classes = len(meta.get("classes", [])) or None
    lines = ["", "## Does any configuration collapse?", "",
             "A configuration collapses when its validation macro-F1 is below half of its family's best "
             "(float32 Keras models).", "",
             "| family | best val macro-F1 | below half | why |", "|---|---|---|---|"]
    for family, group in runs.groupby("family"):
        best = group["val_macro_f1"].max()
        low = group[group["val_macro_f1"] < best / 2]
        why = []
        for _, row in low.iterrows():
            reason = (f"H{int(row['hidden'])} is narrower than the {classes} classes"
                      if classes and row["hidden"] < classes else "not explained")
            why.append(f"{row['run']} ({_pct(row['val_macro_f1'])}): {reason}")
        lines.append(f"| {family} | {_pct(best)} | {len(low)} of {len(group)} | {'; '.join(why) or '-'} |")
    return lines


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_f1_vs_size(frame: pd.DataFrame, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    # colour = variant, marker = family, hollow = distilled student
    colours = {**{name: get_variant(name).colour for name in variant_names()}, "sklearn": "black"}
    markers = {**{name: get_family(name).marker for name in family_names()}, "baseline": "X"}
    for (family, kind, variant), group in frame.groupby(["family", "kind", "variant"]):
        colour = colours.get(variant, "tab:purple")
        label = ("baselines" if family == "baseline"
                 else f"{family} {variant}" + {"distill": " KD", "ensemble": " ensemble"}.get(kind, ""))
        filled = kind != "distill" or family == "baseline"
        ax.scatter(group["flash_bytes"] / 1024, 100 * group["test_macro_f1"], marker=markers.get(family, "^"),
                   label=label, alpha=0.8, edgecolors=colour, facecolors=colour if filled else "none")
    low = ax.get_ylim()[0]
    for budget in BUDGETS_KB:
        ax.axvline(budget, color="grey", linestyle="--", linewidth=1)
        ax.text(budget, low, f" {budget} KiB", rotation=90, va="bottom", color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("flash, KiB (converted: .tflite file; float32: 4 B/param; baselines: 8-bit footprint)",
                  fontsize=8)
    ax.set_ylabel("test macro-F1 (%)")
    ax.set_title("Macro-F1 against size (budget lines: flash; the arena must fit too)", fontsize=10)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, classes: list[str], title: str, path: Path) -> None:
    plt = _pyplot()
    size = max(4.0, 0.18 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(classes))
    fontsize = 8 if len(classes) <= 15 else 4
    ax.set_xticks(ticks, classes, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, classes, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_timeline(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], title: str, path: Path,
                  step_seconds: float = 0.2) -> None:
    plt = _pyplot()
    seconds = np.arange(len(y_true)) * step_seconds
    fig, ax = plt.subplots(figsize=(10, 3.5))
    ax.step(seconds, y_true, where="post", label="true room", linewidth=2)
    ax.step(seconds, y_pred, where="post", label="predicted", linewidth=1)
    ax.set_yticks(np.arange(len(classes)), classes, fontsize=7)
    ax.set_xlabel(f"time (s, {1 / step_seconds:g} Hz steps)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def stitch_windows(X: np.ndarray, y: np.ndarray, hop: int, windows: int) -> tuple[np.ndarray, np.ndarray]:
    """A continuous stretch from overlapping windows: the first ``windows`` windows and the
    first ``hop`` steps of each label row (consecutive windows of a session start ``hop``
    steps apart, so those steps tile the time axis)."""
    count = min(windows, len(X))
    return X[:count], y[:count, :hop].reshape(-1)


def _row_source(sweep_dir: Path, row: pd.Series) -> Path:
    run = sweep_run(sweep_dir, row["run"])
    return run / "metrics.json" if row["variant"] == "float32" else variant_path(run, row["variant"], ".json")


def _variant_confusion(sweep_dir: Path, row: pd.Series) -> np.ndarray | None:
    matrix = _read_json(_row_source(sweep_dir, row))["test"].get("confusion_matrix")
    return None if matrix is None else np.asarray(matrix)


def _timeline_paths(sweep_dir: Path, row: pd.Series, X: np.ndarray) -> np.ndarray:
    """Viterbi paths of the chosen model on ``X``: its .tflite in TFLM when it has one."""
    run = sweep_run(sweep_dir, row["run"])
    tflite = variant_path(run, row["variant"])
    if tflite.is_file():
        from tinyloc_tf.deployment.host import predict_paths

        return predict_paths(tflite, X, runtime=row["runtime"])[0]
    return load_run(run)[0].decode(X)


# --------------------------------------------------------------------------- the report


def _paper_cells(ref: dict | None) -> str:
    if not ref:
        return "- | - | not reported for this data"
    accuracy = "-" if ref["accuracy"] is None else f"{ref['accuracy']:.2f}"
    return f"{ref['macro_f1']:.2f} | {accuracy} | {ref['model']} ({ref['size_kb']} KB)"


#: What :func:`write_report` may write into its folder (``confusion_*``: one per budget).
REPORT_FILES = ("report.md", "results.csv", "f1_vs_size.png", "timeline.png", "confusion_*kb.png")


def existing_report_files(folder: str | os.PathLike) -> list[Path]:
    """The files of :data:`REPORT_FILES` already in ``folder``: a report would replace them."""
    folder = Path(folder)
    return sorted(path for pattern in REPORT_FILES for path in folder.glob(pattern) if path.is_file())


def write_report(sweep_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 timeline_windows: int = 60, seeds_of: list = ()) -> Path:
    """Write results.csv, report.md and the PNG plots into ``out`` (default: the sweep
    folder); return the path of report.md. Everything is written to a temporary folder
    first and moved into place at the end. ``seeds_of``: the same sweep run with other seeds;
    the best model per budget is then the best on the mean validation macro-F1 over them
    (:func:`over_seeds_frame`, as ``scripts/ship_models.py --seeds-of`` ships it)."""
    from tinyloc_tf.data import load_prepared

    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise TinylocError(f"{sweep_dir}: not a folder")
    out = Path(out) if out is not None else sweep_dir
    settings = _read_json(sweep_dir / "sweep.json") if (sweep_dir / "sweep.json").is_file() else {}
    frame = collect_rows(sweep_dir)
    seeds = None
    if seeds_of:
        frame, seeds = over_seeds_frame(sweep_dir, frame, [Path(folder) for folder in seeds_of])
    data = load_prepared(settings["data"]) if settings.get("data") else None
    meta = data.meta if data is not None else {}
    paper = PAPER_HEADLINE.get(paper_key(meta)) if meta else None

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report.partial-", dir=out))
    try:
        files = _write_into(staging, sweep_dir, frame, settings, data, meta, paper, timeline_windows, seeds)
        for name in files:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "report.md"


def _streaming_best_lines(frame, sweep_dir: Path) -> list[str]:
    """Best-per-budget rows for the streaming step models, when the sweep scored any."""
    if not frame["variant"].isin(STREAM_VARIANTS).any():
        return []
    lines = []
    for budget in BUDGETS_KB:
        row = best_under(frame, budget, streaming=True)
        if row is None:
            lines.append(f"| {budget} KiB, **streaming** | none fits | | | | | | | | | |")
            continue
        scoring = _read_json(_row_source(sweep_dir, row)).get("streaming", {})
        lines.append(f"| {budget} KiB, **streaming** | {row['run']} | {row['variant']} ({decoding_text(scoring)}) | "
                     f"{_pct(row['val_macro_f1'])} | {_pct(row['test_macro_f1'])} | {_pct(row['test_accuracy'])} | "
                     f"{_kb(row['flash_bytes'])} | {_kb(row['arena_bytes'])} | | | |")
    return lines + ["", "Streaming rows: the Mamba run's step model, one sample per call with its state carried, "
                        "scored over every sample of the split's whole streams with fixed-lag Viterbi "
                        "(docs/streaming.md); selected among the streaming variants alone."]


def _recipe_text(recipe: dict | None) -> str:
    """The sweep's training recipe as the flags that differ from today's defaults
    (:meth:`~tinyloc_tf.training.recipe.Recipe.changed_flags`)."""
    from tinyloc_tf.families import family_names, get_family
    from tinyloc_tf.training.recipe import Recipe

    if recipe is None:
        return "the recipe of runs made before recipes existed"
    recurrent = ", ".join(name for name in family_names() if get_family(name).recurrent)
    # --train-steps reaches the recurrent families' runs only (Recipe.for_family)
    changed = [f"`{flag}`" + (f" ({recurrent} runs only)" if flag.startswith("--train-steps") else "")
               for flag in Recipe.from_dict(recipe).changed_flags()]
    return "recipe: the defaults" + (f" but {', '.join(changed)}" if changed else "")


def _write_into(folder: Path, sweep_dir: Path, frame, settings, data, meta, paper, timeline_windows,
                seeds: dict | None = None) -> list[str]:
    files = ["results.csv"]
    frame.to_csv(folder / "results.csv", index=False)
    title = f"{meta.get('dataset', 'data')}" + (f" ({meta['labels']} labels)" if meta.get("labels") else "")
    lines = [f"# Sweep results: {title}", ""]
    if settings:
        lines += [
            f"Data: prepared `{Path(settings['data']).name}` (fingerprint {settings.get('data_sha256', '?')[:12]}); "
            f"grid `{settings.get('grid')}`, families `{settings.get('family')}`, at most {settings.get('epochs')} "
            f"epochs (patience {settings.get('patience')}, batch {settings.get('batch_size')}, lr {settings.get('lr')}), "
            f"seed {settings.get('seed')}, int8-friendly models: {settings.get('int8_friendly')}, "
            + ("no distillation" if settings.get("distill") is False
               else f"distillation `{settings.get('distill_method')}` (alpha {settings.get('alpha')})")
            + f"; {_recipe_text(settings.get('recipe'))}.", ""]
    lines += [
        "Selection: the best model under a budget has the highest **validation** macro-F1 among the "
        "variants that run in TFLM (int8, selective, QAT) whose flash and arena both fit; its test "
        "scores are read off afterwards. Flash = the .tflite file (with its metadata: CRF weights, "
        "scaling, names); arena = smallest tensor arena host TFLM runs it in. Budgets in KiB. The paper's sizes are "
        "PyTorch state-dict files / 1000 (float weights), not measured flash or RAM.", "",
    ]
    score = "val_macro_f1"
    if seeds:
        score = SEED_MEAN
        lines += [f"Over seeds: each candidate's validation macro-F1 is its mean over this sweep (seed "
                  f"{seeds[sweep_dir]}) and the same sweep with seeds "
                  f"{', '.join(str(seed) for folder, seed in seeds.items() if folder != sweep_dir)} "
                  f"(`--seeds-of`), the best model per budget the best on that mean; the other columns "
                  f"are this sweep's.", ""]
    lines += [
        "## Best model per budget", "",
        f"| budget | model | variant | {'val macro-F1, mean over seeds' if seeds else 'val macro-F1'} | "
        "test macro-F1 | test acc | flash KiB | arena KiB | paper macro-F1 | paper acc | paper model (size) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    best = {}
    for budget in BUDGETS_KB:
        row = best_under(frame, budget, score=score)
        best[budget] = row
        ref = _paper_cells((paper or {}).get(budget))
        if row is None:
            lines.append(f"| {budget} KiB | none fits | | | | | | | {ref} |")
            continue
        lines.append(f"| {budget} KiB | {row['run']} | {row['variant']} | {_pct(row[score])} | "
                     f"{_pct(row['test_macro_f1'])} | {_pct(row['test_accuracy'])} | {_kb(row['flash_bytes'])} | "
                     f"{_kb(row['arena_bytes'])} | {ref} |")
    lines += _streaming_best_lines(frame, sweep_dir)
    if seeds:
        lines += ["", "The leaders per budget:", "", "```"]
        for budget in BUDGETS_KB:
            lines += seed_ranking_lines(frame, budget)
        lines += ["```"]
    baselines = frame[frame["kind"] == "baseline"]
    if not baselines.empty:
        ref = best.get(64)
        lines += ["", "## Classical baselines (same splits and metrics)", "",
                  "Footprint: bytes a device would store with 8-bit values (see `training/baselines.py`); "
                  "selected on validation like the neural models.", "",
                  "| model | val macro-F1 | test macro-F1 | test acc | refit on train + val: test macro-F1 / acc "
                  "| footprint KiB | vs best under 64 KiB |",
                  "|---|---|---|---|---|---|---|"]
        for _, row in baselines.iterrows():
            ratio = "-" if ref is None else (f"{row['flash_bytes'] / ref['flash_bytes']:.1f}x the flash, "
                                             f"{100 * (row['test_macro_f1'] - ref['test_macro_f1']):+.2f} F1 points")
            refit = ("-" if pd.isna(row.get("refit_test_macro_f1")) else
                     f"{_pct(row['refit_test_macro_f1'])} / {_pct(row['refit_test_accuracy'])}")
            lines.append(f"| {row['run']} | {_pct(row['val_macro_f1'])} | {_pct(row['test_macro_f1'])} | "
                         f"{_pct(row['test_accuracy'])} | {refit} | {_kb(row['flash_bytes'])} | {ratio} |")
    lines += rank_agreement_lines(frame, meta)
    lines += collapse_lines(frame, meta)
    lines += ["", "## Every model and variant", "", all_models_table(frame)]
    for budget in BUDGETS_KB:
        lines += ["", f"## Paper-style table, under {budget} KiB", "",
                  "Cells: test macro-F1 / accuracy (%) / flash KiB / arena KiB. Struck-through cells do not "
                  "fit the budget. Float32 and dynamic-range models do not run in TFLM: they are sized by "
                  "their weights only (float32: 4 bytes per parameter).", "", paper_table(frame, budget)]

    plot_f1_vs_size(frame, folder / "f1_vs_size.png")
    files.append("f1_vs_size.png")
    lines += ["", "## Plots", "", "![macro-F1 against size](f1_vs_size.png)", ""]
    classes = list(meta.get("classes", []))
    for budget, row in best.items():
        if row is None or not classes:
            continue
        matrix = _variant_confusion(sweep_dir, row)
        if matrix is not None:
            name = f"confusion_{budget}kb.png"
            plot_confusion(matrix, classes, f"{row['run']} {row['variant']} (best under {budget} KiB), test",
                           folder / name)
            files.append(name)
            lines += [f"![confusion matrix, best under {budget} KiB]({name})", ""]
    timeline_row = best.get(64) if best.get(64) is not None else best.get(32)
    if data is not None and data.steps > 1 and timeline_row is not None:
        hop = int(meta.get("preprocessing", {}).get("hop_steps", data.steps // 2))
        step_ms = float(meta.get("preprocessing", {}).get("step_ms", 200))
        X, y_true = stitch_windows(data.test.X, data.test.y, hop, timeline_windows)
        y_pred = _timeline_paths(sweep_dir, timeline_row, X)[:, :hop].reshape(-1)
        plot_timeline(y_true, y_pred, classes,
                      f"{timeline_row['run']} {timeline_row['variant']} ({timeline_row['runtime']}) on the first "
                      f"{len(y_true) * step_ms / 1000:.0f} s of the test split", folder / "timeline.png",
                      step_seconds=step_ms / 1000)
        files.append("timeline.png")
        lines += ["![predicted vs true room on a free-living stretch](timeline.png)", ""]
    elif data is not None and data.steps == 1:
        lines += ["No timeline: this dataset has one scan per sample and no time axis.", ""]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    files.append("report.md")
    return files
