import json

import pytest
import torch
import torch.nn.functional as F

from reidlab.models import FUSIONS, VideoReIDModel, build_model

X = torch.randn(2, 3, 3, 64, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: build_model("video", 5, backbone="resnet18", fusion=name) for name in FUSIONS}


def test_each_fusion_name_builds_its_own_module(models):
    classes = set()
    for name, m in models.items():
        d = m.describe()
        json.dumps(d)
        assert d["task"] == "video" and d["fusion"]["name"] == name
        assert d["fusion"]["class"] == FUSIONS[name].__name__ == type(m.fusion).__name__
        classes.add(d["fusion"]["class"])
    assert len(classes) == len(FUSIONS)
    base = models["mean"].describe()["num_parameters"]
    assert models["temporal_attention"].describe()["num_parameters"] > base
    assert models["template_mask"].describe()["num_parameters"] > base
    assert models["softmax_cosine"].describe()["num_parameters"] == base


@pytest.mark.parametrize("name", list(FUSIONS))
def test_train_and_eval_forward_any_T(models, name):
    m = models[name].train()
    out = m(X)
    assert out["logits"].shape == (2, 5) and out["features"].shape == (2, 512) and out["of_taps"] == []
    out["logits"].sum().backward()
    assert m.encoder.conv1.weight.grad is not None
    m.zero_grad()
    m.eval()
    with torch.no_grad():
        for T in (1, 2, 3):
            e = m(X[:, :T])
            assert e.shape == (2, 512) and torch.isfinite(e).all()
    emb, aux = m.forward_aux(X)
    assert emb.shape == (2, 512)
    assert aux["fusion"]["weights"].shape == (2, 3)
    assert torch.allclose(aux["fusion"]["weights"].sum(1), torch.ones(2), atol=1e-5)


def test_mean_fusion_equals_manual_pipeline(models):
    m = models["mean"].eval()
    with torch.no_grad():
        maps = m.encoder(X.flatten(0, 1))
        f = F.adaptive_avg_pool2d(maps, 1).flatten(1).reshape(2, 3, -1).mean(1)
        assert torch.allclose(m(X), m.neck(f), atol=1e-5)


def test_new_parameters_include_fusion_and_neck(models):
    m = models["template_mask"]
    new = {id(p) for p in m.new_parameters()}
    assert id(m.fusion.gamma) in new and id(m.neck.classifier.weight) in new
    assert all(id(p) not in new for p in m.encoder.parameters())


def test_video_with_abd_encoder():
    m = build_model("video", 4, backbone="resnet18", fusion="softmax_cosine",
                    fusion_options={"tau": 0.5}, abd={"branch_dim": 16})
    out = m(X)
    assert out["features"].shape == (2, 48)
    assert [t.shape[0] for t in out["of_taps"]] == [6, 6]  # per frame: B * T
    m.eval()
    emb, aux = m.forward_aux(X)
    assert emb.shape == (2, 48) and aux["fusion"]["weights"].shape == (2, 3)
    assert [s.shape for s in aux["attention"]["cam"]] == [(6, 16, 16)] * 2  # per stripe, per frame
    assert aux["attention"]["pam"][0].shape[0] == 6
    d = m.describe()
    assert d["abd"]["branch_dim"] == 16 and d["fusion"]["options"]["tau"] == 0.5
    with pytest.raises(ValueError, match="vector fusions"):
        build_model("video", 4, fusion="template_mask", abd={"branch_dim": 16})


def test_video_input_validation():
    m = build_model("video", 4)
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        m(torch.randn(2, 3, 64, 32))
    with pytest.raises(ValueError, match="unknown fusion"):
        build_model("video", 4, fusion="attention")
    assert isinstance(m, VideoReIDModel)
