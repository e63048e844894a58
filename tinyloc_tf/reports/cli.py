"""``tinyloc report``: tables and plots of a finished (or partly finished) sweep.

    tinyloc report SWEEP [--out DIR]

Writes ``results.csv``, ``report.md``, ``f1_vs_size.png``, ``confusion_<budget>kb.png``
and (windowed data) ``timeline.png`` into the sweep folder or ``--out``. See docs/sweeps.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyloc_tf.arguments import positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="results.csv, report.md (best per 32/64 KiB budget, paper tables) and plots of a sweep",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sweep", type=Path, help="sweep folder made by `tinyloc sweep`")
    parser.add_argument("--out", type=Path, help="folder for the report (default: the sweep folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace a report (report.md, results.csv, the plots) already in that folder")
    parser.add_argument("--timeline-windows", type=positive_int, default=60,
                        help="test windows stitched into the timeline plot (default 60)")
    parser.add_argument("--seeds-of", type=Path, nargs="+", default=[], metavar="SWEEP",
                        help="the same sweep command run with other --seed values: the best per budget on the mean "
                             "validation macro-F1 over SWEEP and these (as scripts/ship_models.py --seeds-of ships it)")
    parser.set_defaults(handler=_report)


def _report(args) -> int:
    from tinyloc_tf.errors import TinylocError
    from tinyloc_tf.reports.report import existing_report_files, write_report

    existing = existing_report_files(args.out or args.sweep)
    if existing and not args.overwrite:
        raise TinylocError(f"{existing[0]} already exists{f' (and {len(existing) - 1} more the report writes)' if len(existing) > 1 else ''}; "
                           "pass --overwrite to write the report again, or choose another --out")
    report = write_report(args.sweep, args.out, timeline_windows=args.timeline_windows, seeds_of=args.seeds_of)
    print(report)
    return 0
