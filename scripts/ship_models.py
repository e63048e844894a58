#!/usr/bin/env python
"""Ship the best TFLM model of a sweep per RAM/flash budget, each with a model card.

    .venv/bin/python scripts/ship_models.py SWEEP --name ujiindoorloc --out models/
    .venv/bin/python scripts/ship_models.py runs/pipeline/sweep --name synth-house-a --out models/ \\
        --made-by "tinyloc pipeline --work runs/pipeline --seed 0 --grid small --epochs 25 --patience 5 --jobs 1"

For each budget (64 and 32 KiB) the model is chosen as ``tinyloc report`` chooses it, by
:func:`tinyloc_tf.reports.report.best_under` over the int8-family variants (int8, selective,
QAT): of those TFLM runs whose flash *and* arena fit, the best validation macro-F1. Given
several sweeps of the same prepared data (``SWEEP SWEEP2 ...``, e.g. two training recipes),
the pick is the best on validation over all of them (the first listed on a tie). The chosen
``.tflite`` is copied to ``OUT/NAME/<budget>kb.tflite`` and re-evaluated on val and test with
:func:`tinyloc_tf.deployment.host.evaluate_tflite`, the function behind ``tinyloc evaluate``,
so the card ``OUT/NAME/<budget>kb.json`` holds exactly what ``tinyloc evaluate`` prints
(``evaluate.test`` / ``evaluate.val``), plus the selection, the model's configuration, the
data's sha256s, the recipe that rebuilds the prepared data, and the commands that made it.
The card's format, its fields and how it is built, written and read are
:mod:`tinyloc_tf.reports.card`; this script selects, orchestrates and prints.
``tests/test_shipped_models.py`` rebuilds the data from that recipe and checks every number.

``--seeds-of SWEEP_S3 SWEEP_S6 ...`` names the same sweep run with other ``--seed`` values:
each candidate is then ranked on its mean validation macro-F1 over SWEEP and them (same run
and variant names; :func:`tinyloc_tf.reports.report.with_seed_mean`), not on one seed's, and
the script prints the best candidates per budget with their per-seed scores. The file shipped
is SWEEP's; the card's ``selection.over_seeds`` lists the sweeps, seeds and scores. One seed's
validation score of a configuration can vary by more than what separates the configurations,
and ranking on one seed then picks the luckiest seed rather than the best configuration. It
takes one SWEEP and no ``--rivals`` (their single seeds against a mean would favour their luck).

``--rivals RESULTS.csv ...`` lets sweeps that are not on this machine take part in the
selection through their committed ``results.csv`` (``docs/results/*/``, same prepared data):
their candidates are ranked with the others, and if one of them is the best for a budget the
script stops and names it (its ``.tflite`` is in that sweep's folder, so give the folder). The
card lists the rivals. Budgets not in ``--budgets`` keep the files already shipped in
``OUT/NAME``.

With ``--streaming`` the candidates are the sweep's streaming step models (``stream-int8``,
``stream-int16x8``, Mamba only), selected the same way on their validation scores over whole
streams, and the card holds what ``tinyloc evaluate --streaming`` prints with the sweep's lag
and resets (``model.streaming``). Ship them to a folder of their own:

    .venv/bin/python scripts/ship_models.py SWEEP --name synth-house-a-streaming --streaming --budgets 32 --refit

The folder ``OUT/NAME`` is written under a temporary name and swapped in at the end, so a
failed run leaves the previous models untouched and never a half-written set; SIGTERM unwinds
like Ctrl-C, and the leftover of a run killed outright is removed by the next one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

from tinyloc_tf.atomic import staged_folder
from tinyloc_tf.deployment.streaming import decoding_text
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.training.artifacts import sweep_run, variant_path
from tinyloc_tf.reports.card import (
    card_commands,
    data_recipe,
    display_path,
    evaluate_commands,
    make_card,
    read_card,
    refit_commands,
    relative_command,
    shell_command,
    shipped_names,
    write_card,
)

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", type=Path, nargs="+", metavar="SWEEP",
                        help="sweep folder(s) made by `tinyloc sweep` (runs/*/variants/*.tflite) on the same data")
    parser.add_argument("--name", required=True, help="dataset name, the folder under --out (e.g. ujiindoorloc)")
    parser.add_argument("--out", type=Path, default=Path("models"), help="models folder (default models)")
    parser.add_argument("--budgets", default="64,32", help="budgets in KiB, comma-separated (default 64,32)")
    parser.add_argument("--made-by", action="append", default=[], metavar="COMMAND",
                        help="command that produced the sweep, recorded in the card (repeatable; one sweep "
                             "only; default: the `tinyloc sweep` command rebuilt from SWEEP/sweep.json)")
    parser.add_argument("--streaming", action="store_true",
                        help="select among the streaming step models (stream-*) instead of the window models")
    parser.add_argument("--refit", action="store_true",
                        help="retrain each selected run on train + val for its best epoch count before converting "
                             "(`tinyloc refit`); selection stays on validation")
    parser.add_argument("--rivals", type=Path, nargs="+", default=[], metavar="RESULTS_CSV",
                        help="results.csv of other sweeps of the same data (e.g. docs/results/*/results.csv) whose "
                             "candidates take part in the selection; stops if one of them wins")
    parser.add_argument("--seeds-of", type=Path, nargs="+", default=[], metavar="SWEEP",
                        help="the same sweep command run with other --seed values: rank each candidate on its mean "
                             "validation macro-F1 over SWEEP and these (one SWEEP only)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def refit_variant(sweep_dir: Path, row, settings: dict, dataset) -> Path:
    """Retrain the selected run on train + val (``tinyloc refit``) and convert it into the
    selected variant, scored like the sweep's variants; returns the refit run folder."""
    from tinyloc_tf.workflows.compress import compress_run, sweep_convert_options
    from tinyloc_tf.training.trainer import refit_run

    refit_dir = sweep_dir / "refits" / row["run"]
    if not (refit_dir / "metrics.json").is_file():
        refit_run(sweep_run(sweep_dir, row["run"]), refit_dir, data_dir=settings["data"], verbose=0)
    compress_run(refit_dir, dataset, [row["variant"]], sweep_convert_options(settings))
    return refit_dir


def load_sweep(sweep_dir: Path) -> tuple[dict, object]:
    """A sweep's settings (``sweep.json``) and its rows, a DataFrame (:func:`~tinyloc_tf.reports.report.collect_rows`)."""
    from tinyloc_tf.reports.report import collect_rows

    settings_path = sweep_dir / "sweep.json"
    if not settings_path.is_file():
        raise TinylocError(f"{settings_path}: not found (is {sweep_dir} a sweep folder?)")
    return json.loads(settings_path.read_text()), collect_rows(sweep_dir)


def load_rivals(paths: list[Path]) -> dict:
    """``{path: rows}`` of committed ``results.csv`` files (:func:`ship`'s ``rivals``)."""
    import pandas as pd

    rivals = {}
    for path in paths:
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise TinylocError(f"--rivals {path}: cannot read it as a sweep's results.csv ({exc})") from exc
        missing = {"run", "variant", "deployable", "val_macro_f1", "flash_bytes", "arena_bytes"} - set(frame.columns)
        if missing:
            raise TinylocError(f"--rivals {path}: not a sweep's results.csv (no column {sorted(missing)[0]!r})")
        rivals[path] = frame
    return rivals


def check_rivals(best, rivals: dict, budget: int, streaming: bool = False) -> None:
    """Stop when a rival sweep's candidate (``{path: rows}``) beats ``best`` (``best_over``'s
    ``(sweep, row)``) on validation for ``budget`` KiB: its file is not here to ship."""
    from tinyloc_tf.reports.report import best_over

    rival = best_over(rivals, budget, streaming=streaming)
    if best is not None and rival is not None and rival[1]["val_macro_f1"] > best[1]["val_macro_f1"]:
        raise TinylocError(f"{budget} KiB: the best on validation is {rival[1]['run']} {rival[1]['variant']} "
                           f"({100 * rival[1]['val_macro_f1']:.2f}) of --rivals {rival[0]}, above "
                           f"{best[1]['run']} {best[1]['variant']} ({100 * best[1]['val_macro_f1']:.2f}); "
                           "give its sweep folder as a SWEEP")


def ship(sweep_dirs: list[Path], name: str, out: Path, budgets: list[int], made_by: list[str],
         ship_command: str, progress: bool = True, refit: bool = False, streaming: bool = False,
         rivals: list[Path] = (), seeds_of: list[Path] = ()) -> list[Path]:
    """Select, copy, re-evaluate and card the best model per budget over ``sweep_dirs``; return
    the written paths. ``streaming``: the best streaming step model instead of window model.
    ``rivals``: results.csv files of sweeps not given whose candidates compete (one that wins
    stops the script). ``seeds_of``: the sweep (one only) run with other seeds; candidates are
    ranked on their mean validation macro-F1 over them
    (:func:`~tinyloc_tf.reports.report.over_seeds_frame`). Files of budgets not in ``budgets`` already in ``out/name`` are kept."""
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.reports.report import (INT8_VARIANTS, SEED_MEAN, STREAM_VARIANTS, best_over, fits,
                                           over_seeds_frame, seed_ranking_lines)

    if not NAME_PATTERN.match(name):
        raise TinylocError(f"--name {name!r}: use lower-case letters, digits and dashes (e.g. synth-house-a)")
    if made_by and len(sweep_dirs) > 1:
        raise TinylocError("--made-by names the commands of one sweep; give one SWEEP with it")
    sweeps = {sweep_dir: load_sweep(sweep_dir) for sweep_dir in sweep_dirs}
    first = sweep_dirs[0]
    dataset = load_prepared(sweeps[first][0]["data"])
    for sweep_dir, (settings, _) in sweeps.items():
        if settings.get("data_sha256") not in (None, dataset.fingerprint()):
            raise TinylocError(f"{sweep_dir} was not run on the data of {first} ({sweeps[first][0]['data']}; "
                               f"fingerprints differ)")
    recipe, data_commands = data_recipe(dataset.meta, Path(sweeps[first][0]["data"]))
    score, over_seeds = "val_macro_f1", None
    if seeds_of:
        if len(sweep_dirs) > 1 or rivals:
            # a mean over seeds ranked against other sweeps' single seeds would favour their luck
            raise TinylocError("--seeds-of gives other seeds of one sweep; give one SWEEP and no --rivals with it")
        frame, over_seeds = over_seeds_frame(first, sweeps[first][1], list(seeds_of))
        sweeps[first] = (sweeps[first][0], frame)
        score = SEED_MEAN

    # best_over (best_under per sweep) only considers the int8-family variants (int8, selective,
    # qat) that run in TFLM, or with streaming the step models (stream-*).
    eligible = STREAM_VARIANTS if streaming else INT8_VARIANTS
    rival_rows = load_rivals(list(rivals))
    picks = []
    for budget in budgets:
        best = best_over({sweep_dir: frame for sweep_dir, (_, frame) in sweeps.items()}, budget,
                         streaming=streaming, score=score)
        if over_seeds:
            print("\n".join(seed_ranking_lines(sweeps[first][1], budget, streaming)))
        check_rivals(best, rival_rows, budget, streaming)
        candidates = 0
        for frame in [frame for _, frame in sweeps.values()] + list(rival_rows.values()):
            family = frame[frame["variant"].isin(eligible)]
            candidates += int((family["deployable"].astype(bool) & fits(family, budget)).sum())
        if best is None:
            if not any(frame["variant"].isin(eligible).any() for _, frame in sweeps.values()):
                flag = "--quant ...,stream-int16x8" if streaming else "--quant int8"
                raise TinylocError(f"{', '.join(map(str, sweep_dirs))}: no {'/'.join(eligible)} variant was made "
                                   f"(sweep with {flag})")
            raise TinylocError(f"{', '.join(map(str, sweep_dirs))}: no {'/'.join(eligible)} variant fits "
                               f"{budget} KiB of flash and arena")
        picks.append((budget, *best, candidates))

    # Staged beside OUT/NAME and swapped in last (tinyloc_tf.atomic): a failed or interrupted run
    # leaves the shipped models as they were; a leftover of a killed run is removed by the next.
    kept = [path for budget in shipped_budgets(out / name) if budget not in budgets
            for path in (out / name / file for file in shipped_names(budget)) if path.is_file()]
    with staged_folder(out / name, overwrite=True, inputs=tuple(sweep_dirs)) as staging:
        for path in kept:
            shutil.copy2(path, staging / path.name)
        iterator = picks
        if progress:
            from tqdm import tqdm

            iterator = tqdm(picks, desc=f"ship {name}", unit="model")
        for budget, sweep_dir, row, candidates in iterator:
            settings = sweeps[sweep_dir][0]
            commands = card_commands(data_commands, settings, sweep_dir, ship_command, made_by)
            run_dir = refit_variant(sweep_dir, row, settings, dataset) if refit else sweep_run(sweep_dir, row["run"])
            source = variant_path(run_dir, row["variant"])
            buf = source.read_bytes()
            record = json.loads(source.with_suffix(".json").read_text())
            if max(record["flash_bytes"], record["arena_bytes"] or 0) > budget * 1024:
                raise TinylocError(f"{source}: flash {record['flash_bytes']} B / arena {record['arena_bytes']} B "
                                   f"no longer fit {budget} KiB")
            tflite_name, card_name = shipped_names(budget)
            shipped = display_path(out / name / tflite_name)
            refit_record = {"refit": refit_commands(sweep_run(sweep_dir, row["run"]), run_dir, row["variant"],
                                                    settings["data"], source)} if refit else {}
            card = make_card(name=name, budget_kb=budget, row=row, sweep_dir=sweep_dir, dataset=dataset,
                             rivals=[str(display_path(path)) for path in rivals], over_seeds=over_seeds,
                             shipped=shipped, buf=buf, recipe=recipe, candidates=candidates, run_dir=run_dir,
                             variant=record,
                             commands={**commands, **refit_record,
                                       "evaluate": evaluate_commands(shipped, settings["data"],
                                                                     record.get("streaming"))})
            (staging / tflite_name).write_bytes(buf)
            write_card(card, staging / card_name)
    return [out / name / file for budget, *_ in picks for file in shipped_names(budget)]


def shipped_budgets(folder: Path) -> list[int]:
    """The budgets (KiB) with a card in a shipped models folder."""
    return sorted(int(m.group(1)) for path in folder.glob("*kb.json") if (m := re.match(r"^(\d+)kb$", path.stem)))


def summary_line(card: dict) -> str:
    test, model = card["metrics"]["test"], card["model"]
    streaming = model.get("streaming")
    how = "" if streaming is None else f" ({decoding_text(streaming)})"
    return (f"{card['dataset']} {card['budget_kb']} KiB: {model['run']} {model['variant']}{how} "
            f"(sweep {card['selection']['sweep']}) - "
            f"test macro-F1 {100 * test['macro_f1']:.2f}, acc {100 * test['accuracy']:.2f}, "
            f"flash {card['flash_bytes']} B, arena {card['arena_bytes']} B")


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds, so the staging folder is removed as on Ctrl-C


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    words = sys.argv[1:] if argv is None else argv
    # a word with spaces is a command given as text (--made-by): its paths are made relative too
    invoked = shell_command(".venv/bin/python", "scripts/ship_models.py",
                   *(relative_command(word) if " " in word else word for word in words))
    try:
        written = ship(args.sweeps, args.name, args.out, budgets, args.made_by, invoked,
                       progress=not args.quiet and sys.stderr.isatty(), refit=args.refit, streaming=args.streaming,
                       rivals=args.rivals, seeds_of=args.seeds_of)
    except TinylocError as exc:
        print(f"ship_models: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        if path.suffix == ".json":
            print(f"{path}: {summary_line(read_card(path))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
