"""RunConfig: defaults, strict typing, dotted overrides, JSON/YAML round trip."""

from __future__ import annotations

import json

import pytest
import yaml

from reidlab.config import ConfigError, RunConfig


def test_defaults_are_the_documented_ones():
    c = RunConfig()
    assert (c.run_id, c.results_dir, c.seed) == ("default", "results/runs", 0)
    d = c.data
    assert (d.dataset, d.root, d.height, d.width, d.seq_len, d.sampling, d.p, d.k, d.workers, d.cache) == (
        "synthetic", "data/synthetic", 64, 32, 4, "restricted_random", 8, 4, 0, True)  # fmt: skip
    m = c.model
    assert (m.task, m.backbone, m.last_stride, m.pretrained, m.fusion, m.fusion_options, m.abd) == (
        "video", "resnet18", 1, None, "mean", {}, None)  # fmt: skip
    lo = c.loss
    assert (lo.ce, lo.label_smooth, lo.triplet, lo.margin, lo.soft_margin) == (1.0, 0.1, 1.0, 0.3, False)
    assert (lo.of.name, lo.of.beta, lo.of.exponent, lo.of.start_epoch, lo.of.n_iter) == ("none", 1e-6, 1, 0, 2)
    assert (lo.ow.name, lo.ow.beta, lo.ow.exponent, lo.ow.side, lo.ow.n_iter) == ("none", 1e-3, 2, "rows", 2)
    o = c.optim
    assert (o.name, o.lr, o.weight_decay, o.schedule) == ("adam", 3.5e-4, 5e-4, "cosine")
    t = c.train
    assert t.amp is True and t.compile is False and t.device == "auto" and t.max_minutes is None
    assert t.steps_per_epoch is None and t.fixbase_epochs == 0
    e = c.eval
    assert (e.metric, e.rerank, e.flip, e.max_rank, e.protocol, e.ap_mode) == (
        "euclidean", False, False, 50, "market1501", "toolbox")  # fmt: skip


def test_dict_json_yaml_round_trip(tmp_path):
    c = RunConfig().override({
        "run_id": "x1", "seed": 7, "model.fusion": "softmax_cosine", "model.fusion_options": {"tau": 0.1},
        "model.abd": {"cam": True, "pam": False}, "loss.of.name": "svdo", "train.max_minutes": 2.5,
        "data.options": {"mars_gallery": "all"},
    })  # fmt: skip
    assert RunConfig.from_dict(c.to_dict()) == c
    assert RunConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    for name in ("c.json", "c.yaml", "c.yml"):
        p = c.to_file(tmp_path / name)
        back = RunConfig.from_file(p)
        assert back == c and back.to_dict() == c.to_dict()
    assert yaml.safe_load((tmp_path / "c.yaml").read_text())["model"]["fusion_options"] == {"tau": 0.1}


def test_partial_dict_takes_defaults():
    c = RunConfig.from_dict({"train": {"epochs": 3}, "loss": {"of": {"name": "svdo"}}})
    assert c.train.epochs == 3 and c.train.eval_every == RunConfig().train.eval_every
    assert c.loss.of.name == "svdo" and c.loss.of.beta == 1e-6 and c.loss.ow.name == "none"


@pytest.mark.parametrize(
    "d, key, expected",
    [
        ({"model": {"fuson": "mean"}}, "model.fuson", "valid keys"),
        ({"bogus": 1}, "bogus", "valid keys"),
        ({"loss": {"of": {"betta": 1.0}}}, "loss.of.betta", "valid keys"),
        ({"train": {"epochs": "six"}}, "train.epochs", "expects int"),
        ({"train": {"epochs": 2.0}}, "train.epochs", "expects int"),
        ({"train": {"amp": 1}}, "train.amp", "expects bool"),
        ({"train": {"epochs": True}}, "train.epochs", "expects int"),
        ({"optim": {"lr": "fast"}}, "optim.lr", "expects float"),
        ({"model": {"pretrained": 3}}, "model.pretrained", "expects str or null"),
        ({"data": {"options": [1, 2]}}, "data.options", "expects dict"),
        ({"loss": {"of": 3}}, "loss.of", "expects mapping"),
        ({"optim": {"schedule": "poly"}}, "optim.schedule", "must be one of"),
        ({"train": {"epochs": 0}}, "train.epochs", ">= 1"),
        ({"data": {"p": -1}}, "data.p", ">= 1"),
        ({"train": {"device": "gpu"}}, "train.device", "cuda:N"),
        ({"run_id": "a/b"}, "run_id", "plain folder name"),
    ],
)
def test_bad_keys_and_types_name_the_dotted_key(d, key, expected):
    with pytest.raises(ConfigError) as ei:
        RunConfig.from_dict(d)
    msg = str(ei.value)
    assert f"'{key}'" in msg and expected in msg


def test_int_accepted_for_float_but_not_bool():
    c = RunConfig.from_dict({"optim": {"lr": 1}, "train": {"max_minutes": 3}})
    assert c.optim.lr == 1.0 and isinstance(c.optim.lr, float) and c.train.max_minutes == 3.0
    with pytest.raises(ConfigError, match="'optim.lr'"):
        RunConfig.from_dict({"optim": {"lr": True}})


def test_override_forms_and_immutability():
    base = RunConfig()
    c = base.override({"model.fusion": "softmax_cosine"}, seed=3)
    assert c.model.fusion == "softmax_cosine" and c.seed == 3
    assert base.model.fusion == "mean" and base.seed == 0  # the original is untouched
    c2 = base.override(**{"loss.of": {"name": "svdo"}, "data.options.mars_gallery": "all", "model.abd.cam": True})
    assert c2.loss.of.name == "svdo" and c2.loss.of.beta == 1e-6  # section dict merges
    assert c2.data.options == {"mars_gallery": "all"} and c2.model.abd == {"cam": True}
    with pytest.raises(ConfigError, match="'model.fuson'"):
        base.override({"model.fuson": "x"})
    with pytest.raises(ConfigError, match="'train.epochs'"):
        base.override({"train.epochs": "x"})


def test_validate_catches_mutation_and_files_errors(tmp_path):
    c = RunConfig()
    c.train.epochs = "3"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="'train.epochs'"):
        c.validate()
    with pytest.raises(FileNotFoundError):
        RunConfig.from_file(tmp_path / "missing.yaml")
    (tmp_path / "c.toml").write_text("x")
    with pytest.raises(ConfigError, match=".json, .yaml"):
        RunConfig.from_file(tmp_path / "c.toml")
    (tmp_path / "l.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        RunConfig.from_file(tmp_path / "l.yaml")
    (tmp_path / "e.yaml").write_text("")
    assert RunConfig.from_file(tmp_path / "e.yaml") == RunConfig()
    with pytest.raises(ConfigError, match="fixbase"):
        RunConfig.from_dict({"train": {"epochs": 2, "fixbase_epochs": 3}})


def test_run_dir():
    c = RunConfig().override({"run_id": "r", "results_dir": "out/runs"})
    assert str(c.run_dir).replace("\\", "/") == "out/runs/r"


def test_multistep_schedule_and_its_checks():
    from reidlab.engine.builders import lr_factor

    cfg = RunConfig.from_dict({"train": {"epochs": 60}, "optim": {"schedule": "multistep", "milestones": [20, 40],
                                                                  "warmup_epochs": 0, "gamma": 0.1}})
    assert [lr_factor(e, 0, 10, cfg) for e in (0, 19, 20, 39, 40, 59)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ConfigError, match="optim.milestones"):
        RunConfig.from_dict({"optim": {"schedule": "multistep"}})
    with pytest.raises(ConfigError, match="optim.milestones"):
        RunConfig.from_dict({"optim": {"milestones": [40, 20]}})


@pytest.mark.parametrize("key,bad", [("loss.ow.scope", "layer4"), ("loss.ow.reduction", "max"),
                                     ("loss.of.taps", "all"), ("loss.of.grad", "exact"), ("loss.ow.grad", "x")])
def test_abd_fidelity_switches_are_checked(key, bad):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        RunConfig().override({key: bad})
