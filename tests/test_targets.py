"""The board registry: boards come from tflm_app/targets/<board>/target.mk, not from a list in code."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tinyloc_tf.deployment import targets
from tinyloc_tf.deployment.targets import get_target, read_make_variables, target_names
from tinyloc_tf.errors import TinylocError

TOY_MK = """\
# A board that exists only in this test.
TARGET_DESCRIPTION := Cortex-M7 toy board on QEMU  # a comment, as make strips it
CPU_FLAGS        := -mcpu=cortex-m7 -mfpu=fpv5-d16 -mfloat-abi=hard -mthumb
TFLM_TARGET_ARCH := cortex-m7+fp
QEMU_MACHINE     := mps2-an500
SYSCLK_HZ        = 25000000
RAM_MAX_BYTES    := 0x00100000
BOARD_NAME       := mps2-an500
EMULATOR         := qemu
BOARD_SRCS       := $(APP_DIR)/targets/semihosting_io.c
"""


@pytest.fixture
def toy_app(tmp_path, monkeypatch):
    """A copy of tflm_app's targets/ with one more board, the registry pointed at it."""
    app = tmp_path / "tflm_app"
    shutil.copytree(targets.APP_DIR / "targets", app / "targets")
    (app / "targets" / "toy").mkdir()
    (app / "targets" / "toy" / "target.mk").write_text(TOY_MK)
    monkeypatch.setattr(targets, "APP_DIR", app)
    return app


def test_the_shipped_boards_are_found_default_first():
    assert target_names() == ("m55", "m4", "stm32l4")


def test_the_shipped_boards_have_their_target_mk_facts():
    m55, m4, l4 = (get_target(name) for name in ("m55", "m4", "stm32l4"))
    assert (m55.emulator, m55.tflm_arch, m55.qemu_machine, m55.fvp) == ("qemu", "cortex-m55", "mps3-an547",
                                                                        "corstone-300")
    assert (m4.emulator, m4.tflm_arch, m4.qemu_machine, m4.fvp) == ("qemu", "cortex-m4+fp", "mps2-an386", "")
    assert (l4.emulator, l4.tflm_arch, l4.qemu_machine) == ("renode", "cortex-m4+fp", "")
    assert (l4.sysclk_hz, l4.ram_max_bytes, l4.board) == (80_000_000, 64 * 1024, "stm32l432 (Renode)")
    assert l4.directory == targets.APP_DIR / "targets" / "stm32l4" and (l4.directory / "run_renode.sh").is_file()
    for board in (m55, m4, l4):
        assert board.description and "\n" not in board.description
    assert "Renode" in l4.description and "M55" in m55.description


def test_a_board_is_frozen():
    with pytest.raises(AttributeError):
        get_target("m4").emulator = "renode"


def test_an_unknown_board_is_named_with_the_known_ones():
    with pytest.raises(TinylocError, match=r"unknown target 'm7'.*m55, m4, stm32l4"):
        get_target("m7")
    with pytest.raises(TinylocError, match="unknown target"):
        get_target("../targets/m4")  # a board is a folder name, not a path


def test_a_new_folder_is_a_new_board_without_code_changes(toy_app):
    assert target_names() == ("m55", "m4", "stm32l4", "toy")
    toy = get_target("toy")
    assert (toy.emulator, toy.tflm_arch, toy.qemu_machine, toy.sysclk_hz, toy.ram_max_bytes) == (
        "qemu", "cortex-m7+fp", "mps2-an500", 25_000_000, 1 << 20)
    assert toy.description == "Cortex-M7 toy board on QEMU" and toy.directory == toy_app / "targets" / "toy"


def test_the_deploy_command_line_offers_a_new_board(toy_app):
    import argparse

    from tinyloc_tf.deployment import cli

    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    cli.register(subparsers)
    assert parser.parse_args(["deploy", "m.tflite", "--target", "toy"]).target == "toy"
    assert parser.parse_args(["deploy", "m.tflite"]).target == "m55"
    assert "toy: Cortex-M7 toy board on QEMU" in " ".join(subparsers.choices["deploy"].format_help().split())


def test_a_target_mk_without_a_required_variable_is_named(toy_app):
    mk = toy_app / "targets" / "toy" / "target.mk"
    mk.write_text(TOY_MK.replace("TFLM_TARGET_ARCH := cortex-m7+fp\n", ""))
    with pytest.raises(TinylocError, match="targets/toy/target.mk does not define TFLM_TARGET_ARCH"):
        get_target("toy")
    mk.write_text(TOY_MK.replace("EMULATOR         := qemu", "EMULATOR := gem5"))
    with pytest.raises(TinylocError, match="EMULATOR := gem5 is not one of qemu, renode"):
        get_target("toy")


def test_make_variables_are_read_as_written(tmp_path):
    mk = tmp_path / "x.mk"
    mk.write_text("# A := commented out\nA := 1\nB = two words  # trailing comment\nC ?= x\n"
                  "  D:=$(APP_DIR)/y\nA := 2\nnot an assignment\n")
    assert read_make_variables(mk) == {"A": "2", "B": "two words", "C": "x", "D": "$(APP_DIR)/y"}


def test_the_registry_imports_no_tensorflow():
    # `tinyloc deploy --help` lists the boards: that must not cost a TensorFlow import.
    code = ("import sys, tinyloc_tf.deployment.targets as t; t.get_target('m4'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_helium_is_the_m55_boards_alone():
    assert get_target("m55").has_helium
    assert not get_target("m4").has_helium and not get_target("stm32l4").has_helium
