"""Tiny stand-ins for the data and model packages, so engine mechanics are tested in isolation.

They implement the CONTRACTS the engine relies on (P x K sampler with set_epoch(epoch, draw) and rank shares,
VideoTrainDataset items (T, C, H, W), dense VideoTestDataset chunks with chunk_owner, a ReIDModel with
dict outputs in training and (B, D) in eval, describe(), new_parameters()) with in-memory tensors.
``install(monkeypatch)`` routes the engine's builders to them; ``install_global()`` does the same in a
child process (kill/resume and torchrun tests).
"""

from __future__ import annotations

import math
from pathlib import Path
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from reidlab.config import RunConfig
from reidlab.engine import trainer as T


# ---------------------------------------------------------------------- data
@dataclass(frozen=True)
class Rec:
    paths: tuple
    pid: int
    camid: int
    key: int  # index into the frame store


class World:
    """Identity = a colour per body half; frames = that pattern + per-frame noise + camera tint."""

    def __init__(self, n_train=6, n_test=5, cams=2, frames=8, h=16, w=8, seed=0, long_tracklet=0):
        g = torch.Generator().manual_seed(seed)
        self.store: list[torch.Tensor] = []
        self.h, self.w = h, w

        def tracklet(pid_colour, cam, n):
            top, bottom = pid_colour
            base = torch.zeros(3, h, w)
            base[:, : h // 2] = top[:, None, None]
            base[:, h // 2 :] = bottom[:, None, None]
            tint = torch.tensor([0.1 * cam, 0.0, -0.1 * cam])[:, None, None]
            fr = base[None] + tint[None] + 0.3 * torch.randn(n, 3, h, w, generator=g)
            self.store.append(fr)
            key = len(self.store) - 1
            return Rec(tuple(f"t{key}_f{i}.jpg" for i in range(n)), -1, cam, key)

        def colours(n):
            return [(torch.rand(3, generator=g) * 2 - 1, torch.rand(3, generator=g) * 2 - 1) for _ in range(n)]

        self.train, self.query, self.gallery = [], [], []
        for pid, col in enumerate(colours(n_train)):
            for cam in range(cams):
                for _ in range(2):
                    r = tracklet(col, cam, frames)
                    self.train.append(Rec(r.paths, pid, cam, r.key))
        for j, col in enumerate(colours(n_test)):
            pid = 100 + j
            q = tracklet(col, 0, long_tracklet if (long_tracklet and j == 0) else frames)
            self.query.append(Rec(q.paths, pid, 0, q.key))
            for cam in range(1, cams):
                gr = tracklet(col, cam, frames + j)  # varying lengths: last dense chunk padded
                self.gallery.append(Rec(gr.paths, pid, cam, gr.key))

    def dataset(self):
        from reidlab.data.records import ReIDDataset

        return ReIDDataset("standin", "video", self.train, self.query, self.gallery,
                           num_train_pids=len({r.pid for r in self.train}), num_train_cams=2,
                           protocol={"dataset": "standin"})  # fmt: skip


class PK(Sampler):
    def __init__(self, pids, p, k, *, seed=0, num_replicas=1, rank=0):
        self.pids, self.p, self.k, self.seed = list(pids), p, k, seed
        self.num_replicas, self.rank, self.epoch, self.draw = num_replicas, rank, 0, 0
        self.by_pid: dict[int, list[int]] = {}
        for i, pid in enumerate(self.pids):
            self.by_pid.setdefault(pid, []).append(i)

    def set_epoch(self, epoch, draw=0):
        self.epoch, self.draw = epoch, draw

    def _batches(self):
        rng = np.random.default_rng([self.seed, self.epoch] + ([self.draw] if self.draw else []))
        ids = sorted(self.by_pid)
        rng.shuffle(ids)
        batches = []
        for b in range(len(ids) // self.p):
            batch = []
            for pid in ids[b * self.p : (b + 1) * self.p]:
                batch += list(rng.choice(self.by_pid[pid], self.k, replace=len(self.by_pid[pid]) < self.k))
            batches.append(batch)
        n = len(batches) // self.num_replicas * self.num_replicas
        return batches[self.rank : n : self.num_replicas]

    def __iter__(self):
        for b in self._batches():
            yield from (int(i) for i in b)

    def __len__(self):
        return sum(len(b) for b in self._batches())


class TrainSet(Dataset):
    def __init__(self, world, recs, seq_len, seed=0):
        self.world, self.recs, self.seq_len, self.seed, self.epoch, self.draw = world, recs, seq_len, seed, 0, 0

    def set_epoch(self, epoch, draw=0):
        self.epoch, self.draw = epoch, draw

    def __len__(self):
        return len(self.recs)

    def __getitem__(self, i):
        r = self.recs[i]
        frames = self.world.store[r.key]
        rng = np.random.default_rng([self.seed, self.epoch, i] + ([self.draw] if self.draw else []))
        idx = np.sort(rng.choice(len(frames), self.seq_len, replace=len(frames) < self.seq_len))
        x = frames[torch.as_tensor(idx)]
        if torch.rand(()) < 0.5:  # augmentation from the global torch RNG, like torchvision transforms
            x = torch.flip(x, dims=[-1])
        return x, r.pid, r.camid


class DenseSet(Dataset):
    def __init__(self, world, recs, seq_len):
        self.world, self.tracklets, self.seq_len = world, recs, seq_len
        self.chunks = []
        for ti, r in enumerate(recs):
            n = len(r.paths)
            for s in range(0, n, seq_len):
                idx = [min(j, n - 1) for j in range(s, s + seq_len)]
                self.chunks.append((ti, idx))
        self.chunk_owner = [c[0] for c in self.chunks]

    def __len__(self):
        return len(self.chunks)

    def __getitem__(self, i):
        ti, idx = self.chunks[i]
        return self.world.store[self.tracklets[ti].key][torch.as_tensor(idx)], ti


def make_bundle(cfg: RunConfig, dist=None, verbose=False, world=None) -> T.DataBundle:
    dist = dist or T.DistInfo()
    world = world or World(**cfg.data.synthetic)
    ds = world.dataset()
    train_set = TrainSet(world, ds.train, cfg.data.seq_len, cfg.seed)
    sampler = PK([r.pid for r in ds.train], cfg.data.p, cfg.data.k, seed=cfg.seed,
                 num_replicas=dist.world_size, rank=dist.rank)  # fmt: skip
    loader = DataLoader(train_set, batch_size=cfg.data.p * cfg.data.k, sampler=sampler, drop_last=True)
    ql = DataLoader(DenseSet(world, ds.query, cfg.data.seq_len), batch_size=cfg.eval.batch_size)
    gl = DataLoader(DenseSet(world, ds.gallery, cfg.data.seq_len), batch_size=cfg.eval.batch_size)
    return T.DataBundle(ds, train_set, sampler, loader, ql, gl)


# ---------------------------------------------------------------------- model
class TinyVideoNet(nn.Module):
    """Conv trunk -> per-frame vector -> temporal mean -> BNNeck -> classifier (ReIDModel contract)."""

    def __init__(self, num_classes: int, dim: int = 16):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                   nn.Conv2d(8, dim, 3, padding=1), nn.ReLU())  # fmt: skip
        self.neck = nn.BatchNorm1d(dim)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        self.embedding_dim = dim
        self.max_frames_seen = 0

    def forward(self, x):
        if x.dim() == 5:
            B, Tn = x.shape[:2]
            x = x.reshape(B * Tn, *x.shape[2:])
        else:
            B, Tn = x.shape[0], 1
        self.max_frames_seen = max(self.max_frames_seen, x.shape[0])
        fmap = self.trunk(x)
        f = fmap.mean(dim=(2, 3)).reshape(B, Tn, -1).mean(1)
        b = self.neck(f)
        if self.training:
            return {"logits": self.classifier(b), "features": f, "of_taps": [fmap]}
        return b

    def describe(self):
        return {"class": type(self).__name__, "task": "video", "backbone": "tiny", "fusion": {"name": "mean"},
                "abd": None, "num_parameters": sum(p.numel() for p in self.parameters()),
                "embedding_dim": self.embedding_dim}  # fmt: skip

    def new_parameters(self):
        return list(self.neck.parameters()) + list(self.classifier.parameters())


def make_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    return TinyVideoNet(num_classes)


def tiny_cfg(tmp_path, **over) -> RunConfig:
    base = {
        "run_id": "t", "results_dir": str(Path(tmp_path) / "runs"), "seed": 1,
        "data.p": 3, "data.k": 2, "data.seq_len": 4, "data.synthetic": {"n_train": 6, "n_test": 5},
        "train.epochs": 3, "train.eval_every": 1, "eval.max_rank": 5, "optim.lr": 3e-3, "optim.warmup_epochs": 0.5,
    }  # fmt: skip
    base.update(over)
    return RunConfig().override(base)


def install(monkeypatch) -> None:
    monkeypatch.setattr(T, "build_data", make_bundle)
    monkeypatch.setattr(T, "build_run_model", make_model)


def install_global() -> None:
    T.build_data = make_bundle
    T.build_run_model = make_model


# ---------------------------------------------------------------------- sanity of the stand-ins
def test_standin_sampler_is_pk_and_deterministic():
    pids = [0, 0, 1, 1, 2, 2, 3, 3]
    s = PK(pids, 2, 2, seed=3)
    s.set_epoch(1)
    a = list(s)
    assert len(a) == len(s) == 8 and a == list(s)
    for b in range(0, 8, 4):
        got = [pids[i] for i in a[b : b + 4]]
        assert got[0] == got[1] and got[2] == got[3] and got[0] != got[2]
    r0, r1 = PK(pids, 2, 2, seed=3, num_replicas=2, rank=0), PK(pids, 2, 2, seed=3, num_replicas=2, rank=1)
    r0.set_epoch(1), r1.set_epoch(1)
    assert sorted(list(r0) + list(r1)) == sorted(a)


def test_standin_test_chunks_cover_every_frame():
    w = World(n_train=2, n_test=2, frames=5)
    ts = DenseSet(w, w.gallery, 4)
    assert len(ts) == sum(math.ceil(len(r.paths) / 4) for r in w.gallery)
