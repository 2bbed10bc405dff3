"""'did you mean …?' on mistyped names, from the helper up to the user-facing errors."""

import pytest

from reidlab.suggest import close_matches, did_you_mean


def test_close_matches_ranks_and_limits():
    assert close_matches("epoch", ["epochs", "lr", "seed"]) == ["epochs"]
    assert close_matches("LR", ["lr", "seed"]) == ["lr"]  # case-only differences always count
    assert close_matches("zzz", ["lr", "seed"]) == []
    assert close_matches("x", []) == []
    assert len(close_matches("ab", ["ab1", "ab2", "ab3", "ab4"])) == 3


def test_did_you_mean_text():
    assert did_you_mean("epoch", ["epochs"]) == " (did you mean 'epochs'?)"
    assert did_you_mean("fusion_option", ["fusion", "fusion_options"]) == \
        " (did you mean 'fusion_options' or 'fusion'?)"
    assert did_you_mean("zzz", ["lr"]) == ""


def test_notebook_parameter_typo_suggests():
    from reidlab.notebook import ParameterError, find_notebook, validate_parameters

    with pytest.raises(ParameterError, match=r"unknown parameter 'epoch' \(did you mean 'epochs'\?\)"):
        validate_parameters(find_notebook("train_fusion"), {"epoch": 3})


@pytest.mark.parametrize("call, hint", [
    (lambda m: m.build_model("video", 3, fusion="softmax_cosin"), "softmax_cosine"),
    (lambda m: m.build_model("image", 3, backbone="resnet5"), "resnet50"),
    (lambda m: m.resolve_abd_options({"pamm": True}), "pam"),
    (lambda m: m.build_fusion("softmax_cosine", 8, tua=1.0), "tau"),
])
def test_model_typos_suggest(call, hint):
    import reidlab.models as m

    with pytest.raises(ValueError, match=f"did you mean '{hint}'"):
        call(m)
