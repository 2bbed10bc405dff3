"""The switches that follow the released ABD-Net code (github.com/VITA-Group/ABD-Net) where it differs from
the paper's text or from reidlab's own choices (issue #11 f). Each is tested for what it changes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reidlab.config import RunConfig
from reidlab.engine.builders import build_losses
from reidlab.losses import FeatureOrthogonality, WeightOrthogonality
from reidlab.models import build_model
from reidlab.models.abd import RELEASED_CODE, PartsNeck
from reidlab.models.attention import CAM, DANetHead
from reidlab.models.backbones import build_trunk

RELEASED_LOSS = {"loss.of.name": "svdo", "loss.of.taps": "released", "loss.of.shallow_weight": 0.01,
                 "loss.of.factor": 32.0, "loss.of.start_epoch": 23, "loss.of.n_iter": 1, "loss.of.grad": "unrolled",
                 "loss.ow.name": "svdo", "loss.ow.scope": "stem", "loss.ow.factor": 10.0, "loss.ow.grad": "unrolled",
                 "loss.triplet": 0.1, "loss.margin": 1.2}


@pytest.fixture(scope="module")
def trunk_maps():
    torch.manual_seed(0)
    t = build_trunk("resnet18", 1, None).eval()
    with torch.no_grad():
        shallow = t.layer1(t.stem(torch.randn(4, 3, 128, 64)))
        deep = t.layer4(t.layer3(t.layer2(shallow)))
    return {"shallow": shallow, "layer4": deep, "stripe": deep[:, :, : deep.shape[2] // 2]}


def _row_max(energy: str, x: torch.Tensor) -> float:
    _, S = CAM(x.shape[1], energy=energy)(x, return_attention=True)
    return S.max(dim=-1).values.mean().item()


def test_cam_affinity_saturates_and_max_minus_does_not(trunk_maps):
    """The paper's affinity energy exp(a_i . a_j) puts nearly all of a row's mass on one channel (the inner
    products grow with H*W), so CAM becomes a copy of one channel; the released code's max_minus spreads it."""
    aff = {k: _row_max("affinity", v) for k, v in trunk_maps.items()}
    mm = {k: _row_max("max_minus", v) for k, v in trunk_maps.items()}
    assert aff["shallow"] > 0.95 and aff["layer4"] > 0.9, aff
    for k in trunk_maps:
        assert mm[k] < aff[k], (k, mm, aff)
    assert mm["layer4"] < 0.1 and mm["stripe"] < 0.1, mm


def test_danet_head_shapes_dropout_and_attention():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 6, 4)
    for kind in ("identity", "cam", "pam"):
        h = DANetHead(16, kind, dropout=0.1, cam_energy="max_minus").eval()
        out, S = h(x, return_attention=True)
        assert out.shape == x.shape and torch.isfinite(out).all()
        assert (S is None) == (kind == "identity")
        if S is not None:
            assert torch.allclose(S.sum(-1), torch.ones(()), atol=1e-5)
        assert isinstance(h.out[0], nn.Dropout2d) and h.out[0].p == 0.1
        assert h.pre[0].out_channels == 8  # C -> C/2, as the released head
    assert torch.isfinite(DANetHead(16, "cam")(torch.zeros(1, 16, 2, 2))).all()  # degenerate: zero map
    with pytest.raises(ValueError, match="identity, cam or pam"):
        DANetHead(16, "sam")


@pytest.mark.parametrize("task", ["image", "video"])
def test_released_model_path_parts_neck_and_raw_test_feature(task):
    torch.manual_seed(0)
    m = build_model(task, 5, backbone="resnet18", abd={**RELEASED_CODE, "branch_dim": 32})
    assert isinstance(m.neck, PartsNeck) and m.neck.part_dims == [32, 32, 32]
    assert isinstance(m.encoder.branches["global"].reduce[-1], nn.Dropout)
    assert m.encoder.branches["global"].pool == "avg"
    x = torch.randn(4, 3, 64, 32) if task == "image" else torch.randn(2, 2, 3, 64, 32)
    m.train()
    out = m(x)
    assert len(out["logits"]) == 3 and all(lg.shape[-1] == 5 for lg in out["logits"])
    assert [f.shape[-1] for f in out["features"]] == [32, 32, 32]
    assert set(out["of_positions"]) == {"intermediate", "before", "cam", "pam", "after", "res_conv_5"}
    assert all(len(out["of_positions"][k]) == 2 for k in ("before", "cam", "pam", "after"))  # one per stripe
    m.eval()
    with torch.no_grad():
        emb = m(x)
        raw = m.encode(x)[0]
    assert torch.equal(emb, raw)  # no BNNeck: the raw concat is the test feature


def test_parts_loss_averages_three_ce_and_three_triplet_terms():
    torch.manual_seed(0)
    cfg = RunConfig().override({"model.task": "image", "model.abd": {**RELEASED_CODE, "branch_dim": 32},
                                **RELEASED_LOSS})
    m = build_model("image", 4, backbone="resnet18", abd=cfg.model.abd)
    losses = build_losses(cfg, m, 4)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    m.train()
    out = m(torch.randn(8, 3, 64, 32))
    total, parts = losses.compute(out, pids, 0, cfg, torch.device("cpu"))
    ce = sum(losses.ce(lg, pids) for lg in out["logits"]) / 3
    tri = sum(losses.triplet(f, pids) for f in out["features"]) / 3
    assert parts[1].item() == pytest.approx(ce.item(), rel=1e-6)
    assert parts[2].item() == pytest.approx(tri.item(), rel=1e-6)
    assert parts[3].item() == 0.0  # O.F. starts at epoch 23 (0-based) in the released code
    _, later = losses.compute(m(torch.randn(8, 3, 64, 32)), pids, 23, cfg, torch.device("cpu"))
    assert later[3].item() > 0
    assert total.item() == pytest.approx((parts[1] + 0.1 * parts[2] + parts[4]).item(), rel=1e-5)


def test_released_of_positions_match_a_hand_computation():
    torch.manual_seed(0)
    of = FeatureOrthogonality(name="svdo_exact", beta=1e-6, exponent=1, shallow_weight=0.01, factor=32.0)
    maps = {"intermediate": [torch.randn(4, 8, 5, 3)],
            "before": [torch.randn(4, 6, 2, 3), torch.randn(4, 6, 2, 3)],
            "after": [torch.randn(4, 6, 2, 3), torch.zeros(4, 6, 2, 3)]}

    def gap(t):
        X = t.reshape(t.shape[0], t.shape[1], -1).double()
        ev = torch.linalg.eigvalsh(X @ X.transpose(1, 2))
        return (ev[:, -1] - ev[:, 0]).clamp_min(0)  # per sample

    # released: per map sum over the batch / (B / 32); positions averaged over stripes; shallow x 0.01
    want = 1e-6 * (0.01 * gap(maps["intermediate"][0]).sum() / (4 / 32)
                   + sum(gap(t).sum() / (4 / 32) for t in maps["before"]) / 2
                   + sum(gap(t).sum() / (4 / 32) for t in maps["after"]) / 2)
    assert of.positions(maps).item() == pytest.approx(want.item(), rel=1e-4)
    assert torch.isfinite(of.positions({"after": [torch.zeros(1, 4, 1, 1)]}))  # degenerate input
    with pytest.raises(ValueError, match="unknown O.F. positions"):
        of.positions({"res5": [torch.randn(1, 2, 2, 2)]})


def test_of_shallow_weight_scales_only_the_first_tap():
    torch.manual_seed(0)
    taps = [torch.randn(2, 4, 3, 3), torch.randn(2, 6, 2, 2)]
    full = FeatureOrthogonality(name="svdo_exact", beta=1.0)
    only = [FeatureOrthogonality(name="svdo_exact", beta=1.0)([t]) for t in taps]
    scaled = FeatureOrthogonality(name="svdo_exact", beta=1.0, shallow_weight=0.01)(taps)
    assert full(taps).item() == pytest.approx((only[0] + only[1]).item(), rel=1e-5)
    assert scaled.item() == pytest.approx((0.01 * only[0] + only[1]).item(), rel=1e-5)


def test_ow_scope_reduction_and_factor_resnet50_abd():
    m = build_model("image", 10, backbone="resnet50", abd={})
    n_all = WeightOrthogonality(m, scope="all").num_layers
    n_backbone = WeightOrthogonality(m, scope="backbone").num_layers
    stem = WeightOrthogonality(m, scope="stem")
    assert n_all == 68  # every conv, incl. reduce, sum and PAM q/k/v outside the backbone
    assert n_backbone == 53 - 10 + 2 * 10  # ResNet-50's 53 convs, layer4's 10 once per branch copy
    assert stem.num_layers == 1 and stem.layers[0][1].kernel_size == (7, 7)  # the released walk: conv1 only
    torch.manual_seed(0)
    small = build_model("image", 10, backbone="resnet18", abd={"branch_dim": 32})
    s = WeightOrthogonality(small, name="svdo_exact", beta=1e-3, scope="all", reduction="sum")()
    mean = WeightOrthogonality(small, name="svdo_exact", beta=1e-3, scope="all", reduction="mean")
    ten = WeightOrthogonality(small, name="svdo_exact", beta=1e-3, scope="all", factor=10.0)()
    assert mean().item() == pytest.approx(s.item() / mean.num_layers, rel=1e-6)
    assert ten.item() == pytest.approx(10 * s.item(), rel=1e-6)
    with pytest.raises(ValueError, match="scope"):
        WeightOrthogonality(small, scope="layer4")
    with pytest.raises(ValueError, match="trunk_modules"):
        WeightOrthogonality(nn.Sequential(nn.Conv2d(3, 4, 3)), scope="backbone")


def test_unrolled_gradient_is_chosen_from_the_run_config():
    cfg = RunConfig().override({"model.task": "image", "model.abd": {"branch_dim": 32}, **RELEASED_LOSS})
    m = build_model("image", 4, backbone="resnet18", abd=cfg.model.abd)
    losses = build_losses(cfg, m, 4)
    d = losses.describe()
    assert d["of"]["grad"] == "unrolled" and d["ow"]["grad"] == "unrolled"
    assert d["ow"]["scope"] == "stem" and d["ow"]["factor"] == 10.0 and d["of"]["shallow_weight"] == 0.01
    stem = losses.ow.layers[0][1]
    assert stem.kernel_size == (7, 7)
    losses.ow().backward()
    grads = [p for p in m.parameters() if p.grad is not None]
    assert grads == [stem.weight] and torch.isfinite(stem.weight.grad).all()  # only the stem conv is regularised
