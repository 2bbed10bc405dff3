import pytest
import torch
import torchvision

from reidlab.models import BNNeck, ImageReIDModel, StateDictMismatchError, build_model, build_trunk


@pytest.mark.parametrize("name,channels", [("resnet18", 512), ("resnet34", 512)])
def test_trunk_shapes_and_last_stride(name, channels):
    x = torch.randn(2, 3, 64, 32)
    t1 = build_trunk(name, last_stride=1).eval()
    t2 = build_trunk(name, last_stride=2).eval()
    assert t1(x).shape == (2, channels, 4, 2)
    assert t2(x).shape == (2, channels, 2, 1)


def test_resnet50_last_stride_one_small_input():
    t = build_trunk("resnet50", last_stride=1).eval()
    with torch.no_grad():
        assert t(torch.randn(1, 3, 64, 32)).shape == (1, 2048, 4, 2)
    assert t.layer4[0].conv2.stride == (1, 1) and t.layer4[0].downsample[0].stride == (1, 1)


def test_bnneck_train_and_eval_outputs():
    neck = BNNeck(6, 4)
    f = torch.randn(5, 6)
    logits, feat = neck(f)
    assert logits.shape == (5, 4) and feat is f
    assert neck.classifier.bias is None and not neck.bn.bias.requires_grad
    neck.eval()
    out = neck(f)
    want = (f - neck.bn.running_mean) / torch.sqrt(neck.bn.running_var + neck.bn.eps) * neck.bn.weight
    assert torch.allclose(out, want, atol=1e-6)


def test_image_model_contract_and_gradients():
    m = build_model("image", 7, backbone="resnet18")
    assert isinstance(m, ImageReIDModel) and m.embedding_dim == 512
    out = m(torch.randn(4, 3, 64, 32))
    assert set(out) == {"logits", "features", "of_taps", "of_positions"}
    assert out["logits"].shape == (4, 7) and out["features"].shape == (4, 512) and out["of_taps"] == []
    assert out["of_positions"] == {}  # the released O.F. positions exist for ABD models only
    (out["logits"].sum() + out["features"].sum()).backward()
    assert all(p.grad is not None for p in m.trunk.layer1.parameters())
    m.eval()
    e = m(torch.randn(3, 3, 64, 32))
    assert e.shape == (3, 512)
    emb, aux = m.forward_aux(torch.randn(3, 3, 64, 32))
    assert emb.shape == (3, 512) and set(aux) >= {"fusion", "attention"}
    new = {id(p) for p in m.new_parameters()}
    assert new == {id(p) for p in m.neck.parameters()}
    d = m.describe()
    assert d["class"] == "ImageReIDModel" and d["num_parameters"] == sum(p.numel() for p in m.parameters())
    with pytest.raises(ValueError, match="temporal fusion"):
        build_model("image", 7, fusion="softmax_cosine")
    with pytest.raises(ValueError, match="backbone"):
        build_model("image", 7, backbone="resnet101")


def _tv_state(name="resnet18"):
    return getattr(torchvision.models, name)(weights=None).state_dict()


def test_pretrained_loads_from_local_torchvision_file(tmp_path):
    state = _tv_state()
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    m = build_model("image", 3, backbone="resnet18", pretrained=str(path))
    assert torch.equal(m.trunk.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert torch.equal(m.trunk.bn1.running_mean, state["bn1.running_mean"])


def test_pretrained_errors_name_the_keys(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_model("image", 3, pretrained=str(tmp_path / "missing.pth"))
    state = _tv_state()
    del state["layer2.0.bn1.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(StateDictMismatchError) as ei:
        build_model("image", 3, pretrained=str(path))
    msg = str(ei.value)
    assert "layer2.0.bn1.weight" in msg and "extra.weight" in msg and "conv1.weight" in msg
    assert "(64, 3, 7, 7)" in msg and "(64, 3, 3, 3)" in msg
    assert str(path) in msg
    # a resnet50 checkpoint into a resnet18 trunk is refused, not half-loaded
    path50 = tmp_path / "r50.pth"
    torch.save(_tv_state("resnet50"), path50)
    with pytest.raises(StateDictMismatchError, match="unexpected"):
        build_model("image", 3, backbone="resnet18", pretrained=str(path50))
