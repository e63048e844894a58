#!/usr/bin/env python
"""Does the float16 CRF of a step ``.tflite`` decode as its float32 original would?

    python scripts/measure_crf_precision.py STEP.tflite --data DATA --run RUN [--split test] [--reset-every 50]

``tinyloc convert`` stores the CRF rounded to float16 (``compression/metadata.py``). This runs
the step model over the split's streams in host TFLM once, then decodes the same emissions
with every online decoder twice: with the file's float16 CRF and with the float32 CRF of the
run's Keras model. Prints, per decoder, the share of samples whose room is the same, and both
macro-F1s, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tflite", type=Path, help="step model (tinyloc convert RUN --streaming)")
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder")
    parser.add_argument("--run", type=Path, required=True, help="training run the model was converted from")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--reset-every", type=int, default=None, help="zero the state every N samples")
    args = parser.parse_args(argv)

    import numpy as np

    from tinyloc_tf.compression.metadata import read_metadata
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.data.streams import split_streams
    from tinyloc_tf.deployment.streaming import StreamRunner, check_reset_every, decoder_names, score_decoded
    from tinyloc_tf.decoding import decode_stream
    from tinyloc_tf.training.artifacts import load_run

    check_reset_every(args.reset_every)
    meta = read_metadata(args.tflite)
    tagger, _ = load_run(args.run)
    crfs = {"float16 (file)": {k: np.asarray(meta["crf"][k], dtype=np.float32) for k in ("transitions", "start")},
            "float32 (run)": {k: np.asarray(getattr(tagger.crf, k), dtype=np.float32) for k in ("transitions", "start")}}
    dataset = load_prepared(args.data)
    streams = split_streams(dataset.split(args.split), name=args.split)
    runner = StreamRunner(args.tflite)
    emissions = [runner.run(s.X, args.reset_every)[1] for s in streams]
    classes = list(meta["classes"])
    report = {"model": str(args.tflite), "split": args.split, "reset_every": args.reset_every,
              "samples": int(sum(len(s) for s in streams)),
              "largest_rounding": max(float(np.abs(crfs["float16 (file)"][k] - crfs["float32 (run)"][k]).max())
                                      for k in ("transitions", "start")),
              "decoders": {}}
    for label, method, lag in decoder_names():
        paths = {name: np.concatenate([decode_stream(e, crf["transitions"], crf["start"], method, lag) for e in emissions])
                 for name, crf in crfs.items()}
        same = float(np.mean(paths["float16 (file)"] == paths["float32 (run)"]))
        report["decoders"][label] = {
            "same_room": same,
            **{f"macro_f1 {name}": score_decoded(emissions, streams, crf, classes, method, lag)["macro_f1"]
               for name, crf in crfs.items()},
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    from tinyloc_tf.errors import script_status

    raise SystemExit(script_status(main, "measure_crf_precision"))
