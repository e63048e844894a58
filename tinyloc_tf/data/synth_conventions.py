"""How the synthetic house writes its files: ``plain`` or ``real`` conventions.

``plain`` is the layout the loader was first written against: room ids in ``ap_rooms.dat``,
zone-less timestamps, fields separated by a bare comma, floor tags only in
``tag_annotations.dat``.

``real`` writes the files as the public code that reads the real archive shows them
(``docs/inhome.md`` gives the file and line of each piece of evidence):

- ``ap_rooms.dat`` names the room (the dataset authors' plotting code looks an AP's room up
  by name in ``room_names.dat``);
- activity tags: the keys of ``act_desc.dat`` are tags, listed in ``tag_coordinates.dat`` and
  ``floor_tags.dat`` but in no room of ``room_tags.dat`` (the authors' house class separates
  them from the floor tags; bHealth's tutorial maps tag 77 to "sitting"). The camera is taken
  to see one half a second after each activity starts;
- zoned timestamps: a local clock with its offset (a fixed ``+01:00``), the same instants as
  ``plain`` (bHealth calls ``.timestamp()`` on them; the authors read only the clock fields,
  at fixed positions);
- experiment files start with a byte-order mark and separate fields with ``", "`` (the authors'
  reader opens them as ``utf-8-sig``, strips header names and skips initial spaces);
- the second column of ``tag_annotations.dat``, whose name and content no public code shows,
  holds opaque text under an opaque name.

The same seed gives the same packets and floor-tag annotations either way, so both prepare to
the same windows.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

CONVENTIONS = ("plain", "real")
REAL_ZONE = "+01:00"
REAL_ZONE_OFFSET = np.timedelta64(60, "m")
ACTIVITY_SEEN_AFTER = np.timedelta64(500, "ms")
UNKNOWN_COLUMN = "unknown"  # the real name of tag_annotations.dat's second column is not known
TIMESTAMP_COLUMNS = ("timestamp", "timestamp_start", "timestamp_end")


def activity_tags(num_floor_tags: int, activities: dict[int, str]) -> dict[int, int]:
    """Activity id -> its tag: numbered from the first hundred above the floor tags, as house
    A's activity tags (77..82) sit above its floor tags (0..22)."""
    base = 100 * math.ceil((num_floor_tags + 1) / 100)
    return {activity: base + activity for activity in activities}


def zoned(stamps) -> np.ndarray:
    """Zone-less UTC millisecond stamps -> the same instants as local ``REAL_ZONE`` stamps."""
    local = np.asarray(stamps).astype("datetime64[ms]") + REAL_ZONE_OFFSET
    return np.char.add(np.datetime_as_string(local, unit="ms"), REAL_ZONE)


def real_tables(tables: dict, tags: dict[int, int], away_activity: int) -> dict:
    """A session's tables (``synth._simulate``) rewritten with the ``real`` conventions: an
    activity-tag annotation at the start of each activity (none while away from home), the
    second annotation column made opaque, every timestamp zoned."""
    import pandas as pd

    tables = {name: frame.copy() for name, frame in tables.items()}
    acts = tables["activity_annotation_times.dat"]
    seen = acts["activity_tag"] != away_activity
    starts = acts.loc[seen, "timestamp_start"].to_numpy().astype("datetime64[ms]") + ACTIVITY_SEEN_AFTER
    ann = tables["tag_annotations.dat"]
    activity_rows = pd.DataFrame({
        "timestamp": np.datetime_as_string(starts, unit="ms"),
        "frame": -1,
        "tag": acts.loc[seen, "activity_tag"].map(tags).to_numpy(),
        "tag_coord_x": 0.0, "tag_coord_y": 0.0, "tag_coord_z": 0.0,
    })
    ann = pd.concat([ann, activity_rows], ignore_index=True)
    ann = ann.iloc[np.argsort(ann["timestamp"].to_numpy(), kind="stable")].reset_index(drop=True)
    ann.insert(1, UNKNOWN_COLUMN, np.where(ann["frame"] >= 0, "c" + ann["frame"].astype(str), "a"))
    tables["tag_annotations.dat"] = ann.drop(columns="frame")
    for frame in tables.values():
        for column in TIMESTAMP_COLUMNS:
            if column in frame:
                frame[column] = zoned(frame[column].to_numpy())
    return tables


def write_real_text(path: Path) -> None:
    """Rewrite a written CSV file with a byte-order mark and ``", "`` between fields (no field
    the synthetic house writes holds a comma)."""
    text = path.read_text()
    path.write_text("\ufeff" + text.replace(",", ", "), encoding="utf-8")
