"""In-home BLE RSSI (Byrne et al., Scientific Data 2018; figshare 6051794): parse the raw
layout, label by time, resample, window, split by time blocks, scale.

Raw layout (``docs/inhome.md`` has every file and column, with the public code showing it;
``inhome_raw`` reads and checks them)::

    ROOT/house_A/metadata/room_names.dat      room id, room name          (no header)
                          room_tags.dat       room id, tag, tag, ...      (no header)
                          ap_coordinates.dat  ap id, x, y, z              (no header; AP order)
                          ap_rooms.dat        ap id, room name or id      (no header)
                          act_desc.dat        activity tag, description   (no header; optional)
    ROOT/house_A/experiments/<session>/rx_wearable_data.dat   timestamp, ap_id, wearable_id, rssi
                                       tag_annotations.dat    timestamp, ..., tag, ...
                                       ap_mac_ref.dat         ap_id, ap_mac_address (optional)

Sessions named ``living_*`` are free-living (the test split); every other session is a
scripted fingerprint walk (train and validation).

Preprocessing, per session:

1. Grid: 5 Hz steps. Step ``k`` stands for the interval ``[t_k, t_k + 200 ms)`` with
   ``t_k`` a multiple of 200 ms since the Unix epoch; the grid runs from the step of the first
   packet to the step of the last packet of the session (any access point), at most 1.7 s
   outside the span of its location annotations (``inhome_raw.SPAN_MARGIN_MS``).
2. Resample: an AP's value at a step is the mean RSSI (dBm) of its packets in that interval.
3. Forward-fill: a step with no packet from an AP repeats that AP's last value for at most
   5 steps (1 s) after the step that held it; later steps, and steps before the AP's first
   packet, are -120 dBm ("not heard").
4. Label: step ``k`` takes the room of the annotation nearest in time to ``t_k`` if that
   annotation lies strictly less than 500 ms away (ties go to the earlier annotation); the
   annotation names a floor tag and ``room_tags.dat`` maps the tag to its room (annotations of
   activity tags, or tags in no or two rooms, label nothing and are counted). A step with no
   annotation that close is unlabelled.
5. Windows: 20 steps (4 s), hop 10 (50 % overlap), never across sessions or split blocks.
   Windows holding any unlabelled step are dropped and counted.

Fingerprint sessions are cut into contiguous blocks (60 s by default); a seeded choice puts
``val_fraction`` of the blocks into validation, giving validation a block of every room it
can without taking a room's last training block (``assign_val_blocks``). Where a train block meets a validation
block, 5 steps (1 s, the forward-fill reach) on each side stay out of every window, so no
validation input repeats a training packet. Min-max scaling (per AP, dBm) is fitted on the
training windows only; validation and test are clipped to [0, 1].
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyloc_tf.data.inhome_raw import (
    COUNT_KEYS, FFILL_STEPS, MATCH_MS, STEP_MS, Session, iso, natural_key, read_metadata,
    read_session, session_kind,
)
from tinyloc_tf.data.representation import fit_representation
from tinyloc_tf.errors import DataError

# figshare serves the whole article (all four houses) as one zip; the archive is not
# reachable from the machines this was written on, so its digest is unknown.
INHOME_FIGSHARE_URL = "https://ndownloader.figshare.com/articles/6051794/versions/1"
INHOME_SHA256: str | None = None
INHOME_DOI = "10.6084/m9.figshare.6051794.v1"

NOT_HEARD_DBM = -120.0  # below any real reading
WINDOW_STEPS = 20  # 4 s
HOP_STEPS = 10  # 50 % overlap
BLOCK_SECONDS = 60.0  # fingerprint split block length
GAP_STEPS = FFILL_STEPS  # guard at each side of a train/val boundary


# ----------------------------------------------------------------------------- preprocessing


@dataclass
class Grid:
    """One session on the 5 Hz grid: raw dBm values and a label per step (-1 = unlabelled)."""

    start_ms: int  # time of step 0
    X: np.ndarray  # float32 [S, F] dBm
    y: np.ndarray  # int64 [S]
    counts: dict


def resample(t_ms: np.ndarray, ap: np.ndarray, rssi: np.ndarray, num_aps: int,
             span_ms: tuple[int, int] | None = None) -> tuple[int, np.ndarray, dict]:
    """Packets -> ``(start_ms, X [S, F] dBm, counts)``: mean per AP and 200 ms step,
    forward-filled for up to 1 s, -120 dBm beyond. The grid runs from the step of ``span_ms[0]``
    to that of ``span_ms[1]`` (default: the first and last packet), which must hold every packet."""
    import pandas as pd

    step = t_ms // STEP_MS
    first, last = (int(step.min()), int(step.max())) if span_ms is None else (
        span_ms[0] // STEP_MS, span_ms[1] // STEP_MS)
    steps = last - first + 1
    cell = (step - first) * num_aps + ap
    total = np.bincount(cell, weights=rssi, minlength=steps * num_aps)
    heard = np.bincount(cell, minlength=steps * num_aps)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(heard > 0, total / np.maximum(heard, 1), np.nan).reshape(steps, num_aps)
    filled = pd.DataFrame(mean).ffill(limit=FFILL_STEPS).to_numpy()
    observed = int((heard > 0).sum())
    forward = int(np.isfinite(filled).sum()) - observed
    X = np.where(np.isfinite(filled), filled, NOT_HEARD_DBM).astype(np.float32)
    counts = {
        "cells_observed": observed,
        "cells_forward_filled": forward,
        "cells_not_heard": int(X.size - observed - forward),
        "rows_averaged_into_steps": int(len(t_ms) - observed),
    }
    return first * STEP_MS, X, counts


def label_steps(step_ms: np.ndarray, ann_ms: np.ndarray, ann_class: np.ndarray,
                match_ms: int = MATCH_MS) -> np.ndarray:
    """Class of the nearest annotation strictly within ``match_ms`` of each step time
    (ties: the earlier annotation), else -1. ``ann_ms`` must be sorted."""
    right = np.searchsorted(ann_ms, step_ms, side="left")  # first annotation at or after the step
    left = right - 1
    far = np.iinfo(np.int64).max
    d_left = np.where(left >= 0, step_ms - ann_ms[np.clip(left, 0, None)], far)
    d_right = np.where(right < len(ann_ms), ann_ms[np.clip(right, None, len(ann_ms) - 1)] - step_ms, far)
    use_left = d_left <= d_right
    nearest = np.where(use_left, left, right)
    distance = np.where(use_left, d_left, d_right)
    return np.where(distance < match_ms, ann_class[np.clip(nearest, 0, len(ann_ms) - 1)], -1).astype(np.int64)


def session_grid(session: Session, num_aps: int) -> Grid:
    start, X, counts = resample(session.t_ms, session.ap, session.rssi, num_aps, session.span_ms)
    step_ms = start + STEP_MS * np.arange(len(X), dtype=np.int64)
    y = label_steps(step_ms, session.ann_ms, session.ann_class)
    # Annotations that label no step (none within 500 ms of the grid) are reported, not used.
    used = np.zeros(len(session.ann_ms), dtype=bool)
    idx = np.searchsorted(step_ms, session.ann_ms)
    for candidate in (idx - 1, idx):
        ok = (candidate >= 0) & (candidate < len(step_ms))
        gap = np.abs(session.ann_ms - step_ms[np.clip(candidate, 0, len(step_ms) - 1)])
        used |= ok & (gap < MATCH_MS)
    counts.update({
        "steps": int(len(X)),
        "steps_unlabelled": int((y < 0).sum()),
        "annotations_matching_no_step": int((~used).sum()),
    })
    return Grid(start_ms=start, X=X, y=y, counts=counts)


def window_starts(lo: int, hi: int, steps: int = WINDOW_STEPS, hop: int = HOP_STEPS) -> np.ndarray:
    """Starts of the windows that fit in steps ``[lo, hi)``: ``lo, lo + hop, ...``."""
    return np.arange(lo, hi - steps + 1, hop, dtype=np.int64)


def assign_val_blocks(block_classes: list[set[int]], val_fraction: float, seed: int) -> np.ndarray:
    """Pick ``round(val_fraction * n)`` of ``n`` blocks (at least 1, at most n - 1) for
    validation, seeded. ``block_classes[i]``: the rooms labelled in block ``i``.

    A block is *safe* to take when every room in it keeps at least one training block.
    Rooms are visited rarest first: a room with no block in validation yet gets one of its
    safe blocks, at random. The remaining picks are random safe blocks, then (only if the safe
    ones run out) any blocks.
    """
    n = len(block_classes)
    n_val = min(max(int(round(val_fraction * n)), 1), n - 1)
    rng = np.random.default_rng(seed)
    is_val = np.zeros(n, dtype=bool)
    holders: dict[int, list[int]] = {}
    for block, classes in enumerate(block_classes):
        for c in classes:
            holders.setdefault(c, []).append(block)

    def safe(block: int) -> bool:
        return all(any(b != block and not is_val[b] for b in holders[c]) for c in block_classes[block])

    for c in sorted(holders, key=lambda k: (len(holders[k]), k)):
        if is_val.sum() >= n_val:
            break
        if is_val[holders[c]].any():
            continue
        options = [b for b in holders[c] if safe(b)]
        if options:
            is_val[options[int(rng.integers(len(options)))]] = True
    order = rng.permutation(n)
    for only_safe in (True, False):
        for block in order:
            if is_val.sum() >= n_val:
                break
            if not is_val[block] and (safe(block) or not only_safe):
                is_val[block] = True
    return is_val


def _segments(is_val: np.ndarray, gap: int):
    """Runs of equal split in one session: ``(a, b, lo, hi, val)`` with ``[lo, hi)`` the run
    ``[a, b)`` less ``gap`` steps at each side that borders the other split (empty, ``lo == hi``,
    when the run is shorter than its guards)."""
    n = len(is_val)
    bounds = [0, *(np.flatnonzero(np.diff(is_val.astype(np.int8))) + 1).tolist(), n]
    for a, b in zip(bounds[:-1], bounds[1:]):
        lo = a + (gap if a > 0 else 0)
        hi = b - (gap if b < n else 0)
        lo = min(lo, b)
        yield a, b, lo, max(hi, lo), bool(is_val[a])


# ----------------------------------------------------------------------------- prepare


def find_house(source: str | os.PathLike, house: str) -> Path:
    """``source/house_<X>``, or ``source`` itself when it is named ``house_<X>``."""
    source = Path(source)
    letter = house[len("house_"):] if house.lower().startswith("house_") else house
    name = f"house_{letter}"
    if not source.exists():
        raise DataError(f"{source}: not found (expected a folder holding {name}/metadata and "
                        f"{name}/experiments; `tinyloc data synth` writes one)")
    if source.is_file():
        raise DataError(f"{source}: is a file; unpack the figshare archive and pass the folder "
                        f"that holds {name}/")
    if (source / name).is_dir():
        return source / name
    if source.name.lower() == name.lower():
        return source
    found = sorted(p.name for p in source.iterdir() if p.is_dir() and p.name.lower().startswith("house_"))
    same = [folder for folder in found if folder.lower() == name.lower()]
    if len(same) == 1:  # house_a: the dataset authors' own paths use either case
        return source / same[0]
    raise DataError(f"{source / name}: missing house folder (found: {', '.join(found) or 'none'})")


def sha256_files(root: Path, files: list[Path]) -> str:
    """One digest over ``relative path + file sha256`` of every raw file read, in path order."""
    from tinyloc_tf.data.prepared import sha256_file

    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.relative_to(root).as_posix()):
        digest.update(f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def _add(total: dict, part: dict) -> None:
    for key, value in part.items():
        total[key] = total.get(key, 0) + value


def house_sessions(source: str | os.PathLike, house: str):
    """``(house folder, its metadata, its experiments folder, session names in natural order)``."""
    house_dir = find_house(source, house)
    metadata = read_metadata(house_dir)
    experiments = house_dir / "experiments"
    if not experiments.is_dir():
        raise DataError(f"{experiments}: missing experiments folder")
    names = sorted((p.name for p in experiments.iterdir() if p.is_dir()), key=natural_key)
    if not names:
        raise DataError(f"{experiments}: no session folders")
    return house_dir, metadata, experiments, names


def prepare_inhome(
    source: str | os.PathLike,
    house: str,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    val_fraction: float = 0.25,
    block_seconds: float = BLOCK_SECONDS,
    representation: str = "powed",
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Prepare one house of the in-home layout under ``source`` into the contract folder ``out``.

    ``representation``: how dBm become inputs (``tinyloc_tf.data.representation``); for
    ``minmax`` an AP constant in training (typically never heard) uses the physical range.

    ``X`` is ``[N, 20, F]`` (F = access points, metadata order), ``y`` is ``[N, 20]`` (room per
    step). Fingerprint sessions give train/val, ``living_*`` sessions give test.
    """
    from tqdm.auto import tqdm

    from tinyloc_tf.data.prepared import Split, write_prepared

    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    block_steps = int(round(block_seconds * 1000 / STEP_MS))
    if block_steps < WINDOW_STEPS + 2 * GAP_STEPS:
        raise DataError(f"block_seconds={block_seconds} is too short: a block must hold a "
                        f"{WINDOW_STEPS * STEP_MS / 1000:g} s window plus {GAP_STEPS * STEP_MS / 1000:g} s "
                        f"guards on both sides")

    house_dir, metadata, experiments, names = house_sessions(source, house)
    kinds = {name: session_kind(name) for name in names}
    for kind, role in (("fingerprint", "train/val"), ("living", "test")):
        if kind not in kinds.values():
            what = "living_* (free-living)" if kind == "living" else "fingerprint (any name not living_*)"
            raise DataError(f"{experiments}: no {what} session, needed for {role}")

    num_aps = len(metadata.ap_ids)
    files: list[Path] = []  # session files; the metadata's are added once all are read
    grids: dict[str, Grid] = {}
    sessions: dict[str, Session] = {}
    for name in tqdm(names, desc=f"prepare inhome house_{house_dir.name[6:]}", unit="session",
                     disable=not progress):
        session = read_session(experiments / name, metadata)
        files.extend(session.files)
        sessions[name] = session
        grids[name] = session_grid(session, num_aps)

    # Fingerprint blocks: every session is cut at multiples of block_steps from its start.
    fingerprint = [name for name in names if kinds[name] == "fingerprint"]
    blocks: list[tuple[str, int, int]] = []
    for name in fingerprint:
        n = len(grids[name].X)
        blocks.extend((name, a, min(a + block_steps, n)) for a in range(0, n, block_steps))
    if len(blocks) < 2:
        raise DataError(f"{experiments}: the fingerprint sessions hold {len(blocks)} block of "
                        f"{block_seconds:g} s; a train/val split needs at least 2")
    block_classes = [set(np.unique(grids[n].y[a:b][grids[n].y[a:b] >= 0]).tolist()) for n, a, b in blocks]
    block_val = assign_val_blocks(block_classes, val_fraction, seed)
    step_val = {name: np.zeros(len(grids[name].X), dtype=bool) for name in fingerprint}
    for (name, a, b), val in zip(blocks, block_val):
        step_val[name][a:b] = val

    out_X = {"train": [], "val": [], "test": []}
    out_y = {"train": [], "val": [], "test": []}
    removed = {"windows_with_unlabelled_steps": {"train": 0, "val": 0, "test": 0},
               "steps_in_split_guards": 0, "steps_in_no_window": 0}
    grid_counts: dict = {}
    session_info = []
    for name in names:
        grid = grids[name]
        n = len(grid.X)
        if kinds[name] == "living":
            is_val = None
            runs = [(0, n, 0, n, None)]
        else:
            is_val = step_val[name]
            runs = list(_segments(is_val, GAP_STEPS))
        covered = np.zeros(n, dtype=bool)
        windows = {"train": 0, "val": 0, "test": 0}
        unlabelled_windows = 0
        for a, b, lo, hi, val in runs:
            split = "test" if val is None else ("val" if val else "train")
            removed["steps_in_split_guards"] += (lo - a) + (b - hi)
            for s in window_starts(lo, hi):
                labels = grid.y[s:s + WINDOW_STEPS]
                if (labels < 0).any():
                    removed["windows_with_unlabelled_steps"][split] += 1
                    unlabelled_windows += 1
                    continue
                out_X[split].append(grid.X[s:s + WINDOW_STEPS])
                out_y[split].append(labels)
                covered[s:s + WINDOW_STEPS] = True
                windows[split] += 1
        removed["steps_in_no_window"] += int((~covered).sum())
        _add(grid_counts, grid.counts)
        session = sessions[name]
        session_info.append({
            "name": name,
            "kind": kinds[name],
            "start": iso(grid.start_ms),
            "steps": n,
            "wearables": session.wearables,
            "wearable": session.wearable,
            "val_steps": int(is_val.sum()) if is_val is not None else 0,
            "windows": windows,
            # What was read, set aside, left unlabelled and filled (docs/inhome.md, "Accounting").
            "rows": {key: int(session.counts[key]) for key in COUNT_KEYS},
            "rssi_rows_used": int(len(session.t_ms)),
            "annotation_rows_used": int(len(session.ann_ms)),
            "annotations_matching_no_step": int(grid.counts["annotations_matching_no_step"]),
            "steps_unlabelled": int(grid.counts["steps_unlabelled"]),
            "windows_with_unlabelled_steps": unlabelled_windows,
            "cells_observed": int(grid.counts["cells_observed"]),
            "cells_forward_filled": int(grid.counts["cells_forward_filled"]),
            "cells_not_heard": int(grid.counts["cells_not_heard"]),
            "notes": list(session.notes),
        })

    stacked = {}
    for split in out_X:
        if not out_X[split]:
            raise DataError(f"{house_dir}: no {split} window survived (every window held unlabelled "
                            f"steps or the sessions are shorter than {WINDOW_STEPS * STEP_MS / 1000:g} s)")
        stacked[split] = (np.stack(out_X[split]), np.stack(out_y[split]).astype(np.int32))

    encoding, constant = fit_representation(representation, stacked["train"][0], NOT_HEARD_DBM)
    splits, clipped = {}, {}
    for split, (X, y) in stacked.items():
        scaled, clipped[split] = encoding.apply(X)
        splits[split] = Split(scaled, y)

    meta = {
        "dataset": "inhome",
        "house": house_dir.name[len("house_"):],
        # The synthetic house leaves its generator parameters beside the raw files.
        "synthetic": (house_dir / "synthetic.json").is_file(),
        "features": metadata.feature_names,
        "classes": list(metadata.room_names),
        "T": WINDOW_STEPS,
        "labels": "room",
        "scaling": {
            **encoding.to_meta(),
            "constant_in_train": [metadata.feature_names[i] for i in np.flatnonzero(constant)],
        },
        "source": str(house_dir.resolve()),
        "source_sha256": sha256_files(house_dir, metadata.files + files),
        "source_files": len(metadata.files) + len(files),
        "preprocessing": {
            "step_ms": STEP_MS,
            "forward_fill_ms": FFILL_STEPS * STEP_MS,
            "not_heard_dbm": NOT_HEARD_DBM,
            "window_steps": WINDOW_STEPS,
            "hop_steps": HOP_STEPS,
            "annotation_match_ms": MATCH_MS,
            "rule": "step k = [t_k, t_k + 200 ms), t_k a multiple of 200 ms; value = mean RSSI of the "
                    "AP's packets in it, else its last value for up to 1 s, else -120; label = room of "
                    "the annotation nearest t_k if strictly under 500 ms away (ties: earlier), else none; "
                    "windows with an unlabelled step are dropped",
        },
        "split": {
            "seed": int(seed),
            "val_fraction": float(val_fraction),
            "block_seconds": float(block_seconds),
            "blocks": len(blocks),
            "val_blocks": int(block_val.sum()),
            "val_block_steps": [[name, a, b] for (name, a, b), val in zip(blocks, block_val) if val],
            "guard_steps": GAP_STEPS,
            "train": "fingerprint blocks not drawn for val, less guards",
            "val": "fingerprint blocks drawn (seeded, rare rooms first), less guards",
            "test": "all living_* sessions",
        },
        "aps": [
            {"id": ap, "feature": feature,
             "room": None if metadata.ap_class[ap] is None else metadata.room_names[metadata.ap_class[ap]]}
            for ap, feature in zip(metadata.ap_ids, metadata.feature_names)
        ],
        "sessions": session_info,
        "removed": {
            **removed,
            "annotations_matching_no_step": int(grid_counts["annotations_matching_no_step"]),
        },
        "inhome": {
            "rows": {key: int(sum(s.counts[key] for s in sessions.values())) for key in COUNT_KEYS},
            "rssi_rows_used": int(sum(len(s.t_ms) for s in sessions.values())),
            "annotation_rows_used": int(sum(len(s.ann_ms) for s in sessions.values())),
            "rssi_rows_averaged_into_steps": int(grid_counts["rows_averaged_into_steps"]),
            "steps": int(grid_counts["steps"]),
            "steps_unlabelled": int(grid_counts["steps_unlabelled"]),
            "cells_observed": int(grid_counts["cells_observed"]),
            "cells_forward_filled": int(grid_counts["cells_forward_filled"]),
            "cells_not_heard": int(grid_counts["cells_not_heard"]),
            "cells_clipped": clipped,
            "warnings": list(metadata.warnings),
        },
    }
    return write_prepared(out, splits, meta, overwrite=overwrite)


# ----------------------------------------------------------------------------- samples

#: Which sessions ``session_samples`` exports: the free-living ones (the test split), the
#: fingerprint walks (train and val) or all.
SAMPLE_SESSIONS = ("living", "fingerprint", "all")


def session_samples(source: str | os.PathLike, house: str, sessions: str = "living", progress: bool = False):
    """A house's sessions on the 5 Hz grid, exactly as :func:`prepare_inhome` builds it (mean per
    200 ms step, forward-filled for up to 1 s, -120 dBm beyond), as one table: a row per step,
    ``session``, ``time_ms`` (the step's start, ms since the Unix epoch), one column per access
    point in dBm (the prepared features' names) and ``room_annotated`` (the nearest annotation's
    room within 500 ms, empty where none). ``tinyloc predict --stream-column session`` reads it.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if sessions not in SAMPLE_SESSIONS:
        raise DataError(f"sessions must be one of {', '.join(SAMPLE_SESSIONS)}, got {sessions!r}")
    house_dir, metadata, experiments, names = house_sessions(source, house)
    names = [name for name in names if sessions == "all" or session_kind(name) == sessions]
    if not names:
        raise DataError(f"{experiments}: no {sessions} session")
    rooms = np.asarray([*metadata.room_names, ""], dtype=object)  # -1 (no annotation) -> ""
    tables = []
    for name in tqdm(names, desc=f"samples house_{house_dir.name[6:]}", unit="session", disable=not progress):
        grid = session_grid(read_session(experiments / name, metadata), len(metadata.ap_ids))
        table = pd.DataFrame(grid.X, columns=metadata.feature_names)
        table.insert(0, "time_ms", grid.start_ms + STEP_MS * np.arange(len(grid.X), dtype=np.int64))
        table.insert(0, "session", name)
        table["room_annotated"] = rooms[grid.y]
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


# ----------------------------------------------------------------------------- report

# Columns of the end-of-run table: header, then how to read the value from a session entry.
_REPORT_COLUMNS = (
    ("packets", lambda s: s["rows"]["rssi_rows"]),
    ("dropped", lambda s: s["rows"]["rssi_rows_out_of_range"] + s["rows"]["rssi_rows_other_wearables"]
     + s["rows"]["rssi_rows_outside_annotated_span"]),
    ("annotations", lambda s: s["rows"]["annotation_rows"]),
    ("stray", lambda s: s["rows"]["annotation_rows_stray"]),
    ("activity", lambda s: s["rows"]["annotation_rows_activity_tag"]),
    ("no-room", lambda s: s["rows"]["annotation_rows_tag_in_no_room"]
     + s["rows"]["annotation_rows_tag_in_two_rooms"]),
    ("unmatched", lambda s: s["annotations_matching_no_step"]),
    ("steps", lambda s: s["steps"]),
    ("unlabelled", lambda s: s["steps_unlabelled"]),
    ("filled", lambda s: s["cells_forward_filled"]),
    ("-120", lambda s: s["cells_not_heard"]),
    ("windows", lambda s: sum(s["windows"].values())),
)


def report_lines(meta: dict) -> list[str]:
    """The end-of-run accounting of a prepared in-home folder, one row per session.

    packets: rssi rows read; dropped: out of -110..0 dBm, other wearables, or outside the
    annotated span. annotations: rows read; stray: wrong-date rows dropped; activity / no-room:
    rows whose tag gives no location (left unlabelled); unmatched: location annotations within
    500 ms of no step. steps / unlabelled: 5 Hz steps and those with no label. filled / -120:
    AP cells forward-filled / not heard. windows: windows kept (all splits).
    """
    sessions = meta["sessions"]
    rows = [[s["name"]] + [str(get(s)) for _, get in _REPORT_COLUMNS] for s in sessions]
    rows.append(["total"] + [str(sum(get(s) for s in sessions)) for _, get in _REPORT_COLUMNS])
    header = ["session"] + [name for name, _ in _REPORT_COLUMNS]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]
    lines.append("dropped: rssi rows out of -110..0 dBm, of other wearables or more than 1.7 s outside the annotated "
                 "span; stray: annotation rows >10 min from the rest; activity / no-room: annotation rows whose "
                 "tag gives no location (unlabelled); unmatched: location annotations within 500 ms of no step; "
                 "filled / -120: AP cells forward-filled / not heard (docs/inhome.md)")
    for s in sessions:
        lines.extend(f"{s['name']}: {note}" for note in s["notes"])
    lines.extend(meta.get("inhome", {}).get("warnings", []))
    return lines
