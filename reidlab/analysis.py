"""Numbers behind the notebooks: feature-correlation statistics and fusion diagnostics.

Pure functions on numpy arrays (torch tensors are accepted and converted); no file I/O, no models.
Every function returns finite numbers on degenerate input (constant features, zero vectors, a single
frame, a single tracklet) or NaN where a quantity is genuinely undefined (documented per function).

Correlation statistics follow ABD-Net's argument (Chen et al., "ABD-Net: Attentive but Diverse Person
Re-Identification", ICCV 2019): attention tends to concentrate features in a compact subspace, visible as
large off-diagonal correlations between embedding dimensions and a low effective rank.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "as_numpy",
    "feature_correlation",
    "mean_abs_offdiag",
    "effective_rank",
    "correlation_summary",
    "cosine_matrix",
    "cosine_vs_frame_distance",
    "softmax_cosine_weights",
    "weight_floor_bound",
    "weight_floor_vs_tau",
    "realised_weight_floor",
    "frame_weights_from_aux",
    "corrupted_weight_share",
    "corruption_share_table",
]

_EPS = 1e-12


def as_numpy(x: Any) -> np.ndarray:
    """Return `x` (numpy array, torch tensor or nested sequence) as a float64 numpy array."""
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_2d(x: np.ndarray, what: str) -> None:
    if x.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array, got shape {tuple(x.shape)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: contains NaN or inf")


# --------------------------------------------------------------------------------------------------
# correlation statistics
# --------------------------------------------------------------------------------------------------


def feature_correlation(features: Any) -> np.ndarray:
    """Pearson correlation between embedding dimensions.

    features: (N, D) — N samples (e.g. gallery embeddings), D dimensions.
    Returns (D, D) with ones on the diagonal. A dimension with zero variance (constant, e.g. a dead ReLU
    unit) is uncorrelated with everything by convention (0 off the diagonal) instead of NaN, so that the
    summary numbers stay finite; with N < 2 every dimension is constant and the result is the identity.
    """
    x = as_numpy(features)
    _check_2d(x, "features")
    n, d = x.shape
    if d == 0:
        raise ValueError("features: need at least one dimension, got shape (N, 0)")
    if n < 2:
        return np.eye(d)
    xc = x - x.mean(axis=0, keepdims=True)
    std = np.sqrt((xc**2).sum(axis=0))
    alive = std > _EPS * max(1.0, float(np.abs(x).max()))
    z = np.zeros_like(xc)
    z[:, alive] = xc[:, alive] / std[alive]
    corr = z.T @ z
    np.clip(corr, -1.0, 1.0, out=corr)
    np.fill_diagonal(corr, 1.0)
    return corr


def mean_abs_offdiag(matrix: Any) -> float:
    """Mean absolute value of the off-diagonal entries of a square matrix (D, D).

    0 for the identity (fully decorrelated), 1 for an all-ones correlation matrix; 0 when D == 1 (no
    off-diagonal entry to be correlated).
    """
    m = as_numpy(matrix)
    _check_2d(m, "matrix")
    if m.shape[0] != m.shape[1]:
        raise ValueError(f"matrix: expected a square matrix, got shape {tuple(m.shape)}")
    d = m.shape[0]
    if d < 2:
        return 0.0
    off = np.abs(m).sum() - np.abs(np.diag(m)).sum()
    return float(off / (d * (d - 1)))


def effective_rank(matrix: Any) -> float:
    """Effective rank of Roy & Vetterli ("The effective rank: a measure of effective dimensionality",
    EUSIPCO 2007): exp(H(p)) with p_i = s_i / sum(s) the normalised singular values.

    matrix: any (M, N) array — a correlation matrix (D, D) or a feature matrix (N, D). Equals n for the
    n×n identity, 1 for a rank-one matrix; 0.0 for the zero matrix (no spectrum to spread).
    """
    m = as_numpy(matrix)
    _check_2d(m, "matrix")
    if m.size == 0:
        return 0.0
    s = np.linalg.svd(m, compute_uv=False)
    total = s.sum()
    if total <= _EPS:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def correlation_summary(features: Any) -> dict[str, float]:
    """Summary numbers of the embedding dimensions' correlation.

    features: (N, D). Returns {"dims": D, "samples": N, "mean_abs_offdiag": ..., "effective_rank": ...,
    "effective_rank_ratio": effective_rank / D} computed on the (D, D) correlation matrix.
    """
    corr = feature_correlation(features)
    d = corr.shape[0]
    er = effective_rank(corr)
    return {
        "dims": float(d),
        "samples": float(as_numpy(features).shape[0]),
        "mean_abs_offdiag": mean_abs_offdiag(corr),
        "effective_rank": er,
        "effective_rank_ratio": er / d,
    }


# --------------------------------------------------------------------------------------------------
# fusion diagnostics
# --------------------------------------------------------------------------------------------------


def cosine_matrix(frames: Any) -> np.ndarray:
    """Pairwise cosine similarity of frame features.

    frames: (T, D). Returns (T, T); a zero vector has cosine 0 with everything (itself included), so the
    output is always finite.
    """
    f = as_numpy(frames)
    _check_2d(f, "frames")
    norms = np.linalg.norm(f, axis=1)
    safe = np.where(norms > _EPS, norms, 1.0)
    u = f / safe[:, None]
    u[norms <= _EPS] = 0.0
    return np.clip(u @ u.T, -1.0, 1.0)


def cosine_vs_frame_distance(tracklets: Sequence[Any], max_distance: int | None = None) -> pd.DataFrame:
    """Cosine similarity of frame features as a function of their temporal distance within a tracklet.

    Answers "are features within a time window convergent?": if frames of one person converge, the
    curve stays high and flat; if within-window motion changes the features, it decays with distance.

    tracklets: sequence of (T_i, D) arrays, frames in temporal order. Distances 1..max_distance (default:
    the longest tracklet − 1). Returns a DataFrame with columns distance, mean_cos, std_cos, count
    (number of frame pairs at that distance over all tracklets), sorted by distance; empty (with those
    columns) when no tracklet has two frames.
    """
    per_distance: dict[int, list[float]] = {}
    for i, tr in enumerate(tracklets):
        f = as_numpy(tr)
        if f.ndim != 2:
            raise ValueError(f"tracklet {i}: expected (T, D) frame features, got shape {tuple(f.shape)}")
        cos = cosine_matrix(f)
        t = f.shape[0]
        limit = t - 1 if max_distance is None else min(max_distance, t - 1)
        for k in range(1, limit + 1):
            per_distance.setdefault(k, []).extend(np.diagonal(cos, offset=k).tolist())
    rows = []
    for k in sorted(per_distance):
        vals = np.asarray(per_distance[k])
        rows.append(
            {
                "distance": k,
                "mean_cos": float(vals.mean()),
                "std_cos": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                "count": int(len(vals)),
            }
        )
    return pd.DataFrame(rows, columns=["distance", "mean_cos", "std_cos", "count"])


def softmax_cosine_weights(frames: Any, tau: float = 1.0) -> np.ndarray:
    """Reference softmax-cosine frame weights: w_t = softmax_t(cos(f_t, c) / τ), c = mean frame.

    frames: (T, D) -> (T,) weights summing to 1. This is the formula the `softmax_cosine` fusion is
    specified by (issue 4), written independently so the diagnostics can sweep τ on real features. A zero
    centre or zero frame gives cosine 0 (uniform weights in the all-zero case).
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    f = as_numpy(frames)
    _check_2d(f, "frames")
    c = f.mean(axis=0)
    cn = np.linalg.norm(c)
    fn = np.linalg.norm(f, axis=1)
    denom = np.where((fn > _EPS) & (cn > _EPS), fn * cn, np.inf)
    cos = (f @ c) / denom
    logits = cos / tau
    logits -= logits.max()
    e = np.exp(logits)
    return e / e.sum()


def weight_floor_bound(num_frames: int, tau: float) -> float:
    """Smallest weight softmax-cosine can give a frame among `num_frames`: one frame at cosine −1 against
    T−1 frames at cosine +1, i.e. 1 / (1 + (T − 1)·e^{2/τ}).

    T = 2, τ = 1 gives e⁻¹/(e + e⁻¹) ≈ 0.119, the floor noted in the lab notes; T = 1 gives 1.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    # exp may overflow for tiny τ: the bound then is 0 to double precision
    with np.errstate(over="ignore"):
        big = (num_frames - 1) * np.exp(2.0 / tau)
    return float(1.0 / (1.0 + big)) if np.isfinite(big) else 0.0


def realised_weight_floor(weights: Any) -> dict[str, float]:
    """Summary of realised per-frame weights of many tracklets.

    weights: (N, T) rows summing to 1 (e.g. fusion aux weights). Returns min_weight (smallest weight
    over everything), mean_min_weight (mean over tracklets of the smallest weight in each), uniform (1/T)
    and min_ratio_to_uniform (mean_min_weight · T: 1 means the weighting is indistinguishable from the
    mean, 0 means it can silence a frame).
    """
    w = as_numpy(weights)
    if w.ndim == 1:
        w = w[None, :]
    _check_2d(w, "weights")
    if w.shape[0] == 0 or w.shape[1] == 0:
        raise ValueError(f"weights: need at least one tracklet and one frame, got shape {tuple(w.shape)}")
    t = w.shape[1]
    mins = w.min(axis=1)
    return {
        "min_weight": float(mins.min()),
        "mean_min_weight": float(mins.mean()),
        "uniform": 1.0 / t,
        "min_ratio_to_uniform": float(mins.mean() * t),
    }


def weight_floor_vs_tau(tracklets: Sequence[Any], taus: Sequence[float]) -> pd.DataFrame:
    """Realised softmax-cosine weight floor on given frame features, for each temperature τ.

    tracklets: sequence of (T, D) frame features, all with the same T. For each τ the reference weights
    (`softmax_cosine_weights`) are computed per tracklet; columns: tau, min_weight, mean_min_weight,
    uniform, min_ratio_to_uniform (see `realised_weight_floor`) and bound (`weight_floor_bound(T, τ)`,
    the worst case the formula allows).
    """
    feats = [as_numpy(t) for t in tracklets]
    if not feats:
        raise ValueError("tracklets: need at least one tracklet")
    lengths = {f.shape[0] for f in feats}
    if len(lengths) != 1:
        raise ValueError(f"tracklets: expected equal frame counts T, got {sorted(lengths)}")
    t = lengths.pop()
    rows = []
    for tau in taus:
        w = np.stack([softmax_cosine_weights(f, tau) for f in feats])
        row = {"tau": float(tau), **realised_weight_floor(w), "bound": weight_floor_bound(t, tau)}
        rows.append(row)
    return pd.DataFrame(
        rows, columns=["tau", "min_weight", "mean_min_weight", "uniform", "min_ratio_to_uniform", "bound"]
    )


def frame_weights_from_aux(aux: Mapping[str, Any] | None, num_frames: int, batch: int = 1) -> np.ndarray:
    """Per-frame fusion weights (B, T) from a fusion's aux dict, rows summing to 1.

    - None or {} (e.g. `mean`, whose weights are uniform by definition): uniform 1/T;
    - {"weights": (B, T)} (softmax_cosine, spherical, temporal_attention): renormalised absolute values;
    - {"masks": ...} (template_mask): a frame's share is the mean mask magnitude it received, from a
      (B, T, ...) tensor or a list of T tensors (B, ...).
    Raises ValueError when weights or masks cannot be mapped to `num_frames` frames.
    """
    uniform = np.full((batch, num_frames), 1.0 / num_frames)
    if not aux:
        return uniform
    if "weights" in aux and aux["weights"] is not None:
        w = as_numpy(aux["weights"])
        if w.ndim == 1:
            w = w[None, :]
        if w.ndim != 2 or w.shape[1] != num_frames:
            raise ValueError(f"aux['weights']: expected (B, {num_frames}), got shape {tuple(w.shape)}")
        w = np.abs(w)
        s = w.sum(axis=1, keepdims=True)
        return np.where(s > _EPS, w / np.where(s > _EPS, s, 1.0), 1.0 / num_frames)
    if "frame_weights" in aux and aux["frame_weights"] is not None:
        return frame_weights_from_aux({"weights": aux["frame_weights"]}, num_frames, batch)
    if "masks" in aux and aux["masks"] is not None:
        masks = aux["masks"]
        if isinstance(masks, (list, tuple)) and len(masks) == num_frames:
            per = [np.abs(as_numpy(m)).reshape(as_numpy(m).shape[0], -1).mean(axis=1) for m in masks]
            w = np.stack(per, axis=1)
        else:
            m = np.abs(as_numpy(masks))
            if m.ndim < 2 or m.shape[1] != num_frames:
                raise ValueError(
                    f"aux['masks']: cannot map masks of shape {getattr(m, 'shape', None)} to {num_frames} frames"
                )
            w = m.reshape(m.shape[0], num_frames, -1).mean(axis=2)
        s = w.sum(axis=1, keepdims=True)
        return np.where(s > _EPS, w / np.where(s > _EPS, s, 1.0), 1.0 / num_frames)
    return uniform


def corrupted_weight_share(weights: Any, corrupted: Sequence[bool]) -> float:
    """Share of fusion weight on the corrupted frames of one tracklet.

    weights: (T,) non-negative; corrupted: T booleans (synthetic ground truth). Returns sum of weights on
    corrupted frames / total weight (NaN when the total is 0). Uniform weighting gives n_corrupted / T.
    """
    w = as_numpy(weights).reshape(-1)
    c = np.asarray(corrupted, dtype=bool).reshape(-1)
    if w.shape != c.shape:
        raise ValueError(f"weights {w.shape} and corrupted {c.shape} must have the same length")
    total = w.sum()
    if total <= _EPS:
        return math.nan
    return float(w[c].sum() / total)


def corruption_share_table(records: Sequence[tuple[str, Any, Sequence[Any] | None]]) -> pd.DataFrame:
    """Per-variant share of fusion weight on corrupted frames vs the uniform share.

    records: (variant, weights (T,), corruption) triples, corruption being the per-frame ground truth
    (None = clean, else a kind name; a whole None = unknown → skipped). Only tracklets with at least one
    corrupted and one clean frame count (otherwise every weighting gives the same share).
    Returns columns variant, tracklets, weight_share (mean over tracklets), uniform_share (mean of
    n_corrupted/T), ratio (weight_share / uniform_share: < 1 means corrupted frames are down-weighted).
    """
    acc: dict[str, list[tuple[float, float]]] = {}
    order: list[str] = []
    for variant, weights, corruption in records:
        if variant not in acc:
            acc[variant] = []
            order.append(variant)
        if corruption is None:
            continue
        bad = [c is not None for c in corruption]
        if not any(bad) or all(bad):
            continue
        share = corrupted_weight_share(weights, bad)
        if math.isnan(share):
            continue
        acc[variant].append((share, sum(bad) / len(bad)))
    rows = []
    for v in order:
        vals = acc[v]
        if vals:
            ws = float(np.mean([a for a, _ in vals]))
            us = float(np.mean([b for _, b in vals]))
            rows.append({"variant": v, "tracklets": len(vals), "weight_share": ws, "uniform_share": us,
                         "ratio": ws / us})
        else:
            rows.append({"variant": v, "tracklets": 0, "weight_share": math.nan, "uniform_share": math.nan,
                         "ratio": math.nan})
    return pd.DataFrame(rows, columns=["variant", "tracklets", "weight_share", "uniform_share", "ratio"])
