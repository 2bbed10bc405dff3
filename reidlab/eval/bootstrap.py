"""Paired bootstrap confidence intervals for mAP differences, over query identities and seeds.

Why this shape: two operators evaluated on the *same* trained trunk and the *same* queries differ by a
per-query ΔAP; the noise that matters is which queries (and which identities: a person's several query
tracklets are not independent) and which trained trunk (seed) we happened to get. The interval therefore
resamples both, crossed (Bouthillier et al., "Accounting for Variance in Machine Learning Benchmarks",
MLSys 2021; Agarwal et al., "Deep RL at the Edge of the Statistical Precipice", NeurIPS 2021):

* draw S seeds with replacement from the S trained trunks;
* draw G query identities with replacement from the G identities that have queries (all queries of a
  drawn identity come along, so an identity with many queries weighs more, as it does in mAP);
* the replicate statistic is the mean over the drawn seeds of the mean ΔAP over the drawn queries.

Percentile interval of the replicates; half-width = (hi - lo) / 2 is the minimum detectable effect at
that level. ``prob_positive`` is the share of replicates above 0 (a bootstrap estimate of P(A > B)).
Pure numpy, no I/O: the replicates are a function of ``seed`` alone, so every comparison made with the
same ``seed`` and the same query identities uses the same resamples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["BootstrapCI", "bootstrap_mean_ci", "paired_delta_ci"]


@dataclass(frozen=True)
class BootstrapCI:
    """Point estimate and percentile interval (same units as the input, e.g. AP in [0, 1])."""

    estimate: float
    lo: float
    hi: float
    level: float
    prob_positive: float
    n_seeds: int
    n_groups: int
    n_queries: int
    n_boot: int

    @property
    def half_width(self) -> float:
        return 0.5 * (self.hi - self.lo)

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "half_width": self.half_width, "excludes_zero": self.excludes_zero}


def _as_2d(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[1] == 0 or v.shape[0] == 0:
        raise ValueError(f"expected per-query values of shape (S seeds, Q queries) or (Q,), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("per-query values contain NaN or inf (skipped queries must be removed first)")
    return v


@lru_cache(maxsize=8)
def _draws(G: int, S: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial counts — how often each identity (B, G) and each seed (B, S) is drawn per replicate.
    Cached: every comparison on the same queries and seeds reuses the same resamples (and the time)."""
    rng = np.random.default_rng(seed)
    cg = rng.multinomial(G, np.full(G, 1.0 / G), size=n_boot).astype(np.float64)
    cs = rng.multinomial(S, np.full(S, 1.0 / S), size=n_boot).astype(np.float64)
    cg.setflags(write=False)
    cs.setflags(write=False)
    return cg, cs


def bootstrap_mean_ci(values: Any, groups: Any, *, n_boot: int = 2000, level: float = 0.95,
                      seed: int = 0) -> BootstrapCI:
    """Crossed seed x identity bootstrap of the mean of per-query ``values``.

    values: (S, Q) — seed s, query q (e.g. AP, or ΔAP of two operators on the same queries); (Q,) = one seed.
    groups: (Q,) — the query's identity; queries of one identity are resampled together.
    Returns the mean over seeds of the per-seed query mean, with its percentile interval.
    """
    v = _as_2d(values)
    g = np.asarray(groups)
    if g.shape != (v.shape[1],):
        raise ValueError(f"groups must have one entry per query ({v.shape[1]}), got shape {g.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    S, _ = v.shape
    _, inv = np.unique(g, return_inverse=True)
    G = int(inv.max()) + 1
    sums = np.zeros((S, G))
    for s in range(S):
        sums[s] = np.bincount(inv, weights=v[s], minlength=G)
    counts = np.bincount(inv, minlength=G).astype(np.float64)
    cg, cs = _draws(G, S, int(n_boot), int(seed))
    per_seed = (cg @ sums.T) / (cg @ counts)[:, None]  # (B, S)
    reps = (cs * per_seed).sum(1) / S
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return BootstrapCI(estimate=float(v.mean(1).mean()), lo=float(lo), hi=float(hi), level=float(level),
                       prob_positive=float(np.mean(reps > 0)), n_seeds=S, n_groups=G, n_queries=v.shape[1],
                       n_boot=int(n_boot))


def paired_delta_ci(a: Any, b: Any, groups: Any, *, n_boot: int = 2000, level: float = 0.95,
                    seed: int = 0) -> BootstrapCI:
    """Interval of mean(a) - mean(b) for per-query values of two systems on the same seeds and queries.

    a, b: (S, Q) or (Q,), aligned (same trunk s, same query q). See :func:`bootstrap_mean_ci`.
    """
    va, vb = _as_2d(a), _as_2d(b)
    if va.shape != vb.shape:
        raise ValueError(f"paired values must have the same shape, got {va.shape} and {vb.shape}")
    return bootstrap_mean_ci(va - vb, groups, n_boot=n_boot, level=level, seed=seed)
