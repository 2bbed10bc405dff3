"""Learned fusion heads trained on a frozen, trained trunk's cached per-frame features.

Why: a learned fusion (temporal_attention, template_mask) trained end-to-end changes the trunk too, so its
difference from the mean mixes the rule with a different trunk and another training run's noise. A head
trained on the *frozen* mean-trained trunk (its cached train-split features) and evaluated on the same
cached test features isolates the rule: same trunk, same queries as every test-time operator.

Head = fusion module (as in the video model) + a new BNNeck, trained with label-smoothed CE + batch-hard
triplet on P x K batches of clips of ``seq_len`` frames drawn from the cached train features (one
random frame from each of ``seq_len`` equal segments, as ``restricted_random`` sampling does). The trunk
features are fixed (cached in eval mode, no augmentation), which is what "frozen trunk" means here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reidlab.losses.metric import CrossEntropyLabelSmooth, TripletLoss
from reidlab.models.backbones import BNNeck
from reidlab.models.fusion import build_fusion
from reidlab.study.frames import FrameFeatures
from reidlab.study.operators import chunk_plan, embed_chunks

__all__ = ["FusionHead", "train_head", "head_embeddings"]


class FusionHead(nn.Module):
    """fusion (B, T, D) or maps (B, T, C, h, w) -> fused (B, D) -> BNNeck.

    forward: training -> (logits (B, K), pre-BN fused (B, D), aux); eval -> (post-BN (B, D), aux).
    """

    def __init__(self, fusion: str, dim: int, num_classes: int, **options) -> None:
        super().__init__()
        self.fusion = build_fusion(fusion, dim, **options)
        self.neck = BNNeck(dim, num_classes)

    @classmethod
    def from_modules(cls, fusion: nn.Module, neck: nn.Module) -> "FusionHead":
        """A head around existing modules (e.g. an end-to-end video model's own fusion and BNNeck)."""
        head = cls.__new__(cls)
        nn.Module.__init__(head)
        head.fusion, head.neck = fusion, neck
        return head

    @property
    def input_kind(self) -> str:
        return self.fusion.input_kind

    def forward(self, x: torch.Tensor):
        fused, aux = self.fusion(x)
        if fused.dim() == 4:  # map fusion: pool the fused map as the video model does
            fused = F.adaptive_avg_pool2d(fused, 1).flatten(1)
        if self.training:
            logits, f = self.neck(fused)
            return logits, f, aux
        return self.neck(fused), aux


def _inputs(ff: FrameFeatures, kind: str) -> np.ndarray:
    if kind == "maps":
        if ff.maps is None:
            raise ValueError("this head fuses feature maps but the cached features hold none (extract with maps=True)")
        return ff.maps
    return ff.vectors


def _clip(rng: np.random.Generator, start: int, length: int, seq_len: int) -> np.ndarray:
    if length >= seq_len:
        bounds = np.linspace(0, length, seq_len + 1).astype(int)
        return start + np.array([rng.integers(bounds[i], bounds[i + 1]) for i in range(seq_len)])
    return start + np.resize(np.arange(length), seq_len)


def train_head(fusion: str, train: FrameFeatures, *, seq_len: int = 4, steps: int = 300, p: int = 8, k: int = 4,
               lr: float = 1e-3, weight_decay: float = 5e-4, margin: float = 0.3, seed: int = 0,
               options: dict | None = None) -> FusionHead:
    """Train a FusionHead for ``fusion`` on cached train features; returns it in eval mode.

    train: FrameFeatures of the train split (pids are relabelled to 0..N-1 here). steps: optimiser steps
    (Adam, cosine decay). Deterministic for a given seed on one machine.
    """
    pids = np.unique(train.pids)
    if len(pids) < 2:
        raise ValueError(f"training a head needs at least 2 identities, got {len(pids)}")
    label = {int(p_): i for i, p_ in enumerate(pids)}
    by_pid: dict[int, list[int]] = {}
    for i, p_ in enumerate(train.pids):
        by_pid.setdefault(label[int(p_)], []).append(i)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        head = FusionHead(fusion, train.vectors.shape[1], len(pids), **(options or {}))
    x_all = torch.from_numpy(np.asarray(_inputs(train, head.input_kind), dtype=np.float32))
    ce, tri = CrossEntropyLabelSmooth(len(pids)), TripletLoss(margin)
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * s / steps)))
    rng = np.random.default_rng(seed)
    p = min(p, len(pids))
    head.train()
    for _ in range(steps):
        chosen = rng.choice(len(pids), size=p, replace=False)
        rows, labels = [], []
        for c in chosen:
            tr = rng.choice(by_pid[int(c)], size=k, replace=len(by_pid[int(c)]) < k)
            for t in tr:
                rows.append(_clip(rng, int(train.offsets[t]), int(train.lengths[t]), seq_len))
                labels.append(int(c))
        x = x_all[torch.from_numpy(np.stack(rows))]
        y = torch.tensor(labels)
        logits, f, _ = head(x)
        loss = ce(logits, y) + tri(f, y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"head {fusion!r}: loss became {loss.item()} (seed {seed})")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return head.eval()


@torch.no_grad()
def head_embeddings(head: FusionHead, ff: FrameFeatures, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (N, D) and per-frame weights (F,) of ``ff`` under a trained head, through the video
    model's test path (dense chunks of ``seq_len``, post-BN, mean over chunks)."""
    head.eval()
    x_all = np.asarray(_inputs(ff, head.input_kind))

    def fuse(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e, aux = head(torch.from_numpy(x_all[idx].astype(np.float32)))
        return e.double().numpy(), aux["weights"].double().numpy()

    return embed_chunks(ff, *chunk_plan(ff, "clip", seq_len, False), fuse)
