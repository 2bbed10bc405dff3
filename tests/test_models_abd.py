import json

import pytest
import torch
import torchvision
from torch import nn

from reidlab.losses import WeightOrthogonality
from reidlab.models import (
    ABD_ABLATIONS,
    BRANCH_ORDER,
    CAM,
    PAM,
    ABDNet,
    StateDictMismatchError,
    build_model,
)

X = torch.randn(4, 3, 64, 32, generator=torch.Generator().manual_seed(0))


def _abd(**kw):
    kw.setdefault("branch_dim", 32)
    return build_model("image", 5, backbone="resnet18", abd=kw)


def _count(m, cls):
    return sum(isinstance(x, cls) for x in m.modules())


@pytest.mark.parametrize("variant", list(ABD_ABLATIONS))
def test_ablation_switches_change_the_graph(variant):
    spec = ABD_ABLATIONS[variant]["abd"]
    m = _abd(**spec)
    assert _count(m, CAM) == int(spec["cam"]) + int(spec["shallow_cam"])
    assert _count(m, PAM) == int(spec["pam"])
    out = m(X)
    assert out["features"].shape == (4, 3 * 32) and out["logits"].shape == (4, 5)
    if spec["of_taps"]:
        assert [t.shape for t in out["of_taps"]] == [(4, 64, 16, 8), (4, 512, 4, 2)]
    else:
        assert out["of_taps"] == []
    heads = list(m.encoder.branches["attention"].heads)
    assert heads == ["identity"] + [h for h in ("cam", "pam") if spec[h]]


def test_full_abd_gradients_reach_attention_and_dims():
    m = _abd(branch_dim=16, num_stripes=2)
    with torch.no_grad():  # open the residual gates so CAM/PAM are on the gradient path
        for mod in m.modules():
            if isinstance(mod, (CAM, PAM)):
                mod.gamma.fill_(0.1)
    out = m(X)
    assert m.embedding_dim == 48
    loss = out["logits"].logsumexp(1).mean() + out["features"].pow(2).mean() + sum(t.mean() for t in out["of_taps"])
    loss.backward()
    att = m.encoder.branches["attention"]
    for p in (att.heads["cam"].gamma, att.heads["pam"].query.weight, m.encoder.shallow_cam.gamma,
              m.encoder.branches["global"].layer4[0].conv1.weight, m.encoder.trunk.conv1.weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    m.eval()
    emb, aux = m.forward_aux(X)
    assert emb.shape == (4, 48)
    a = aux["attention"]
    assert [s.shape for s in a["cam"]] == [(4, 16, 16)] * 2
    assert [s.shape for s in a["pam"]] == [(4, 4, 4)] * 2  # 4x2 map -> two 2x2 stripes
    assert [s.shape for s in a["shallow_cam"]] == [(4, 64, 64)]


def test_branch_order_is_fixed_and_switchable():
    m = _abd()
    d = json.loads(json.dumps(m.describe()))
    assert d["branches"] == ["global", "attention"] and d["abd"]["branch_dim"] == 32 and d["embedding_dim"] == 96
    assert tuple(m.encoder.branches) == BRANCH_ORDER == ("global", "attention")
    keys = [k for k in m.state_dict() if k.startswith("encoder.branches.")]
    first_att = next(i for i, k in enumerate(keys) if k.startswith("encoder.branches.attention."))
    assert all(k.startswith("encoder.branches.global.") for k in keys[:first_att])
    g = _abd(attention_branch=False, cam=False, pam=False)
    assert tuple(g.encoder.branches) == ("global",) and g.embedding_dim == 32
    a = _abd(global_branch=False, num_stripes=4)
    assert tuple(a.encoder.branches) == ("attention",) and a.embedding_dim == 128
    assert a(X)["features"].shape == (4, 128)
    with pytest.raises(ValueError, match="unknown ABD option 'camm'"):
        _abd(camm=True)
    with pytest.raises(ValueError, match="branch_dim"):
        _abd(branch_dim=0)


def test_pretrained_trunk_copies_layer4_into_every_branch(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    p = tmp_path / "r18.pth"
    torch.save(state, p)
    m = build_model("image", 5, backbone="resnet18", pretrained=str(p), abd={"branch_dim": 16})
    w = state["layer4.1.conv2.weight"]
    for b in BRANCH_ORDER:
        assert torch.equal(m.encoder.branches[b].layer4[1].conv2.weight, w)
    assert torch.equal(m.encoder.trunk.layer2[0].conv1.weight, state["layer2.0.conv1.weight"])
    # branch copies are independent parameters
    assert m.encoder.branches["global"].layer4[1].conv2.weight is not m.encoder.branches["attention"].layer4[1].conv2.weight
    del state["layer4.0.bn2.running_var"]
    torch.save(state, p)
    with pytest.raises(StateDictMismatchError, match=r"branches\.global\.layer4\.0\.bn2\.running_var"):
        build_model("image", 5, backbone="resnet18", pretrained=str(p), abd={"branch_dim": 16})


def test_strict_full_weight_loading(tmp_path):
    m = _abd()
    p = tmp_path / "abd.pt"
    torch.save({"model": m.state_dict()}, p)
    m2 = _abd()
    rep = m2.load_weights(p)
    assert rep["loaded"] == len(m.state_dict())
    assert torch.equal(m2.neck.classifier.weight, m.neck.classifier.weight)
    no_pam = _abd(pam=False)
    with pytest.raises(StateDictMismatchError) as ei:
        no_pam.load_weights(p)
    assert "encoder.branches.attention.heads.pam.query.weight" in str(ei.value)
    assert "unexpected" in str(ei.value)
    wider = _abd(branch_dim=48)
    with pytest.raises(StateDictMismatchError, match="shape mismatch"):
        wider.load_weights(p)


def test_new_parameters_exclude_trunk_and_layer4_copies():
    m = _abd()
    new = {id(p) for p in m.new_parameters()}
    assert all(id(p) not in new for p in m.encoder.trunk.parameters())
    assert all(id(p) not in new for p in m.encoder.branches["global"].layer4.parameters())
    assert id(m.encoder.branches["attention"].heads["cam"].gamma) in new
    assert id(m.encoder.shallow_cam.gamma) in new and id(m.neck.classifier.weight) in new


def test_ow_counts_every_conv_of_abd():
    m = _abd()
    n = sum(isinstance(x, nn.Conv2d) for x in m.modules())
    # trunk conv1 + layer1-3 (1 + 12 + 2 downsample) + 2 x layer4 (4 + 1 downsample) + reduce, sum_conv,
    # PAM query/key/value
    assert n == 1 + 12 + 2 + 2 * 5 + 2 + 3
    assert WeightOrthogonality(m).num_layers == n


def test_resnet50_abd_cheap_shape():
    m = build_model("image", 3, backbone="resnet50", abd={}).eval()
    assert m.embedding_dim == 3072
    with torch.no_grad():
        assert m(torch.randn(1, 3, 64, 32)).shape == (1, 3072)


@pytest.mark.slow
def test_resnet50_abd_paper_size_training_step():
    m = ABDNet(751, "resnet50")
    x = torch.randn(2, 3, 384, 128)
    out = m(x)
    assert out["features"].shape == (2, 3072)
    assert [t.shape for t in out["of_taps"]] == [(2, 256, 96, 32), (2, 2048, 24, 8)]
    out["logits"].sum().backward()
    assert WeightOrthogonality(m).num_layers == sum(isinstance(x, nn.Conv2d) for x in m.modules())
