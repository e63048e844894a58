"""Faults from outside: a parent killed with SIGKILL, Ctrl-C in the middle of training.

These start the real command line in subprocesses and send real signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tinyloc_tf.data import Split, write_prepared

REPO = Path(__file__).resolve().parents[1]
STEPS, FEATURES, CLASSES = 20, 8, 3


@pytest.fixture(scope="module")
def windows_data(tmp_path_factory):
    """Enough windows that an epoch takes a noticeable time."""
    rng = np.random.default_rng(0)

    def split(count):
        y = rng.integers(CLASSES, size=(count, STEPS)).astype(np.int32)
        X = np.clip(0.2 + 0.2 * y[..., None] + rng.normal(0, 0.1, (count, STEPS, FEATURES)), 0, 1)
        return Split(X.astype(np.float32), y)

    meta = {"features": [f"ap{i}" for i in range(FEATURES)], "classes": ["a", "b", "c"], "T": STEPS,
            "scaling": {"min": [0.0] * FEATURES, "max": [1.0] * FEATURES}, "labels": "room",
            "source": "fault windows", "source_sha256": "0" * 64}
    return write_prepared(tmp_path_factory.mktemp("faults") / "data",
                          {"train": split(600), "val": split(100), "test": split(100)}, meta)


def tinyloc(*args: str, **options) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tinyloc_tf", *args], env=env, **options)


def children_of(pid: int) -> set[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def at_least(found: set[int], count: int) -> set[int] | None:
    return found if len(found) >= count else None


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


PARENT = """
import concurrent.futures, multiprocessing, os, sys, time
from tinyloc_tf.lifetime import die_with_parent
if __name__ == "__main__":
    pool = concurrent.futures.ProcessPoolExecutor(
        2, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),))
    futures = [pool.submit(time.sleep, 120) for _ in range(2)]
    time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        # the spawn context also starts a resource tracker: wait for it and both workers
        workers = wait_for(lambda: at_least(children_of(parent.pid), 3), 60, "workers")
        time.sleep(1.0)  # let the initializers run
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_for(lambda: not any(alive(pid) for pid in workers), 15, "the orphaned workers to exit")
    finally:
        parent.kill()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sweep_workers_die_when_the_sweep_is_killed(windows_data, tmp_path):
    sweep = tinyloc("sweep", "--data", str(windows_data), "--out", str(tmp_path / "sweep"), "--jobs", "2",
                    "--epochs", "200", "--patience", "200", "--quant", "none", "--no-baselines",
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        workers = wait_for(lambda: at_least(children_of(sweep.pid), 3), 120, "workers")
        time.sleep(3.0)
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
        wait_for(lambda: not any(alive(pid) for pid in workers), 20, "the sweep's workers to exit")
    finally:
        sweep.kill()
        sweep.stderr.close()
    runs = tmp_path / "sweep" / "runs"
    finished = sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []
    time.sleep(2.0)  # nothing keeps writing after the parent died
    assert (sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []) == finished


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 1.0, 2.5])
def test_ctrl_c_in_train_prints_one_line_and_exits_130(windows_data, tmp_path, delay):
    out = tmp_path / "run"
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as sink:
        train = tinyloc("train", "--data", str(windows_data), "--model", "mamba", "--hidden", "8", "--layers", "1",
                        "--epochs", "200", "--patience", "200", "--out", str(out),
                        stdout=subprocess.DEVNULL, stderr=sink)
        try:
            wait_for(lambda: b"train mamba" in log.read_bytes(), 120, "training to start")
            time.sleep(delay)
            train.send_signal(signal.SIGINT)
            code = train.wait(timeout=120)
        finally:
            train.kill()
    err = log.read_text()
    assert code == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.rstrip().splitlines()[-1] == "tinyloc train: interrupted; nothing written"
    assert not out.exists()
    assert not list(tmp_path.glob(".run.partial-*"))


def test_a_swallowed_interrupt_stops_training_at_the_next_batch(windows_data):
    """Python may deliver Ctrl-C inside a finaliser, which prints and drops the exception;
    the recorded flag must still stop ``fit`` instead of letting it run every epoch."""
    from tinyloc_tf import lifetime
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.models import build_model
    from tinyloc_tf.training.trainer import fit_with_validation

    data = load_prepared(windows_data)
    model = build_model("mamba", features=FEATURES, classes=CLASSES, hidden=4, layers=1, steps=STEPS)
    model.compile(optimizer="adam")
    lifetime.note_interrupt()  # the handler ran; its KeyboardInterrupt was lost
    try:
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            fit_with_validation(model, model, data.train.X, data.train.y, (data.val.X, data.val.y),
                                epochs=200, batch_size=32, patience=200, verbose=0)
        assert time.monotonic() - started < 60
    finally:
        lifetime.clear_interrupt()


def test_inside_fit_the_ctrl_c_handler_only_records_and_the_block_raises_on_leaving():
    """During ``fit`` the SIGINT handler must not raise into TensorFlow; the recorded flag
    is raised at the block's own safe point, or on leaving the block at the latest."""
    from tinyloc_tf import lifetime
    from tinyloc_tf.cli import _Interrupted

    previous = signal.getsignal(signal.SIGINT)
    handler = _Interrupted()
    try:
        with pytest.raises(KeyboardInterrupt):
            with lifetime.deferred_interrupts():
                handler(signal.SIGINT, None)  # records, raises nothing
                assert handler.seen and lifetime.interrupts_deferred()
                reached = True
        assert reached and not lifetime.interrupts_deferred()
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)  # outside the block it raises at once
    finally:
        signal.signal(signal.SIGINT, previous)
        lifetime.clear_interrupt()
