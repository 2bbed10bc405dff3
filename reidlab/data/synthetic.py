"""A synthetic video re-ID world: procedurally drawn pedestrians written as a MARS-layout dataset.

Why: no real dataset can be downloaded here, and the temporal-fusion ideas studied in reidlab claim
to "weaken problem frames and strengthen key frames". Only a world whose bad frames are *known* can
check that claim, so every corrupted frame is recorded as ground truth.

What is drawn (numpy into float arrays, saved as JPEG/PNG with PIL):

- **identity** (survives cameras): upper-body colours and pattern (solid, stripes, two-tone split,
  check, chest print, band), sleeve length, lower garment (trousers, shorts, skirt) and colour,
  shoes, hair colour/length, skin tone, body proportions (shoulders, waist, leg length, limb
  thickness, height), accessories (hat; backpack, shoulder bag or handbag), gait (stride, cadence);
- **frame**: a walking cycle (leg/arm phase advances every frame at the identity's cadence), body
  bob, small translation/scale jitter, background scrolling past, sensor noise: frames of one
  tracklet are similar but never identical;
- **camera**: illumination gain, colour cast, gamma, saturation, blur, sensor noise, viewpoint
  (mirror, person scale) and its own background (wall/floor colours, pillars/windows);
- **corrupted frames** in short bursts at a controllable rate, of four kinds: ``occluder`` (pole,
  box or bar in front of the person), ``blur`` (heavy Gaussian blur), ``misalign`` (the box slipped:
  person shifted/zoomed, partly out of frame), ``foreign_patch`` (another identity of the same split
  steps in front, covering part of the person).

On disk (MARS layout, read by ``build_dataset("mars" | "synthetic", root)``)::

    <root>/bbox_train/0001/0001C1T0001F001.jpg ...   bbox_test/{0061,...,0000 distractors,00-1 junk}/...
    <root>/info/train_name.txt test_name.txt tracks_train_info.mat tracks_test_info.mat query_IDX.mat
    <root>/info/corruption.json    ground truth: {"frames": {"<image name>": {"kind": ..., params}}}
    <root>/info/world.json         the knobs that made this world (ensure_world compares them)

Protocol: ``ids`` labelled identities, the first ``round(ids * train_fraction)`` (pids 1..N) train,
the rest test; each identity walks past ``cams_per_id`` cameras (one tracklet per camera, or
``tracklets_per_cam``); query = one tracklet per test identity from one of its cameras; gallery =
the other test tracklets plus ``distractors`` tracklets of unseen people (pid 0); ``junk`` tracklets
(pid -1, background/partial boxes) are written like MARS and dropped by the reader.

Difficulty knobs (keyword arguments of :func:`generate_world`, stored in ``info/world.json``):

==================  ============  ==============================================================
knob                default       effect
==================  ============  ==============================================================
ids                 100           labelled identities (train + test)
train_fraction      0.6           share of identities used for training
cams                4             cameras (1..9)
cams_per_id         (2, 3)        min/max cameras each identity is seen by
tracklets_per_cam   1             tracklets per identity per camera
frames              (12, 24)      min/max frames per tracklet (<= 999)
distractors         6             pid-0 tracklets of unseen people in the gallery
junk                2             pid -1 tracklets (dropped by the reader, as in MARS)
corruption_rate     0.2           expected fraction of corrupted frames (0..1)
corruption_kinds    all four      which corruptions may occur
corruption_burst    3             max length of one run of consecutive corrupted frames
palette             12            number of base clothing colours used (fewer = more look-alikes)
camera_strength     1.0           scales camera differences (0 = identical cameras, no mirror)
jitter              1.0           scales per-frame translation/scale jitter
clutter             1.0           background clutter (pillars/windows, their contrast)
height, width       64, 32        image size in pixels
image_format        "jpg"         "jpg" (quality ``jpeg_quality``, 4:4:4) or "png"
seed                0             everything is a function of the seed: same seed, same bytes
==================  ============  ==============================================================

Determinism: every random draw comes from a generator seeded by ``(seed, role, ids...)``, so an
identity's appearance does not depend on how many cameras or frames are generated; files are
written in a fixed order and ``.mat`` headers carry no timestamp, so the same knobs give the same
bytes. Generation is atomic: the world is built in a temporary sibling folder and renamed into place.

Corruption is drawn apart from everything else (the per-tracklet schedule and each frame's
corruption parameters have generators of their own), so worlds that differ only in the corruption
knobs (``corruption_rate``, ``corruption_kinds``, ``corruption_burst``) hold the same identities,
other corruption draws: the same tracklets, queries, poses and backgrounds, and every frame that is
clean in both worlds is byte-identical. A rate sweep therefore changes nothing but the corruption.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image, ImageDraw, ImageFilter

from reidlab.data.records import CORRUPTION_KINDS, ReIDDataset
from reidlab.data.sidecar import SIDECAR_FORMAT, SIDECAR_NAME
from reidlab.suggest import did_you_mean

DEFAULT_SYNTHETIC_ROOT = "data/synthetic"
WORLD_FORMAT = "reidlab-synthetic-world/1"
#: bump when the drawing changes, so ensure_world regenerates old worlds
#: (2: corruption schedule and parameters drawn from their own generators)
GENERATOR_VERSION = 2

DEFAULT_KNOBS: dict[str, Any] = {
    "ids": 100,
    "train_fraction": 0.6,
    "cams": 4,
    "cams_per_id": (2, 3),
    "tracklets_per_cam": 1,
    "frames": (12, 24),
    "distractors": 6,
    "junk": 2,
    "corruption_rate": 0.2,
    "corruption_kinds": CORRUPTION_KINDS,
    "corruption_burst": 3,
    "palette": 12,
    "camera_strength": 1.0,
    "jitter": 1.0,
    "clutter": 1.0,
    "height": 64,
    "width": 32,
    "image_format": "jpg",
    "jpeg_quality": 90,
    "seed": 0,
}

# role tags for the seeded generators (never reorder: they define the world for a seed)
_R_IDENTITY, _R_CAMERA, _R_TRACKLET, _R_LAYOUT, _R_DISTRACTOR, _R_FRAME, _R_JUNK = range(1, 8)
# corruption draws get generators of their own so the corruption knobs cannot shift any other draw
_R_SCHEDULE, _R_CORRUPTION = 8, 9

# base clothing colours (sRGB 0..1) and how common they are; dark, sober colours dominate as in the
# street, which makes look-alikes appear naturally
_PALETTE = np.array([
    (0.10, 0.10, 0.11),  # black
    (0.13, 0.17, 0.38),  # navy
    (0.50, 0.50, 0.50),  # grey
    (0.88, 0.88, 0.85),  # white
    (0.20, 0.36, 0.78),  # blue
    (0.78, 0.13, 0.13),  # red
    (0.16, 0.52, 0.22),  # green
    (0.45, 0.30, 0.18),  # brown
    (0.80, 0.72, 0.55),  # beige
    (0.90, 0.78, 0.20),  # yellow
    (0.55, 0.72, 0.90),  # light blue
    (0.45, 0.10, 0.16),  # maroon
    (0.90, 0.52, 0.15),  # orange
    (0.88, 0.55, 0.70),  # pink
    (0.45, 0.22, 0.60),  # purple
    (0.45, 0.46, 0.20),  # olive
], dtype=np.float32)
_PALETTE_WEIGHTS = np.array([6, 4, 4, 4, 3, 2, 2, 2, 2, 1.5, 2, 1.5, 1, 1, 1, 1], dtype=np.float64)
_SKIN = np.array([(0.95, 0.80, 0.68), (0.87, 0.68, 0.52), (0.72, 0.52, 0.38), (0.50, 0.34, 0.24),
                  (0.33, 0.22, 0.16)], dtype=np.float32)
_HAIR = np.array([(0.08, 0.07, 0.06), (0.28, 0.18, 0.10), (0.62, 0.48, 0.25), (0.55, 0.55, 0.55),
                  (0.45, 0.20, 0.08)], dtype=np.float32)
_UPPER_PATTERNS = ("solid", "solid", "hstripes", "vsplit", "check", "print", "band")
_LOWER_TYPES = ("trousers", "trousers", "trousers", "shorts", "skirt")


def default_synthetic_root() -> Path:
    """``$REIDLAB_DATA/synthetic`` when REIDLAB_DATA is set, else ``data/synthetic`` (relative to cwd)."""
    data = os.environ.get("REIDLAB_DATA")
    return Path(data) / "synthetic" if data else Path(DEFAULT_SYNTHETIC_ROOT)


# ----------------------------------------------------------------------------------------------
# the world's entities
# ----------------------------------------------------------------------------------------------


@dataclass
class Identity:
    """Appearance that survives cameras. Lengths in body units (person height = 1)."""

    shoulder: float
    waist: float
    hip: float
    leg: float
    r_leg: float
    r_arm: float
    head: float
    height: float  # fraction of the nominal person height in frame
    skin: np.ndarray
    hair: np.ndarray
    long_hair: bool
    upper: np.ndarray
    upper2: np.ndarray
    upper_pattern: str
    period: float
    long_sleeves: bool
    lower_type: str
    lower: np.ndarray
    lower_stripe: bool
    shoes: np.ndarray
    hat: np.ndarray | None
    bag: str | None  # "backpack" | "shoulder" | "hand"
    bag_colour: np.ndarray
    bag_side: int  # -1 left, +1 right
    stride: float  # leg swing amplitude (rad)
    cadence: float  # phase advance per frame (rad)


@dataclass
class Camera:
    gain: float
    cast: np.ndarray
    gamma: float
    saturation: float
    blur: float  # Gaussian radius in pixels at 64 px height
    noise: float
    mirror: bool
    scale: float
    wall: np.ndarray
    floor: np.ndarray
    horizon: float  # fraction of height
    pillars: list  # (x position in background strip units, width, colour)


def _colour(rng: np.random.Generator, palette: int, jitter: float = 0.05) -> np.ndarray:
    w = _PALETTE_WEIGHTS[:palette] / _PALETTE_WEIGHTS[:palette].sum()
    base = _PALETTE[rng.choice(palette, p=w)]
    return np.clip(base + rng.normal(0.0, jitter, 3).astype(np.float32), 0.0, 1.0)


def _make_identity(rng: np.random.Generator, palette: int) -> Identity:
    palette = int(np.clip(palette, 2, len(_PALETTE)))
    upper = _colour(rng, palette)
    upper2 = _colour(rng, palette)
    while np.abs(upper2 - upper).sum() < 0.35:  # a pattern must be visible
        upper2 = _colour(rng, palette)
    lower_type = str(rng.choice(_LOWER_TYPES))
    has_hat = rng.random() < 0.25
    bag = rng.choice(["none", "none", "backpack", "shoulder", "hand"])
    leg = float(rng.uniform(0.46, 0.53))
    return Identity(
        shoulder=float(rng.uniform(0.10, 0.14)),
        waist=float(rng.uniform(0.075, 0.105)),
        hip=float(rng.uniform(0.045, 0.06)),
        leg=leg,
        r_leg=float(rng.uniform(0.032, 0.045)),
        r_arm=float(rng.uniform(0.024, 0.032)),
        head=float(rng.uniform(0.058, 0.07)),
        height=float(rng.uniform(0.88, 1.0)),
        skin=_SKIN[rng.integers(len(_SKIN))],
        hair=_HAIR[rng.integers(len(_HAIR))],
        long_hair=bool(rng.random() < 0.3),
        upper=upper,
        upper2=upper2,
        upper_pattern=str(rng.choice(_UPPER_PATTERNS)),
        period=float(rng.uniform(0.045, 0.08)),
        long_sleeves=bool(rng.random() < 0.55),
        lower_type=lower_type,
        lower=_colour(rng, palette),
        lower_stripe=bool(rng.random() < 0.2),
        shoes=_colour(rng, min(palette, 4), 0.04),
        hat=_colour(rng, palette) if has_hat else None,
        bag=None if bag == "none" else str(bag),
        bag_colour=_colour(rng, palette),
        bag_side=int(rng.choice([-1, 1])),
        stride=float(rng.uniform(0.16, 0.32)),
        cadence=float(2 * math.pi / rng.uniform(8.0, 14.0)),
    )


def _make_camera(rng: np.random.Generator, strength: float, clutter: float) -> Camera:
    s = float(strength)
    wall = np.clip(rng.uniform(0.25, 0.75) + rng.normal(0, 0.08, 3), 0, 1).astype(np.float32)
    floor = np.clip(rng.uniform(0.2, 0.6) + rng.normal(0, 0.05, 3), 0, 1).astype(np.float32)
    pillars = []
    for _ in range(int(round(rng.uniform(2, 6) * clutter))):
        tone = np.clip(wall + rng.normal(0, 0.25 * min(clutter, 2.0), 3), 0, 1).astype(np.float32)
        pillars.append((float(rng.uniform(0, 1)), float(rng.uniform(0.03, 0.12)), tone))
    return Camera(
        gain=float(1 + s * rng.uniform(-0.3, 0.22)),
        cast=(1 + s * rng.uniform(-0.14, 0.14, 3)).astype(np.float32),
        gamma=float(math.exp(s * rng.uniform(-0.25, 0.25))),
        saturation=float(1 + s * rng.uniform(-0.4, 0.15)),
        blur=float(s * rng.uniform(0.0, 0.7)),
        noise=float(0.008 + s * rng.uniform(0.0, 0.025)),
        mirror=bool(s > 0 and rng.random() < 0.5),
        scale=float(1 - s * rng.uniform(0.0, 0.14)),
        wall=wall,
        floor=floor,
        horizon=float(rng.uniform(0.62, 0.82)),
        pillars=pillars,
    )


# ----------------------------------------------------------------------------------------------
# drawing: signed distances in body units, converted to anti-aliased coverage in pixels
# ----------------------------------------------------------------------------------------------


class _Shape:
    """Signed distance ``d`` (body units) of a shape over the pixel window ``rows x cols`` it can touch;
    ``bx``/``by`` are that window's body coordinates (broadcastable column/row vectors)."""

    __slots__ = ("rows", "cols", "bx", "by", "d")

    def __init__(self, rows: slice, cols: slice, bx: np.ndarray, by: np.ndarray, d: np.ndarray):
        self.rows, self.cols, self.bx, self.by, self.d = rows, cols, bx, by, d


class _Canvas:
    """Float RGB canvas (H, W, 3) and the pixel -> body-unit mapping of the person being drawn.

    Shapes are evaluated only over the pixels of their bounding box (plus an anti-aliasing margin),
    which keeps drawing cheap: most limbs cover a few percent of the frame.
    """

    def __init__(self, img: np.ndarray, cx: float, top: float, hp: float, mirror: bool):
        self.img = img
        h, w = img.shape[:2]
        self.ys = (np.arange(h, dtype=np.float32) + 0.5 - top) / hp
        xs = (np.arange(w, dtype=np.float32) + 0.5 - cx) / hp
        self.xs = -xs if mirror else xs
        self.hp = hp
        self.margin = 1.5 / hp

    def _window(self, x0: float, x1: float, y0: float, y1: float):
        m = self.margin
        r0 = int(np.searchsorted(self.ys, y0 - m, "left"))
        r1 = int(np.searchsorted(self.ys, y1 + m, "right"))
        cols = np.flatnonzero((self.xs >= x0 - m) & (self.xs <= x1 + m))
        if r1 <= r0 or cols.size == 0:
            return None
        c0, c1 = int(cols[0]), int(cols[-1]) + 1
        return slice(r0, r1), slice(c0, c1), self.xs[c0:c1][None, :], self.ys[r0:r1][:, None]

    def coverage(self, shape: _Shape) -> np.ndarray:
        return np.clip(0.5 - shape.d * self.hp, 0.0, 1.0)

    def fill(self, shape: _Shape | None, colour, alpha: np.ndarray | None = None) -> None:
        """Blend ``colour`` (RGB, or an array over the shape's window) with the shape's coverage
        (times ``alpha`` when given)."""
        if shape is None:
            return
        a = self.coverage(shape) if alpha is None else self.coverage(shape) * alpha
        a = a[..., None]
        view = self.img[shape.rows, shape.cols]
        view *= 1.0 - a
        view += a * colour

    # shapes -------------------------------------------------------------------------------
    def capsule(self, p0, p1, r) -> _Shape | None:
        win = self._window(min(p0[0], p1[0]) - r, max(p0[0], p1[0]) + r, min(p0[1], p1[1]) - r, max(p0[1], p1[1]) + r)
        if win is None:
            return None
        rows, cols, bx, by = win
        ax, ay = p0
        dx, dy = p1[0] - ax, p1[1] - ay
        px, py = bx - ax, by - ay
        t = np.clip((px * dx + py * dy) / max(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
        return _Shape(rows, cols, bx, by, np.hypot(px - t * dx, py - t * dy) - r)

    def ellipse(self, c, a, b) -> _Shape | None:
        win = self._window(c[0] - a, c[0] + a, c[1] - b, c[1] + b)
        if win is None:
            return None
        rows, cols, bx, by = win
        k = np.hypot((bx - c[0]) / a, (by - c[1]) / b)
        return _Shape(rows, cols, bx, by, (k - 1.0) * min(a, b))

    def polygon(self, pts) -> _Shape | None:
        """Convex polygon, vertices clockwise in image coordinates (y down)."""
        xs_, ys_ = [p[0] for p in pts], [p[1] for p in pts]
        win = self._window(min(xs_), max(xs_), min(ys_), max(ys_))
        if win is None:
            return None
        rows, cols, bx, by = win
        d = None
        n = len(pts)
        for i in range(n):
            (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % n]
            ex, ey = x1 - x0, y1 - y0
            ln = math.hypot(ex, ey) or 1e-9
            nx, ny = ey / ln, -ex / ln  # outward normal for clockwise order with y down
            di = (bx - x0) * nx + (by - y0) * ny
            d = di if d is None else np.maximum(d, di)
        return _Shape(rows, cols, bx, by, d)


def _limb(origin, angle, length):
    return origin[0] + length * math.sin(angle), origin[1] + length * math.cos(angle)


def _draw_person(cv: _Canvas, ind: Identity, phase: float) -> None:
    """Paint one pedestrian in body units (head top at y=0, feet at y~1) at walking phase ``phase``."""
    s = math.sin(phase)
    bob = -0.012 * abs(math.cos(phase))
    head_r = ind.head
    neck_y = 2 * head_r + 0.01 + bob
    sh_y = neck_y + 0.02
    waist_y = 1.0 - ind.leg + bob
    hip_y = waist_y + 0.02
    shin_len = thigh_len = ind.leg / 2

    # limbs: legs swing in anti-phase, arms counter-swing, knees/elbows bend on the back swing
    legs, arms = [], []
    for side, sign in ((-1, 1.0), (1, -1.0)):
        th = sign * ind.stride * s
        hip = (side * ind.hip, hip_y)
        knee = _limb(hip, th, thigh_len)
        shin_a = th - 0.45 * max(0.0, -sign * math.cos(phase))
        foot = _limb(knee, shin_a, shin_len)
        legs.append((hip, knee, foot, side))
        a = -sign * 0.8 * ind.stride * s
        shoulder = (side * (ind.shoulder - ind.r_arm * 0.9), sh_y + 0.015)
        elbow = _limb(shoulder, a + side * 0.08, 0.16)
        hand = _limb(elbow, a * 1.3 + side * 0.05, 0.15)
        arms.append((shoulder, elbow, hand, side))

    def leg_colour(part: str):
        if ind.lower_type == "trousers":
            return ind.lower
        if ind.lower_type == "shorts":
            return ind.lower if part == "thigh" else ind.skin
        return ind.skin  # skirt: bare legs under the skirt

    # legs and shoes
    for hip, knee, foot, side in legs:
        cv.fill(cv.capsule(hip, knee, ind.r_leg), leg_colour("thigh"))
        cv.fill(cv.capsule(knee, foot, ind.r_leg * 0.9), leg_colour("shin"))
        if ind.lower_stripe and ind.lower_type == "trousers":
            off = side * ind.r_leg * 0.55
            cv.fill(cv.capsule((hip[0] + off, hip[1]), (foot[0] + off, foot[1] - 0.02), ind.r_leg * 0.25),
                    ind.upper2)
        toe = (foot[0] + 0.035, foot[1] + 0.005)
        cv.fill(cv.capsule((foot[0] - 0.01, foot[1]), toe, ind.r_leg * 0.75), ind.shoes)

    # hips / lower garment top
    hips = cv.polygon([(-ind.waist, waist_y - 0.01), (ind.waist, waist_y - 0.01), (ind.hip + ind.r_leg, hip_y + 0.05),
                       (-ind.hip - ind.r_leg, hip_y + 0.05)])
    cv.fill(hips, ind.lower)
    if ind.lower_type == "skirt":
        hem = waist_y + 0.22
        skirt = cv.polygon([(-ind.waist, waist_y), (ind.waist, waist_y), (ind.waist + 0.05, hem), (-ind.waist - 0.05, hem)])
        cv.fill(skirt, ind.lower)

    # backpack body peeks out on one side, behind the torso
    if ind.bag == "backpack":
        bx0 = ind.bag_side * (ind.shoulder - 0.01)
        pack = cv.polygon([(bx0 - 0.06, sh_y + 0.03), (bx0 + 0.06, sh_y + 0.03), (bx0 + 0.06, sh_y + 0.25),
                           (bx0 - 0.06, sh_y + 0.25)])
        cv.fill(pack, ind.bag_colour * 0.85)
    if ind.long_hair:
        cv.fill(cv.capsule((0, head_r + bob), (0, sh_y + 0.08), head_r * 1.02), ind.hair)

    # torso with its pattern
    torso = cv.polygon([(-ind.shoulder, sh_y), (ind.shoulder, sh_y), (ind.waist, waist_y + 0.01),
                        (-ind.waist, waist_y + 0.01)])
    pattern = ind.upper_pattern
    if pattern == "solid" or torso is None:
        col = ind.upper
    else:
        bx, by = torso.bx, torso.by
        if pattern == "hstripes":
            m = (np.floor((by - sh_y) / ind.period) % 2) == 1
        elif pattern == "vsplit":
            m = bx > 0
        elif pattern == "check":
            m = ((np.floor(by / ind.period) + np.floor(bx / ind.period)) % 2) == 1
        elif pattern == "print":
            m = (np.abs(bx) < 0.05) & (by > sh_y + 0.06) & (by < sh_y + 0.15)
        else:  # band across the chest
            m = (by > sh_y + 0.08) & (by < sh_y + 0.16)
        col = np.where(m[..., None], ind.upper2, ind.upper)
    cv.fill(torso, col)
    if ind.bag in ("backpack", "shoulder"):
        # straps over the chest (two for a backpack, one diagonal for a shoulder bag)
        if ind.bag == "backpack":
            for sx in (-0.055, 0.055):
                cv.fill(cv.capsule((sx, sh_y), (sx * 0.9, sh_y + 0.2), 0.012), ind.bag_colour)
        else:
            far = -ind.bag_side * ind.shoulder * 0.8
            near = ind.bag_side * (ind.waist + 0.03)
            cv.fill(cv.capsule((far, sh_y), (near, waist_y - 0.02), 0.011), ind.bag_colour)

    # arms (sleeves) and hands
    for shoulder, elbow, hand, side in arms:
        cv.fill(cv.capsule(shoulder, elbow, ind.r_arm), ind.upper)
        cv.fill(cv.capsule(elbow, hand, ind.r_arm * 0.9), ind.upper if ind.long_sleeves else ind.skin)
        cv.fill(cv.ellipse(hand, ind.r_arm * 1.0, ind.r_arm * 1.1), ind.skin)
        if ind.bag == "hand" and side == ind.bag_side:
            hb = cv.polygon([(hand[0] - 0.05, hand[1] + 0.01), (hand[0] + 0.05, hand[1] + 0.01),
                             (hand[0] + 0.055, hand[1] + 0.12), (hand[0] - 0.055, hand[1] + 0.12)])
            cv.fill(hb, ind.bag_colour)
    if ind.bag == "shoulder":
        bx0 = ind.bag_side * (ind.waist + 0.04)
        sb = cv.polygon([(bx0 - 0.05, waist_y - 0.04), (bx0 + 0.05, waist_y - 0.04), (bx0 + 0.05, waist_y + 0.06),
                         (bx0 - 0.05, waist_y + 0.06)])
        cv.fill(sb, ind.bag_colour)

    # neck, head, hair, hat
    cv.fill(cv.capsule((0, neck_y - 0.02), (0, sh_y), head_r * 0.45), ind.skin)
    head_c = (0.0, head_r + bob)
    head = cv.ellipse(head_c, head_r * 0.82, head_r)
    cv.fill(head, ind.skin)
    if head is not None:  # hair: the top of the head
        cv.fill(head, ind.hair, np.clip((head_c[1] - 0.25 * head_r - head.by) * cv.hp + 0.5, 0.0, 1.0))
    if ind.hat is not None:
        cap = cv.ellipse((0.0, head_c[1] - 0.2 * head_r), head_r * 0.92, head_r * 0.85)
        if cap is not None:
            cv.fill(cap, ind.hat, np.clip((head_c[1] - 0.1 * head_r - cap.by) * cv.hp + 0.5, 0.0, 1.0))
        brim = cv.capsule((-head_r * 0.9, head_c[1] - 0.1 * head_r), (head_r * 1.3, head_c[1] - 0.1 * head_r), 0.008)
        cv.fill(brim, ind.hat * 0.8)


def _background(cam: Camera, h: int, w: int, offset: float) -> np.ndarray:
    """Camera background seen through a person-sized window at horizontal ``offset`` (strip units)."""
    ys = (np.arange(h, dtype=np.float32) + 0.5) / h
    xs = offset + (np.arange(w, dtype=np.float32) + 0.5) / h  # strip units scale with height
    wall_shade = (0.85 + 0.3 * (1 - ys))[:, None, None]
    img = np.empty((h, w, 3), np.float32)
    img[:] = cam.wall * wall_shade
    strip_len = 3.0
    xm = np.mod(xs, strip_len) / strip_len
    for px, pw, colour in cam.pillars:
        d = np.abs(((xm - px + 0.5) % 1.0) - 0.5) * strip_len
        a = np.clip((pw / 2 - d) * h + 0.5, 0, 1)[None, :, None]
        img = img * (1 - a) + a * colour * wall_shade
    floor_a = np.clip((ys - cam.horizon) * h + 0.5, 0, 1)[:, None, None]
    floor = cam.floor * (0.8 + 0.4 * ys)[:, None, None]
    return (img * (1 - floor_a) + floor_a * floor).astype(np.float32)


@dataclass
class _Pose:
    phase: float
    dx: float  # pixels
    dy: float  # pixels
    scale: float


def _render(ind: Identity, pose: _Pose, cam: Camera, h: int, w: int, bg_offset: float,
            corruption: dict | None, other: Identity | None, noise_rng: np.random.Generator) -> Image.Image:
    img = _background(cam, h, w, bg_offset)
    hp = 0.86 * h * cam.scale * ind.height * pose.scale
    cx = w / 2 + pose.dx
    top = (h - hp) / 2 + pose.dy + 0.04 * h * (1 - ind.height)
    if corruption and corruption["kind"] == "misalign":
        hp *= corruption["zoom"]
        cx += corruption["dx"] * w
        top += corruption["dy"] * h - (corruption["zoom"] - 1) * hp * 0.25
    _draw_person(_Canvas(img, cx, top, hp, cam.mirror), ind, pose.phase)
    if corruption and corruption["kind"] == "foreign_patch" and other is not None:
        ohp = 0.86 * h * cam.scale * other.height
        ocx = w / 2 + corruption["dx"] * w
        _draw_person(_Canvas(img, ocx, (h - ohp) / 2, ohp, cam.mirror), other, corruption["phase"])
    if corruption and corruption["kind"] == "occluder":
        y0, y1, x0, x1 = corruption["box"]
        yy = (np.arange(h) + 0.5) / h
        xx = (np.arange(w) + 0.5) / w
        m = ((yy >= y0) & (yy < y1))[:, None] & ((xx >= x0) & (xx < x1))[None, :]
        shade = (0.75 + 0.5 * yy)[:, None, None] if corruption["shape"] != "pole" else (0.8 + 0.4 * xx)[None, :, None]
        occ = np.asarray(corruption["colour"], np.float32) * shade
        img = np.where(m[..., None], occ, img).astype(np.float32)

    # camera photometry: cast and gain, gamma, saturation, sensor noise
    img = np.clip(img * cam.cast * cam.gain, 0, 1) ** cam.gamma
    grey = img.mean(axis=2, keepdims=True)
    img = grey + cam.saturation * (img - grey)
    img = img + noise_rng.normal(0.0, cam.noise, img.shape).astype(np.float32)
    out = Image.fromarray(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8), "RGB")
    radius = cam.blur * h / 64
    if corruption and corruption["kind"] == "blur":
        radius = corruption["radius"] * h / 64
    if radius > 0.05:
        out = out.filter(ImageFilter.GaussianBlur(radius))
    return out


# ----------------------------------------------------------------------------------------------
# world layout and corruption schedule
# ----------------------------------------------------------------------------------------------


def _normalise_knobs(knobs: dict) -> dict:
    unknown = sorted(set(knobs) - set(DEFAULT_KNOBS))
    if unknown:
        hint = did_you_mean(unknown[0], DEFAULT_KNOBS) if len(unknown) == 1 else ""
        raise ValueError(f"unknown synthetic world knob(s) {unknown}{hint}; accepted: {sorted(DEFAULT_KNOBS)}")
    k = {**DEFAULT_KNOBS, **knobs}
    for key in ("cams_per_id", "frames"):
        v = k[key]
        if isinstance(v, (int, np.integer)):
            v = (int(v), int(v))
        if len(v) != 2 or int(v[0]) > int(v[1]) or int(v[0]) < 1:
            raise ValueError(f"knob {key} must be (min, max) with 1 <= min <= max, got {v!r}")
        k[key] = [int(v[0]), int(v[1])]
    k["corruption_kinds"] = list(k["corruption_kinds"])
    for kind in k["corruption_kinds"]:
        if kind not in CORRUPTION_KINDS:
            raise ValueError(f"unknown corruption kind {kind!r}; expected some of {CORRUPTION_KINDS}")
    checks = [
        (1 <= int(k["cams"]) <= 9, "cams must be in 1..9 (MARS names hold one camera digit)"),
        (int(k["ids"]) >= 2, "ids must be >= 2 (at least one train and one test identity)"),
        (0 < float(k["train_fraction"]) < 1, "train_fraction must be in (0, 1)"),
        (k["frames"][1] <= 999, "frames max must be <= 999 (MARS names hold three frame digits)"),
        (0.0 <= float(k["corruption_rate"]) <= 1.0, "corruption_rate must be in [0, 1]"),
        (float(k["corruption_rate"]) == 0 or k["corruption_kinds"], "corruption_kinds is empty but corruption_rate > 0"),
        (int(k["corruption_burst"]) >= 1, "corruption_burst must be >= 1"),
        (int(k["tracklets_per_cam"]) >= 1, "tracklets_per_cam must be >= 1"),
        (int(k["distractors"]) >= 0 and int(k["junk"]) >= 0, "distractors and junk must be >= 0"),
        (int(k["height"]) >= 16 and int(k["width"]) >= 8, "height >= 16 and width >= 8 pixels"),
        (k["image_format"] in ("jpg", "png"), "image_format must be 'jpg' or 'png'"),
        (2 <= int(k["palette"]) <= len(_PALETTE), f"palette must be in 2..{len(_PALETTE)}"),
        (float(k["camera_strength"]) >= 0 and float(k["jitter"]) >= 0 and float(k["clutter"]) >= 0,
         "camera_strength, jitter and clutter must be >= 0"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ValueError(f"synthetic world: {msg}")
    n_train = int(round(int(k["ids"]) * float(k["train_fraction"])))
    if not 1 <= n_train < int(k["ids"]):
        raise ValueError(f"synthetic world: ids={k['ids']} with train_fraction={k['train_fraction']} leaves "
                         "no train or no test identity")
    if k["cams_per_id"][0] > int(k["cams"]):
        raise ValueError(f"synthetic world: cams_per_id min {k['cams_per_id'][0]} exceeds cams={k['cams']}")
    for key in ("ids", "cams", "tracklets_per_cam", "distractors", "junk", "corruption_burst", "palette", "height",
                "width", "jpeg_quality", "seed"):
        k[key] = int(k[key])
    for key in ("train_fraction", "corruption_rate", "camera_strength", "jitter", "clutter"):
        k[key] = float(k[key])
    return k


def _schedule(n: int, rate: float, burst: int, kinds: list[str], rng: np.random.Generator) -> list[str | None]:
    """Per-frame corruption kinds: Binomial(n, rate) bad frames in runs of 1..burst, one kind per run.

    The expected fraction of corrupted frames is exactly ``rate``.
    """
    out: list[str | None] = [None] * n
    n_bad = int(rng.binomial(n, rate)) if rate > 0 else 0
    if n_bad == 0:
        return out
    if n_bad >= n:
        runs = [n]
    else:
        runs = []
        left = n_bad
        while left > 0:
            r = int(rng.integers(1, min(burst, left) + 1))
            runs.append(r)
            left -= r
    # place runs in order with random gaps of >= 1 clean frame where there is room
    free = n - n_bad
    gaps_needed = max(len(runs) - 1, 0)
    if free < gaps_needed:  # too dense for separated runs: merge into contiguous coverage
        runs = [n_bad]
        gaps_needed = 0
    extra = free - gaps_needed
    # distribute the extra clean frames into len(runs)+1 slots
    cuts = np.sort(rng.integers(0, extra + 1, size=len(runs)))
    slots = np.diff(np.concatenate([[0], cuts, [extra]]))
    pos = int(slots[0])
    for i, r in enumerate(runs):
        kind = kinds[int(rng.integers(len(kinds)))]
        for j in range(pos, pos + r):
            out[j] = kind
        pos += r + (1 if i < len(runs) - 1 else 0) + int(slots[i + 1])
    return out


def _corruption_params(kind: str, rng: np.random.Generator, other_pids: list[int]) -> dict:
    if kind == "occluder":
        shape = str(rng.choice(["pole", "box", "bar"]))
        if shape == "pole":  # vertical post in front of the person
            wdt = rng.uniform(0.3, 0.5)
            x0 = rng.uniform(0.05, 0.95 - wdt)
            box = [0.0, 1.0, x0, x0 + wdt]
        elif shape == "box":  # car, bench, luggage: lower part hidden
            hgt = rng.uniform(0.3, 0.55)
            box = [1.0 - hgt, 1.0, 0.0, 1.0]
        else:  # something carried past at chest height
            y0 = rng.uniform(0.15, 0.45)
            box = [y0, y0 + rng.uniform(0.25, 0.4), 0.0, 1.0]
        colour = np.clip(rng.uniform(0.1, 0.9, 3), 0, 1)
        return {"kind": kind, "shape": shape, "box": [round(float(v), 4) for v in box],
                "colour": [round(float(c), 4) for c in colour]}
    if kind == "blur":
        return {"kind": kind, "radius": round(float(rng.uniform(2.2, 3.5)), 4)}
    if kind == "misalign":
        zoom = float(rng.uniform(1.3, 1.7)) if rng.random() < 0.4 else 1.0
        dx = float(rng.choice([-1, 1]) * rng.uniform(0.3, 0.5))
        dy = float(rng.uniform(-0.25, 0.25))
        return {"kind": kind, "dx": round(dx, 4), "dy": round(dy, 4), "zoom": round(zoom, 4)}
    if kind == "foreign_patch":
        other = int(other_pids[int(rng.integers(len(other_pids)))])
        return {"kind": kind, "other_pid": other, "dx": round(float(rng.choice([-1, 1]) * rng.uniform(0.35, 0.55)), 4),
                "phase": round(float(rng.uniform(0, 2 * math.pi)), 4)}
    raise ValueError(f"unknown corruption kind {kind!r}")


@dataclass
class _TrackPlan:
    pid: int  # 0 distractor, -1 junk
    cam: int  # 0-based
    index: int  # T number (1-based) within (pid, cam)
    n_frames: int
    split: str  # "train" | "test"
    key: tuple  # seed tuple of this tracklet


def _plan(k: dict) -> tuple[list[_TrackPlan], list[int], dict[int, Identity]]:
    """Tracklets to draw, query rows (0-based into the test list), and identities by pid."""
    seed = k["seed"]
    rng = np.random.default_rng([seed, _R_LAYOUT])
    n_train = int(round(k["ids"] * k["train_fraction"]))
    plans: list[_TrackPlan] = []
    identities: dict[int, Identity] = {}
    test_rows_by_pid: dict[int, list[int]] = {}
    n_test_rows = 0
    for pid in range(1, k["ids"] + 1):
        identities[pid] = _make_identity(np.random.default_rng([seed, _R_IDENTITY, pid]), k["palette"])
        split = "train" if pid <= n_train else "test"
        n_cams = int(rng.integers(k["cams_per_id"][0], min(k["cams_per_id"][1], k["cams"]) + 1))
        cams = sorted(rng.choice(k["cams"], size=n_cams, replace=False).tolist())
        for cam in cams:
            for t in range(1, k["tracklets_per_cam"] + 1):
                n = int(rng.integers(k["frames"][0], k["frames"][1] + 1))
                plans.append(_TrackPlan(pid, cam, t, n, split, (seed, _R_TRACKLET, pid, cam, t)))
                if split == "test":
                    test_rows_by_pid.setdefault(pid, []).append(n_test_rows)
                    n_test_rows += 1
    # distractors: unseen people, one tracklet each, pid 0
    t_by_cam: dict[int, int] = {}
    for j in range(k["distractors"]):
        cam = int(rng.integers(k["cams"]))
        t_by_cam[cam] = t_by_cam.get(cam, 0) + 1
        n = int(rng.integers(k["frames"][0], k["frames"][1] + 1))
        plans.append(_TrackPlan(0, cam, t_by_cam[cam], n, "test", (seed, _R_DISTRACTOR, j)))
        identities[-(j + 1)] = _make_identity(np.random.default_rng([seed, _R_DISTRACTOR, j]), k["palette"])
    t_by_cam = {}
    for j in range(k["junk"]):
        cam = int(rng.integers(k["cams"]))
        t_by_cam[cam] = t_by_cam.get(cam, 0) + 1
        n = int(rng.integers(k["frames"][0], k["frames"][1] + 1))
        plans.append(_TrackPlan(-1, cam, t_by_cam[cam], n, "test", (seed, _R_JUNK, j)))
    # query: one tracklet per test identity (from one of its cameras)
    query_rows = [int(rows[int(rng.integers(len(rows)))]) for _, rows in sorted(test_rows_by_pid.items())]
    return plans, query_rows, identities


def _mars_name(pid: int, cam: int, t: int, f: int, ext: str) -> str:
    p = "00-1" if pid == -1 else f"{pid:04d}"
    return f"{p}C{cam + 1}T{t:04d}F{f:03d}.{ext}"


def _savemat(path: Path, name: str, value: np.ndarray) -> None:
    scipy.io.savemat(str(path), {name: value})
    # the MAT-5 header's 116-byte text carries a timestamp; make it fixed so worlds are byte-identical
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 5.0 MAT-file, written by reidlab.data.synthetic".ljust(116, b" "))


def _is_world(path: Path) -> bool:
    return (path / "info" / "world.json").is_file()


def _read_world_json(path: Path) -> dict | None:
    try:
        return json.loads((path / "info" / "world.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _knobs_json(k: dict) -> dict:
    return json.loads(json.dumps(k))


def generate_world(out: str | Path, *, ids: int = DEFAULT_KNOBS["ids"], cams: int = DEFAULT_KNOBS["cams"],
                   seed: int = 0, corruption_rate: float = DEFAULT_KNOBS["corruption_rate"], height: int = 64,
                   width: int = 32, verbose: bool = False, **knobs) -> Path:
    """Draw a synthetic world into ``out`` (MARS layout) and return ``out``.

    Other knobs (see the module docstring): train_fraction, cams_per_id, tracklets_per_cam, frames,
    distractors, junk, corruption_kinds, corruption_burst, palette, camera_strength, jitter, clutter,
    image_format, jpeg_quality. Atomic: built in a temporary sibling folder, then renamed over ``out``.
    An existing ``out`` is replaced only if it is a synthetic world (has info/world.json) or empty.
    """
    k = _normalise_knobs({"ids": ids, "cams": cams, "seed": seed, "corruption_rate": corruption_rate,
                          "height": height, "width": width, **knobs})
    out = Path(out)
    if out.exists() and not _is_world(out) and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not a synthetic world (no info/world.json); refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        stats = _write_world(tmp, k)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if verbose:
        print(f"synthetic world written to {out} in {time.perf_counter() - t0:.1f} s: "
              f"{stats['tracklets']} tracklets, {stats['frames']} frames, "
              f"{stats['corrupted_frames']} corrupted ({stats['corrupted_frames'] / max(stats['frames'], 1):.1%})")
    return out


def _replace_dir(tmp: Path, out: Path) -> None:
    if out.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, trash / "w")
        try:
            os.rename(tmp, out)
        except OSError:
            os.rename(trash / "w", out)
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        try:
            os.rename(tmp, out)
        except OSError:
            # another process finished the same world first; keep theirs
            if not _is_world(out):
                raise
            shutil.rmtree(tmp, ignore_errors=True)


def _write_world(root: Path, k: dict) -> dict:
    h, w = k["height"], k["width"]
    ext = k["image_format"]
    plans, query_rows, identities = _plan(k)
    cameras = [_make_camera(np.random.default_rng([k["seed"], _R_CAMERA, c]), k["camera_strength"], k["clutter"])
               for c in range(k["cams"])]
    n_train = int(round(k["ids"] * k["train_fraction"]))
    train_pool = list(range(1, n_train + 1))
    test_pool = list(range(n_train + 1, k["ids"] + 1))
    (root / "info").mkdir(parents=True)
    names = {"train": [], "test": []}
    info = {"train": [], "test": []}
    sidecar: dict[str, dict] = {}
    save_kw = {"quality": k["jpeg_quality"], "subsampling": 0} if ext == "jpg" else {"compress_level": 6}
    made_dirs: set[Path] = set()
    for plan in plans:
        rng = np.random.default_rng(list(plan.key))
        cam = cameras[plan.cam]
        folder = root / ("bbox_train" if plan.split == "train" else "bbox_test") / ("00-1" if plan.pid == -1 else f"{plan.pid:04d}")
        if folder not in made_dirs:
            folder.mkdir(parents=True, exist_ok=True)
            made_dirs.add(folder)
        if plan.pid > 0:
            ind = identities[plan.pid]
        elif plan.pid == 0:
            ind = identities[-(plan.key[2] + 1)]
        else:
            ind = None
        pool = [p for p in (train_pool if plan.split == "train" else test_pool) if p != plan.pid]
        # the schedule has its own generator: drawing it from ``rng`` would shift the motion draws below
        # with the rate, so worlds differing only in corruption would differ in every pose/background
        sched = _schedule(plan.n_frames, k["corruption_rate"], k["corruption_burst"], k["corruption_kinds"],
                          np.random.default_rng([*plan.key, _R_SCHEDULE])) \
            if plan.pid >= 0 else [None] * plan.n_frames
        # tracklet-level motion: start phase, drift, background scroll
        phase0 = float(rng.uniform(0, 2 * math.pi))
        cadence = ind.cadence if ind is not None else 0.0
        jit = k["jitter"]
        base_dx = float(rng.normal(0, 0.8 * jit)) * w / 32
        drift = float(rng.normal(0, 0.15 * jit)) * w / 32
        bg0 = float(rng.uniform(0, 3.0))
        bg_speed = float(rng.uniform(0.01, 0.03)) * rng.choice([-1, 1])
        scale0 = float(1 + rng.normal(0, 0.03 * jit))
        start = len(names[plan.split]) + 1
        junk_mode = str(rng.choice(["background", "fragment"])) if plan.pid == -1 else None
        for f in range(plan.n_frames):
            frng = np.random.default_rng([*plan.key, _R_FRAME, f])
            pose = _Pose(phase=phase0 + cadence * f,
                         dx=base_dx + drift * f + float(frng.normal(0, 0.6 * jit)) * w / 32,
                         dy=float(frng.normal(0, 0.6 * jit)) * h / 64,
                         scale=scale0 * float(1 + frng.normal(0, 0.02 * jit)))
            kind = sched[f]
            if kind == "foreign_patch" and not pool:  # a one-identity split has nobody to step in
                kind = sched[f] = "occluder"
            # own generator per frame: drawn from ``frng`` the parameters would shift this frame's sensor
            # noise, so a corrupted frame would differ from its clean twin (same frame, other rate) in
            # more than the corruption itself
            params = _corruption_params(kind, np.random.default_rng([*plan.key, _R_CORRUPTION, f]), pool) \
                if kind is not None else None
            other = identities[params["other_pid"]] if kind == "foreign_patch" else None
            name = _mars_name(plan.pid, plan.cam, plan.index, f + 1, ext)
            bg_off = bg0 + bg_speed * f
            if ind is None:
                img = _render_junk(cam, h, w, bg_off, junk_mode, identities, frng, k)
            else:
                img = _render(ind, pose, cam, h, w, bg_off, params, other, frng)
            img.save(folder / name, **save_kw)
            names[plan.split].append(name)
            if params is not None:
                sidecar[name] = params
        info[plan.split].append([start, len(names[plan.split]), plan.pid, plan.cam + 1])

    for split in ("train", "test"):
        (root / "info" / f"{split}_name.txt").write_text("\n".join(names[split]) + "\n")
        _savemat(root / "info" / f"tracks_{split}_info.mat", f"track_{split}_info",
                 np.asarray(info[split], dtype=np.float64).reshape(-1, 4))
    _savemat(root / "info" / "query_IDX.mat", "query_IDX", np.asarray([r + 1 for r in query_rows], np.float64)[None, :])
    n_frames = len(names["train"]) + len(names["test"])
    (root / "info" / SIDECAR_NAME).write_text(json.dumps(
        {"format": SIDECAR_FORMAT, "kinds": k["corruption_kinds"], "rate": k["corruption_rate"],
         "frames": dict(sorted(sidecar.items()))}, indent=1, sort_keys=True) + "\n")
    stats = {"tracklets": len(plans), "frames": n_frames, "corrupted_frames": len(sidecar),
             "train_ids": n_train, "test_ids": k["ids"] - n_train, "queries": len(query_rows)}
    (root / "info" / "world.json").write_text(json.dumps(
        {"format": WORLD_FORMAT, "generator_version": GENERATOR_VERSION, "knobs": _knobs_json(k), "stats": stats},
        indent=1, sort_keys=True) + "\n")
    return stats


def _render_junk(cam: Camera, h: int, w: int, bg_off: float, mode: str, identities: dict, rng, k: dict) -> Image.Image:
    """MARS-like junk boxes: plain background or a fragment of a random person far off-centre."""
    img = _background(cam, h, w, bg_off)
    if mode == "fragment":
        ind = identities[int(rng.integers(1, k["ids"] + 1))]
        hp = 1.6 * h
        _draw_person(_Canvas(img, w * (0.5 + rng.choice([-0.6, 0.6])), -0.3 * h, hp, cam.mirror), ind,
                     float(rng.uniform(0, 6.3)))
    img = np.clip(img * cam.cast * cam.gain, 0, 1) + rng.normal(0, cam.noise, img.shape)
    return Image.fromarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")


# ----------------------------------------------------------------------------------------------
# ensure / load / CLI / gallery
# ----------------------------------------------------------------------------------------------


def world_knobs(root: str | Path) -> dict | None:
    """The knobs stored in ``root/info/world.json``, or None when ``root`` is not a synthetic world."""
    data = _read_world_json(Path(root))
    if not data or data.get("format") != WORLD_FORMAT:
        return None
    return data.get("knobs")


def ensure_world(root: str | Path | None = None, *, verbose: bool = True, **knobs) -> Path:
    """Return ``root`` holding a world made with ``knobs`` (defaults for the rest); generate it if it is
    missing, was made with other knobs, or by an older generator. ``root=None`` -> default root."""
    root = Path(root) if root is not None else default_synthetic_root()
    want = _knobs_json(_normalise_knobs(knobs))
    data = _read_world_json(root)
    if data and data.get("format") == WORLD_FORMAT and data.get("knobs") == want \
            and data.get("generator_version") == GENERATOR_VERSION:
        return root
    if verbose:
        why = "missing" if data is None else "made with other knobs or an older generator"
        print(f"synthetic world at {root} is {why}; generating ...")
    return generate_world(root, verbose=verbose, **want)


def load_synthetic(root: str | Path | None = None, *, mars_gallery: str = "remaining", min_seq_len: int = 0,
                   generate: bool = True, verbose: bool = True, **knobs) -> ReIDDataset:
    """Read a synthetic world with the MARS reader (corruption ground truth attached).

    ``root``: the world folder, or a parent holding ``synthetic/``; ``None`` -> :func:`default_synthetic_root`.
    When ``generate`` is true the world is created if missing, and regenerated when ``knobs`` are given and
    differ from the stored ones; without knobs an existing world is read as it is.
    """
    from reidlab.data.datasets.mars import read_mars_layout  # the readers import this module

    root = Path(root) if root is not None else default_synthetic_root()
    if not _is_world(root) and _is_world(root / "synthetic"):
        root = root / "synthetic"
    if generate and (knobs or not _is_world(root)):
        ensure_world(root, verbose=verbose, **knobs)
    elif knobs:
        raise ValueError(f"world knobs {sorted(knobs)} given with generate=False; they can only select a world "
                         "to generate")
    return read_mars_layout(root, mars_gallery=mars_gallery, min_seq_len=min_seq_len, verbose=verbose,
                            name="synthetic", folder_names=("synthetic",))


def render_gallery(root: str | Path, out_png: str | Path, *, ids: int = 3, max_frames: int = 10, split: str = "test",
                   zoom: int = 3, seed: int = 0) -> Path:
    """Draw example tracklets to a PNG: rows = tracklets of ``ids`` identities across cameras, corrupted
    frames outlined in red with their kind written below. Returns ``out_png``."""
    from reidlab.data.datasets.mars import read_mars_layout

    ds = read_mars_layout(root, verbose=False, name="synthetic", folder_names=("synthetic",), mars_gallery="all")
    records = ds.train if split == "train" else ds.gallery
    by_pid: dict[int, list] = {}
    for t in records:
        if t.pid > 0:
            by_pid.setdefault(t.pid, []).append(t)
    rng = np.random.default_rng(seed)
    # prefer identities seen by several cameras and showing some corruption
    pids = sorted(by_pid, key=lambda p: (-len(by_pid[p]), p))
    pool = pids[: max(ids * 3, ids)]
    chosen = sorted(rng.choice(pool, size=min(ids, len(pool)), replace=False).tolist())
    rows = [t for p in chosen for t in sorted(by_pid[p], key=lambda t: t.camid)]
    first = Image.open(rows[0].paths[0])
    fw, fh = first.size[0] * zoom, first.size[1] * zoom
    pad, label_w, text_h = 4, 110, 12
    width = label_w + max_frames * (fw + pad) + pad
    height = len(rows) * (fh + text_h + pad) + pad + 18
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((pad, 3), f"synthetic world: {split} tracklets ({ids} identities across cameras); "
                        "red = corrupted frame (ground truth)", fill=(0, 0, 0))
    y = 18
    for t in rows:
        draw.text((pad, y + fh // 2 - 12), f"pid {t.pid}\ncam {t.camid}\n{len(t.paths)} frames", fill=(0, 0, 0))
        idx = np.linspace(0, len(t.paths) - 1, min(max_frames, len(t.paths))).round().astype(int)
        for j, fi in enumerate(idx):
            x = label_w + j * (fw + pad)
            im = Image.open(t.paths[fi]).convert("RGB").resize((fw, fh), Image.NEAREST)
            canvas.paste(im, (x, y))
            kind = t.corruption[fi] if t.corruption else None
            if kind:
                draw.rectangle([x - 2, y - 2, x + fw + 1, y + fh + 1], outline=(230, 0, 0), width=3)
                draw.text((x, y + fh + 1), kind.replace("foreign_patch", "foreign")[:9], fill=(200, 0, 0))
        y += fh + text_h + pad
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_png)
    return out_png


def _pair(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.replace(",", " ").replace("-", " ").split()]
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected N or MIN,MAX, got {text!r}")
    return parts[0], parts[1]


def main(argv: list[str] | None = None) -> int:
    """``reidlab synth --out DIR [--ids N --cams N --seed S --corruption-rate R ...]``"""
    p = argparse.ArgumentParser(prog="reidlab synth", description="Generate the synthetic video re-ID world "
                                "(MARS layout) used as reidlab's built-in dataset.")
    p.add_argument("--out", default=None, help=f"output folder (default: $REIDLAB_DATA/synthetic or {DEFAULT_SYNTHETIC_ROOT})")
    p.add_argument("--ids", type=int, default=DEFAULT_KNOBS["ids"], help="labelled identities (train + test)")
    p.add_argument("--cams", type=int, default=DEFAULT_KNOBS["cams"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corruption-rate", type=float, default=DEFAULT_KNOBS["corruption_rate"])
    p.add_argument("--corruption-kinds", default=",".join(CORRUPTION_KINDS), help="comma-separated subset")
    p.add_argument("--corruption-burst", type=int, default=DEFAULT_KNOBS["corruption_burst"])
    p.add_argument("--frames", type=_pair, default=tuple(DEFAULT_KNOBS["frames"]), help="MIN,MAX frames per tracklet")
    p.add_argument("--cams-per-id", type=_pair, default=tuple(DEFAULT_KNOBS["cams_per_id"]), help="MIN,MAX")
    p.add_argument("--tracklets-per-cam", type=int, default=DEFAULT_KNOBS["tracklets_per_cam"])
    p.add_argument("--train-fraction", type=float, default=DEFAULT_KNOBS["train_fraction"])
    p.add_argument("--distractors", type=int, default=DEFAULT_KNOBS["distractors"])
    p.add_argument("--junk", type=int, default=DEFAULT_KNOBS["junk"])
    p.add_argument("--palette", type=int, default=DEFAULT_KNOBS["palette"])
    p.add_argument("--camera-strength", type=float, default=DEFAULT_KNOBS["camera_strength"])
    p.add_argument("--jitter", type=float, default=DEFAULT_KNOBS["jitter"])
    p.add_argument("--clutter", type=float, default=DEFAULT_KNOBS["clutter"])
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--image-format", choices=["jpg", "png"], default="jpg")
    p.add_argument("--force", action="store_true", help="regenerate even if the folder holds this exact world")
    p.add_argument("--gallery", default=None, help="also render example tracklets to this PNG")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    knobs = dict(ids=a.ids, cams=a.cams, seed=a.seed, corruption_rate=a.corruption_rate,
                 corruption_kinds=[c for c in a.corruption_kinds.split(",") if c],
                 corruption_burst=a.corruption_burst, frames=a.frames, cams_per_id=a.cams_per_id,
                 tracklets_per_cam=a.tracklets_per_cam, train_fraction=a.train_fraction, distractors=a.distractors,
                 junk=a.junk, palette=a.palette, camera_strength=a.camera_strength, jitter=a.jitter,
                 clutter=a.clutter, height=a.height, width=a.width, image_format=a.image_format)
    out = Path(a.out) if a.out else default_synthetic_root()
    try:
        t0 = time.perf_counter()
        if a.force:
            generate_world(out, verbose=not a.quiet, **knobs)
        else:
            ensure_world(out, verbose=not a.quiet, **knobs)
            if not a.quiet and time.perf_counter() - t0 < 0.5:
                print(f"{out} already holds this world (use --force to regenerate)")
        if a.gallery:
            render_gallery(out, a.gallery)
            if not a.quiet:
                print(f"gallery written to {a.gallery}")
    except (ValueError, FileExistsError) as e:
        print(f"reidlab synth: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
