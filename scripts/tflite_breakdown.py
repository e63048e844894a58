#!/usr/bin/env python
"""Where a ``.tflite``'s bytes go: constant data, metadata, and the graph's own tables.

    python scripts/tflite_breakdown.py models/synth-house-a/32kb.tflite m16_step.tflite ...

Per file: total bytes; constant tensor data (weights, biases, shape vectors); the ``tinyloc``
metadata; everything else (operator and tensor tables, quantization parameters, names,
alignment), with the counts of operators and tensors and that rest per tensor. Prints a
markdown table, then the operator types by count.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def breakdown(path: Path) -> dict:
    from tinyloc_tf.compression.flatbuffer import read_model
    from tinyloc_tf.compression.metadata import metadata_bytes

    fb = read_model(path)
    constant = sum(len(fb.buffer_bytes(t.buffer)) for t in fb.tensors)
    meta = metadata_bytes(fb.buf)
    rest = len(fb.buf) - constant - meta
    return {
        "file": str(path), "bytes": len(fb.buf), "constant_bytes": constant, "metadata_bytes": meta,
        "graph_bytes": rest, "operators": len(fb.operators), "tensors": len(fb.tensors),
        "op_types": Counter(fb.op_name(op) for op in fb.operators),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help=".tflite files")
    args = parser.parse_args(argv)
    rows = [breakdown(m) for m in args.models]
    print("| file | bytes | constant data | metadata | graph tables, names, padding | operators | tensors | "
          "graph bytes per tensor |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['file']} | {r['bytes']:,} | {r['constant_bytes']:,} | {r['metadata_bytes']:,} | "
              f"{r['graph_bytes']:,} | {r['operators']} | {r['tensors']} | {r['graph_bytes'] / r['tensors']:.0f} |")
    print()
    for r in rows:
        ops = ", ".join(f"{name} {n}" for name, n in r["op_types"].most_common())
        print(f"- {r['file']}: {ops}")
    return 0


if __name__ == "__main__":
    from tinyloc_tf.errors import script_status

    raise SystemExit(script_status(main, "tflite_breakdown"))
