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

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyloc_tf.atomic import write_atomic
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.lifetime import raise_if_interrupted
from tinyloc_tf.training.recipe import Recipe

# The paper's grids (MODELS.md) and a small grid that runs in minutes on a laptop.
GRIDS = {
    "paper": {
        "mdcsa": [(h, l) for h in (256, 128, 64, 32, 16, 8, 4, 2) for l in (3, 1)],
        "mamba": [(h, l) for h in (1, 2, 4, 8, 16, 32, 64, 128) for l in (1, 2, 4)],
    },
    "small": {
        "mdcsa": [(16, 1), (8, 1), (4, 1)],
        "mamba": [(32, 1), (16, 1), (8, 1), (4, 1)],
    },
    # The paper-grid configurations whose int8 form can fit the 32 / 64 KiB budgets on our
    # datasets (MODELS.md sizes), at most two depths per width: what the results tables use.
    "budget": {
        "mdcsa": [(16, 3), (16, 1), (8, 3), (8, 1), (4, 1)],
        "mamba": [(32, 2), (32, 1), (16, 2), (16, 1), (8, 1), (4, 1)],
    },
}
FAMILIES = ("mdcsa", "mamba")

# Converted variants the compression phase can make. The float32 model is the run's own
# Keras model (scored by training), so it is not converted again.
VARIANTS = ("int8", "dynamic", "selective", "qat")
DEFAULT_VARIANTS = ("int8", "dynamic")

# Settings that change what a run computes: resuming with other values would mix runs.
RESUME_KEYS = ("data_sha256", "epochs", "batch_size", "lr", "patience", "seed", "int8_friendly",
               "alpha", "distill_method", "recipe")


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: a baseline training run or a distilled student."""

    family: str
    hidden: int
    layers: int
    teacher: str | None = None  # run name of the teacher; None for a baseline run

    @property
    def name(self) -> str:
        return f"{self.family}-H{self.hidden}L{self.layers}" + ("-kd" if self.teacher else "")


# --------------------------------------------------------------------------- planning


def param_count(family: str, features: int, classes: int, hidden: int, layers: int) -> int:
    """Trainable parameters of a configuration, from MODELS.md's formulas in the model modules
    (imported here: they bring Keras, which ``tinyloc --help`` should not load)."""
    from tinyloc_tf.models.mamba import mamba_param_count
    from tinyloc_tf.models.mdcsa import mdcsa_param_count

    formula = {"mdcsa": mdcsa_param_count, "mamba": mamba_param_count}[family]
    return formula(features, classes, hidden, layers)


def check_families(family: str) -> tuple[str, ...]:
    families = FAMILIES if family == "both" else (family,)
    for name in families:
        if name not in FAMILIES:
            raise TinylocError(f"unknown --family {name!r}; expected mamba, mdcsa or both")
    return families


def parse_variants(text: str | None) -> tuple[str, ...]:
    """``"int8,dynamic"`` -> ``("int8", "dynamic")``; ``"none"`` or ``""`` -> no compression phase."""
    if text is None or text.strip().lower() in ("", "none"):
        return ()
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        hint = " (the float32 model is the run itself)" if "float32" in unknown else ""
        raise TinylocError(f"unknown --quant variant {unknown[0]!r}{hint}; choose from {', '.join(VARIANTS)} or none")
    return names


def plan_baseline_runs(families, grid: str, features: int, classes: int, max_params: int | None) -> list[RunSpec]:
    """The grid's configurations per family with at most ``max_params`` trainable parameters."""
    if grid not in GRIDS:
        raise TinylocError(f"unknown grid {grid!r}; expected one of {', '.join(GRIDS)}")
    specs = []
    for family in families:
        for hidden, layers in GRIDS[grid][family]:
            if max_params is None or param_count(family, features, classes, hidden, layers) <= max_params:
                specs.append(RunSpec(family, hidden, layers))
    return specs


def read_metrics(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def pick_teacher(results: dict[str, dict], family: str) -> str | None:
    """The family's baseline run with the best *validation* macro-F1 (ties: fewer params).

    Test scores are in ``results`` too; they are never looked at here.
    """
    candidates = [
        (metrics["val_macro_f1"], -metrics["params"], name)
        for name, metrics in results.items()
        if metrics.get("family") == family and "distill" not in metrics and not name.endswith("-kd")
    ]
    return max(candidates)[2] if candidates else None


def plan_students(baselines: list[RunSpec], results: dict[str, dict], teacher: str) -> list[RunSpec]:
    """Every trained configuration of the teacher's family with fewer parameters than the teacher."""
    teacher_params = results[teacher]["params"]
    family = results[teacher]["family"]
    return [
        RunSpec(spec.family, spec.hidden, spec.layers, teacher=teacher)
        for spec in baselines
        if spec.family == family and spec.name in results and results[spec.name]["params"] < teacher_params
    ]


# --------------------------------------------------------------------------- tasks


def _worker_environment(settings: dict) -> None:
    """Thread counts for TensorFlow, set before it is imported in a fresh worker."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(settings.get("threads_per_run", 1)))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


def execute(spec: dict, settings: dict) -> dict:
    """Run one spec in the current process (a worker or a Ray task) and return its metrics.

    Imports TensorFlow here, so the parent process of a sweep stays light. A finished run
    folder is read back instead of retrained.
    """
    _worker_environment(settings)
    run = RunSpec(**spec)
    runs = Path(settings["sweep_dir"]) / "runs"
    out = runs / run.name
    done = read_metrics(out)
    if done is not None:
        return done
    fit = dict(
        epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
        patience=settings["patience"], seed=settings["seed"], int8_friendly=settings["int8_friendly"],
        recipe=Recipe.from_dict(settings.get("recipe")), verbose=0,
    )
    if run.teacher is None:
        from tinyloc_tf.training.trainer import train_run

        return train_run(settings["data"], run.family, run.hidden, run.layers, out, **fit)
    from tinyloc_tf.training.distill import distill_run

    return distill_run(
        runs / run.teacher, settings["data"], run.family, run.hidden, run.layers, out,
        alpha=settings["alpha"], method=settings["distill_method"], **fit,
    )


def _json_bytes(payload: dict) -> bytes:
    def default(value):
        import numpy as np

        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        return str(value)

    return (json.dumps(payload, indent=2, default=default) + "\n").encode()


def score_variant(buf: bytes, data, runtime: str, keras_paths: dict | None = None) -> dict:
    """``{"val": scores, "test": scores}`` of a ``.tflite`` decoded with the CRF in its metadata.

    Scores are :func:`~tinyloc_tf.training.metrics.score_paths` plus ``agreement_with_keras``
    (fraction of steps where the Viterbi path equals the float Keras model's) when
    ``keras_paths`` is given.
    """
    import numpy as np

    from tinyloc_tf.compression.metadata import read_metadata
    from tinyloc_tf.deployment.host import run_tflite
    from tinyloc_tf.models.crf import viterbi_decode
    from tinyloc_tf.training.metrics import score_paths

    crf = read_metadata(buf)["crf"]
    params = [np.asarray(crf[key], dtype=np.float32) for key in ("transitions", "start", "end")]
    scores = {}
    for split in ("val", "test"):
        part = data.split(split)
        paths = viterbi_decode(run_tflite(buf, part.X, runtime=runtime), *params)
        scores[split] = score_paths(part.y, paths, data.class_names)
        if keras_paths is not None:
            scores[split]["agreement_with_keras"] = float(np.mean(paths == keras_paths[split]))
    return scores


def compress_run(run_dir: str | os.PathLike, data, variants, *, seed: int = 0, qat_options: dict | None = None) -> dict:
    """Convert one finished run into ``variants`` and score each on val and test.

    Writes ``RUN/variants/<variant>.tflite`` and then ``RUN/variants/<variant>.json``::

        {"variant", "run", "runtime": "tflm" | "litert", "deployable": bool, "note",
         "flash_bytes", "metadata_bytes", "arena_bytes" (None off TFLM),
         "val": {macro_f1, accuracy, per_class_f1, confusion_matrix, steps, agreement_with_keras},
         "test": {...}, "conversion": {ops, float_ops, kept_float, qat, ...}}

    ``flash_bytes`` is the ``.tflite`` file: what the firmware embeds, including the
    metadata (``metadata_bytes`` of it) that carries the CRF weights Viterbi needs.
    Deployable variants are scored in host TFLM with the smallest working arena
    (``find_arena_bytes``, in child processes); the others (dynamic range: hybrid ops) with
    LiteRT and ``deployable: false``. Variants whose JSON exists are read back, not redone.
    Returns ``{variant: record}``.
    """
    from tinyloc_tf.data import PreparedDataset, load_prepared

    run_dir = Path(run_dir)
    data = data if isinstance(data, PreparedDataset) else load_prepared(data)
    folder = run_dir / "variants"
    records, tagger, keras_paths = {}, None, None
    for variant in variants:
        json_path = folder / f"{variant}.json"
        if json_path.is_file():
            records[variant] = json.loads(json_path.read_text())
            continue
        if tagger is None:
            from tinyloc_tf.compression.cli import load_run

            tagger, _ = load_run(run_dir)
            keras_paths = {split: tagger.decode(data.split(split).X) for split in ("val", "test")}
        records[variant] = _convert_and_score(run_dir, tagger, data, variant, keras_paths, seed, qat_options)
    return records


def _convert_and_score(run_dir: Path, tagger, data, variant: str, keras_paths, seed, qat_options) -> dict:
    from tinyloc_tf.compression.convert import convert, data_metadata
    from tinyloc_tf.compression.metadata import metadata_bytes
    from tinyloc_tf.deployment.host import find_arena_bytes, tflm_blocker

    metadata = data_metadata(data)
    metadata["run"] = {"name": run_dir.name}
    result = convert(
        tagger, variant, representative=data.train.X, metadata=metadata, labels=data.train.y,
        validation=(data.val.X, data.val.y), seed=seed, qat_options={"progress": False, **(qat_options or {})},
    )
    buf = result.tflite
    blocker = tflm_blocker(buf)
    runtime = "tflm" if blocker is None else "litert"
    record = {
        "variant": variant,
        "run": run_dir.name,
        "runtime": runtime,
        "deployable": blocker is None,
        "note": blocker,
        "flash_bytes": len(buf),
        "metadata_bytes": metadata_bytes(buf),
        "arena_bytes": find_arena_bytes(buf) if blocker is None else None,
        **score_variant(buf, data, runtime, keras_paths),
        "conversion": {key: value for key, value in result.report.items() if key != "bytes"},
        "data_sha256": data.fingerprint(),
    }
    folder = run_dir / "variants"
    write_atomic(folder / f"{variant}.tflite", buf)
    write_atomic(folder / f"{variant}.json", _json_bytes(record))
    return record


def execute_compression(run_name: str, settings: dict) -> dict:
    """Task wrapper of :func:`compress_run` for one run of the sweep (a worker or a Ray task)."""
    _worker_environment(settings)
    run_dir = Path(settings["sweep_dir"]) / "runs" / run_name
    qat = {"epochs": settings.get("qat_epochs", 3)}
    return compress_run(run_dir, settings["data"], settings["variants"], seed=settings["seed"], qat_options=qat)


# --------------------------------------------------------------------------- executors


def _gather(outcomes, progress) -> dict:
    """``{name: result}`` from ``(name, result | exception)`` pairs; one error for all failures."""
    results, failures = {}, {}
    for name, outcome in outcomes:
        raise_if_interrupted()
        if isinstance(outcome, BaseException):
            failures[name] = outcome
        else:
            results[name] = outcome
        progress.update(1)
    if failures:
        detail = "; ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in sorted(failures.items()))
        raise TinylocError(
            f"{len(failures)} of {len(failures) + len(results)} tasks failed (finished ones are kept; "
            f"rerun the same command to resume): {detail}"
        )
    return dict(sorted(results.items()))


def _start_worker(parent_pid: int, log: Path | None) -> None:
    """Worker initializer: die with the sweep, and print into the sweep's TensorFlow log."""
    from tinyloc_tf.lifetime import die_with_parent
    from tinyloc_tf.tf_log import send_output_to

    die_with_parent(parent_pid)
    if log is not None:
        send_output_to(log)


def _run_local(task, items, settings: dict, jobs: int):
    """Yield ``(name, result or exception)``; worker processes started with ``spawn`` so each
    worker gets its own TensorFlow runtime."""
    from tinyloc_tf.tf_log import LOG_NAME, output_to

    # tasks of a sweep print into its log; tasks without a sweep folder print as usual
    log = Path(settings["sweep_dir"]) / LOG_NAME if settings.get("sweep_dir") else None
    if jobs <= 1:
        for name, argument in items:
            try:
                with output_to(log) if log else contextlib.nullcontext():
                    result = task(argument, settings)
                yield name, result
            except Exception as exc:  # reported with the run's name by _gather
                yield name, exc
        return
    import concurrent.futures
    import multiprocessing

    from tinyloc_tf.lifetime import stop_children

    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                                                  initializer=_start_worker, initargs=(os.getpid(), log))
    try:
        futures = {pool.submit(task, argument, settings): name for name, argument in items}
        for future in concurrent.futures.as_completed(futures):
            error = future.exception()
            yield futures[future], error if error is not None else future.result()
    except BaseException:
        # Ctrl-C or a failure in the parent: do not wait for the workers' current runs.
        pool.shutdown(wait=False, cancel_futures=True)
        stop_children()
        raise
    pool.shutdown(wait=True)


def _run_ray(task, items, settings: dict):
    """One Ray task per item; the cluster must share the sweep folder (a shared file system)."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=0)(task)
    pending = {remote.remote(argument, settings): name for name, argument in items}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            name = pending.pop(ref)
            try:
                yield name, ray.get(ref)
            except Exception as exc:  # RayTaskError wraps the task's own exception
                yield name, exc


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None = None):
    """Connect to Ray for the sweep (``local``: start a private instance with ``num_cpus``),
    and shut down what this call started."""
    if not address:
        yield
        return
    try:
        import ray
    except ImportError as exc:
        raise TinylocError("--ray needs Ray: pip install 'tinyloc-tf[ray]'") from exc
    started = not ray.is_initialized()
    if started:
        options = dict(include_dashboard=False, log_to_driver=False)
        try:
            if address == "local":
                ray.init(num_cpus=num_cpus, **options)
            else:
                ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            hint = " (start one with `ray start --head`, or use --ray local)" if address == "auto" else ""
            raise TinylocError(f"cannot connect to the Ray cluster at {address!r}{hint}: {exc}") from exc
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def run_tasks(task, items: list[tuple[str, object]], settings: dict, *, jobs: int = 1,
              ray_address: str | None = None, desc: str = "sweep") -> dict:
    """``task(argument, settings)`` for each ``(name, argument)``; returns ``{name: result}``."""
    from tqdm.auto import tqdm

    with tqdm(total=len(items), desc=desc, unit="run") as progress:
        outcomes = _run_ray(task, items, settings) if ray_address else _run_local(task, items, settings, jobs)
        return _gather(outcomes, progress)


def run_specs(specs: list[RunSpec], settings: dict, *, jobs: int = 1, ray_address: str | None = None,
              desc: str = "sweep") -> dict[str, dict]:
    """Train or distil every spec (see :func:`execute`); ``{run name: metrics}``."""
    return run_tasks(execute, [(spec.name, asdict(spec)) for spec in specs], settings,
                     jobs=jobs, ray_address=ray_address, desc=desc)


# --------------------------------------------------------------------------- the sweep


def _settings(data, data_dir, out: Path, **values) -> dict:
    return {"data": str(Path(data_dir).absolute()), "sweep_dir": str(out), "data_sha256": data.fingerprint(), **values}


def _check_resume(path: Path, settings: dict) -> None:
    if not path.is_file():
        return
    previous = json.loads(path.read_text())
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
    qat_epochs: int = 3,
    jobs: int = 1,
    ray_address: str | None = None,
) -> dict:
    """Run (or resume) a sweep.

    Returns ``{"runs": {name: metrics}, "teachers": {family: run name}, "variants":
    {run name: {variant: record}}}``. ``int8_friendly`` builds the models in the form that
    converts to full int8 for TFLM (default; see the models' docs). ``recipe``: every run's
    training recipe (None: the default :class:`~tinyloc_tf.training.recipe.Recipe`).
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
    data = load_prepared(data_dir)  # fail early, with the loader's message, on a bad folder
    specs = plan_baseline_runs(families, grid, data.num_features, data.num_classes, max_params)
    if not specs:
        raise TinylocError(f"no configuration of the {grid!r} grid has at most {max_params} parameters")
    out = Path(out).absolute()
    # Ray tasks reserve one CPU each; local workers share the machine's cores.
    threads = 1 if ray_address else max(1, (os.cpu_count() or 1) // jobs)
    settings = _settings(
        data, data_dir, out, family=family, grid=grid, max_params=max_params, epochs=epochs,
        batch_size=batch_size, lr=lr, patience=patience, seed=seed, int8_friendly=bool(int8_friendly),
        recipe=(recipe if recipe is not None else Recipe()).to_dict(),
        alpha=alpha, distill_method=distill_method, variants=list(variants), qat_epochs=qat_epochs,
        threads_per_run=threads, jobs=jobs, ray=ray_address, distill=bool(distill),
    )
    out.mkdir(parents=True, exist_ok=True)
    settings_path = out / "sweep.json"
    _check_resume(settings_path, settings)
    write_atomic(settings_path, _json_bytes(settings))

    with ray_session(ray_address, num_cpus=jobs):
        run = dict(settings=settings, jobs=jobs, ray_address=ray_address)
        results = run_specs(specs, desc="train", **run)

        teachers = {name: pick_teacher(results, name) for name in families}
        write_atomic(out / "teachers.json", _json_bytes(
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
    if baselines and not (out / "baselines" / "baselines.json").is_file():
        from tinyloc_tf.training.baselines import run_baselines

        run_baselines(data_dir, out / "baselines", seed=seed, n_jobs=jobs, overwrite=True, verbose=1)
    return {"runs": dict(sorted(results.items())), "teachers": teachers, "variants": compressed}
