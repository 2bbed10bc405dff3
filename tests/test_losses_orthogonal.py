import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from reidlab.losses import (
    REGULARIZERS,
    FeatureOrthogonality,
    WeightOrthogonality,
    exact_extremes,
    power_iteration_extremes,
)
from reidlab.losses.orthogonal import _start_vector, so_distance, srip_distance, svdo_distance


def _with_singular_values(o, k, s, seed=0):
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(o, o, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=torch.float64))
    S = torch.zeros(o, k, dtype=torch.float64)
    for i, si in enumerate(s):
        S[i, i] = si
    return u @ S @ v.T


def _plain_reference(M: np.ndarray, n_iter: int) -> tuple[float, float]:
    """Deliberately plain transcription of the paper's estimator on the explicit Gram X = M M^T."""
    X = M @ M.T
    q0 = _start_vector(X.shape[0], torch.float64, torch.device("cpu")).numpy()

    def dominant(Y):
        q = q0.copy()
        for it in range(n_iter):
            p = Y @ q
            p = p / np.linalg.norm(p)
            q = Y @ p
            last_p, last_q = p, q
            q = q / np.linalg.norm(q)
        mag = np.linalg.norm(last_q) / np.linalg.norm(last_p)
        return mag if last_p @ last_q > 0 else -mag

    l1 = dominant(X)
    return l1, l1 + dominant(X - l1 * np.eye(X.shape[0]))


@pytest.mark.parametrize("n_iter", [1, 2, 5])
@pytest.mark.parametrize("shape", [(6, 10), (10, 4)])
def test_power_iteration_matches_plain_reference(n_iter, shape):
    M = torch.randn(*shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    lmax, lmin = power_iteration_extremes(M, n_iter)
    rmax, rmin = _plain_reference(M.numpy(), n_iter)
    assert lmax.item() == pytest.approx(rmax, rel=1e-9)
    assert lmin.item() == pytest.approx(rmin, rel=1e-9, abs=1e-9)
    # unrolled autograd mode computes the same value
    umax, umin = power_iteration_extremes(M, n_iter, grad="unrolled")
    assert umax.item() == pytest.approx(rmax, rel=1e-9) and umin.item() == pytest.approx(rmin, rel=1e-9, abs=1e-9)


def test_power_iteration_converges_to_eigvalsh_on_known_spectrum():
    M = _with_singular_values(5, 8, [5, 4, 3, 2, 1])  # Gram eigenvalues 25, 16, 9, 4, 1
    lmax, lmin = power_iteration_extremes(M, 100)
    assert lmax.item() == pytest.approx(25.0, rel=1e-6)
    assert lmin.item() == pytest.approx(1.0, rel=1e-4)
    emax, emin = exact_extremes(M)
    assert emax.item() == pytest.approx(25.0, rel=1e-9) and emin.item() == pytest.approx(1.0, rel=1e-9)
    # two iterations (the paper's default) already give a usable but biased estimate from below / above
    l2max, l2min = power_iteration_extremes(M, 2)
    assert 16.0 < l2max.item() <= 25.0 + 1e-9
    assert 1.0 - 1e-9 <= l2min.item() < 16.0


def test_scaled_orthogonal_has_zero_gap_even_with_one_iteration():
    Q = _with_singular_values(6, 6, [3.0] * 6)
    lmax, lmin = power_iteration_extremes(Q, 1)
    assert lmax.item() == pytest.approx(9.0, rel=1e-9) and lmin.item() == pytest.approx(9.0, rel=1e-9)


def test_side_rows_vs_smaller_for_tall_matrix():
    M = _with_singular_values(6, 3, [3, 2, 1])  # O=6 > K=3: rows Gram has three zero eigenvalues
    rmax, rmin = power_iteration_extremes(M, 60, side="rows")
    smax, smin = power_iteration_extremes(M, 60, side="smaller")
    assert rmax.item() == pytest.approx(9.0, rel=1e-6) and smax.item() == pytest.approx(9.0, rel=1e-6)
    assert abs(rmin.item()) < 1e-6
    assert smin.item() == pytest.approx(1.0, rel=1e-4)
    emin_rows = exact_extremes(M, side="rows")[1].item()
    emin_small = exact_extremes(M, side="smaller")[1].item()
    assert abs(emin_rows) < 1e-9 and emin_small == pytest.approx(1.0)


def test_batched_equals_individual_and_is_deterministic():
    Ms = torch.randn(4, 7, 12, generator=torch.Generator().manual_seed(1))
    bmax, bmin = power_iteration_extremes(Ms, 2)
    for i in range(4):
        a, b = power_iteration_extremes(Ms[i], 2)
        assert torch.allclose(a, bmax[i], rtol=1e-5) and torch.allclose(b, bmin[i], rtol=1e-5, atol=1e-5)
    again = power_iteration_extremes(Ms, 2)
    assert torch.equal(again[0], bmax) and torch.equal(again[1], bmin)


def test_fixed_vector_gradient_is_the_eigenvalue_gradient_at_convergence():
    M = _with_singular_values(5, 8, [5, 3, 2, 1.5, 0.5]).requires_grad_(True)
    lmax, lmin = power_iteration_extremes(M, 300)
    (lmax - lmin).backward()
    g_pi = M.grad.clone()
    M.grad = None
    emax, emin = exact_extremes(M)
    (emax - emin).backward()
    assert torch.allclose(g_pi, M.grad, atol=1e-5)


@pytest.mark.parametrize("grad", ["fixed_vectors", "unrolled"])
def test_zero_matrix_gives_finite_values_and_gradients(grad):
    M = torch.zeros(4, 6, requires_grad=True)
    lmax, lmin = power_iteration_extremes(M, 2, grad=grad)
    ((lmax - lmin) ** 2 + lmax + lmin).backward()
    assert lmax.item() == 0.0 and lmin.item() == 0.0
    assert torch.isfinite(M.grad).all()
    for name, fn in REGULARIZERS.items():
        W = torch.zeros(3, 4, 6, requires_grad=True)
        d = fn(W, n_iter=2, side="rows", grad=grad)
        d.pow(2).sum().backward()
        assert torch.isfinite(d).all() and torch.isfinite(W.grad).all(), name


def test_so_and_srip_hand_values():
    D = torch.diag(torch.tensor([1.0, 2.0])).unsqueeze(0)  # G = diag(1, 4); G - I = diag(0, 3)
    assert so_distance(D).item() == pytest.approx(3.0, rel=1e-5)
    assert srip_distance(D, n_iter=2).item() == pytest.approx(3.0, rel=1e-5)
    T = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]).unsqueeze(0)  # rows Gram diag(1, 4, 0)
    assert so_distance(T, side="rows").item() == pytest.approx(math.sqrt(0 + 9 + 1), rel=1e-5)
    assert so_distance(T, side="smaller").item() == pytest.approx(3.0, rel=1e-5)
    assert srip_distance(T, n_iter=20, side="rows").item() == pytest.approx(3.0, rel=1e-4)
    assert svdo_distance(T, n_iter=20, side="rows").item() == pytest.approx(4.0, rel=1e-4)
    assert svdo_distance(T, n_iter=20, side="smaller").item() == pytest.approx(3.0, rel=1e-4)


def _count_convs(m):
    return sum(isinstance(x, nn.Conv2d) for x in m.modules())


@pytest.mark.parametrize("name,expected", [("resnet18", 20), ("resnet50", 53)])
def test_weight_orthogonality_covers_every_conv(name, expected):
    model = getattr(torchvision.models, name)(weights=None)
    ow = WeightOrthogonality(model, "svdo")
    assert ow.num_layers == _count_convs(model) == expected
    d = ow.describe()
    assert d["num_layers"] == expected and d["gram_side_counts"] == {"rows": expected, "columns": 0}
    small = WeightOrthogonality(model, "svdo", side="smaller").describe()
    tall = sum(m.weight.shape[0] > m.weight[0].numel() for m in model.modules() if isinstance(m, nn.Conv2d))
    assert small["gram_side_counts"]["columns"] == tall == small["layers_with_more_rows_than_columns"]


def test_weight_orthogonality_value_equals_per_layer_sum_and_reaches_every_conv():
    model = torchvision.models.resnet18(weights=None)
    beta, e = 1e-3, 2
    ow = WeightOrthogonality(model, "svdo", beta=beta, exponent=e, n_iter=2)
    loss = ow()
    want = 0.0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            a, b = power_iteration_extremes(m.weight.detach().flatten(1), 2)
            want += (a - b).abs().item() ** e
    assert loss.item() == pytest.approx(beta * want, rel=1e-4)
    loss.backward()
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0
    per = ow.layer_distances()
    assert len(per) == 20 and list(per)[0] == "conv1"


def test_weight_orthogonality_names_and_none():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    assert WeightOrthogonality(model, "none")().item() == 0.0
    for name in ("svdo", "svdo_exact", "so", "srip"):
        v = WeightOrthogonality(model, name)()
        assert torch.isfinite(v) and v.item() >= 0
    with pytest.raises(ValueError, match="unknown orthogonality"):
        WeightOrthogonality(model, "svd")
    with pytest.raises(ValueError, match="side"):
        WeightOrthogonality(model, "svdo", side="cols")


def test_feature_orthogonality_reference_and_degenerate():
    g = torch.Generator().manual_seed(0)
    taps = [torch.rand(3, 8, 4, 5, generator=g), torch.rand(3, 16, 2, 3, generator=g)]
    of = FeatureOrthogonality("svdo", beta=1e-2, exponent=1, n_iter=2)
    got = of(taps)
    want = 0.0
    for t in taps:
        vals = []
        for b in range(t.shape[0]):
            a, c = power_iteration_extremes(t[b].flatten(1), 2)
            vals.append((a - c).abs().item())
        want += sum(vals) / len(vals)
    assert got.item() == pytest.approx(1e-2 * want, rel=1e-4)
    info = of.describe()["last_taps"]
    assert info[1]["rank_deficient_rows"] is True and info[0]["rank_deficient_rows"] is False
    assert of([]).item() == 0.0
    z = torch.zeros(2, 4, 3, 3, requires_grad=True)
    v = FeatureOrthogonality("svdo")([z])
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(z.grad).all()


def test_fixed_vector_gradient_equals_plain_autograd_at_frozen_vectors():
    """The analytic backward (incl. the lambda_1 shift term) equals autograd of the same estimate written
    plainly with the final iteration vectors frozen."""
    from reidlab.losses.orthogonal import _iterate

    M0 = torch.randn(2, 5, 9, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    M = M0.clone().requires_grad_(True)
    lmax, lmin = power_iteration_extremes(M, 3)
    (2.0 * lmax - 3.0 * lmin).sum().backward()
    with torch.no_grad():
        p1, _ = _iterate(M0, 3, None)
        l1 = torch.linalg.vector_norm(M0 @ (M0.transpose(1, 2) @ p1.unsqueeze(-1)), dim=(1, 2))
        p2, q2 = _iterate(M0, 3, l1)
        sign = torch.sign((p2 * q2).sum(-1))
    R = M0.clone().requires_grad_(True)
    X = R @ R.transpose(1, 2)
    r1 = torch.linalg.vector_norm((X @ p1.unsqueeze(-1)).squeeze(-1), dim=-1)
    Y = X - r1.reshape(-1, 1, 1) * torch.eye(5, dtype=torch.float64)
    rmin = r1 + sign * torch.linalg.vector_norm((Y @ p2.unsqueeze(-1)).squeeze(-1), dim=-1)
    assert torch.allclose(lmax, r1) and torch.allclose(lmin, rmin)
    (2.0 * r1 - 3.0 * rmin).sum().backward()
    assert torch.allclose(M.grad, R.grad, atol=1e-10)


@pytest.mark.parametrize("cols", [False, True])
def test_shifted_gram_norm_gradcheck(cols):
    from reidlab.losses.orthogonal import _ShiftedGramNorm

    g = torch.Generator().manual_seed(2)
    M = torch.randn(2, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    P = torch.nn.functional.normalize(torch.randn(2, 3, 6 if cols else 4, generator=g, dtype=torch.float64), dim=-1)
    s = torch.rand(2, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda m: _ShiftedGramNorm.apply(m, P, s, cols), (M,))
    # value: |(G - s I) p| with the explicit Gram
    G = M.transpose(1, 2) @ M if cols else M @ M.transpose(1, 2)
    ref = torch.linalg.vector_norm(P @ G - s.unsqueeze(-1) * P, dim=-1)
    assert torch.allclose(_ShiftedGramNorm.apply(M, P, s, cols), ref)


def test_smaller_side_gradient_matches_transposed_input():
    M = torch.randn(9, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64, requires_grad=True)
    a, b = power_iteration_extremes(M, 3, side="smaller")
    (a - 2 * b).backward()
    T = M.detach().T.clone().requires_grad_(True)  # 4 x 9: its rows Gram is M^T M
    c, d = power_iteration_extremes(T, 3, side="rows")
    (c - 2 * d).backward()
    assert torch.allclose(a, c) and torch.allclose(b, d)
    assert torch.allclose(M.grad, T.grad.T)


@pytest.mark.parametrize("name", ["svdo", "so", "srip"])
def test_descending_the_penalty_makes_the_matrix_more_orthogonal(name):
    from reidlab.losses import REGULARIZERS

    M = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    opt = torch.optim.SGD([M], lr=2e-3)

    def exact_gap():
        with torch.no_grad():
            a, b = exact_extremes(M)
            return (a - b).item()

    start = exact_gap()
    for _ in range(150):
        opt.zero_grad()
        REGULARIZERS[name](M, n_iter=2).pow(2).sum().backward()
        opt.step()
    assert exact_gap() < 0.5 * start
