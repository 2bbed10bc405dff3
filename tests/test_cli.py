"""The `python -m reidlab` command line: dispatch, exit codes, delegation, run-id derivation, and (slow)
the main job end to end on a tiny world."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
        "run", "params", "sweep", "table", "synth", "eval", "main"}


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


@pytest.mark.slow
def test_main_job_quick_on_tiny_world(tmp_path, monkeypatch):
    """`reidlab main` end to end (sweep -> tables -> report, diagnostics, correlation, attention)."""
    monkeypatch.chdir(tmp_path)
    world = {"ids": 10, "cams": 2, "frames": [6, 8], "distractors": 1, "junk": 0}
    spec = {"name": "fusion", "notebook": str(ROOT / "notebooks" / "train_fusion.ipynb"),
            "parameters": {"root": str(tmp_path / "tiny"), "synthetic": world, "p": 3, "k": 2, "progress": False},
            "variants": {"mean": {"fusion": "mean"}, "softmax_cosine": {"fusion": "softmax_cosine"},
                         "template_mask": {"fusion": "template_mask"}},
            "seeds": [0, 1]}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    rc = main(["main", "--spec", "spec.yaml", "--results", "res", "--quick", "--jobs", "2"])
    assert rc == 0
    res = tmp_path / "res"
    assert len(list((res / "runs").iterdir())) == 6
    for f in ("summary.md", "per_epoch.md", "diagnostics.md", "correlation.md"):
        assert (res / "tables" / f).exists(), f
    for f in ("curves.png", "correlation.png", "fusion_weights.png", "diag_weight_floor.png"):
        assert (res / "figures" / f).exists(), f
