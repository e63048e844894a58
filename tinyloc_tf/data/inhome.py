"""In-home BLE RSSI (Byrne et al., Scientific Data 2018; figshare 6051794): parse the raw
layout, label by time, resample, window, split by time blocks, scale.

Raw layout (``docs/inhome.md`` has every file and column)::

    ROOT/house_A/metadata/room_names.dat      room id, room name          (no header)
                          room_tags.dat       room id, tag, tag, ...      (no header)
                          ap_coordinates.dat  ap id, x, y, z              (no header; AP order)
                          ap_rooms.dat        ap id, room id              (no header)
    ROOT/house_A/experiments/<session>/rx_wearable_data.dat   timestamp, ap_id, wearable_id, rssi
                                       tag_annotations.dat    timestamp, ..., tag, ...
                                       ap_mac_ref.dat         ap_id, ap_mac_address

Sessions named ``living_*`` are free-living (the test split); every other session is a
scripted fingerprint walk (train and validation).

Preprocessing, per session:

1. Grid: 5 Hz steps. Step ``k`` stands for the interval ``[t_k, t_k + 200 ms)`` with
   ``t_k`` a multiple of 200 ms since the Unix epoch; the grid runs from the step of the first
   packet to the step of the last packet of the session (any access point).
2. Resample: an AP's value at a step is the mean RSSI (dBm) of its packets in that interval.
3. Forward-fill: a step with no packet from an AP repeats that AP's last value for at most
   5 steps (1 s) after the step that held it; later steps, and steps before the AP's first
   packet, are -120 dBm ("not heard").
4. Label: step ``k`` takes the room of the annotation nearest in time to ``t_k`` if that
   annotation lies strictly less than 500 ms away (ties go to the earlier annotation); the
   annotation names a floor tag and ``room_tags.dat`` maps the tag to its room. A step with no
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

import csv
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyloc_tf.errors import DataError

# figshare serves the whole article (all four houses) as one zip; the archive is not
# reachable from the machines this was written on, so its digest is unknown.
INHOME_FIGSHARE_URL = "https://ndownloader.figshare.com/articles/6051794/versions/1"
INHOME_SHA256: str | None = None
INHOME_DOI = "10.6084/m9.figshare.6051794.v1"

STEP_MS = 200  # 5 Hz: the wearable's advertising rate
FFILL_STEPS = 5  # forward-fill reach: 1 s
NOT_HEARD_DBM = -120.0  # below any real reading
RSSI_MIN, RSSI_MAX = -110, 0  # documented range of the receivers
WINDOW_STEPS = 20  # 4 s
HOP_STEPS = 10  # 50 % overlap
MATCH_MS = 500  # annotation-to-step match, as the dataset's own loader code accepts
BLOCK_SECONDS = 60.0  # fingerprint split block length
GAP_STEPS = FFILL_STEPS  # guard at each side of a train/val boundary
LIVING_PREFIX = "living"

METADATA_FILES = ("room_names.dat", "room_tags.dat", "ap_coordinates.dat", "ap_rooms.dat")
RX_FILE = "rx_wearable_data.dat"
ANNOTATION_FILE = "tag_annotations.dat"
AP_REF_FILE = "ap_mac_ref.dat"
RX_COLUMNS = ("timestamp", "ap_id", "wearable_id", "rssi")
ANNOTATION_COLUMNS = ("timestamp", "tag")
AP_REF_COLUMNS = ("ap_id",)


# ----------------------------------------------------------------------------- metadata


@dataclass
class HouseMetadata:
    """What the loader needs from ``house_X/metadata``: rooms (= classes), tags, APs."""

    path: Path
    room_ids: list[int]  # class index -> room id, in room_names.dat order
    room_names: list[str]
    tag_class: dict[int, int]  # floor tag -> class index
    ap_ids: list[int]  # feature index -> AP id, in ap_coordinates.dat order
    ap_class: dict[int, int]  # AP id -> class index of the room it stands in
    files: list[Path] = field(default_factory=list)

    @property
    def feature_names(self) -> list[str]:
        return [f"ap_{ap}" for ap in self.ap_ids]

    @property
    def ap_index(self) -> dict[int, int]:
        return {ap: i for i, ap in enumerate(self.ap_ids)}


def _read_keyed(path: Path) -> list[tuple[int, int, list[str]]]:
    """Rows ``key, value, ...`` of a header-less metadata file as ``(line, key, values)``.

    Rows may differ in length (room -> tags). A first line whose first field is not an
    integer is taken as a header; anywhere else it is an error.
    """
    if not path.is_file():
        raise DataError(f"{path}: missing metadata file")
    rows: list[tuple[int, int, list[str]]] = []
    seen: dict[int, int] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for line, fields in enumerate(csv.reader(handle), start=1):
            fields = [value.strip() for value in fields]
            while fields and fields[-1] == "":
                fields.pop()
            if not fields:
                continue
            try:
                key = int(fields[0])
            except ValueError:
                if line == 1:
                    continue
                raise DataError(f"{path}, line {line}, column 1: id must be an integer, got {fields[0]!r}") from None
            if key in seen:
                raise DataError(f"{path}, line {line}: id {key} repeats line {seen[key]}")
            seen[key] = line
            rows.append((line, key, fields[1:]))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def _int_field(path: Path, line: int, column: int, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{path}, line {line}, column {column}: {what} must be an integer, got {value!r}") from None


def read_metadata(house_dir: str | os.PathLike) -> HouseMetadata:
    """Read and cross-check the metadata files of one house folder."""
    meta_dir = Path(house_dir) / "metadata"
    if not meta_dir.is_dir():
        raise DataError(f"{meta_dir}: missing metadata folder")
    paths = {name: meta_dir / name for name in METADATA_FILES}

    room_rows = _read_keyed(paths["room_names.dat"])
    room_ids, room_names = [], []
    for line, room, values in room_rows:
        if len(values) != 1 or not values[0]:
            raise DataError(f"{paths['room_names.dat']}, line {line}: expected 'room id, name', got {values!r}")
        room_ids.append(room)
        room_names.append(values[0])
    room_class = {room: i for i, room in enumerate(room_ids)}

    tag_class: dict[int, int] = {}
    tag_room: dict[int, int] = {}
    path = paths["room_tags.dat"]
    for line, room, values in _read_keyed(path):
        if room not in room_class:
            raise DataError(f"{path}, line {line}: room id {room} is not in room_names.dat "
                            f"(known: {sorted(room_class)})")
        for column, value in enumerate(values, start=2):
            tag = _int_field(path, line, column, value, "tag")
            if tag in tag_room and tag_room[tag] != room:
                raise DataError(f"{path}, line {line}: tag {tag} is already in room {tag_room[tag]}")
            tag_room[tag] = room
            tag_class[tag] = room_class[room]

    path = paths["ap_coordinates.dat"]
    ap_ids = []
    for line, ap, values in _read_keyed(path):
        if len(values) != 3:
            raise DataError(f"{path}, line {line}: expected 'ap id, x, y, z', got {len(values)} values")
        for column, value in enumerate(values, start=2):
            try:
                float(value)
            except ValueError:
                raise DataError(f"{path}, line {line}, column {column}: coordinate {value!r} is not a number") from None
        ap_ids.append(ap)

    path = paths["ap_rooms.dat"]
    ap_class: dict[int, int] = {}
    for line, ap, values in _read_keyed(path):
        if len(values) != 1:
            raise DataError(f"{path}, line {line}: expected 'ap id, room id', got {values!r}")
        if ap not in ap_ids:
            raise DataError(f"{path}, line {line}: AP {ap} is not in ap_coordinates.dat (known: {ap_ids})")
        room = _int_field(path, line, 2, values[0], "room id")
        if room not in room_class:
            raise DataError(f"{path}, line {line}: room id {room} is not in room_names.dat "
                            f"(known: {sorted(room_class)})")
        ap_class[ap] = room_class[room]
    unplaced = [ap for ap in ap_ids if ap not in ap_class]
    if unplaced:
        raise DataError(f"{path}: AP(s) {unplaced} of ap_coordinates.dat have no room")

    return HouseMetadata(
        path=meta_dir, room_ids=room_ids, room_names=room_names, tag_class=tag_class,
        ap_ids=ap_ids, ap_class=ap_class, files=list(paths.values()),
    )


# ----------------------------------------------------------------------------- sessions


@dataclass
class Session:
    """One session's packets and annotations, validated and mapped to indices."""

    name: str
    kind: str  # "fingerprint" or "living"
    t_ms: np.ndarray  # int64 [R] packet times, ms since the Unix epoch
    ap: np.ndarray  # int64 [R] feature index
    rssi: np.ndarray  # float64 [R] dBm
    ann_ms: np.ndarray  # int64 [A] annotation times, sorted
    ann_class: np.ndarray  # int64 [A] class index
    wearables: int
    files: list[Path]


def session_kind(name: str) -> str:
    return "living" if name.lower().startswith(LIVING_PREFIX) else "fingerprint"


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _read_table(path: Path, required: tuple[str, ...]):
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: missing file")
    try:
        frame = pd.read_csv(path, dtype=str, skipinitialspace=True, keep_default_na=False,
                            encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({exc})") from None
    frame.columns = [str(name).strip() for name in frame.columns]
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header has "
                        f"{', '.join(frame.columns)}; expected {', '.join(required)}")
    if len(frame) == 0:
        raise DataError(f"{path}: no rows (empty session)")
    return frame


def _numbers(frame, column: str, path: Path, *, integer: bool = False) -> np.ndarray:
    """A column as float64, rejecting non-numeric, NaN and (for ``integer``) fractional cells.
    Rows are counted from 1 after the header line."""
    import pandas as pd

    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if integer:
        bad |= np.where(bad, False, values != np.round(np.nan_to_num(values)))
    if bad.any():
        row = int(np.argmax(bad))
        kind = "an integer" if integer else "a number"
        raise DataError(f"{path}, row {row + 1}, column {column!r}: {raw.iloc[row]!r} is not {kind}")
    return values


def _times_ms(frame, path: Path) -> np.ndarray:
    """ISO 8601 timestamps (millisecond strings) as int64 ms since the epoch. Naive times are
    taken as they are; zone-aware ones are converted to UTC."""
    import pandas as pd

    raw = frame["timestamp"]
    parsed = pd.to_datetime(raw, format="ISO8601", errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}, row {row + 1}, column 'timestamp': {raw.iloc[row]!r} is not a datetime")
    delta = parsed - pd.Timestamp(0, tz="UTC")
    return (delta // pd.Timedelta(1, "ms")).to_numpy(dtype=np.int64)


def read_session(session_dir: str | os.PathLike, metadata: HouseMetadata) -> Session:
    """Read and validate one session folder against the house metadata."""
    session_dir = Path(session_dir)
    files = [session_dir / RX_FILE, session_dir / ANNOTATION_FILE, session_dir / AP_REF_FILE]
    for path in files:
        if not path.is_file():
            raise DataError(f"{path}: missing file")
    ap_index = metadata.ap_index

    # The session's AP list must be the metadata's: a different count means the feature
    # columns would not mean the same thing across sessions.
    path = session_dir / AP_REF_FILE
    refs = _read_table(path, AP_REF_COLUMNS)
    ref_ids = _numbers(refs, "ap_id", path, integer=True).astype(np.int64)
    for row, ap in enumerate(ref_ids):
        if int(ap) not in ap_index:
            raise DataError(f"{path}, row {row + 1}, column 'ap_id': AP {ap} is not in the metadata "
                            f"(known: {metadata.ap_ids})")
    if len(set(ref_ids.tolist())) != len(metadata.ap_ids):
        raise DataError(f"{path}: lists {len(set(ref_ids.tolist()))} access points, the metadata "
                        f"(ap_coordinates.dat) {len(metadata.ap_ids)}")

    path = session_dir / RX_FILE
    rx = _read_table(path, RX_COLUMNS)
    t_ms = _times_ms(rx, path)
    ap_raw = _numbers(rx, "ap_id", path, integer=True).astype(np.int64)
    rssi = _numbers(rx, "rssi", path)
    outside = (rssi < RSSI_MIN) | (rssi > RSSI_MAX)
    if outside.any():
        row = int(np.argmax(outside))
        raise DataError(f"{path}, row {row + 1}, column 'rssi': {rx['rssi'].iloc[row]} dBm is outside "
                        f"the documented range {RSSI_MIN}..{RSSI_MAX}")
    known = np.array(metadata.ap_ids, dtype=np.int64)
    unknown = ~np.isin(ap_raw, known)
    if unknown.any():
        row = int(np.argmax(unknown))
        raise DataError(f"{path}, row {row + 1}, column 'ap_id': AP {ap_raw[row]} is not in the metadata "
                        f"(known: {metadata.ap_ids})")
    order = np.argsort(known)
    ap = order[np.searchsorted(known[order], ap_raw)].astype(np.int64)
    wearables = int(rx["wearable_id"].nunique())

    path = session_dir / ANNOTATION_FILE
    ann = _read_table(path, ANNOTATION_COLUMNS)
    ann_ms = _times_ms(ann, path)
    tags = _numbers(ann, "tag", path, integer=True).astype(np.int64)
    tag_ids = np.array(sorted(metadata.tag_class), dtype=np.int64)
    unknown = ~np.isin(tags, tag_ids)
    if unknown.any():
        row = int(np.argmax(unknown))
        raise DataError(f"{path}, row {row + 1}, column 'tag': tag {tags[row]} is in no room of "
                        f"{metadata.path / 'room_tags.dat'}")
    tag_classes = np.array([metadata.tag_class[int(tag)] for tag in tag_ids], dtype=np.int64)
    ann_class = tag_classes[np.searchsorted(tag_ids, tags)]
    order = np.argsort(ann_ms, kind="stable")
    ann_ms, ann_class = ann_ms[order], ann_class[order]

    if ann_ms[-1] + MATCH_MS <= t_ms.min() or ann_ms[0] - MATCH_MS >= t_ms.max():
        raise DataError(
            f"{session_dir}: annotations ({_iso(ann_ms[0])} .. {_iso(ann_ms[-1])}) never come within "
            f"{MATCH_MS} ms of the RSSI packets ({_iso(t_ms.min())} .. {_iso(t_ms.max())})")

    return Session(name=session_dir.name, kind=session_kind(session_dir.name), t_ms=t_ms, ap=ap,
                   rssi=rssi, ann_ms=ann_ms, ann_class=ann_class, wearables=wearables, files=files)


def _iso(ms: int) -> str:
    return str(np.datetime64(int(ms), "ms"))


# ----------------------------------------------------------------------------- preprocessing


@dataclass
class Grid:
    """One session on the 5 Hz grid: raw dBm values and a label per step (-1 = unlabelled)."""

    start_ms: int  # time of step 0
    X: np.ndarray  # float32 [S, F] dBm
    y: np.ndarray  # int64 [S]
    counts: dict


def resample(t_ms: np.ndarray, ap: np.ndarray, rssi: np.ndarray, num_aps: int) -> tuple[int, np.ndarray, dict]:
    """Packets -> ``(start_ms, X [S, F] dBm, counts)``: mean per AP and 200 ms step,
    forward-filled for up to 1 s, -120 dBm beyond."""
    import pandas as pd

    step = t_ms // STEP_MS
    first = int(step.min())
    steps = int(step.max()) - first + 1
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
    start, X, counts = resample(session.t_ms, session.ap, session.rssi, num_aps)
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


def fit_scaling(X_train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-AP min and max (dBm) over the training windows. An AP that is constant in training
    (typically never heard: all -120) is scaled over the physical range -120..0 instead."""
    flat = X_train.reshape(-1, X_train.shape[-1]).astype(np.float64)
    minimum, maximum = flat.min(axis=0), flat.max(axis=0)
    constant = maximum <= minimum
    minimum = np.where(constant, NOT_HEARD_DBM, minimum)
    maximum = np.where(constant, float(RSSI_MAX), maximum)
    return minimum, maximum, constant


def scale(X: np.ndarray, minimum: np.ndarray, maximum: np.ndarray) -> tuple[np.ndarray, int]:
    """``clip((X - min) / (max - min), 0, 1)`` as float32, and how many cells were clipped."""
    scaled = (X.astype(np.float64) - minimum) / (maximum - minimum)
    clipped = int(((scaled < 0) | (scaled > 1)).sum())
    return np.clip(scaled, 0.0, 1.0).astype(np.float32), clipped


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
    if source.name == name:
        return source
    found = sorted(p.name for p in source.iterdir() if p.is_dir() and p.name.startswith("house_"))
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


def prepare_inhome(
    source: str | os.PathLike,
    house: str,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    val_fraction: float = 0.25,
    block_seconds: float = BLOCK_SECONDS,
    progress: bool = False,
) -> Path:
    """Prepare one house of the in-home layout under ``source`` into the contract folder ``out``.

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

    house_dir = find_house(source, house)
    metadata = read_metadata(house_dir)
    experiments = house_dir / "experiments"
    if not experiments.is_dir():
        raise DataError(f"{experiments}: missing experiments folder")
    names = sorted((p.name for p in experiments.iterdir() if p.is_dir()), key=_natural_key)
    if not names:
        raise DataError(f"{experiments}: no session folders")
    kinds = {name: session_kind(name) for name in names}
    for kind, role in (("fingerprint", "train/val"), ("living", "test")):
        if kind not in kinds.values():
            what = "living_* (free-living)" if kind == "living" else "fingerprint (any name not living_*)"
            raise DataError(f"{experiments}: no {what} session, needed for {role}")

    num_aps = len(metadata.ap_ids)
    files = list(metadata.files)
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
        for a, b, lo, hi, val in runs:
            split = "test" if val is None else ("val" if val else "train")
            removed["steps_in_split_guards"] += (lo - a) + (b - hi)
            for s in window_starts(lo, hi):
                labels = grid.y[s:s + WINDOW_STEPS]
                if (labels < 0).any():
                    removed["windows_with_unlabelled_steps"][split] += 1
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
            "start": _iso(grid.start_ms),
            "steps": n,
            "rssi_rows": int(len(session.t_ms)),
            "annotations": int(len(session.ann_ms)),
            "wearables": session.wearables,
            "val_steps": int(is_val.sum()) if is_val is not None else 0,
            "windows": windows,
        })

    stacked = {}
    for split in out_X:
        if not out_X[split]:
            raise DataError(f"{house_dir}: no {split} window survived (every window held unlabelled "
                            f"steps or the sessions are shorter than {WINDOW_STEPS * STEP_MS / 1000:g} s)")
        stacked[split] = (np.stack(out_X[split]), np.stack(out_y[split]).astype(np.int32))

    minimum, maximum, constant = fit_scaling(stacked["train"][0])
    splits, clipped = {}, {}
    for split, (X, y) in stacked.items():
        scaled, clipped[split] = scale(X, minimum, maximum)
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
            "min": minimum.tolist(),
            "max": maximum.tolist(),
            "not_heard_dbm": NOT_HEARD_DBM,
            "unit": "dBm",
            "formula": "clip((rssi - min) / (max - min), 0, 1); min/max from the train windows, "
                       "an AP constant in train uses -120..0",
            "constant_in_train": [metadata.feature_names[i] for i in np.flatnonzero(constant)],
        },
        "source": str(house_dir.resolve()),
        "source_sha256": sha256_files(house_dir, files),
        "source_files": len(files),
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
            {"id": ap, "feature": feature, "room": metadata.room_names[metadata.ap_class[ap]]}
            for ap, feature in zip(metadata.ap_ids, metadata.feature_names)
        ],
        "sessions": session_info,
        "removed": {
            **removed,
            "annotations_matching_no_step": int(grid_counts["annotations_matching_no_step"]),
        },
        "inhome": {
            "rssi_rows": int(sum(len(s.t_ms) for s in sessions.values())),
            "annotation_rows": int(sum(len(s.ann_ms) for s in sessions.values())),
            "rssi_rows_averaged_into_steps": int(grid_counts["rows_averaged_into_steps"]),
            "steps": int(grid_counts["steps"]),
            "steps_unlabelled": int(grid_counts["steps_unlabelled"]),
            "cells_observed": int(grid_counts["cells_observed"]),
            "cells_forward_filled": int(grid_counts["cells_forward_filled"]),
            "cells_not_heard": int(grid_counts["cells_not_heard"]),
            "cells_clipped": clipped,
        },
    }
    return write_prepared(out, splits, meta)
