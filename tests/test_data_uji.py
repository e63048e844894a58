"""UJIIndoorLoc loader: validation errors on small hand-built CSVs, preprocessing rules, and
the counts of the real archive (skipped when it is absent)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import small_tables, write_folder, write_zip
from tinyloc_tf.data import load_prepared
from tinyloc_tf.data.prepared import sha256_file
from tinyloc_tf.data.uji import (
    NOT_HEARD_DBM,
    TEST_CSV,
    TRAIN_CSV,
    UJI_CSV_SHA256,
    UJI_ZIP_SHA256,
    WAP_COLUMNS,
    apportion,
    prepare_uji,
    read_uji,
    verify_uji_archive,
)
from tinyloc_tf.errors import DataError

# ----------------------------------------------------------------------------- small data
# small_tables, write_folder and write_zip are in helpers.py.


@pytest.fixture
def small(tmp_path):
    train, test = small_tables()
    return write_folder(tmp_path / "raw", train, test)


def _bad(tmp_path: Path, edit) -> Path:
    """A folder whose trainingData.csv text went through ``edit(lines) -> lines``."""
    train, test = small_tables()
    folder = write_folder(tmp_path / "bad", train, test)
    lines = (folder / TRAIN_CSV).read_text().splitlines()
    (folder / TRAIN_CSV).write_text("\n".join(edit(lines)) + "\n")
    return folder


def _set_cell(lines: list[str], line: int, column: str, value: str) -> list[str]:
    """Replace one cell; ``line`` is the 1-based CSV line."""
    index = lines[0].split(",").index(column)
    cells = lines[line - 1].split(",")
    cells[index] = value
    lines[line - 1] = ",".join(cells)
    return lines


# ----------------------------------------------------------------------------- errors


def test_missing_source_names_path_and_fetch(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.zip: not found.*tinyloc data fetch uji"):
        read_uji(tmp_path / "nowhere.zip")


def test_folder_without_csv_names_both_places(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no trainingData\.csv \(looked for .*UJIndoorLoc/trainingData\.csv"):
        read_uji(tmp_path / "empty")


def test_zip_without_csv_and_broken_zip(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(DataError, match=r"other\.zip: no trainingData\.csv in the archive"):
        read_uji(path)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"broken\.zip: not a zip archive"):
        read_uji(broken)


def test_missing_column(tmp_path):
    train, test = small_tables()
    folder = write_folder(tmp_path / "raw", train.drop(columns=["WAP007"]), test)
    with pytest.raises(DataError, match=r"trainingData\.csv: missing column\(s\) WAP007"):
        read_uji(folder)


def test_extra_column(tmp_path):
    train, test = small_tables()
    test = pd.concat([test, pd.Series(1, index=test.index, name="EXTRA")], axis=1)
    folder = write_folder(tmp_path / "raw", train, test)
    with pytest.raises(DataError, match=r"validationData\.csv: unexpected column\(s\) EXTRA"):
        read_uji(folder)


def test_non_numeric_names_line_and_column(tmp_path):
    folder = _bad(tmp_path, lambda lines: _set_cell(lines, 5, "WAP003", "strong"))
    with pytest.raises(DataError, match=r"trainingData\.csv: line 5, column WAP003: non-numeric value 'strong'"):
        read_uji(folder)


def test_nan_names_line_and_column(tmp_path):
    folder = _bad(tmp_path, lambda lines: _set_cell(lines, 9, "LATITUDE", ""))
    with pytest.raises(DataError, match=r"line 9, column LATITUDE: missing or NaN value"):
        read_uji(folder)


def test_blank_line_keeps_line_numbers(tmp_path):
    folder = _bad(tmp_path, lambda lines: lines[:3] + [""] + lines[3:])
    with pytest.raises(DataError, match=r"line 4, column WAP001: missing or NaN value"):
        read_uji(folder)


@pytest.mark.parametrize("value", ["-105", "1", "99", "101"])
def test_rssi_out_of_range(tmp_path, value):
    folder = _bad(tmp_path, lambda lines: _set_cell(lines, 12, "WAP520", value))
    with pytest.raises(DataError, match=rf"line 12, column WAP520: RSSI {value} outside -104\.\.0 dBm"):
        read_uji(folder)


def test_floor_must_be_integer(tmp_path):
    folder = _bad(tmp_path, lambda lines: _set_cell(lines, 3, "FLOOR", "1.5"))
    with pytest.raises(DataError, match=r"line 3, column FLOOR: 1\.5 is not a non-negative integer"):
        read_uji(folder)


def test_test_floor_unknown_in_training(tmp_path):
    train, test = small_tables()
    test.loc[2, "FLOOR"] = 3
    folder = write_folder(tmp_path / "raw", train, test)
    with pytest.raises(DataError, match=r"validationData\.csv: line 4: building 0 floor 3 never occurs"):
        read_uji(folder)


def test_bad_options(small, tmp_path):
    with pytest.raises(DataError, match="unknown label scheme 'room'"):
        prepare_uji(small, tmp_path / "out", labels="room")
    with pytest.raises(DataError, match="val_fraction"):
        prepare_uji(small, tmp_path / "out", val_fraction=1.0)
    with pytest.raises(DataError, match="only 16 distinct training reference points"):
        prepare_uji(small, tmp_path / "out", areas=17)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- preprocessing


def test_apportion_is_proportional_exact_and_bounded():
    shares = apportion(np.array([1.0, 1.0, 2.0, 0.1]), 10, caps=np.array([50, 50, 50, 50]))
    assert shares.tolist() == [2, 2, 5, 1]  # floor 1 each at least; quotas 2.44 2.44 4.88 0.24
    assert apportion(np.array([3.0, 1.0]), 8, caps=np.array([3, 10])).tolist() == [3, 5]
    real = np.array([5558, 6349, 6394, 6395, 12245, 13684, 13427, 12091, 7011, 7156, 6410, 7184, 4800.0])
    assert apportion(real, 59, caps=np.full(13, 100)).tolist() == [3, 3, 3, 3, 7, 7, 7, 7, 4, 4, 4, 4, 3]


def test_prepare_small_area(small, tmp_path):
    out = prepare_uji(small, tmp_path / "area", areas=4, seed=3)
    data = load_prepared(out)
    meta = data.meta
    assert data.steps == 1 and data.num_features == 520
    assert data.class_names == ["B0F0-A00", "B0F0-A01", "B0F1-A00", "B0F1-A01"]
    assert meta["areas"]["per_floor"] == {"B0F0": 2, "B0F1": 2}
    assert meta["counts"] == {"train": 48, "val": 16, "test": 8}
    assert (len(data.train), len(data.val), len(data.test)) == (48, 16, 8)
    for split in (data.train, data.val, data.test):
        assert split.X.shape[1:] == (1, 520) and split.y.shape[1:] == (1,)
        assert split.X.dtype == np.float32 and split.y.dtype == np.int32
        assert split.X.min() >= 0.0 and split.X.max() <= 1.0
    # Stratified: each of the 4 areas has 16 scans, 4 of which go to val.
    assert np.bincount(data.val.y.ravel(), minlength=4).tolist() == [4, 4, 4, 4]
    # The 4 x 2 grid splits west / east on each floor; test x = 1, 11 west, 21, 31 east.
    assert data.test.y.ravel().tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_scaling_rules(small, tmp_path):
    out = prepare_uji(small, tmp_path / "floor", labels="floor", areas=4, split="stratified", representation="minmax")
    data = load_prepared(out)
    meta = data.meta
    train_raw, test_raw = small_tables()
    lo, hi = np.array(meta["scaling"]["min"]), np.array(meta["scaling"]["max"])
    # Heard APs: min is the not-heard value (every AP is silent on the other floor), max the
    # strongest training reading.
    assert lo[0] == NOT_HEARD_DBM and hi[0] <= -40
    # Never heard in train: the physical range, so it never divides by zero.
    assert lo[9] == NOT_HEARD_DBM and hi[9] == 0
    assert meta["scaling"]["not_heard"] == 100 and meta["scaling"]["not_heard_dbm"] == NOT_HEARD_DBM
    assert meta["uji"]["aps_never_heard_in_train_split"] == 520 - 8
    assert meta["uji"]["test_readings_on_aps_unseen_in_train_split"] == 1
    assert data.test.X[1, 0, 9] == pytest.approx((-52 - NOT_HEARD_DBM) / 105)
    # Not heard -> exactly 0; the too-strong test reading is clipped to 1 and counted.
    assert np.all(data.train.X[:, 0, 8:] == 0)
    assert data.test.X[0, 0, 0] == 1.0
    assert meta["uji"]["cells_clipped"]["test"] >= 1
    assert meta["uji"]["cells_clipped"]["train"] == 0
    # Train and val rows are the documented formula applied with meta's min/max alone.
    dbm = train_raw[list(WAP_COLUMNS)].to_numpy(float)
    dbm = np.where(dbm == 100, NOT_HEARD_DBM, dbm)
    expected = np.clip((dbm - lo) / (hi - lo), 0, 1).astype(np.float32)
    got = np.concatenate([data.train.X[:, 0], data.val.X[:, 0]])

    def rows_sorted(a):
        return a[np.lexsort(a.T[::-1])]

    np.testing.assert_allclose(rows_sorted(got), rows_sorted(expected), atol=1e-6)
    assert data.class_names == ["B0F0", "B0F1"]


@pytest.mark.parametrize("kind", ["dbm", "powed"])
def test_physical_representations(small, tmp_path, kind):
    """dbm / powed: one formula for every AP over -105..0 dBm, from meta.json alone."""
    data = load_prepared(prepare_uji(small, tmp_path / kind, labels="floor", areas=4, representation=kind))
    scaling = data.meta["scaling"]
    assert scaling["representation"] == kind and "min" not in scaling
    train_raw, _ = small_tables()
    dbm = train_raw[list(WAP_COLUMNS)].to_numpy(float)
    dbm = np.where(dbm == 100, NOT_HEARD_DBM, dbm)
    expected = (dbm - NOT_HEARD_DBM) / -NOT_HEARD_DBM
    if kind == "powed":
        assert scaling["exponent"] == pytest.approx(np.e)
        expected = expected ** np.e
    got = np.concatenate([data.train.X[:, 0], data.val.X[:, 0]])
    key = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731  (row order differs between splits)
    np.testing.assert_allclose(key(got), key(expected.astype(np.float32)), atol=1e-6)
    # Not heard is 0; a test reading stronger than any in training is not clipped (the
    # physical range holds it), unlike minmax.
    strong = (-20 - NOT_HEARD_DBM) / -NOT_HEARD_DBM
    assert data.test.X[0, 0, 0] == pytest.approx(strong ** (np.e if kind == "powed" else 1.0), abs=1e-6)
    assert np.all(data.train.X[:, 0, 8:] == 0) and data.meta["uji"]["cells_clipped"]["test"] == 0


def test_relative_representation(small, tmp_path):
    """relative: each scan's strongest reading at reference_dbm, the rest by their distance below
    it, powed; recorded in meta.json with its reference."""
    from tinyloc_tf.data.representation import RELATIVE_REFERENCE_DBM

    data = load_prepared(prepare_uji(small, tmp_path / "relative", labels="floor", areas=4, representation="relative"))
    scaling = data.meta["scaling"]
    assert scaling["representation"] == "relative" and scaling["reference_dbm"] == RELATIVE_REFERENCE_DBM
    train_raw, _ = small_tables()
    dbm = train_raw[list(WAP_COLUMNS)].to_numpy(float)
    heard = dbm != 100
    strongest = np.where(heard, dbm, -np.inf).max(axis=1, keepdims=True)
    moved = np.where(heard, dbm - strongest + RELATIVE_REFERENCE_DBM, NOT_HEARD_DBM)
    expected = np.clip((moved - NOT_HEARD_DBM) / -NOT_HEARD_DBM, 0, 1) ** np.e
    got = np.concatenate([data.train.X[:, 0], data.val.X[:, 0]])
    key = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731  (row order differs between splits)
    np.testing.assert_allclose(key(got), key(expected.astype(np.float32)), atol=1e-6)
    top = ((RELATIVE_REFERENCE_DBM - NOT_HEARD_DBM) / -NOT_HEARD_DBM) ** np.e
    assert np.allclose(got.max(axis=1)[heard.any(axis=1)], top)


def test_grouped_split_holds_out_whole_groups(tmp_path):
    """No (user, phone) group in both train and val, and every class keeps training scans."""
    train, test = small_tables()
    train["PHONEID"] = np.where(train["USERID"] % 2 == 0, 13, 7)
    meta = load_prepared(prepare_uji(write_folder(tmp_path / "raw", train, test), tmp_path / "out", areas=4,
                                     split="grouped", val_fraction=0.25)).meta
    split = meta["split"]
    assert split["scheme"] == "grouped" and len(split["val_groups"]) == 1
    val_user, val_phone = (int(part) for part in split["val_groups"][0][1:].split("P"))
    in_val = (train["USERID"] == val_user) & (train["PHONEID"] == val_phone)
    assert meta["counts"]["val"] == int(in_val.sum()) and meta["counts"]["train"] == int((~in_val).sum())
    assert split["classes_in_val"] == 4
    # Scans per phone and split; the test phones counted by where they were seen.
    phones = meta["uji"]["scans_per_phone"]
    assert sum(phones["val"].values()) == meta["counts"]["val"] and set(phones["val"]) == {f"P{val_phone}"}
    assert sum(phones["train"].values()) == meta["counts"]["train"]
    assert sum(phones["test"].values()) == len(test)
    assert sum(meta["uji"]["test_scans_by_phone_seen"].values()) == len(test)


def test_phone_summary_counts_test_scans_by_where_their_phone_was_seen():
    from tinyloc_tf.data.uji import phone_summary

    summary = phone_summary({"train": np.array([1, 1, 2]), "val": np.array([2, 3]), "test": np.array([1, 3, 3, 4, 2])})
    assert summary["scans_per_phone"]["train"] == {"P1": 2, "P2": 1}
    assert summary["scans_per_phone"]["test"] == {"P1": 1, "P2": 1, "P3": 2, "P4": 1}
    assert summary["test_scans_by_phone_seen"] == {"in_train": 2, "in_val_only": 2, "in_neither": 1}


def test_grouped_split_function():
    from tinyloc_tf.data.uji import grouped_split

    rng = np.random.default_rng(0)
    groups = rng.integers(0, 12, 600)
    labels = rng.integers(0, 5, 600)
    labels[groups == 3] = 5  # class 5 only in group 3: it must stay in train
    train_idx, val_idx = grouped_split(labels, groups, 0.25, seed=0)
    assert not set(groups[train_idx]) & set(groups[val_idx])
    assert 5 in set(labels[train_idx]) and set(labels[train_idx]) == set(range(6))
    assert len(val_idx) / 600 == pytest.approx(0.25, abs=0.125)
    np.testing.assert_array_equal(grouped_split(labels, groups, 0.25, seed=0)[1], val_idx)
    with pytest.raises(DataError, match="at least 2"):
        grouped_split(labels, np.zeros(600), 0.25, seed=0)


def test_nothing_dropped_and_facts_counted(tmp_path):
    train, test = small_tables()
    train = pd.concat([train, train.iloc[[0, 1]]], ignore_index=True)  # two exact duplicates
    silent = train.iloc[[2]].copy()
    silent[list(WAP_COLUMNS)] = 100  # a scan that heard nothing
    train = pd.concat([train, silent], ignore_index=True)
    folder = write_folder(tmp_path / "raw", train, test)
    meta = load_prepared(prepare_uji(folder, tmp_path / "out", labels="floor", areas=4)).meta
    assert meta["counts"]["train"] + meta["counts"]["val"] == len(train) == 67
    assert meta["uji"]["rows"] == {TRAIN_CSV: 67, TEST_CSV: 8}
    assert meta["uji"]["rows_removed"] == 0
    assert meta["uji"]["duplicated_rows"][TRAIN_CSV] == 2
    assert meta["uji"]["rows_no_ap_heard"][TRAIN_CSV] == 1
    assert meta["uji"]["aps_never_heard_in_trainingData"] == 512


def test_zip_and_folder_layouts_agree(tmp_path):
    train, test = small_tables()
    outs = []
    sources = [
        write_zip(tmp_path / "uji.zip", train, test),
        write_folder(tmp_path / "flat", train, test),
        write_folder(tmp_path / "nested", train, test, nested=True),
    ]
    for index, source in enumerate(sources):
        outs.append(load_prepared(prepare_uji(source, tmp_path / f"out{index}", areas=4)))
    for other in outs[1:]:
        for name in ("train", "val", "test"):
            np.testing.assert_array_equal(outs[0].split(name).X, other.split(name).X)
            np.testing.assert_array_equal(outs[0].split(name).y, other.split(name).y)
        assert other.meta["source_files_sha256"] == outs[0].meta["source_files_sha256"]
    assert outs[0].meta["source_sha256"] == sha256_file(sources[0])
    assert outs[1].meta["source_sha256"] == outs[2].meta["source_sha256"] != outs[0].meta["source_sha256"]
    assert outs[0].meta["source_is_official"] is False


def test_deterministic_files_and_seed_changes_split(small, tmp_path):
    first = prepare_uji(small, tmp_path / "a", areas=4, seed=1)
    second = prepare_uji(small, tmp_path / "b", areas=4, seed=1)
    for name in ("train.npz", "val.npz", "test.npz", "meta.json"):
        assert sha256_file(first / name) == sha256_file(second / name), name
    other = load_prepared(prepare_uji(small, tmp_path / "c", areas=4, seed=2))
    assert not np.array_equal(load_prepared(first).val.X, other.val.X)
    np.testing.assert_array_equal(load_prepared(first).test.y, other.test.y)  # X moves with train min/max


def test_verify_archive_by_csv_digests(tmp_path):
    train, test = small_tables()
    path = write_zip(tmp_path / "uji.zip", train, test)
    with pytest.raises(DataError, match=r"not the official UJIIndoorLoc data: trainingData\.csv sha256"):
        verify_uji_archive(path)


# ----------------------------------------------------------------------------- real archive


@pytest.fixture(scope="module")
def uji_area(uji_zip, tmp_path_factory):
    # The paper's stratified split (the grouped default is checked in test_real_grouped_split).
    return prepare_uji(uji_zip, tmp_path_factory.mktemp("uji") / "area", split="stratified")


@pytest.fixture(scope="module")
def uji_floor(uji_zip, tmp_path_factory):
    return prepare_uji(uji_zip, tmp_path_factory.mktemp("uji") / "floor", labels="floor", split="stratified")


def test_real_archive_is_official(uji_zip):
    assert sha256_file(uji_zip) == UJI_ZIP_SHA256
    verify_uji_archive(uji_zip)


def test_real_grouped_split(uji_zip, tmp_path):
    """The default split: held-out (user, phone) groups, every area still in train."""
    import pandas as pd

    data = load_prepared(prepare_uji(uji_zip, tmp_path / "grouped"))
    split = data.meta["split"]
    assert split["scheme"] == "grouped" and data.meta["scaling"]["representation"] == "powed"
    assert set(np.unique(data.train.y)) == set(range(59))
    with zipfile.ZipFile(uji_zip) as archive:
        frame = pd.read_csv(archive.open(f"UJIndoorLoc/{TRAIN_CSV}"), usecols=["USERID", "PHONEID"])
    names = {f"U{u}P{p}" for u, p in zip(frame["USERID"], frame["PHONEID"])}
    val_groups = set(split["val_groups"])
    assert val_groups < names
    in_val = np.array([f"U{u}P{p}" in val_groups for u, p in zip(frame["USERID"], frame["PHONEID"])])
    assert len(data.val) == int(in_val.sum()) and len(data.train) == int((~in_val).sum())


def test_real_area_counts(uji_area):
    data = load_prepared(uji_area)
    meta = data.meta
    assert len(data.train) + len(data.val) == 19937
    assert len(data.test) == 1111
    assert len(data.val) == 4985  # ceil(0.25 * 19937)
    assert data.num_features == 520 and data.steps == 1
    assert data.num_classes == 59 and len(set(data.class_names)) == 59
    assert sum(meta["areas"]["per_floor"].values()) == 59 and len(meta["areas"]["per_floor"]) == 13
    assert data.class_names[0] == "B0F0-A00" and data.class_names[-1] == "B2F4-A02"
    for split in (data.train, data.val, data.test):
        assert split.X.dtype == np.float32 and 0.0 <= split.X.min() and split.X.max() <= 1.0
    # Facts DATA.md states, reported rather than removed.
    uji = meta["uji"]
    assert uji["rows_removed"] == 0
    assert uji["duplicated_rows"] == {TRAIN_CSV: 637, TEST_CSV: 0}
    assert uji["rows_no_ap_heard"] == {TRAIN_CSV: 76, TEST_CSV: 0}
    assert uji["aps_never_heard_in_trainingData"] == 55
    assert uji["not_heard_fraction"][TRAIN_CSV] == pytest.approx(0.965, abs=0.001)
    assert uji["cells_clipped"]["train"] == 0
    assert meta["source_sha256"] == UJI_ZIP_SHA256
    assert meta["source_files_sha256"] == UJI_CSV_SHA256 and meta["source_is_official"] is True
    # Stratified: every area's val share is within one scan of 25 %.
    train_counts = np.bincount(data.train.y.ravel(), minlength=59)
    val_counts = np.bincount(data.val.y.ravel(), minlength=59)
    assert np.all(np.abs(val_counts - 0.25 * (train_counts + val_counts)) <= 1)
    assert train_counts.min() >= 30


def test_real_floor_counts_and_shared_split(uji_area, uji_floor):
    area, floor = load_prepared(uji_area), load_prepared(uji_floor)
    assert floor.num_classes == 13
    assert floor.class_names == [f"B0F{f}" for f in range(4)] + [f"B1F{f}" for f in range(4)] + [
        f"B2F{f}" for f in range(5)]
    # Per-floor test counts of validationData (building, floor).
    assert np.bincount(floor.test.y.ravel(), minlength=13).tolist() == [
        78, 208, 165, 85, 30, 143, 87, 47, 24, 111, 54, 40, 39]
    # Both schemes use the same rows, and every area nests in its floor.
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(area.split(name).X, floor.split(name).X)
        area_floor = [area.class_names[i].split("-")[0] for i in area.split(name).y.ravel()]
        assert area_floor == [floor.class_names[i] for i in floor.split(name).y.ravel()]


@pytest.mark.slow
def test_real_prepare_is_deterministic(uji_zip, uji_area, tmp_path):
    again = prepare_uji(uji_zip, tmp_path / "area", split="stratified")  # as the uji_area fixture
    for name in ("train.npz", "val.npz", "test.npz", "meta.json"):
        assert sha256_file(again / name) == sha256_file(uji_area / name), name
    assert json.loads((again / "meta.json").read_text())["areas"] == json.loads(
        (uji_area / "meta.json").read_text())["areas"]
