"""``tinyloc pipeline``: the main job, end to end, on the embedded synthetic house.

    data      synthesise house A (seeded) in the raw in-home layout, prepare it (T = 20)
    sweep     train MDCSA and Mamba over a grid (Mamba on 60-sample windows cut from the
              training streams, --train-steps), pick teachers on validation, distil (--distill),
              convert each run to int8 (and dynamic-range) and each Mamba to its int16x8
              streaming step model, and score them in host TFLM (the step models over whole
              streams: fixed-lag Viterbi, lag 10, the state reset every 50 samples)
    report    results.csv, report.md and plots: the best model under 32 KB and 64 KB, window
              and streaming
    deploy    build the best model under the RAM budget, window or streaming, whichever scores
              higher on validation, into Cortex-M firmware and run it on QEMU (a streaming model
              over the longest test stream): with TFLM when TFLM_ROOT names a TFLM tree, else
              compiled ahead of time

Every stage resumes: finished data, runs and variants are reused, so a second call only
redoes what is missing. ``WORK/summary.json`` collects what each stage produced, and says
why a stage was skipped when it was.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tinyloc_tf.atomic import check_resumable_output
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.training.artifacts import sweep_run, variant_path
from tinyloc_tf.workflows.plan import DEFAULT_VARIANTS

#: The streaming variant the pipeline adds for its Mamba runs, and how the sweep scores it: the
#: lag and reset schedule chosen on the house's validation streams (docs/streaming.md).
#: What the pipeline writes in its --work folder: a folder holding one of them is resumed.
PIPELINE_ENTRIES = ("summary.json", "raw", "data", "sweep")
STREAM_VARIANT = "stream-int16x8"
STREAM_LAG = 10
STREAM_RESET_EVERY = 50


def _stage(summary: dict, name: str) -> None:
    """Print a stage banner and record its wall time in the summary."""
    print(f"\n== {name} ==", flush=True)
    summary.setdefault("seconds", {})[name] = time.perf_counter()


def _stage_done(summary: dict, name: str, work: Path) -> None:
    summary["seconds"][name] = round(time.perf_counter() - summary["seconds"][name], 1)
    (work / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")


def pick_for_device(report_rows, budget_kb: int):
    """``(row, streaming)``: the best window model and the best streaming step model under
    ``budget_kb`` (:func:`~tinyloc_tf.reports.report.best_under`), whichever has the higher
    validation macro-F1 (the window model on a tie); ``(None, False)`` when none fits."""
    from tinyloc_tf.reports.report import best_under

    window, stream = best_under(report_rows, budget_kb), best_under(report_rows, budget_kb, streaming=True)
    if stream is not None and (window is None or stream["val_macro_f1"] > window["val_macro_f1"]):
        return stream, True
    return window, False


def _deploy_best(report_rows, budget_kb: int, args, summary: dict) -> None:
    from tinyloc_tf.deployment.firmware import deploy, deploy_skip_reason

    best, streaming = pick_for_device(report_rows, budget_kb)
    if best is None:
        summary["deploy"] = {"skipped": f"no int8 or streaming model fits {budget_kb} KiB of flash and arena"}
        return
    backend = args.backend
    if backend == "auto":
        backend = "tflm" if deploy_skip_reason("tflm") is None else "aot"
    reason = deploy_skip_reason(backend)
    if reason:
        summary["deploy"] = {"skipped": reason, "run": best["run"]}
        print(f"deploy skipped: {reason}")
        return
    tflite = variant_path(sweep_run(args.work / "sweep", best["run"]), best["variant"])
    print(f"deploying {best['run']} ({best['variant']}) on {args.target}, {budget_kb} KiB RAM, backend {backend}")
    data_dir = str(args.work / "data")
    if streaming:  # the longest test stream, sample by sample, scored as the sweep scored it
        from tinyloc_tf.deployment.streaming_firmware import deploy_streaming

        result = deploy_streaming(str(tflite), target=args.target, ram_kb=budget_kb, backend=backend,
                                  data_dir=data_dir, lag=STREAM_LAG, reset_every=STREAM_RESET_EVERY)
    else:
        from tinyloc_tf.deployment.export_c import default_windows

        result = deploy(str(tflite), target=args.target, ram_kb=budget_kb, backend=backend,
                        data_dir=data_dir, windows=default_windows(data_dir, "test", None))
    summary["deploy"] = {**result, "run": best["run"], "variant": best["variant"], "backend": backend,
                         "val_macro_f1": float(best["val_macro_f1"]), "test_macro_f1": float(best["test_macro_f1"])}
    print(json.dumps(summary["deploy"], indent=2, default=str))


def run_pipeline(args) -> int:
    """The whole job for the ``tinyloc pipeline`` arguments ``args`` (see the module docstring)."""
    from tinyloc_tf.compression.variants import ConvertOptions
    from tinyloc_tf.data.inhome import WINDOW_STEPS, prepare_inhome
    from tinyloc_tf.data.synth import synthesize_house
    from tinyloc_tf.families import grid_names
    from tinyloc_tf.reports.report import collect_rows, write_report
    from tinyloc_tf.training.recipe import Recipe
    from tinyloc_tf.workflows.sweep import sweep

    # Before any stage runs: what the sweep would refuse only after the data stage.
    if args.distill:
        Recipe(train_steps=args.train_steps).check_distillation()
    if args.grid not in grid_names():
        raise TinylocError(f"--grid {args.grid!r}: expected one of {', '.join(grid_names())}")
    if 0 < args.train_steps < WINDOW_STEPS:
        raise TinylocError(f"--train-steps {args.train_steps} is shorter than the house's windows (T = {WINDOW_STEPS}); "
                           f"give 0 (the prepared windows) or at least {WINDOW_STEPS}")
    work: Path = args.work.absolute()
    args.work = work
    check_resumable_output(work, own=PIPELINE_ENTRIES, option="--work")
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
    variants = DEFAULT_VARIANTS + (() if args.no_streaming else (STREAM_VARIANT,))
    options = ConvertOptions(seed=args.seed, stream_lag=STREAM_LAG, stream_reset_every=STREAM_RESET_EVERY)
    result = sweep(data, work / "sweep", family="both", grid=args.grid, epochs=args.epochs,
                   patience=args.patience, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                   recipe=Recipe(train_steps=args.train_steps), jobs=args.jobs, distill=args.distill,
                   variants=variants, convert_options=options)
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
