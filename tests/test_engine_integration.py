"""The engine with the real data / models / losses / eval packages, on a tiny synthetic world.

Includes the real-process checks: a training subprocess killed with SIGKILL mid-epoch and resumed ends with
the same metrics.csv as an uninterrupted run, and a 2-process torchrun/gloo run writes one sane record.
Everything runs single-threaded (torch threads in-process, OMP_NUM_THREADS in children): identical
thread counts make CPU results bitwise comparable across processes, and on a shared 2-core machine one
thread per process is also the faster setting.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reidlab.config import RunConfig
from reidlab.engine import evaluate_checkpoint, load_run_model, train
from reidlab.engine.__main__ import main as engine_main
from reidlab.runs.records import BEST_LABEL, RunRecord

ROOT = Path(__file__).resolve().parents[1]
TINY_WORLD = dict(ids=10, cams=2, cams_per_id=(2, 2), tracklets_per_cam=2, frames=(6, 10), distractors=1, junk=0,
                  height=32, width=16)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from reidlab.data import synthetic

    return synthetic.ensure_world(tmp_path_factory.mktemp("world") / "synthetic", verbose=False, **TINY_WORLD)


def tiny(world, results: Path, run_id: str, **over) -> RunConfig:
    base = {
        "run_id": run_id, "results_dir": str(results), "seed": 3,
        "data.root": str(world), "data.synthetic": dict(TINY_WORLD), "data.height": 32, "data.width": 16,
        "data.seq_len": 2, "data.p": 3, "data.k": 2, "data.cache_items": 2000,
        "train.epochs": 3, "train.eval_every": 2, "train.steps_per_epoch": 3, "eval.max_rank": 10,
        "eval.batch_size": 8, "optim.lr": 1e-3, "optim.warmup_epochs": 0.5,
    }  # fmt: skip
    base.update(over)
    return RunConfig().override(base)


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    cfg = tiny(world, results, "ref")
    return cfg, train(cfg, progress=False)


def _child_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _strip_seconds(rec: RunRecord) -> pd.DataFrame:
    return rec.metrics.drop(columns=["seconds"])


def test_real_run_record(reference):
    cfg, rec = reference
    assert rec.is_finished() and rec.status["epoch"] == 3
    m = rec.metrics
    assert list(m["epoch"]) == [2, 3]
    for col in ("mAP", "rank1", "rank5", "rank10", "mINP"):
        assert m[col].between(0, 1).all(), col
    assert np.isfinite(m[["loss", "loss_ce", "loss_triplet"]].to_numpy()).all()
    model = rec.model
    assert model["class"] == "VideoReIDModel" and model["num_classes"] == 6
    assert model["fusion"]["name"] == "mean" and model["num_parameters"] > 10**6
    proto = rec.protocol
    assert proto["dataset"]["mars_gallery"] == "remaining" and proto["eval"]["protocol"] == "market1501"
    assert proto["splits"]["train"]["ids"] == 6
    assert rec.env["world_size"] == 1 and rec.run_config() == cfg
    best = rec.load_checkpoint("best")
    assert best["label"] == BEST_LABEL and best["metrics"]["mAP"] == m["mAP"].max()


def test_evaluate_checkpoint_and_load_run_model_reproduce_last_row(reference, capsys):
    cfg, rec = reference
    res = evaluate_checkpoint(rec.checkpoint_path("last"), device="cpu")
    last = rec.final_metrics()
    assert res.mAP == pytest.approx(last["mAP"], abs=1e-9) and res.rank1 == pytest.approx(last["rank1"], abs=1e-9)
    model, cfg2, dataset = load_run_model(rec.run_dir)
    assert cfg2 == cfg and not model.training and dataset.num_train_pids == 6
    assert engine_main(["--eval", str(rec.checkpoint_path("last")), "--no-progress"]) == 0
    assert f"mAP {last['mAP']:.4f}" in capsys.readouterr().out


def test_sigkill_mid_epoch_then_resume_gives_same_metrics(reference, world, tmp_path):
    ref_cfg, ref = reference
    cfg = tiny(world, tmp_path / "runs", "killed", **{"train.log_every": 1})
    cfg_path = cfg.to_file(tmp_path / "cfg.json")
    cmd = [sys.executable, "-m", "reidlab.engine", "--config", str(cfg_path), "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    seen = []
    deadline = time.monotonic() + 120
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if "epoch 2/3 step 2/3" in line:  # mid-epoch: epoch 1 is checkpointed, epoch 2 half done
                proc.send_signal(signal.SIGKILL)
                break
            assert time.monotonic() < deadline, "".join(seen)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    rec = RunRecord(cfg.run_dir)
    assert rec.status["state"] == "running"  # killed: nobody wrote a final state
    assert rec.load_checkpoint("last")["epoch"] == 1
    # a kill during an atomic write can orphan a temp file; the resumed run sweeps them away
    (rec.checkpoint_dir / ".last.pt.orphan.tmp").write_bytes(b"partial")
    out = subprocess.run(cmd, cwd=tmp_path, env=_child_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resuming after epoch 1" in out.stdout
    rec = RunRecord(cfg.run_dir)
    assert rec.is_finished() and not list(rec.run_dir.rglob("*.tmp"))
    pd.testing.assert_frame_equal(_strip_seconds(rec), _strip_seconds(ref))
    ep_ref, ep = ref.epochs.drop(columns=["seconds", "frames_per_s"]), rec.epochs.drop(columns=["seconds", "frames_per_s"])
    pd.testing.assert_frame_equal(ep, ep_ref)


def test_torchrun_gloo_two_processes(world, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed next to this python")
    cfg = tiny(world, tmp_path / "runs", "ddp", **{"train.epochs": 2, "train.steps_per_epoch": None,
                                                  "train.eval_every": 1})  # fmt: skip
    cfg_path = cfg.to_file(tmp_path / "cfg.yaml")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "reidlab.engine",
           "--config", str(cfg_path), "--no-progress"]  # fmt: skip
    out = subprocess.run(cmd, cwd=tmp_path, env=_child_env(), capture_output=True, text=True, timeout=300)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log
    rec = RunRecord(cfg.run_dir)
    assert rec.is_finished(), log
    assert rec.env["world_size"] == 2 and rec.env["backend"] == "gloo"
    m = rec.metrics
    assert list(m["epoch"]) == [1, 2]  # one row per evaluation: written once, by rank 0
    for col in ("mAP", "rank1", "rank5", "mINP"):
        assert m[col].between(0, 1).all(), col
    assert np.isfinite(m[["loss", "loss_ce", "loss_triplet"]].to_numpy()).all()
    assert log.count("finished in") == 1  # only rank 0 reports
    # each rank ran its own share of the epoch's P x K batches
    from reidlab.data import PKSampler, build_dataset

    train_pids = [t.pid for t in build_dataset("synthetic", world, verbose=False).train]
    expected = []
    for epoch in range(2):
        s = PKSampler(train_pids, 3, 2, seed=cfg.seed, num_replicas=2, rank=0)
        s.set_epoch(epoch)
        expected.append(len(s) // 6)
    assert list(rec.epochs["steps"]) == expected and min(expected) >= 1
    assert not list(rec.run_dir.rglob("*.tmp"))


def test_abd_with_orthogonality_terms_adds_up(world, tmp_path):
    cfg = tiny(world, tmp_path, "abd", **{
        "model.abd": {"branch_dim": 64, "pam": False}, "loss.of.name": "svdo", "loss.ow.name": "svdo", "loss.of.beta": 1e-3,
        "train.epochs": 1, "train.steps_per_epoch": 1, "eval.batch_size": 16,
    })  # fmt: skip
    rec = train(cfg, progress=False)
    row = rec.epochs.iloc[0]
    assert row["loss_of"] > 0 and row["loss_ow"] > 0
    assert row["loss"] == pytest.approx(row["loss_ce"] + row["loss_triplet"] + row["loss_of"] + row["loss_ow"], rel=1e-5)
    regs = rec.model["regularizers"]
    assert regs["ow"]["num_layers"] > 0 and regs["of"]["name"] == "svdo"


def _market(root: Path) -> Path:
    from PIL import Image

    base = root / "Market-1501-v15.09.15"
    rng = np.random.default_rng(0)
    for folder, pids, cams in (("bounding_box_train", range(1, 7), (1, 2)), ("query", range(7, 10), (1,)),
                               ("bounding_box_test", range(7, 10), (2, 3))):  # fmt: skip
        (base / folder).mkdir(parents=True)
        for pid in pids:
            colour = rng.integers(0, 255, 3)
            for cam in cams:
                for j in range(2):
                    img = np.clip(colour + rng.normal(0, 20, (32, 16, 3)), 0, 255).astype(np.uint8)
                    Image.fromarray(img).save(base / folder / f"{pid:04d}_c{cam}s1_{j:06d}_01.jpg")
    return base


def test_image_task_on_a_market_layout(tmp_path):
    root = _market(tmp_path / "market")
    cfg = RunConfig().override({
        "run_id": "img", "results_dir": str(tmp_path / "runs"), "data.dataset": "market1501",
        "data.root": str(root), "data.height": 32, "data.width": 16, "data.p": 3, "data.k": 2,
        "model.task": "image", "train.epochs": 1, "eval.max_rank": 5,
    })  # fmt: skip
    rec = train(cfg, progress=False)
    m = rec.final_metrics()
    assert rec.is_finished() and 0 <= m["mAP"] <= 1 and math.isfinite(m["loss"])
    assert rec.model["class"] == "ImageReIDModel" and rec.protocol["kind"] == "image"
    with pytest.raises(Exception, match="model.task"):
        train(cfg.override({"run_id": "img2", "model.task": "video"}), progress=False)


def test_cli_config_and_set(world, tmp_path):
    cfg = tiny(world, tmp_path / "runs", "cli", **{"train.epochs": 1, "train.steps_per_epoch": 1})
    p = cfg.to_file(tmp_path / "c.yaml")
    assert engine_main(["--config", str(p), "--set", "seed=4", "--no-progress"]) == 0
    rec = RunRecord(cfg.run_dir)
    assert rec.config["seed"] == 4 and rec.is_finished()
    assert engine_main(["--config", str(p), "--set", "model.fuson=x"]) == 2
    json.loads((rec.run_dir / "config.json").read_text())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_channels_last_run(world, tmp_path):
    cfg = tiny(world, tmp_path, "amp", **{"train.device": "cuda", "train.amp": True, "train.channels_last": True,
                                          "train.epochs": 2, "train.eval_every": 1})  # fmt: skip
    rec = train(cfg, progress=False)
    assert rec.env["amp_dtype"] in ("bfloat16", "float16") and rec.env["channels_last"] is True
    m = rec.metrics
    assert np.isfinite(m[["mAP", "loss"]].to_numpy()).all() and m["mAP"].between(0, 1).all()
    # a CUDA checkpoint resumes/evaluates on CPU
    res = evaluate_checkpoint(rec.checkpoint_path("last"), device="cpu")
    assert 0 <= res.mAP <= 1


def test_real_dense_extraction_of_a_320_frame_tracklet_is_bounded(tmp_path):
    from PIL import Image

    from reidlab import data as D
    from reidlab.data.records import Tracklet
    from reidlab.engine import extract_features
    from reidlab.models import build_model

    rng = np.random.default_rng(1)
    paths = []
    for i in range(8):  # 8 distinct images, reused: a 320-frame tracklet costs 8 files
        p = tmp_path / f"f{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    long = Tracklet(tuple(paths[i % 8] for i in range(320)), pid=1, camid=0)
    short = Tracklet(tuple(paths[:3]), pid=2, camid=1)
    tf = D.build_transforms(32, 16, train=False)
    seq_len, batch = 4, 5
    loader = D.build_test_loader(D.VideoTestDataset([long, short], seq_len, tf), batch, 0)
    torch.manual_seed(0)
    model = build_model("video", 3).eval()
    seen = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0] * args[0].shape[1]))
    try:
        feats, pids, cams = extract_features(model, loader, "cpu", records=[long, short])
    finally:
        handle.remove()
    assert max(seen) <= batch * seq_len and sum(seen) == (80 + 1) * seq_len  # 80 + 1 dense chunks
    # reference: the same chunks, one at a time, averaged per tracklet
    with torch.no_grad():
        ref = []
        for t in (long, short):
            embs = []
            for chunk in D.dense_chunks(len(t.paths), seq_len):
                clip = torch.stack([tf(torch.from_numpy(D.read_image(t.paths[i])).permute(2, 0, 1)) for i in chunk])
                embs.append(model(clip[None])[0])
            ref.append(torch.stack(embs).mean(0))
    torch.testing.assert_close(feats, torch.stack(ref), rtol=1e-4, atol=1e-5)
    assert list(pids) == [1, 2] and list(cams) == [0, 1]
