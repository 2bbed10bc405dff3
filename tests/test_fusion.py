import math

import pytest
import torch

from reidlab.models import FUSIONS, build_fusion
from reidlab.models.fusion import TemplateMaskFusion, pairwise_levels

VECTOR = ["mean", "max", "softmax_cosine", "spherical", "temporal_attention"]
LINEAR = ["mean", "softmax_cosine", "temporal_attention"]  # fused == sum_t w_t f_t exactly


def _x(B=2, T=5, D=8, seed=0):
    return torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed))


def test_pairwise_levels():
    assert pairwise_levels(1) == []
    assert pairwise_levels(5) == [(2, True), (1, True), (1, False)]
    assert pairwise_levels(4) == [(2, False), (1, False)]


@pytest.mark.parametrize("name", VECTOR)
@pytest.mark.parametrize("hier", [False, True])
@pytest.mark.parametrize("T", [1, 2, 3, 5])
def test_vector_fusion_shapes_weights_and_gradients(name, hier, T):
    f = build_fusion(name, 8, hierarchical=hier)
    x = _x(T=T).requires_grad_(True)
    fused, aux = f(x)
    assert fused.shape == (2, 8)
    w = aux["weights"]
    assert w.shape == (2, T) and (w >= 0).all()
    assert torch.allclose(w.sum(1), torch.ones(2), atol=1e-5)
    fused.pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    if T == 1 and name != "spherical":
        assert torch.allclose(fused, x[:, 0], atol=1e-6)


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("hier", [False, True])
def test_weights_reconstruct_the_fused_vector(name, hier):
    f = build_fusion(name, 8, hierarchical=hier)
    x = _x(T=5)
    fused, aux = f(x)
    assert torch.allclose(fused, (aux["weights"].unsqueeze(-1) * x).sum(1), atol=1e-5)


def test_spherical_hierarchical_weights_give_the_direction():
    f = build_fusion("spherical", 8, hierarchical=True)
    x = _x(T=5)
    fused, aux = f(x)
    recon = (aux["weights"].unsqueeze(-1) * x).sum(1)
    assert torch.allclose(torch.cosine_similarity(fused, recon, dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(fused.norm(dim=1), torch.ones(2), atol=1e-5)


def test_hierarchical_mean_effective_weights():
    _, aux3 = build_fusion("mean", 4, hierarchical=True)(_x(T=3, D=4))
    assert torch.allclose(aux3["weights"], torch.tensor([[0.25, 0.25, 0.5]] * 2))
    _, aux5 = build_fusion("mean", 4, hierarchical=True)(_x(T=5, D=4))
    assert torch.allclose(aux5["weights"], torch.tensor([[0.125] * 4 + [0.5]] * 2))
    assert len(aux5["levels"]) == 3


def test_softmax_cosine_floor_at_tau_one():
    u = torch.tensor([0.6, 0.8, 0.0])
    x = torch.stack([2 * u, -u]).unsqueeze(0)  # centre = u / 2: frame 0 on it, frame 1 opposite
    f = build_fusion("softmax_cosine", 3)
    fused, aux = f(x)
    floor = math.exp(-1) / (math.exp(1) + math.exp(-1))
    assert floor == pytest.approx(0.1192, abs=1e-4)
    assert aux["weights"][0, 1].item() == pytest.approx(floor, abs=1e-6)
    assert torch.allclose(aux["cos"], torch.tensor([[1.0, -1.0]]), atol=1e-6)
    _, aux_half = build_fusion("softmax_cosine", 3, tau=0.5)(x)
    assert aux_half["weights"][0, 1].item() == pytest.approx(math.exp(-2) / (math.exp(2) + math.exp(-2)), abs=1e-6)


def test_softmax_cosine_matches_plain_reference():
    x = _x(B=1, T=4, D=5)[0]
    c = x.mean(0)
    cos = [float(torch.dot(x[t], c) / (x[t].norm() * c.norm())) for t in range(4)]
    e = [math.exp(v / 2.0) for v in cos]
    w = [v / sum(e) for v in e]
    fused, aux = build_fusion("softmax_cosine", 5, tau=2.0)(x.unsqueeze(0))
    assert torch.allclose(aux["weights"][0], torch.tensor(w), atol=1e-6)
    assert torch.allclose(fused[0], sum(wi * x[t] for t, wi in enumerate(w)), atol=1e-5)


def test_spherical_gives_no_weight_to_an_opposite_frame():
    u = torch.tensor([1.0, 0.0, 0.0, 0.0])
    x = torch.stack([3 * u, 0.5 * u, -2 * u]).unsqueeze(0)  # unit mean direction = u
    fused, aux = build_fusion("spherical", 4)(x)
    assert torch.allclose(aux["weights"], torch.tensor([[0.5, 0.5, 0.0]]), atol=1e-3)
    assert torch.allclose(fused, u.unsqueeze(0), atol=1e-5)
    fk, _ = build_fusion("spherical", 4, keep_norm=True)(x)
    assert fk.norm().item() == pytest.approx(0.5 * 3 + 0.5 * 0.5, abs=1e-2)


def test_max_weights_are_argmax_shares():
    x = torch.tensor([[[1.0, 5.0, 0.0, 2.0], [3.0, 1.0, -1.0, 0.0]]])
    fused, aux = build_fusion("max", 4)(x)
    assert torch.equal(fused, torch.tensor([[3.0, 5.0, 0.0, 2.0]]))
    assert torch.allclose(aux["weights"], torch.tensor([[0.75, 0.25]]))


@pytest.mark.parametrize("score_relu", [True, False])
def test_temporal_attention_matches_plain_reference(score_relu):
    torch.manual_seed(0)
    f = build_fusion("temporal_attention", 6, hidden=4, kernel_size=3, score_relu=score_relu)
    x = _x(B=1, T=3, D=6)
    fused, aux = f(x)
    h = torch.relu(x[0] @ f.frame.weight.T + f.frame.bias)  # (T, hidden)
    k = f.temporal.weight[0]  # (hidden, 3)
    s = []
    for t in range(3):
        acc = f.temporal.bias[0].clone()
        for j in range(3):
            tt = t + j - 1
            if 0 <= tt < 3:
                acc = acc + torch.dot(k[:, j], h[tt])
        s.append(torch.relu(acc) if score_relu else acc)
    w = torch.softmax(torch.stack(s), 0)
    assert torch.allclose(aux["weights"][0], w, atol=1e-5)
    assert torch.allclose(aux["scores"][0], torch.stack(s), atol=1e-5)
    fused.sum().backward()
    assert f.frame.weight.grad is not None and f.temporal.weight.grad is not None


@pytest.mark.parametrize("name", VECTOR + ["template_mask"])
def test_zero_frames_are_finite(name):
    f = build_fusion(name, 8)
    x = torch.zeros(2, 3, 8, requires_grad=True)
    f.train(name != "template_mask")  # BN needs >1 value per channel in training
    fused, aux = f(x)
    fused.sum().backward()
    assert torch.isfinite(fused).all() and torch.isfinite(aux["weights"]).all()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("normalise", ["softmax", "sigmoid"])
@pytest.mark.parametrize("score_relu", [True, False])
def test_temporal_attention_score_relu(score_relu, normalise):
    torch.manual_seed(3)
    f = build_fusion("temporal_attention", 8, hidden=6, normalise=normalise, score_relu=score_relu)
    # zero input and zero frame bias leave only the temporal bias: every raw score is -0.5, which the
    # ReLU must clip to 0 (then uniform weights)
    with torch.no_grad():
        f.frame.bias.zero_()
        f.temporal.bias.fill_(-0.5)
    zero = torch.zeros(2, 4, 8, requires_grad=True)
    fused, aux = f(zero)
    fused.sum().backward()
    assert torch.isfinite(fused).all() and torch.isfinite(zero.grad).all()
    assert torch.allclose(aux["weights"].sum(1), torch.ones(2))
    assert torch.allclose(aux["weights"], torch.full((2, 4), 0.25))
    if score_relu:
        assert torch.equal(aux["scores"], torch.zeros(2, 4))
    else:
        assert torch.allclose(aux["scores"], torch.full((2, 4), -0.5))
    # random input: weights sum to 1, and with the ReLU the normaliser only ever sees scores >= 0
    fused, aux = f(_x(B=3, T=6, D=8, seed=4))
    assert torch.isfinite(fused).all()
    assert torch.allclose(aux["weights"].sum(1), torch.ones(3), atol=1e-6)
    assert (aux["scores"] >= 0).all() if score_relu else (aux["scores"] < 0).any()
    assert f.describe()["options"]["score_relu"] is score_relu
    assert build_fusion("temporal_attention", 8).describe()["options"]["score_relu"] is True


def _pair_reference(fi, fj, gamma, delta, min_cos=0.05, mode="inv_cos"):
    """Plain per-position loop of the template-mask pair fusion (no refinement)."""
    C, H, W = fi.shape
    out = torch.zeros_like(fi)
    for h in range(H):
        for w in range(W):
            a, b = fi[:, h, w], fj[:, h, w]
            t = (a + b) / 2
            ca = float(torch.dot(t, a) / (t.norm() * a.norm()))
            cb = float(torch.dot(t, b) / (t.norm() * b.norm()))
            if mode == "inv_cos":
                al, be = 1 / min(max(ca, min_cos), 1), 1 / min(max(cb, min_cos), 1)
            else:
                al, be = min(max(ca, 0), 1), min(max(cb, 0), 1)
            out[:, h, w] = (al * a + be * b) ** 2 + gamma * a + delta * b
    return out


@pytest.mark.parametrize("mode", ["inv_cos", "cos"])
def test_template_mask_pair_matches_plain_reference(mode):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 4, 3, 2, generator=g)
    f = TemplateMaskFusion(4, mask=mode, refine=False, gamma_init=0.3, delta_init=-0.2)
    fused, aux = f(x)
    ref = _pair_reference(x[0, 0], x[0, 1], 0.3, -0.2, mode=mode)
    assert torch.allclose(fused[0], ref, atol=1e-5)
    assert aux["masks"][0].shape == (1, 1, 2, 3, 2)


def test_template_mask_levels_carry_odd_frames_and_weights_sum_to_one():
    torch.manual_seed(0)
    f = TemplateMaskFusion(4).eval()
    x = torch.rand(2, 3, 4, 3, 2)
    fused, aux = f(x)
    g01, _, _ = f.fuse_pair(x[:, 0], x[:, 1])
    want, _, _ = f.fuse_pair(g01, x[:, 2])
    assert torch.allclose(fused, want, atol=1e-5)
    assert [m.shape for m in aux["masks"]] == [(2, 1, 2, 3, 2), (2, 1, 2, 3, 2)]
    w = aux["weights"]
    assert torch.allclose(w.sum(1), torch.ones(2), atol=1e-5)
    # the carried frame's share is decided only at the last level
    last = aux["masks"][1]
    share_last = (last[:, 0, 1] / last[:, 0].sum(1)).mean(dim=(1, 2))
    assert torch.allclose(w[:, 2], share_last, atol=1e-5)
    one, aux1 = f(x[:, :1])
    assert torch.equal(one, x[:, 0]) and torch.equal(aux1["weights"], torch.ones(2, 1))


@pytest.mark.parametrize("mode", ["inv_cos", "cos"])
def test_template_mask_finite_on_zero_and_anti_aligned(mode):
    f = TemplateMaskFusion(4, mask=mode)
    a = torch.randn(2, 4, 3, 2)
    cases = {
        "anti": torch.stack([a, -a], 1),
        "zero_one": torch.stack([torch.zeros_like(a), a], 1),
        "zeros": torch.zeros(2, 2, 4, 3, 2),
        "anti_4": torch.stack([a, -a, 2 * a, -2 * a], 1),
    }
    for name, x in cases.items():
        x = x.clone().requires_grad_(True)
        f.zero_grad()
        fused, aux = f(x)
        fused.pow(2).mean().backward()
        assert torch.isfinite(fused).all(), name
        assert torch.isfinite(x.grad).all(), name
        assert torch.isfinite(f.gamma.grad) and torch.isfinite(f.delta.grad), name
        assert all(torch.isfinite(p.grad).all() for p in f.refine.parameters() if p.grad is not None), name
        for m in aux["masks"]:
            assert torch.isfinite(m).all() and (m <= (1 / 0.05 if mode == "inv_cos" else 1) + 1e-4).all()
        assert torch.allclose(aux["weights"].sum(1), torch.ones(2), atol=1e-5)


def test_template_mask_on_vectors_and_gradients():
    f = TemplateMaskFusion(6)
    x = torch.rand(4, 3, 6, requires_grad=True)
    fused, aux = f(x)
    assert fused.shape == (4, 6)
    fused.sum().backward()
    assert x.grad is not None and f.gamma.grad is not None and f.refine[0].weight.grad is not None


def test_build_fusion_errors_and_registry():
    assert set(FUSIONS) == {"mean", "max", "softmax_cosine", "spherical", "temporal_attention", "template_mask"}
    with pytest.raises(ValueError, match="unknown fusion 'attention'"):
        build_fusion("attention", 8)
    with pytest.raises(ValueError, match="unknown option"):
        build_fusion("mean", 8, tau=2.0)
    with pytest.raises(ValueError, match="tau"):
        build_fusion("softmax_cosine", 8, tau=0.0)
    with pytest.raises(ValueError, match="expects"):
        build_fusion("mean", 8)(torch.randn(2, 8))
    d = build_fusion("softmax_cosine", 8, tau=0.5).describe()
    assert d["class"] == "SoftmaxCosineFusion" and d["options"]["tau"] == 0.5


@pytest.mark.parametrize("hier", [False, True])
def test_spherical_ignores_zero_frames(hier):
    x = _x(B=1, T=3, D=8)
    x[:, 1] = 0.0
    fused, aux = build_fusion("spherical", 8, hierarchical=hier)(x)
    assert aux["weights"][0, 1].item() == 0.0
    ref, _ = build_fusion("spherical", 8)(x[:, [0, 2]])
    if not hier:
        assert torch.allclose(fused, ref, atol=1e-5)
