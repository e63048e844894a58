"""Streaming Mamba trained on the prepared windows vs on longer windows (``--train-steps``).

    .venv/bin/python scripts/compare_train_steps.py --data DIR --work DIR \
        --model mamba:16:1 --train-steps 0,60 --seeds 0,1,2 --reset-every 50

For every seed and every ``--train-steps`` value (0: the prepared windows) one ordinary run
(``tinyloc train ... --int8-friendly --train-steps N``, in ``WORK/steps<N>-seed<S>``), its
step model (``tinyloc convert RUN --streaming --quant Q``, ``--quant int16x8`` by default, or
``int8`` with per-tensor weights, ``int8-per-tensor``) and that model scored
over whole streams in host TFLM (``tinyloc evaluate --streaming``) on validation and on test,
with the state never reset and reset every ``--reset-every`` samples. Finished runs and
reports are reused, so an interrupted comparison resumes. Prints a markdown table of the mean
and standard deviation over seeds of fixed-lag Viterbi macro-F1 (lag ``--lag``); selection
between the rows belongs to validation, the test columns are read once per model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from compare_distill import mean_sd, model_spec  # scripts/ is on the path of a script it holds
from tinyloc_tf.cli import main as tinyloc


# --quant of this script -> the flags of `tinyloc convert --streaming`
QUANT_FLAGS = {"int16x8": ["--quant", "int16x8"], "int8": ["--quant", "int8"],
               "int8-per-tensor": ["--quant", "int8", "--per-tensor-weights"]}


def run(args: list[str]) -> None:
    status = tinyloc(args)
    if status != 0:
        raise SystemExit(f"tinyloc {' '.join(args)} failed with status {status}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder (windows of continuous runs)")
    parser.add_argument("--work", type=Path, required=True, help="folder for every run and report (resumable)")
    parser.add_argument("--model", type=model_spec, default=("mamba", 16, 1), help="FAMILY:H:L (default mamba:16:1)")
    parser.add_argument("--train-steps", default="0,60", help="comma-separated --train-steps values (0: prepared)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--reset-every", type=int, default=50, help="the state reset compared with never (default 50)")
    parser.add_argument("--lag", type=int, default=10, choices=(0, 5, 10, 20), help="fixed-lag Viterbi lag (default 10)")
    parser.add_argument("--quant", default="int16x8", choices=tuple(QUANT_FLAGS), help="step model (default int16x8)")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write every model's scores here")
    args = parser.parse_args()
    family, hidden, layers = args.model
    seeds = [int(s) for s in args.seeds.split(",")]
    steps_values = [int(n) for n in args.train_steps.split(",")]
    resets = {"never": None, f"every {args.reset_every}": args.reset_every}
    decoder = f"viterbi_lag{args.lag}"

    rows = {}
    for steps in steps_values:
        for seed in seeds:
            work = args.work / f"steps{steps}-seed{seed}"
            if not (work / "metrics.json").is_file():
                run(["train", "--data", str(args.data), "--model", family, "--hidden", str(hidden), "--layers",
                     str(layers), "--int8-friendly", "--epochs", str(args.epochs), "--patience", str(args.patience),
                     "--seed", str(seed), "--train-steps", str(steps), "--out", str(work), "--overwrite", "--quiet"])
            step_model = work / f"step-{args.quant}.tflite"
            if not step_model.is_file():
                run(["convert", str(work), *QUANT_FLAGS[args.quant], "--streaming", "--data", str(args.data),
                     "--out", str(step_model), "--overwrite"])
            for split in ("val", "test"):
                for name, every in resets.items():
                    report = work / f"stream-{args.quant}-{split}-reset-{every or 'never'}.json"
                    if not report.is_file():
                        extra = ["--reset-every", str(every)] if every else []
                        run(["evaluate", str(step_model), "--streaming", "--data", str(args.data), "--split", split,
                             "--run", str(work), *extra, "--out", str(report), "--quiet"])
                    score = json.loads(report.read_text())["decoders"][decoder]["macro_f1"]
                    rows.setdefault((steps, split, name), []).append(score)

    print(f"{family} H{hidden}L{layers}, {args.quant} step model in host TFLM, fixed-lag Viterbi (lag {args.lag}), "
          f"macro-F1 % over seeds {args.seeds}:\n")
    header = [f"{split} {name}" for split in ("val", "test") for name in resets]
    print("| --train-steps | " + " | ".join(header) + " |")
    print("|---|" + "---|" * len(header))
    for steps in steps_values:
        cells = [mean_sd(rows[(steps, split, name)]) for split in ("val", "test") for name in resets]
        print(f"| {steps or 'prepared windows'} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({f"{steps} {split} {name}": values
                                         for (steps, split, name), values in rows.items()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
