"""Scripts under scripts/ report a bad input as tinyloc verbs do: one line, status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tinyloc_tf.errors import DataError, script_status

REPO = Path(__file__).resolve().parents[1]


def test_an_error_is_one_line_and_status_2(capsys):
    def bad():
        raise DataError("x.csv: line 3: not a number")

    assert script_status(bad, "tool") == 2
    assert capsys.readouterr().err == "tool: error: x.csv: line 3: not a number\n"


def test_a_missing_file_is_named(tmp_path, capsys):
    assert script_status(lambda: open(tmp_path / "absent.json"), "tool") == 2
    err = capsys.readouterr().err
    assert err.startswith("tool: error: ") and "absent.json" in err and err.count("\n") == 1


def test_success_and_other_exceptions_pass_through():
    assert script_status(lambda: None, "tool") == 0
    assert script_status(lambda code: code, "tool", 3) == 3
    with pytest.raises(ZeroDivisionError):  # a bug stays a traceback
        script_status(lambda: 1 / 0, "tool")


@pytest.mark.parametrize("argv, named", [
    (["model_table.py", "no-such-models"], "no-such-models"),
    (["tflite_breakdown.py", "no-such.tflite"], "no-such.tflite"),
])
def test_scripts_name_their_bad_input(tmp_path, argv, named):
    done = subprocess.run([sys.executable, str(REPO / "scripts" / argv[0]), *argv[1:]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr
