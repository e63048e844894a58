"""The firmware turns raw dBm into the model's input itself, bit-exact with the host.

Runs the shipped UJIIndoorLoc model (powed inputs) on QEMU with the AOT backend (no TFLM tree
needed): the exported windows are raw integer dBm and a 106-entry table, and the device's
emissions must equal host TFLM's, which quantised the prepared float inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinyloc_tf.deployment import firmware as fw

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "ujiindoorloc" / "32kb.tflite"

needs_arm = pytest.mark.skipif(
    bool(fw.missing_tools()),
    reason=f"Cortex-M toolchain / QEMU missing ({', '.join(fw.missing_tools())}); see scripts/setup.sh",
)


@pytest.mark.slow
@needs_arm
def test_dbm_table_input_is_bit_exact_on_qemu(uji_zip, tmp_path):
    from tinyloc_tf.data.uji import prepare_uji

    card = json.loads(MODEL.with_suffix(".json").read_text())
    recipe = card["data"]["recipe"]
    if recipe.get("representation", "minmax") == "minmax":
        pytest.skip("the shipped UJIIndoorLoc model takes per-AP min-max inputs: no shared dBm table")
    options = {"areas": recipe["areas"]} if "areas" in recipe else {}
    data = prepare_uji(uji_zip, tmp_path / "data", labels=recipe["labels"], seed=recipe["seed"],
                       val_fraction=recipe["val_fraction"], split=recipe["split"],
                       representation=recipe["representation"], **options)
    result = fw.deploy(str(MODEL), target="m55", ram_kb=32, backend="aot", data_dir=str(data), windows=24,
                       progress=False)
    assert result["input"] == "dbm_table"
    assert result["emissions_bit_exact"] and result["path_agreement"] == 1.0


@pytest.mark.slow
@needs_arm
def test_relative_dbm_input_is_bit_exact_on_qemu(uji_zip, tmp_path):
    """The relative representation on the device: each scan's readings move to the reference
    first. The shipped model's metadata is switched to ``relative`` (same weights: this checks
    the input path, not accuracy); the exported scans have their strongest reading at 0 dBm, so
    the firmware must move every scan by the reference to match the host bit for bit."""
    from tinyloc_tf.compression.metadata import read_metadata, write_metadata
    from tinyloc_tf.data.uji import prepare_uji

    card = json.loads(MODEL.with_suffix(".json").read_text())
    recipe = card["data"]["recipe"]
    options = {"areas": recipe["areas"]} if "areas" in recipe else {}
    data = prepare_uji(uji_zip, tmp_path / "data", labels=recipe["labels"], seed=recipe["seed"],
                       val_fraction=recipe["val_fraction"], split=recipe["split"], representation="relative",
                       **options)
    scaling = json.loads((data / "meta.json").read_text())["scaling"]
    assert scaling["representation"] == "relative"
    payload = read_metadata(MODEL.read_bytes())
    payload["scaling"] = scaling
    model = tmp_path / "relative.tflite"
    model.write_bytes(write_metadata(MODEL.read_bytes(), payload))
    result = fw.deploy(str(model), target="m55", ram_kb=32, backend="aot", data_dir=str(data), windows=24,
                       progress=False)
    assert result["input"] == "dbm_table"
    assert result["emissions_bit_exact"] and result["path_agreement"] == 1.0
