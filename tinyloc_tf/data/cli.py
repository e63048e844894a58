"""``tinyloc data ...``: fetch, prepare, synthesise and inspect datasets, and export samples.

    tinyloc data fetch uji|inhome [--dest DIR]
    tinyloc data prepare uji --source ZIP_OR_DIR --out DIR [--labels area|floor] [--seed N]
    tinyloc data prepare inhome --source ROOT --house A --out DIR [--seed N]
    tinyloc data synth --out DIR [--seed N] [--house A] [--floors 2] [--living-minutes M ...]
    tinyloc data info DIR [--json]
    tinyloc data samples inhome --source ROOT --house A --out SAMPLES.csv [--sessions living|fingerprint|all]

Loaders are imported inside the handlers so ``tinyloc --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tinyloc_tf.arguments import fraction, positive_float, positive_int, seed
from tinyloc_tf.atomic import check_output
from tinyloc_tf.data.inhome import SAMPLE_SESSIONS
from tinyloc_tf.data.representation import REPRESENTATION_HELP, REPRESENTATIONS
from tinyloc_tf.errors import TinylocError

DEFAULT_DEST = Path("data")
INHOME_ARCHIVE_NAME = "inhome_figshare.zip"
INHOME_FOLDER_NAME = "inhome"


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="fetch, prepare, synthesise and inspect datasets",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = data.add_subparsers(dest="data_command", metavar="VERB", required=True)

    fetch = verbs.add_parser("fetch", help="download a public dataset and verify its sha256")
    fetch.add_argument("dataset", choices=("uji", "inhome"))
    fetch.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="folder to download into (default: data)")
    fetch.set_defaults(handler=_fetch)

    prepare = verbs.add_parser("prepare", help="turn raw data into train/val/test .npz + meta.json")
    datasets = prepare.add_subparsers(dest="dataset", metavar="DATASET", required=True)

    uji = datasets.add_parser("uji", help="UJIIndoorLoc (UCI 310): T = 1, 520 access points")
    uji.add_argument("--source", type=Path, required=True, help="UJIndoorLoc.zip or a folder with the two CSVs")
    uji.add_argument("--out", type=Path, required=True, help="output folder (must be new or empty; see --overwrite)")
    uji.add_argument("--overwrite", action="store_true", help="replace an existing --out (never the --source)")
    uji.add_argument("--labels", choices=("area", "floor"), default="area",
                     help="area: 59 coordinate areas per building-floor (default); floor: 13 building-floors")
    uji.add_argument("--seed", type=seed, default=0, help="seed of the train/val split (default 0)")
    uji.add_argument("--val-fraction", type=fraction, default=0.25, help="share of trainingData for val (default 0.25)")
    uji.add_argument("--areas", type=positive_int, default=59, help="number of areas for --labels area (default 59)")
    uji.add_argument("--split", choices=("grouped", "stratified"), default="grouped",
                     help="grouped: hold out whole (user, phone) groups for val (default; predicts the test "
                          "split); stratified: the paper's random 75/25")
    uji.add_argument("--representation", choices=REPRESENTATIONS, default="powed", help=REPRESENTATION_HELP)
    uji.set_defaults(handler=_prepare_uji)

    inhome = datasets.add_parser("inhome", help="in-home BLE RSSI (Byrne et al. 2018 layout): T = 20")
    inhome.add_argument("--source", type=Path, required=True, help="folder holding house_A .. house_D")
    inhome.add_argument("--house", required=True, help="house letter, e.g. A")
    inhome.add_argument("--out", type=Path, required=True, help="output folder (must be new or empty; see --overwrite)")
    inhome.add_argument("--overwrite", action="store_true", help="replace an existing --out (never the --source)")
    inhome.add_argument("--seed", type=seed, default=0, help="seed of the train/val block split (default 0)")
    inhome.add_argument("--val-fraction", type=fraction, default=0.25, help="share of fingerprint data for val")
    inhome.add_argument("--block-seconds", type=positive_float, default=None,
                        help="length of the contiguous fingerprint blocks the split draws (default 60)")
    inhome.add_argument("--representation", choices=REPRESENTATIONS, default="powed", help=REPRESENTATION_HELP)
    inhome.set_defaults(handler=_prepare_inhome)

    synth = verbs.add_parser("synth", help="write a synthetic house in the raw in-home layout")
    synth.add_argument("--out", type=Path, required=True, help="root folder; the house goes to OUT/house_<H>")
    synth.add_argument("--seed", type=seed, default=0, help="same seed, byte-identical files (default 0)")
    synth.add_argument("--house", default="A", help="house letter (default A)")
    synth.add_argument("--floors", type=positive_int, default=2, help="one or two floors (default 2)")
    synth.add_argument("--fingerprint-sessions", type=positive_int, help="scripted walks (default 3)")
    synth.add_argument("--fingerprint-minutes", type=positive_float, help="total minutes of scripted walks (default 30)")
    synth.add_argument("--living-sessions", type=positive_int, help="free-living sessions (default 2)")
    synth.add_argument("--living-minutes", type=positive_float, help="total free-living minutes (default 40)")
    synth.add_argument("--overwrite", action="store_true", help="replace an existing OUT/house_<H>")
    synth.add_argument("--conventions", choices=("plain", "real"), default="plain",
                       help="real: files as the public code shows the archive's (room names in ap_rooms.dat, "
                            "activity tags, zoned timestamps; docs/inhome.md); same windows (default plain)")
    synth.set_defaults(handler=_synth)

    samples = verbs.add_parser(
        "samples", help="an in-home house's sessions as one CSV of 5 Hz samples in dBm (what tinyloc predict reads)")
    samples.add_argument("dataset", choices=("inhome",), help="the in-home layout (UJIIndoorLoc's CSVs are samples already)")
    samples.add_argument("--source", type=Path, required=True, help="folder holding house_A .. house_D")
    samples.add_argument("--house", required=True, help="house letter, e.g. A")
    samples.add_argument("--sessions", choices=SAMPLE_SESSIONS, default="living",
                         help="living (free-living: the test split; default), fingerprint (train and val) or all")
    samples.add_argument("--out", type=Path, required=True, help="CSV file to write")
    samples.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    samples.set_defaults(handler=_samples)

    info = verbs.add_parser("info", help="counts per split and per class of a prepared folder")
    info.add_argument("dir", type=Path, help="prepared dataset folder")
    info.add_argument("--json", action="store_true", help="print JSON instead of tables")
    info.set_defaults(handler=_info)


def _samples(args) -> int:
    from tinyloc_tf.atomic import write_atomic
    from tinyloc_tf.data.inhome import session_samples

    check_output(args.out, overwrite=args.overwrite, inputs=(args.source,), kind="file")
    table = session_samples(args.source, args.house, args.sessions, progress=_progress())
    write_atomic(args.out, table.to_csv(index=False).encode())
    print(f"{args.out}: {len(table)} samples of {table['session'].nunique()} sessions "
          f"({', '.join(table['session'].unique())}), {len(table.columns) - 3} access points")
    print(f"next: tinyloc predict MODEL.tflite --input {args.out} --stream-column session --out ROOMS.csv")
    return 0


def _progress() -> bool:
    return sys.stderr.isatty()


def _fetch(args) -> int:
    if args.dest.exists() and not args.dest.is_dir():
        raise TinylocError(f"--dest {args.dest} is a file; --dest names the folder to download into")
    if args.dataset == "uji":
        from tinyloc_tf.data.uji import fetch_uji

        path = fetch_uji(args.dest, progress=_progress())
        print(f"{path}: verified UJIIndoorLoc archive")
        print(f"next: tinyloc data prepare uji --source {path} --out {args.dest / 'uji'}")
        return 0

    import zipfile

    from tinyloc_tf.data import inhome
    from tinyloc_tf.data.download import download, extract_zip

    target = args.dest / INHOME_ARCHIVE_NAME
    root = args.dest / INHOME_FOLDER_NAME
    hint = (f"Download it from {inhome.INHOME_FIGSHARE_URL} (figshare doi 10.6084/m9.figshare.6051794), "
            f"unpack it so that house_A .. house_D sit in one folder, and pass that folder to "
            f"`tinyloc data prepare inhome --source`")
    path = download(inhome.INHOME_FIGSHARE_URL, target, sha256=inhome.INHOME_SHA256,
                    manual_hint=hint, progress=_progress())
    if inhome.INHOME_SHA256 is None:
        from tinyloc_tf.data.prepared import sha256_file

        print(f"{path}: no published sha256 to check against; this file's is {sha256_file(path)}")
    if zipfile.is_zipfile(path) and not root.exists():
        extract_zip(path, root)
    print(f"{path}: downloaded" + (f", unpacked into {root}" if root.exists() else ""))
    print(f"next: tinyloc data prepare inhome --source {root if root.exists() else path} --house A "
          f"--out {args.dest / 'inhome_A'}")
    return 0


def _prepare_uji(args) -> int:
    from tinyloc_tf.data.uji import prepare_uji

    check_output(args.out, overwrite=args.overwrite, inputs=(args.source,), kind="folder")
    out = prepare_uji(args.source, args.out, labels=args.labels, seed=args.seed,
                      val_fraction=args.val_fraction, areas=args.areas, split=args.split,
                      representation=args.representation, progress=_progress(),
                      overwrite=args.overwrite)
    _print_summary(out)
    return 0


def _prepare_inhome(args) -> int:
    from tinyloc_tf.data.inhome import prepare_inhome

    options = {} if args.block_seconds is None else {"block_seconds": args.block_seconds}
    check_output(args.out, overwrite=args.overwrite, inputs=(args.source,), kind="folder")
    out = prepare_inhome(args.source, args.house, args.out, seed=args.seed, val_fraction=args.val_fraction,
                         representation=args.representation, progress=_progress(), overwrite=args.overwrite,
                         **options)
    _print_summary(out)
    from tinyloc_tf.data.inhome import report_lines

    print("\n".join(report_lines(json.loads((out / "meta.json").read_text()))))
    return 0


def _synth(args) -> int:
    from tinyloc_tf.data.synth import synthesize_house

    knobs = ("fingerprint_sessions", "fingerprint_minutes", "living_sessions", "living_minutes")
    options = {name: getattr(args, name) for name in knobs if getattr(args, name) is not None}
    path = synthesize_house(args.out, seed=args.seed, house=args.house, floors=args.floors,
                            overwrite=args.overwrite, conventions=args.conventions, **options)
    print(f"{path}: synthetic house {args.house} (seed {args.seed})")
    print(f"next: tinyloc data prepare inhome --source {args.out} --house {args.house} --out DIR")
    return 0


def _print_summary(out: Path) -> None:
    from tinyloc_tf.data import load_prepared

    data = load_prepared(out)
    counts = ", ".join(f"{name} {len(data.split(name))}" for name in ("train", "val", "test"))
    print(f"{out}: {counts}; T={data.steps}, F={data.num_features}, {data.num_classes} classes "
          f"({data.meta['labels']})")


def summarize(path: str | Path) -> dict:
    """Counts per split and per class (labelled time steps) of a prepared folder."""
    from tinyloc_tf.data.prepared import SPLITS, class_counts, load_prepared

    data = load_prepared(path)
    per_class = {name: class_counts(data.split(name), data.num_classes).tolist() for name in SPLITS}
    return {
        "path": str(path),
        "dataset": data.meta.get("dataset"),
        "labels": data.meta["labels"],
        "source": data.meta["source"],
        "source_sha256": data.meta["source_sha256"],
        "T": data.steps,
        "F": data.num_features,
        "samples": {name: len(data.split(name)) for name in SPLITS},
        **({"phones": {key: data.meta["uji"][key] for key in ("scans_per_phone", "test_scans_by_phone_seen")}}
           if "scans_per_phone" in data.meta.get("uji", {}) else {}),
        "steps": {name: int(data.split(name).y.size) for name in SPLITS},
        "classes": {
            cls: {name: per_class[name][index] for name in SPLITS}
            for index, cls in enumerate(data.class_names)
        },
    }


def _info(args) -> int:
    summary = summarize(args.dir)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    splits = list(summary["samples"])
    print(f"{summary['path']}: {summary['dataset'] or 'dataset'}, labels {summary['labels']}")
    print(f"source: {summary['source']} (sha256 {summary['source_sha256']})")
    print(f"T = {summary['T']}, F = {summary['F']}, classes = {len(summary['classes'])}")
    width = max([len("samples")] + [len(name) for name in summary["classes"]]) + 2
    print()
    print(f"{'split':<{width}}" + "".join(f"{name:>10}" for name in splits))
    print(f"{'samples':<{width}}" + "".join(f"{summary['samples'][name]:>10}" for name in splits))
    print(f"{'steps':<{width}}" + "".join(f"{summary['steps'][name]:>10}" for name in splits))
    if "phones" in summary:
        per_phone, seen = summary["phones"]["scans_per_phone"], summary["phones"]["test_scans_by_phone_seen"]
        print(f"{'phones':<{width}}" + "".join(f"{len(per_phone[name]):>10}" for name in splits))
        print(f"test scans by phone: {seen['in_train']} on a phone of train, {seen['in_val_only']} on one of "
              f"val only, {seen['in_neither']} on one of neither")
    print()
    print(f"{'class':<{width}}" + "".join(f"{name:>10}" for name in splits))
    for cls, counts in summary["classes"].items():
        print(f"{cls:<{width}}" + "".join(f"{counts[name]:>10}" for name in splits))
    return 0
