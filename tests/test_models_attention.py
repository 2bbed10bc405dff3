import pytest
import torch

from reidlab.models import CAM, PAM


def test_cam_matches_plain_reference_and_starts_as_identity():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 2, 2, generator=g) * 0.5
    cam = CAM(3)
    out, S = cam(x, return_attention=True)
    assert torch.equal(out, x)  # gamma = 0 at init
    assert S.shape == (2, 3, 3) and torch.allclose(S.sum(-1), torch.ones(2, 3))
    with torch.no_grad():
        cam.gamma.fill_(0.7)
    out = cam(x)
    for b in range(2):
        X = x[b].reshape(3, 4)
        ref_S = torch.zeros(3, 3)
        for i in range(3):
            e = torch.stack([torch.dot(X[i], X[j]) for j in range(3)])
            ref_S[i] = torch.exp(e) / torch.exp(e).sum()
        ref = 0.7 * (ref_S @ X) + X
        assert torch.allclose(out[b].reshape(3, 4), ref, atol=1e-5)


def test_cam_large_affinities_stay_finite_and_max_minus_variant():
    x = torch.full((1, 4, 8, 8), 100.0)
    out, S = CAM(4)(x, return_attention=True)
    assert torch.isfinite(S).all() and torch.isfinite(out).all()
    _, S2 = CAM(4, energy="max_minus")(torch.randn(1, 4, 3, 3), return_attention=True)
    assert torch.allclose(S2.sum(-1), torch.ones(1, 4), atol=1e-6)


def test_pam_shapes_reference_and_gradients():
    torch.manual_seed(0)
    pam = PAM(16, reduction=8)
    x = torch.randn(2, 16, 3, 4, requires_grad=True)
    out, S = pam(x, return_attention=True)
    assert torch.equal(out, x) and S.shape == (2, 12, 12)
    assert torch.allclose(S.sum(-1), torch.ones(2, 12), atol=1e-6)
    with torch.no_grad():
        pam.gamma.fill_(0.5)
    out, S = pam(x, return_attention=True)
    q = pam.query(x).flatten(2)  # (B, C', N)
    k = pam.key(x).flatten(2)
    v = pam.value(x).flatten(2)
    b, i = 1, 5
    e = torch.stack([torch.dot(q[b, :, i], k[b, :, j]) for j in range(12)])
    s = torch.softmax(e, 0)
    ref = 0.5 * (v[b] * s).sum(1) + x[b].flatten(1)[:, i]
    assert torch.allclose(out[b].flatten(1)[:, i], ref, atol=1e-5)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and pam.gamma.grad is not None and pam.query.weight.grad is not None


def test_attention_rejects_wrong_channels():
    with pytest.raises(ValueError, match="CAM expects"):
        CAM(8)(torch.randn(1, 4, 2, 2))
    with pytest.raises(ValueError, match="PAM expects"):
        PAM(8)(torch.randn(1, 4, 2, 2))


def test_attention_on_zero_input_is_finite_with_gradients():
    for mod, c in ((CAM(4), 4), (PAM(8, reduction=4), 8)):
        with torch.no_grad():
            mod.gamma.fill_(0.5)
        x = torch.zeros(2, c, 3, 2, requires_grad=True)
        out, S = mod(x, return_attention=True)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(S).all() and torch.isfinite(x.grad).all()
        assert torch.allclose(S, torch.full_like(S, 1.0 / S.shape[-1]))  # no affinity: uniform attention
