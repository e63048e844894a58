"""Where a sweep's tasks run: in this process, in worker processes (``--jobs``), or as Ray
tasks (``--ray``). Every path calls the same task functions and gathers identical results.

Workers die with the sweep (:func:`~tinyloc_tf.lifetime.die_with_parent`) and print into
the sweep's ``tensorflow.log``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict
from pathlib import Path

from tinyloc_tf.errors import TinylocError
from tinyloc_tf.lifetime import raise_if_interrupted
from tinyloc_tf.training.artifacts import read_metrics, sweep_members, sweep_runs
from tinyloc_tf.training.recipe import Recipe
from tinyloc_tf.workflows.plan import RunSpec


def worker_environment(settings: dict) -> None:
    """Thread counts for TensorFlow, set before it is imported in a fresh worker."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(settings.get("threads_per_run", 1)))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


def execute(spec: dict, settings: dict) -> dict:
    """Run one spec in the current process (a worker or a Ray task) and return its metrics.

    Imports TensorFlow here, so the parent process of a sweep stays light. A finished run
    folder is read back instead of retrained.
    """
    worker_environment(settings)
    run = RunSpec(**spec)
    runs, members = sweep_runs(settings["sweep_dir"]), sweep_members(settings["sweep_dir"])
    out = (members if run.is_member else runs) / run.name
    done = read_metrics(out)
    if done is not None:
        return done
    if run.members > 1:
        from tinyloc_tf.training.ensemble import ensemble_run

        folders = [(members if member.is_member else runs) / member.name for member in run.member_specs()]
        return ensemble_run(folders, out, data_dir=settings["data"])
    fit = dict(
        epochs=settings["epochs"], batch_size=settings["batch_size"], lr=settings["lr"],
        patience=settings["patience"], seed=settings["seed"] + run.seed_offset,
        int8_friendly=settings["int8_friendly"], recipe=Recipe.from_dict(settings.get("recipe")).for_family(run.family),
        verbose=0,
    )
    if run.teacher is None:
        from tinyloc_tf.training.trainer import train_run

        return train_run(settings["data"], run.family, run.hidden, run.layers, out, **fit)
    from tinyloc_tf.training.distill import distill_run

    return distill_run(
        runs / run.teacher, settings["data"], run.family, run.hidden, run.layers, out,
        alpha=settings["alpha"], method=settings["distill_method"], **fit,
    )


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


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A Ray address ``HOST:PORT`` (or ``ray://HOST:PORT``) must accept a connection within
    ``timeout`` seconds: Ray itself retries a wrong one for minutes before it gives up. No
    address, ``local`` and ``auto`` pass."""
    import socket

    if not address or address in ("local", "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise TinylocError(f"--ray {address!r}: expected HOST:PORT, ray://HOST:PORT, auto or local")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise TinylocError(f"cannot connect to the Ray cluster at {address!r}: nothing answers at {host}:{port} "
                           f"({exc.strerror or exc}); start it with `ray start --head`, or use --ray local") from None


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
    """Train, distil or assemble every spec (see :func:`execute`); ``{run name: metrics}``."""
    return run_tasks(execute, [(spec.name, asdict(spec)) for spec in specs], settings,
                     jobs=jobs, ray_address=ray_address, desc=desc)


