"""The synthetic house: deterministic, in the raw layout, and read back by the real loader."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tinyloc_tf.data import load_prepared
from tinyloc_tf.data.inhome import prepare_inhome
from tinyloc_tf.data.synth import EXTERIOR_WALL_DB, TWO_FLOORS, WALL_DB, House, synthesize_house
from tinyloc_tf.errors import TinylocError

SMALL = dict(fingerprint_minutes=6.0, fingerprint_sessions=2, living_sessions=1, living_minutes=5.0)
TWO_FLOOR_ROOMS = ["living_room", "kitchen", "hallway", "toilet", "study", "stairs", "landing",
                   "bedroom_1", "bedroom_2", "bathroom"]


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_house(tmp_path_factory) -> Path:
    return synthesize_house(tmp_path_factory.mktemp("synth") / "raw", seed=3, **SMALL)


@pytest.fixture(scope="module")
def small_prepared(small_house, tmp_path_factory):
    return load_prepared(prepare_inhome(small_house, "A", tmp_path_factory.mktemp("prepared") / "A"))


def test_layout_matches_the_raw_dataset(small_house):
    house = small_house / "house_A"
    for name in ("room_names.dat", "room_tags.dat", "ap_coordinates.dat", "ap_rooms.dat", "ap_mac_addresses.dat",
                 "floor_tags.dat", "floor_aps.dat", "tag_coordinates.dat", "tag_adjacency.dat", "act_desc.dat"):
        assert (house / "metadata" / name).is_file(), name
    sessions = sorted(p.name for p in (house / "experiments").iterdir())
    assert sessions == ["fingerprint_1", "fingerprint_2", "living_1"]
    for session in sessions:
        for name in ("rx_wearable_data.dat", "tag_annotations.dat", "ap_mac_ref.dat", "wear_mac_ref.dat",
                     "accelerometer_filtered.dat", "activity_annotation_times.dat"):
            assert (house / "experiments" / session / name).is_file(), (session, name)
    rx = (house / "experiments" / "living_1" / "rx_wearable_data.dat").read_text().splitlines()
    assert rx[0] == "timestamp,ap_id,wearable_id,rssi"
    stamp, ap, wearable, rssi = rx[1].split(",")
    assert len(stamp) == 23 and stamp[10] == "T" and stamp[19] == "."  # millisecond datetime
    assert 1 <= int(ap) <= 11 and -110 <= int(rssi) <= 0


def test_same_seed_byte_identical(tmp_path):
    a = synthesize_house(tmp_path / "a", seed=7, **SMALL)
    b = synthesize_house(tmp_path / "b", seed=7, **SMALL)
    c = synthesize_house(tmp_path / "c", seed=8, **SMALL)
    assert digests(a) == digests(b)
    rx = "house_A/experiments/living_1/rx_wearable_data.dat"
    assert digests(a)[rx] != digests(c)[rx]
    assert not list(a.glob(".house_*"))  # no staging folder left behind


def test_round_trip_through_the_loader(small_prepared):
    data = small_prepared
    assert data.class_names == TWO_FLOOR_ROOMS
    assert data.meta["features"] == [f"ap_{i}" for i in range(1, 12)]
    assert data.steps == 20
    for split in ("train", "val", "test"):
        part = data.split(split)
        assert len(part) > 0
        assert part.X.shape[1:] == (20, 11)
        assert 0.0 <= part.X.min() and part.X.max() <= 1.0
    # The scripted walks visit every room; validation holds most of them.
    assert set(np.unique(data.train.y)) == set(range(10))
    assert len(np.unique(data.val.y)) >= 7
    counts = data.meta["inhome"]
    assert counts["cells_forward_filled"] > 0 and counts["cells_not_heard"] > 0  # drops and gaps happen


def test_each_receiver_is_loudest_in_its_own_room(small_prepared):
    data = small_prepared
    X = np.concatenate([data.train.X, data.val.X]).reshape(-1, data.num_features)
    y = np.concatenate([data.train.y, data.val.y]).reshape(-1)
    # Medians: a receiver's outage (-120 for up to 25 s) must not decide the ranking.
    level = np.stack([np.median(X[y == c], axis=0) for c in range(data.num_classes)])
    own = [data.class_names.index(ap["room"]) for ap in data.meta["aps"]]
    louder = [int((level[:, i] > level[room, i]).sum()) for i, room in enumerate(own)]
    # A receiver near a doorway may hear the next room about as well as its own.
    assert max(louder) <= 1 and louder.count(0) >= len(own) - 2, louder


def test_walls_and_floors_attenuate():
    house = House(TWO_FLOORS, np.random.default_rng(0))
    living_ap = 0  # first living-room receiver, near (0.4, 0.4) on the ground floor
    x = np.array([3.0, 8.0, -5.0])  # living room, kitchen, outside
    y = np.array([2.0, 2.0, 2.0])
    walls = house.walls(x, y)[:, living_ap]
    np.testing.assert_allclose(walls, [0.0, WALL_DB, EXTERIOR_WALL_DB])
    bedroom = house.index["bedroom_1"]
    assert house.floor_z(bedroom, np.array([1.0]))[0] > house.floor_z(house.index["living_room"], np.array([1.0]))[0]


def test_one_floor_flat(tmp_path):
    root = synthesize_house(tmp_path / "raw", seed=1, house="Z", floors=1, **SMALL)
    data = load_prepared(prepare_inhome(root, "Z", tmp_path / "prepared"))
    assert data.class_names == ["living_room", "kitchen", "hallway", "bathroom", "bedroom", "study"]
    assert data.num_features == 8
    assert json.loads((root / "house_Z" / "synthetic.json").read_text())["floors"] == 1


@pytest.fixture(scope="module")
def real_house(tmp_path_factory) -> Path:
    return synthesize_house(tmp_path_factory.mktemp("synth_real") / "raw", seed=3, conventions="real", **SMALL)


def test_real_conventions_prepare_to_the_same_windows(real_house, small_prepared, tmp_path):
    """Names in ap_rooms.dat, activity tags, zoned stamps, BOM and ', ': the loader reads them
    to exactly the windows of the plain files, keeps the rooms of room_names.dat as classes,
    and reports the activity-tag rows it left unlabelled."""
    data = load_prepared(prepare_inhome(real_house, "A", tmp_path / "prepared"))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(data.split(split).X, small_prepared.split(split).X)
        np.testing.assert_array_equal(data.split(split).y, small_prepared.split(split).y)
    names = [line.split(",")[1] for line in (real_house / "house_A/metadata/room_names.dat").read_text().splitlines()]
    assert data.class_names == names == TWO_FLOOR_ROOMS
    assert data.meta["aps"] == small_prepared.meta["aps"]
    rows = data.meta["inhome"]["rows"]
    assert rows["annotation_rows_activity_tag"] > 0
    assert rows["annotation_rows"] == rows["annotation_rows_activity_tag"] + small_prepared.meta["inhome"]["rows"][
        "annotation_rows"]
    assert rows["annotation_rows_tag_in_no_room"] == 0 and rows["rssi_rows_outside_annotated_span"] == 0
    assert [s["start"] for s in data.meta["sessions"]] == [s["start"] for s in small_prepared.meta["sessions"]]


def test_real_conventions_files(real_house, small_house):
    meta, plain = real_house / "house_A/metadata", small_house / "house_A/metadata"
    rooms = dict(line.split(",") for line in (meta / "room_names.dat").read_text().splitlines())
    assert [line.split(",")[1] for line in (meta / "ap_rooms.dat").read_text().splitlines()] == [
        rooms[line.split(",")[1]] for line in (plain / "ap_rooms.dat").read_text().splitlines()]
    activity = [int(line.split(",")[0]) for line in (meta / "act_desc.dat").read_text().splitlines()]
    room_tags = {int(t) for line in (meta / "room_tags.dat").read_text().splitlines() for t in line.split(",")[1:]}
    coordinates = {int(line.split(",")[0]) for line in (meta / "tag_coordinates.dat").read_text().splitlines()}
    floors = {int(t) for line in (meta / "floor_tags.dat").read_text().splitlines() for t in line.split(",")[1:]}
    assert set(activity) <= coordinates & floors and not set(activity) & room_tags
    rx = (real_house / "house_A/experiments/living_1/rx_wearable_data.dat").read_text(encoding="utf-8")
    header, first = rx.splitlines()[:2]
    assert header == "\ufefftimestamp, ap_id, wearable_id, rssi"
    stamp = first.split(", ")[0]
    assert len(stamp) == 29 and stamp[10] == "T" and stamp[19] == "." and stamp.endswith("+01:00")
    ann = (real_house / "house_A/experiments/living_1/tag_annotations.dat").read_text(encoding="utf-8-sig")
    assert ann.splitlines()[0].split(", ")[1] not in ("frame", "tag")
    assert json.loads((real_house / "house_A/synthetic.json").read_text())["conventions"] == "real"


@pytest.mark.parametrize("kwargs", [dict(floors=3), dict(living_sessions=0), dict(fingerprint_minutes=0.0),
                                    dict(house="A/B"), dict(conventions="guessed")])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(TinylocError):
        synthesize_house(tmp_path / "raw", **kwargs)


@pytest.mark.slow
def test_default_house_is_a_fair_test_bed(tmp_path):
    root = synthesize_house(tmp_path / "raw", seed=0)
    truth = json.loads((root / "house_A" / "synthetic.json").read_text())
    fingerprint = sum(s["minutes"] for n, s in truth["sessions"].items() if n.startswith("fingerprint"))
    living = sum(s["minutes"] for n, s in truth["sessions"].items() if n.startswith("living"))
    assert 25 <= fingerprint <= 40 and 40 <= living <= 50
    data = load_prepared(prepare_inhome(root, "A", tmp_path / "prepared"))
    assert len(data.train) > 500 and len(data.val) > 150 and len(data.test) > 1000
    assert set(np.unique(data.train.y)) == set(range(10)) == set(np.unique(data.val.y))
    share = np.bincount(data.test.y.reshape(-1), minlength=10) / data.test.y.size
    names = data.class_names
    for rare in ("hallway", "stairs", "landing"):  # passed through, rarely stayed in
        assert 0 < share[names.index(rare)] < 0.08, (rare, share)
    assert share.max() > 0.2  # long stays dominate free living
    assert sum(data.meta["removed"]["windows_with_unlabelled_steps"].values()) > 0


def test_samples_are_the_grid_the_test_windows_are_cut_from(small_house, small_prepared):
    """``data samples``' rows, through the data's representation, hold every prepared test
    stream as a contiguous run of one session's rows, labels included."""
    from tinyloc_tf.data.inhome import session_samples
    from tinyloc_tf.data.representation import Representation
    from tinyloc_tf.data.streams import split_streams

    table = session_samples(small_house, "A", "living")
    features, classes = small_prepared.meta["features"], small_prepared.meta["classes"]
    assert list(table.columns) == ["session", "time_ms", *features, "room_annotated"]
    assert all(name.startswith("living_") for name in table["session"].unique())
    inputs, _ = Representation.from_meta(small_prepared.meta["scaling"]).apply(table[features].to_numpy())
    streams = split_streams(small_prepared.test)
    assert streams
    for stream in streams:
        starts = np.flatnonzero((inputs == stream.X[0]).all(axis=1))
        match = [a for a in starts if len(inputs) - a >= len(stream.X) and (inputs[a:a + len(stream.X)] == stream.X).all()]
        assert match, f"{stream.name} is no run of the samples"
        rows = table.iloc[match[0]:match[0] + len(stream.X)]
        assert rows["session"].nunique() == 1
        assert rows["room_annotated"].tolist() == [classes[k] for k in stream.y]
    fingerprint = session_samples(small_house, "A", "fingerprint")
    assert not set(fingerprint["session"]) & set(table["session"])
    assert len(session_samples(small_house, "A", "all")) == len(table) + len(fingerprint)
