"""Data loading throughput on the synthetic world: frames/s for train and test loading.

    python benchmarks/bench_data.py [--quick] [--root DIR] [--repeats N]

Configurations: DataLoader workers 0 vs 2, FrameCache off vs on. Train = one epoch of P x K clips
(VideoTrainDataset, restricted_random, train transforms); test = all query + gallery frames in dense
chunks (VideoTestDataset, test transforms). Each figure is the median over ``--repeats`` epochs after
one warm-up epoch (which starts persistent workers and fills the caches; reported separately as
"cold"). Ratios are against workers=0 / cache off, measured in the same process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from reidlab.data import (  # noqa: E402
    FrameCache,
    PKSampler,
    VideoTestDataset,
    VideoTrainDataset,
    build_dataset,
    build_test_loader,
    build_train_loader,
    build_transforms,
)
from reidlab.data.synthetic import default_synthetic_root, ensure_world  # noqa: E402


def _epoch_frames_per_s(loader, frames_per_item: int, epoch: int, train: bool) -> float:
    if train:
        loader.dataset.set_epoch(epoch)
        loader.sampler.set_epoch(epoch)
    t0 = time.perf_counter()
    n = 0
    for batch in loader:
        n += batch[0].shape[0] * frames_per_item
    return n / (time.perf_counter() - t0)


def measure(make_loader, frames_per_item: int, repeats: int, train: bool) -> tuple[float, float]:
    """(cold frames/s of the first epoch, median frames/s of the next ``repeats`` epochs)."""
    loader = make_loader()
    cold = _epoch_frames_per_s(loader, frames_per_item, 0, train)
    warm = [_epoch_frames_per_s(loader, frames_per_item, e, train) for e in range(1, repeats + 1)]
    del loader  # stops persistent workers
    return cold, statistics.median(warm)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--root", default=None, help="synthetic world folder (default: the default world, generated "
                                                "if missing)")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--seq-len", type=int, default=4)
    a = p.parse_args(argv)
    repeats = a.repeats or (2 if a.quick else 5)
    root = ensure_world(a.root or default_synthetic_root(), verbose=True)
    ds = build_dataset("synthetic", root, verbose=False)
    h, w = 64, 32
    train_tf = build_transforms(h, w, train=True)
    test_tf = build_transforms(h, w, train=False)
    test_records = ds.query + ds.gallery
    print(f"world {root}: {len(ds.train)} train tracklets, {len(test_records)} test tracklets "
          f"({sum(len(t.paths) for t in test_records)} frames); seq_len {a.seq_len}, P x K = 8 x 4; "
          f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    print(f"median of {repeats} epochs after a warm-up epoch; frames/s (higher is better)\n")
    print(f"{'loader':<6} {'workers':>7} {'cache':>6} {'cold fr/s':>10} {'warm fr/s':>10} {'x baseline':>10}")
    results = {}
    for kind in ("train", "test"):
        base = None
        for workers in (0, 2):
            for cache_on in (False, True):
                def make(workers=workers, cache_on=cache_on, kind=kind):
                    cache = FrameCache(100_000) if cache_on else None
                    if kind == "train":
                        vt = VideoTrainDataset(ds.train, a.seq_len, "restricted_random", train_tf, seed=0, cache=cache)
                        sampler = PKSampler(vt.pids, 8, 4, seed=0)
                        return build_train_loader(vt, sampler, sampler.batch_size, workers, seed=0)
                    te = VideoTestDataset(test_records, a.seq_len, test_tf, cache=cache)
                    return build_test_loader(te, 64, workers)

                cold, warm = measure(make, a.seq_len, repeats, train=kind == "train")
                base = warm if base is None else base
                results[(kind, workers, cache_on)] = warm
                print(f"{kind:<6} {workers:>7} {'on' if cache_on else 'off':>6} {cold:>10.0f} {warm:>10.0f} "
                      f"{warm / base:>10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
