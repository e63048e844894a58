#!/usr/bin/env python
"""Re-pack a sweep's converted files with today's packer, and update their recorded sizes.

    python scripts/repack_sweep.py SWEEP [SWEEP ...]
    tinyloc report SWEEP                      # then the report and its budget picks

For sweeps converted before ``tinyloc convert`` packed the file as it does now (shared tables,
one empty buffer, numbered feature names stored as their rule). Every ``variants/*.tflite``
under ``SWEEP/runs`` and ``SWEEP/refits`` is written again with
:func:`tinyloc_tf.compression.metadata.repack`; the graph, every constant and every metadata
value are checked to be the same (:func:`~tinyloc_tf.compression.flatbuffer.graph_content`), so
the scores recorded for the file still hold and are kept. ``flash_bytes`` and ``metadata_bytes``
in the variant's JSON are updated. A file that cannot be re-packed the same is left as it is
and the script fails naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def repack_file(path: Path) -> tuple[int, int]:
    """Re-pack ``path`` in place (and its JSON's sizes); ``(bytes before, bytes after)``."""
    from tinyloc_tf.atomic import write_atomic
    from tinyloc_tf.compression.flatbuffer import graph_content
    from tinyloc_tf.compression.metadata import METADATA_NAME, metadata_bytes, read_metadata, repack
    from tinyloc_tf.errors import TinylocError
    from tinyloc_tf.training.artifacts import json_bytes

    before = path.read_bytes()
    after = repack(before, str(path))
    (old_graph, old_entries), (new_graph, new_entries) = graph_content(before), graph_content(after)
    # The "tinyloc" entry is re-encoded: compared by its values, every other entry byte for byte.
    old_entries.pop(METADATA_NAME, None)
    has_metadata = new_entries.pop(METADATA_NAME, None) is not None
    if (old_graph, old_entries) != (new_graph, new_entries) or (
            has_metadata and read_metadata(before) != read_metadata(after)):
        raise TinylocError(f"{path}: re-packing changed the model's content; left as it is")
    record = path.with_suffix(".json")
    info = json.loads(record.read_text()) if record.exists() else None
    if info is not None and info.get("flash_bytes") not in (None, len(before), len(after)):
        raise TinylocError(f"{record}: flash_bytes {info['flash_bytes']} is not the size of {path.name} "
                           f"({len(before)} B); convert that variant again instead")
    write_atomic(path, after)
    if info is not None:
        info["flash_bytes"] = len(after)
        if has_metadata:
            info["metadata_bytes"] = metadata_bytes(after)
        write_atomic(record, json_bytes(info))
    return len(before), len(after)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", type=Path, nargs="+", help="sweep folders (tinyloc sweep --out)")
    args = parser.parse_args(argv)

    from tinyloc_tf.errors import TinylocError

    status = 0
    for sweep in args.sweeps:
        files = sorted(p for sub in ("runs", "refits") for p in (sweep / sub).glob("*/variants/*.tflite"))
        if not files:
            print(f"{sweep}: no runs/*/variants/*.tflite or refits/*/variants/*.tflite", file=sys.stderr)
            status = 1
            continue
        total_before = total_after = done = 0
        for path in files:
            try:
                before, after = repack_file(path)
            except TinylocError as exc:
                print(f"error: {exc}", file=sys.stderr)
                status = 1
                continue
            total_before += before
            total_after += after
            done += 1
        print(f"{sweep}: {done} of {len(files)} files re-packed, {total_before:,} -> {total_after:,} bytes")
    return status


if __name__ == "__main__":
    sys.exit(main())
