"""Orthogonality regularisers for features (O.F.) and conv weights (O.W.).

ABD-Net (Chen et al., "ABD-Net: Attentive but Diverse Person Re-Identification", ICCV 2019) penalises the
spread of the Gram spectrum, SVDO = beta * (lambda_max(M M^T) - lambda_min(M M^T))^2, with both extremes
estimated by a couple of power iterations instead of an SVD. Features are reshaped C x (H*W) per sample,
conv weights O x (C*k*k).

Estimator (`power_iteration_extremes`), as described in the paper:
  * lambda_1: from a fixed start vector q, repeat ``n_iter`` times ``p <- X q, q <- X p``; lambda_1 ~ |q| / |p|.
  * lambda_min: the same iteration on ``Y = X - lambda_1 I`` gives the dominant eigenvalue mu of Y (which is
    lambda_min - lambda_1 once lambda_1 is close to lambda_max); lambda_min ~ lambda_1 + mu, the sign of mu
    taken from the Rayleigh quotient <p, Y p>.

Implementation choices that keep O.W. on every conv of a ResNet-50 cheap (see benchmarks/bench_orth.py):
  * Matrix-free products: ``X v = (v^T M) M^T`` costs 2*O*K multiply-adds; the Gram X itself (O*O*K) is
    never formed. So the "rows" Gram (O x O) and the "columns" Gram (K x K) cost the same here; ``side``
    is a semantic choice, not a speed one.
  * ``grad="fixed_vectors"`` (default): the iterations run without autograd; the returned estimates
    |X p| / |p| are then re-evaluated, both in one pass over M, with the final vectors p held constant and
    an analytic backward (one M-sized write). The *values* are exactly the paper's |q| / |p|; the gradient
    drops the dependence of p on M. |X p| / |p| is stationary in p at an eigenvector (it is the square root
    of the Rayleigh quotient of X^2), so the dropped term vanishes as the iteration converges (tested: equal
    to the eigvalsh gradient at convergence). ``grad="unrolled"`` backpropagates through every iteration
    with autograd, as the published code does (several times slower).
  * `WeightOrthogonality` stacks equally shaped weights (one bmm per step for a stack), on CPU in chunks of
    at most 1 MiB so that the 4 * n_iter re-reads of a chunk hit the cache. Measured on CPU, the grouping
    itself gains little over a per-layer loop (the cost is memory traffic, not Python overhead); the
    row-vector products and the analytic backward are what made it cheap.

Gram side: when M has more rows than columns (O > K, e.g. an expanding 1x1 conv, or a C x (H*W) feature map
with fewer positions than channels) the O x O Gram has rank <= K and lambda_min is a structural zero; the
penalty then only shrinks lambda_max. ``side="smaller"`` uses the smaller Gram (K x K = M^T M, same nonzero
spectrum), whose lambda_min is the smallest *nonzero* eigenvalue. ``side="rows"`` (default) is the paper's
O x O Gram. `WeightOrthogonality.describe()` / `FeatureOrthogonality.describe()` record what was used.

Start epoch: these modules have no notion of epochs; the engine decides from which epoch it adds them
(config keys for O.F./O.W. start epochs live in the engine's RunConfig).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import Tensor, nn

from reidlab.suggest import did_you_mean

__all__ = [
    "power_iteration_extremes",
    "dominant_eigenvalue",
    "exact_extremes",
    "svdo_distance",
    "svdo_exact_distance",
    "so_distance",
    "srip_distance",
    "none_distance",
    "REGULARIZERS",
    "WeightOrthogonality",
    "FeatureOrthogonality",
]

SIDES = ("rows", "smaller")
GRAD_MODES = ("fixed_vectors", "unrolled")
_EPS = 1e-12

_start_cache: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}


def _start_vector(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Deterministic unit start vector of length n (seeded Gaussian, cached).

    A fixed Gaussian rather than ones: ones can be exactly orthogonal to the top eigenvector of
    structured matrices (e.g. zero-mean rows), which a generic vector is not (with probability 1).
    """
    key = (n, dtype, device)
    v = _start_cache.get(key)
    if v is None:
        g = torch.Generator().manual_seed(20190826 + n)
        v = torch.randn(n, generator=g, dtype=torch.float64)
        v = (v / v.norm()).to(device=device, dtype=dtype)
        _start_cache[key] = v
    return v


def _check_matrix(M: Tensor, what: str = "M") -> Tensor:
    if not isinstance(M, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(M).__name__}")
    if M.dim() not in (2, 3):
        raise ValueError(f"{what} must be 2-D (O, K) or batched 3-D (L, O, K); got shape {tuple(M.shape)}")
    if M.shape[-1] == 0 or M.shape[-2] == 0:
        raise ValueError(f"{what} has an empty dimension: shape {tuple(M.shape)}")
    return M


def _orient(M: Tensor, side: str) -> Tensor:
    """Return the matrix whose *row* Gram is wanted: M itself, or M^T for side='smaller' when O > K."""
    if _use_columns(M, side):
        return M.transpose(-1, -2)
    return M


def _use_columns(M: Tensor, side: str) -> bool:
    """True when the chosen Gram is the K x K one, M^T M (side='smaller' and O > K)."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    return side == "smaller" and M.shape[-2] > M.shape[-1]


def _gram_mv(M: Tensor, v: Tensor, shift: Tensor | float | None = None, cols: bool = False) -> Tensor:
    """(G - shift I) v with G = M M^T (cols=False, v (L, O)) or G = M^T M (cols=True, v (L, K)), for
    batched M (L, O, K); v may also hold r vectors at once, (L, r, n).

    Only row-vector products are used, (v^T M) M^T or (v^T M^T) M: bmm with M or M^T as the *right*
    operand reads M in its stored layout, while a transposed *left* 3-D operand was ~8x slower on CPU.
    So the K x K Gram needs no transposed copy of M either.
    """
    single = v.dim() == 2
    V = v.unsqueeze(1) if single else v
    Mt = M.transpose(1, 2)
    out = torch.bmm(torch.bmm(V, Mt), M) if cols else torch.bmm(torch.bmm(V, M), Mt)
    if shift is not None:
        s = shift.reshape(-1, 1, 1) if isinstance(shift, Tensor) else shift
        out = out - s * V
    return out.squeeze(1) if single else out


def _unit(v: Tensor) -> Tensor:
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(_EPS)


def _iterate(M: Tensor, n_iter: int, shift: Tensor | float | None, cols: bool = False) -> tuple[Tensor, Tensor]:
    """`p <- Y q, q <- Y p` n_iter times from the fixed start vector, Y = M M^T - shift I (M: (L, O, K)).

    Returns the last unit p (L, O) and q = Y p (L, O): |q| / |p| = |q| is the estimate of |mu|, the
    dominant eigenvalue magnitude of Y, and sign(<p, q>) its sign.
    """
    L, O, K = M.shape
    n = K if cols else O
    q = _start_vector(n, M.dtype, M.device).expand(L, n)
    p = q
    for it in range(n_iter):
        p = _unit(_gram_mv(M, q, shift, cols))
        q_new = _gram_mv(M, p, shift, cols)
        if it < n_iter - 1:
            q = _unit(q_new)
    return p, q_new


class _ShiftedGramNorm(torch.autograd.Function):
    """n_i = |(G - s_i I) p_i| for fixed unit vectors P (L, r, n) and fixed shifts s (L, r); M (L, O, K),
    G = M M^T (cols=False, n = O) or M^T M (cols=True, n = K).

    Analytic backward, one pass over M. Rows: with z = M^T p, y = M z - s p, w = M^T y,
    dn/dM = (y z^T + p w^T) / n. Columns (A = M^T): dn/dA as above, so dn/dM = (z y^T + w p^T) / n.
    Zero where n = 0. Autograd through the bmm's would write several M-sized outer products instead.
    """

    @staticmethod
    def forward(ctx, M: Tensor, P: Tensor, shift: Tensor, cols: bool) -> Tensor:  # type: ignore[override]
        Mt = M.transpose(1, 2)
        Z = torch.bmm(P, Mt if cols else M)  # (L, r, K) rows / (L, r, O) cols
        Y = torch.bmm(Z, M if cols else Mt) - shift.unsqueeze(-1) * P  # (L, r, n)
        n = torch.linalg.vector_norm(Y, dim=-1)
        ctx.save_for_backward(M, P, Z, Y, n)
        ctx.cols = cols
        return n

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        M, P, Z, Y, n = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        coef = torch.where(n > 0, g / n.clamp_min(_EPS), torch.zeros_like(n))
        Yt = coef.unsqueeze(-1) * Y
        # (L, O, 2r) operands made contiguous: bmm with a transposed left operand was ~4x slower on CPU
        if ctx.cols:
            W = torch.bmm(Yt, M.transpose(1, 2))  # (L, r, O)
            gM = torch.bmm(torch.cat([Z, W], 1).transpose(1, 2).contiguous(), torch.cat([Yt, P], 1))
        else:
            W = torch.bmm(Yt, M)  # (L, r, K)
            gM = torch.bmm(torch.cat([Yt, P], 1).transpose(1, 2).contiguous(), torch.cat([Z, W], 1))
        return gM, None, None, None


def _extremes(M: Tensor, n_iter: int, unrolled: bool, cols: bool = False) -> tuple[Tensor, Tensor]:
    """(lambda_1, lambda_min) estimates for M (L, O, K); see power_iteration_extremes."""
    if unrolled:
        p1, q1 = _iterate(M, n_iter, None, cols)
        lam1 = torch.linalg.vector_norm(q1, dim=-1)
        p2, q2 = _iterate(M, n_iter, lam1, cols)
        sign = torch.where((p2 * q2).sum(-1) > 0, 1.0, -1.0).to(M.dtype).detach()
        return lam1, lam1 + sign * torch.linalg.vector_norm(q2, dim=-1)
    with torch.no_grad():
        Md = M.detach()
        p1, q1 = _iterate(Md, n_iter, None, cols)
        lam1 = torch.linalg.vector_norm(q1, dim=-1)
        p2, q2 = _iterate(Md, n_iter, lam1, cols)
        n2 = torch.linalg.vector_norm(q2, dim=-1)
        dot = (p2 * q2).sum(-1)
        sign = torch.where(dot > 0, 1.0, -1.0).to(M.dtype)
        dn2_dshift = torch.where(n2 > 0, -dot / n2.clamp_min(_EPS), torch.zeros_like(n2))
        P = torch.stack([p1, p2], 1)
        shifts = torch.stack([torch.zeros_like(lam1), lam1], 1)
    # Both estimates are re-evaluated at their final vectors in one pass over M. lambda_min's shift is
    # lambda_1 (a function of M): its first-order effect is added as dn2/ds * (n1 - n1.detach()), which is
    # 0 in value and carries the chain-rule term in the gradient.
    n = _ShiftedGramNorm.apply(M, P, shifts, cols)
    n1, n2 = n[:, 0], n[:, 1]
    return n1, n1 + sign * (n2 + dn2_dshift * (n1 - n1.detach()))


def _dominant(M: Tensor, n_iter: int, shift: float, unrolled: bool, cols: bool = False) -> Tensor:
    """Signed dominant eigenvalue of (G - shift I), M (L, O, K), G = M M^T or M^T M (cols)."""
    s = shift if shift else None
    if unrolled:
        p, q = _iterate(M, n_iter, s, cols)
        sign = torch.where((p * q).sum(-1) > 0, 1.0, -1.0).to(M.dtype).detach()
        return sign * torch.linalg.vector_norm(q, dim=-1)
    with torch.no_grad():
        p, q = _iterate(M.detach(), n_iter, s, cols)
        sign = torch.where((p * q).sum(-1) > 0, 1.0, -1.0).to(M.dtype)
        shifts = torch.full_like(sign, float(shift)).unsqueeze(1)
    return sign * _ShiftedGramNorm.apply(M, p.unsqueeze(1), shifts, cols)[:, 0]


def dominant_eigenvalue(M: Tensor, n_iter: int = 2, *, shift: float = 0.0, side: str = "rows",
                        grad: str = "fixed_vectors") -> Tensor:
    """Signed dominant eigenvalue of (G - shift I), G the Gram of M (rows: M M^T), by power iteration.

    M: (O, K) or (L, O, K). Returns a scalar or (L,). Used by SRIP (shift=1: |result| = sigma(G - I)).
    """
    _check_matrix(M)
    _check_n_iter(n_iter)
    _check_grad(grad)
    squeeze = M.dim() == 2
    A = M.unsqueeze(0) if squeeze else M
    out = _dominant(A, n_iter, float(shift), grad == "unrolled", _use_columns(A, side))
    return out[0] if squeeze else out


def _check_n_iter(n_iter: int) -> None:
    if not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be an integer >= 1, got {n_iter!r}")


def _check_grad(grad: str) -> None:
    if grad not in GRAD_MODES:
        raise ValueError(f"grad must be one of {GRAD_MODES}, got {grad!r}")


def power_iteration_extremes(M: Tensor, n_iter: int = 2, *, side: str = "rows",
                             grad: str = "fixed_vectors") -> tuple[Tensor, Tensor]:
    """Estimates (lambda_max, lambda_min) of the Gram M M^T by power iteration (ABD-Net, Chen et al. 2019).

    Args:
        M: (O, K) matrix, or a batch (L, O, K) of equally shaped matrices (one bmm per step for all L).
        n_iter: iterations per eigenvalue; each iteration is ``p <- X q, q <- X p`` (2 Gram mat-vecs).
        side: "rows" = the O x O Gram M M^T (paper); "smaller" = the smaller of M M^T and M^T M (same
            nonzero spectrum; differs from "rows" only in lambda_min when O > K, where the O x O Gram has a
            structural zero eigenvalue).
        grad: "fixed_vectors" (default; gradient at the final iteration vector) or "unrolled".
    Returns:
        (lambda_max, lambda_min): scalars for 2-D M, (L,) tensors for 3-D M; same dtype as M.
    Deterministic (fixed start vector). Zero matrices give (0, 0) with zero (finite) gradient.
    """
    _check_matrix(M)
    _check_n_iter(n_iter)
    _check_grad(grad)
    squeeze = M.dim() == 2
    A = M.unsqueeze(0) if squeeze else M
    lam1, lam_min = _extremes(A, n_iter, grad == "unrolled", _use_columns(A, side))
    if squeeze:
        return lam1[0], lam_min[0]
    return lam1, lam_min


def _gram(M: Tensor) -> Tensor:
    return torch.matmul(M, M.transpose(-1, -2))


def exact_extremes(M: Tensor, *, side: str = "rows") -> tuple[Tensor, Tensor]:
    """(lambda_max, lambda_min) of the Gram by `torch.linalg.eigvalsh` (the expensive reference)."""
    _check_matrix(M)
    squeeze = M.dim() == 2
    A = _orient(M.unsqueeze(0) if squeeze else M, side)
    ev = torch.linalg.eigvalsh(_gram(A))
    lmax, lmin = ev[..., -1], ev[..., 0]
    if squeeze:
        return lmax[0], lmin[0]
    return lmax, lmin


# ---------------------------------------------------------------- regularisers: distance per matrix
# Every regulariser maps a batch M (L, O, K) to a non-negative distance d (L,); the penalty is
# beta * sum(d ** exponent). With exponent=2: svdo -> (lambda_max - lambda_min)^2 (paper), so -> ||G - I||_F^2
# (Bansal et al., "Can We Gain More from Orthogonality Regularizations...", NeurIPS 2018),
# srip -> sigma(G - I)^2; with exponent=1 srip is the SRIP of Bansal et al.

def svdo_distance(M: Tensor, *, n_iter: int = 2, side: str = "rows", grad: str = "fixed_vectors") -> Tensor:
    """|lambda_max - lambda_min| of the Gram by power iteration; (L,)."""
    lmax, lmin = power_iteration_extremes(M, n_iter, side=side, grad=grad)
    return (lmax - lmin).abs()


def svdo_exact_distance(M: Tensor, *, n_iter: int = 2, side: str = "rows",
                        grad: str = "fixed_vectors") -> Tensor:
    """lambda_max - lambda_min of the Gram by eigvalsh (reference; n_iter/grad unused); (L,)."""
    lmax, lmin = exact_extremes(M, side=side)
    return (lmax - lmin).clamp_min(0.0)


def so_distance(M: Tensor, *, n_iter: int = 2, side: str = "rows", grad: str = "fixed_vectors") -> Tensor:
    """||G - I||_F with G the chosen Gram; (L,). Computed through the smaller Gram S:
    ||G - I||_F^2 = ||S||_F^2 - 2 ||M||_F^2 + n, n the size of G (||M M^T||_F = ||M^T M||_F)."""
    A = _orient(M, side)
    n = A.shape[-2]
    small = A if A.shape[-2] <= A.shape[-1] else A.transpose(-1, -2)
    S = _gram(small)
    sq = S.pow(2).sum((-2, -1)) - 2.0 * A.pow(2).sum((-2, -1)) + n
    # sqrt'(0) is infinite; the tiny floor keeps the gradient finite when M is exactly orthogonal.
    return (sq.clamp_min(0.0) + _EPS).sqrt()


def srip_distance(M: Tensor, *, n_iter: int = 2, side: str = "rows", grad: str = "fixed_vectors") -> Tensor:
    """Spectral norm sigma(G - I) by power iteration on the symmetric G - I; (L,)."""
    return _dominant(M, n_iter, 1.0, grad == "unrolled", _use_columns(M, side)).abs()


def none_distance(M: Tensor, *, n_iter: int = 2, side: str = "rows", grad: str = "fixed_vectors") -> Tensor:
    """Zeros (L,), still attached to the graph so callers can backpropagate uniformly."""
    return M.sum((-2, -1)) * 0.0


REGULARIZERS: dict[str, Callable[..., Tensor]] = {
    "svdo": svdo_distance,
    "svdo_exact": svdo_exact_distance,
    "so": so_distance,
    "srip": srip_distance,
    "none": none_distance,
}


def _check_common(name: str, beta: float, exponent: float, side: str, n_iter: int, grad: str) -> None:
    if name not in REGULARIZERS:
        raise ValueError(f"unknown orthogonality regulariser {name!r}{did_you_mean(name, REGULARIZERS)}; "
                         f"choose one of {sorted(REGULARIZERS)}")
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    if not exponent > 0:
        raise ValueError(f"exponent must be > 0, got {exponent!r}")
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    _check_n_iter(n_iter)
    _check_grad(grad)


def _distances(name: str, M: Tensor, n_iter: int, side: str, grad: str) -> Tensor:
    # float32 and autocast off: the Gram spectrum of a half-precision weight overflows/loses digits.
    dev = M.device.type
    with torch.autocast(device_type=dev if dev in ("cuda", "cpu") else "cpu", enabled=False):
        return REGULARIZERS[name](M.float(), n_iter=n_iter, side=side, grad=grad)


def _gram_side(rows: int, cols: int, side: str) -> str:
    return "columns" if (side == "smaller" and rows > cols) else "rows"


OW_SCOPES = ("all", "backbone", "stem")
REDUCTIONS = ("sum", "mean")


def _scoped_convs(model: nn.Module, scope: str) -> list[tuple[str, nn.Conv2d]]:
    """(name, conv) of the model's nn.Conv2d layers within ``scope`` (see WeightOrthogonality)."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if scope == "all":
        return convs
    if not hasattr(model, "trunk_modules"):
        raise ValueError(f"O.W. scope {scope!r} needs a reidlab model with trunk_modules(); "
                         f"got {type(model).__name__} (use scope='all')")
    trunk = model.trunk_modules()
    if scope == "stem":
        first = next((m for m in trunk[0].modules() if isinstance(m, nn.Conv2d)), None)
        return [(n, m) for n, m in convs if m is first]
    keep = {id(m) for t in trunk for m in t.modules() if isinstance(m, nn.Conv2d)}
    return [(n, m) for n, m in convs if id(m) in keep]


class WeightOrthogonality:
    """O.W.: beta * factor * reduce over the scoped nn.Conv2d layers of d(W)^exponent, W reshaped O x (C*k*k).

    scope: "all" (default) every nn.Conv2d at any nesting level -- ResNet downsample convs and, for ABD-Net,
    the reduce, sum, DANet-head and PAM q/k/v convs outside the backbone (68 layers for ResNet-50 ABD);
    "backbone": the convs of ``model.trunk_modules()`` (trunk and the branches' layer4 copies); "stem": the
    first conv of the trunk only -- all that the released ABD-Net code's module walk reaches (it recurses into
    nn.Sequential but not into ResNet blocks). reduction: "sum" or "mean" over those layers. factor: constant
    multiplier (the released code computes beta * 10 * (lambda_max - lambda_min)^2: factor 10, exponent 2).
    Equally shaped weights are stacked and regularised with one batched product per power-iteration step.
    Call with no arguments: ``loss_ow = ow()`` (already multiplied by beta and factor).
    """

    def __init__(self, model: nn.Module, name: str = "svdo", beta: float = 1e-3, exponent: float = 2,
                 side: str = "rows", n_iter: int = 2, grad: str = "fixed_vectors",
                 chunk_bytes: int | None = None, scope: str = "all", reduction: str = "sum",
                 factor: float = 1.0) -> None:
        _check_common(name, beta, exponent, side, n_iter, grad)
        if scope not in OW_SCOPES:
            raise ValueError(f"O.W. scope must be one of {OW_SCOPES}, got {scope!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"O.W. reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if not factor >= 0:
            raise ValueError(f"O.W. factor must be >= 0, got {factor!r}")
        self.name, self.beta, self.exponent = name, float(beta), exponent
        self.side, self.n_iter, self.grad = side, n_iter, grad
        self.scope, self.reduction, self.factor = scope, reduction, float(factor)
        self.layers: list[tuple[str, nn.Conv2d]] = _scoped_convs(model, scope)
        groups: OrderedDict[tuple[int, int], list[int]] = OrderedDict()
        for i, (_, conv) in enumerate(self.layers):
            w = conv.weight
            groups.setdefault((w.shape[0], w[0].numel()), []).append(i)
        self.groups = groups
        # Equal shapes are stacked for one bmm per step. On CPU only up to chunk_bytes (default 1 MiB) per
        # stack: the power iteration re-reads the stack 4 * n_iter times, which is fast while it stays in
        # cache. On GPUs (default: no limit) fewer, larger kernels win. A single layer is used as a view.
        self.chunk_bytes = chunk_bytes
        self._chunks: dict[int, list[tuple[tuple[int, int], list[int]]]] = {}

    def chunks(self, device: torch.device | None = None) -> list[tuple[tuple[int, int], list[int]]]:
        """[((O, K), layer indices)] processed together, for the device the weights are on."""
        if device is None:
            device = self.layers[0][1].weight.device if self.layers else torch.device("cpu")
        limit = self.chunk_bytes if self.chunk_bytes is not None else (1 << 20 if device.type == "cpu" else 1 << 62)
        if limit not in self._chunks:
            out = []
            for (o, k), idx in self.groups.items():
                per = max(1, int(limit) // (o * k * 4))
                for j in range(0, len(idx), per):
                    out.append(((o, k), idx[j:j + per]))
            self._chunks[limit] = out
        return self._chunks[limit]

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def _group_distances(self) -> list[tuple[list[int], Tensor]]:
        out = []
        for (o, k), idx in self.chunks():
            ws = [self.layers[i][1].weight.reshape(o, k) for i in idx]
            M = ws[0].unsqueeze(0) if len(ws) == 1 else torch.stack(ws)
            out.append((idx, _distances(self.name, M, self.n_iter, self.side, self.grad)))
        return out

    def __call__(self) -> Tensor:
        if not self.layers:
            return torch.zeros(())
        dev = self.layers[0][1].weight.device
        if self.name == "none" or self.beta == 0:
            return torch.zeros((), device=dev)
        total = torch.zeros((), device=dev)
        for _, d in self._group_distances():
            total = total + d.pow(self.exponent).sum()
        if self.reduction == "mean":
            total = total / len(self.layers)
        return (self.beta * self.factor) * total

    @torch.no_grad()
    def layer_distances(self) -> dict[str, float]:
        """Per-layer distance d (before exponent and beta), keyed by module name; for plots."""
        res: dict[str, float] = {}
        for idx, d in self._group_distances():
            for i, v in zip(idx, d.tolist()):
                res[self.layers[i][0]] = v
        return {n: res[n] for n, _ in self.layers}

    def describe(self) -> dict:
        sides = {"rows": 0, "columns": 0}
        deficient = 0
        for _, conv in self.layers:
            o, k = conv.weight.shape[0], conv.weight[0].numel()
            sides[_gram_side(o, k, self.side)] += 1
            deficient += int(o > k)
        return {
            "class": type(self).__name__, "name": self.name, "beta": self.beta, "exponent": self.exponent,
            "side": self.side, "n_iter": self.n_iter, "grad": self.grad, "num_layers": self.num_layers,
            "scope": self.scope, "reduction": self.reduction, "factor": self.factor,
            "num_groups": len(self.groups), "num_chunks": len(self.chunks()), "gram_side_counts": sides,
            "layers_with_more_rows_than_columns": deficient,
            "matrix": f"O x (C*k*k) per nn.Conv2d (scope {self.scope})",
        }


OF_POSITIONS = ("intermediate", "before", "cam", "pam", "after")


class FeatureOrthogonality:
    """O.F.: beta * factor * sum over taps of w_tap * reduce_b d(F_b)^exponent, F_b the C x (H*W) map of sample b.

    ``reduction="mean"`` averages over samples (batch-size independent). ``shallow_weight`` is w of the first
    (shallow) tap; the others have w = 1. The released ABD-Net code (torchreid/losses/of_penalty.py) uses
    sum / (B / 32) = 32 x mean (factor 32), exponent 1, shallow weight 0.01, and the per-stripe positions
    of `positions` instead of the raw res_conv_5 map.
    """

    def __init__(self, name: str = "svdo", beta: float = 1e-6, exponent: float = 1, n_iter: int = 2,
                 side: str = "rows", grad: str = "fixed_vectors", reduction: str = "mean",
                 shallow_weight: float = 1.0, factor: float = 1.0) -> None:
        _check_common(name, beta, exponent, side, n_iter, grad)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if not shallow_weight >= 0 or not factor >= 0:
            raise ValueError(f"shallow_weight and factor must be >= 0, got {shallow_weight!r}, {factor!r}")
        self.name, self.beta, self.exponent = name, float(beta), exponent
        self.side, self.n_iter, self.grad, self.reduction = side, n_iter, grad, reduction
        self.shallow_weight, self.factor = float(shallow_weight), float(factor)
        self.last_taps: list[dict] = []

    def _term(self, t: Tensor, what: str, info: list[dict]) -> Tensor | None:
        if t.dim() != 4:
            raise ValueError(f"O.F. {what} must be (B, C, H, W), got shape {tuple(t.shape)}")
        B, C, H, W = t.shape
        info.append({"tap": what, "shape": [C, H * W], "gram": _gram_side(C, H * W, self.side),
                     "rank_deficient_rows": C > H * W})
        if self.name == "none" or self.beta == 0:
            return None
        v = _distances(self.name, t.reshape(B, C, H * W), self.n_iter, self.side, self.grad).pow(self.exponent)
        return v.mean() if self.reduction == "mean" else v.sum()

    def __call__(self, taps: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
        """taps: [shallow map, further maps ...] each (B, C, H, W) -> scalar loss."""
        if isinstance(taps, Tensor):
            taps = [taps]
        if len(taps) == 0:
            return torch.zeros(())
        info: list[dict] = []
        total = torch.zeros((), device=taps[0].device)
        for i, t in enumerate(taps):
            v = self._term(t, f"tap {i}", info)
            if v is not None:
                total = total + (self.shallow_weight if i == 0 else 1.0) * v
        self.last_taps = info
        return (self.beta * self.factor) * total

    def positions(self, maps: dict[str, list[Tensor]]) -> Tensor:
        """The released code's O.F.: maps {"intermediate": [shallow map], "before"/"cam"/"pam"/"after": one map
        per stripe}; each position's term is averaged over its maps (stripes), "intermediate" weighted by
        shallow_weight, positions summed -> scalar loss."""
        maps = {k: v for k, v in maps.items() if k != "res_conv_5"}  # reidlab's "trunk" tap, not a released position
        unknown = sorted(set(maps) - set(OF_POSITIONS))
        if unknown:
            raise ValueError(f"unknown O.F. positions {unknown}; expected a subset of {OF_POSITIONS}")
        info: list[dict] = []
        total: Tensor | None = None
        for key in OF_POSITIONS:
            ts = maps.get(key) or []
            vals = [v for v in (self._term(t, f"{key}[{j}]", info) for j, t in enumerate(ts)) if v is not None]
            if not vals:
                continue
            v = torch.stack(vals).mean() * (self.shallow_weight if key == "intermediate" else 1.0)
            total = v if total is None else total + v
        self.last_taps = info
        if total is None:
            return torch.zeros(())
        return (self.beta * self.factor) * total

    def describe(self) -> dict:
        return {
            "class": type(self).__name__, "name": self.name, "beta": self.beta, "exponent": self.exponent,
            "side": self.side, "n_iter": self.n_iter, "grad": self.grad, "reduction": self.reduction,
            "shallow_weight": self.shallow_weight, "factor": self.factor,
            "matrix": "C x (H*W) per sample", "last_taps": self.last_taps,
        }
