"""In-home loader on small hand-built raw files whose expected windows are written out here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tinyloc_tf.data import load_prepared
from tinyloc_tf.data.inhome import assign_val_blocks, label_steps, prepare_inhome, report_lines, resample
from tinyloc_tf.data.inhome_raw import COUNT_KEYS, stray_rows, times_ms
from tinyloc_tf.errors import DataError

# 2017-01-01T00:00:00 is a multiple of 200 ms since the epoch, so step k starts at k * 200 ms.
DAY1 = np.datetime64("2017-01-01T00:00:00.000", "ms")
DAY2 = np.datetime64("2017-01-02T00:00:00.000", "ms")
ONE_DAY = np.timedelta64(1, "D")
KITCHEN, HALL = 0, 1


def stamp(day: np.datetime64, ms: int, zone: str = "") -> str:
    """The instant ``day + ms`` (UTC) as a zone-less string, or as the local clock of ``zone``
    (``+01:00``) with the zone written after it."""
    t = day + np.timedelta64(int(ms), "ms")
    if not zone:
        return str(t)
    minutes = int(zone[1:3]) * 60 + int(zone[-2:])
    return str(t + (1 if zone[0] == "+" else -1) * np.timedelta64(minutes, "m")) + zone


def write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def write_metadata(house: Path) -> None:
    meta = house / "metadata"
    write(meta / "room_names.dat", ["1,kitchen", "2,hall"])
    write(meta / "room_tags.dat", ["1,10,11", "2,20"])
    write(meta / "ap_coordinates.dat", ["1,100.0,50.0,150.0", "2,400.0,80.0,150.0"])
    write(meta / "ap_rooms.dat", ["1,1", "2,2"])


def write_session(folder: Path, day, packets: list[tuple[int, int, int]], annotations: list[tuple[int, int]],
                  aps=(1, 2), zone: str = "", ann_zone: str | None = None) -> None:
    """``packets``: (ms, ap, rssi); ``annotations``: (ms, tag); ``zone``: write local clocks with it."""
    ann_zone = zone if ann_zone is None else ann_zone
    write(folder / "rx_wearable_data.dat",
          ["timestamp, ap_id, wearable_id, rssi"] + [f"{stamp(day, t, zone)}, {ap}, 1, {r}" for t, ap, r in packets])
    write(folder / "tag_annotations.dat",
          ["timestamp,frame,tag,tag_coord_x,tag_coord_y,tag_coord_z"]
          + [f"{stamp(day, t, ann_zone)},{i},{tag},0.1,-0.2,0.0" for i, (t, tag) in enumerate(annotations)])
    write(folder / "ap_mac_ref.dat", ["ap_id,ap_mac_address"] + [f"{ap},b8:27:eb:00:00:0{ap}" for ap in aps])


# ----------------------------------------------------------------------------- house 1: fill, labels, windows
#
# fingerprint_1 (80 steps = two 8 s blocks with block_seconds=8), the same pattern in both
# blocks (offset o = k % 40): AP1 -100 at o=0, -40 at o=5, -100 at o=25; AP2 -100, -60, -40.
# Whichever block trains, its windows span -120..-40 on both APs, so min = -120, max = -40.
#
# living_1 (40 steps):
#   AP1: -50 @0 ms and -60 @100 ms (step 0, mean -55), -35 @2000 (step 10), -45 @7800 (step 39)
#   AP2: -70 @650 (step 3), -80 @4199 (step 20)
#   annotations: tag 10 (kitchen) every 400 ms from 0 to 2800, tag 20 (hall) 3200..5600,
#   tag 11 (kitchen) at 6700, 7100, 7500, 7900.

LIVING_PACKETS = [(0, 1, -50), (100, 1, -60), (650, 2, -70), (2000, 1, -35), (4199, 2, -80), (7800, 1, -45)]
LIVING_ANNOTATIONS = ([(t, 10) for t in range(0, 2801, 400)] + [(t, 20) for t in range(3200, 5601, 400)]
                      + [(t, 11) for t in (6700, 7100, 7500, 7900)])

# The 5 Hz grid in dBm, written out step by step.
N = -120.0
LIVING_AP1 = [-55] * 6 + [N] * 4 + [-35] * 6 + [N] * 23 + [-45]  # filled for steps 1..5 only
LIVING_AP2 = [N] * 3 + [-70] * 6 + [N] * 11 + [-80] * 6 + [N] * 14  # -120 before the first packet
LIVING_LABELS = [KITCHEN] * 16 + [HALL] * 15 + [-1] + [KITCHEN] * 8  # step 15: tie -> earlier
# Windows (T = 20, hop 10) start at 0, 10, 20; the one at 20 holds unlabelled step 31.
EXPECTED_TEST_STARTS = [0, 10]


def fingerprint_packets(blocks: int = 2) -> list[tuple[int, int, int]]:
    packets = []
    for b in range(blocks):
        base = b * 40 * 200
        packets += [(base, 1, -100), (base, 2, -100), (base + 5 * 200 + 30, 1, -40), (base + 5 * 200 + 30, 2, -60),
                    (base + 25 * 200 + 60, 1, -100), (base + 25 * 200 + 60, 2, -40)]
    packets.append((blocks * 40 * 200 - 200 + 10, 1, -100))  # anchors the grid's last step
    return packets


def build_house1(root: Path) -> Path:
    house = root / "house_A"
    write_metadata(house)
    write_session(house / "experiments" / "fingerprint_1", DAY1, fingerprint_packets(),
                  [(k * 200 + 50, 10) for k in range(80)])
    write_session(house / "experiments" / "living_1", DAY2, LIVING_PACKETS, LIVING_ANNOTATIONS)
    return root


def test_resample_fills_one_second_then_minus_120():
    t = np.array([0, 100, 650, 2000, 4199, 7800], dtype=np.int64)
    ap = np.array([0, 0, 1, 0, 1, 0])
    rssi = np.array([-50, -60, -70, -35, -80, -45], dtype=float)
    start, X, counts = resample(t, ap, rssi, num_aps=2)
    assert start == 0
    np.testing.assert_array_equal(X[:, 0], LIVING_AP1)
    np.testing.assert_array_equal(X[:, 1], LIVING_AP2)
    assert counts["rows_averaged_into_steps"] == 1  # two AP1 packets in step 0
    assert counts["cells_forward_filled"] == 5 + 5 + 5 + 5


def test_label_steps_nearest_strictly_within_500_ms():
    ann_ms = np.array([t for t, _ in LIVING_ANNOTATIONS], dtype=np.int64)
    tag_class = {10: KITCHEN, 11: KITCHEN, 20: HALL}
    ann_class = np.array([tag_class[tag] for _, tag in LIVING_ANNOTATIONS])
    labels = label_steps(200 * np.arange(40, dtype=np.int64), ann_ms, ann_class)
    np.testing.assert_array_equal(labels, LIVING_LABELS)


def test_default_representation_is_powed_over_the_physical_range(tmp_path):
    root = build_house1(tmp_path / "raw")
    data = load_prepared(prepare_inhome(root, "A", tmp_path / "prepared", block_seconds=8.0))
    scaling = data.meta["scaling"]
    assert scaling["representation"] == "powed" and scaling["not_heard_dbm"] == -120.0
    raw = np.stack([LIVING_AP1, LIVING_AP2], axis=1)
    expected = np.stack([((raw[s:s + 20] + 120.0) / 120.0) ** np.e for s in EXPECTED_TEST_STARTS])
    np.testing.assert_allclose(data.test.X, expected, atol=1e-6)
    assert data.meta["inhome"]["cells_clipped"]["test"] == 0  # -35 dBm is inside the physical range


def test_prepare_windows_labels_and_scaling(tmp_path):
    root = build_house1(tmp_path / "raw")
    out = prepare_inhome(root, "A", tmp_path / "prepared", block_seconds=8.0, representation="minmax")
    data = load_prepared(out)
    meta = data.meta
    assert meta["features"] == ["ap_1", "ap_2"]
    assert meta["classes"] == ["kitchen", "hall"]
    assert meta["T"] == 20 and meta["labels"] == "room"
    # Scaling comes from the train windows only: the test set's -35 dBm lies above it.
    assert meta["scaling"]["min"] == [-120.0, -120.0]
    assert meta["scaling"]["max"] == [-40.0, -40.0]

    raw = np.stack([LIVING_AP1, LIVING_AP2], axis=1)
    expected_X = np.stack([np.clip((raw[s:s + 20] + 120.0) / 80.0, 0, 1) for s in EXPECTED_TEST_STARTS])
    expected_y = np.stack([LIVING_LABELS[s:s + 20] for s in EXPECTED_TEST_STARTS])
    np.testing.assert_allclose(data.test.X, expected_X, atol=1e-7)
    np.testing.assert_array_equal(data.test.y, expected_y)
    assert data.test.X.dtype == np.float32 and data.test.y.dtype == np.int32
    assert data.test.X[0, 10, 0] == 1.0  # -35 dBm clipped
    assert meta["inhome"]["cells_clipped"]["test"] == 12  # steps 10..15 of AP1, in both windows
    assert meta["removed"]["windows_with_unlabelled_steps"]["test"] == 1

    # One block trains, the other validates; each keeps two windows inside its guards.
    assert meta["split"]["blocks"] == 2 and meta["split"]["val_blocks"] == 1
    assert len(data.train) == 2 and len(data.val) == 2
    assert (data.train.y == KITCHEN).all() and (data.val.y == KITCHEN).all()


# ----------------------------------------------------------------------------- house 2: the contiguous split
#
# fingerprint_1: 160 steps, one packet per AP per step; AP1 = -20 - k // 2 dBm (decreasing),
# AP2 = -50 (constant: scaled over the physical -120..0). Annotations: all kitchen, so every
# block is an equal candidate for validation. With block_seconds=8: blocks [0,40) [40,80) [80,120) [120,160), one goes to val.
# Guards of 5 steps where train meets val; windows start at each run's first usable step.

SPLIT_STARTS = {  # val block -> (train window starts, val window starts)
    0: (list(range(45, 141, 10)), [0, 10]),
    1: ([0, 10, 85, 95, 105, 115, 125, 135], [45, 55]),
    2: ([0, 10, 20, 30, 40, 50, 125, 135], [85, 95]),
    3: (list(range(0, 91, 10)), [125, 135]),
}


def build_house2(root: Path) -> Path:
    house = root / "house_B"
    write_metadata(house)
    packets = []
    for k in range(160):
        packets += [(k * 200 + 37, 1, -20 - k // 2), (k * 200 + 41, 2, -50)]
    write_session(house / "experiments" / "fingerprint_1", DAY1, packets,
                  [(k * 200 + 50, 10) for k in range(160)])
    write_session(house / "experiments" / "living_1", DAY2, LIVING_PACKETS, LIVING_ANNOTATIONS)
    return root


@pytest.mark.parametrize("seed", [0, 1, 4, 11])  # val = block 3, 1, 2, 0
def test_split_by_contiguous_blocks_with_guards(tmp_path, seed):
    root = build_house2(tmp_path / "raw")
    data = load_prepared(prepare_inhome(root, "B", tmp_path / f"p{seed}", seed=seed, block_seconds=8.0,
                                        representation="minmax"))
    (name, a, b), = data.meta["split"]["val_block_steps"]
    assert name == "fingerprint_1" and b - a == 40
    train_starts, val_starts = SPLIT_STARTS[a // 40]

    raw = np.stack([-20.0 - np.arange(160) // 2, np.full(160, -50.0)], axis=1)
    labels = np.full(160, KITCHEN)
    train_raw = np.stack([raw[s:s + 20] for s in train_starts])
    lo, hi = train_raw[..., 0].min(), train_raw[..., 0].max()
    assert data.meta["scaling"]["min"] == [lo, -120.0]  # AP2 constant in train -> -120..0
    assert data.meta["scaling"]["max"] == [hi, 0.0]
    minimum, maximum = np.array([lo, -120.0]), np.array([hi, 0.0])
    for split, starts in (("train", train_starts), ("val", val_starts)):
        got = data.split(split)
        expected = np.clip((np.stack([raw[s:s + 20] for s in starts]) - minimum) / (maximum - minimum), 0, 1)
        np.testing.assert_allclose(got.X, expected, atol=1e-6)
        np.testing.assert_array_equal(got.y, np.stack([labels[s:s + 20] for s in starts]))
    guards = data.meta["removed"]["steps_in_split_guards"]
    assert guards == (5 if a in (0, 120) else 10) * 2


def test_val_blocks_cover_rooms_and_fraction():
    blocks = [{0}, {0}, {0, 1}, {0}, {0, 2}, {0, 2}, {0}, {0}]
    for seed in range(20):
        is_val = assign_val_blocks(blocks, 0.25, seed)
        assert is_val.sum() == 2
        assert is_val[4] or is_val[5]  # room 2: in two blocks -> one of them validates
        assert not is_val[2]  # room 1: its only block stays in train
    assert len({tuple(assign_val_blocks(blocks, 0.25, seed)) for seed in range(20)}) > 1  # seeded, not fixed


def test_source_hash_covers_raw_files(tmp_path):
    root = build_house1(tmp_path / "raw")
    first = json.loads((prepare_inhome(root, "A", tmp_path / "p1", block_seconds=8.0) / "meta.json").read_text())
    again = json.loads((prepare_inhome(root, "house_A", tmp_path / "p2", block_seconds=8.0) / "meta.json").read_text())
    assert first["source_sha256"] == again["source_sha256"]
    assert first["source"] == str((root / "house_A").resolve())
    path = root / "house_A" / "metadata" / "room_names.dat"
    path.write_text("1,kitchen\n2,hallway\n")
    third = json.loads((prepare_inhome(root, "A", tmp_path / "p3", block_seconds=8.0) / "meta.json").read_text())
    assert third["source_sha256"] != first["source_sha256"]
    assert third["classes"] == ["kitchen", "hallway"]


# ----------------------------------------------------------------------------- bad input


def _replace(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, count))


FP = "experiments/fingerprint_1"
LIV = "experiments/living_1"


def _set_line(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[line] = text
    path.write_text("\n".join(lines) + "\n")


BAD_INPUTS = {
    "missing rx file": (lambda h: (h / LIV / "rx_wearable_data.dat").unlink(),
                        ["living_1/rx_wearable_data.dat", "missing file"]),
    "missing annotations": (lambda h: (h / FP / "tag_annotations.dat").unlink(),
                            ["fingerprint_1/tag_annotations.dat", "missing file"]),
    "missing metadata file": (lambda h: (h / "metadata/room_tags.dat").unlink(),
                              ["room_tags.dat", "missing metadata file"]),
    "missing column": (lambda h: _replace(h / LIV / "rx_wearable_data.dat", "rssi", "rss"),
                       ["living_1/rx_wearable_data.dat", "missing column(s) rssi"]),
    "non-numeric rssi": (lambda h: _set_line(h / LIV / "rx_wearable_data.dat", 3, f"{stamp(DAY2, 650)}, 2, 1, abc"),
                         ["living_1/rx_wearable_data.dat", "row 3", "'rssi'", "'abc'"]),
    "NaN rssi": (lambda h: _set_line(h / LIV / "rx_wearable_data.dat", 2, f"{stamp(DAY2, 100)}, 1, 1, NaN"),
                 ["row 2", "'rssi'", "'NaN'"]),
    "empty rssi cell": (lambda h: _set_line(h / LIV / "rx_wearable_data.dat", 2, f"{stamp(DAY2, 100)}, 1, 1,"),
                        ["row 2", "'rssi'", "is not a number"]),
    "bad timestamp": (lambda h: _set_line(h / LIV / "rx_wearable_data.dat", 5, "yesterday, 2, 1, -80"),
                      ["row 5", "'timestamp'", "'yesterday'"]),
    "fractional ap id": (lambda h: _set_line(h / LIV / "rx_wearable_data.dat", 1, f"{stamp(DAY2, 0)}, 1.5, 1, -50"),
                         ["row 1", "'ap_id'", "not an integer"]),
    "unknown ap id": (lambda h: _set_line(h / LIV / "rx_wearable_data.dat", 6, f"{stamp(DAY2, 7800)}, 9, 1, -45"),
                      ["living_1/rx_wearable_data.dat", "row 6", "AP 9 is not in the metadata"]),
    "empty session": (lambda h: write(h / LIV / "rx_wearable_data.dat", ["timestamp,ap_id,wearable_id,rssi"]),
                      ["living_1/rx_wearable_data.dat", "no rows (empty session)"]),
    "zero-byte file": (lambda h: (h / FP / "tag_annotations.dat").write_text(""),
                       ["fingerprint_1/tag_annotations.dat", "empty file"]),
    "no annotation overlap": (lambda h: write_session(h / LIV, DAY2, LIVING_PACKETS,
                                                      [(t + 3_600_000, tag) for t, tag in LIVING_ANNOTATIONS]),
                              ["living_1", "never come within 500 ms"]),
    "unknown room in room_tags": (lambda h: write(h / "metadata/room_tags.dat", ["1,10,11", "7,20"]),
                                  ["room_tags.dat", "line 2", "room id 7"]),
    "non-integer tag": (lambda h: write(h / "metadata/room_tags.dat", ["1,10,x11", "2,20"]),
                        ["room_tags.dat", "line 1, column 3", "'x11'"]),
    "bad ap coordinate": (lambda h: write(h / "metadata/ap_coordinates.dat", ["1,1,2,3", "2,1,two,3"]),
                          ["ap_coordinates.dat", "line 2, column 3", "'two'"]),
    "repeated room id": (lambda h: write(h / "metadata/room_names.dat", ["1,kitchen", "1,hall"]),
                         ["room_names.dat", "line 2", "repeats line 1"]),
    "repeated room name": (lambda h: write(h / "metadata/room_names.dat", ["1,kitchen", "2,kitchen"]),
                           ["room_names.dat", "'kitchen'", "more than one room id"]),
    "zoned and zone-less rows in one file": (
        lambda h: _set_line(h / LIV / "rx_wearable_data.dat", 2, f"{stamp(DAY2, 100)}+00:00, 1, 1, -60"),
        ["living_1/rx_wearable_data.dat", "row 2", "has a time zone, unlike row 1"]),
    "zoned packets, zone-less annotations": (
        lambda h: write_session(h / LIV, DAY2, LIVING_PACKETS, LIVING_ANNOTATIONS, zone="+01:00", ann_zone=""),
        ["living_1", "rx_wearable_data.dat has zoned timestamps", "tag_annotations.dat zone-less"]),
    "no tag with a room": (lambda h: _replace(h / "metadata/room_tags.dat", "1,10,11", "1,12"),
                           ["fingerprint_1/tag_annotations.dat", "none of its 80 rows names a tag of a room",
                            "in no room: 80"]),
    "no living session": (lambda h: shutil.rmtree(h / LIV), ["experiments", "no living_*"]),
    "no fingerprint session": (lambda h: shutil.rmtree(h / FP), ["experiments", "no fingerprint"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_with_location(tmp_path, case):
    root = build_house1(tmp_path / "raw")
    breaker, fragments = BAD_INPUTS[case]
    breaker(root / "house_A")
    with pytest.raises(DataError) as info:
        prepare_inhome(root, "A", tmp_path / "out", block_seconds=8.0)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (case, message)
    assert not (tmp_path / "out").exists()  # nothing that looks complete


def test_missing_house_folder(tmp_path):
    root = build_house1(tmp_path / "raw")
    with pytest.raises(DataError, match=r"house_C: missing house folder \(found: house_A\)"):
        prepare_inhome(root, "C", tmp_path / "out")
    with pytest.raises(DataError, match="not found"):
        prepare_inhome(tmp_path / "nowhere", "A", tmp_path / "out")


# ----------------------------------------------------------------------------- counted, not fatal
#
# Each case changes house 1 in a way the real archive (or a wrong clock) may show and the data
# can still be used correctly: the prepared windows must equal those of the clean house, and
# meta.json must count (or note) exactly what was set aside.


def _insert_line(path: Path, index: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines.insert(index, text)
    path.write_text("\n".join(lines) + "\n")


def _rename_house(h: Path) -> None:
    h.rename(h.parent / "house_a")


def _zoned_sessions(h: Path) -> None:
    write_session(h / FP, DAY1, fingerprint_packets(), [(k * 200 + 50, 10) for k in range(80)], zone="+01:00")
    write_session(h / LIV, DAY2, LIVING_PACKETS, LIVING_ANNOTATIONS, zone="-05:00")


def _bom_and_spaces(h: Path) -> None:
    _replace(h / LIV / "rx_wearable_data.dat", "timestamp, ap_id, wearable_id, rssi",
             "\ufeff timestamp ,  ap_id , wearable_id,rssi ")
    _replace(h / FP / "tag_annotations.dat", "timestamp,frame,tag", "\ufefftimestamp, frame , tag ")


def _extra_rx_column(h: Path) -> None:
    path = h / LIV / "rx_wearable_data.dat"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0] + ", rx_extra"] + [line + ", x" for line in lines[1:]]) + "\n")


# case: (change, session, {count key: rows, "steps": if not as clean}, fragments of the notes and warnings)
COUNTED = {
    "packet a day early": (
        lambda h: _insert_line(h / FP / "rx_wearable_data.dat", 3, f"{stamp(DAY1 - ONE_DAY, 1030)}, 1, 1, -40"),
        "fingerprint_1", {"rssi_rows_outside_annotated_span": 1},
        ["1 row(s) more than 1700 ms outside the annotated span dropped (1 more than 10 min; first: row 3, "
         "2016-12-31"]),
    "annotation a day late": (
        lambda h: _insert_line(h / FP / "tag_annotations.dat", 81, f"{stamp(DAY1 + ONE_DAY, 50)},80,10,0,0,0"),
        "fingerprint_1", {"annotation_rows_stray": 1}, ["1 row(s) more than 10 min from the rest dropped"]),
    "activity tags": (
        lambda h: (write(h / "metadata/act_desc.dat", ["77,sitting", "78,walking"]),
                   _insert_line(h / LIV / "tag_annotations.dat", 3, f"{stamp(DAY2, 500)},x,77,0,0,0"),
                   _insert_line(h / LIV / "tag_annotations.dat", 12, f"{stamp(DAY2, 3300)},x,78,0,0,0")),
        "living_1", {"annotation_rows_activity_tag": 2}, []),
    "tag in no room": (
        lambda h: _insert_line(h / LIV / "tag_annotations.dat", 3, f"{stamp(DAY2, 500)},x,99,0,0,0"),
        "living_1", {"annotation_rows_tag_in_no_room": 1}, ["tag(s) [99] are in no room of room_tags.dat"]),
    # The last location annotation moves from 7,900 to 5,600 ms: the grid now ends 1.7 s later
    # (step 36), and the packet at 7,800 ms, beyond, is dropped; steps 0..29 are unchanged.
    "tag in two rooms": (
        lambda h: write(h / "metadata/room_tags.dat", ["1,10,11", "2,20,11"]),
        "living_1", {"annotation_rows_tag_in_two_rooms": 4, "rssi_rows_outside_annotated_span": 1, "steps": 37},
        ["room_tags.dat: tag(s) in two or more rooms", "11 (rooms [1, 2])"]),
    "rssi out of range": (
        lambda h: _insert_line(h / LIV / "rx_wearable_data.dat", 2, f"{stamp(DAY2, 100)}, 1, 1, -115"),
        "living_1", {"rssi_rows_out_of_range": 1}, []),
    "second wearable": (
        lambda h: (_insert_line(h / LIV / "rx_wearable_data.dat", 2, f"{stamp(DAY2, 100)}, 1, 2, -90"),
                   _insert_line(h / LIV / "rx_wearable_data.dat", 5, f"{stamp(DAY2, 900)}, 2, 2, -30")),
        "living_1", {"rssi_rows_other_wearables": 2}, ["2 wearables; kept wearable 1 (6 of 8 rows)"]),
    "ap_mac_ref.dat missing": (
        lambda h: (h / LIV / "ap_mac_ref.dat").unlink(), "living_1", {}, ["living_1: ap_mac_ref.dat missing"]),
    "ap_mac_ref.dat lists fewer APs": (
        lambda h: write(h / LIV / "ap_mac_ref.dat", ["ap_id,ap_mac_address", "1,b8:27:eb:00:00:01"]),
        "living_1", {}, ["ap_mac_ref.dat does not list AP(s) [2]"]),
    "ap_mac_ref.dat lists an unknown AP": (
        lambda h: write(h / LIV / "ap_mac_ref.dat", ["ap_id,ap_mac_address", "1,x", "2,y", "3,z"]),
        "living_1", {}, ["ap_mac_ref.dat lists AP(s) [3] not in ap_coordinates.dat"]),
    "room names in ap_rooms.dat": (
        lambda h: write(h / "metadata/ap_rooms.dat", ["1,kitchen", "2,hall"]), "living_1", {}, []),
    "unknown room in ap_rooms.dat": (
        lambda h: write(h / "metadata/ap_rooms.dat", ["1,1", "2,lounge"]),
        "living_1", {}, ["ap_rooms.dat, line 2", "'lounge'", "AP 2 has no room"]),
    "AP without a row in ap_rooms.dat": (
        lambda h: write(h / "metadata/ap_rooms.dat", ["1,1"]), "living_1", {}, ["AP(s) [2] of ap_coordinates.dat"]),
    "coordinates not x, y, z": (
        lambda h: write(h / "metadata/ap_coordinates.dat", ["1,100,50", "2,400,80,150,1"]),
        "living_1", {}, ["rows without exactly x, y, z (values found): line 1 (2), line 2 (4)"]),
    "BOM and spaces in headers": (_bom_and_spaces, "living_1", {}, []),
    "columns after rssi": (_extra_rx_column, "living_1", {}, []),
    "zoned timestamps": (_zoned_sessions, "living_1", {}, []),
    "lower-case house folder": (_rename_house, "living_1", {}, []),
}


@pytest.fixture(scope="module")
def clean_house(tmp_path_factory):
    root = build_house1(tmp_path_factory.mktemp("clean") / "raw")
    return load_prepared(prepare_inhome(root, "A", root.parent / "prepared", block_seconds=8.0))


@pytest.mark.parametrize("case", sorted(COUNTED))
def test_counted_exception_keeps_the_windows(tmp_path, clean_house, case):
    change, session, expected, fragments = COUNTED[case]
    root = build_house1(tmp_path / "raw")
    change(root / "house_A")
    data = load_prepared(prepare_inhome(root, "A", tmp_path / "prepared", block_seconds=8.0))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(data.split(split).X, clean_house.split(split).X, err_msg=f"{case}: {split}")
        np.testing.assert_array_equal(data.split(split).y, clean_house.split(split).y, err_msg=f"{case}: {split}")
    meta = data.meta
    for entry in meta["sessions"]:
        clean = next(s for s in clean_house.meta["sessions"] if s["name"] == entry["name"])
        assert entry["steps"] == (expected.get("steps", clean["steps"]) if entry["name"] == session
                                  else clean["steps"]), case
        for key in COUNT_KEYS:
            if key in ("rssi_rows", "annotation_rows"):
                continue
            assert entry["rows"][key] == (expected.get(key, 0) if entry["name"] == session else 0), (case, key)
    text = "\n".join(report_lines(meta))
    for fragment in fragments:
        assert fragment in text, (case, fragment, text)
    if not fragments:
        assert not meta["inhome"]["warnings"] and not any(s["notes"] for s in meta["sessions"]), case
    assert meta["inhome"]["rows"] == {key: sum(s["rows"][key] for s in meta["sessions"]) for key in COUNT_KEYS}


def test_ap_rooms_by_name_or_id_give_the_same_rooms(tmp_path, clean_house):
    root = build_house1(tmp_path / "raw")
    write(root / "house_A/metadata/ap_rooms.dat", ["1,kitchen", "2,hall"])
    data = load_prepared(prepare_inhome(root, "A", tmp_path / "prepared", block_seconds=8.0))
    assert [ap["room"] for ap in data.meta["aps"]] == [ap["room"] for ap in clean_house.meta["aps"]] == [
        "kitchen", "hall"]


def test_act_desc_is_read_only_when_a_tag_is_in_no_room(tmp_path, clean_house):
    """A house whose tags are all room tags does not depend on act_desc.dat (it is not in the
    source digest); one with activity tags does."""
    root = build_house1(tmp_path / "raw")
    write(root / "house_A/metadata/act_desc.dat", ["77,sitting"])
    first = load_prepared(prepare_inhome(root, "A", tmp_path / "p1", block_seconds=8.0)).meta
    assert first["source_sha256"] == clean_house.meta["source_sha256"]
    _insert_line(root / "house_A" / LIV / "tag_annotations.dat", 3, f"{stamp(DAY2, 500)},x,77,0,0,0")
    second = load_prepared(prepare_inhome(root, "A", tmp_path / "p2", block_seconds=8.0)).meta
    assert second["source_files"] == first["source_files"] + 1


def test_one_wrong_date_does_not_reshape_the_split(tmp_path, clean_house):
    """A packet a day early used to stretch fingerprint_1 from 80 to 432,075 steps (and its
    blocks, and so the split); now it is dropped and counted."""
    root = build_house1(tmp_path / "raw")
    _insert_line(root / "house_A" / FP / "rx_wearable_data.dat", 1, f"{stamp(DAY1 - ONE_DAY, 0)}, 2, 1, -70")
    meta = load_prepared(prepare_inhome(root, "A", tmp_path / "prepared", block_seconds=8.0)).meta
    assert meta["split"] == clean_house.meta["split"]
    assert [s["steps"] for s in meta["sessions"]] == [80, 40]
    assert meta["inhome"]["rows"]["rssi_rows_outside_annotated_span"] == 1


@pytest.mark.parametrize("text", [
    "2017-01-01T00:00:00.250", "2017-01-01 00:00:00.250", "2017-01-01T00:00:00.250000", " 2017-01-01T00:00:00.25 ",
])
def test_zone_less_timestamps(text):
    import pandas as pd

    ms, zoned = times_ms(pd.DataFrame({"timestamp": [text]}), Path("f.dat"))
    assert ms.tolist() == [int((DAY1 - np.datetime64(0, "ms")) / np.timedelta64(1, "ms")) + 250] and not zoned


@pytest.mark.parametrize("text", [
    "2017-01-01T01:00:00.250+01:00", "2017-01-01 01:00:00.250+0100", "2017-01-01T00:00:00.250Z",
    "2017-01-01T00:00:00.250+00:00", "2016-12-31T19:00:00.250-05:00", "2017-01-01T01:00:00.250000+01:00",
])
def test_zoned_timestamps_are_converted_to_utc(text):
    import pandas as pd

    ms, zoned = times_ms(pd.DataFrame({"timestamp": [text]}), Path("f.dat"))
    assert ms.tolist() == [int((DAY1 - np.datetime64(0, "ms")) / np.timedelta64(1, "ms")) + 250] and zoned


def test_stray_rows_only_at_the_ends():
    minute = 60_000
    body = np.arange(0, 300) * 1000  # five minutes of rows, one a second
    late = body[-1] + 11 * minute
    t = np.concatenate([[body[0] - 24 * 60 * minute], body, [late, late + 1000]])
    assert stray_rows(t).tolist() == [True] + [False] * 300 + [True, True]
    # a stretch between two kept ones stays, however small
    middle = np.concatenate([body, [body[-1] + 20 * minute], body + 40 * minute])
    assert not stray_rows(middle).any()
    # two large stretches far apart both stay (a long absence, not a wrong date)
    assert not stray_rows(np.concatenate([body, body + 600 * minute])).any()


def test_report_lines_count_per_session(tmp_path):
    root = build_house1(tmp_path / "raw")
    write(root / "house_A/metadata/act_desc.dat", ["77,sitting"])
    _insert_line(root / "house_A" / LIV / "tag_annotations.dat", 3, f"{stamp(DAY2, 500)},x,77,0,0,0")
    meta = load_prepared(prepare_inhome(root, "A", tmp_path / "prepared", block_seconds=8.0)).meta
    lines = report_lines(meta)
    living = dict(zip(lines[0].split(), lines[2].split()))
    assert lines[0].startswith("session") and lines[1].startswith("fingerprint_1") and lines[3].startswith("total")
    assert living["activity"] == "1" and living["annotations"] == str(len(LIVING_ANNOTATIONS) + 1)
    assert living["steps"] == "40" and living["-120"] == str(meta["sessions"][1]["cells_not_heard"])


def test_offsets_may_change_within_a_file():
    """A clock change (BST -> GMT) mid-session: both stamps are zoned, so both convert."""
    import pandas as pd

    frame = pd.DataFrame({"timestamp": ["2017-10-29T01:59:59.800+01:00", "2017-10-29T01:00:00.000+00:00"]})
    ms, zoned = times_ms(frame, Path("f.dat"))
    assert zoned and (ms[1] - ms[0]) == 200
