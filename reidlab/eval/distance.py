"""Pairwise feature distances, computed with torch on the features' own device, in row chunks.

numpy inputs are wrapped without copying; CUDA tensors keep the matmuls on the GPU and only the
(chunk, G) distance blocks travel to the host.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from reidlab.suggest import did_you_mean

__all__ = ["METRICS", "pairwise_distance", "as_feature_tensor", "DistanceSource"]

METRICS = ("euclidean", "cosine")
_EPS = 1e-12


def as_feature_tensor(x: Any, name: str) -> torch.Tensor:
    """(N, D) floating torch tensor view of a numpy array or tensor (float16/bfloat16/int -> float32)."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        a = np.asarray(x)
        if a.dtype.kind not in "fiub":
            raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
        if not a.flags.writeable:
            a = a.copy()
        t = torch.from_numpy(a)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num, dim), got shape {tuple(t.shape)}")
    if not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t


class DistanceSource:
    """Distances between query features ``qf`` (Q, D) and gallery features ``gf`` (G, D).

    metric "euclidean": ||q - g||_2; "cosine": 1 - cos(q, g) in [0, 2], with a zero vector having
    cosine 0 to everything (distance 1), so degenerate features stay finite.
    ``squared=True`` returns the squared distance (the quantity k-reciprocal re-ranking uses).
    """

    def __init__(self, qf: Any, gf: Any, metric: str = "euclidean"):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}{did_you_mean(metric, METRICS)}; expected one of {METRICS}")
        self.qf, self.gf = as_feature_tensor(qf, "qf"), as_feature_tensor(gf, "gf")
        if self.qf.shape[1] != self.gf.shape[1]:
            raise ValueError(f"qf has feature dim {self.qf.shape[1]} but gf has {self.gf.shape[1]}")
        if self.qf.device != self.gf.device:
            raise ValueError(f"qf is on {self.qf.device} but gf on {self.gf.device}")
        if self.qf.dtype != self.gf.dtype:
            dt = torch.promote_types(self.qf.dtype, self.gf.dtype)
            self.qf, self.gf = self.qf.to(dt), self.gf.to(dt)
        for name, t in (("qf", self.qf), ("gf", self.gf)):
            if t.numel() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} contains NaN or inf")
        self.metric = metric
        self.q_aux = self._aux(self.qf)
        self.g_aux = self._aux(self.gf)

    @property
    def shape(self) -> tuple[int, int]:
        return self.qf.shape[0], self.gf.shape[0]

    def _aux(self, f: torch.Tensor) -> torch.Tensor:
        # euclidean: squared norms; cosine: inverse norms (0 for a zero vector -> cosine 0)
        sq = (f * f).sum(dim=1)
        if self.metric == "euclidean":
            return sq
        n = sq.sqrt()
        return torch.where(n > _EPS, 1.0 / n.clamp_min(_EPS), torch.zeros_like(n))

    def block(self, a: torch.Tensor, a_aux: torch.Tensor, b: torch.Tensor, b_aux: torch.Tensor,
              squared: bool = False) -> torch.Tensor:
        """(len(a), len(b)) distances; in-place arithmetic keeps one output-sized buffer."""
        d = a @ b.T
        if self.metric == "euclidean":
            d.mul_(-2.0).add_(a_aux[:, None]).add_(b_aux[None, :]).clamp_(min=0.0)
            if not squared:
                d.sqrt_()
        else:
            d.mul_(a_aux[:, None]).mul_(b_aux[None, :]).neg_().add_(1.0).clamp_(0.0, 2.0)
            if squared:
                d.square_()
        return d

    def pair(self, a: torch.Tensor, a_aux: torch.Tensor, b: torch.Tensor, b_aux: torch.Tensor,
             squared: bool = False) -> torch.Tensor:
        """Distances of row pairs (a[i], b[i]), same formula as ``block``."""
        dot = (a * b).sum(dim=1)
        if self.metric == "euclidean":
            d = (a_aux + b_aux - 2.0 * dot).clamp_(min=0.0)
            return d if squared else d.sqrt_()
        d = (1.0 - dot * a_aux * b_aux).clamp_(0.0, 2.0)
        return d.square_() if squared else d

    def query_rows(self, q0: int, q1: int, squared: bool = False) -> torch.Tensor:
        """(q1 - q0, G) query-gallery distances on the features' device."""
        return self.block(self.qf[q0:q1], self.q_aux[q0:q1], self.gf, self.g_aux, squared)

    def iter_query_chunks(self, chunk_rows: int, squared: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (q0, (B, G) numpy float block) over all query rows."""
        Q = self.shape[0]
        for q0 in range(0, Q, chunk_rows):
            d = self.query_rows(q0, min(Q, q0 + chunk_rows), squared)
            yield q0, d.cpu().numpy()
            del d


def chunk_rows_for(budget_bytes: int, num_cols: int, itemsize: int, copies: int = 1) -> int:
    """Rows per chunk so that ``copies`` (rows, num_cols) blocks fit in ``budget_bytes`` (>= 1)."""
    return max(1, int(budget_bytes) // max(1, num_cols * itemsize * copies))


def pairwise_distance(qf: Any, gf: Any, metric: str = "euclidean") -> Any:
    """Full (Q, G) distance matrix between qf (Q, D) and gf (G, D).

    metric: "euclidean" (L2 distance, not squared) or "cosine" (1 - cosine similarity; zero vectors
    get distance 1). Returns a torch tensor on the inputs' device if ``qf`` is a tensor, else a
    numpy array. For large sets prefer ``evaluate_features``, which never holds the full matrix.
    """
    src = DistanceSource(qf, gf, metric)
    d = src.query_rows(0, src.shape[0])
    return d if isinstance(qf, torch.Tensor) else d.cpu().numpy()
