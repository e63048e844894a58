"""Outputs: permissions, leftovers of killed runs, and the rules of check_output."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tinyloc_tf.atomic import check_output, clean_stale_partials, staged_folder, write_atomic
from tinyloc_tf.errors import TinylocError

REPO = Path(__file__).resolve().parents[1]


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_written_files_and_folders_get_the_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        write_atomic(tmp_path / "m.tflite", b"TFL3")
        with staged_folder(tmp_path / "run") as staging:
            (staging / "a.txt").write_text("a")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "m.tflite").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o755


def test_leftovers_of_a_killed_run_are_removed_and_live_ones_kept(tmp_path, capsys):
    dead = tmp_path / f".run.partial-{dead_pid()}-abc"
    dead.mkdir()
    (dead / "model.keras").write_text("half")
    dead_file = tmp_path / f".m.tflite.partial-{dead_pid()}-xyz"
    dead_file.write_text("half")
    live = tmp_path / f".run.partial-{os.getpid()}-def"
    live.mkdir()
    unknown = tmp_path / ".run.partial-q1w2e3"  # no PID: reported, not removed
    unknown.mkdir()
    removed = clean_stale_partials(tmp_path / "run")
    assert removed == [dead] and not dead.exists() and live.is_dir() and unknown.is_dir()
    err = capsys.readouterr().err
    assert str(dead) in err and str(unknown) in err
    check_output(tmp_path / "m.tflite")
    assert not dead_file.exists()


def test_check_output_rules(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "empty") == tmp_path / "empty"  # an empty folder is fine
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(TinylocError, match="not empty.*--overwrite"):
        check_output(full)
    check_output(full, overwrite=True)
    with pytest.raises(TinylocError, match="would replace the input"):
        check_output(full, overwrite=True, inputs=[full / "x"])
    with pytest.raises(TinylocError, match="would replace the input"):
        check_output(full, overwrite=True, inputs=[full])
    check_output(full / "sub", inputs=[full / "x"])  # beside an input is fine
    check_output(full / "new.tflite", inputs=[full])  # a new file inside an input folder is fine,
    with pytest.raises(TinylocError, match="is a folder; --out names a file"):
        check_output(tmp_path / "empty", overwrite=True, kind="file")
    check_output(full / "x", overwrite=True, inputs=[full])  # and so is replacing one of the user's,
    (full / "model.keras").write_text("weights")
    for read in ("model.keras", "val.npz", "house_A/experiments"):  # but not what commands read there
        with pytest.raises(TinylocError, match="part of the input"):
            check_output(full / read, overwrite=True, inputs=[full])
    with pytest.raises(TinylocError, match="is a file"):
        check_output(full / "x" / "deeper" / "out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in a read-only folder")
def test_check_output_refuses_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(TinylocError, match="cannot write"):
            check_output(folder / "out")
    finally:
        folder.chmod(0o755)


def test_staged_folder_never_replaces_without_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("keep")
    with pytest.raises(TinylocError):
        with staged_folder(out):
            pass
    assert (out / "keep").read_text() == "keep"
    assert not list(tmp_path.glob(".out.partial-*"))


def test_ship_models_under_sigterm_leaves_the_shipped_folder_and_no_staging(tmp_path):
    """scripts/ship_models.py turns SIGTERM into an unwinding exit: the staging folder is
    removed and the models already shipped stay as they were."""
    shipped = tmp_path / "models" / "house"
    shipped.mkdir(parents=True)
    (shipped / "32kb.tflite").write_bytes(b"old")
    script = f"""
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {str(REPO / 'scripts')!r})
import ship_models
from tinyloc_tf.atomic import staged_folder
signal.signal(signal.SIGTERM, ship_models._exit_on_sigterm)
with staged_folder(Path({str(shipped)!r}), overwrite=True) as staging:
    (staging / "32kb.tflite").write_bytes(b"new, half written")
    os.kill(os.getpid(), signal.SIGTERM)
    signal.pause()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 128 + 15, done.stderr
    assert sorted(p.name for p in shipped.parent.iterdir()) == ["house"]
    assert (shipped / "32kb.tflite").read_bytes() == b"old"
