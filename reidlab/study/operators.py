"""Test-time temporal fusion on cached per-frame features: operators, the oracle, controls, weight statistics.

Pure computations on :class:`FrameFeatures` (numpy in, numpy out; the fusion rules themselves are the
``reidlab.models.fusion`` modules, so a test-time operator is exactly the rule the video model would apply).

The video model's test path, reproduced here on cached features: a tracklet is cut into dense chunks of
``seq_len`` frames (the last one padded by cycling its own frames), each chunk is fused to one vector,
passed through the trunk's BNNeck BatchNorm (eval mode), and the tracklet's embedding is the mean of its
chunk embeddings (``scope="clip"``). ``scope="tracklet"`` fuses all of a tracklet's frames at once (the
centre of softmax_cosine is then the whole tracklet's, which two corrupted frames cannot capture).

Controls: ``oracle`` drops the frames the synthetic ground truth marks corrupted before fusing (a tracklet
with no clean frame keeps all) — the ceiling of any frame weighting, and it USES GROUND TRUTH; ``l2``
L2-normalises each fused vector before the BatchNorm, as ``spherical`` (keep_norm=False) does, so
spherical can be compared with a mean that differs from it only in its weighting. A negative control is
an operator with a new name and the mean's definition: its Δ against mean must be exactly 0.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from reidlab.data.sampling import dense_chunks
from reidlab.models.fusion import build_fusion
from reidlab.study.frames import FrameFeatures

__all__ = ["Operator", "BNAffine", "apply_operator", "chunk_plan", "embed_chunks", "weight_stats", "SCOPES"]

SCOPES = ("clip", "tracklet")
#: parameter-free fusion rules that may be applied at test time to a trunk trained with another rule
PARAMETER_FREE = ("mean", "max", "softmax_cosine", "spherical")


@dataclass(frozen=True)
class Operator:
    """A test-time fusion operator: a parameter-free fusion rule, where it is applied, and controls."""

    name: str
    fusion: str = "mean"
    options: dict = field(default_factory=dict, hash=False)
    scope: str = "clip"
    oracle: bool = False
    l2: bool = False
    label: str = ""

    def __post_init__(self) -> None:
        if self.fusion not in PARAMETER_FREE:
            raise ValueError(f"operator {self.name!r}: fusion {self.fusion!r} is not parameter-free; "
                             f"test-time operators use one of {PARAMETER_FREE}")
        if self.scope not in SCOPES:
            raise ValueError(f"operator {self.name!r}: scope must be one of {SCOPES}, got {self.scope!r}")
        build_fusion(self.fusion, 4, **self.options)  # unknown options fail here, naming the operator's rule

    @property
    def uses_ground_truth(self) -> bool:
        return self.oracle

    @classmethod
    def from_dict(cls, name: str, d: dict) -> "Operator":
        allowed = {"fusion", "options", "scope", "oracle", "l2", "label"}
        bad = sorted(set(d) - allowed)
        if bad:
            raise ValueError(f"operator {name!r}: unknown key(s) {bad}; allowed: {sorted(allowed)}")
        return cls(name=name, **{k: (dict(v) if k == "options" else v) for k, v in d.items()})


@dataclass(frozen=True)
class BNAffine:
    """An eval-mode BatchNorm1d as an affine map: y = (x - mean) / sqrt(var + eps) * weight + bias; (D,) each."""

    mean: np.ndarray
    var: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    eps: float = 1e-5

    @classmethod
    def from_module(cls, bn: Any) -> "BNAffine":
        t = lambda v: v.detach().double().cpu().numpy()  # noqa: E731
        return cls(t(bn.running_mean), t(bn.running_var), t(bn.weight), t(bn.bias), float(bn.eps))

    @classmethod
    def identity(cls, dim: int) -> "BNAffine":
        return cls(np.zeros(dim), np.ones(dim), np.ones(dim), np.zeros(dim), 0.0)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / np.sqrt(self.var + self.eps) * self.weight + self.bias


def chunk_plan(ff: FrameFeatures, scope: str, seq_len: int, oracle: bool) -> tuple[list[np.ndarray], np.ndarray]:
    """Frame-index arrays of every chunk (global frame indices) and the tracklet owning each chunk.

    scope "clip": ``dense_chunks`` of ``seq_len`` (the video model's test path); "tracklet": one chunk of all
    frames. ``oracle``: ground-truth corrupted frames are left out first (all kept when none is clean).
    """
    chunks, owner = [], []
    for i in range(ff.num_tracklets):
        idx = np.arange(ff.offsets[i], ff.offsets[i + 1])
        if oracle:
            clean = idx[~ff.corrupt[idx]]
            idx = clean if len(clean) else idx
        if scope == "tracklet":
            chunks.append(idx)
            owner.append(i)
        else:
            for c in dense_chunks(len(idx), seq_len):
                chunks.append(idx[c])
                owner.append(i)
    return chunks, np.asarray(owner, dtype=np.int64)


def apply_operator(op: Operator, ff: FrameFeatures, bn: BNAffine, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Embed every tracklet of ``ff`` with ``op``.

    Returns ``(embeddings (N, D) float64, frame_weights (F,))``: the embedding that is evaluated (post-BN,
    mean over chunks) and each frame's effective share of its tracklet's fusion (sums to 1 per tracklet;
    padding repeats and chunk averaging are folded in; dropped frames get 0).
    """
    if ff.num_tracklets == 0:
        raise ValueError("no tracklets to fuse")
    if op.oracle and not ff.corruption_known:
        raise ValueError(f"operator {op.name!r} is an oracle but these features carry no corruption ground truth")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    fusion = build_fusion(op.fusion, ff.vectors.shape[1], **op.options).eval()

    def fuse(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            fused, aux = fusion(torch.from_numpy(ff.vectors[idx].astype(np.float64)))
        f = fused.numpy()
        if op.l2:
            f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        return bn(f), aux["weights"].numpy()

    return embed_chunks(ff, *chunk_plan(ff, op.scope, seq_len, op.oracle), fuse)


def embed_chunks(ff: FrameFeatures, chunks: list[np.ndarray], owner: np.ndarray,
                 fuse: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Tracklet embeddings = mean of their chunks' embeddings, chunks of equal length fused in one batch.

    fuse: frame indices (n, L) -> (chunk embeddings (n, D), per-frame weights (n, L) summing to 1 per row).
    Returns ``(embeddings (N, D) float64, frame_weights (F,))`` (weights summing to 1 per tracklet).
    """
    n_chunks = np.bincount(owner, minlength=ff.num_tracklets).astype(np.float64)
    by_len: dict[int, list[int]] = defaultdict(list)
    for j, c in enumerate(chunks):
        by_len[len(c)].append(j)
    emb: np.ndarray | None = None
    weights = np.zeros(len(ff.vectors))
    for _, js in sorted(by_len.items()):
        idx = np.stack([chunks[j] for j in js])  # (n, length)
        e, w = fuse(idx)
        if emb is None:
            emb = np.zeros((ff.num_tracklets, e.shape[1]))
        own = owner[js]
        np.add.at(emb, own, e / n_chunks[own, None])
        np.add.at(weights, idx.ravel(), (w / n_chunks[own, None]).ravel())
    assert emb is not None
    return emb, weights


def weight_stats(weights: np.ndarray, ff: FrameFeatures, reference: np.ndarray | None = None) -> dict[str, float]:
    """How far an operator's per-frame weights move from uniform, and where they go.

    weights: (F,) per-frame shares summing to 1 per tracklet (``apply_operator``'s second output).
    Returns means over tracklets of: ``tv_from_uniform`` = ½ Σ_t |w_t − 1/T| (0 = uniform, → 1 = all on one
    frame), ``min_over_uniform`` = T · min_t w_t (1 = uniform; the softmax "floor"), and over tracklets with
    both clean and corrupted frames: ``corrupted_share`` = Σ_{corrupted} w_t next to ``uniform_share`` =
    (#corrupted)/T, and their ratio (< 1: corrupted frames are weakened). Single-frame tracklets count
    as uniform. NaN where no tracklet qualifies. With ``reference`` (F,) — e.g. the plain mean's weights
    at the same scope, which are not uniform when padding repeats frames — also ``tv_from_reference``,
    the mean ½ Σ_t |w_t − ref_t|: how far the operator's own weighting moves.
    """
    tv, floor, share, uni, tvr = [], [], [], [], []
    for i in range(ff.num_tracklets):
        s = ff.frames_of(i)
        w, c = weights[s], ff.corrupt[s]
        T = len(w)
        tv.append(0.5 * float(np.abs(w - 1.0 / T).sum()))
        if reference is not None:
            tvr.append(0.5 * float(np.abs(w - reference[s]).sum()))
        floor.append(float(T * w.min()))
        if ff.corruption_known and 0 < c.sum() < T:
            share.append(float(w[c].sum()))
            uni.append(float(c.mean()))
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    cs, us = mean(share), mean(uni)
    extra = {"tv_from_reference": mean(tvr)} if reference is not None else {}
    return {**extra, "tv_from_uniform": mean(tv), "min_over_uniform": mean(floor), "corrupted_share": cs,
            "uniform_share": us, "share_ratio": cs / us if us == us and us > 0 else float("nan"),
            "tracklets_with_corruption": len(share)}
