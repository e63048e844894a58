"""``tinyloc pipeline``: the main job, end to end, on the embedded synthetic house.

    data      synthesise house A (seeded) in the raw in-home layout, prepare it (T = 20)
    sweep     train MDCSA and Mamba over a grid, pick teachers on validation, distil,
              convert each run to int8 (and dynamic-range) and score it in host TFLM
    report    results.csv, report.md and plots: the best model under 32 KB and 64 KB
    deploy    build the best model under the RAM budget into Cortex-M firmware and run it on
              QEMU: with TFLM when TFLM_ROOT names a TFLM tree, else compiled ahead of time

Every stage resumes: finished data, runs and variants are reused, so a second call only
redoes what is missing. ``WORK/summary.json`` collects what each stage produced, and says
why a stage was skipped when it was.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tinyloc_tf.arguments import non_negative_int, positive_float, positive_int
from tinyloc_tf.errors import TinylocError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pipeline", help="main job: synthetic house -> sweep -> int8 -> report -> deploy on an emulated Cortex-M",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--work", type=Path, default=Path("runs/pipeline"), help="working folder (default runs/pipeline)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the house, the split and training (default 0)")
    parser.add_argument("--grid", default="small", help="sweep grid: small (default) or paper (hours)")
    # 40 epochs of batch 32 at lr 5e-3: enough optimiser steps for the smallest models on the
    # house's ~700 training windows (25 epochs of batch 64 at 1e-3 left H4 models untrained;
    # docs/training.md, "Recipe").
    parser.add_argument("--epochs", type=positive_int, default=40, help="most epochs per run (default 40)")
    parser.add_argument("--patience", type=non_negative_int, default=10, help="early-stopping patience (default 10)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="batch size (default 32)")
    parser.add_argument("--lr", type=positive_float, default=5e-3, help="peak learning rate (default 5e-3)")
    # Distillation is off by default: on the house it has not been shown to help (the plain KD
    # made Mamba H4L1 worse, docs/training.md), and it doubles the sweep's time.
    parser.add_argument("--distill", action="store_true", help="distil each family's teacher into its smaller models")
    parser.add_argument("--representation", choices=("minmax", "dbm", "powed"), default="powed",
                        help="input representation of the prepared house (default powed; docs/data.md)")
    parser.add_argument("--jobs", type=positive_int, default=2,
                        help="runs in parallel worker processes (default 2: small models use one core well)")
    parser.add_argument("--target", choices=("m55", "m4"), default="m55", help="Cortex-M target (default m55)")
    parser.add_argument("--ram-kb", type=positive_int, default=32, help="RAM and flash budget of the deployed model in KiB (default 32)")
    parser.add_argument("--backend", choices=("auto", "tflm", "aot"), default="auto",
                        help="firmware model runner: auto = tflm when TFLM_ROOT is set, else aot")
    parser.set_defaults(handler=_pipeline)


def _stage(summary: dict, name: str) -> None:
    """Print a stage banner and record its wall time in the summary."""
    print(f"\n== {name} ==", flush=True)
    summary.setdefault("seconds", {})[name] = time.perf_counter()


def _stage_done(summary: dict, name: str, work: Path) -> None:
    summary["seconds"][name] = round(time.perf_counter() - summary["seconds"][name], 1)
    (work / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")


def _deploy_best(report_rows, budget_kb: int, args, summary: dict) -> None:
    from tinyloc_tf.deployment.firmware import deploy, deploy_skip_reason
    from tinyloc_tf.reports.report import best_under

    best = best_under(report_rows, budget_kb)
    if best is None:
        summary["deploy"] = {"skipped": f"no int8 model fits {budget_kb} KiB of flash and arena"}
        return
    backend = args.backend
    if backend == "auto":
        backend = "tflm" if deploy_skip_reason("tflm") is None else "aot"
    reason = deploy_skip_reason(backend)
    if reason:
        summary["deploy"] = {"skipped": reason, "run": best["run"]}
        print(f"deploy skipped: {reason}")
        return
    tflite = args.work / "sweep" / "runs" / best["run"] / "variants" / f"{best['variant']}.tflite"
    print(f"deploying {best['run']} ({best['variant']}) on {args.target}, {budget_kb} KiB RAM, backend {backend}")
    from tinyloc_tf.deployment.cli import default_windows

    data_dir = str(args.work / "data")
    result = deploy(str(tflite), target=args.target, ram_kb=budget_kb, backend=backend,
                    data_dir=data_dir, windows=default_windows(data_dir, "test", None))
    summary["deploy"] = {**result, "run": best["run"], "variant": best["variant"], "backend": backend}
    print(json.dumps(summary["deploy"], indent=2, default=str))


def _pipeline(args) -> int:
    from tinyloc_tf.data.inhome import prepare_inhome
    from tinyloc_tf.data.synth import synthesize_house
    from tinyloc_tf.reports.report import collect_rows, write_report
    from tinyloc_tf.training.sweep import sweep

    work: Path = args.work.absolute()
    args.work = work
    work.mkdir(parents=True, exist_ok=True)
    summary: dict = {"work": str(work), "seed": args.seed, "grid": args.grid}

    # TensorFlow's import notices and tf.data / LiteRT lines go to the sweep's log, as the
    # sweep's own workers' do (tinyloc_tf/tf_log.py); the terminal keeps stages and results.
    from tinyloc_tf.tf_log import LOG_NAME, output_to

    tf_log = work / "sweep" / LOG_NAME
    with output_to(tf_log):
        import tensorflow  # noqa: F401  (imported here so its notices land in the log)

    _stage(summary, "data")
    raw, data = work / "raw", work / "data"
    if not (raw / "house_A").is_dir():
        synthesize_house(raw, seed=args.seed, house="A")
    if not (data / "meta.json").is_file():
        prepare_inhome(raw, "A", data, seed=args.seed, representation=args.representation, progress=True)
    summary["data"] = str(data)
    _stage_done(summary, "data", work)

    _stage(summary, "sweep")
    result = sweep(data, work / "sweep", family="both", grid=args.grid, epochs=args.epochs,
                   patience=args.patience, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                   jobs=args.jobs, distill=args.distill, variants=("int8", "dynamic"))
    summary["teachers"] = result["teachers"]
    _stage_done(summary, "sweep", work)

    _stage(summary, "report")
    with output_to(tf_log):
        report = write_report(work / "sweep")
    summary["report"] = str(report)
    print(f"report: {report}")
    _stage_done(summary, "report", work)

    _stage(summary, "deploy")
    try:
        _deploy_best(collect_rows(work / "sweep"), args.ram_kb, args, summary)
    except TinylocError as exc:
        summary["deploy"] = {"failed": str(exc)}
        _stage_done(summary, "deploy", work)
        raise
    _stage_done(summary, "deploy", work)
    print(f"\nsummary: {work / 'summary.json'}")
    return 0
