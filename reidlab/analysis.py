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
from pathlib import Path
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
    "select_runs",
    "variant_label",
    "load_frames",
    "corrupted_window",
    "clip_forward",
    "split_features",
    "attention_frame_maps",
    "template_masks_per_frame",
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


# --------------------------------------------------------------------------------------------------
# run-level helpers for the notebooks (load a stored run's model and frames; torch imported lazily)
# --------------------------------------------------------------------------------------------------


def select_runs(results_dir: str | Path, run_ids: Sequence[str] = (), prefix: str = "",
                *, one_seed_per_variant: bool = True, finished_only: bool = True) -> list[Path]:
    """Run folders to analyse: `run_ids` when given (must exist), else every run under
    `<results_dir>/runs` whose id starts with `prefix` — with `one_seed_per_variant`, only the lowest
    seed of each variant (runs differing only by their `-s<seed>` suffix)."""
    from reidlab.runs.tables import load_runs

    runs_dir = Path(results_dir) / "runs"
    if run_ids:
        out = []
        for rid in run_ids:
            d = runs_dir / rid
            if not (d / "config.json").is_file():
                raise FileNotFoundError(f"{d}: no such run (expected {d / 'config.json'})")
            out.append(d)
        return out
    runs = [r for r in load_runs(runs_dir, include_unfinished=not finished_only) if r.run_id.startswith(prefix)]
    if not one_seed_per_variant:
        return [r.run_dir for r in runs]
    best: dict[str, Any] = {}
    for r in runs:
        cur = best.get(r.variant)
        if cur is None or (r.seed if r.seed is not None else 1 << 30) < (cur.seed if cur.seed is not None else 1 << 30):
            best[r.variant] = r
    return [best[k].run_dir for k in sorted(best)]


def variant_label(run_dir: str | Path, prefix: str = "") -> str:
    """Short label of a run for plots: its id without `prefix` and without the `-s<seed>` suffix."""
    import re

    rid = Path(run_dir).name
    if prefix and rid.startswith(prefix):
        rid = rid[len(prefix):]
    return re.sub(r"-s\d+$", "", rid) or Path(run_dir).name


def load_frames(tracklet: Any, cfg: Any, frames: Sequence[int] | None = None):
    """Frames of one tracklet for the model and for display.

    Returns (inputs (T, C, H, W) float tensor through the test transform of `cfg`, images: T (h, w, 3)
    uint8 arrays as stored, corruption: T entries (None = clean / unknown)).
    """
    import torch

    from reidlab.data import build_transforms, read_image

    idx = list(range(len(tracklet.paths))) if frames is None else list(frames)
    if not idx:
        raise ValueError("load_frames: no frames selected")
    tf = build_transforms(cfg.data.height, cfg.data.width, train=False)
    imgs = [read_image(tracklet.paths[i]) for i in idx]
    # the test transform resizes, so frames of different stored sizes (Duke) still stack afterwards
    inputs = torch.stack([tf(torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)) for im in imgs])
    corr = getattr(tracklet, "corruption", None)
    corruption = [corr[i] for i in idx] if corr is not None else [None] * len(idx)
    return inputs, imgs, corruption


def corrupted_window(tracklet: Any, length: int) -> list[int]:
    """Indices of `length` consecutive frames of a tracklet, centred on its first corrupted frame when it
    has one and clean frames too (the interesting case for weighting), else its first frames.
    Frames are repeated when the tracklet is shorter than `length` (as dense test chunks are padded)."""
    n = len(tracklet.paths)
    if n >= length:
        corr = getattr(tracklet, "corruption", None)
        start = 0
        if corr is not None and any(c is not None for c in corr) and any(c is None for c in corr):
            first = next(i for i, c in enumerate(corr) if c is not None)
            start = min(max(0, first - length // 2), n - length)
        return list(range(start, start + length))
    return [min(i, n - 1) for i in range(length)]


def clip_forward(model: Any, inputs: Any) -> tuple[dict, np.ndarray]:
    """One clip (T, C, H, W) through `model.forward_aux` in eval mode.

    Returns (aux, frame_features): aux = {"fusion": fusion aux (weights, masks, ...), "attention": ...};
    frame_features (T, D) are what the fusion operator itself received (a pre-hook on `model.fusion`;
    maps (T, C, h, w) are average-pooled to vectors), i.e. the space the fusion weights are computed in
    (before BNNeck), so formulas applied to them reproduce the operator's own numbers.
    """
    import torch

    fusion = getattr(model, "fusion", None)
    if fusion is None:
        raise ValueError(f"{type(model).__name__} has no `fusion` module: a video model is needed")
    captured: dict[str, Any] = {}

    def pre_hook(module, args):
        captured["x"] = args[0].detach()

    handle = fusion.register_forward_pre_hook(pre_hook)
    try:
        model.eval()
        with torch.no_grad():
            _, aux = model.forward_aux(inputs.unsqueeze(0))
    finally:
        handle.remove()
    x = captured["x"][0]
    if x.dim() == 4:
        x = x.mean(dim=(2, 3))
    return aux, x.float().cpu().numpy().astype(np.float64)


def split_features(model: Any, cfg: Any, records: Sequence[Any], *, max_items: int = 0, seed: int = 0):
    """Embeddings (N, D) of (a seeded random subset of at most `max_items`, 0 = all) tracklets with the
    run's own test pipeline (dense chunks), plus their pids (N,)."""
    from reidlab.engine import extract_records

    recs = list(records)
    if max_items and len(recs) > max_items:
        rng = np.random.default_rng(seed)
        keep = sorted(rng.choice(len(recs), size=max_items, replace=False).tolist())
        recs = [recs[i] for i in keep]
    feats, pids, _ = extract_records(model, recs, cfg, "cpu")
    return feats.numpy().astype(np.float64), pids


def attention_frame_maps(model: Any, inputs: Any) -> dict[str, list[np.ndarray]]:
    """Where each CAM / PAM module changes the features of each frame.

    inputs: one clip (T, C, H, W). Every CAM and PAM module (ABD-Net) computes out = γ·attention(x) + x;
    a forward hook records ‖out − x‖ over channels at every position, i.e. how strongly that attention
    rewrote the feature there. A module called once per horizontal stripe (ABD's attention branch) gets
    its stripes stacked back top to bottom. Returns {"CAM": T maps, "PAM": T maps, "shallow CAM": ...}
    (kind -> list of (h, w) arrays, one per frame); {} for a model without attention modules.
    """
    import torch

    from reidlab.models.attention import CAM, PAM

    calls: dict[Any, list[Any]] = {}
    handles = []

    def hook(module, args, output):
        x = args[0]
        out = output[0] if isinstance(output, tuple) else output
        calls.setdefault(module, []).append(torch.linalg.vector_norm(out - x, dim=1).detach().float().cpu())

    names = {}
    for name, m in model.named_modules():
        if isinstance(m, (CAM, PAM)):
            kind = "PAM" if isinstance(m, PAM) else ("shallow CAM" if "shallow" in name else "CAM")
            names[m] = kind
            handles.append(m.register_forward_hook(hook))
    if not handles:
        return {}
    try:
        model.eval()
        with torch.no_grad():
            model(inputs.unsqueeze(0))
    finally:
        for h in handles:
            h.remove()
    t = inputs.shape[0]
    out: dict[str, list[np.ndarray]] = {}
    for module, parts in calls.items():
        full = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # stripes: (B*T, h_s, w) along h
        if full.shape[0] != t:
            continue
        kind = names[module]
        maps = [full[i].numpy().astype(np.float64) for i in range(t)]
        if kind in out:  # several modules of one kind: sum their changes
            out[kind] = [a + b for a, b in zip(out[kind], maps)]
        else:
            out[kind] = maps
    return out


def template_masks_per_frame(fusion_aux: Mapping[str, Any] | None, num_frames: int,
                             ) -> list[np.ndarray | None] | None:
    """The first-level `template_mask` masks of one clip as one (h, w) map per frame.

    fusion_aux["masks"]: per level (B, P, 2, h, w) [α, β] for the pairs (0, 1), (2, 3), ...; frame 2p
    gets α of pair p and frame 2p+1 gets β; an odd last frame (carried to the next level) gets None.
    Returns None when the aux has no masks (vector fusions).
    """
    if not fusion_aux or not fusion_aux.get("masks"):
        return None
    level0 = as_numpy(fusion_aux["masks"][0])
    if level0.ndim != 5 or level0.shape[2] != 2:
        raise ValueError(f"template masks: expected level shape (B, P, 2, h, w), got {level0.shape}")
    maps: list[np.ndarray | None] = [None] * num_frames
    for p in range(level0.shape[1]):
        for side in (0, 1):
            f = 2 * p + side
            if f < num_frames:
                maps[f] = level0[0, p, side]
    return maps
