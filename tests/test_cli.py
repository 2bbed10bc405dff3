"""The `python -m reidlab` command line: dispatch, exit codes, delegation, run-id derivation, and (slow)
the main job end to end on a tiny world."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from reidlab.cli import build_parser, main
from reidlab.notebook import (
    NotebookParameter,
    ParameterError,
    coerce_value,
    derive_run_id,
    enter_workspace,
    training_config,
)

ROOT = Path(__file__).resolve().parents[1]


def test_help_and_bad_usage(capsys):
    assert main(["--help"]) == 0
    assert "sweep" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert main([]) == 2
    assert set(build_parser()._subparsers._group_actions[0].choices) == {
        "run", "params", "sweep", "table", "synth", "eval", "main", "rank", "tensorboard", "check-data", "recipe", "abd"}


def test_module_entry_point_lists_parameters():
    r = subprocess.run([sys.executable, "-m", "reidlab", "params", "train_fusion"], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "fusion: str = 'mean'  # temporal fusion" in r.stdout
    assert "seed: int = 0" in r.stdout


def test_params_of_missing_notebook(capsys):
    assert main(["params", "no_such_notebook"]) == 2
    assert "not found" in capsys.readouterr().err


def test_synth_delegates_to_the_generator(tmp_path):
    out = tmp_path / "w"
    rc = main(["synth", "--out", str(out), "--ids", "6", "--cams", "2", "--frames", "4,5", "--distractors", "0",
               "--junk", "0", "--quiet"])
    assert rc == 0
    knobs = json.loads((out / "info" / "world.json").read_text())["knobs"]
    assert (knobs["ids"], knobs["cams"], knobs["frames"]) == (6, 2, [4, 5])
    assert main(["synth", "--out", str(out), "--ids", "-3", "--quiet"]) == 2


def test_parameter_coercion():
    p = {t: NotebookParameter("x", t, None, "") for t in ("int", "float", "bool", "str", "list", "dict", "None")}
    assert coerce_value(p["int"], "3", from_string=True) == 3
    assert coerce_value(p["float"], "1e-3", from_string=True) == 0.001
    assert coerce_value(p["float"], 2) == 2.0
    assert coerce_value(p["bool"], "False", from_string=True) is False
    assert coerce_value(p["str"], "0.1", from_string=True) == "0.1"  # a str stays a str
    assert coerce_value(p["dict"], "{tau: 0.1}", from_string=True) == {"tau": 0.1}
    assert coerce_value(p["list"], '["a", 1]', from_string=True) == ["a", 1]
    assert coerce_value(p["None"], "4", from_string=True) == 4
    for t, bad in (("int", "1.5"), ("int", True), ("float", "x"), ("bool", "maybe"), ("bool", 1),
                   ("str", 3), ("dict", "[1]"), ("list", "{a: 1}")):
        with pytest.raises(ParameterError, match=f"expected {t}"):
            coerce_value(p[t], bad, from_string=isinstance(bad, str))


def test_derived_run_ids_are_readable_unique_and_bounded():
    d = {"fusion": "mean", "fusion_options": {}, "seed": 0, "epochs": 6, "results_dir": "results"}
    assert derive_run_id("train_fusion", d, d) == "train_fusion-s0"
    rid = derive_run_id("train_fusion", {**d, "fusion": "softmax_cosine", "fusion_options": {"tau": 0.1},
                                         "seed": 2, "results_dir": "/elsewhere"}, d)
    assert rid == "train_fusion-fusion=softmax_cosine-fusion_options=tau=0.1-s2"
    long1 = derive_run_id("t", {**d, "fusion_options": {"a" * 80: 1}}, d)
    long2 = derive_run_id("t", {**d, "fusion_options": {"a" * 80: 2}}, d)
    assert len(long1) <= 96 and long1 != long2 and long1.endswith("-s0")


def test_training_config_maps_parameters_and_sentinels():
    cfg = training_config({"fusion": "softmax_cosine", "fusion_options": {"tau": 0.1}, "epochs": 3, "seed": 4,
                           "run_id": "x-s4", "root": "", "pretrained": "", "max_minutes": 0.0,
                           "steps_per_epoch": 0}, {"optim.schedule": "step"}, results_dir="/r")
    assert cfg.model.fusion == "softmax_cosine" and cfg.model.fusion_options == {"tau": 0.1}
    assert cfg.train.epochs == 3 and cfg.seed == 4 and cfg.optim.schedule == "step"
    assert cfg.data.root == "data/synthetic"  # "" keeps the default
    assert cfg.model.pretrained is None and cfg.train.max_minutes is None and cfg.train.steps_per_epoch is None
    assert cfg.run_dir == Path("/r/runs/x-s4")
    with pytest.raises(ValueError, match="no RunConfig key"):
        training_config({"fusoin": "mean"})


def test_enter_workspace_from_notebooks_folder(monkeypatch, tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert enter_workspace() == tmp_path
    monkeypatch.chdir(tmp_path)
    assert enter_workspace() == tmp_path


def test_main_job_trains_studies_and_publishes_only_on_success(tmp_path, monkeypatch):
    """`reidlab main` end to end on a tiny world: sweep -> study -> tables -> notebooks -> publish.
    A failing stage leaves the published results untouched; checkpoints and caches never reach them."""
    import reidlab.study.pipeline as pipeline

    monkeypatch.chdir(tmp_path)
    world = {"ids": 10, "cams": 2, "frames": [6, 8], "distractors": 1, "junk": 0}
    sweep = {"name": "fusion", "notebook": str(ROOT / "notebooks" / "train_fusion.ipynb"),
             "parameters": {"root": str(tmp_path / "tiny"), "synthetic": world, "p": 3, "k": 2, "progress": False,
                            "epochs": 1, "steps_per_epoch": 1, "eval_every": 1},
             "variants": {"mean": {"fusion": "mean"}, "template_mask": {"fusion": "template_mask", "seeds": [0]}},
             "seeds": [0, 1]}
    study = {"name": "study", "sweep": "sweep.yaml", "trunk_variant": "mean", "baseline": "mean",
             "end_to_end": ["template_mask"], "negative_control": "mean_renamed", "oracle": "oracle",
             "corruption_rates": [0.2, 0.5],
             "operators": {"mean": {"fusion": "mean"}, "mean_renamed": {"fusion": "mean"},
                           "oracle": {"fusion": "mean", "scope": "tracklet", "oracle": True},
                           "softmax_cosine_t0.1_tracklet": {"fusion": "softmax_cosine", "options": {"tau": 0.1},
                                                            "scope": "tracklet"}},
             "heads": {"template_mask": {"steps": 2, "p": 2, "k": 2}}, "bootstrap": {"n_boot": 100}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    old = tmp_path / "res" / "tables" / "summary.md"
    old.parent.mkdir(parents=True)
    old.write_text("committed table")

    def broken(*a, **k):
        raise ValueError("planted failure")

    monkeypatch.setattr(pipeline, "run_study", broken)
    args = ["main", "--spec", "study.yaml", "--results", "res", "--work", "wk", "--jobs", "2"]
    assert main(args) == 1
    assert old.read_text() == "committed table" and sorted(p.name for p in (tmp_path / "res").iterdir()) == ["tables"]
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0  # the sweep's runs are finished and skipped; the study runs now
    res = tmp_path / "res"
    assert sorted(p.name for p in (res / "runs").iterdir()) == ["fusion-mean-s0", "fusion-mean-s1",
                                                                 "fusion-template_mask-s0"]
    assert not list(res.rglob("*.pt")) and [p.name for p in res.rglob("*.npz")] == ["correlation.npz"]
    assert (tmp_path / "wk" / "runs" / "fusion-mean-s0" / "features" / "test-corruption0.5.npz").exists()
    ops = pd.read_csv(res / "study" / "operators.csv")
    neg = ops[(ops.method == "mean_renamed")]
    assert (neg.delta == 0).all() and (neg.delta_lo == 0).all() and (neg.delta_hi == 0).all()
    assert set(ops.method) >= {"oracle", "head:template_mask", "e2e:template_mask", "e2e:mean"}
    assert ops[ops.method == "oracle"].uses_ground_truth.all()
    for f in ("summary.md", "study_operators.md", "study_corruption.md", "study_cosine.md"):
        assert (res / "tables" / f).exists(), f
    for f in ("curves.png", "study_tau.png", "study_corruption.png", "study_oracle_gap.png", "study_weights.png",
              "study_cosine_lag.png", "study_correlation.png", "ranked_fusion-mean-s0_worst.png",
              "ranked_fusion-mean-s0_best.png"):
        assert (res / "figures" / f).exists(), f
    assert (res / "tables" / "ranked_fusion-mean-s0.csv").exists()
    assert "committed table" not in (res / "tables" / "summary.md").read_text()
    # every published run carries its TensorBoard event file; kernel logs stay in the work folder
    assert all((r / "events.out.tfevents.reidlab").is_file() for r in (res / "runs").iterdir())
    assert not list(res.rglob("*.kernel.log")) and list((tmp_path / "wk").rglob("*.kernel.log"))


def test_study_names_a_missing_checkpoint(tmp_path):
    """On a fresh clone the records exist without checkpoints: the study says which one it needs."""
    from reidlab.study.pipeline import load_study_spec, run_study

    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({
        "name": "fusion", "notebook": str(ROOT / "notebooks" / "train_fusion.ipynb"),
        "variants": {"mean": {"fusion": "mean"}}, "seeds": [0]}))
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({
        "name": "s", "sweep": "sweep.yaml", "trunk_variant": "mean", "baseline": "mean",
        "corruption_rates": [0.2], "operators": {"mean": {"fusion": "mean"}}}))
    (tmp_path / "runs" / "fusion-mean-s0").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="fusion-mean-s0.*last.pt"):
        run_study(tmp_path, load_study_spec(tmp_path / "study.yaml"), sweep_name="fusion")


def test_study_spec_errors_name_the_key(tmp_path):
    from reidlab.study.pipeline import load_study_spec

    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump({"name": "s", "sweep": "x.yaml", "trunk_variant": "mean", "baseline": "meen",
                                 "corruption_rates": [0.2], "operators": {"mean": {"fusion": "mean"}}}))
    with pytest.raises(ValueError, match="baseline 'meen' is not one of the operators"):
        load_study_spec(p)
    p.write_text(yaml.safe_dump({"name": "s", "sweeep": "x"}))
    with pytest.raises(ValueError, match="unknown keys \\['sweeep'\\]"):
        load_study_spec(p)


def test_publish_swaps_folders_and_leaves_checkpoints_behind(tmp_path):
    from reidlab.cli import publish

    wk, res = tmp_path / "wk", tmp_path / "res"
    (wk / "runs" / "r" / "checkpoints").mkdir(parents=True)
    (wk / "runs" / "r" / "checkpoints" / "last.pt").write_bytes(b"x")
    (wk / "runs" / "r" / "features").mkdir()
    (wk / "runs" / "r" / "features" / "test.npz").write_bytes(b"x")
    (wk / "runs" / "r" / "metrics.csv").write_text("new")
    (res / "runs" / "stale").mkdir(parents=True)
    (res / "other").mkdir()
    out = publish(wk, res, parts=("runs", "tables"))
    assert out == [res / "runs"]
    assert sorted(p.relative_to(res).as_posix() for p in res.rglob("*")) == [
        "other", "runs", "runs/r", "runs/r/metrics.csv"]