"""A MARS-scale rehearsal world: MARS's identity, tracklet and frame counts in bounded generation time.

Why: the workbench's claims about dataset indexing, loaders, dense extraction and evaluation at MARS
scale (1,261 identities, 20,478 released tracklets, 1,191,003 frames, tracklets up to ~920 frames) can
only be checked on a folder that really has those counts; real MARS cannot be downloaded here.

What is written (MARS layout, read by ``build_dataset("mars", root)`` exactly like the release)::

    <root>/bbox_train/<pid:4>/<pid:4>C<cam>T<tracklet:4>F<frame:3>.jpg    509,914 names, 8,298 tracklets
    <root>/bbox_test/{0000 distractors, 00-1 junk, <pid:4>}/...           681,089 names, 12,180 tracklets
    <root>/info/train_name.txt test_name.txt tracks_train_info.mat tracks_test_info.mat query_IDX.mat
    <root>/info/rehearsal.json     counts, knobs, generation time and statistics
    <root>/pool/<key>.jpg          the distinct rendered images every frame name is a hard link to

Bounded generation: writing 1.19 M JPEGs one by one is slow, so a bounded *pool* of distinct images
is rendered (``pool_frames`` walking-cycle frames per (person, camera), drawn by
:mod:`reidlab.data.synthetic`'s procedural pedestrians; junk boxes are plain camera background) and every
frame name is a hard link (``os.link``) to one of them: the folders hold MARS's file names and counts,
each name is a real, decodable JPEG, but only the pool costs rendering time, disk blocks and inodes.
Consequence for benchmarks: the page cache holds the whole pool, so file reads are always warm (on
real MARS, ~1.19 M distinct files, they are not); decoding costs what an image of the pool's size costs.

Counts (:data:`MARS_COUNTS`, from the MARS paper and the released tables; see ``reidlab.data.check``):
train 625 ids / 8,298 tracklets / 509,914 frames; test 636 ids with 1,980 query tracklets (626 ids)
and 9,330 remaining-gallery tracklets (621 ids + the distractors, pid 0, counted as one id: 622), plus
870 junk tracklets (pid -1) = 12,180 test tracklets / 681,089 frames. How the 3,248 distractor tracklets
split between pid 0 and junk is not published per folder; here all 3,248 are pid 0 and the 870 junk are
extra (the remaining gallery count, 9,330, is what the reader and the evaluation see either way).
Tracklet lengths: log-normal (mean matching the split's frames / tracklets, ``length_sigma``), clipped
to ``[min_len, max_len]`` with the longest tracklet of each split set to ``max_len``, then adjusted by
single frames so each split's frame total is exact.

Determinism: everything is a function of ``seed``; the pool images are rendered in a fixed order.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from reidlab.data import synthetic as S

DEFAULT_REHEARSAL_ROOT = "data/mars_rehearsal"
REHEARSAL_FORMAT = "reidlab-mars-rehearsal/1"

# role tags for the seeded generators
_R_PLAN, _R_LENGTHS, _R_POOL = 1, 2, 3


@dataclass(frozen=True)
class RehearsalCounts:
    """The counts a rehearsal world is written with (defaults: MARS as released).

    Test identities are of three kinds: ``query_gallery_ids`` have query and gallery tracklets,
    ``query_only_ids`` only queries, ``gallery_only_ids`` only gallery tracklets (MARS: 611 + 15 + 10 =
    636, which reproduces its 626 query and 621 (+ pid 0) gallery identities).
    """

    train_ids: int = 625
    train_tracklets: int = 8298
    train_frames: int = 509_914
    query_gallery_ids: int = 611
    query_only_ids: int = 15
    gallery_only_ids: int = 10
    queries: int = 1980
    gallery_tracklets: int = 6082  # labelled (pid > 0) remaining-gallery tracklets; + distractors = 9,330
    distractor_tracklets: int = 3248  # pid 0, in the gallery
    junk_tracklets: int = 870  # pid -1, dropped by the reader
    test_frames: int = 681_089  # every test frame, junk and distractors included
    cams: int = 6
    min_len: int = 2
    max_len: int = 920

    @property
    def test_ids(self) -> int:
        return self.query_gallery_ids + self.query_only_ids + self.gallery_only_ids

    @property
    def identities(self) -> int:
        return self.train_ids + self.test_ids

    @property
    def test_tracklets(self) -> int:
        return self.queries + self.gallery_tracklets + self.distractor_tracklets + self.junk_tracklets

    @property
    def total_frames(self) -> int:
        return self.train_frames + self.test_frames

    def validate(self) -> None:
        """ValueError naming the first count that cannot be laid out."""
        q_ids = self.query_gallery_ids + self.query_only_ids
        g_ids = self.query_gallery_ids + self.gallery_only_ids
        checks = [
            (1 <= self.cams <= 9, "cams must be in 1..9 (MARS names hold one camera digit)"),
            (2 <= self.min_len <= self.max_len <= 999, "need 2 <= min_len <= max_len <= 999 (three frame digits)"),
            (self.train_ids >= 1 and q_ids >= 1, "need at least one train and one query identity"),
            (self.train_ids <= self.train_tracklets, "train_tracklets < train_ids"),
            (q_ids <= self.queries <= q_ids * self.cams, "queries must be in [query ids, query ids x cams] "
                                                          "(one query per camera and identity)"),
            (g_ids <= self.gallery_tracklets, "gallery_tracklets < identities with gallery tracklets"),
            (self.query_gallery_ids + self.gallery_only_ids + self.query_only_ids + self.train_ids <= 9999,
             "at most 9,999 identities (four pid digits)"),
            (self.train_tracklets * self.min_len <= self.train_frames <= self.train_tracklets * self.max_len,
             "train_frames outside train_tracklets x [min_len, max_len]"),
            (self.test_tracklets * self.min_len <= self.test_frames <= self.test_tracklets * self.max_len,
             "test_frames outside test tracklets x [min_len, max_len]"),
            (min(self.distractor_tracklets, self.junk_tracklets, self.query_only_ids, self.gallery_only_ids) >= 0,
             "counts must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"RehearsalCounts: {msg} ({self})")

    def scaled(self, fraction: float) -> RehearsalCounts:
        """The same proportions at ``fraction`` of every count (at least the minimum that stays valid);
        lengths keep their bounds, so frames scale with tracklets."""
        def s(v: int, lo: int = 0) -> int:
            return max(lo, int(round(v * fraction)))

        out = replace(self, train_ids=s(self.train_ids, 2), query_gallery_ids=s(self.query_gallery_ids, 2),
                      query_only_ids=s(self.query_only_ids), gallery_only_ids=s(self.gallery_only_ids),
                      distractor_tracklets=s(self.distractor_tracklets), junk_tracklets=s(self.junk_tracklets))
        q_ids = out.query_gallery_ids + out.query_only_ids
        g_ids = out.query_gallery_ids + out.gallery_only_ids
        out = replace(out, train_tracklets=max(s(self.train_tracklets), out.train_ids),
                      queries=min(max(s(self.queries), q_ids), q_ids * out.cams),
                      gallery_tracklets=max(s(self.gallery_tracklets), g_ids))
        mean_train = self.train_frames / self.train_tracklets
        mean_test = self.test_frames / self.test_tracklets
        return replace(out, train_frames=int(round(out.train_tracklets * mean_train)),
                       test_frames=int(round(out.test_tracklets * mean_test)))


#: MARS as released (bbox_train + bbox_test with the standard info tables)
MARS_COUNTS = RehearsalCounts()


@dataclass
class _Track:
    pid: int  # > 0 labelled, 0 distractor, -1 junk
    cam: int  # 0-based
    person: int  # appearance key: pid for labelled, distractor person index for pid 0, camera for junk
    query: bool = False
    index: int = 0  # T number within (pid, cam), 1-based
    n_frames: int = 0


def _spread(total: int, n: int, lo: int, hi: int, rng: np.random.Generator, sigma: float = 0.5) -> np.ndarray:
    """``n`` integers in ``[lo, hi]`` summing to ``total`` (log-normal shaped around the mean)."""
    if n == 0:
        if total:
            raise ValueError(f"cannot spread {total} over 0 items")
        return np.zeros(0, np.int64)
    if not n * lo <= total <= n * hi:
        raise ValueError(f"cannot spread {total} over {n} items in [{lo}, {hi}]")
    w = rng.lognormal(0.0, sigma, n)
    out = np.clip(np.round(w / w.sum() * total), lo, hi).astype(np.int64)
    return _fix_sum(out, total, lo, hi, rng)


def _fix_sum(x: np.ndarray, total: int, lo: int, hi: int, rng: np.random.Generator,
             frozen: np.ndarray | None = None) -> np.ndarray:
    """Adjust ``x`` by single units at random positions (within ``[lo, hi]``, ``frozen`` untouched)
    until it sums to ``total``."""
    x = x.copy()
    free = np.ones(len(x), bool) if frozen is None else ~frozen
    while (diff := int(total - x.sum())) != 0:
        room = (x < hi) if diff > 0 else (x > lo)
        cand = np.flatnonzero(room & free)
        if cand.size == 0:
            raise ValueError(f"cannot reach a sum of {total} within [{lo}, {hi}]")
        # proportional steps first (large moves on large items), single units to finish
        pick = rng.choice(cand, size=min(abs(diff), cand.size), replace=False)
        x[pick] += 1 if diff > 0 else -1
    return x


def tracklet_lengths(n: int, total: int, lo: int, hi: int, rng: np.random.Generator,
                     sigma: float = 0.9) -> np.ndarray:
    """``n`` tracklet lengths (frames, int64) summing to ``total``, log-normal with mean ``total / n``,
    clipped to ``[lo, hi]``; the longest one is set to ``hi`` (when ``n > 1`` and the total allows it)."""
    if n == 0:
        return np.zeros(0, np.int64)
    mean = total / n
    mu = math.log(max(mean, 1.0)) - sigma * sigma / 2
    x = np.clip(np.round(rng.lognormal(mu, sigma, n)), lo, hi).astype(np.int64)
    frozen = np.zeros(n, bool)
    if n > 1 and hi + (n - 1) * lo <= total:
        top = int(np.argmax(x))
        x[top] = hi
        frozen[top] = True
    # scale towards the total, then finish with single frames
    rest = ~frozen
    want = total - int(x[frozen].sum())
    if x[rest].sum() > 0:
        x[rest] = np.clip(np.round(x[rest] * (want / x[rest].sum())), lo, hi)
    return _fix_sum(x, total, lo, hi, rng, frozen)


def _plan(c: RehearsalCounts, seed: int, distractor_people: int) -> tuple[list[_Track], list[_Track]]:
    """(train tracklets, test tracklets) in MARS table order, lengths filled in."""
    rng = np.random.default_rng([seed, _R_PLAN])

    def cams_for(n_tracks: int, min_cams: int) -> np.ndarray:
        k = int(rng.integers(max(2, min_cams), c.cams + 1)) if c.cams >= 2 else 1
        k = max(min(k, c.cams), min(min_cams, c.cams))
        return rng.permutation(c.cams)[:k]

    def tracks_of(pid: int, n_query: int, n_gallery: int) -> list[_Track]:
        cams = cams_for(n_query + n_gallery, n_query)
        out = [_Track(pid, int(cams[j]), pid, query=True) for j in range(n_query)]  # distinct cameras
        for j in range(n_gallery):
            # cover the identity's other cameras first, then anywhere in its camera set
            cam = cams[n_query + j] if n_query + j < len(cams) else cams[int(rng.integers(len(cams)))]
            out.append(_Track(pid, int(cam), pid))
        return out

    train: list[_Track] = []
    per_id = _spread(c.train_tracklets, c.train_ids, 1, c.train_tracklets, rng)
    for i, n in enumerate(per_id.tolist()):
        train += tracks_of(i + 1, 0, n)

    q_ids = c.query_gallery_ids + c.query_only_ids
    g_ids = c.query_gallery_ids + c.gallery_only_ids
    n_q = _spread(c.queries, q_ids, 1, c.cams, rng)
    n_g = _spread(c.gallery_tracklets, g_ids, 1, c.gallery_tracklets, rng)
    labelled: list[_Track] = []
    first = c.train_ids + 1
    # identity order: query+gallery, then query-only, then gallery-only, mixed by a permutation of pids
    kinds = ["qg"] * c.query_gallery_ids + ["q"] * c.query_only_ids + ["g"] * c.gallery_only_ids
    kinds = [kinds[i] for i in rng.permutation(len(kinds))]
    qi = gi = 0
    for j, kind in enumerate(kinds):
        nq = int(n_q[qi]) if kind in ("qg", "q") else 0
        ng = int(n_g[gi]) if kind in ("qg", "g") else 0
        qi += kind in ("qg", "q")
        gi += kind in ("qg", "g")
        labelled += tracks_of(first + j, nq, ng)
    distractors = [_Track(0, int(rng.integers(c.cams)), int(rng.integers(max(distractor_people, 1))))
                   for _ in range(c.distractor_tracklets)]
    junk = []
    for _ in range(c.junk_tracklets):
        cam = int(rng.integers(c.cams))
        junk.append(_Track(-1, cam, cam))
    test = distractors + junk + labelled

    lrng = np.random.default_rng([seed, _R_LENGTHS])
    for tracks, total in ((train, c.train_frames), (test, c.test_frames)):
        lengths = tracklet_lengths(len(tracks), total, c.min_len, c.max_len, lrng)
        for t, n in zip(tracks, lengths.tolist()):
            t.n_frames = int(n)
    # MARS table order: by folder (0000, 00-1, then pids), camera, tracklet number
    for tracks in (train, test):
        tracks.sort(key=lambda t: (t.pid != 0, t.pid != -1, t.pid, t.cam))  # stable: keeps draw order inside
        counter: dict[tuple[int, int], int] = {}
        for t in tracks:
            counter[(t.pid, t.cam)] = t.index = counter.get((t.pid, t.cam), 0) + 1
    return train, test


class _Pool:
    """Renders the distinct images on demand (each key once) into ``root/pool``."""

    def __init__(self, root: Path, seed: int, height: int, width: int, frames: int, quality: int):
        self.dir = root / "pool"
        self.dir.mkdir(parents=True)
        self.seed, self.h, self.w, self.frames, self.quality = seed, height, width, frames, quality
        self.cameras = [S._make_camera(np.random.default_rng([seed, S._R_CAMERA, cam]), 1.0, 1.0) for cam in range(9)]
        self._paths: dict[tuple[int, int, int], list[str]] = {}
        self.rendered = 0

    def paths(self, kind: int, person: int, cam: int) -> list[str]:
        """Pool files for (kind: 1 labelled / 0 distractor / -1 junk, person, camera)."""
        key = (kind, person, cam)
        got = self._paths.get(key)
        if got is not None:
            return got
        tag = {1: "p", 0: "d", -1: "j"}[kind]
        rng = np.random.default_rng([self.seed, _R_POOL, kind + 1, person, cam])
        camera = self.cameras[cam]
        out = []
        if kind >= 0:
            ind = S._make_identity(np.random.default_rng([self.seed, S._R_IDENTITY if kind else S._R_DISTRACTOR,
                                                          person]), 12)
            phase0 = float(rng.uniform(0, 2 * math.pi))
        for j in range(self.frames):
            bg = float(rng.uniform(0, 3))
            if kind >= 0:
                pose = S._Pose(phase=phase0 + 2 * math.pi * j / self.frames, dx=float(rng.normal(0, 0.6)) * self.w / 32,
                               dy=float(rng.normal(0, 0.6)) * self.h / 64, scale=float(1 + rng.normal(0, 0.02)))
                img = S._render(ind, pose, camera, self.h, self.w, bg, None, None, rng)
            else:
                img = S._render_junk(camera, self.h, self.w, bg, "background", {}, rng, {})
            path = self.dir / f"{tag}{person:05d}c{cam + 1}f{j}.jpg"
            img.save(path, quality=self.quality, subsampling=0)
            out.append(str(path))
            self.rendered += 1
        self._paths[key] = out
        return out


def _write(root: Path, c: RehearsalCounts, seed: int, height: int, width: int, pool_frames: int,
           distractor_people: int, jpeg_quality: int, verbose: bool) -> dict:
    t0 = time.perf_counter()
    train, test = _plan(c, seed, distractor_people)
    t_plan = time.perf_counter() - t0
    (root / "info").mkdir(parents=True)
    pool = _Pool(root, seed, height, width, pool_frames, jpeg_quality)
    t_render = t_link = 0.0
    n_links = 0
    tables: dict[str, tuple[list[str], list[list[int]]]] = {}
    query_rows: list[int] = []
    sep = os.sep
    for split, tracks in (("train", train), ("test", test)):
        names: list[str] = []
        info: list[list[int]] = []
        made: set[str] = set()
        base = str(root / f"bbox_{split}")
        for row, t in enumerate(tracks):
            folder_name = "00-1" if t.pid == -1 else f"{t.pid:04d}"
            folder = f"{base}{sep}{folder_name}"
            if folder_name not in made:
                os.makedirs(folder)
                made.add(folder_name)
            r0 = time.perf_counter()
            src = pool.paths(1 if t.pid > 0 else t.pid, t.person, t.cam)
            r1 = time.perf_counter()
            t_render += r1 - r0
            start = len(names) + 1
            off = (t.index * 7 + t.cam) % len(src)  # tracklets of one person start at different poses
            prefix = f"{folder_name}C{t.cam + 1}T{t.index:04d}F"
            for f in range(t.n_frames):
                name = f"{prefix}{f + 1:03d}.jpg"
                os.link(src[(off + f) % len(src)], f"{folder}{sep}{name}")
                names.append(name)
            n_links += t.n_frames
            t_link += time.perf_counter() - r1
            info.append([start, len(names), t.pid, t.cam + 1])
            if t.query:
                query_rows.append(row + 1)
            if verbose and (row + 1) % 2000 == 0:
                print(f"  {split}: {row + 1}/{len(tracks)} tracklets, {pool.rendered} pool images, "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
        tables[split] = (names, info)
    w0 = time.perf_counter()
    for split, (names, info) in tables.items():
        (root / "info" / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        S._savemat(root / "info" / f"tracks_{split}_info.mat", f"track_{split}_info",
                   np.asarray(info, dtype=np.float64).reshape(-1, 4))
    S._savemat(root / "info" / "query_IDX.mat", "query_IDX", np.asarray(query_rows, np.float64)[None, :])
    t_tables = time.perf_counter() - w0
    lengths = np.asarray([t.n_frames for t in train + test])
    return {
        "tracklets": len(train) + len(test), "frames": n_links, "pool_images": pool.rendered,
        "train_tracklets": len(train), "test_tracklets": len(test), "queries": len(query_rows),
        "length_min": int(lengths.min()), "length_max": int(lengths.max()),
        "length_mean": round(float(lengths.mean()), 2), "length_median": float(np.median(lengths)),
        "length_p99": float(np.percentile(lengths, 99)),
        "seconds": {"plan": round(t_plan, 2), "render": round(t_render, 2), "link": round(t_link, 2),
                    "tables": round(t_tables, 2)},
    }


def generate_rehearsal(out: str | Path = DEFAULT_REHEARSAL_ROOT, *, counts: RehearsalCounts = MARS_COUNTS,
                       seed: int = 0, height: int = 128, width: int = 64, pool_frames: int = 4,
                       distractor_people: int = 300, jpeg_quality: int = 90, verbose: bool = False) -> dict:
    """Write a rehearsal world with ``counts`` into ``out`` (MARS layout); return its ``info/rehearsal.json``.

    ``height`` x ``width``: pool image size in pixels (MARS: 256 x 128). ``pool_frames``: distinct images
    per (person, camera); ``distractor_people``: distinct people the pid-0 tracklets show. The returned
    dict holds ``stats`` (counts, length statistics, pool size) and ``seconds`` (total generation wall
    time and its parts). Atomic: built in a temporary sibling folder and renamed over ``out``; an existing
    ``out`` is replaced only when it is a rehearsal world (has ``info/rehearsal.json``) or empty.
    """
    counts.validate()
    if height < 16 or width < 8 or pool_frames < 1:
        raise ValueError(f"need height >= 16, width >= 8, pool_frames >= 1; got {height}, {width}, {pool_frames}")
    out = Path(out)
    if out.exists() and not (out / "info" / "rehearsal.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not a rehearsal world (no info/rehearsal.json); refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        stats = _write(tmp, counts, seed, height, width, pool_frames, distractor_people, jpeg_quality, verbose)
        seconds = {"total": 0.0, **stats.pop("seconds")}
        meta = {"format": REHEARSAL_FORMAT, "counts": asdict(counts),
                "knobs": {"seed": seed, "height": height, "width": width, "pool_frames": pool_frames,
                          "distractor_people": distractor_people, "jpeg_quality": jpeg_quality},
                "stats": stats, "seconds": seconds}
        seconds["total"] = round(time.perf_counter() - t0, 2)
        (tmp / "info" / "rehearsal.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        S._replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if verbose:
        print(f"rehearsal world written to {out} in {seconds['total']:.1f} s: {stats['tracklets']:,} tracklets, "
              f"{stats['frames']:,} frame names linked to {stats['pool_images']:,} pool images "
              f"(render {seconds['render']:.1f} s, link {seconds['link']:.1f} s)")
    return meta


def rehearsal_meta(root: str | Path) -> dict | None:
    """``root/info/rehearsal.json`` as a dict, or None when ``root`` is not a rehearsal world."""
    try:
        meta = json.loads((Path(root) / "info" / "rehearsal.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return meta if meta.get("format") == REHEARSAL_FORMAT else None


def main(argv: list[str] | None = None) -> int:
    """``python -m reidlab.data.rehearsal [--out DIR] [--scale F] [--height H --width W] [--seed S]``."""
    p = argparse.ArgumentParser(description="Write a MARS-count rehearsal world (MARS layout, hard-linked pool).")
    p.add_argument("--out", default=DEFAULT_REHEARSAL_ROOT)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of MARS's counts (1 = MARS)")
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--pool-frames", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    counts = MARS_COUNTS if a.scale == 1.0 else MARS_COUNTS.scaled(a.scale)
    generate_rehearsal(a.out, counts=counts, seed=a.seed, height=a.height, width=a.width,
                       pool_frames=a.pool_frames, verbose=True)
    return 0


__all__ = ["RehearsalCounts", "MARS_COUNTS", "DEFAULT_REHEARSAL_ROOT", "generate_rehearsal", "rehearsal_meta",
           "tracklet_lengths", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
