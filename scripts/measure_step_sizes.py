#!/usr/bin/env python
"""Flash and arena of the streaming step model for every Mamba size up to H32L2.

    python scripts/measure_step_sizes.py DATA [--hidden 1 2 4 8 16 32] [--layers 1 2] [--per-tensor-weights] [--out sizes.json]
        [--save-dir DIR]

Per (hidden, layers) of the paper's Mamba grid (int8-friendly, DATA's features and classes): the
step model converted to int8 and to int16x8 (``convert_streaming``, calibrated on DATA's training
streams, with the metadata `tinyloc convert` writes), and its flatbuffer size, operators, tensors, host-TFLM arena and state bytes, and
whether flash and arena both fit 32 KiB, and whether the flash is within the streaming goal's line
(1.2 B per parameter + 6 KiB), and the bytes of the copy the TFLM firmware embeds
(``export_c.firmware_model``: no tinyloc metadata, compact quantization, the arena plan) against
the same line. ``--per-tensor-weights`` converts with one scale per
weight tensor (``tinyloc convert --per-tensor-weights``). The models are left untrained (seeded):
sizes are the architecture's, less a few hundred bytes a trained model has and an untrained one
does not (its zero biases are equal arrays, stored once). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BUDGET_BYTES = 32 * 1024


def flash_line(params: int) -> float:
    """The streaming issue's flash goal for a step model: 1.2 B per parameter + 6 KiB."""
    return 1.2 * params + 6 * 1024


def measure(data_dir: Path, hidden, layers, calibration_steps: int, per_tensor_weights: bool = False,
            save_dir: Path | None = None) -> list[dict]:
    import keras
    from tqdm import tqdm

    from tinyloc_tf.compression.convert import data_metadata
    from tinyloc_tf.compression.flatbuffer import read_model
    from tinyloc_tf.compression.streaming import convert_streaming
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.data.streams import split_streams
    from tinyloc_tf.deployment.export_c import firmware_model
    from tinyloc_tf.deployment.host import find_arena_bytes
    from tinyloc_tf.models import build_model

    dataset = load_prepared(data_dir)
    streams = [s.X for s in split_streams(dataset.train, name="train")]
    rows = []
    for h, n_layers in tqdm([(h, n) for h in hidden for n in layers], desc="step models", unit="model"):
        keras.utils.set_random_seed(0)
        tagger = build_model("mamba", features=dataset.num_features, classes=dataset.num_classes, hidden=h,
                             layers=n_layers, steps=dataset.steps, int8_friendly=True)
        for quant in ("int8", "int16x8"):
            result = convert_streaming(tagger, streams, data_metadata(dataset), quant=quant,
                                       representative_size=calibration_steps, per_tensor_weights=per_tensor_weights)
            if save_dir is not None:  # for scripts/tflite_breakdown.py
                save_dir.mkdir(parents=True, exist_ok=True)
                (save_dir / f"H{h}L{n_layers}-{quant}.tflite").write_bytes(result.tflite)
            fb = read_model(result.tflite)
            arena = find_arena_bytes(result.tflite)
            firmware_bytes = len(firmware_model(result.tflite, {}, overwritable_inputs=range(1, len(fb.inputs))))
            rows.append({
                "hidden": h, "layers": n_layers, "quant": quant, "params": int(tagger.count_params()),
                "weights": "per-tensor" if per_tensor_weights else "per-channel",
                "flash_bytes": len(result.tflite), "arena_bytes": arena, "operators": len(fb.operators),
                "tensors": len(fb.tensors), "state_bytes": result.report["state_bytes"],
                "fits_32kb": len(result.tflite) <= BUDGET_BYTES and arena <= BUDGET_BYTES,
                "within_flash_line": len(result.tflite) <= flash_line(int(tagger.count_params())),
                "firmware_model_bytes": firmware_bytes,
                "firmware_within_flash_line": firmware_bytes <= flash_line(int(tagger.count_params())),
            })
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="prepared in-home dataset (features, classes, training streams)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--calibration-steps", type=int, default=256)
    parser.add_argument("--per-tensor-weights", action="store_true", help="one scale per weight tensor")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON")
    parser.add_argument("--save-dir", type=Path, help="also write each step model as DIR/H<h>L<l>-<quant>.tflite")
    args = parser.parse_args(argv)
    rows = measure(args.data, args.hidden, args.layers, args.calibration_steps, args.per_tensor_weights,
                   args.save_dir)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    print("| model | params | step model | flash B | B / param | TFLM arena B | operators | tensors | state B | "
          "fits 32 KiB | flash <= 1.2 B / param + 6 KiB | firmware copy B | firmware copy <= line |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        form = r["quant"] + (", per-tensor weights" if r["weights"] == "per-tensor" else "")
        print(f"| H{r['hidden']}L{r['layers']} | {r['params']:,} | {form} | {r['flash_bytes']:,} | "
              f"{r['flash_bytes'] / r['params']:.1f} | {r['arena_bytes']:,} | {r['operators']} | {r['tensors']} | "
              f"{r['state_bytes']:,} | {'yes' if r['fits_32kb'] else 'no'} | {'yes' if r['within_flash_line'] else 'no'} | "
              f"{r['firmware_model_bytes']:,} | {'yes' if r['firmware_within_flash_line'] else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
