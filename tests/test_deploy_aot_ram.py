"""An AOT build that does not fit the RAM budget names the RAM it needs without a TFLM arena."""

from __future__ import annotations

import pytest

from tinyloc_tf.deployment import firmware as fw

needs_arm = pytest.mark.skipif(
    bool(fw.missing_tools()),
    reason=f"Cortex-M toolchain / QEMU missing ({', '.join(fw.missing_tools())}); see scripts/setup.sh",
)


@needs_arm
@pytest.mark.slow
def test_aot_ram_overflow_message_has_no_placeholder_arena(tmp_path):
    from helpers import fc_model_bytes

    model = tmp_path / "fc.tflite"
    model.write_bytes(fc_model_bytes())
    with pytest.raises(fw.RamBudgetError) as info:
        fw.deploy(str(model), target="m4", ram_kb=4, backend="aot", windows=2, out_dir=tmp_path / "build",
                  progress=False)
    message = str(info.value)
    assert "tensor arena" not in message, message
    assert "AOT arena included" in message and "smallest budget that links is --ram-kb" in message
