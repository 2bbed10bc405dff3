"""Frame sampling, P x K sampler, transforms, datasets/loaders and the frame cache."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from reidlab.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    FrameCache,
    ImageDataset,
    PKSampler,
    Sample,
    Tracklet,
    VideoTestDataset,
    VideoTrainDataset,
    build_dataset,
    build_test_loader,
    build_train_loader,
    build_transforms,
    dense_chunks,
    read_image,
    sample_frames,
)
from reidlab.data import synthetic as S

# ------------------------------------------------------------------------------------------------
# frame sampling
# ------------------------------------------------------------------------------------------------


def test_sample_frames_evenly_hand_values():
    rng = np.random.default_rng(0)
    # centres of 4 equal segments of 10 frames: 1.25, 3.75, 6.25, 8.75 -> floor
    assert sample_frames(10, 4, "evenly", rng) == [1, 3, 6, 8]
    assert sample_frames(2, 4, "evenly", rng) == [0, 0, 1, 1]
    assert sample_frames(1, 3, "evenly", rng) == [0, 0, 0]
    assert sample_frames(4, 4, "evenly", rng) == [0, 1, 2, 3]


def test_sample_frames_random():
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = sample_frames(9, 4, "random", rng)
        assert idx == sorted(idx) and len(set(idx)) == 4 and 0 <= min(idx) and max(idx) < 9
    idx = sample_frames(3, 5, "random", rng)
    assert idx == sorted(idx) and set(idx) == {0, 1, 2} and len(idx) == 5
    seen = Counter(i for _ in range(2000) for i in sample_frames(6, 2, "random", rng))
    assert set(seen) == set(range(6)) and max(seen.values()) / min(seen.values()) < 1.3


def test_sample_frames_restricted_random_one_per_segment():
    rng = np.random.default_rng(0)
    segments = [range(0, 2), range(2, 5), range(5, 7), range(7, 10)]  # floor(i * 10 / 4) boundaries
    hits = [set() for _ in segments]
    for _ in range(300):
        idx = sample_frames(10, 4, "restricted_random", rng)
        for i, (v, seg) in enumerate(zip(idx, segments)):
            assert v in seg
            hits[i].add(v)
    assert [sorted(h) for h in hits] == [list(s) for s in segments]
    assert sample_frames(1, 4, "restricted_random", rng) == [0, 0, 0, 0]
    idx = sample_frames(3, 6, "restricted_random", rng)
    assert idx == sorted(idx) and set(idx) == {0, 1, 2}


def test_sample_frames_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="num_frames"):
        sample_frames(0, 4, "evenly", rng)
    with pytest.raises(ValueError, match="seq_len"):
        sample_frames(3, 0, "evenly", rng)
    with pytest.raises(ValueError, match="unknown mode 'dense'"):
        sample_frames(3, 2, "dense", rng)


def test_dense_chunks_cover_all_frames():
    assert dense_chunks(10, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 8, 9]]
    assert dense_chunks(1, 3) == [[0, 0, 0]]
    assert dense_chunks(8, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert dense_chunks(5, 4) == [[0, 1, 2, 3], [4, 4, 4, 4]]
    for n in range(1, 40):
        for L in (1, 2, 3, 4, 8):
            ch = dense_chunks(n, L)
            assert all(len(c) == L for c in ch)
            assert len(ch) == -(-n // L)
            assert sorted({i for c in ch for i in c}) == list(range(n))
    with pytest.raises(ValueError):
        dense_chunks(0, 4)


# ------------------------------------------------------------------------------------------------
# PK sampler
# ------------------------------------------------------------------------------------------------

PIDS = [pid for pid in range(12) for _ in range(4 + pid % 3)]  # 12 identities, 4..6 instances each


def _batches(s: PKSampler) -> list[list[int]]:
    flat = list(iter(s))
    assert len(flat) == len(s) and len(flat) % s.batch_size == 0
    return [flat[i:i + s.batch_size] for i in range(0, len(flat), s.batch_size)]


def test_pk_sampler_composition():
    s = PKSampler(PIDS, p=3, k=4, seed=1)
    assert s.batch_size == 12
    batches = _batches(s)
    assert len(batches) >= 3
    for b in batches:
        counts = Counter(PIDS[i] for i in b)
        assert len(counts) == 3 and set(counts.values()) == {4}
    # every identity has >= k instances, so no index repeats within an epoch
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat))


def test_pk_sampler_deterministic_and_epoch_dependent():
    a, b = PKSampler(PIDS, 3, 2, seed=5), PKSampler(PIDS, 3, 2, seed=5)
    assert list(a) == list(b)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b)
    c = PKSampler(PIDS, 3, 2, seed=5)
    assert list(c) != list(a)
    assert list(PKSampler(PIDS, 3, 2, seed=6)) != list(c)


def test_pk_sampler_ranks_disjoint_and_equal():
    shares = [PKSampler(PIDS, 2, 2, seed=0, num_replicas=3, rank=r) for r in range(3)]
    for s in shares:
        s.set_epoch(4)
    sets = [set(s) for s in shares]
    assert len({len(s) for s in shares}) == 1
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    single = PKSampler(PIDS, 2, 2, seed=0)
    single.set_epoch(4)
    # the ranks together use the single-process batches (minus < num_replicas dropped at the end)
    assert set().union(*sets) <= set(single)
    assert len(single) - sum(len(s) for s in shares) < 3 * single.batch_size


def test_pk_sampler_further_draws():
    a = PKSampler(PIDS, 3, 2, seed=5)
    a.set_epoch(2)
    ordinary = _batches(a)
    a.set_epoch(2, draw=0)
    assert _batches(a) == ordinary  # draw 0 is the plain epoch
    a.set_epoch(2, draw=1)
    first = _batches(a)
    assert a.draw == 1 and first != ordinary
    for b in first:  # a further draw is still P x K
        assert sorted(Counter(PIDS[i] for i in b).values()) == [2, 2, 2]
    b = PKSampler(PIDS, 3, 2, seed=5)
    b.set_epoch(2, draw=1)
    assert _batches(b) == first  # deterministic in (seed, epoch, draw)
    b.set_epoch(2, draw=2)
    assert _batches(b) not in (first, ordinary)
    with pytest.raises(ValueError, match="draw"):
        b.set_epoch(2, draw=-1)


def test_pk_sampler_few_instances_and_errors():
    s = PKSampler([0, 1, 1, 2, 2, 2], p=3, k=4, seed=0)
    (b,) = _batches(s)
    assert Counter([0, 1, 1, 2, 2, 2][i] for i in b) == {0: 4, 1: 4, 2: 4}
    with pytest.raises(ValueError, match="only 2"):
        PKSampler([0, 1], p=3, k=2)
    with pytest.raises(ValueError, match="rank"):
        PKSampler(PIDS, 2, 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="no batch"):
        PKSampler([0, 1, 2], p=2, k=1, num_replicas=2)


# ------------------------------------------------------------------------------------------------
# transforms
# ------------------------------------------------------------------------------------------------


def test_test_transform_values():
    x = torch.full((3, 10, 6), 51, dtype=torch.uint8)
    y = build_transforms(8, 4, train=False)(x)
    assert y.shape == (3, 8, 4) and y.dtype == torch.float32
    want = [(0.2 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    assert torch.allclose(y.mean(dim=(1, 2)), torch.tensor(want), atol=1e-5)


def test_train_transform_consistent_across_clip():
    torch.manual_seed(0)
    frame = torch.randint(0, 255, (3, 16, 8), dtype=torch.uint8)
    clip = frame.expand(5, 3, 16, 8).clone()
    tf = build_transforms(16, 8, train=True, erase_p=1.0)
    for _ in range(5):
        out = tf(clip)
        assert out.shape == (5, 3, 16, 8) and torch.isfinite(out).all()
        assert all(torch.equal(out[0], out[t]) for t in range(1, 5))  # same flip/crop/erase for all frames


# ------------------------------------------------------------------------------------------------
# datasets and loaders on a tiny synthetic world
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = S.generate_world(tmp_path_factory.mktemp("p") / "synthetic", ids=10, cams=3, frames=(3, 9),
                            distractors=1, junk=0, height=32, width=16, seed=7)
    return build_dataset("synthetic", root, verbose=False)


def test_video_train_dataset_deterministic(tiny):
    tf = build_transforms(32, 16, train=True)
    a = VideoTrainDataset(tiny.train, 4, "restricted_random", tf, seed=3)
    b = VideoTrainDataset(tiny.train, 4, "restricted_random", tf, seed=3, cache=FrameCache(1000))
    x, pid, cam = a[2]
    assert x.shape == (4, 3, 32, 16) and (pid, cam) == (tiny.train[2].pid, tiny.train[2].camid)
    torch.manual_seed(123)  # the global stream must not matter ...
    assert torch.equal(b[2][0], x)
    state = torch.get_rng_state()
    a[3]
    assert torch.equal(torch.get_rng_state(), state)  # ... and must not be disturbed
    a.set_epoch(1)
    assert a.epoch == 1 and not torch.equal(a[2][0], x)
    assert a.frame_indices(2, epoch=0) == b.frame_indices(2)
    # a further draw of an epoch: other frames/augmentation, draw 0 is the plain epoch
    a.set_epoch(0, draw=1)
    assert a.draw == 1 and not torch.equal(a[2][0], x)
    assert a.frame_indices(2, epoch=0, draw=0) == b.frame_indices(2)
    b.set_epoch(0, draw=1)
    assert torch.equal(a[2][0], b[2][0])
    a.set_epoch(0)
    assert a.draw == 0 and torch.equal(a[2][0], x)


def _collect(loader, passes):
    """Batches of each (epoch, draw) pass, in order."""
    out = []
    for e, d in passes:
        loader.dataset.set_epoch(e, draw=d)
        loader.sampler.set_epoch(e, draw=d)
        out.append([(x.clone(), y.clone()) for x, y, _ in loader])
    return out


def test_loader_workers_do_not_change_results(tiny):
    tf = build_transforms(32, 16, train=True)
    runs = []
    for workers in (0, 2):
        ds = VideoTrainDataset(tiny.train, 3, "random", tf, seed=1, cache=FrameCache(500))
        sampler = PKSampler(ds.pids, 2, 2, seed=1)
        loader = build_train_loader(ds, sampler, 4, workers, seed=1)
        # epoch 1 and its further draw reach the persistent workers via set_epoch
        runs.append(_collect(loader, [(0, 0), (1, 0), (1, 1)]))
    (a0, a1, a11), (b0, b1, b11) = runs
    assert len(a0) == len(b0) > 0 and len(a11) == len(b11) > 0
    for (xa, ya), (xb, yb) in zip(a0 + a1 + a11, b0 + b1 + b11):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)
    assert not torch.equal(a0[0][0], a1[0][0]) and not torch.equal(a1[0][0], a11[0][0])
    with pytest.raises(ValueError, match="batch_size"):
        build_train_loader(ds, sampler, 5, 0, seed=1)


def test_video_test_dataset_chunks(tiny):
    tf = build_transforms(32, 16, train=False)
    ds = VideoTestDataset(tiny.gallery, 4, tf)
    assert len(ds) == sum(-(-len(t.paths) // 4) for t in tiny.gallery)
    assert ds.chunk_owner == sorted(ds.chunk_owner)
    assert Counter(ds.chunk_owner) == {i: -(-len(t.paths) // 4) for i, t in enumerate(tiny.gallery)}
    x, owner = ds[len(ds) - 1]
    assert x.shape == (4, 3, 32, 16) and owner == len(tiny.gallery) - 1
    # the last chunk of tracklet 0 cycles its own frames
    t0 = tiny.gallery[0]
    n_chunks = -(-len(t0.paths) // 4)
    last = ds.chunks[n_chunks - 1]
    assert last == dense_chunks(len(t0.paths), 4)[-1]
    ref = tf(torch.from_numpy(np.stack([read_image(t0.paths[i]) for i in last])).permute(0, 3, 1, 2))
    assert torch.equal(ds[n_chunks - 1][0], ref)
    loader = build_test_loader(ds, 5, 0)
    owners = torch.cat([o for _, o in loader]).tolist()
    assert owners == ds.chunk_owner
    ev = VideoTestDataset(tiny.gallery, 4, tf, sampling="evenly")
    assert len(ev) == len(tiny.gallery)


def test_image_dataset(tiny):
    samples = [Sample(t.paths[0], t.pid, t.camid) for t in tiny.train[:6]]
    ds = ImageDataset(samples, build_transforms(32, 16, train=True), seed=2)
    x, pid, cam = ds[1]
    assert x.shape == (3, 32, 16) and (pid, cam) == (samples[1].pid, samples[1].camid)
    assert torch.equal(ds[1][0], x)
    plain = ImageDataset(samples, None)
    assert plain[0][0].shape == (3, 32, 16) and float(plain[0][0].max()) <= 1.0


# ------------------------------------------------------------------------------------------------
# frame cache and decoding errors
# ------------------------------------------------------------------------------------------------


def test_frame_cache_lru():
    loads = []

    def loader(p):
        loads.append(p)
        return np.full((2, 2, 3), len(loads), np.uint8)

    c = FrameCache(2)
    a = c.get("a", loader)
    c.get("b", loader)
    assert c.get("a", loader) is a and c.hits == 1  # "a" is now most recent
    c.get("c", loader)  # evicts "b"
    assert "b" not in c and "a" in c and len(c) == 2
    c.get("b", loader)
    assert loads == ["a", "b", "c", "b"] and c.misses == 4
    with pytest.raises(ValueError):
        a[0, 0, 0] = 1  # cached frames are read-only
    with pytest.raises(ValueError, match="max_items"):
        FrameCache(0)


def test_corrupt_and_missing_image_named(tmp_path):
    bad = tmp_path / "0001C1T0001F001.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match=str(bad)):
        read_image(str(bad))
    good = tmp_path / "ok.jpg"
    Image.fromarray(np.zeros((64, 32, 3), np.uint8)).save(good)
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="trunc.jpg"):
        read_image(str(truncated))
    ds = VideoTrainDataset([Tracklet((str(good), str(bad)), 0, 0)], 2, "evenly", None)
    with pytest.raises(ValueError, match="0001C1T0001F001.jpg"):
        ds[0]
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        read_image(str(tmp_path / "gone.jpg"))


def test_mixed_frame_sizes_are_resized(tmp_path):
    paths = []
    for i, size in enumerate([(16, 8), (20, 12)]):
        p = tmp_path / f"{i}.png"
        Image.fromarray(np.full((*size, 3), 100, np.uint8)).save(p)
        paths.append(str(p))
    ds = VideoTestDataset([Tracklet(tuple(paths), 1, 0)], 2, build_transforms(16, 8, train=False))
    assert ds[0][0].shape == (2, 3, 16, 8)


def test_train_dataset_copies_keep_epoch(tiny):
    import copy
    import pickle

    ds = VideoTrainDataset(tiny.train, 2, "evenly", None, seed=0)
    ds.set_epoch(3)
    c = copy.deepcopy(ds)
    p = pickle.loads(pickle.dumps(ds))
    assert c.epoch == 3 and p.epoch == 3
    c.set_epoch(5)
    assert ds.epoch == 3  # a copy outside a worker start is independent
