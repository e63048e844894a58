"""Read and check the raw files of one in-home house (Byrne et al. 2018): metadata and sessions.

The files follow what the dataset authors' own loader and the public code built on it show
(``docs/inhome.md`` gives every file, column and the evidence). Where the data can still be
used correctly, an unexpected row is set aside and counted (``Session.counts``) or noted
(``HouseMetadata.warnings``, ``Session.notes``); where it cannot, reading stops with a
``DataError`` naming the file, row and column.

Counted, never an error:

- RSSI outside -110..0 dBm (the row is dropped);
- rows of wearables other than the session's main one (dropped: one person per session);
- packets outside the span of the location annotations by more than ``SPAN_MARGIN_MS``
  (1.7 s: no labelled step can depend on them), dropped so that a wrong date cannot stretch
  the session's grid (``Session.span_ms`` bounds it);
- annotations in a stray stretch at either end of the session, more than ``STRAY_GAP_MS``
  from the rest (a wrong date; dropped);
- annotations whose tag gives no location: an activity tag (``act_desc.dat``), a tag in no
  room, a tag in two rooms (kept out of the labelling);
- an ``ap_mac_ref.dat`` that is missing or lists other APs than ``ap_coordinates.dat``, an
  ``ap_rooms.dat`` row naming an unknown room, a coordinate row without exactly x, y, z
  (noted; the AP list of ``ap_coordinates.dat`` is the feature list).
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyloc_tf.errors import DataError

STEP_MS = 200  # 5 Hz: the wearable's advertising rate
FFILL_STEPS = 5  # forward-fill reach: 1 s
MATCH_MS = 500  # annotation-to-step match, as the dataset's own loader code accepts
RSSI_MIN, RSSI_MAX = -110, 0  # documented range of the receivers
STRAY_GAP_MS = 10 * 60 * 1000  # a gap this long cuts the annotations into stretches
# A labelled step lies under MATCH_MS from an annotation, and its value depends on packets up
# to FFILL_STEPS steps before it: packets further out than this cannot reach one.
SPAN_MARGIN_MS = MATCH_MS + (FFILL_STEPS + 1) * STEP_MS
STRAY_SHARE = 0.01  # an end stretch with at most this share of the rows is stray
LIVING_PREFIX = "living"

METADATA_FILES = ("room_names.dat", "room_tags.dat", "ap_coordinates.dat", "ap_rooms.dat")
ACTIVITY_FILE = "act_desc.dat"
RX_FILE = "rx_wearable_data.dat"
ANNOTATION_FILE = "tag_annotations.dat"
AP_REF_FILE = "ap_mac_ref.dat"
RX_COLUMNS = ("timestamp", "ap_id", "wearable_id", "rssi")
ANNOTATION_COLUMNS = ("timestamp", "tag")
AP_REF_COLUMNS = ("ap_id",)

# Session.counts keys, in report order.
COUNT_KEYS = (
    "rssi_rows",
    "rssi_rows_out_of_range",
    "rssi_rows_other_wearables",
    "rssi_rows_outside_annotated_span",
    "annotation_rows",
    "annotation_rows_stray",
    "annotation_rows_activity_tag",
    "annotation_rows_tag_in_no_room",
    "annotation_rows_tag_in_two_rooms",
)


# ----------------------------------------------------------------------------- metadata


@dataclass
class HouseMetadata:
    """What the loader needs from ``house_X/metadata``: rooms (= classes), tags, APs."""

    path: Path
    room_ids: list[int]  # class index -> room id, in room_names.dat order
    room_names: list[str]
    tag_class: dict[int, int]  # tag of exactly one room -> class index
    ambiguous_tags: dict[int, list[int]]  # tag listed in two or more rooms -> their room ids
    ap_ids: list[int]  # feature index -> AP id, in ap_coordinates.dat order
    ap_class: dict[int, int | None]  # AP id -> class index of its room (None: unknown)
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # every file read, for the source digest
    _activity_tags: set[int] | None = field(default=None, init=False, repr=False)  # read on demand

    @property
    def feature_names(self) -> list[str]:
        return [f"ap_{ap}" for ap in self.ap_ids]

    def activity_tags(self) -> set[int]:
        """Tag ids ``act_desc.dat`` names as activities (empty when the file is absent).

        Read on first use only, when an annotation's tag is in no room: a house whose tags
        are all room tags does not depend on the file, so it is not part of its digest.
        """
        if self._activity_tags is None:
            path = self.path / ACTIVITY_FILE
            self._activity_tags = set()
            if path.is_file():
                self._activity_tags = {key for _, key, _ in _read_keyed(path)}
                self.files.append(path)
        return self._activity_tags


def _read_keyed(path: Path) -> list[tuple[int, int, list[str]]]:
    """Rows ``key, value, ...`` of a header-less metadata file as ``(line, key, values)``.

    Rows may differ in length (room -> tags). A first line whose first field is not an
    integer is taken as a header, as the authors' reader does; anywhere else it is an error.
    """
    if not path.is_file():
        raise DataError(f"{path}: missing metadata file")
    rows: list[tuple[int, int, list[str]]] = []
    seen: dict[int, int] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            lines = list(enumerate(csv.reader(handle), start=1))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for line, fields in lines:
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


def _ap_room(value: str, room_ids: list[int], room_names: list[str]) -> int | None:
    """Class index of ``ap_rooms.dat``'s room field: a room id or, as the dataset authors'
    plotting code reads it, a room name of ``room_names.dat``."""
    try:
        room = int(value)
    except ValueError:
        return room_names.index(value) if value in room_names else None
    return room_ids.index(room) if room in room_ids else None


def read_metadata(house_dir: str | os.PathLike) -> HouseMetadata:
    """Read and cross-check the metadata files of one house folder."""
    meta_dir = Path(house_dir) / "metadata"
    if not meta_dir.is_dir():
        raise DataError(f"{meta_dir}: missing metadata folder")
    paths = {name: meta_dir / name for name in METADATA_FILES}
    warnings: list[str] = []

    room_ids, room_names = [], []
    for line, room, values in _read_keyed(paths["room_names.dat"]):
        if len(values) != 1 or not values[0]:
            raise DataError(f"{paths['room_names.dat']}, line {line}: expected 'room id, name', got {values!r}")
        room_ids.append(room)
        room_names.append(values[0])
    if len(set(room_names)) != len(room_names):
        repeated = sorted({name for name in room_names if room_names.count(name) > 1})
        raise DataError(f"{paths['room_names.dat']}: room name(s) {repeated} name more than one room id")
    room_class = {room: i for i, room in enumerate(room_ids)}

    tag_rooms: dict[int, list[int]] = {}
    path = paths["room_tags.dat"]
    for line, room, values in _read_keyed(path):
        if room not in room_class:
            raise DataError(f"{path}, line {line}: room id {room} is not in room_names.dat "
                            f"(known: {sorted(room_class)})")
        for column, value in enumerate(values, start=2):
            tag = _int_field(path, line, column, value, "tag")
            if room not in tag_rooms.setdefault(tag, []):
                tag_rooms[tag].append(room)
    tag_class = {tag: room_class[rooms[0]] for tag, rooms in tag_rooms.items() if len(rooms) == 1}
    ambiguous = {tag: rooms for tag, rooms in tag_rooms.items() if len(rooms) > 1}
    if ambiguous:
        warnings.append(f"{path}: tag(s) in two or more rooms give no location: "
                        + ", ".join(f"{tag} (rooms {rooms})" for tag, rooms in sorted(ambiguous.items())))

    path = paths["ap_coordinates.dat"]
    ap_ids, odd_rows = [], []
    for line, ap, values in _read_keyed(path):
        for column, value in enumerate(values, start=2):
            try:
                float(value)
            except ValueError:
                raise DataError(f"{path}, line {line}, column {column}: coordinate {value!r} is not a number") from None
        if len(values) != 3:
            odd_rows.append(f"line {line} ({len(values)})")
        ap_ids.append(ap)
    if odd_rows:  # the coordinates are not used: only the AP ids and their order are
        warnings.append(f"{path}: rows without exactly x, y, z (values found): {', '.join(odd_rows)}")

    # ap_rooms.dat only documents where each AP stands (meta.json "aps"); nothing is derived
    # from it, so its problems are noted, not fatal.
    path = paths["ap_rooms.dat"]
    ap_class: dict[int, int | None] = {ap: None for ap in ap_ids}
    placed = set()
    for line, ap, values in _read_keyed(path):
        if ap not in ap_class:
            warnings.append(f"{path}, line {line}: AP {ap} is not in ap_coordinates.dat; ignored")
            continue
        room = _ap_room(values[0], room_ids, room_names) if len(values) == 1 else None
        if room is None:
            warnings.append(f"{path}, line {line}: expected 'ap id, room id or room name' of room_names.dat, "
                            f"got {values!r}; AP {ap} has no room")
        ap_class[ap] = room
        placed.add(ap)
    unplaced = [ap for ap in ap_ids if ap not in placed]
    if unplaced:
        warnings.append(f"{path}: AP(s) {unplaced} of ap_coordinates.dat have no row")

    return HouseMetadata(
        path=meta_dir, room_ids=room_ids, room_names=room_names, tag_class=tag_class,
        ambiguous_tags=ambiguous, ap_ids=ap_ids, ap_class=ap_class, warnings=warnings,
        files=list(paths.values()),
    )


# ----------------------------------------------------------------------------- tables


def session_kind(name: str) -> str:
    return "living" if name.lower().startswith(LIVING_PREFIX) else "fingerprint"


def natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def iso(ms: int) -> str:
    return str(np.datetime64(int(ms), "ms"))


def read_table(path: Path, required: tuple[str, ...]):
    """A session CSV with a header row as strings. A BOM and spaces around header names and
    after commas are accepted (the authors' reader strips both); columns are found by name."""
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


def numbers(frame, column: str, path: Path, *, integer: bool = False) -> np.ndarray:
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


def times_ms(frame, path: Path) -> tuple[np.ndarray, bool]:
    """ISO 8601 timestamps as int64 ms since the epoch, and whether they carry a zone.

    Accepted: ``T`` or a space between date and time, any fraction of a second, a zone as
    ``Z``, ``+01:00`` or ``+0100`` (converted to UTC) or none (taken as it is). A file must not
    mix zoned and zone-less stamps: the two cannot be put on one clock.
    """
    import pandas as pd

    raw = frame["timestamp"]
    parsed = pd.to_datetime(raw, format="ISO8601", errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path}, row {row + 1}, column 'timestamp': {raw.iloc[row]!r} is not a datetime")
    # The date's own '-' sit before position 10; a 'Z', '+' or '-' after it starts a zone.
    text = raw.to_numpy().astype(str)
    zoned = ((np.char.find(text, "Z", 10) > 0) | (np.char.find(text, "+", 10) > 0)
             | (np.char.find(text, "-", 10) > 0))
    if zoned.any() and not zoned.all():
        row = int(np.argmax(zoned != zoned[0]))
        raise DataError(f"{path}, row {row + 1}, column 'timestamp': {raw.iloc[row]!r} "
                        f"{'has' if zoned[row] else 'lacks'} a time zone, unlike row 1 ({raw.iloc[0]!r})")
    delta = parsed - pd.Timestamp(0, tz="UTC")
    return (delta // pd.Timedelta(1, "ms")).to_numpy(dtype=np.int64), bool(zoned[0])


def stray_rows(t_ms: np.ndarray, gap_ms: int = STRAY_GAP_MS, share: float = STRAY_SHARE) -> np.ndarray:
    """Mask of rows in a stray stretch at either end: times cut into stretches at gaps over
    ``gap_ms``; leading and trailing stretches holding at most ``share`` of the rows (at
    least one row) are stray. Stretches between the first and last kept ones stay."""
    order = np.argsort(t_ms, kind="stable")
    cuts = np.flatnonzero(np.diff(t_ms[order]) > gap_ms) + 1
    bounds = [0, *cuts.tolist(), len(t_ms)]
    small = max(1, int(share * len(t_ms)))
    sizes = np.diff(bounds)
    first, last = 0, len(sizes) - 1
    while first < last and sizes[first] <= small:
        first += 1
    while last > first and sizes[last] <= small:
        last -= 1
    stray = np.ones(len(t_ms), dtype=bool)
    stray[order[bounds[first]:bounds[last + 1]]] = False
    return stray


# ----------------------------------------------------------------------------- sessions


@dataclass
class Session:
    """One session's packets and location annotations, validated and mapped to indices."""

    name: str
    kind: str  # "fingerprint" or "living"
    t_ms: np.ndarray  # int64 [R] packet times, ms since the Unix epoch
    ap: np.ndarray  # int64 [R] feature index
    rssi: np.ndarray  # float64 [R] dBm
    ann_ms: np.ndarray  # int64 [A] times of the annotations that give a location, sorted
    ann_class: np.ndarray  # int64 [A] class index
    wearables: int  # wearables found in rx_wearable_data.dat
    wearable: str  # the one kept
    span_ms: tuple[int, int]  # first and last instant of the session's grid
    counts: dict  # COUNT_KEYS -> rows
    notes: list[str]
    files: list[Path]


def _read_ap_ref(path: Path, metadata: HouseMetadata, notes: list[str], files: list[Path]) -> None:
    """Note (never stop on) an ``ap_mac_ref.dat`` that is missing or whose APs differ from
    ``ap_coordinates.dat``: the metadata's AP list fixes the features either way."""
    if not path.is_file():
        notes.append(f"{path.name} missing; the APs of ap_coordinates.dat are used")
        return
    files.append(path)
    refs = read_table(path, AP_REF_COLUMNS)
    listed = set(numbers(refs, "ap_id", path, integer=True).astype(np.int64).tolist())
    unknown = sorted(listed - set(metadata.ap_ids))
    absent = [ap for ap in metadata.ap_ids if ap not in listed]
    if unknown:
        notes.append(f"{path.name} lists AP(s) {unknown} not in ap_coordinates.dat")
    if absent:
        notes.append(f"{path.name} does not list AP(s) {absent} of ap_coordinates.dat")


def read_session(session_dir: str | os.PathLike, metadata: HouseMetadata) -> Session:
    """Read and validate one session folder against the house metadata."""
    session_dir = Path(session_dir)
    counts = dict.fromkeys(COUNT_KEYS, 0)
    notes: list[str] = []
    rx_path, ann_path = session_dir / RX_FILE, session_dir / ANNOTATION_FILE
    for path in (rx_path, ann_path):
        if not path.is_file():
            raise DataError(f"{path}: missing file")
    files = [rx_path, ann_path]
    _read_ap_ref(session_dir / AP_REF_FILE, metadata, notes, files)

    rx = read_table(rx_path, RX_COLUMNS)
    counts["rssi_rows"] = len(rx)
    t_ms, rx_zoned = times_ms(rx, rx_path)
    ap_raw = numbers(rx, "ap_id", rx_path, integer=True).astype(np.int64)
    rssi = numbers(rx, "rssi", rx_path)
    known = np.array(metadata.ap_ids, dtype=np.int64)
    unknown = ~np.isin(ap_raw, known)
    if unknown.any():
        row = int(np.argmax(unknown))
        raise DataError(f"{rx_path}, row {row + 1}, column 'ap_id': AP {ap_raw[row]} is not in the metadata "
                        f"(known: {metadata.ap_ids})")
    order = np.argsort(known)
    ap = order[np.searchsorted(known[order], ap_raw)].astype(np.int64)

    keep = np.ones(len(rx), dtype=bool)
    in_range = (rssi >= RSSI_MIN) & (rssi <= RSSI_MAX)
    counts["rssi_rows_out_of_range"] = int((~in_range).sum())
    keep &= in_range
    # One person per session: the annotations follow the camera's wearer, and averaging two
    # wristbands would mix two places. The wearable with the most rows is kept.
    wearable_ids = rx["wearable_id"].str.strip()
    per_wearable = wearable_ids.value_counts(sort=False)
    main = max(per_wearable.index, key=lambda w: (per_wearable[w], -per_wearable.index.get_loc(w)))
    if len(per_wearable) > 1:
        others = wearable_ids.to_numpy() != main
        counts["rssi_rows_other_wearables"] = int((others & keep).sum())
        keep &= ~others
        notes.append(f"{len(per_wearable)} wearables; kept wearable {main} "
                     f"({per_wearable[main]} of {len(rx)} rows)")

    ann = read_table(ann_path, ANNOTATION_COLUMNS)
    counts["annotation_rows"] = len(ann)
    ann_ms, ann_zoned = times_ms(ann, ann_path)
    if ann_zoned != rx_zoned:
        zoned, naive = (rx_path, ann_path) if rx_zoned else (ann_path, rx_path)
        raise DataError(f"{session_dir}: {zoned.name} has zoned timestamps and {naive.name} zone-less ones; "
                        f"they cannot be put on one clock")
    tags = numbers(ann, "tag", ann_path, integer=True).astype(np.int64)
    stray = stray_rows(ann_ms)
    counts["annotation_rows_stray"] = int(stray.sum())
    if stray.any():
        notes.append(f"{ann_path.name}: {int(stray.sum())} row(s) more than {STRAY_GAP_MS // 60000} min "
                     f"from the rest dropped (first: row {int(np.argmax(stray)) + 1}, "
                     f"{ann['timestamp'].iloc[int(np.argmax(stray))].strip()})")
    located = np.isin(tags, np.fromiter(metadata.tag_class, dtype=np.int64, count=len(metadata.tag_class)))
    ambiguous = np.isin(tags, np.fromiter(metadata.ambiguous_tags, dtype=np.int64,
                                          count=len(metadata.ambiguous_tags)))
    nowhere = ~located & ~ambiguous
    activity = np.zeros(len(tags), dtype=bool)
    if (nowhere & ~stray).any():
        activity = nowhere & np.isin(tags, np.array(sorted(metadata.activity_tags()), dtype=np.int64))
    counts["annotation_rows_tag_in_two_rooms"] = int((ambiguous & ~stray).sum())
    counts["annotation_rows_activity_tag"] = int((activity & ~stray).sum())
    counts["annotation_rows_tag_in_no_room"] = int((nowhere & ~activity & ~stray).sum())
    unplaced = sorted(set(tags[nowhere & ~activity & ~stray].tolist()))
    if unplaced:
        notes.append(f"{ann_path.name}: tag(s) {unplaced[:20]}{' ...' if len(unplaced) > 20 else ''} "
                     f"are in no room of room_tags.dat and not activities of {ACTIVITY_FILE}")
    use = located & ~stray
    if not use.any():
        raise DataError(f"{ann_path}: none of its {len(ann)} rows names a tag of a room in "
                        f"{metadata.path / 'room_tags.dat'} (activity tags: {counts['annotation_rows_activity_tag']}, "
                        f"in no room: {counts['annotation_rows_tag_in_no_room']}, "
                        f"in two rooms: {counts['annotation_rows_tag_in_two_rooms']}, "
                        f"stray: {counts['annotation_rows_stray']})")
    tag_ids = np.array(sorted(metadata.tag_class), dtype=np.int64)
    tag_classes = np.array([metadata.tag_class[int(tag)] for tag in tag_ids], dtype=np.int64)
    ann_ms = ann_ms[use]
    ann_class = tag_classes[np.searchsorted(tag_ids, tags[use])]
    order = np.argsort(ann_ms, kind="stable")
    ann_ms, ann_class = ann_ms[order], ann_class[order]

    # The grid covers the packets (the receivers were recording, heard or not) within the
    # annotated span widened by SPAN_MARGIN_MS. Packets far off (a wrong clock) neither set its
    # ends nor enter it: left in, one packet dated a day early would stretch the grid over days
    # and move every block of the split. Packets just outside still mark recording time.
    far = keep & ((t_ms < ann_ms[0] - STRAY_GAP_MS) | (t_ms > ann_ms[-1] + STRAY_GAP_MS))
    near = t_ms[keep & ~far]
    if not len(near) or ann_ms[-1] + MATCH_MS <= near.min() or ann_ms[0] - MATCH_MS >= near.max():
        packets = f"{iso(near.min())} .. {iso(near.max())}" if len(near) else f"none within {STRAY_GAP_MS // 60000} min"
        raise DataError(
            f"{session_dir}: annotations ({iso(ann_ms[0])} .. {iso(ann_ms[-1])}) never come within "
            f"{MATCH_MS} ms of the RSSI packets ({packets})")
    span = (max(int(near.min()), int(ann_ms[0]) - SPAN_MARGIN_MS), min(int(near.max()), int(ann_ms[-1]) + SPAN_MARGIN_MS))
    outside = keep & ((t_ms < span[0]) | (t_ms > span[1]))
    counts["rssi_rows_outside_annotated_span"] = int(outside.sum())
    if outside.any():
        first = int(np.argmax(outside))
        notes.append(f"{rx_path.name}: {int(outside.sum())} row(s) more than {SPAN_MARGIN_MS} ms outside the "
                     f"annotated span dropped ({int(far.sum())} more than {STRAY_GAP_MS // 60000} min; "
                     f"first: row {first + 1}, {rx['timestamp'].iloc[first].strip()})")
    keep &= ~outside

    return Session(name=session_dir.name, kind=session_kind(session_dir.name), t_ms=t_ms[keep], ap=ap[keep],
                   rssi=rssi[keep], ann_ms=ann_ms, ann_class=ann_class, wearables=int(len(per_wearable)),
                   wearable=str(main), span_ms=span, counts=counts, notes=notes, files=files)
