"""Run records: atomic writers never leave torn files; RunRecord reads back what the writers wrote."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from reidlab import atomic as A
from reidlab.atomic import atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text
from reidlab.config import RunConfig
from reidlab.runs import records as R
from reidlab.runs.records import BEST_LABEL, METRIC_COLUMNS, RunRecord, collect_env


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_atomic_writes_round_trip_and_create_parents(tmp_path):
    p = atomic_write_bytes(tmp_path / "a" / "b" / "x.bin", b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    atomic_write_text(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo"
    atomic_write_json(tmp_path / "j.json", {"a": torch.tensor(1.5), "b": (1, 2)})
    assert json.loads((tmp_path / "j.json").read_text()) == {"a": 1.5, "b": [1, 2]}
    atomic_torch_save({"w": torch.arange(3)}, tmp_path / "c.pt")
    assert torch.equal(torch.load(tmp_path / "c.pt")["w"], torch.arange(3))
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_old_content_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "m.csv"
    atomic_write_text(target, "old")

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(A.os, "fsync", boom)  # fails after the data was written to the temp file
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(target, "new content")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_replace_failure_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "s.json"
    atomic_write_json(target, {"v": 1})
    monkeypatch.setattr(A.os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert _leftovers(tmp_path) == []


def test_json_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "n.json", {"x": float("nan")})
    assert not (tmp_path / "n.json").exists()


def test_run_record_round_trip(tmp_path):
    rec = RunRecord(tmp_path / "runs" / "r1")
    assert rec.config is None and rec.status is None and not rec.is_finished()
    assert list(rec.metrics.columns) == list(METRIC_COLUMNS) and len(rec.metrics) == 0
    assert rec.final_metrics() is None
    cfg = RunConfig().override({"run_id": "r1", "seed": 5})
    rec.write_config(cfg)
    # read back with relative path keys resolved against the project root (absolute when there is one)
    assert rec.config["seed"] == 5 and rec.run_config() == RunConfig.from_dict(R.resolved_config(cfg.to_dict()))
    assert R.record_config(rec.run_config().to_dict()) == rec.config
    rec.write_env({"python": "3.11"})
    rec.write_model({"class": "X", "num_parameters": 3})
    rec.write_protocol({"dataset": {"mars_gallery": "all"}})
    assert rec.env["python"] == "3.11" and rec.model["num_parameters"] == 3
    assert rec.protocol["dataset"]["mars_gallery"] == "all"
    rows = [
        {"epoch": 2, "mAP": 0.1 + 0.2, "rank1": 1 / 3, "rank5": 0.5, "rank10": 0.75, "mINP": 0.05,
         "loss": 3.25, "loss_ce": 2.0, "loss_triplet": 1.25, "loss_of": 0.0, "loss_ow": 0.0, "seconds": 12.5},
        {"epoch": 4, "mAP": 0.6, "rank1": 0.7, "rank5": 0.8, "rank10": float("nan"), "mINP": 0.2,
         "loss": 1.0, "loss_ce": 0.5, "loss_triplet": 0.5, "loss_of": 0.0, "loss_ow": 0.0, "seconds": 30.0},
    ]  # fmt: skip
    rec.write_metrics(rows)
    m = rec.metrics
    assert list(m.columns) == list(METRIC_COLUMNS) and list(m["epoch"]) == [2, 4]
    assert m["mAP"][0] == 0.1 + 0.2 and m["rank1"][0] == 1 / 3  # exact float round trip
    assert math.isnan(m["rank10"][1])
    assert rec.final_metrics()["epoch"] == 4  # tables default to the last epoch
    with pytest.raises(ValueError, match="unknown columns"):
        rec.write_metrics([{"epoch": 1, "acc": 0.3}])
    rec.write_status("finished", "done", epoch=4, best={"epoch": 4, "note": BEST_LABEL})
    assert rec.is_finished() and rec.status["epoch"] == 4 and rec.state == "finished"
    with pytest.raises(ValueError, match="state must be one of"):
        rec.write_status("exploded")
    assert "finished" in repr(rec)


def test_checkpoint_files_and_clear(tmp_path):
    rec = RunRecord(tmp_path / "r")
    rec.save_checkpoint({"format": R.CHECKPOINT_FORMAT, "epoch": 3}, "last")
    assert rec.load_checkpoint("last")["epoch"] == 3
    with pytest.raises(FileNotFoundError, match="best.pt"):
        rec.load_checkpoint("best")
    atomic_torch_save({"foo": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a reidlab checkpoint"):
        R.load_checkpoint_file(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot be read"):
        R.load_checkpoint_file(tmp_path / "junk.pt")
    rec.write_status("running")
    (rec.run_dir / "notebook.ipynb").write_text("{}")
    rec.clear()
    assert not rec.checkpoint_path("last").exists() and rec.status is None
    assert (rec.run_dir / "notebook.ipynb").exists()  # files of other writers are kept


def test_collect_env_fields():
    env = collect_env("cpu", {"world_size": 1})
    for key in ("python", "torch", "torchvision", "numpy", "platform", "git_commit", "git_dirty", "device",
                "cpu_count", "torch_threads", "world_size"):  # fmt: skip
        assert key in env
    assert env["device"] == "cpu" and env["torch"] == torch.__version__
    json.dumps(env)
    if env["git_commit"] is not None:
        assert len(env["git_commit"]) == 40 and isinstance(env["git_dirty"], bool)
    # CPU results are bitwise comparable only under the same SIMD dispatch: recorded with the CPU model
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["cpu_count"] == os.cpu_count() and env["cpu_count"] >= 1
    assert "cpu_model" in env and (env["cpu_model"] is None or env["cpu_model"].strip())


def test_cpu_model_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6248\n\n"
                   "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6248\n")
    assert R._cpu_model(x86) == "Intel(R) Xeon(R) Gold 6248"
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nBogoMIPS\t: 50.00\n\nHardware\t: BCM2835\n")
    assert R._cpu_model(arm) == "BCM2835"
    # unreadable: falls back to platform.processor(), which may be empty -> None
    assert R._cpu_model(tmp_path / "missing") == (R.platform.processor() or None)


def test_atomic_write_under_a_file_fails_clearly(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "f" / "x.txt", "y")
    assert os.path.isfile(tmp_path / "f")


def test_record_paths_relative_to_the_project_root(tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    (proj / "notebooks").mkdir(parents=True)
    (proj / "pyproject.toml").write_text("")
    monkeypatch.chdir(proj / "notebooks")  # found from a subfolder too, like enter_workspace
    assert R.project_root() == proj
    assert R.project_root(tmp_path) is None  # outside any project: paths stay as given
    assert R.record_path(proj / "results" / "runs") == "results/runs"
    assert R.record_path(str(proj)) == "."
    assert R.record_path("../data/x") == "data/x"  # relative paths mean: from the cwd
    assert R.record_path(str(tmp_path / "elsewhere")) == str(tmp_path / "elsewhere")
    assert R.record_path(None) is None and R.record_path("") == ""
    assert R.resolve_record_path("results/runs") == str(proj / "results" / "runs")
    assert R.resolve_record_path(str(tmp_path / "elsewhere")) == str(tmp_path / "elsewhere")
    assert R.record_text(f"done -> {proj}/results/runs/a (cwd {proj}); not {proj}2/x nor /y{proj}/z") == \
        f"done -> results/runs/a (cwd .); not {proj}2/x nor /y{proj}/z"
    assert R.record_text(f"'{proj}/' {tmp_path}/other") == f"'./' {tmp_path}/other"
    cfg = RunConfig().override({"results_dir": str(proj / "results" / "runs"), "data.root": str(proj / "data"),
                                "model.pretrained": str(tmp_path / "w.pth")})
    stored = R.record_config(cfg.to_dict())
    assert (stored["results_dir"], stored["data"]["root"]) == ("results/runs", "data")
    assert stored["model"]["pretrained"] == str(tmp_path / "w.pth")
    assert RunConfig.from_dict(R.resolved_config(stored)) == cfg


def test_run_record_writes_no_absolute_project_paths(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    rec = RunRecord(tmp_path / "results" / "runs" / "r")
    cfg = RunConfig().override({"results_dir": str(tmp_path / "results" / "runs"), "run_id": "r",
                                "data.root": str(tmp_path / "data" / "synthetic")})
    rec.write_config(cfg)
    rec.write_model({"pretrained": str(tmp_path / "w.pth")})
    rec.write_status("failed", f"see {rec.checkpoint_path('last')}", epoch=1)
    assert rec.config["results_dir"] == "results/runs" and rec.config["data"]["root"] == "data/synthetic"
    assert rec.model["pretrained"] == "w.pth"
    assert rec.status["message"] == "see results/runs/r/checkpoints/last.pt"
    assert rec.run_config() == cfg  # read back: resolved against the project root
    for name in ("config.json", "model.json", "status.json"):
        assert str(tmp_path) not in (rec.run_dir / name).read_text(), name
