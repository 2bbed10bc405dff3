"""The MARS-scale rehearsal generator at tiny counts: the MARS reader indexes it with the requested
counts, every frame name is a hard link into the bounded pool, lengths follow the requested bounds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from reidlab.data import build_dataset, read_image
from reidlab.data.datasets import mars as M
from reidlab.data.rehearsal import MARS_COUNTS, RehearsalCounts, generate_rehearsal, rehearsal_meta, tracklet_lengths

TINY = RehearsalCounts(train_ids=5, train_tracklets=14, train_frames=700, query_gallery_ids=4, query_only_ids=1,
                       gallery_only_ids=1, queries=9, gallery_tracklets=12, distractor_tracklets=3,
                       junk_tracklets=2, test_frames=1200, cams=4, min_len=2, max_len=300)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("rh") / "mars_rehearsal"
    meta = generate_rehearsal(root, counts=TINY, seed=1, height=32, width=16, pool_frames=3)
    return root, meta


def test_mars_reader_indexes_the_requested_counts(world):
    root, meta = world
    ds = build_dataset("mars", root, verbose=False)
    assert len(ds.train) == TINY.train_tracklets and ds.num_train_pids == TINY.train_ids
    assert sum(len(t.paths) for t in ds.train) == TINY.train_frames
    assert len(ds.query) == TINY.queries
    assert len({t.pid for t in ds.query}) == TINY.query_gallery_ids + TINY.query_only_ids
    assert len(ds.gallery) == TINY.gallery_tracklets + TINY.distractor_tracklets
    # distractors (pid 0) count as one gallery identity, as in check.py's MARS figures
    assert len({t.pid for t in ds.gallery}) == TINY.query_gallery_ids + TINY.gallery_only_ids + 1
    assert ds.protocol["junk_dropped"] == TINY.junk_tracklets
    test_frames = sum(len(t.paths) for t in ds.query + ds.gallery)
    junk_frames = TINY.test_frames - test_frames
    assert junk_frames >= 2 * TINY.junk_tracklets
    assert {t.camid for t in ds.train + ds.query + ds.gallery} <= set(range(TINY.cams))
    # each identity's queries lie in distinct cameras; queries are not in the remaining gallery
    by_pid: dict[int, list[int]] = {}
    for q in ds.query:
        by_pid.setdefault(q.pid, []).append(q.camid)
    assert all(len(c) == len(set(c)) for c in by_pid.values())
    assert not set(map(id, ds.query)) & set(map(id, ds.gallery))
    # the 'all' convention adds the queries to the gallery
    assert len(build_dataset("mars", root, verbose=False, mars_gallery="all").gallery) == len(ds.gallery) + len(ds.query)
    assert meta["stats"]["frames"] == TINY.total_frames
    assert meta["stats"]["tracklets"] == TINY.train_tracklets + TINY.test_tracklets
    assert rehearsal_meta(root)["stats"] == meta["stats"]


def test_names_follow_the_mars_scheme_and_tables(world):
    root, _ = world
    names = (root / "info" / "test_name.txt").read_text().split()
    assert len(names) == TINY.test_frames
    for n in names[:: max(1, len(names) // 50)]:
        M.parse_name(n, "test_name.txt")  # raises on a malformed name
    folders = sorted(p.name for p in (root / "bbox_test").iterdir())
    assert "0000" in folders and "00-1" in folders
    # tables: contiguous 1-based row ranges covering every name once
    info = M._track_info(root / "info" / "tracks_test_info.mat", "track_test_info")
    assert info.shape == (TINY.test_tracklets, 4)
    assert info[0, 0] == 1 and info[-1, 1] == len(names)
    assert np.all(info[1:, 0] == info[:-1, 1] + 1)
    lengths = info[:, 1] - info[:, 0] + 1
    assert lengths.min() >= TINY.min_len and lengths.max() == TINY.max_len
    q = M._read_mat(root / "info" / "query_IDX.mat", "query_IDX").ravel()
    assert len(q) == TINY.queries and q.min() >= 1 and q.max() <= TINY.test_tracklets


def test_frames_are_hard_links_into_a_bounded_pool(world):
    root, meta = world
    pool = sorted((root / "pool").iterdir())
    assert len(pool) == meta["stats"]["pool_images"] < TINY.total_frames / 3
    pool_inodes = {p.stat().st_ino: p for p in pool}
    ds = build_dataset("mars", root, verbose=False)
    frames = [p for t in ds.train + ds.query + ds.gallery for p in t.paths]
    inodes = {os.stat(p).st_ino for p in frames}
    assert inodes <= set(pool_inodes)  # every frame name is one of the pool files
    # link counts add up: every name of every split is a link to a pool file (+1 for the pool entry itself)
    assert sum(p.stat().st_nlink - 1 for p in pool) == TINY.total_frames
    first = Path(ds.train[0].paths[0])
    assert first.stat().st_size == pool_inodes[first.stat().st_ino].stat().st_size > 100
    img = read_image(str(first))
    assert img.shape == (32, 16, 3) and img.dtype == np.uint8
    # consecutive frames of a tracklet show different pool images (a walking cycle)
    t = max(ds.train, key=lambda t: len(t.paths))
    assert len({os.stat(p).st_ino for p in t.paths[:3]}) == 3


def test_same_seed_same_tables(world, tmp_path):
    root, _ = world
    again = tmp_path / "again"
    generate_rehearsal(again, counts=TINY, seed=1, height=32, width=16, pool_frames=3)
    for f in ("train_name.txt", "test_name.txt", "tracks_train_info.mat", "tracks_test_info.mat", "query_IDX.mat"):
        assert (root / "info" / f).read_bytes() == (again / "info" / f).read_bytes(), f
    with pytest.raises(FileExistsError):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "keep.txt").write_text("x")
        generate_rehearsal(tmp_path / "other", counts=TINY)


def test_lengths_and_counts():
    rng = np.random.default_rng(0)
    x = tracklet_lengths(8298, 509_914, 2, 920, rng)
    assert x.sum() == 509_914 and x.min() >= 2 and x.max() == 920 and len(x) == 8298
    assert np.median(x) < x.mean()  # heavy right tail
    c = MARS_COUNTS
    assert (c.identities, c.train_tracklets + c.test_tracklets, c.total_frames) == (1261, 20_478, 1_191_003)
    assert c.queries + c.gallery_tracklets + c.distractor_tracklets == 1980 + 9330
    assert c.test_tracklets == 12_180
    c.validate()
    small = c.scaled(0.01)
    small.validate()
    with pytest.raises(ValueError):
        RehearsalCounts(queries=10).validate()
