"""`reidlab sweep`: grid expansion, run ids, dry run, skip/resume, parameter checks; and provenance:
the variants of the shipped fusion sweep really build different models."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from reidlab.cli import main as cli_main
from reidlab.notebook import ParameterError, notebook_parameters, training_config
from reidlab.runs.records import RunRecord
from reidlab.sweep import _command, expand, load_spec, run_sweep

ROOT = Path(__file__).resolve().parents[1]

# a stand-in training notebook: writes a finished run record and logs each execution (no torch, fast)
STUB_PARAMS = '''\
run_id: str = ""  # run folder name
seed: int = 0  # seed
fusion: str = "mean"  # fusion
fusion_options: dict = {}  # options
epochs: int = 1  # epochs
results_dir: str = "results"  # results folder
force: bool = False  # re-run'''
STUB_BODY = '''\
from pathlib import Path
from reidlab.runs.records import RunRecord
rec = RunRecord(Path(results_dir) / "runs" / run_id)
rec.write_config({"run_id": run_id, "seed": seed, "model": {"fusion": fusion}})
rec.write_metrics([{"epoch": epochs, "mAP": 0.5 + seed / 100, "rank1": 0.6, "rank5": 0.7}])
rec.write_status("finished", "stub")
with open(Path(results_dir) / "calls.log", "a") as f:
    f.write(f"{run_id} {fusion_options} {epochs} {force}\\n")'''


@pytest.fixture
def stub(tmp_path) -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(STUB_PARAMS)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(STUB_BODY)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "stub.ipynb"
    nbformat.write(nb, path)
    return path


def write_spec(tmp_path: Path, notebook: Path, **extra) -> Path:
    spec = {"name": "fz", "notebook": str(notebook), "parameters": {"epochs": 2},
            "variants": {"mean": {"fusion": "mean"},
                         "sc": {"fusion": "softmax_cosine", "fusion_options": {"tau": 0.5}}},
            "seeds": [0, 1], **extra}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def calls(res: Path) -> list[str]:
    log = res / "calls.log"
    return sorted(log.read_text().splitlines()) if log.exists() else []


def test_expand_grid_and_run_ids(stub, tmp_path):
    spec = load_spec(write_spec(tmp_path, stub, options={"epochs": [3, 4]}))
    jobs = expand(spec)
    assert [j.run_id for j in jobs] == [
        "fz-mean-epochs=3-s0", "fz-mean-epochs=3-s1", "fz-mean-epochs=4-s0", "fz-mean-epochs=4-s1",
        "fz-sc-epochs=3-s0", "fz-sc-epochs=3-s1", "fz-sc-epochs=4-s0", "fz-sc-epochs=4-s1",
    ]
    j = jobs[-1]
    assert j.parameters == {"epochs": 4, "fusion": "softmax_cosine", "fusion_options": {"tau": 0.5}, "seed": 1,
                            "run_id": "fz-sc-epochs=4-s1"}
    # overrides change budgets, not ids
    assert [x.parameters["epochs"] for x in expand(spec, {"epochs": 9})] == [9] * 8


def test_spec_errors_name_the_problem(stub, tmp_path):
    with pytest.raises(ParameterError, match="run fz-mean-s0: .*unknown parameter 'tau'"):
        expand(load_spec(write_spec(tmp_path, stub, parameters={"tau": 1.0})))
    with pytest.raises(ParameterError, match="'epochs': expected int"):
        expand(load_spec(write_spec(tmp_path, stub, parameters={"epochs": "two"})))
    with pytest.raises(ValueError, match="unknown keys \\['varients'\\]"):
        load_spec({"name": "x", "notebook": str(stub), "varients": {}})
    with pytest.raises(ValueError, match="repeats a seed"):
        load_spec({"name": "x", "notebook": str(stub), "variants": {"a": {}}, "seeds": [1, 1]})
    with pytest.raises(FileNotFoundError):
        load_spec(tmp_path / "missing.yaml")


def test_dry_run_then_run_skip_resume_force(stub, tmp_path, capsys):
    res = tmp_path / "res"
    spec = write_spec(tmp_path, stub)
    assert cli_main(["sweep", str(spec), "--results", str(res), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("  run   fz-") == 4 and "4 runs in sweep 'fz': 4 to run, 0 finished" in out
    assert not (res / "runs").exists()  # a dry run runs nothing

    assert cli_main(["sweep", str(spec), "--results", str(res), "--jobs", "2"]) == 0
    assert calls(res) == ["fz-mean-s0 {} 2 False", "fz-mean-s1 {} 2 False",
                          "fz-sc-s0 {'tau': 0.5} 2 False", "fz-sc-s1 {'tau': 0.5} 2 False"]
    for rid in ("fz-mean-s0", "fz-sc-s1"):
        assert (res / "runs" / rid / "notebook.ipynb").exists()  # executed copy filed with the run

    # everything finished: nothing runs again
    capsys.readouterr()
    assert cli_main(["sweep", str(spec), "--results", str(res)]) == 0
    assert "all 4 runs finished; nothing to do" in capsys.readouterr().out
    assert len(calls(res)) == 4

    # a run that did not finish (killed, failed, budget) is run again, the others are skipped
    RunRecord(res / "runs" / "fz-sc-s0").write_status("interrupted", "killed")
    report = run_sweep(spec, results_dir=res, echo=lambda s: None)
    assert report.ran == ["fz-sc-s0"] and sorted(report.skipped) == ["fz-mean-s0", "fz-mean-s1", "fz-sc-s1"]
    assert len(calls(res)) == 5

    # --force: every run again (listed by a dry run), each told to discard its old record
    lines = []
    run_sweep(spec, results_dir=res, force=True, dry_run=True, echo=lines.append)
    assert sum(ln.startswith("  run   fz-") for ln in lines) == 4
    cmd = _command(expand(load_spec(spec))[0], stub, res, True, notebook_parameters(stub))
    assert cmd[cmd.index("force") - 1:cmd.index("force") + 2] == ["-p", "force", "true"]


def test_failed_run_reported_and_others_continue(stub, tmp_path, capsys):
    res = tmp_path / "res"
    # fusion_options must be a dict: a bad value is caught before any run starts
    spec = write_spec(tmp_path, stub, parameters={"fusion_options": [1]})
    assert cli_main(["sweep", str(spec), "--results", str(res)]) == 2
    assert "expected dict" in capsys.readouterr().err and not res.exists()
    # a run whose notebook raises: the sweep finishes the others and exits 1
    (res / "runs" / "fz-mean-s1").mkdir(parents=True)
    (res / "runs" / "fz-mean-s1" / "config.json").mkdir()  # makes RunRecord.write_config fail
    spec = write_spec(tmp_path, stub, seeds=[1])
    report = run_sweep(spec, results_dir=res, echo=lambda s: None)
    assert list(report.failed) == ["fz-mean-s1"] and report.ran == ["fz-sc-s1"]
    assert report.logs["fz-mean-s1"].exists()
    assert "IsADirectoryError" in report.failed["fz-mean-s1"]


def test_shipped_fusion_sweep_builds_a_different_model_per_variant():
    """Provenance: a variant name must reach the model (a public repo once mapped its attention variant
    to plain pooling by a typo, and every reproduction measured the wrong thing)."""
    from reidlab.engine import build_run_model

    spec = load_spec(ROOT / "sweeps" / "fusion.yaml")
    defaults = {k: p.default for k, p in notebook_parameters(spec.notebook).items()}
    train_keys = set(defaults) - {"overrides", "results_dir", "force", "progress"}
    built = {}
    for job in expand(spec):
        if job.variant in built:
            continue
        params = {**defaults, **job.parameters}
        cfg = training_config({k: v for k, v in params.items() if k in train_keys}, params["overrides"])
        desc = build_run_model(cfg, num_classes=4).describe()
        assert desc["fusion"]["name"] == params["fusion"], job.run_id
        assert desc["fusion"]["options"].items() >= dict(params["fusion_options"]).items(), job.run_id
        built[job.variant] = json.dumps(desc["fusion"], sort_keys=True)
    assert len(set(built.values())) == len(built), f"two variants build the same fusion: {built}"
    classes = {json.loads(v)["class"] for v in built.values()}
    assert classes == {"MeanFusion", "TemplateMaskFusion", "TemporalAttentionFusion"}


def test_variant_seeds_override_the_spec_seeds():
    """sweeps/fusion.yaml: mean trunks on 3 seeds, the end-to-end learned fusions on their own seed list."""
    jobs = expand(load_spec(ROOT / "sweeps" / "fusion.yaml"))
    assert [j.run_id for j in jobs] == ["fusion-mean-s0", "fusion-mean-s1", "fusion-mean-s2",
                                        "fusion-template_mask-s0", "fusion-temporal_attention-s0"]
    assert all("seeds" not in j.parameters for j in jobs)
    with pytest.raises(ValueError, match="'seeds' must be"):
        load_spec({"name": "x", "notebook": str(ROOT / "notebooks" / "train_fusion.ipynb"),
                   "variants": {"a": {"seeds": "0"}}})
