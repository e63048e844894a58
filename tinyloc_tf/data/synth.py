"""A synthetic house written in the raw in-home layout, so the real loader reads it.

The house is a fair test bed, not a toy: a person wearing a 5 Hz BLE wristband walks a
floor plan of rectangular rooms on one or two floors; receivers stand in every room (two in
the large ones). Each packet's RSSI at each receiver follows

    RSSI = P0_ap - 10 n log10(d) - walls - floors - body + S_ap(x, y) + A_ap(t) + fading

- log-distance path loss (``P0_ap`` about -48 dBm at 1 m, varying per receiver; n = 2.2);
- walls: 3.5 dB per interior wall and 7 dB per exterior wall the straight path crosses
  (counted on a 10 cm raster of the receiver's floor); floors: 15 dB per slab crossed;
- body shadowing: up to 9 dB when the wearer's torso faces away from the receiver
  (``9 * (1 - cos(angle)) / 2``, angle between facing and bearing);
- ``S_ap``: static spatial shadowing, a smooth random field per receiver and floor
  (sigma 3 dB, about 1 m correlation): what makes a room's fingerprint its own;
- ``A_ap``: temporally correlated shadowing, AR(1) per receiver (sigma 2 dB, tau 3 s);
- fading: independent per packet (sigma 2.5 dB; BLE hops advertising channels).

A packet is received when it clears the receiver's sensitivity (about -97 dBm, soft edge);
on top, 4 % of packets drop at random, bursts of loss come from a two-state (Gilbert-Elliott)
channel per receiver, and a receiver sometimes goes silent for 5-25 s. Readings are rounded
to whole dBm. Ground truth comes as the dataset's does: a chest camera sees floor tags on a
1 m grid about 4 times a second; frames drop at random and in bursts, and nothing is seen
while the wearer is out of the house.

Sessions: ``fingerprint_N`` are scripted walks through every room (stopping at tags, turning
on the spot, walking the stairs up and down); ``living_N`` are free-living stretches with
long stays in the main rooms, rare and short passes through hallway and stairs, and
sometimes a trip out of the house. ``docs/inhome.md`` lists the files and columns.

Every random draw comes from ``numpy.random.Generator`` streams spawned from
``(seed, house)``: the same arguments write byte-identical files.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyloc_tf.atomic import check_output
from tinyloc_tf.data.synth_conventions import CONVENTIONS, activity_tags, real_tables, write_real_text
from tinyloc_tf.errors import TinylocError

FLOOR_HEIGHT = 2.7  # m, floor to floor
WRIST_HEIGHT = 1.0  # m above the floor the wearer stands on
PACKET_S = 0.2  # 5 Hz advertising
FRAME_S = 0.25  # chest-camera tag detections, 4 Hz
OUTSIDE = "outside"

# Radio model (see the module docstring).
P0_DBM, P0_SPREAD = -48.0, 2.0
PATH_LOSS_EXPONENT = 2.2
WALL_DB, EXTERIOR_WALL_DB, FLOOR_DB = 3.5, 7.0, 15.0
BODY_DB = 9.0
SPATIAL_SIGMA_DB, SPATIAL_CELL_M = 3.0, 1.0
TEMPORAL_SIGMA_DB, TEMPORAL_TAU_S = 2.0, 3.0
FADING_SIGMA_DB = 2.5
SENSITIVITY_DBM, SENSITIVITY_SPREAD, SENSITIVITY_SOFTNESS = -97.0, 1.5, 1.2
RANDOM_DROP = 0.04
BURST_ENTER, BURST_LEAVE, BURST_RECEIVE = 0.01, 0.15, 0.1  # per packet
OUTAGE_PROBABILITY, OUTAGE_SECONDS = 0.25, (5.0, 25.0)
FRAME_DROP, FRAME_BURST_ENTER, FRAME_BURST_LEAVE = 0.08, 0.004, 0.25

ACTIVITIES = {1: "walking", 2: "standing", 3: "sitting", 4: "lying", 5: "cooking",
              6: "washing", 7: "climbing stairs", 8: "out of home"}
AWAY_ACTIVITY = 8
BASE_DAY = np.datetime64("2017-06-05T09:00:00.000", "ms")


@dataclass(frozen=True)
class RoomSpec:
    """A rectangular room. ``floor`` None = the stairwell, present on every floor."""

    name: str
    floor: int | None
    rect: tuple[float, float, float, float]  # x0, y0, x1, y1 in metres
    stay_weight: float = 0.0  # free-living: how often a stay happens here (0 = transit only)
    stay_mean_s: float = 0.0
    activity: int = 3

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.rect
        return (x1 - x0) * (y1 - y0)


@dataclass(frozen=True)
class Plan:
    rooms: tuple[RoomSpec, ...]
    doors: tuple[tuple[str, str, float, float], ...]  # room, room, x, y
    aps: tuple[tuple[str, float, float, float], ...]  # room, x, y, height above its floor
    stair_line: tuple[float, float, float] | None = None  # y, x at the bottom, x at the top
    away: tuple[float, float] = (-25.0, 5.25)  # where the wearer goes when out

    def room(self, name: str) -> RoomSpec:
        return next(room for room in self.rooms if room.name == name)

    @property
    def floors(self) -> int:
        return 1 + max(room.floor or 0 for room in self.rooms)


# Two floors (a 2-bedroom house, 10 m x 8 m): 10 rooms, 11 receivers, like houses B-D.
TWO_FLOORS = Plan(
    rooms=(
        RoomSpec("living_room", 0, (0.0, 0.0, 6.0, 4.5), 4.0, 240.0, 3),
        RoomSpec("kitchen", 0, (6.0, 0.0, 10.0, 4.5), 3.0, 150.0, 5),
        RoomSpec("hallway", 0, (0.0, 4.5, 10.0, 6.0)),
        RoomSpec("toilet", 0, (0.0, 6.0, 2.5, 8.0), 1.5, 60.0, 2),
        RoomSpec("study", 0, (2.5, 6.0, 7.0, 8.0), 1.5, 180.0, 3),
        RoomSpec("stairs", None, (7.0, 6.0, 10.0, 8.0)),
        RoomSpec("landing", 1, (0.0, 4.5, 10.0, 6.0)),
        RoomSpec("bedroom_1", 1, (0.0, 0.0, 6.0, 4.5), 2.5, 300.0, 4),
        RoomSpec("bedroom_2", 1, (6.0, 0.0, 10.0, 4.5), 1.5, 150.0, 3),
        RoomSpec("bathroom", 1, (0.0, 6.0, 7.0, 8.0), 1.5, 90.0, 6),
    ),
    doors=(
        ("living_room", "hallway", 3.0, 4.5), ("kitchen", "hallway", 7.5, 4.5),
        ("living_room", "kitchen", 6.0, 2.0), ("toilet", "hallway", 1.25, 6.0),
        ("study", "hallway", 4.5, 6.0), ("stairs", "hallway", 7.4, 6.0),
        ("stairs", "landing", 9.6, 6.0), ("bedroom_1", "landing", 3.0, 4.5),
        ("bedroom_2", "landing", 7.5, 4.5), ("bathroom", "landing", 2.0, 6.0),
        ("hallway", OUTSIDE, 0.0, 5.25),
    ),
    aps=(
        ("living_room", 0.4, 0.4, 1.8), ("living_room", 5.6, 4.1, 1.2), ("kitchen", 9.6, 0.5, 1.5),
        ("hallway", 5.0, 5.9, 2.0), ("toilet", 0.3, 7.7, 1.6), ("study", 6.6, 7.6, 1.0),
        ("bedroom_1", 0.4, 2.0, 1.0), ("bedroom_1", 5.5, 0.4, 1.8), ("bedroom_2", 9.6, 2.2, 1.2),
        ("bathroom", 6.5, 7.6, 1.8), ("landing", 4.0, 4.6, 2.0),
    ),
    stair_line=(7.0, 7.4, 9.6),
)

# One floor (a 1-bedroom flat): 6 rooms, 8 receivers, like house A.
ONE_FLOOR = Plan(
    rooms=(
        RoomSpec("living_room", 0, (0.0, 0.0, 6.0, 4.5), 4.0, 240.0, 3),
        RoomSpec("kitchen", 0, (6.0, 0.0, 10.0, 4.5), 3.0, 150.0, 5),
        RoomSpec("hallway", 0, (0.0, 4.5, 10.0, 6.0)),
        RoomSpec("bathroom", 0, (0.0, 6.0, 3.5, 8.0), 1.5, 90.0, 6),
        RoomSpec("bedroom", 0, (3.5, 6.0, 8.0, 8.0), 2.5, 300.0, 4),
        RoomSpec("study", 0, (8.0, 6.0, 10.0, 8.0), 1.5, 180.0, 3),
    ),
    doors=(
        ("living_room", "hallway", 3.0, 4.5), ("kitchen", "hallway", 7.5, 4.5),
        ("living_room", "kitchen", 6.0, 2.0), ("bathroom", "hallway", 1.75, 6.0),
        ("bedroom", "hallway", 5.5, 6.0), ("study", "hallway", 9.0, 6.0),
        ("hallway", OUTSIDE, 0.0, 5.25),
    ),
    aps=(
        ("living_room", 0.4, 0.4, 1.8), ("living_room", 5.6, 4.1, 1.2), ("kitchen", 9.6, 0.5, 1.5),
        ("hallway", 5.0, 5.9, 2.0), ("bathroom", 0.3, 7.7, 1.6), ("bedroom", 3.9, 7.6, 1.0),
        ("bedroom", 7.6, 6.4, 1.8), ("study", 9.7, 7.7, 1.0),
    ),
)

PLANS = {1: ONE_FLOOR, 2: TWO_FLOORS}


# ----------------------------------------------------------------------------- geometry


class House:
    """A plan with its tags, receivers and radio environment drawn from ``rng``."""

    RASTER_M = 0.1
    RASTER_ORIGIN = (-1.0, -1.0)
    RASTER_SHAPE = (130, 110)  # x, y cells: -1..12 m, -1..10 m

    def __init__(self, plan: Plan, rng: np.random.Generator):
        self.plan = plan
        self.names = [room.name for room in plan.rooms]
        self.index = {name: i for i, name in enumerate(self.names)}
        self.graph: dict[str, list[tuple[str, tuple[float, float]]]] = {}
        for a, b, x, y in plan.doors:
            self.graph.setdefault(a, []).append((b, (x, y)))
            self.graph.setdefault(b, []).append((a, (x, y)))
        self.raster = self._rasterise()
        self.tags = self._tags()  # [tag] -> (room index, x, y, z)
        # Receivers: the plan's spot, jittered a little inside its room.
        aps = []
        for room_name, x, y, height in plan.aps:
            room = plan.room(room_name)
            x0, y0, x1, y1 = room.rect
            jx, jy = rng.uniform(-0.2, 0.2, size=2)
            aps.append((float(np.clip(x + jx, x0 + 0.1, x1 - 0.1)), float(np.clip(y + jy, y0 + 0.1, y1 - 0.1)),
                        (room.floor or 0) * FLOOR_HEIGHT + height, room.floor or 0, self.index[room_name]))
        self.ap_xyz = np.array([a[:3] for a in aps])
        self.ap_floor = np.array([a[3] for a in aps], dtype=np.int64)
        self.ap_room = [a[4] for a in aps]
        self.p0 = P0_DBM + rng.normal(0.0, P0_SPREAD, size=len(aps))
        self.sensitivity = SENSITIVITY_DBM + rng.uniform(-SENSITIVITY_SPREAD, SENSITIVITY_SPREAD, size=len(aps))
        # Static shadowing: white noise on a 1 m lattice, smoothed by bilinear interpolation.
        nx, ny = 16, 14  # lattice over -2..13 m, -2..11 m
        self.spatial = rng.normal(0.0, SPATIAL_SIGMA_DB, size=(len(aps), plan.floors, nx, ny))
        self.ap_macs = [_mac(rng) for _ in aps]
        self.wearable_mac = _mac(rng)

    # -- plan queries

    def _rasterise(self) -> np.ndarray:
        """Room index per 10 cm cell and floor, -1 outside the house."""
        nx, ny = self.RASTER_SHAPE
        cx = self.RASTER_ORIGIN[0] + (np.arange(nx) + 0.5) * self.RASTER_M
        cy = self.RASTER_ORIGIN[1] + (np.arange(ny) + 0.5) * self.RASTER_M
        gx, gy = np.meshgrid(cx, cy, indexing="ij")
        raster = np.full((self.plan.floors, nx, ny), -1, dtype=np.int16)
        for i, room in enumerate(self.plan.rooms):
            x0, y0, x1, y1 = room.rect
            inside = (gx >= x0) & (gx < x1) & (gy >= y0) & (gy < y1)
            floors = range(self.plan.floors) if room.floor is None else [room.floor]
            for floor in floors:
                raster[floor][inside] = i
        return raster

    def floor_z(self, room: int, x: np.ndarray) -> np.ndarray:
        """Height (m) of the floor the wearer stands on."""
        spec = self.plan.rooms[room] if room >= 0 else None
        if spec is None:
            return np.zeros_like(x)
        if spec.floor is None:
            _, bottom, top = self.plan.stair_line
            return FLOOR_HEIGHT * np.clip((x - bottom) / (top - bottom), 0.0, 1.0)
        return np.full_like(x, spec.floor * FLOOR_HEIGHT)

    def _tags(self) -> list[tuple[int, float, float, float]]:
        tags = []
        for i, room in enumerate(self.plan.rooms):
            x0, y0, x1, y1 = room.rect
            if room.floor is None:
                y, bottom, top = self.plan.stair_line
                for x in np.linspace(bottom, top, 5):
                    tags.append((i, float(x), y, float(self.floor_z(i, np.array([x]))[0])))
                continue
            nx, ny = max(1, round(x1 - x0)), max(1, round(y1 - y0))
            for ix in range(nx):
                for iy in range(ny):
                    tags.append((i, x0 + (ix + 0.5) * (x1 - x0) / nx, y0 + (iy + 0.5) * (y1 - y0) / ny,
                                 room.floor * FLOOR_HEIGHT))
        return tags

    def route(self, start: str, goal: str) -> list[tuple[str, tuple[float, float]]]:
        """Rooms and door points from ``start`` to ``goal`` (breadth-first: fewest doors)."""
        previous: dict[str, tuple[str, tuple[float, float]] | None] = {start: None}
        queue = deque([start])
        while queue:
            room = queue.popleft()
            if room == goal:
                break
            for neighbour, door in self.graph.get(room, []):
                if neighbour not in previous:
                    previous[neighbour] = (room, door)
                    queue.append(neighbour)
        path = []
        room = goal
        while previous[room] is not None:
            before, door = previous[room]
            path.append((room, door))
            room = before
        return path[::-1]

    def random_spot(self, room: str, rng: np.random.Generator, margin: float = 0.4) -> tuple[float, float]:
        spec = self.plan.room(room)
        if spec.floor is None:
            y, bottom, top = self.plan.stair_line
            return float(rng.uniform(bottom, top)), y
        x0, y0, x1, y1 = spec.rect
        return float(rng.uniform(x0 + margin, x1 - margin)), float(rng.uniform(y0 + margin, y1 - margin))

    # -- radio

    def walls(self, x: np.ndarray, y: np.ndarray, samples: int = 32, chunk: int = 2048) -> np.ndarray:
        """Wall loss (dB) along the straight path to every receiver: ``[N, M]``."""
        if len(x) > chunk:  # bound the [N, M, samples] temporaries
            return np.concatenate([self.walls(x[i:i + chunk], y[i:i + chunk], samples, chunk)
                                   for i in range(0, len(x), chunk)])
        t = (np.arange(samples) + 0.5) / samples
        px = x[:, None, None] + (self.ap_xyz[None, :, 0, None] - x[:, None, None]) * t
        py = y[:, None, None] + (self.ap_xyz[None, :, 1, None] - y[:, None, None]) * t
        ix = np.floor((px - self.RASTER_ORIGIN[0]) / self.RASTER_M).astype(np.int64)
        iy = np.floor((py - self.RASTER_ORIGIN[1]) / self.RASTER_M).astype(np.int64)
        off = (ix < 0) | (iy < 0) | (ix >= self.RASTER_SHAPE[0]) | (iy >= self.RASTER_SHAPE[1])
        ix = np.clip(ix, 0, self.RASTER_SHAPE[0] - 1)
        iy = np.clip(iy, 0, self.RASTER_SHAPE[1] - 1)
        floor = np.broadcast_to(self.ap_floor[None, :, None], ix.shape)
        cells = np.where(off, -1, self.raster[floor, ix, iy])
        change = cells[..., 1:] != cells[..., :-1]
        exterior = change & ((cells[..., 1:] < 0) | (cells[..., :-1] < 0))
        return WALL_DB * (change & ~exterior).sum(-1) + EXTERIOR_WALL_DB * exterior.sum(-1)

    def shadowing(self, x: np.ndarray, y: np.ndarray, floor: np.ndarray) -> np.ndarray:
        """Static spatial shadowing (dB) of each receiver at each position: ``[N, M]``."""
        nx, ny = self.spatial.shape[2:]
        gx = np.clip((x + 2.0) / SPATIAL_CELL_M, 0, nx - 1.001)
        gy = np.clip((y + 2.0) / SPATIAL_CELL_M, 0, ny - 1.001)
        ix, iy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
        fx, fy = gx - ix, gy - iy
        field = self.spatial  # [M, floors, nx, ny]
        value = ((1 - fx) * (1 - fy) * field[:, floor, ix, iy] + fx * (1 - fy) * field[:, floor, ix + 1, iy]
                 + (1 - fx) * fy * field[:, floor, ix, iy + 1] + fx * fy * field[:, floor, ix + 1, iy + 1])
        return value.T


def _mac(rng: np.random.Generator) -> str:
    return ":".join(f"{b:02x}" for b in [0xB8, 0x27, 0xEB, *rng.integers(0, 256, size=3)])


# ----------------------------------------------------------------------------- the wearer's script


class Script:
    """The wearer's movements as legs: straight moves or still stands, each in one room."""

    def __init__(self, house: House, rng: np.random.Generator, room: str, spot: tuple[float, float]):
        self.house, self.rng = house, rng
        self.room, self.pos, self.t = room, spot, 0.0
        self.legs: list[tuple[float, float, float, float, float, float, int, float, int]] = []
        self.speed = float(rng.uniform(0.8, 1.05))

    def _leg(self, dest, seconds, facing, activity):
        room = self.house.index.get(self.room, -1)
        self.legs.append((self.t, self.t + seconds, *self.pos, *dest, room, facing, activity))
        self.t += seconds
        self.pos = dest

    def stand(self, seconds: float, activity: int = 2, facing: float | None = None) -> None:
        facing = float(self.rng.uniform(-math.pi, math.pi)) if facing is None else facing
        self._leg(self.pos, seconds, facing, activity)

    def walk(self, dest: tuple[float, float], speed: float | None = None) -> None:
        """Straight line within the current room (the stairs follow their line)."""
        points = [dest]
        spec = None if self.room == OUTSIDE else self.house.plan.room(self.room)
        if spec is not None and spec.floor is None:
            y = self.house.plan.stair_line[0]
            points = [(self.pos[0], y), (dest[0], y), dest]
        for point in points:
            dx, dy = point[0] - self.pos[0], point[1] - self.pos[1]
            distance = math.hypot(dx, dy)
            if distance < 1e-6:
                continue
            stairs = spec is not None and spec.floor is None and abs(dx) > 1e-6
            pace = (speed or self.speed) * (0.45 if stairs else 1.0)
            self._leg(point, distance / pace, math.atan2(dy, dx), 7 if stairs else 1)

    def go(self, room: str, dest: tuple[float, float]) -> None:
        """Walk through the doors to ``dest`` in ``room``."""
        for next_room, door in self.house.route(self.room, room):
            self.walk(door)
            self.room = next_room
        self.walk(dest)

    def fidget(self, seconds: float, activity: int) -> None:
        """A stay: mostly still, shifting a little now and then."""
        end = self.t + seconds
        while self.t < end - 1e-9:
            self.stand(min(float(self.rng.exponential(45.0)) + 5.0, end - self.t), activity)
            if self.t < end - 3.0 and self.room != OUTSIDE:
                x0, y0, x1, y1 = self.house.plan.room(self.room).rect
                step = self.rng.normal(0.0, 0.4, size=2)
                dest = (float(np.clip(self.pos[0] + step[0], x0 + 0.3, x1 - 0.3)),
                        float(np.clip(self.pos[1] + step[1], y0 + 0.3, y1 - 0.3)))
                self.walk(dest, speed=0.5)

    def truncate(self, seconds: float) -> None:
        """End the script at ``seconds`` (cutting the leg running then)."""
        kept = []
        for leg in self.legs:
            t0, t1, x0, y0, x1, y1, *rest = leg
            if t0 >= seconds:
                break
            if t1 > seconds:
                f = (seconds - t0) / (t1 - t0)
                leg = (t0, seconds, x0, y0, x0 + f * (x1 - x0), y0 + f * (y1 - y0), *rest)
            kept.append(leg)
        self.legs = kept
        self.t = min(self.t, seconds)

    def arrays(self) -> dict[str, np.ndarray]:
        legs = np.array(self.legs, dtype=np.float64)
        keys = ("t0", "t1", "x0", "y0", "x1", "y1", "room", "facing", "activity")
        return {key: legs[:, i] for i, key in enumerate(keys)}


def fingerprint_script(house: House, rng: np.random.Generator, seconds: float) -> Script:
    """Visit every room in a shuffled order; in each, stop at tags and turn on the spot."""
    rooms = [room.name for room in house.plan.rooms]
    order = [rooms[i] for i in rng.permutation(len(rooms))]
    script = Script(house, rng, "hallway", house.random_spot("hallway", rng))
    weights = np.array([math.sqrt(house.plan.room(name).area) for name in order])
    budget = np.maximum(20.0, (seconds - 15.0 * len(order)) * weights / weights.sum())
    for name, dwell in zip(order, budget):
        script.go(name, house.random_spot(name, rng))
        end = script.t + dwell
        room_tags = [tag for tag in house.tags if house.names[tag[0]] == name]
        while script.t < end:
            if house.plan.room(name).floor is None:
                script.walk(house.random_spot(name, rng))
                script.stand(float(rng.uniform(1.0, 2.0)))
                continue
            tag = room_tags[int(rng.integers(len(room_tags)))]
            x0, y0, x1, y1 = house.plan.room(name).rect
            script.walk((float(np.clip(tag[1], x0 + 0.2, x1 - 0.2)), float(np.clip(tag[2], y0 + 0.2, y1 - 0.2))))
            facing = float(rng.uniform(-math.pi, math.pi))
            for turn in range(int(rng.integers(1, 4))):  # the protocol turns the body round
                script.stand(float(rng.uniform(1.5, 3.5)), facing=facing + turn * math.pi / 2)
    return script


def living_script(house: House, rng: np.random.Generator, seconds: float) -> Script:
    """Long stays, chosen by each room's weight; hallway and stairs only in passing."""
    stays = [room for room in house.plan.rooms if room.stay_weight > 0]
    weights = np.array([room.stay_weight for room in stays])
    first = stays[int(rng.choice(len(stays), p=weights / weights.sum()))]
    script = Script(house, rng, first.name, house.random_spot(first.name, rng))
    trip_at = float(rng.uniform(0.2, 0.8)) * seconds if rng.random() < 0.6 else math.inf
    current = first
    while script.t < seconds:
        if script.t >= trip_at:  # out of the house for a while
            trip_at = math.inf
            script.go(OUTSIDE, house.plan.away)
            script.stand(float(rng.uniform(60.0, 180.0)), activity=8)
            script.go(current.name, house.random_spot(current.name, rng))
        script.fidget(float(rng.lognormal(math.log(current.stay_mean_s), 0.5)), current.activity)
        if rng.random() < 0.1:  # a pause in the hallway (coat, post, phone)
            script.go("hallway", house.random_spot("hallway", rng))
            script.stand(float(rng.uniform(10.0, 40.0)))
        p = np.where([room.name == current.name for room in stays], 0.0, weights)
        current = stays[int(rng.choice(len(stays), p=p / p.sum()))]
        script.go(current.name, house.random_spot(current.name, rng))
    script.truncate(seconds)
    return script


# ----------------------------------------------------------------------------- sensing


def _bursts(rng: np.random.Generator, n: int, enter: float, leave: float) -> np.ndarray:
    """Two-state (Gilbert-Elliott) loss: True where the channel is in its bad state."""
    state = np.zeros(n, dtype=bool)
    t, bad = int(rng.geometric(enter)), True
    while t < n:
        length = int(rng.geometric(leave if bad else enter))
        if bad:
            state[t:t + length] = True
        t += length
        bad = not bad
    return state


def _positions(legs: dict[str, np.ndarray], times: np.ndarray, house: House):
    """Where the wearer is at ``times``: x, y, wrist z, floor, room index, facing, activity."""
    i = np.clip(np.searchsorted(legs["t0"], times, side="right") - 1, 0, len(legs["t0"]) - 1)
    span = np.maximum(legs["t1"][i] - legs["t0"][i], 1e-9)
    f = np.clip((times - legs["t0"][i]) / span, 0.0, 1.0)
    x = legs["x0"][i] + f * (legs["x1"][i] - legs["x0"][i])
    y = legs["y0"][i] + f * (legs["y1"][i] - legs["y0"][i])
    room = legs["room"][i].astype(np.int64)
    z = np.zeros_like(x)
    for r in np.unique(room):
        z[room == r] = house.floor_z(int(r), x[room == r])
    floor = np.clip(np.round(z / FLOOR_HEIGHT), 0, house.plan.floors - 1).astype(np.int64)
    return x, y, z + WRIST_HEIGHT, floor, room, legs["facing"][i], legs["activity"][i].astype(np.int64)


def _simulate(house: House, script: Script, rng: np.random.Generator, start: np.datetime64):
    """The session's four data tables as pandas DataFrames, plus ground-truth minutes per room."""
    import pandas as pd
    from scipy.signal import lfilter

    legs = script.arrays()
    duration = float(legs["t1"][-1])
    n = int(duration / PACKET_S)
    m = len(house.ap_floor)
    tx = np.arange(n) * PACKET_S + rng.normal(0.0, 0.004, size=n)
    x, y, z, floor, room, facing, activity = _positions(legs, tx, house)

    d = np.sqrt((x[:, None] - house.ap_xyz[:, 0]) ** 2 + (y[:, None] - house.ap_xyz[:, 1]) ** 2
                + (z[:, None] - house.ap_xyz[:, 2]) ** 2)
    bearing = np.arctan2(house.ap_xyz[:, 1] - y[:, None], house.ap_xyz[:, 0] - x[:, None])
    body = BODY_DB * (1.0 - np.cos(bearing - facing[:, None])) / 2.0
    a = math.exp(-PACKET_S / TEMPORAL_TAU_S)
    burn = 100
    drift = lfilter([math.sqrt(1 - a * a) * TEMPORAL_SIGMA_DB], [1.0, -a],
                    rng.normal(size=(n + burn, m)), axis=0)[burn:]
    rssi = (house.p0 - 10.0 * PATH_LOSS_EXPONENT * np.log10(np.maximum(d, 0.5))
            - house.walls(x, y) - FLOOR_DB * np.abs(floor[:, None] - house.ap_floor) - body
            + house.shadowing(x, y, floor) + drift + rng.normal(0.0, FADING_SIGMA_DB, size=(n, m)))

    p = 1.0 / (1.0 + np.exp(-(rssi - house.sensitivity) / SENSITIVITY_SOFTNESS)) * (1.0 - RANDOM_DROP)
    for ap in range(m):
        p[_bursts(rng, n, BURST_ENTER, BURST_LEAVE), ap] *= BURST_RECEIVE
        if rng.random() < OUTAGE_PROBABILITY:
            begin = float(rng.uniform(0.0, duration))
            p[(tx >= begin) & (tx < begin + rng.uniform(*OUTAGE_SECONDS)), ap] = 0.0
    received = rng.random(size=(n, m)) < p
    latency = rng.uniform(0.002, 0.02, size=(n, m))

    def stamp(seconds: np.ndarray) -> np.ndarray:
        ms = start + np.round(seconds * 1000.0).astype(np.int64).astype("timedelta64[ms]")
        return np.datetime_as_string(ms, unit="ms")

    k, j = np.nonzero(received)
    rx_time = tx[k] + latency[k, j]
    order = np.lexsort((j, rx_time))
    rx = pd.DataFrame({
        "timestamp": stamp(rx_time[order]),
        "ap_id": j[order] + 1,
        "wearable_id": 1,
        "rssi": np.clip(np.round(rssi[k, j][order]), -110, 0).astype(np.int64),
    })

    frames = np.arange(int(duration / FRAME_S)) * FRAME_S + rng.uniform(0.0, 0.03, size=int(duration / FRAME_S))
    fx, fy, _, _, froom, _, _ = _positions(legs, frames, house)
    seen = (froom >= 0) & (rng.random(len(frames)) >= FRAME_DROP)
    seen &= ~_bursts(rng, len(frames), FRAME_BURST_ENTER, FRAME_BURST_LEAVE)
    tag_room = np.array([tag[0] for tag in house.tags])
    tag_xyz = np.array([tag[1:] for tag in house.tags])
    frame_ids = np.flatnonzero(seen)
    tags = np.empty(len(frame_ids), dtype=np.int64)
    for r in np.unique(froom[frame_ids]):  # the tag under the wearer: nearest in their room
        mine = froom[frame_ids] == r
        candidates = np.flatnonzero(tag_room == r)
        gap = np.hypot(fx[frame_ids][mine, None] - tag_xyz[candidates, 0],
                       fy[frame_ids][mine, None] - tag_xyz[candidates, 1])
        tags[mine] = candidates[gap.argmin(axis=1)]
    annotations = pd.DataFrame({
        "timestamp": stamp(frames[frame_ids]),
        "frame": frame_ids,
        "tag": tags,
        "tag_coord_x": np.round(fx[frame_ids] - tag_xyz[tags, 0], 3),
        "tag_coord_y": np.round(fy[frame_ids] - tag_xyz[tags, 1], 3),
        "tag_coord_z": 0.0,
    })

    # Activities: consecutive legs with the same activity merge into one interval.
    act = legs["activity"].astype(np.int64)
    cut = np.flatnonzero(np.diff(act)) + 1
    first, last = np.r_[0, cut], np.r_[cut, len(act)] - 1
    activities = pd.DataFrame({
        "timestamp_start": stamp(legs["t0"][first]),
        "timestamp_end": stamp(legs["t1"][last]),
        "activity_tag": act[first],
    })

    # Wrist accelerometer (g), one sample per packet: gravity turned by the forearm, a gait
    # oscillation while walking, sensor noise.
    moving = np.isin(activity, (1, 7))
    phase = 2 * np.pi * 1.8 * tx
    tilt = np.cos(facing) * 0.3
    acc = np.stack([
        tilt + moving * 0.25 * np.sin(phase),
        np.sin(facing) * 0.3 + moving * 0.1 * np.cos(phase),
        np.sqrt(1.0 - tilt ** 2 - (np.sin(facing) * 0.3) ** 2) + moving * 0.3 * np.sin(2 * phase),
    ], axis=1) + rng.normal(0.0, 0.02, size=(n, 3))
    accelerometer = pd.DataFrame({
        "timestamp": stamp(tx),
        "wearable_id": 1,
        "packet_id": np.arange(n),
        "aps_heard": received.sum(axis=1),
        "acc1x": np.round(acc[:, 0], 4),
        "acc1y": np.round(acc[:, 1], 4),
        "acc1z": np.round(acc[:, 2], 4),
    })

    seconds_per_room = {}
    for r in range(-1, len(house.names)):
        total = float(((legs["room"] == r) * (legs["t1"] - legs["t0"])).sum())
        if total > 0:
            seconds_per_room[house.names[r] if r >= 0 else OUTSIDE] = round(total / 60.0, 3)
    tables = {"rx_wearable_data.dat": rx, "tag_annotations.dat": annotations,
              "activity_annotation_times.dat": activities, "accelerometer_filtered.dat": accelerometer}
    return tables, seconds_per_room, duration


# ----------------------------------------------------------------------------- writing


def _write_rows(path: Path, rows) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerows(rows)


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def _activity_spots(house: House, tags: dict[int, int]) -> dict[int, tuple[float, float, int]]:
    """Activity tag -> (x, y, floor) where it hangs: the middle of the first room whose stays
    have that activity, else of the first room."""
    spots = {}
    for activity, tag in tags.items():
        room = next((r for r in house.plan.rooms if r.activity == activity and r.stay_weight > 0),
                    house.plan.rooms[0])
        x0, y0, x1, y1 = room.rect
        spots[tag] = ((x0 + x1) / 2, (y0 + y1) / 2, room.floor or 0)
    return spots


def _write_metadata(house: House, folder: Path, conventions: str = "plain") -> None:
    """The metadata files; ``real`` names rooms in ap_rooms.dat and adds activity tags
    (``synth_conventions``)."""
    plan = house.plan
    folder.mkdir(parents=True)
    room_ids = {name: i + 1 for i, name in enumerate(house.names)}
    real = conventions == "real"
    spots = _activity_spots(house, activity_tags(len(house.tags), ACTIVITIES)) if real else {}
    _write_rows(folder / "room_names.dat", [(room_ids[name], name) for name in house.names])
    _write_rows(folder / "room_tags.dat", [
        (room_ids[name], *[t for t, tag in enumerate(house.tags) if tag[0] == i])
        for i, name in enumerate(house.names)])
    _write_rows(folder / "floor_tags.dat", [
        (floor + 1, *[t for t, tag in enumerate(house.tags) if round(tag[3] / FLOOR_HEIGHT) == floor],
         *[t for t, spot in spots.items() if spot[2] == floor])
        for floor in range(plan.floors)])
    _write_rows(folder / "tag_coordinates.dat", [
        *[(t, _fmt(tag[1] * 100), _fmt(tag[2] * 100), _fmt(tag[3] * 100)) for t, tag in enumerate(house.tags)],
        *[(t, _fmt(x * 100), _fmt(y * 100), _fmt(floor * FLOOR_HEIGHT * 100)) for t, (x, y, floor) in spots.items()]])
    xyz = np.array([tag[1:] for tag in house.tags])
    adjacency = []
    for t, tag in enumerate(house.tags):
        near = np.flatnonzero(np.linalg.norm(xyz - xyz[t], axis=1) < 1.6)
        adjacency.append((t, *[int(u) for u in near if u != t and house.tags[u][0] == tag[0]]))
    _write_rows(folder / "tag_adjacency.dat", adjacency)
    _write_rows(folder / "ap_coordinates.dat", [
        (ap + 1, _fmt(x * 100), _fmt(y * 100), _fmt(z * 100)) for ap, (x, y, z) in enumerate(house.ap_xyz)])
    _write_rows(folder / "ap_mac_addresses.dat", [(ap + 1, mac) for ap, mac in enumerate(house.ap_macs)])
    _write_rows(folder / "ap_rooms.dat", [
        (ap + 1, house.names[house.ap_room[ap]] if real else house.ap_room[ap] + 1)
        for ap in range(len(house.ap_macs))])
    _write_rows(folder / "floor_aps.dat", [
        (floor + 1, *[ap + 1 for ap in range(len(house.ap_macs)) if house.ap_floor[ap] == floor])
        for floor in range(plan.floors)])
    if real:
        tags = activity_tags(len(house.tags), ACTIVITIES)
        _write_rows(folder / "act_desc.dat", [(tags[activity], name) for activity, name in ACTIVITIES.items()])
    else:
        _write_rows(folder / "act_desc.dat", list(ACTIVITIES.items()))


def synthesize_house(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    house: str = "A",
    floors: int = 2,
    fingerprint_minutes: float = 30.0,
    living_sessions: int = 3,
    living_minutes: float = 45.0,
    fingerprint_sessions: int = 3,
    overwrite: bool = False,
    conventions: str = "plain",
) -> Path:
    """Write ``out/house_<house>`` in the raw in-home layout and return ``out``.

    ``fingerprint_minutes`` and ``living_minutes`` are totals, shared evenly across
    ``fingerprint_sessions`` scripted walks and ``living_sessions`` free-living sessions.
    ``conventions``: ``plain`` or ``real`` (as the public code shows the archive's files;
    ``synth_conventions``); the same seed gives the same windows either way.
    An existing ``house_<house>`` folder (which could be a real download) is replaced only
    with ``overwrite``; the new one appears only when complete.
    """
    if floors not in PLANS:
        raise TinylocError(f"floors must be one of {sorted(PLANS)}, got {floors}")
    if fingerprint_sessions < 1 or living_sessions < 1:
        raise TinylocError("need at least one fingerprint and one living session")
    if fingerprint_minutes <= 0 or living_minutes <= 0:
        raise TinylocError("fingerprint_minutes and living_minutes must be positive")
    if not house or not house.isalnum():
        raise TinylocError(f"house must be a letter or name like 'A', got {house!r}")
    if conventions not in CONVENTIONS:
        raise TinylocError(f"conventions must be one of {', '.join(CONVENTIONS)}, got {conventions!r}")

    out = Path(out)
    check_output(out / f"house_{house}", overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    plan = PLANS[floors]
    root_seq = np.random.SeedSequence([int(seed), *house.encode()])
    layout_seq, *session_seqs = root_seq.spawn(1 + fingerprint_sessions + living_sessions)
    model = House(plan, np.random.default_rng(layout_seq))
    day = BASE_DAY + np.timedelta64(7 * (sum(house.encode()) % 50), "D")

    staging = Path(tempfile.mkdtemp(prefix=f".house_{house}.partial-{os.getpid()}-", dir=out))
    try:
        house_dir = staging / f"house_{house}"
        _write_metadata(model, house_dir / "metadata", conventions)
        plan_sessions = [(f"fingerprint_{i + 1}", fingerprint_minutes / fingerprint_sessions,
                          day + np.timedelta64(i * 40, "m")) for i in range(fingerprint_sessions)]
        plan_sessions += [(f"living_{i + 1}", living_minutes / living_sessions,
                           day + np.timedelta64(i + 1, "D") + np.timedelta64(60 + 37 * i, "m"))
                          for i in range(living_sessions)]
        truth = {}
        for (name, minutes, start), seq in zip(plan_sessions, session_seqs):
            rng = np.random.default_rng(seq)
            make = fingerprint_script if name.startswith("fingerprint") else living_script
            script = make(model, rng, minutes * 60.0)
            tables, per_room, duration = _simulate(model, script, rng, start)
            if conventions == "real":
                tables = real_tables(tables, activity_tags(len(model.tags), ACTIVITIES), AWAY_ACTIVITY)
            folder = house_dir / "experiments" / name
            folder.mkdir(parents=True)
            for file, frame in tables.items():
                frame.to_csv(folder / file, index=False, lineterminator="\n")
            _write_rows(folder / "ap_mac_ref.dat",
                        [("ap_id", "ap_mac_address"), *[(ap + 1, mac) for ap, mac in enumerate(model.ap_macs)]])
            _write_rows(folder / "wear_mac_ref.dat", [("wearable_id", "wearable_mac_address"), (1, model.wearable_mac)])
            if conventions == "real":
                for path in sorted(folder.iterdir()):
                    write_real_text(path)
            truth[name] = {"start": str(start), "minutes": round(duration / 60.0, 3),
                           "rssi_rows": int(len(tables["rx_wearable_data.dat"])),
                           "minutes_per_room": per_room}
        description = {
            "generator": "tinyloc_tf.data.synth",
            "seed": int(seed), "house": house, "floors": floors,
            "fingerprint_minutes": fingerprint_minutes, "fingerprint_sessions": fingerprint_sessions,
            "living_minutes": living_minutes, "living_sessions": living_sessions,
            "conventions": conventions,
            "rooms": model.names,
            "access_points": [{"id": ap + 1, "room": model.names[model.ap_room[ap]],
                               "xyz_m": [round(float(v), 3) for v in model.ap_xyz[ap]]}
                              for ap in range(len(model.ap_macs))],
            "radio": {"p0_dbm": P0_DBM, "path_loss_exponent": PATH_LOSS_EXPONENT, "wall_db": WALL_DB,
                      "exterior_wall_db": EXTERIOR_WALL_DB, "floor_db": FLOOR_DB, "body_db": BODY_DB,
                      "spatial_sigma_db": SPATIAL_SIGMA_DB, "temporal_sigma_db": TEMPORAL_SIGMA_DB,
                      "temporal_tau_s": TEMPORAL_TAU_S, "fading_sigma_db": FADING_SIGMA_DB,
                      "sensitivity_dbm": SENSITIVITY_DBM},
            "sessions": truth,
        }
        (house_dir / "synthetic.json").write_text(json.dumps(description, indent=2) + "\n")
        target = check_output(out / f"house_{house}", overwrite=overwrite)
        if target.exists():
            shutil.rmtree(target)
        house_dir.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
