"""Engine mechanics on tiny in-memory stand-ins (see test_engine_standins.py): records, determinism,
resume, faults, fixbase, budget, schedule, bounded-memory extraction."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

import test_engine_standins as S
from reidlab.config import ConfigError, RunConfig
from reidlab.engine import checkpoints as C
from reidlab.engine import trainer as T
from reidlab.engine.extraction import extract_features
from reidlab.runs.records import BEST_LABEL, METRIC_COLUMNS, RunRecord, resolved_config


@pytest.fixture(autouse=True)
def _standins(monkeypatch):
    S.install(monkeypatch)


pytestmark = pytest.mark.usefixtures("one_thread")


def _metrics(rec: RunRecord) -> pd.DataFrame:
    return rec.metrics.drop(columns=["seconds"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted tiny run (3 epochs, evaluated every epoch), shared by several tests."""
    mp = pytest.MonkeyPatch()
    S.install(mp)
    try:
        cfg = S.tiny_cfg(tmp_path_factory.mktemp("ref"), run_id="ref")
        rec = T.train(cfg, progress=False)
    finally:
        mp.undo()
    return cfg, rec


def _same_config_elsewhere(cfg, tmp_path, run_id):
    return cfg.override({"results_dir": str(tmp_path / "runs"), "run_id": run_id})


def test_complete_record(reference):
    cfg, rec = reference
    d = rec.run_dir
    for name in ("config.json", "env.json", "model.json", "protocol.json", "metrics.csv", "epochs.csv",
                 "status.json", "checkpoints/last.pt", "checkpoints/best.pt"):  # fmt: skip
        assert (d / name).is_file(), name
    assert not [p for p in d.rglob("*.tmp")]
    # read back with relative path keys (here data.root) resolved against the project root
    assert rec.run_config() == RunConfig.from_dict(resolved_config(cfg.to_dict())) and rec.config["seed"] == 1
    assert rec.status["state"] == "finished" and rec.status["epoch"] == 3
    assert rec.status["best"]["note"] == BEST_LABEL
    m = rec.metrics
    assert list(m.columns) == list(METRIC_COLUMNS) and list(m["epoch"]) == [1, 2, 3]
    for col in ("mAP", "rank1", "rank5", "mINP"):
        assert m[col].between(0, 1).all(), col
    assert m["rank10"].isna().all()  # max_rank=5 in the tiny config: rank10 is undefined, not made up
    assert (m["rank1"] <= m["rank5"]).all()
    assert np.isfinite(m[["loss", "loss_ce", "loss_triplet"]].to_numpy()).all()
    # loss = ce + triplet exactly (O.F./O.W. off, weights 1)
    assert np.allclose(m["loss"], m["loss_ce"] + m["loss_triplet"], rtol=1e-6)
    assert (m["loss_of"] == 0).all() and (m["loss_ow"] == 0).all()
    assert m["seconds"].is_monotonic_increasing
    assert rec.model["class"] == "TinyVideoNet" and rec.model["num_classes"] == 6
    assert rec.protocol["eval"]["metric"] == "euclidean" and rec.protocol["dataset"] == {"dataset": "standin"}
    assert rec.env["device"] == "cpu" and rec.env["world_size"] == 1
    assert rec.env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and rec.env["cpu_count"] >= 1
    assert "cpu_model" in rec.env
    best = rec.load_checkpoint("best")
    assert best["label"] == BEST_LABEL and best["kind"] == "best"
    assert best["metrics"]["mAP"] == m["mAP"].max()
    last = rec.load_checkpoint("last")
    assert last["epoch"] == 3 and len(last["metrics"]) == 3
    ep = rec.epochs
    assert list(ep["epoch"]) == [1, 2, 3] and (ep["frames_per_s"] > 0).all()
    assert (ep["steps"] == 2).all()  # 6 ids / p=3 -> 2 batches per sampler pass


def test_training_learns_something(reference):
    _, rec = reference
    m = rec.metrics
    assert m["loss"].iloc[-1] < m["loss"].iloc[0]


def test_same_seed_same_metrics_other_seed_differs(reference, tmp_path):
    cfg, rec = reference
    again = T.train(_same_config_elsewhere(cfg, tmp_path, "again"), progress=False)
    pd.testing.assert_frame_equal(_metrics(again), _metrics(rec))
    other = T.train(_same_config_elsewhere(cfg, tmp_path, "other").override(seed=2), progress=False)
    assert not np.allclose(other.metrics["loss"], rec.metrics["loss"])


def test_finished_run_is_not_rerun_unless_forced(reference, tmp_path):
    cfg, _ = reference
    cfg = _same_config_elsewhere(cfg, tmp_path, "f").override({"train.epochs": 1})
    rec = T.train(cfg, progress=False)
    stamp = (rec.run_dir / "metrics.csv").stat().st_mtime_ns
    calls = []
    orig = T.build_data
    T.build_data = lambda *a, **k: calls.append(1) or orig(*a, **k)
    try:
        again = T.train(cfg, progress=False)
        assert calls == [] and (again.run_dir / "metrics.csv").stat().st_mtime_ns == stamp
        # only non-semantic keys differ: still the finished run
        T.train(cfg.override({"train.max_minutes": 5.0, "data.workers": 0}), progress=False)
        assert calls == []
        with pytest.raises(ConfigError, match="model.fusion"):
            T.train(cfg.override({"model.fusion": "max"}), progress=False)
        forced = T.train(cfg, force=True, progress=False)
        assert calls == [1] and forced.is_finished()
    finally:
        T.build_data = orig


def _raise_at(monkeypatch, epoch, step, exc):
    orig = T._Run._loss

    def hooked(self, out, pids, ep):
        if ep == epoch and self.step == step:
            raise exc
        return orig(self, out, pids, ep)

    monkeypatch.setattr(T._Run, "_loss", hooked)


def test_ctrl_c_saves_and_resume_matches_uninterrupted(reference, tmp_path, monkeypatch):
    cfg, ref = reference
    cfg = _same_config_elsewhere(cfg, tmp_path, "int")
    _raise_at(monkeypatch, epoch=1, step=1, exc=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, progress=False)
    rec = RunRecord(cfg.run_dir)
    st = rec.status
    assert st["state"] == "interrupted" and "epoch 2, step 2" in st["message"] and st["epoch"] == 1
    assert rec.load_checkpoint("last")["epoch"] == 1
    intr = rec.load_checkpoint("interrupted")
    assert intr["kind"] == "interrupted" and "inspection" in intr["label"]
    assert list(rec.metrics["epoch"]) == [1]
    monkeypatch.undo()
    S.install(monkeypatch)
    done = T.train(cfg, progress=False)
    assert done.is_finished()
    pd.testing.assert_frame_equal(_metrics(done), _metrics(ref))


def test_crash_mid_epoch_resumes_to_same_metrics(reference, tmp_path, monkeypatch):
    cfg, ref = reference
    cfg = _same_config_elsewhere(cfg, tmp_path, "crash")
    _raise_at(monkeypatch, epoch=2, step=0, exc=RuntimeError("simulated crash"))
    with pytest.raises(RuntimeError, match="simulated"):
        T.train(cfg, progress=False)
    assert RunRecord(cfg.run_dir).status["state"] == "failed"
    monkeypatch.undo()
    S.install(monkeypatch)
    with pytest.raises(ConfigError, match="optim.lr"):  # resuming with another config is refused
        T.train(cfg.override({"optim.lr": 1e-2}), progress=False)
    done = T.train(cfg, progress=False)
    pd.testing.assert_frame_equal(_metrics(done), _metrics(ref))


def test_resume_false_starts_over(reference, tmp_path, monkeypatch):
    cfg, ref = reference
    cfg = _same_config_elsewhere(cfg, tmp_path, "over")
    _raise_at(monkeypatch, epoch=1, step=0, exc=RuntimeError("boom"))
    with pytest.raises(RuntimeError):
        T.train(cfg, progress=False)
    monkeypatch.undo()
    S.install(monkeypatch)
    done = T.train(cfg, resume=False, progress=False)
    pd.testing.assert_frame_equal(_metrics(done), _metrics(ref))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(reference, tmp_path, monkeypatch):
    cfg, _ = reference
    cfg = _same_config_elsewhere(cfg, tmp_path, "nan")
    orig = T._Run._loss

    def poisoned(self, out, pids, ep):
        loss, parts = orig(self, out, pids, ep)
        if ep == 1 and self.step == 1:
            loss = loss * float("nan")
            parts = parts.clone()
            parts[0] = float("nan")
        return loss, parts

    monkeypatch.setattr(T._Run, "_loss", poisoned)
    with pytest.raises(T.TrainingError) as ei:
        T.train(cfg, progress=False)
    msg = str(ei.value)
    assert "epoch 2, step 2" in msg and "non-finite" in msg and "last.pt" in msg
    rec = RunRecord(cfg.run_dir)
    assert rec.status["state"] == "failed" and rec.status["failed_epoch"] == 2 and rec.status["failed_step"] == 2
    last = rec.load_checkpoint("last")
    assert last["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


def test_huge_lr_is_caught(tmp_path):
    cfg = S.tiny_cfg(tmp_path, run_id="lr", **{"optim.lr": 1e30, "optim.warmup_epochs": 0.0})
    with pytest.raises(T.TrainingError, match=r"non-finite loss at epoch \d+, step \d+"):
        T.train(cfg, progress=False)
    assert RunRecord(cfg.run_dir).status["state"] == "failed"


def test_unwritable_results_dir_fails_before_anything(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    cfg = S.tiny_cfg(tmp_path, results_dir=str(tmp_path / "afile" / "runs"))
    monkeypatch.setattr(T, "build_data", lambda *a, **k: pytest.fail("data built despite unwritable dir"))
    with pytest.raises(T.PreflightError, match="not writable"):
        T.train(cfg, progress=False)


def test_full_disk_fails_before_training(tmp_path, monkeypatch):
    cfg = S.tiny_cfg(tmp_path, run_id="full")

    class Usage:
        total, used, free = 10**9, 10**9 - 1000, 1000

    monkeypatch.setattr(C.shutil, "disk_usage", lambda p: Usage)  # the disk check lives in engine.checkpoints
    monkeypatch.setattr(T._Run, "_train_epoch", lambda *a, **k: pytest.fail("trained despite a full disk"))
    with pytest.raises(T.PreflightError, match="disk space"):
        T.train(cfg, progress=False)
    assert not (cfg.run_dir / "checkpoints" / "last.pt").exists()


def test_budget_stops_after_epoch_then_resumes(tmp_path):
    cfg = S.tiny_cfg(tmp_path, run_id="budget", **{"train.eval_every": 0, "train.max_minutes": 1e-9})
    rec = T.train(cfg, progress=False)
    st = rec.status
    assert st["state"] == "budget" and "max_minutes" in st["message"] and st["epoch"] == 1
    assert list(rec.metrics["epoch"]) == [1]  # evaluated at the stop although eval_every=0
    rec = T.train(cfg.override({"train.max_minutes": None}), progress=False)
    assert rec.is_finished() and list(rec.metrics["epoch"]) == [1, 3]


def test_fixbase_trains_only_new_parameters_then_resets_optimizer(tmp_path, monkeypatch):
    cfg = S.tiny_cfg(tmp_path, run_id="fix", **{"train.fixbase_epochs": 1, "train.epochs": 2,
                                                "train.eval_every": 0})  # fmt: skip
    snapshots = {}
    orig_save = T._Run._save_epoch

    def spy(self, done, evaluated):
        snapshots[done] = ({k: v.clone() for k, v in self.model.state_dict().items()},
                           {id(p): dict(s) for p, s in self.optimizer.state.items()})  # fmt: skip
        return orig_save(self, done, evaluated)

    monkeypatch.setattr(T._Run, "_save_epoch", spy)
    torch.manual_seed(cfg.seed)
    init = S.TinyVideoNet(6).state_dict()
    T.train(cfg, progress=False)
    after1 = snapshots[1][0]
    for k in ("trunk.0.weight", "trunk.1.weight", "trunk.1.running_mean", "trunk.3.weight"):
        assert torch.equal(after1[k], init[k]), f"{k} changed during fixbase"
    assert not torch.equal(after1["classifier.weight"], init["classifier.weight"])
    assert not torch.equal(after1["neck.weight"], init["neck.weight"])
    assert not torch.equal(snapshots[2][0]["trunk.0.weight"], init["trunk.0.weight"])
    # optimiser state reset at the phase change: Adam's step counters restart (2 steps per epoch)
    steps2 = sorted(int(s["step"]) for s in snapshots[2][1].values())
    assert steps2 and max(steps2) == 2


def test_lr_schedule_values():
    cfg = S.tiny_cfg(".", **{"train.epochs": 10, "optim.warmup_epochs": 2.0})
    f = T.lr_factor
    assert f(0, 0, 5, cfg) == pytest.approx(0.1)
    assert f(1, 0, 5, cfg) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(2, 0, 5, cfg) == pytest.approx(1.0)
    assert f(6, 0, 5, cfg) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert f(9, 5, 5, cfg) == pytest.approx(0.0, abs=1e-12)
    step = cfg.override({"optim.schedule": "step", "optim.step_size": 3, "optim.gamma": 0.5})
    assert [round(f(e, 0, 5, step), 6) for e in (2, 3, 5, 6, 9)] == [1.0, 0.5, 0.5, 0.25, 0.125]
    const = cfg.override({"optim.schedule": "constant", "optim.warmup_epochs": 0.0})
    assert f(7, 3, 5, const) == 1.0


def test_amp_and_channels_last_are_cuda_only(tmp_path):
    cfg = S.tiny_cfg(tmp_path, run_id="amp", **{"train.epochs": 1, "train.amp": True,
                                                "train.channels_last": True})  # fmt: skip
    rec = T.train(cfg.override({"train.device": "cpu"}), progress=False)
    assert rec.env["amp_dtype"] is None and rec.env["channels_last"] is False


# ---------------------------------------------------------------------- extraction
def _plain_tracklet_features(model, world, recs, seq_len, flip=False):
    """Reference: each tracklet on its own, chunk by chunk, mean of chunk embeddings."""
    model.eval()
    out = []
    with torch.no_grad():
        for r in recs:
            frames = world.store[r.key]
            n = len(frames)
            embs = []
            for s in range(0, n, seq_len):
                idx = [min(j, n - 1) for j in range(s, s + seq_len)]
                x = frames[idx][None]
                e = model(x)
                if flip:
                    e = (e + model(torch.flip(x, dims=[-1]))) / 2
                embs.append(e[0])
            out.append(torch.stack(embs).mean(0))
    return torch.stack(out)


@pytest.mark.parametrize("flip", [False, True])
def test_long_tracklet_goes_through_in_bounded_batches(flip):
    world = S.World(n_train=2, n_test=3, frames=6, long_tracklet=333, seed=4)
    assert len(world.query[0].paths) == 333
    model = S.TinyVideoNet(2)
    model.train()  # extract_features must switch to eval and restore the mode
    ds = S.DenseSet(world, world.query, 4)
    loader = DataLoader(ds, batch_size=4)
    feats, pids, cams = extract_features(model, loader, "cpu", flip=flip)
    assert model.training
    assert model.max_frames_seen <= 4 * 4  # batch_size x seq_len, independent of the 333 frames
    ref = _plain_tracklet_features(model, world, world.query, 4, flip=flip)
    torch.testing.assert_close(feats, ref, rtol=1e-5, atol=1e-5)
    assert list(pids) == [r.pid for r in world.query] and list(cams) == [r.camid for r in world.query]
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()


def test_flip_feature_is_mean_of_frame_and_mirror():
    world = S.World(n_train=2, n_test=2, frames=4, seed=5)
    model = S.TinyVideoNet(2).eval()
    loader = DataLoader(S.DenseSet(world, world.query, 4), batch_size=2)
    plain, _, _ = extract_features(model, loader, "cpu")
    with torch.no_grad():
        mirrored = torch.stack([model(torch.flip(world.store[r.key][None], dims=[-1]))[0] for r in world.query])
    both, _, _ = extract_features(model, loader, "cpu", flip=True)
    torch.testing.assert_close(both, (plain + mirrored) / 2, rtol=1e-5, atol=1e-6)


def test_image_batches_and_errors():
    model = S.TinyVideoNet(2).eval()
    imgs = torch.randn(7, 3, 16, 8)
    ds = [(imgs[i], i % 3, i % 2) for i in range(7)]
    feats, pids, cams = extract_features(model, DataLoader(ds, batch_size=3), "cpu")
    with torch.no_grad():
        torch.testing.assert_close(feats, model(imgs), rtol=1e-5, atol=1e-6)
    assert list(pids) == [i % 3 for i in range(7)] and list(cams) == [i % 2 for i in range(7)]
    with pytest.raises(ValueError, match="no batch"):
        extract_features(model, [], "cpu")


def test_single_frame_tracklets_are_finite():
    world = S.World(n_train=2, n_test=2, frames=1, seed=6)
    model = S.TinyVideoNet(2)
    feats, _, _ = extract_features(model, DataLoader(S.DenseSet(world, world.query, 4), batch_size=8), "cpu")
    assert torch.isfinite(feats).all()


def test_status_json_is_plain_json(reference):
    _, rec = reference
    json.loads((rec.run_dir / "status.json").read_text())


def test_a_run_id_in_training_elsewhere_is_refused(tmp_path):
    cfg = S.tiny_cfg(tmp_path, run_id="locked")
    held = T._lock_run(RunRecord(cfg.run_dir))
    try:
        with pytest.raises(T.PreflightError, match="another process"):
            T.train(cfg, progress=False)
    finally:
        held.close()
    assert T.train(cfg, progress=False).is_finished()


def test_sigterm_is_handled_like_ctrl_c(tmp_path, monkeypatch):
    import os
    import signal

    cfg = S.tiny_cfg(tmp_path, run_id="term")
    orig = T._Run._loss

    def hooked(self, out, pids, ep):
        if ep == 1 and self.step == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return orig(self, out, pids, ep)

    monkeypatch.setattr(T._Run, "_loss", hooked)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, progress=False)
    assert signal.getsignal(signal.SIGTERM) is before  # handler restored
    assert RunRecord(cfg.run_dir).status["state"] == "interrupted"


def test_snapshots_sgd_step_schedule_and_grad_clip(tmp_path):
    cfg = S.tiny_cfg(tmp_path, run_id="sgd", **{
        "optim.name": "sgd", "optim.schedule": "step", "optim.step_size": 1, "optim.gamma": 0.5,
        "optim.lr": 1e-2, "train.checkpoint_every": 2, "train.grad_clip": 1.0, "train.eval_every": 0,
    })  # fmt: skip
    rec = T.train(cfg, progress=False)
    assert rec.checkpoint_path("epoch_002").is_file() and not rec.checkpoint_path("epoch_001").exists()
    snap = rec.load_checkpoint("epoch_002")
    assert snap["kind"] == "snapshot" and snap["epoch"] == 2
    assert list(rec.metrics["epoch"]) == [3]  # eval_every=0: only the last epoch
    lrs = list(rec.epochs["lr"])  # lr at the last step of each epoch; step decay by 0.5 per epoch after warm-up
    assert lrs[1] == pytest.approx(lrs[2] * 2)
    assert "momentum" in rec.load_checkpoint("last")["optimizer"]["param_groups"][0]


def test_batch_count_varying_per_epoch(tmp_path, monkeypatch):
    """The real P x K sampler's batch count depends on (seed, epoch); steps and loss means follow it."""

    class Uneven(S.PK):
        def _batches(self):
            b = super()._batches()
            return b[:1] if self.epoch % 2 else b

    def bundle(cfg, dist=None, verbose=False):
        b = S.make_bundle(cfg, dist, verbose)
        ds = b.dataset
        b.sampler = Uneven([r.pid for r in ds.train], cfg.data.p, cfg.data.k, seed=cfg.seed)
        b.train_loader = DataLoader(b.train_set, batch_size=cfg.data.p * cfg.data.k, sampler=b.sampler,
                                    drop_last=True)  # fmt: skip
        return b

    monkeypatch.setattr(T, "build_data", bundle)
    seen = []
    orig = T._Run._loss

    def spy(self, out, pids, ep):
        loss, parts = orig(self, out, pids, ep)
        seen.append((ep, float(parts[0])))
        return loss, parts

    monkeypatch.setattr(T._Run, "_loss", spy)
    rec = T.train(S.tiny_cfg(tmp_path, run_id="uneven", **{"train.eval_every": 0}), progress=False)
    ep = rec.epochs
    assert list(ep["steps"]) == [2, 1, 2]
    for e in range(3):
        vals = [v for k, v in seen if k == e]
        assert ep["loss"][e] == pytest.approx(sum(vals) / len(vals), rel=1e-12)


def test_steps_per_epoch_beyond_one_pass_draws_further_batches(tmp_path, monkeypatch):
    """steps_per_epoch=5 with 2 batches per sampler pass: exactly 5 optimiser steps per epoch, from the
    ordinary pass (draw 0) and two further seeded draws; below one pass it still stops early."""
    seen = []
    orig = T._Run._loss

    def spy(self, out, pids, ep):
        seen.append((ep, self.step, self.data.sampler.draw, tuple(pids.tolist())))
        return orig(self, out, pids, ep)

    monkeypatch.setattr(T._Run, "_loss", spy)
    cfg = S.tiny_cfg(tmp_path, run_id="long", **{"train.eval_every": 0, "train.steps_per_epoch": 5})
    rec = T.train(cfg, progress=False)
    assert list(rec.epochs["steps"]) == [5, 5, 5]
    last = rec.load_checkpoint("last")
    assert max(int(s["step"]) for s in last["optimizer"]["state"].values()) == 15  # Adam counts optimiser steps
    first = []
    for e in range(3):
        mine = [s for s in seen if s[0] == e]
        assert [s[1] for s in mine] == [0, 1, 2, 3, 4] and [s[2] for s in mine] == [0, 0, 1, 1, 2]
        # a further draw is a new pass (its batches' identities), not the first pass again
        assert [s[3] for s in mine[2:4]] != [s[3] for s in mine[0:2]]
        first.append(mine[0][3])
    # below one pass: stops early, and the epoch starts with the same batch as before
    seen.clear()
    short = T.train(cfg.override({"run_id": "short", "train.steps_per_epoch": 1}), progress=False)
    assert list(short.epochs["steps"]) == [1, 1, 1]
    assert [s[2] for s in seen] == [0, 0, 0] and [s[3] for s in seen] == first


def test_steps_per_epoch_beyond_one_pass_resumes_bit_identical(tmp_path, monkeypatch):
    cfg = S.tiny_cfg(tmp_path, run_id="ref5", **{"train.steps_per_epoch": 5})
    ref = T.train(cfg, progress=False)
    cfg = cfg.override({"run_id": "int5"})
    _raise_at(monkeypatch, epoch=1, step=3, exc=KeyboardInterrupt())  # inside the second draw of epoch 2
    with pytest.raises(KeyboardInterrupt):
        T.train(cfg, progress=False)
    assert RunRecord(cfg.run_dir).load_checkpoint("last")["epoch"] == 1
    monkeypatch.undo()
    S.install(monkeypatch)
    done = T.train(cfg, progress=False)
    pd.testing.assert_frame_equal(_metrics(done), _metrics(ref))
    assert list(done.epochs["steps"]) == [5, 5, 5]


def _json_strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _json_strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _json_strings(v)


def test_run_records_hold_no_absolute_project_paths(tmp_path, monkeypatch):
    """A tiny run inside a project (pyproject.toml in the cwd) records its paths relative to the project root;
    reading back resolves them, also from a subfolder, and the finished run is recognised as such."""
    proj = tmp_path / "proj"
    (proj / "notebooks").mkdir(parents=True)
    (proj / "pyproject.toml").write_text("")
    monkeypatch.chdir(proj)
    cfg = S.tiny_cfg(proj, run_id="rel", **{"train.epochs": 1, "data.root": str(proj / "data" / "synthetic"),
                                            "model.pretrained": str(proj / "weights" / "r18.pth")})
    assert cfg.results_dir == str(proj / "runs")
    rec = T.train(cfg, progress=False)
    assert rec.is_finished()
    files = sorted(rec.run_dir.glob("*.json"))
    assert [f.name for f in files] == ["config.json", "env.json", "model.json", "protocol.json", "status.json"]
    for f in files:
        inside = [s for s in _json_strings(json.loads(f.read_text())) if s.startswith("/") and
                  (s == str(proj) or s.startswith(str(proj) + "/"))]
        assert inside == [], f.name
        assert str(proj) not in f.read_text(), f.name
    stored = rec.config
    assert (stored["results_dir"], stored["data"]["root"], stored["model"]["pretrained"]) == \
        ("runs", "data/synthetic", "weights/r18.pth")
    assert rec.run_config() == cfg
    monkeypatch.chdir(proj / "notebooks")  # e.g. a Jupyter kernel before enter_workspace
    assert RunRecord(rec.run_dir).run_config() == cfg
    monkeypatch.chdir(proj)
    # the same run given with relative paths is the finished run (no retraining, no config clash)
    monkeypatch.setattr(T._Run, "_train_epoch", lambda *a, **k: pytest.fail("a finished run was retrained"))
    again = T.train(cfg.override({"results_dir": "runs", "data.root": "data/synthetic"}), progress=False)
    assert again.is_finished()
