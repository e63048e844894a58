"""``tinyloc sweep``: the paper's grid per dataset, teacher selection, distillation, compression.

A sweep folder holds one run folder per configuration::

    SWEEP/sweep.json                        the sweep's settings (data, grid, training args, variants)
    SWEEP/runs/mamba-H8L1/                  a baseline run (``tinyloc train`` layout)
    SWEEP/runs/mamba-H8L1/variants/int8.tflite   a converted variant of that run ...
    SWEEP/runs/mamba-H8L1/variants/int8.json     ... and its scores on val and test
    SWEEP/runs/mamba-H4L1-kd/               a distilled student (``tinyloc distill`` layout)
    SWEEP/baselines/                        k-NN, random forest, logistic regression
    SWEEP/teachers.json                     the teacher picked per family (validation macro-F1)

Phases: (1) train every configuration of the grid that fits ``--max-params``; (2) pick
each family's teacher by validation macro-F1 - never test; (3) distil the teacher into
every smaller configuration of its family; (4) convert every finished run into the
requested variants (``int8``, ``dynamic``, ``selective``, ``qat``) and score each in host
TFLM (LiteRT where TFLM cannot run it) with its smallest working arena; (5) the classical
baselines. Whatever is already on disk is skipped, so an interrupted sweep resumes where it
stopped: run folders appear only when finished (``trainer.write_run``) and a variant's
JSON is written after its ``.tflite``, both through temporary names.

Runs execute in worker processes (``--jobs``) or, with ``--ray ADDRESS``, as Ray tasks,
one run (or one run's compression) per task; both paths call the same task functions
(:func:`execute`, :func:`execute_compression`) and gather identical results.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tinyloc_tf.atomic import check_resumable_output, write_atomic
from tinyloc_tf.compression.variants import ConvertOptions, get_variant
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.training.artifacts import baselines_dir, json_bytes
from tinyloc_tf.training.recipe import Recipe
from tinyloc_tf.workflows.compress import execute_compression
from tinyloc_tf.workflows.execute import check_reachable, ray_session, run_specs, run_tasks
from tinyloc_tf.workflows.plan import (
    DEFAULT_VARIANTS,
    check_families,
    parse_variants,
    pick_teacher,
    plan_baseline_runs,
    plan_ensembles,
    plan_students,
)

# Settings that change what a run computes: resuming with other values would mix runs.
RESUME_KEYS = ("data_sha256", "epochs", "batch_size", "lr", "patience", "seed", "int8_friendly",
               "alpha", "distill_method", "recipe", "convert_options")


def _settings(data, data_dir, out: Path, **values) -> dict:
    return {"data": str(Path(data_dir).absolute()), "sweep_dir": str(out), "data_sha256": data.fingerprint(), **values}


def _check_resume(path: Path, settings: dict) -> None:
    if not path.is_file():
        return
    previous = json.loads(path.read_text())
    if "convert_options" in previous:  # options added since that sweep began take their defaults
        previous["convert_options"] = ConvertOptions.from_dict(previous["convert_options"]).to_dict()
    if previous.get("recipe") is not None:  # recipe fields added since then are off for it
        previous["recipe"] = Recipe.from_dict(previous["recipe"]).to_dict()
    changed = [key for key in RESUME_KEYS if key in previous and previous[key] != settings[key]]
    if changed:
        detail = ", ".join(f"{key}: {previous[key]!r} -> {settings[key]!r}" for key in changed)
        raise TinylocError(
            f"{path}: this sweep was started with other settings ({detail}); "
            "resume with the same settings or choose another --out"
        )


def sweep(
    data_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    family: str = "both",
    grid: str = "small",
    max_params: int | None = None,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    patience: int = 5,
    seed: int = 0,
    int8_friendly: bool = True,
    recipe: Recipe | None = None,
    alpha: float = 0.1,
    distill_method: str = "viterbi",
    distill: bool = True,
    baselines: bool = True,
    variants=DEFAULT_VARIANTS,
    convert_options: ConvertOptions | None = None,
    jobs: int = 1,
    ray_address: str | None = None,
    ensemble: int = 1,
) -> dict:
    """Run (or resume) a sweep.

    Returns ``{"runs": {name: metrics}, "teachers": {family: run name}, "variants":
    {run name: {variant: record}}}``. ``int8_friendly`` builds the models in the form that
    converts to full int8 for TFLM (default; see the models' docs). ``recipe``: every run's
    training recipe (None: the default :class:`~tinyloc_tf.training.recipe.Recipe`).
    ``convert_options``: every conversion option of the compression phase (None: the
    defaults, with the sweep's ``seed``). ``ensemble`` N > 1: also train every configuration
    with seeds ``seed + 1 .. seed + N - 1`` (``SWEEP/members``) and assemble the ensembles of
    its first 2 .. N seeds (``runs/<config>-x<n>``), each a candidate like any run; ensembles
    with more than ``max_params`` parameters in all are skipped.
    """
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.training.distill import METHODS

    families = check_families(family)
    if distill_method not in METHODS:
        raise TinylocError(f"unknown --distill-method {distill_method!r}; expected one of {', '.join(METHODS)}")
    variants = tuple(variants) if not isinstance(variants, str) else parse_variants(variants)
    parse_variants(",".join(variants))  # validates
    if jobs < 1:
        raise TinylocError(f"--jobs must be at least 1, got {jobs}")
    if ensemble < 1:
        raise TinylocError(f"--ensemble must be at least 1 (1: no ensembles), got {ensemble}")
    if recipe is not None and recipe.train_steps:
        # --train-steps applies to the recurrent families' runs (Recipe.for_family); a sweep
        # with none of them would ignore it.
        recipe.check_family(*families)
        if distill:
            recipe.check_distillation()
    data = load_prepared(data_dir)  # fail early, with the loader's message, on a bad folder
    if recipe is not None and recipe.train_steps:
        from tinyloc_tf.data.streams import stream_windows

        stream_windows(data.train, recipe.train_steps)  # a length no stream allows fails here, not in every run
    for name in variants:
        if not any(get_variant(name).applies_to(f, data.steps) for f in families):
            raise TinylocError(f"--quant {name}: no run of this sweep can have it (families {', '.join(families)}, "
                               f"T = {data.steps}; streaming variants need Mamba runs on windows of T > 1)")
    shortcut = bool(recipe is not None and recipe.shortcut)
    specs = plan_baseline_runs(families, grid, data.num_features, data.num_classes, max_params, shortcut)
    if not specs:
        raise TinylocError(f"no configuration of the {grid!r} grid has at most {max_params} parameters")
    out = Path(out).absolute()
    # Ray tasks reserve one CPU each; local workers share the machine's cores.
    threads = 1 if ray_address else max(1, (os.cpu_count() or 1) // jobs)
    settings = _settings(
        data, data_dir, out, family=family, grid=grid, max_params=max_params, epochs=epochs,
        batch_size=batch_size, lr=lr, patience=patience, seed=seed, int8_friendly=bool(int8_friendly),
        recipe=(recipe if recipe is not None else Recipe()).to_dict(),
        alpha=alpha, distill_method=distill_method, variants=list(variants),
        convert_options=(convert_options or ConvertOptions(seed=seed)).to_dict(),
        threads_per_run=threads, jobs=jobs, ray=ray_address, distill=bool(distill), ensemble=int(ensemble),
    )
    from tinyloc_tf.tf_log import LOG_NAME

    # The pipeline opens the sweep's TensorFlow log before the sweep starts.
    check_resumable_output(out, own=("sweep.json", LOG_NAME), inputs=(data_dir,))
    check_reachable(ray_address)  # before sweep.json records the address
    out.mkdir(parents=True, exist_ok=True)
    settings_path = out / "sweep.json"
    _check_resume(settings_path, settings)
    write_atomic(settings_path, json_bytes(settings))

    with ray_session(ray_address, num_cpus=jobs):
        run = dict(settings=settings, jobs=jobs, ray_address=ray_address)
        results = run_specs(specs, desc="train", **run)
        if ensemble > 1:
            members, ensembles = plan_ensembles(specs, ensemble, data.num_features, data.num_classes, max_params,
                                                shortcut)
            run_specs(members, desc="members", **run)
            results.update(run_specs(ensembles, desc="ensemble", **run))

        teachers = {name: pick_teacher(results, name) for name in families}
        write_atomic(out / "teachers.json", json_bytes(
            {name: {"run": teacher, "val_macro_f1": results[teacher]["val_macro_f1"],
                    "params": results[teacher]["params"]}
             for name, teacher in teachers.items() if teacher}))
        if distill:
            students = [s for name, teacher in teachers.items() if teacher for s in plan_students(specs, results, teacher)]
            if students:
                results.update(run_specs(students, desc="distill", **run))

        compressed = {}
        if variants:
            compressed = run_tasks(execute_compression, [(name, name) for name in sorted(results)],
                                   desc="compress", **run)
    if baselines and not (baselines_dir(out) / "baselines.json").is_file():
        from tinyloc_tf.training.baselines import run_baselines

        run_baselines(data_dir, baselines_dir(out), seed=seed, n_jobs=jobs, overwrite=True, verbose=1)
    return {"runs": dict(sorted(results.items())), "teachers": teachers, "variants": compressed}
