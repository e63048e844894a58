"""Activation lookup tables (deployment/op_tables.py): TFLM's int8 LOGISTIC / TANH on every input, exported as C.

The firmware side (the table kernel, bit-exact on QEMU) is tested in test_firmware.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tinyloc_tf.deployment import export_c as ec
from tinyloc_tf.deployment.op_tables import TABLE_OPS, activation_tables

REPO = Path(__file__).resolve().parents[1]
HOUSE = REPO / "models" / "synth-house-a" / "32kb.tflite"  # an MDCSA: int8 LOGISTIC and TANH nodes
needs_house = pytest.mark.skipif(not HOUSE.is_file(), reason=f"{HOUSE.name} of synth-house-a is not shipped")


def _ideal(table) -> np.ndarray:
    q = np.arange(-128, 128)
    x = (q - table.input_zero_point) * table.input_scale
    y = np.tanh(x) if table.op == "TANH" else 1.0 / (1.0 + np.exp(-x))
    return np.clip(np.round(y / table.output_scale) + table.output_zero_point, -128, 127)


@needs_house
def test_tables_follow_the_activation_within_one_step():
    tables = activation_tables(HOUSE)
    assert sorted({t.op for t in tables}) == ["LOGISTIC", "TANH"]
    assert len({t.key for t in tables}) == len(tables)  # one per distinct quantization
    for t in tables:
        values = np.array(t.values)[np.arange(-128, 128).astype(np.uint8)]  # by input value
        assert values.shape == (256,) and np.all(np.diff(values) >= 0)  # monotone, like the functions
        assert np.abs(values - _ideal(t)).max() <= 1


@needs_house
def test_export_registers_table_kernels_only_in_table_builds():
    buf = HOUSE.read_bytes()
    files = ec.model_sources(buf)
    ops = files["model_ops.h"]
    for op in TABLE_OPS:
        method = ec.resolver_method(op)
        assert f"resolver.{method}(Register_TABLE_{op}())" in ops and f"resolver.{method}()" in ops
    assert ops.count("#ifdef TINYLOC_TABLE_KERNELS") == 1 + len(TABLE_OPS)  # the include and each op
    tables = files["model_tables.cc"]
    assert f"kActivationTableCount = {len(activation_tables(buf))};" in tables


def test_a_model_without_activations_exports_an_empty_table_list():
    from helpers import fc_model_bytes

    buf = fc_model_bytes()
    files = ec.model_sources(buf)
    assert "kActivationTableCount = 0;" in files["model_tables.cc"]
    assert "TINYLOC_TABLE_KERNELS" not in files["model_ops.h"]
