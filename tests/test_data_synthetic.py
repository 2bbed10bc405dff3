"""The synthetic world: determinism, MARS-layout round trip, corruption ground truth, knobs, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidlab.data import CORRUPTION_KINDS, build_dataset, read_image
from reidlab.data import synthetic as S

TINY = dict(ids=6, cams=3, frames=(4, 6), distractors=1, junk=1, height=32, width=16)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return S.generate_world(tmp_path_factory.mktemp("w") / "synthetic", seed=3, corruption_rate=0.3, **{
        k: v for k, v in TINY.items()})


def test_same_seed_same_bytes_other_seed_differs(tmp_path, world):
    again = S.generate_world(tmp_path / "again", seed=3, corruption_rate=0.3, **TINY)
    a, b = _tree_bytes(world), _tree_bytes(again)
    assert a.keys() == b.keys() and len(a) > 50
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]][:5]
    other = _tree_bytes(S.generate_world(tmp_path / "other", seed=4, corruption_rate=0.3, **TINY))
    common_images = [k for k in a.keys() & other.keys() if k.endswith(".jpg")]
    assert sum(a[k] != other[k] for k in common_images) > 0.9 * len(common_images)


def test_mars_layout_round_trip_with_ground_truth(world):
    ds = build_dataset("synthetic", world, verbose=False)
    ds_mars = build_dataset("mars", world, verbose=False)
    assert [t.corruption for t in ds.train] == [t.corruption for t in ds_mars.train]
    assert ds.protocol["dataset"] == "synthetic" and ds.protocol["world"]["seed"] == 3
    # 6 ids, train_fraction 0.6 -> pids 1..4 train (relabelled 0..3), 5..6 test
    assert ds.num_train_pids == 4 and sorted({t.pid for t in ds.train}) == [0, 1, 2, 3]
    assert sorted(t.pid for t in ds.query) == [5, 6]
    # remaining gallery: the queries are not in it, every query has a cross-camera match, 1 distractor
    assert not set(ds.query) & set(ds.gallery)
    for q in ds.query:
        assert any(g.pid == q.pid and g.camid != q.camid for g in ds.gallery)
    assert sum(g.pid == 0 for g in ds.gallery) == 1
    assert ds.protocol["junk_dropped"] == 1
    # the sidecar, read independently, matches the records frame by frame
    side = json.loads((world / "info" / "corruption.json").read_text())["frames"]
    for t in ds.train + ds.query + ds.gallery:
        assert len(t.corruption) == len(t.paths)
        for p, c in zip(t.paths, t.corruption):
            assert c == (side[Path(p).name]["kind"] if Path(p).name in side else None)
    n_labelled = sum(t.num_corrupted for t in ds.train + ds.query + ds.gallery)
    assert n_labelled == len(side) > 0  # junk tracklets are never corrupted
    assert {c for t in ds.train + ds.gallery + ds.query for c in t.corruption if c} <= set(CORRUPTION_KINDS)
    # images really are 32 x 16 RGB
    assert read_image(ds.train[0].paths[0]).shape == (32, 16, 3)


def test_frames_of_a_tracklet_differ(world):
    ds = build_dataset("synthetic", world, verbose=False)
    t = ds.train[0]
    frames = [read_image(p).astype(np.float32) for p in t.paths]
    diffs = [np.abs(frames[i] - frames[i + 1]).mean() for i in range(len(frames) - 1)]
    assert min(diffs) > 0.5  # walking cycle + jitter: never two identical frames


def test_blur_ground_truth_is_blurrier(tmp_path):
    root = S.generate_world(tmp_path / "w", seed=1, corruption_rate=0.4, corruption_kinds=["blur"],
                            **{**TINY, "ids": 4, "height": 48, "width": 24})
    ds = build_dataset("synthetic", root, verbose=False)

    def sharpness(p):
        g = read_image(p).astype(np.float32).mean(axis=2)
        return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())

    blur, clean = [], []
    for t in ds.train + ds.gallery + ds.query:
        for p, c in zip(t.paths, t.corruption):
            (blur if c == "blur" else clean).append(sharpness(p))
    assert blur and clean and np.mean(blur) < 0.6 * np.mean(clean)


def test_corruption_schedule_rate_and_bursts():
    rng = np.random.default_rng(0)
    for rate in (0.0, 0.1, 0.3, 0.7):
        bad = total = 0
        for _ in range(400):
            n = int(rng.integers(5, 30))
            s = S._schedule(n, rate, 3, list(CORRUPTION_KINDS), rng)
            assert len(s) == n
            bad += sum(c is not None for c in s)
            total += n
            if rate <= 0.3:  # sparse enough for separated runs: every run is one kind, <= burst long
                runs, cur = [], None
                for c in s + [None]:
                    if c is not None:
                        cur = (c, cur[1] + 1) if cur and cur[0] == c else (c, 1)
                    elif cur:
                        runs.append(cur)
                        cur = None
                assert all(length <= 3 for _, length in runs)
        assert abs(bad / total - rate) < 0.02
    assert S._schedule(7, 1.0, 2, ["blur"], rng) == ["blur"] * 7


def test_world_rate_knob(tmp_path):
    clean = S.generate_world(tmp_path / "clean", corruption_rate=0.0, **TINY)
    assert json.loads((clean / "info" / "corruption.json").read_text())["frames"] == {}
    ds = build_dataset("synthetic", clean, verbose=False)
    assert all(t.num_corrupted == 0 for t in ds.train)
    full = S.generate_world(tmp_path / "full", corruption_rate=1.0, corruption_kinds=["occluder", "misalign"], **TINY)
    ds = build_dataset("synthetic", full, verbose=False)
    assert all(c in ("occluder", "misalign") for t in ds.train + ds.gallery for c in t.corruption)


def test_corruption_rate_changes_only_the_corruption(tmp_path):
    """Same seed and knobs, other rate: same identities, other corruption draws."""
    tiny = {**TINY, "ids": 4, "cams": 2, "frames": (5, 6), "image_format": "png"}
    clean = S.generate_world(tmp_path / "clean", seed=5, corruption_rate=0.0, **tiny)
    bad = S.generate_world(tmp_path / "bad", seed=5, corruption_rate=0.5, **tiny)
    for name in ("train_name.txt", "test_name.txt", "tracks_train_info.mat", "tracks_test_info.mat",
                 "query_IDX.mat"):
        assert (clean / "info" / name).read_bytes() == (bad / "info" / name).read_bytes(), name
    a, b = _tree_bytes(clean), _tree_bytes(bad)
    images = sorted(k for k in a if k.endswith(".png"))
    assert images == sorted(k for k in b if k.endswith(".png"))
    corrupted = set(json.loads((bad / "info" / "corruption.json").read_text())["frames"])
    assert json.loads((clean / "info" / "corruption.json").read_text())["frames"] == {}
    clean_in_both = [k for k in images if Path(k).name not in corrupted]
    assert corrupted and clean_in_both
    assert [k for k in clean_in_both if a[k] != b[k]] == []
    assert all(a[k] != b[k] for k in images if Path(k).name in corrupted)
    # the identities (and so the records) agree too
    ds_a, ds_b = (build_dataset("synthetic", r, verbose=False) for r in (clean, bad))
    for split in ("train", "query", "gallery"):
        assert [(t.pid, t.camid, len(t.paths)) for t in getattr(ds_a, split)] == \
            [(t.pid, t.camid, len(t.paths)) for t in getattr(ds_b, split)]
    assert S.GENERATOR_VERSION == 2 and json.loads((bad / "info" / "world.json").read_text())["generator_version"] == 2


def test_ensure_world_reuses_and_regenerates(tmp_path, capsys):
    root = tmp_path / "synthetic"
    S.ensure_world(root, **TINY)
    stamp = (root / "info" / "world.json").stat().st_mtime_ns
    S.ensure_world(root, **TINY)
    assert (root / "info" / "world.json").stat().st_mtime_ns == stamp
    S.ensure_world(root, **{**TINY, "seed": 9})
    assert S.world_knobs(root)["seed"] == 9
    # no temporary folders are left next to the world
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]
    # build_dataset('synthetic') reads an existing world as it is, or makes one with the given knobs
    assert build_dataset("synthetic", tmp_path, verbose=False).protocol["world"]["seed"] == 9
    ds = build_dataset("synthetic", tmp_path / "fresh", verbose=False, **{**TINY, "ids": 5})
    assert ds.protocol["world"]["ids"] == 5


def test_generation_is_atomic(tmp_path, monkeypatch):
    def boom(root, k):
        (root / "info").mkdir(parents=True)
        (root / "info" / "half.txt").write_text("x")
        raise KeyboardInterrupt

    monkeypatch.setattr(S, "_write_world", boom)
    with pytest.raises(KeyboardInterrupt):
        S.generate_world(tmp_path / "synthetic", **TINY)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_foreign_folder(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("x")
    with pytest.raises(FileExistsError, match="not a synthetic world"):
        S.generate_world(tmp_path / "precious", **TINY)
    assert (tmp_path / "precious" / "thesis.tex").exists()


def test_knob_validation():
    with pytest.raises(ValueError, match="unknown synthetic world knob"):
        S.ensure_world("/nonexistent", colour=3)
    with pytest.raises(ValueError, match="cams must be in 1..9"):
        S.generate_world("/nonexistent", cams=12)
    with pytest.raises(ValueError, match="unknown corruption kind"):
        S.generate_world("/nonexistent", corruption_kinds=["smear"])
    with pytest.raises(ValueError, match="corruption_rate"):
        S.generate_world("/nonexistent", corruption_rate=1.5)


def test_cli_and_gallery(tmp_path, capsys):
    out = tmp_path / "cli"
    png = tmp_path / "g.png"
    assert S.main(["--out", str(out), "--ids", "5", "--cams", "3", "--seed", "2", "--frames", "4,5",
                   "--height", "32", "--width", "16", "--corruption-rate", "0.5", "--gallery", str(png)]) == 0
    knobs = S.world_knobs(out)
    assert knobs["ids"] == 5 and knobs["frames"] == [4, 5] and knobs["corruption_rate"] == 0.5
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    red = (img[..., 0] > 200) & (img[..., 1] < 40) & (img[..., 2] < 40)
    assert red.sum() > 50  # corrupted frames are outlined in red
    assert S.main(["--out", str(out), "--cams", "12"]) == 2
    assert "cams must be in 1..9" in capsys.readouterr().err


def test_default_root_env(monkeypatch, tmp_path):
    monkeypatch.delenv("REIDLAB_DATA", raising=False)
    assert S.default_synthetic_root() == Path("data/synthetic")
    monkeypatch.setenv("REIDLAB_DATA", str(tmp_path))
    assert S.default_synthetic_root() == tmp_path / "synthetic"
