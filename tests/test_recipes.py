"""Recipes (reidlab.recipes, recipes/*.yaml): every recipe parses into a valid RunConfig, names its published
target and protocol, and -- shrunk to ResNet-18, tiny images and 1-2 steps -- trains and evaluates on the
miniature dataset layouts of test_data_layouts with a local random-weight file (nothing is downloaded)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from reidlab.cli import main
from reidlab.config import ConfigError, RunConfig
from reidlab.recipes import (
    TEST_SPLIT_LABEL,
    RecipeError,
    find_recipe,
    format_target,
    list_recipes,
    load_recipe,
    parse_override,
    recipe_config,
    run_recipe,
    shrink_overrides,
)

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
REQUIRED = {"mars_temporal_pooling", "mars_softmax_cosine", "abdnet_market1501"}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A torchvision ResNet-18 state dict of random weights, saved locally (stands in for ImageNet)."""
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    """Miniature MARS and Market-1501 folders (tests/test_data_layouts.py writers)."""
    from test_data_layouts import write_market, write_mars

    base = tmp_path_factory.mktemp("data")
    return {"mars": write_mars(base / "mars"), "market1501": write_market(base / "market")}


def test_the_issue_recipes_are_shipped_and_listed():
    assert REQUIRED <= set(SHIPPED)
    assert set(SHIPPED) <= set(list_recipes())
    assert find_recipe("mars_temporal_pooling") == ROOT / "recipes" / "mars_temporal_pooling.yaml"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_recipe_parses_and_names_target_and_protocol(name, tmp_path):
    r = load_recipe(name)
    cfg = recipe_config(r, tmp_path, tmp_path / "w.pth")
    assert isinstance(cfg, RunConfig) and cfg.run_id == name
    assert cfg.data.root == str(tmp_path) and cfg.model.pretrained == str(tmp_path / "w.pth")
    assert cfg.model.backbone == "resnet50" and cfg.optim.warmup_epochs == 0
    t, p = r.target, r.protocol
    assert t["metrics"]["mAP"] > 0 and t["metrics"]["rank1"] > 0 and t["dataset"] == cfg.data.dataset
    assert r.meta["source"]["citation"] and (r.meta["source"].get("url") or r.meta["source"].get("document"))
    for key in ("gallery", "test_sampling", "ap_mode", "query"):
        assert str(p[key]).strip()
    assert p["ap_mode"] == cfg.eval.ap_mode and p["flip"] == cfg.eval.flip
    assert r.meta["reports"] == "last_epoch"
    text = r.describe()
    assert f"{t['metrics']['mAP']} mAP" in text and "gallery" in text and f"AP {p['ap_mode']}" in text
    if t["selected_on_test_split"] == "yes":
        assert TEST_SPLIT_LABEL in format_target(t) and TEST_SPLIT_LABEL in text
    for variant in r.variants:  # every variant builds a valid config of its own id
        v = recipe_config(r, tmp_path, tmp_path / "w.pth", variant=variant)
        assert v.run_id == f"{name}-{variant}" and v.to_dict() != cfg.to_dict()


def test_published_targets_and_hyper_parameters():
    tp = load_recipe("mars_temporal_pooling")
    assert tp.target["metrics"]["mAP"] == 75.8 and tp.target["metrics"]["rank1"] == 83.1
    assert tp.target["selected_on_test_split"] == "possibly"
    c = recipe_config(tp, "d", "w")
    assert (c.data.seq_len, c.data.height, c.data.width, c.data.p * c.data.k) == (4, 224, 112, 32)
    assert (c.optim.name, c.optim.lr, c.optim.schedule, c.optim.step_size, c.train.epochs) == ("adam", 3e-4, "step",
                                                                                                 200, 800)
    assert c.data.options == {"mars_gallery": "remaining"} and c.model.fusion == "mean"
    assert (c.loss.margin, c.loss.label_smooth, c.data.sampling) == (0.3, 0.1, "restricted_random")

    sc = load_recipe("mars_softmax_cosine")
    assert sc.target["range"]["mAP"] == [78.1, 78.4] and sc.target["range"]["rank1"] == [83.9, 84.2]
    assert sc.target["range"]["epochs"][0] == 360 and sc.target["epoch"] == 520 == recipe_config(sc, "d", "w").train.epochs
    c = recipe_config(sc, "d", "w")
    assert c.model.fusion == "softmax_cosine" and c.model.fusion_options == {"tau": 1.0}
    assert c.train.eval_epochs == [360, 400, 440, 480]
    assert recipe_config(sc, "d", "w", variant="mean").model.fusion == "mean"

    abd = load_recipe("abdnet_market1501")
    assert abd.target["metrics"] == {"mAP": 88.28, "rank1": 95.60}
    assert abd.target["selected_on_test_split"] == "yes" and TEST_SPLIT_LABEL in abd.describe()
    c = recipe_config(abd, "d", "w")
    assert (c.data.height, c.data.width, c.data.p, c.data.k, c.model.last_stride) == (384, 128, 16, 4, 1)
    assert (c.train.epochs, c.train.fixbase_epochs, c.optim.milestones, c.optim.lr) == (90, 10, [30, 50], 3e-4)
    assert (c.loss.triplet, c.loss.margin, c.eval.flip) == (0.1, 1.2, True)
    assert (c.loss.of.beta, c.loss.of.start_epoch, c.loss.ow.beta, c.loss.ow.start_epoch) == (1e-6, 33, 1e-3, 10)
    assert c.model.abd["cam_energy"] == "max_minus" and c.loss.ow.scope == "stem"
    assert (c.loss.of.taps, c.loss.of.shallow_weight, c.loss.of.factor, c.loss.ow.factor) == ("released", 0.01, 32, 10)
    paper = recipe_config(abd, "d", "w", variant="paper")  # the corrected variant: one switch away
    assert paper.model.abd["cam_energy"] == "affinity" and paper.loss.ow.scope == "backbone"
    assert {k: v for k, v in paper.model.abd.items() if k != "cam_energy"} == \
        {k: v for k, v in c.model.abd.items() if k != "cam_energy"}


def _shrunk_run(name: str, layouts: dict, weights: Path, tmp_path: Path, **kw):
    r = load_recipe(name)
    record, report = run_recipe(name, layouts[r.protocol["dataset"]], weights, results=tmp_path, shrink=True,
                                progress=False, **kw)
    return r, record, report, record.run_config()


@pytest.mark.parametrize("name", SHIPPED)
def test_every_recipe_shrunk_trains_and_reports_the_last_epoch(name, layouts, weights, tmp_path):
    r, record, report, cfg = _shrunk_run(name, layouts, weights, tmp_path)
    assert record.state == "finished", record.status
    assert Path(record.run_dir) == tmp_path / "runs" / name
    assert cfg.model.backbone == "resnet18" and cfg.train.steps_per_epoch == 1 and cfg.train.epochs <= 2
    assert cfg.model.pretrained == str(weights) and cfg.data.root == str(layouts[r.protocol["dataset"]])
    epochs = record.epochs
    assert len(epochs) == cfg.train.epochs and (epochs["steps"] == 1).all()
    got = report["reported"]
    assert got["epoch"] == cfg.train.epochs and 0 <= got["mAP"] <= 100  # the last epoch, not a selected one
    saved = json.loads((Path(record.run_dir) / "recipe.json").read_text())
    assert saved["target"] == r.target and saved["protocol"] == r.protocol and saved["reported"] == got
    assert saved["shrunk"] is True and saved["target_label"] == format_target(r.target)
    if cfg.train.fixbase_epochs:  # the fixbase phase ran, then the full model with O.F./O.W. active
        assert cfg.train.fixbase_epochs == 1 and epochs["loss_ow"].iloc[-1] > 0 and epochs["loss_of"].iloc[-1] > 0


def test_corrected_abd_variant_trains(layouts, weights, tmp_path):
    _, record, report, cfg = _shrunk_run("abdnet_market1501", layouts, weights, tmp_path, variant="paper")
    assert record.state == "finished" and report["variant"] == "paper"
    assert cfg.model.abd["cam_energy"] == "affinity" and cfg.loss.ow.scope == "backbone"


def test_shrink_keeps_the_code_path():
    c = recipe_config("abdnet_market1501", "d", "w")
    s = c.override(shrink_overrides(c))
    assert (s.train.epochs, s.train.fixbase_epochs, s.loss.of.start_epoch, s.loss.ow.start_epoch) == (2, 1, 1, 1)
    assert s.optim.schedule == "multistep" and s.optim.milestones == [1] and s.model.abd["branch_dim"] == 16
    assert s.model.abd["neck"] == c.model.abd["neck"] and s.loss.of.taps == c.loss.of.taps
    m = recipe_config("mars_softmax_cosine", "d", "w", shrink=True)
    assert (m.train.epochs, m.train.fixbase_epochs, m.optim.step_size, m.model.fusion) == (1, 0, 1, "softmax_cosine")


def test_errors_name_the_problem(layouts, weights, tmp_path):
    with pytest.raises(RecipeError, match=r"unknown recipe 'mars_temporal_poling' \(did you mean "
                                          r"'mars_temporal_pooling'\?\)"):
        load_recipe("mars_temporal_poling")
    with pytest.raises(RecipeError, match=r"no variant 'papr' \(did you mean 'paper'\?\)"):
        recipe_config("abdnet_market1501", "d", "w", variant="papr")
    with pytest.raises(FileNotFoundError, match="is not a folder.*never downloaded"):
        run_recipe("mars_temporal_pooling", tmp_path / "nowhere", weights, results=tmp_path)
    with pytest.raises(FileNotFoundError, match="weight file .*never downloaded"):
        run_recipe("mars_temporal_pooling", layouts["mars"], tmp_path / "resnet50.pth", results=tmp_path)
    with pytest.raises(ConfigError, match="train.epoch"):
        recipe_config("mars_temporal_pooling", "d", "w", overrides={"train.epoch": 3})
    assert parse_override("optim.milestones=[3, 5]") == ("optim.milestones", [3, 5])
    assert parse_override("train.device=cuda:1") == ("train.device", "cuda:1")
    with pytest.raises(ValueError, match="key=value"):
        parse_override("train.epochs")


def _broken(tmp_path: Path, edit) -> Path:
    doc = yaml.safe_load((ROOT / "recipes" / "abdnet_market1501.yaml").read_text())
    edit(doc)
    path = tmp_path / "abdnet_market1501.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["recipe"]["protocol"].update(ap_mode="official"), r"protocol.ap_mode says 'official' but the "
                                                                     r"config runs 'toolbox'"),
    (lambda d: d["recipe"]["protocol"].update(flip=False), "protocol.flip says False"),
    (lambda d: d["recipe"]["target"].update(selection="the best epoch"), "must say 'best epoch picked on the test"),
    (lambda d: d["recipe"].update(reports="best_epoch"), "reports must be 'last_epoch'"),
    (lambda d: d["recipe"]["target"].pop("selected_on_test_split"), "missing key.*selected_on_test_split"),
    (lambda d: d["recipe"]["protocol"].pop("gallery"), "protocol: missing key.*gallery"),
    (lambda d: d["recipe"]["source"].pop("url"), "needs a url"),
    (lambda d: d["recipe"]["target"]["metrics"].update(mAP=0.88), "percentage in \\(1, 100\\]"),  # not a fraction
    (lambda d: d["recipe"]["target"]["metrics"].update(mAP=188), "percentage"),
    (lambda d: d["recipe"]["protocol"].update(galery="x"), r"unknown key 'galery' \(did you mean 'gallery'"),
    (lambda d: d["recipe"]["variants"]["paper"]["overrides"].update({"loss.ow.scop": "all"}), "variant 'paper'.*scop"),
    (lambda d: d["config"]["optim"].update(lr="fast"), "optim.lr"),
    (lambda d: d["recipe"].update(name="other"), "must equal the file name"),
])
def test_malformed_recipes_are_refused(tmp_path, edit, message):
    path = _broken(tmp_path, edit)
    with pytest.raises(RecipeError, match=message):
        load_recipe(path)


def test_mars_recipe_must_name_its_gallery_convention(tmp_path):
    doc = yaml.safe_load((ROOT / "recipes" / "mars_temporal_pooling.yaml").read_text())
    doc["recipe"]["protocol"]["mars_gallery"] = "all"
    (tmp_path / "mars_temporal_pooling.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(RecipeError, match="mars_gallery says 'all' but the config runs 'remaining'"):
        load_recipe(tmp_path / "mars_temporal_pooling.yaml")
    assert recipe_config("mars_temporal_pooling", "d", "w", variant="gallery_all").data.options == {"mars_gallery": "all"}


def test_cli_list_dry_run_errors_and_a_shrunk_run(layouts, weights, tmp_path, capsys):
    assert main(["recipe", "--list"]) == 0
    out = capsys.readouterr().out
    for name in REQUIRED:
        assert f"{name}: " in out
    assert "75.8 mAP / 83.1 Rank-1" in out and f"88.28 mAP / 95.6 Rank-1 on market1501 ({TEST_SPLIT_LABEL})" in out
    assert "gallery remaining" in out and "AP toolbox" in out

    assert main(["recipe", "abdnet_market1501", "--dry-run", "--variant", "paper", "-o", "train.epochs=3",
                 "-o", "train.fixbase_epochs=1"]) == 0
    out = capsys.readouterr().out
    cfg = json.loads(out[out.index("{"):])
    assert cfg["model"]["abd"]["cam_energy"] == "affinity" and cfg["train"]["epochs"] == 3

    assert main(["recipe", "abd_market"]) == 2
    assert main(["recipe", "mars_temporal_pooling"]) == 2
    assert main(["recipe", "mars_temporal_pooling", "--root", str(tmp_path / "none"), "--weights", str(weights)]) == 2
    assert main(["recipe"]) == 2
    err = capsys.readouterr().err
    assert "unknown recipe 'abd_market'" in err and "needs --root DATA_ROOT and --weights" in err
    assert "is not a folder" in err and "give a recipe name" in err

    rc = main(["recipe", "mars_temporal_pooling", "--root", str(layouts["mars"]), "--weights", str(weights),
               "--results", str(tmp_path / "res"), "--shrink", "--quiet", "-o", "model.fusion=max"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "last epoch 1: mAP" in out and "target: 75.8 mAP / 83.1 Rank-1" in out and "smoke run" in out
    run = tmp_path / "res" / "runs" / "mars_temporal_pooling"
    assert json.loads((run / "recipe.json").read_text())["overrides"] == {"model.fusion": "max"}
    assert json.loads((run / "config.json").read_text())["model"]["fusion"] == "max"


def test_installed_copy_is_found(tmp_path, monkeypatch):
    """An installed package finds its recipes under <prefix>/share/reidlab/recipes (outside a clone)."""
    import sys

    share = tmp_path / "prefix" / "share" / "reidlab" / "recipes"
    share.mkdir(parents=True)
    shutil.copy(ROOT / "recipes" / "mars_temporal_pooling.yaml", share / "extra_recipe.yaml")
    doc = yaml.safe_load((share / "extra_recipe.yaml").read_text())
    doc["recipe"]["name"] = "extra_recipe"
    (share / "extra_recipe.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    monkeypatch.chdir(tmp_path)
    assert list_recipes()["extra_recipe"] == share / "extra_recipe.yaml"
    assert load_recipe("extra_recipe").target == load_recipe("mars_temporal_pooling").target
