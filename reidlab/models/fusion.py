"""Temporal fusion: how the T frame features of a tracklet become one embedding.

Every operator is an nn.Module called as ``fused, aux = fusion(x)``:
  * x: (B, T, D) frame vectors or (B, T, C, H, W) frame maps. Vector operators given maps average-pool them
    over H, W first; `template_mask` given vectors treats them as 1x1 maps.
  * fused: (B, D) for vector operators, (B, C, H, W) for `template_mask` on maps (the caller pools).
  * aux["weights"]: (B, T) per-frame weights summing to 1 (for hierarchical operators the effective weight
    of each input frame in the final embedding; see each class for the exact meaning). Operators may add
    more entries (cosines, angles, per-level weights, masks).

Operators: mean, max, softmax_cosine, spherical, temporal_attention (vectors; all accept hierarchical=True
for a pairwise level-by-level reduction with odd counts carried) and template_mask (maps).
All cosines are guarded (norms clamped at eps) so zero frames never produce NaN or inf.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F

from torch import Tensor, nn

from reidlab.suggest import did_you_mean

__all__ = [
    "Fusion",
    "VectorFusion",
    "MeanFusion",
    "MaxFusion",
    "SoftmaxCosineFusion",
    "SphericalFusion",
    "TemporalAttentionFusion",
    "TemplateMaskFusion",
    "FUSIONS",
    "build_fusion",
    "guarded_cosine",
    "pairwise_levels",
]

_EPS = 1e-6


def guarded_cosine(a: Tensor, b: Tensor, dim: int = -1, eps: float = _EPS) -> Tensor:
    """cos(a, b) along `dim` with both norms clamped at eps: a zero vector gives 0, never NaN; the result is
    clamped to [-1, 1]."""
    na = torch.linalg.vector_norm(a, dim=dim).clamp_min(eps)
    nb = torch.linalg.vector_norm(b, dim=dim).clamp_min(eps)
    return ((a * b).sum(dim) / (na * nb)).clamp(-1.0, 1.0)


def pairwise_levels(t: int) -> list[tuple[int, bool]]:
    """Shape of the pairwise reduction of t items: per level (number of pairs, odd item carried)."""
    out = []
    while t > 1:
        out.append((t // 2, t % 2 == 1))
        t = t // 2 + t % 2
    return out


def _check_input(x: Tensor, name: str) -> None:
    if x.dim() not in (3, 5):
        raise ValueError(f"{name} expects (B, T, D) vectors or (B, T, C, H, W) maps, got {tuple(x.shape)}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} needs T >= 1 frames, got shape {tuple(x.shape)}")


class Fusion(nn.Module):
    """Base class: `name`, `input_kind` ("vectors" or "maps"), `options` (constructor options) and describe()."""

    name: str = ""
    input_kind: str = "vectors"

    def __init__(self, channels: int, **options) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        self.channels = channels
        self.options = dict(options)

    def _as_vectors(self, x: Tensor) -> Tensor:
        """Checked (B, T, D) frame vectors: maps (B, T, C, H, W) are average-pooled over H, W."""
        _check_input(x, type(self).__name__)
        if x.dim() == 5:
            x = x.mean(dim=(3, 4))
        if x.shape[2] != self.channels:
            raise ValueError(f"{type(self).__name__} built for D={self.channels}, got {tuple(x.shape)}")
        return x

    def describe(self) -> dict:
        return {"name": self.name, "class": type(self).__name__, "options": dict(self.options),
                "input_kind": self.input_kind,
                "num_parameters": int(sum(p.numel() for p in self.parameters()))}


class VectorFusion(Fusion):
    """Shared flat / hierarchical driver. Subclasses implement `_fuse(x (B, T, D))` returning
    (fused (B, D), weights (B, T) summing to 1, coef (B, T) with fused == sum_t coef_t * x_t, extra dict).

    Hierarchical: consecutive pairs are fused level by level (odd last item carried) until one vector is
    left. Because every operator's output is a linear combination of its inputs (coef), the effective
    weight of each original frame is tracked exactly through the tree; aux["weights"] is that coefficient
    vector renormalised to sum 1 (for all operators but spherical the coefficients already sum to 1).
    """

    def __init__(self, channels: int, hierarchical: bool = False, **options) -> None:
        super().__init__(channels, hierarchical=hierarchical, **options)
        self.hierarchical = bool(hierarchical)

    def _fuse(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> tuple[Tensor, dict]:
        x = self._as_vectors(x)
        if not self.hierarchical:
            fused, w, _, extra = self._fuse(x)
            return fused, {"weights": w, **extra}
        B, T, _ = x.shape
        nodes = x
        coef = torch.eye(T, device=x.device, dtype=x.dtype).expand(B, T, T)  # (B, node, frame)
        levels = []
        for pairs, carried in pairwise_levels(T):
            a = nodes[:, 0:2 * pairs].reshape(B * pairs, 2, -1)
            fused, w, c, _ = self._fuse(a)
            c = c.reshape(B, pairs, 2)
            ca = coef[:, 0:2 * pairs].reshape(B, pairs, 2, T)
            new_coef = (c.unsqueeze(-1) * ca).sum(2)  # (B, pairs, T)
            new_nodes = fused.reshape(B, pairs, -1)
            levels.append(w.reshape(B, pairs, 2))
            if carried:
                new_nodes = torch.cat([new_nodes, nodes[:, -1:]], dim=1)
                new_coef = torch.cat([new_coef, coef[:, -1:]], dim=1)
            nodes, coef = new_nodes, new_coef
        eff = coef[:, 0]
        eff = eff / eff.sum(1, keepdim=True).clamp_min(_EPS)
        return nodes[:, 0], {"weights": eff, "levels": levels}


class MeanFusion(VectorFusion):
    """Temporal average pooling (the baseline): w_t = 1/T. Hierarchical: pairwise means, so with odd
    counts the carried frames get more weight (e.g. T=3 -> 1/4, 1/4, 1/2)."""

    name = "mean"

    def _fuse(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        B, T, _ = x.shape
        w = x.new_full((B, T), 1.0 / T)
        return x.mean(1), w, w, {}


class MaxFusion(Fusion):
    """Element-wise max over frames. aux["weights"][b, t] = share of the D dimensions whose maximum comes
    from frame t (sums to 1). Max is associative, so hierarchical=True gives the same result; accepted for
    a uniform interface."""

    name = "max"

    def __init__(self, channels: int, hierarchical: bool = False) -> None:
        super().__init__(channels, hierarchical=hierarchical)

    def forward(self, x: Tensor) -> tuple[Tensor, dict]:
        x = self._as_vectors(x)
        fused, idx = x.max(dim=1)
        w = F.one_hot(idx, x.shape[1]).to(x.dtype).mean(1)
        return fused, {"weights": w}


class SoftmaxCosineFusion(VectorFusion):
    """w_t = softmax_t(cos(f_t, c) / tau), c = mean_t f_t; fused = sum_t w_t f_t.

    With tau = 1 (the studied setting) cos in [-1, 1] bounds the weight ratio by e^2: of two frames, one on
    the centre (cos 1) and one opposite (cos -1), the latter keeps e^-1 / (e + e^-1) ~ 0.119. Smaller tau
    sharpens. aux also holds "cos" (B, T).
    """

    name = "softmax_cosine"

    def __init__(self, channels: int, tau: float = 1.0, hierarchical: bool = False) -> None:
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}")
        super().__init__(channels, hierarchical=hierarchical, tau=float(tau))
        self.tau = float(tau)

    def _fuse(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        c = x.mean(1, keepdim=True)
        cos = guarded_cosine(x, c.expand_as(x), dim=-1)
        w = torch.softmax(cos / self.tau, dim=1)
        return (w.unsqueeze(-1) * x).sum(1), w, w, {"cos": cos}


class SphericalFusion(VectorFusion):
    """Fusion "on the circle": u_t = f_t / |f_t|, m = normalised mean of the u_t, theta_t = arccos(u_t . m),
    weights from the angles, fused = normalise(sum_t w_t u_t) (unit norm; times sum_t w_t |f_t| if
    keep_norm=True, so the output keeps the frames' scale).

    weighting="linear" (default): w_t proportional to (pi - theta_t): a frame opposite the centre gets 0.
    weighting="softmax": w_t = softmax_t(-theta_t / tau). Zero frames (no direction) get weight 0 (all
    zero: uniform weights, zero output). aux also holds "angles" (B, T) in radians.
    """

    name = "spherical"

    def __init__(self, channels: int, weighting: str = "linear", tau: float = 1.0, keep_norm: bool = False,
                 hierarchical: bool = False) -> None:
        if weighting not in ("linear", "softmax"):
            raise ValueError(f"weighting must be 'linear' or 'softmax', got {weighting!r}")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}")
        super().__init__(channels, hierarchical=hierarchical, weighting=weighting, tau=float(tau),
                         keep_norm=bool(keep_norm))
        self.weighting, self.tau, self.keep_norm = weighting, float(tau), bool(keep_norm)

    def _fuse(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        raw = torch.linalg.vector_norm(x, dim=-1)  # (B, T)
        norms = raw.clamp_min(_EPS)
        valid = (raw > _EPS).to(x.dtype)  # a zero frame has no direction: weight 0
        u = x / norms.unsqueeze(-1)
        m = u.mean(1)
        m = m / torch.linalg.vector_norm(m, dim=-1, keepdim=True).clamp_min(_EPS)
        # arccos has an infinite slope at +-1; stay just inside.
        cos = (u * m.unsqueeze(1)).sum(-1).clamp(-1.0 + 1e-6, 1.0 - 1e-6)
        theta = torch.arccos(cos)
        if self.weighting == "linear":
            s = (math.pi - theta) * valid
        else:
            s = torch.softmax(-theta / self.tau, dim=1) * valid
        tot = s.sum(1, keepdim=True)
        w = torch.where(tot > 0, s / tot.clamp_min(_EPS), torch.full_like(s, 1.0 / s.shape[1]))
        v = (w.unsqueeze(-1) * u).sum(1)
        vn = torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(_EPS)
        scale = 1.0 / vn
        if self.keep_norm:
            scale = scale * (w * norms).sum(1, keepdim=True)
        fused = v * scale
        coef = w * valid / norms * scale
        return fused, w, coef, {"angles": theta}


class TemporalAttentionFusion(VectorFusion):
    """Learned temporal attention (Gao & Nevatia, "Revisiting Temporal Modeling for Video-based Person
    ReID", arXiv 1805.02104, 2018): a per-frame score from a frame-wise layer followed by a temporal
    convolution, normalised over T; fused = sum_t a_t f_t.

    Their spatial conv over the whole layer4 map is applied here to the pooled vector (a Linear D -> hidden);
    then ReLU, Conv1d(hidden, 1, kernel_size, padding=kernel_size // 2) over T, then (score_relu=True, the
    default, as in the paper) a ReLU on the temporal scores, so they are >= 0 before normalising;
    score_relu=False normalises the raw conv output (reidlab's behaviour before the option existed).
    normalise="softmax" (default) or "sigmoid" (sigmoid scores divided by their sum), the two variants of
    the paper. Works for any T >= 1. aux also holds "scores" (B, T): the scores fed to the normaliser.
    """

    name = "temporal_attention"

    def __init__(self, channels: int, hidden: int = 256, kernel_size: int = 3, normalise: str = "softmax",
                 score_relu: bool = True, hierarchical: bool = False) -> None:
        if normalise not in ("softmax", "sigmoid"):
            raise ValueError(f"normalise must be 'softmax' or 'sigmoid', got {normalise!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
        super().__init__(channels, hierarchical=hierarchical, hidden=hidden, kernel_size=kernel_size,
                         normalise=normalise, score_relu=bool(score_relu))
        self.frame = nn.Linear(channels, hidden)
        self.temporal = nn.Conv1d(hidden, 1, kernel_size, padding=kernel_size // 2)
        self.normalise = normalise
        self.score_relu = bool(score_relu)

    def scores(self, x: Tensor) -> Tensor:
        """(B, T, D) -> unnormalised scores (B, T), the normaliser's input (>= 0 with score_relu)."""
        h = F.relu(self.frame(x)).transpose(1, 2)  # (B, hidden, T)
        s = self.temporal(h).squeeze(1)
        return F.relu(s) if self.score_relu else s

    def _fuse(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, dict]:
        s = self.scores(x)
        if self.normalise == "softmax":
            w = torch.softmax(s, dim=1)
        else:
            g = torch.sigmoid(s)
            w = g / g.sum(1, keepdim=True).clamp_min(_EPS)
        return (w.unsqueeze(-1) * x).sum(1), w, w, {"scores": s}


class TemplateMaskFusion(Fusion):
    """Template attention-mask fusion of frame maps, level by level on consecutive pairs.

    For a pair of maps F_i, F_j (C, H, W): template A = (F_i + F_j) / 2; at each position p the masks
    alpha_p = 1 / cos(A_p, F_i,p) and beta_p = 1 / cos(A_p, F_j,p) over the C-dim channel vectors
    (mask="inv_cos": rewards change; mask="cos": alpha = cos, rewards agreement). The pair fuses to
        G = (alpha * F_i + beta * F_j)^2 + gamma * F_i + delta * F_j     (square element-wise)
    with learnable scalars gamma, delta (init 0.5, so the linear part starts as the mean), followed by a
    refinement conv (refine_kernel x refine_kernel, C -> C) - BN - ReLU (the ReLU keeps the next level's
    inputs non-negative like backbone maps). The refinement is shared by all pairs and levels. Odd counts
    carry the last map to the next level unchanged; T = 1 returns the single map unchanged.

    Guards: norms clamped at eps (zero vectors -> cos 0); inv_cos clamps cos to [min_cos, 1] before
    inverting (so alpha <= 1 / min_cos), cos mode clamps to [0, 1]. No NaN/inf for zero or anti-aligned
    inputs (anti-aligned: A = 0, cos 0).

    aux: "masks": per level (B, P, 2, H, W) [alpha, beta]; "weights": (B, T) effective per-frame share =
    product along the tree of each pair's mean mask share alpha / (alpha + beta) (carried maps keep their
    share). A descriptive statistic of how the masks split each pair, not a linear decomposition (G is
    non-linear); it sums to 1.
    """

    name = "template_mask"
    input_kind = "maps"

    def __init__(self, channels: int, mask: str = "inv_cos", min_cos: float = 0.05, eps: float = _EPS,
                 refine: bool = True, refine_kernel: int = 1, gamma_init: float = 0.5,
                 delta_init: float = 0.5) -> None:
        if mask not in ("inv_cos", "cos"):
            raise ValueError(f"mask must be 'inv_cos' or 'cos', got {mask!r}")
        if not 0 < min_cos <= 1:
            raise ValueError(f"min_cos must be in (0, 1], got {min_cos!r}")
        if refine_kernel < 1 or refine_kernel % 2 == 0:
            raise ValueError(f"refine_kernel must be a positive odd int, got {refine_kernel}")
        super().__init__(channels, mask=mask, min_cos=float(min_cos), eps=float(eps), refine=bool(refine),
                         refine_kernel=refine_kernel, gamma_init=float(gamma_init), delta_init=float(delta_init))
        self.mask, self.min_cos, self.eps = mask, float(min_cos), float(eps)
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init)))
        self.delta = nn.Parameter(torch.tensor(float(delta_init)))
        if refine:
            self.refine = nn.Sequential(
                nn.Conv2d(channels, channels, refine_kernel, padding=refine_kernel // 2, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            )
            nn.init.kaiming_normal_(self.refine[0].weight, mode="fan_out", nonlinearity="relu")
        else:
            self.refine = nn.Identity()

    def masks(self, fi: Tensor, fj: Tensor) -> tuple[Tensor, Tensor]:
        """(N, C, H, W) pair -> (alpha, beta), each (N, 1, H, W)."""
        a = 0.5 * (fi + fj)
        ci = guarded_cosine(a, fi, dim=1, eps=self.eps).unsqueeze(1)
        cj = guarded_cosine(a, fj, dim=1, eps=self.eps).unsqueeze(1)
        if self.mask == "inv_cos":
            return 1.0 / ci.clamp(self.min_cos, 1.0), 1.0 / cj.clamp(self.min_cos, 1.0)
        return ci.clamp(0.0, 1.0), cj.clamp(0.0, 1.0)

    def fuse_pair(self, fi: Tensor, fj: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, C, H, W) x 2 -> (fused (N, C, H, W), alpha, beta)."""
        alpha, beta = self.masks(fi, fj)
        g = (alpha * fi + beta * fj).pow(2) + self.gamma * fi + self.delta * fj
        return self.refine(g), alpha, beta

    def forward(self, x: Tensor) -> tuple[Tensor, dict]:
        _check_input(x, type(self).__name__)
        vectors = x.dim() == 3
        if vectors:
            x = x[..., None, None]
        B, T, C, H, W = x.shape
        if C != self.channels:
            raise ValueError(f"TemplateMaskFusion built for C={self.channels}, got {tuple(x.shape)}")
        nodes = x
        share = torch.eye(T, device=x.device, dtype=x.dtype).expand(B, T, T)
        masks = []
        for pairs, carried in pairwise_levels(T):
            fi = nodes[:, 0:2 * pairs:2].reshape(B * pairs, C, H, W)
            fj = nodes[:, 1:2 * pairs:2].reshape(B * pairs, C, H, W)
            g, alpha, beta = self.fuse_pair(fi, fj)
            ab = torch.cat([alpha, beta], dim=1).reshape(B, pairs, 2, H, W)
            masks.append(ab)
            tot = ab.sum(2, keepdim=True)
            # both masks 0 (cos mode, anti-aligned pair): neither frame is preferred -> 1/2 each
            frac = torch.where(tot > self.eps, ab / tot.clamp_min(self.eps), 0.5).mean(dim=(3, 4))  # (B, P, 2)
            sp = share[:, 0:2 * pairs].reshape(B, pairs, 2, T)
            new_share = (frac.unsqueeze(-1) * sp).sum(2)
            new_nodes = g.reshape(B, pairs, C, H, W)
            if carried:
                new_nodes = torch.cat([new_nodes, nodes[:, -1:]], dim=1)
                new_share = torch.cat([new_share, share[:, -1:]], dim=1)
            nodes, share = new_nodes, new_share
        fused = nodes[:, 0]
        if vectors:
            fused = fused.flatten(1)
        return fused, {"weights": share[:, 0], "masks": masks}


FUSIONS: dict[str, type[Fusion]] = {
    "mean": MeanFusion,
    "max": MaxFusion,
    "softmax_cosine": SoftmaxCosineFusion,
    "spherical": SphericalFusion,
    "temporal_attention": TemporalAttentionFusion,
    "template_mask": TemplateMaskFusion,
}


def build_fusion(name: str, channels: int, **options) -> Fusion:
    """Build the fusion operator `name` (a FUSIONS key) for D = `channels` features.
    Unknown names or options -> ValueError listing what is allowed."""
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}{did_you_mean(str(name), FUSIONS)}; "
                         f"choose one of {sorted(FUSIONS)}")
    cls = FUSIONS[name]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "channels")]
    bad = sorted(k for k in options if k not in allowed)
    if bad:
        hint = did_you_mean(bad[0], allowed) if len(bad) == 1 else ""
        raise ValueError(f"fusion {name!r} got unknown option(s) {bad}{hint}; allowed: {allowed}")
    return cls(channels, **options)
