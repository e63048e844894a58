"""UJIIndoorLoc (UCI dataset 310): read the official archive, label, split, scale.

The archive holds ``UJIndoorLoc/trainingData.csv`` (19,937 scans) and
``UJIndoorLoc/validationData.csv`` (1,111 scans, the paper's untouched test set). Each row is
one Wi-Fi scan: 520 RSSI columns ``WAP001..WAP520`` in dBm (-104..0, ``100`` = not heard)
followed by coordinates, floor, building and bookkeeping columns.

Preprocessing (``docs/data.md`` explains every choice):

1. Validate both CSVs: exact column set, numeric, no NaN, RSSI in -104..0 or 100.
2. Label each scan. ``floor``: 13 building-floors ``B0F0..B2F4``. ``area`` (default): 59 areas,
   a k-means partition of each building-floor's training reference points, with the 59 shared
   out across floors in proportion to each floor's convex-hull area (largest remainder).
   Test scans take the nearest area centre on their own building-floor.
3. Split trainingData 75/25 into train/val, stratified on the area partition (so both label
   schemes see the same rows), seeded; validationData is the test split.
4. Map ``100`` (not heard) to -105 dBm, one below the weakest reading, then min-max scale per
   access point with the train split's min/max; val and test are clipped to [0, 1].
   An access point never heard in the train split would have min == max: it is scaled over
   the physical range [-105, 0] dBm instead.

No row is removed: duplicated scans and scans that heard no access point are kept, as in the
paper, and counted in ``meta.json`` under ``uji``.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tinyloc_tf.data.representation import REPRESENTATIONS, fit_representation
from tinyloc_tf.errors import DataError, not_utf8, shown

if TYPE_CHECKING:  # pandas is imported lazily: `tinyloc --help` should not pay for it
    import pandas as pd

# Official archive. UCI moved its files; the first URL is the current one, the second the
# historical location. Both serve the same two CSVs (re-zipping changes the archive's bytes,
# so downloads are verified on the CSV digests when the archive digest differs).
UJI_URLS = (
    "https://archive.ics.uci.edu/static/public/310/ujiindoorloc.zip",
    "https://archive.ics.uci.edu/ml/machine-learning-databases/00310/UJIndoorLoc.zip",
)
UJI_ZIP_NAME = "UJIndoorLoc.zip"
UJI_ZIP_SHA256 = "5d15c7fab3eee620ec7a010af257022b04de6c28d23cb1165fc64b8bf5132c14"
TRAIN_CSV = "trainingData.csv"
TEST_CSV = "validationData.csv"
UJI_CSV_SHA256 = {
    TRAIN_CSV: "45ca0128bd12019c976bb4793e407c979c82995d7a5940ab7288620247905168",
    TEST_CSV: "5f90c536648cd657b2c516d20c4e0968d4003279ea6bd5d5d5322d3f1e8905c0",
}

WAP_COLUMNS = tuple(f"WAP{i:03d}" for i in range(1, 521))
INFO_COLUMNS = (
    "LONGITUDE", "LATITUDE", "FLOOR", "BUILDINGID", "SPACEID",
    "RELATIVEPOSITION", "USERID", "PHONEID", "TIMESTAMP",
)
COLUMNS = WAP_COLUMNS + INFO_COLUMNS
INTEGER_COLUMNS = ("FLOOR", "BUILDINGID")

RSSI_MIN, RSSI_MAX = -104, 0
NOT_HEARD = 100  # the dataset's "access point not detected" marker
NOT_HEARD_DBM = -105  # one below the weakest real reading, so "not heard" scales to 0

DEFAULT_AREAS = 59  # the paper's class count for UJIIndoorLoc ("per area and floor")
AREA_KMEANS_SEED = 0  # the partition is a property of the data, not of the split seed
LABEL_SCHEMES = ("area", "floor")


# ----------------------------------------------------------------------------- reading


@dataclass
class UjiTables:
    """Both CSVs, validated. ``train``/``test`` are pandas DataFrames with ``COLUMNS``."""

    train: "pd.DataFrame"
    test: "pd.DataFrame"
    source: Path
    source_sha256: str
    files_sha256: dict[str, str]


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _zip_members(archive: zipfile.ZipFile, zip_path: Path) -> dict[str, str]:
    """Map each CSV name to its member in the archive, at the root or one folder down.

    macOS resource forks (``__MACOSX/``) are skipped; two candidates for one file are an error
    rather than a guess."""
    found: dict[str, list[str]] = {TRAIN_CSV: [], TEST_CSV: []}
    for name in archive.namelist():
        if name.startswith("__MACOSX/") or name.endswith("/"):
            continue
        parts = name.split("/")
        if len(parts) <= 2 and parts[-1] in found:
            found[parts[-1]].append(name)
    members = {}
    for csv, names in found.items():
        if not names:
            raise DataError(
                f"{zip_path}: no {csv} in the archive (expected UJIndoorLoc/{csv}); "
                f"it holds {', '.join(archive.namelist()[:6]) or 'nothing'}"
            )
        if len(names) > 1:
            raise DataError(f"{zip_path}: {csv} appears more than once ({', '.join(names)})")
        members[csv] = names[0]
    return members


def _read_source_bytes(source: Path) -> tuple[dict[str, bytes], dict[str, str], str]:
    """Raw bytes of both CSVs, their display names (for messages), and the source digest.

    The digest is the archive's sha256 for a zip; for a folder, the sha256 of
    ``"<train digest>\\n<test digest>\\n"`` (the per-file digests are recorded as well)."""
    if not source.exists():
        raise DataError(
            f"{source}: not found; pass the UJIIndoorLoc archive ({UJI_ZIP_NAME}) or a folder "
            f"holding {TRAIN_CSV} and {TEST_CSV} (`tinyloc data fetch uji` downloads it)"
        )
    if source.is_file():
        try:
            with zipfile.ZipFile(source) as archive:
                members = _zip_members(archive, source)
                raw = {csv: archive.read(member) for csv, member in members.items()}
        except zipfile.BadZipFile as exc:
            raise DataError(f"{source}: not a zip archive ({exc})") from exc
        names = {csv: f"{source}:{member}" for csv, member in members.items()}
        return raw, names, _sha256_file(source)
    raw, names = {}, {}
    for csv in (TRAIN_CSV, TEST_CSV):
        candidates = [source / csv, source / "UJIndoorLoc" / csv]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise DataError(f"{source}: no {csv} (looked for {' and '.join(map(str, candidates))})")
        raw[csv], names[csv] = path.read_bytes(), str(path)
    combined = "".join(_sha256_bytes(raw[csv]) + "\n" for csv in (TRAIN_CSV, TEST_CSV))
    return raw, names, _sha256_bytes(combined.encode())


def _sha256_file(path: Path) -> str:
    from tinyloc_tf.data.prepared import sha256_file

    return sha256_file(path)


def _line(row: int) -> int:
    """1-based CSV line of data row ``row`` (line 1 is the header)."""
    return int(row) + 2


def parse_csv(data: bytes, name: str) -> "pd.DataFrame":
    """Parse and validate one UJIIndoorLoc CSV.

    Returns a DataFrame with exactly ``COLUMNS`` (in that order), all numeric. Raises
    :class:`DataError` naming the file, the CSV line and the column of the first bad cell.
    """
    import pandas as pd

    try:
        # Blank lines are kept (as all-NaN rows) so row numbers stay true CSV line numbers.
        frame = pd.read_csv(io.BytesIO(data), skip_blank_lines=False, low_memory=False)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{name}: empty file") from exc
    except pd.errors.ParserError as exc:
        raise DataError(f"{name}: malformed CSV ({shown(exc, 200)})") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: {not_utf8(data)}") from exc

    columns = [str(c) for c in frame.columns]
    missing = [c for c in COLUMNS if c not in columns]
    extra = [c for c in columns if c not in COLUMNS]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""))
        if extra:
            parts.append(f"unexpected column(s) {', '.join(extra[:10])}" + (" ..." if len(extra) > 10 else ""))
        raise DataError(f"{name}: {'; '.join(parts)} (expected WAP001..WAP520, {', '.join(INFO_COLUMNS)})")
    if len(frame) == 0:
        raise DataError(f"{name}: header only, no rows")
    frame = frame[list(COLUMNS)]

    # Non-numeric cells: pandas leaves such a column as strings; find the first bad cell.
    bad: list[tuple[int, int, object]] = []
    for index, column in enumerate(COLUMNS):
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values):
            numeric = pd.to_numeric(values, errors="coerce")
            wrong = numeric.isna() & values.notna()
            if wrong.any():
                row = int(np.flatnonzero(wrong.to_numpy())[0])
                bad.append((row, index, values.iloc[row]))
            frame[column] = numeric
    if bad:
        row, index, value = min(bad)
        raise DataError(f"{name}: line {_line(row)}, column {COLUMNS[index]}: non-numeric value {shown(value)}")

    values = frame.to_numpy(dtype=np.float64)
    nan_rows, nan_cols = np.nonzero(np.isnan(values))
    if nan_rows.size:
        raise DataError(
            f"{name}: line {_line(nan_rows[0])}, column {COLUMNS[nan_cols[0]]}: missing or NaN value "
            f"({nan_rows.size} such cell(s) in the file)"
        )

    rssi = values[:, : len(WAP_COLUMNS)]
    outside = ~(((rssi >= RSSI_MIN) & (rssi <= RSSI_MAX)) | (rssi == NOT_HEARD))
    rows, cols = np.nonzero(outside)
    if rows.size:
        raise DataError(
            f"{name}: line {_line(rows[0])}, column {WAP_COLUMNS[cols[0]]}: RSSI {rssi[rows[0], cols[0]]:g} "
            f"outside {RSSI_MIN}..{RSSI_MAX} dBm (and not {NOT_HEARD} = not heard); "
            f"{rows.size} such cell(s) in the file"
        )
    for column in INTEGER_COLUMNS:
        col = frame[column].to_numpy(dtype=np.float64)
        wrong = np.flatnonzero((col < 0) | (col != np.round(col)))
        if wrong.size:
            raise DataError(
                f"{name}: line {_line(wrong[0])}, column {column}: {col[wrong[0]]:g} is not a "
                f"non-negative integer"
            )
    return frame


def read_uji(source: str | os.PathLike) -> UjiTables:
    """Read and validate the archive (or a folder with the two CSVs)."""
    source = Path(source)
    raw, names, source_sha = _read_source_bytes(source)
    files_sha = {csv: _sha256_bytes(raw[csv]) for csv in (TRAIN_CSV, TEST_CSV)}
    train = parse_csv(raw[TRAIN_CSV], names[TRAIN_CSV])
    test = parse_csv(raw[TEST_CSV], names[TEST_CSV])
    floors = set(zip(train["BUILDINGID"].astype(int), train["FLOOR"].astype(int)))
    test_floors = list(zip(test["BUILDINGID"].astype(int), test["FLOOR"].astype(int)))
    for row, floor in enumerate(test_floors):
        if floor not in floors:
            raise DataError(
                f"{names[TEST_CSV]}: line {_line(row)}: building {floor[0]} floor {floor[1]} "
                f"never occurs in {TRAIN_CSV}, so it has no class"
            )
    return UjiTables(train, test, source, source_sha, files_sha)


# ----------------------------------------------------------------------------- labels


def floor_name(building: int, floor: int) -> str:
    return f"B{int(building)}F{int(floor)}"


def apportion(weights: np.ndarray, total: int, caps: np.ndarray) -> np.ndarray:
    """Integer shares of ``total`` proportional to ``weights``, each in ``1..cap``.

    Largest-remainder (Hamilton) method, one unit at a time: start from the rounded-down
    quotas, then give the next unit to the entry furthest below its quota (first one on a
    tie, so the result is deterministic).
    """
    weights = np.asarray(weights, dtype=np.float64)
    caps = np.asarray(caps, dtype=np.int64)
    if total < len(weights):
        raise DataError(f"{total} areas cannot cover {len(weights)} building-floors (at least one each)")
    if total > caps.sum():
        raise DataError(f"{total} areas but only {int(caps.sum())} distinct training reference points (ask for fewer areas)")
    quota = weights / weights.sum() * total
    shares = np.clip(np.floor(quota).astype(np.int64), 1, caps)
    while shares.sum() < total:
        shares[np.argmax(np.where(shares < caps, quota - shares, -np.inf))] += 1
    while shares.sum() > total:  # only when the floor of 1 pushed the sum over
        shares[np.argmin(np.where(shares > 1, quota - shares, np.inf))] -= 1
    return shares


@dataclass
class AreaPartition:
    """k-means areas per building-floor. ``centres[floor]`` is ``[k, 2]`` (longitude, latitude),
    ordered west to east (then south to north); ``offset[floor]`` is its first class index."""

    floors: list[tuple[int, int]]
    centres: dict[tuple[int, int], np.ndarray]
    offset: dict[tuple[int, int], int]
    hull_area: dict[tuple[int, int], float]

    @property
    def names(self) -> list[str]:
        names = []
        for floor in self.floors:
            names += [f"{floor_name(*floor)}-A{i:02d}" for i in range(len(self.centres[floor]))]
        return names

    def assign(self, building: np.ndarray, floor: np.ndarray, coords: np.ndarray) -> np.ndarray:
        """Class index of the nearest area centre on each scan's own building-floor."""
        labels = np.empty(len(coords), dtype=np.int32)
        keys = np.stack([building, floor], axis=1).astype(np.int64)
        for key in self.floors:
            rows = np.flatnonzero((keys[:, 0] == key[0]) & (keys[:, 1] == key[1]))
            if rows.size == 0:
                continue
            distance = ((coords[rows, None, :] - self.centres[key][None]) ** 2).sum(-1)
            labels[rows] = self.offset[key] + distance.argmin(axis=1)
        return labels


def fit_areas(building: np.ndarray, floor: np.ndarray, coords: np.ndarray, total: int = DEFAULT_AREAS) -> AreaPartition:
    """Partition each building-floor's reference points into areas with k-means.

    Fitted on the *distinct* training coordinates (each reference point counts once, however
    many scans were taken there), shifted to the floor's mean for numerical range. The number
    of areas per floor is proportional to the convex-hull area of its reference points, so
    areas have comparable physical size.
    """
    from scipy.spatial import ConvexHull, QhullError
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    keys = np.stack([building, floor], axis=1).astype(np.int64)
    floors = sorted({(int(b), int(f)) for b, f in keys})
    points, hull = {}, {}
    for key in floors:
        rows = (keys[:, 0] == key[0]) & (keys[:, 1] == key[1])
        unique = np.unique(coords[rows], axis=0)  # sorted: independent of row order
        points[key] = unique
        try:
            hull[key] = float(ConvexHull(unique).volume) if len(unique) >= 3 else 0.0
        except QhullError:  # collinear points: no area
            hull[key] = 0.0
    weights = np.array([hull[k] for k in floors])
    if weights.sum() <= 0:
        weights = np.array([len(points[k]) for k in floors], dtype=np.float64)
    caps = np.array([len(points[k]) for k in floors])
    shares = apportion(weights, total, caps)

    centres, offset, start = {}, {}, 0
    # One thread: k-means is then bit-for-bit repeatable across machines and core counts.
    with threadpool_limits(limits=1):
        for key, k in zip(floors, shares):
            unique = points[key]
            mean = unique.mean(axis=0)
            kmeans = KMeans(n_clusters=int(k), n_init=10, random_state=AREA_KMEANS_SEED).fit(unique - mean)
            found = kmeans.cluster_centers_ + mean
            order = np.lexsort((found[:, 1], found[:, 0]))  # west to east, then south to north
            centres[key] = found[order]
            offset[key] = start
            start += int(k)
    return AreaPartition(floors=floors, centres=centres, offset=offset, hull_area=hull)


# ----------------------------------------------------------------------------- scaling


def rssi_dbm(frame: "pd.DataFrame") -> np.ndarray:
    """``[N, 520]`` float64 dBm with ``100`` (not heard) mapped to ``NOT_HEARD_DBM``."""
    rssi = frame[list(WAP_COLUMNS)].to_numpy(dtype=np.float64)
    return np.where(rssi == NOT_HEARD, NOT_HEARD_DBM, rssi)


SPLIT_SCHEMES = ("grouped", "stratified")
# Candidate group subsets tried by grouped_split; enough to find a good one among the
# 2^18 subsets of trainingData's 18 (user, phone) groups, fast (well under a second).
GROUPED_SPLIT_CANDIDATES = 4000


def grouped_split(labels: np.ndarray, groups: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole groups (here ``(USERID, PHONEID)``) for validation.

    The test scans of UJIIndoorLoc come from other users and phones, months later; a random
    split shares users, phones and days between train and val, so val scores do not rank
    models the way test does. This split draws seeded random subsets of groups and keeps
    the best one that

    1. leaves every class at least one training scan (a class the model never sees cannot
       be learnt), and
    2. puts between ``val_fraction`` / 1.5 and ``val_fraction`` * 1.5 of the scans in val;

    best = most classes present in val, then the val share closest to ``val_fraction``,
    then the first drawn. Returns sorted ``(train_idx, val_idx)``.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    names, group_of = np.unique(groups, return_inverse=True)
    if len(names) < 2:
        raise DataError(f"a grouped split needs at least 2 (user, phone) groups, found {len(names)}")
    classes = np.unique(labels)
    size = np.bincount(group_of, minlength=len(names)) / len(labels)
    # has[g, c]: group g holds class c
    has = np.zeros((len(names), len(classes)), dtype=bool)
    has[group_of, np.searchsorted(classes, labels)] = True
    rng = np.random.default_rng(seed)
    best, best_key = None, None
    for _ in range(GROUPED_SPLIT_CANDIDATES):
        chosen = rng.random(len(names)) < val_fraction
        share = float(size[chosen].sum())
        if not chosen.any() or chosen.all() or not (val_fraction / 1.5 <= share <= val_fraction * 1.5):
            continue
        if not has[~chosen].any(axis=0).all():
            continue
        key = (int(has[chosen].any(axis=0).sum()), -abs(share - val_fraction))
        if best_key is None or key > best_key:
            best, best_key = chosen, key
    if best is None:
        raise DataError(
            f"no split of the {len(names)} (user, phone) groups keeps every class in train with about "
            f"{val_fraction:.0%} of the scans in val; use --split stratified"
        )
    is_val = best[group_of]
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


@dataclass
class ScanLabels:
    """The classes of one label scheme and every scan's class; ``area`` (every trainingData
    scan's area) is what both schemes stratify their split on."""

    classes: list[str]
    train: np.ndarray  # int32 [rows of trainingData]
    test: np.ndarray  # int32 [rows of validationData]
    area: np.ndarray
    partition: AreaPartition


def label_scans(tables: UjiTables, labels: str, areas: int = DEFAULT_AREAS) -> ScanLabels:
    """Labels of ``tables`` under ``labels`` (:data:`LABEL_SCHEMES`): the areas are fitted on
    trainingData's coordinates (:func:`fit_areas`), test scans take the nearest area centre."""

    def columns(frame):
        building = frame["BUILDINGID"].to_numpy(dtype=np.int64)
        floor = frame["FLOOR"].to_numpy(dtype=np.int64)
        coords = frame[["LONGITUDE", "LATITUDE"]].to_numpy(dtype=np.float64)
        return building, floor, coords

    building, floor, coords = columns(tables.train)
    test_building, test_floor, test_coords = columns(tables.test)
    partition = fit_areas(building, floor, coords, total=areas)
    area = partition.assign(building, floor, coords)
    if labels == "area":
        return ScanLabels(partition.names, area, partition.assign(test_building, test_floor, test_coords), area, partition)
    floor_index = {key: i for i, key in enumerate(partition.floors)}
    return ScanLabels(
        [floor_name(*key) for key in partition.floors],
        np.array([floor_index[(b, f)] for b, f in zip(building, floor)], dtype=np.int32),
        np.array([floor_index[(b, f)] for b, f in zip(test_building, test_floor)], dtype=np.int32),
        area, partition,
    )


#: Where a test scan's phone was seen, in the order :func:`phone_seen` numbers it.
PHONE_SEEN = ("in_train", "in_val_only", "in_neither")


def phone_seen(test_phones: np.ndarray, train_phones: np.ndarray, val_phones: np.ndarray) -> np.ndarray:
    """Per test scan, the index in :data:`PHONE_SEEN` of where its PHONEID was seen: in the
    train split, only in val, or in neither."""
    seen_train, seen_val = set(np.asarray(train_phones).tolist()), set(np.asarray(val_phones).tolist())
    return np.array([0 if p in seen_train else 1 if p in seen_val else 2 for p in np.asarray(test_phones).tolist()],
                    dtype=np.int64)


def phone_summary(phones: dict[str, np.ndarray]) -> dict:
    """Scans per PHONEID in each split, and how many test scans come from a phone the train
    split has, one only val has, or one in neither: a phone's receiver shifts every reading, so
    this says how far validation (and a refit on train + val) stands from the test."""
    seen = np.bincount(phone_seen(phones["test"], phones["train"], phones["val"]), minlength=len(PHONE_SEEN))
    return {
        "scans_per_phone": {split: {f"P{p}": int(n) for p, n in zip(*np.unique(ids, return_counts=True))}
                            for split, ids in phones.items()},
        "test_scans_by_phone_seen": {name: int(n) for name, n in zip(PHONE_SEEN, seen)},
    }


def group_name(group: int) -> str:
    """``"U11P13"`` for a :func:`user_phone_groups` id: how ``meta["split"]["val_groups"]`` names it."""
    return f"U{group // 1000}P{group % 1000}"


def user_phone_groups(frame: "pd.DataFrame") -> np.ndarray:
    """One id per (USERID, PHONEID) pair of ``frame``'s scans: ``USERID * 1000 + PHONEID``."""
    return frame["USERID"].to_numpy(dtype=np.int64) * 1000 + frame["PHONEID"].to_numpy(dtype=np.int64)


# ----------------------------------------------------------------------------- prepare


def prepare_uji(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    labels: str = "area",
    seed: int = 0,
    val_fraction: float = 0.25,
    areas: int = DEFAULT_AREAS,
    split: str = "grouped",
    representation: str = "powed",
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Prepare UJIIndoorLoc into the contract folder ``out`` (see ``tinyloc_tf.data.prepared``).

    ``X`` is ``[N, 1, 520]`` (T = 1: one scan is one sample), ``y`` is ``[N, 1]``.
    ``split``: ``grouped`` holds out whole (user, phone) groups (:func:`grouped_split`),
    ``stratified`` is the paper's random 75/25 stratified on areas. ``representation``: see
    ``tinyloc_tf.data.representation``.
    """
    from sklearn.model_selection import train_test_split
    from tqdm.auto import tqdm

    from tinyloc_tf.data.prepared import Split, write_prepared

    if labels not in LABEL_SCHEMES:
        raise DataError(f"unknown label scheme {labels!r}; expected one of {', '.join(LABEL_SCHEMES)}")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if split not in SPLIT_SCHEMES:
        raise DataError(f"unknown split scheme {split!r}; expected one of {', '.join(SPLIT_SCHEMES)}")
    if representation not in REPRESENTATIONS:
        raise DataError(f"unknown input representation {representation!r}; expected one of {', '.join(REPRESENTATIONS)}")

    steps = tqdm(total=5, desc="prepare uji", unit="step", disable=not progress)
    steps.set_postfix_str("reading CSVs")
    tables = read_uji(source)
    train_df, test_df = tables.train, tables.test
    steps.update()

    steps.set_postfix_str("areas")
    scans = label_scans(tables, labels, areas)
    partition, area, classes, y_all, y_test = scans.partition, scans.area, scans.classes, scans.train, scans.test
    floors = partition.floors
    steps.update()

    steps.set_postfix_str("split")
    # Stratify on the areas for both schemes: areas nest inside floors, so this stratifies
    # floors too and both label schemes train and validate on exactly the same scans.
    per_area = np.bincount(area, minlength=len(partition.names))
    if per_area.min() < 2:
        lonely = partition.names[int(per_area.argmin())]
        raise DataError(f"{tables.source}: area {lonely} has {per_area.min()} training scan(s); "
                        f"a stratified split needs at least 2 (use fewer areas)")
    index = np.arange(len(train_df))
    user_phone = user_phone_groups(train_df)
    if split == "grouped":
        try:
            train_idx, val_idx = grouped_split(area, user_phone, val_fraction, seed)
        except DataError as exc:
            raise DataError(f"{tables.source}: {exc}") from exc
    else:
        try:
            train_idx, val_idx = train_test_split(index, test_size=val_fraction, stratify=area, random_state=seed)
        except ValueError as exc:
            raise DataError(f"{tables.source}: cannot split {len(index)} scans stratified on "
                            f"{len(partition.names)} areas with val_fraction={val_fraction} ({exc})") from exc
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)  # keep file order inside a split
    steps.update()

    steps.set_postfix_str("scaling")
    dbm = rssi_dbm(train_df)
    test_dbm = rssi_dbm(test_df)
    encoding, unseen = fit_representation(representation, dbm[train_idx], NOT_HEARD_DBM)
    X_train, clipped_train = encoding.apply(dbm[train_idx])
    X_val, clipped_val = encoding.apply(dbm[val_idx])
    X_test, clipped_test = encoding.apply(test_dbm)
    steps.update()

    raw_train = train_df[list(WAP_COLUMNS)].to_numpy()
    raw_test = test_df[list(WAP_COLUMNS)].to_numpy()
    duplicated = train_df.duplicated()
    never_in_training = (raw_train == NOT_HEARD).all(axis=0)
    dup_groups = train_df.groupby(list(COLUMNS), sort=False).ngroup().to_numpy()
    straddling = len(set(dup_groups[train_idx]) & set(dup_groups[val_idx]))
    phones = {"train": train_df["PHONEID"].to_numpy()[train_idx], "val": train_df["PHONEID"].to_numpy()[val_idx],
              "test": test_df["PHONEID"].to_numpy()}

    meta = {
        "dataset": "ujiindoorloc",
        "features": list(WAP_COLUMNS),
        "classes": classes,
        "T": 1,
        "labels": labels,
        # not_heard (100) is mapped to not_heard_dbm before the representation's formula.
        "scaling": {**encoding.to_meta(), "not_heard": NOT_HEARD},
        "source": str(tables.source.resolve()),
        "source_sha256": tables.source_sha256,
        "source_files_sha256": tables.files_sha256,
        "source_is_official": tables.files_sha256 == UJI_CSV_SHA256,
        "split": {
            "scheme": split,
            "seed": int(seed),
            "val_fraction": float(val_fraction),
            "realised_val_fraction": round(len(val_idx) / len(index), 4),
            **({"groups": "(USERID, PHONEID)",
                "val_groups": sorted({group_name(g) for g in user_phone[val_idx].tolist()}),
                "classes_in_val": int(len(np.unique(area[val_idx])))}
               if split == "grouped" else {"stratify": "area"}),
            "train": f"{TRAIN_CSV} rows not in val",
            "val": (f"{TRAIN_CSV} rows of the held-out (user, phone) groups" if split == "grouped"
                    else f"{TRAIN_CSV} rows drawn by sklearn train_test_split"),
            "test": f"all of {TEST_CSV}",
        },
        "areas": {
            "method": "k-means (k-means++, n_init=10, seed 0) on the distinct training coordinates "
                      "of each building-floor; areas per floor proportional to its convex-hull area "
                      "(largest remainder); test scans take the nearest centre on their own floor",
            "total": int(areas),
            "per_floor": {floor_name(*k): int(len(partition.centres[k])) for k in floors},
            "hull_area_m2": {floor_name(*k): round(partition.hull_area[k], 3) for k in floors},
            "centres": {
                name: [float(v) for v in centre]
                for name, centre in zip(partition.names, np.concatenate([partition.centres[k] for k in floors]))
            },
        },
        "uji": {
            "rows": {TRAIN_CSV: int(len(train_df)), TEST_CSV: int(len(test_df))},
            "rows_removed": 0,
            "duplicated_rows": {TRAIN_CSV: int(duplicated.sum()), TEST_CSV: int(test_df.duplicated().sum())},
            "duplicate_groups_in_train_and_val": int(straddling),
            "rows_no_ap_heard": {
                TRAIN_CSV: int((raw_train == NOT_HEARD).all(axis=1).sum()),
                TEST_CSV: int((raw_test == NOT_HEARD).all(axis=1).sum()),
            },
            "aps_never_heard_in_trainingData": int(never_in_training.sum()),
            "aps_never_heard_in_train_split": int(unseen.sum()),
            "test_readings_on_aps_unseen_in_train_split": int((raw_test[:, unseen] != NOT_HEARD).sum()),
            "not_heard_fraction": {
                TRAIN_CSV: round(float((raw_train == NOT_HEARD).mean()), 6),
                TEST_CSV: round(float((raw_test == NOT_HEARD).mean()), 6),
            },
            "cells_clipped": {"train": clipped_train, "val": clipped_val, "test": clipped_test},
            **phone_summary(phones),
        },
    }
    steps.set_postfix_str("writing")
    splits = {
        "train": Split(X_train[:, None, :], y_all[train_idx, None].astype(np.int32)),
        "val": Split(X_val[:, None, :], y_all[val_idx, None].astype(np.int32)),
        "test": Split(X_test[:, None, :], y_test[:, None].astype(np.int32)),
    }
    path = write_prepared(out, splits, meta, overwrite=overwrite)
    steps.update()
    steps.close()
    return path


# ----------------------------------------------------------------------------- download


def _csv_digests(archive: zipfile.ZipFile, path: Path) -> dict[str, str]:
    members = _zip_members(archive, path)
    digests = {}
    for csv, member in members.items():
        digest = hashlib.sha256()
        with archive.open(member) as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        digests[csv] = digest.hexdigest()
    return digests


def verify_uji_archive(path: str | os.PathLike, sha256: str | None = None) -> None:
    """Accept ``path`` if it is the official archive, byte for byte or by its two CSVs.

    UCI's current download may be a re-zip of the same CSVs (different archive bytes) or a
    wrapper zip holding ``UJIndoorLoc.zip``; a wrapper is unpacked in place (``path`` is
    overwritten by the inner archive) before the CSV digests are compared.
    """
    from tinyloc_tf.data.prepared import sha256_file

    path = Path(path)
    if (sha256 or sha256_file(path)) == UJI_ZIP_SHA256:
        return
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if not n.startswith("__MACOSX/")]
            inner = [n for n in names if n.lower().endswith(".zip")]
            has_csv = any(n.rsplit("/", 1)[-1] in (TRAIN_CSV, TEST_CSV) for n in names)
            if not has_csv and len(inner) == 1:
                data = archive.read(inner[0])
            else:
                data = None
                digests = _csv_digests(archive, path)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{path}: not a zip archive ({exc})") from exc
    if data is not None:
        path.write_bytes(data)
        return verify_uji_archive(path)
    wrong = [f"{csv} sha256 {digests[csv]} (expected {UJI_CSV_SHA256[csv]})"
             for csv in (TRAIN_CSV, TEST_CSV) if digests[csv] != UJI_CSV_SHA256[csv]]
    if wrong:
        raise DataError(f"{path}: not the official UJIIndoorLoc data: {'; '.join(wrong)}")


def fetch_uji(dest_dir: str | os.PathLike, *, progress: bool = True) -> Path:
    """Download the official archive to ``dest_dir/UJIndoorLoc.zip`` (verified) and return it."""
    from tinyloc_tf.data.download import download

    target = Path(dest_dir) / UJI_ZIP_NAME
    return download(
        UJI_URLS,
        target,
        verify=lambda path, sha: verify_uji_archive(path, sha),
        manual_hint=(
            f"Its sha256 is {UJI_ZIP_SHA256} (UCI dataset 310, https://archive.ics.uci.edu/dataset/310). "
            f"`tinyloc data prepare uji --source {target}` reads it; --source also accepts a folder "
            f"holding {TRAIN_CSV} and {TEST_CSV}"
        ),
        progress=progress,
    )
