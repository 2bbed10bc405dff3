"""TensorBoard event files made from run records: read back, their scalars equal the CSV records."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from reidlab.runs.records import RunRecord
from reidlab.runs.tracking import EVENT_FILE, read_scalars, write_tensorboard, write_tensorboard_tree

PERCENT = {"mAP", "rank1", "rank5", "rank10", "mINP"}


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_events_match_records(run_dir: Path) -> dict:
    """Every numeric column of epochs.csv (train/...) and metrics.csv (eval/..., % for ranking metrics) is
    in the run's event file at the same epochs with the same value (float32)."""
    scalars = read_scalars(run_dir / EVENT_FILE)
    for name, prefix, skip in (("epochs.csv", "train", {"epoch", "seconds", "steps"}),
                               ("metrics.csv", "eval", {"epoch", "seconds"})):
        rows = _csv(run_dir / name)
        assert rows, f"{name} is empty"
        for col in rows[0]:
            if col in skip or (prefix == "eval" and col.startswith("loss")):
                continue
            want = [(int(r["epoch"]), float(r[col]) * (100 if prefix == "eval" and col in PERCENT else 1))
                    for r in rows if r[col] not in ("", "nan")]
            got = scalars.get(f"{prefix}/{col}", [])
            assert [s for s, _ in got] == [s for s, _ in want], f"{prefix}/{col}: steps differ"
            np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-6,
                                       err_msg=f"{prefix}/{col}")
    return scalars


def _record(tmp_path: Path, epochs: int) -> RunRecord:
    rec = RunRecord(tmp_path / "runs" / "r-s0")
    rec.run_dir.mkdir(parents=True, exist_ok=True)
    rec.write_epochs([{"epoch": e, "loss": 5.0 / e, "loss_ce": 4.0 / e, "loss_triplet": 1.0 / e, "loss_of": 0.0,
                       "loss_ow": 0.0, "lr": 1e-3 * e, "steps": 10, "frames_per_s": 100.0 + e, "seconds": 10.0 * e}
                      for e in range(1, epochs + 1)])
    rec.write_metrics([{"epoch": e, "mAP": 0.1 * e, "rank1": 0.05 * e, "rank5": 0.2, "rank10": 0.3,
                        "mINP": float("nan") if e == 2 else 0.01, "loss": 1.0, "loss_ce": 1.0,
                        "loss_triplet": 0.0, "loss_of": 0.0, "loss_ow": 0.0, "seconds": 10.0 * e}
                       for e in range(2, epochs + 1, 2)])
    rec.write_status("running", epoch=epochs, seconds=10.0 * epochs)
    return rec


def test_event_file_scalars_equal_records(tmp_path):
    rec = _record(tmp_path, 4)
    path = write_tensorboard(rec.run_dir)
    assert path == rec.run_dir / EVENT_FILE
    scalars = assert_events_match_records(rec.run_dir)
    assert scalars["eval/mINP"] == [(4, pytest.approx(1.0))]  # the NaN at epoch 2 is left out, not logged
    assert scalars["train/lr"][-1] == (4, pytest.approx(4e-3))


def test_rebuild_after_more_epochs_holds_each_step_once(tmp_path):
    rec = _record(tmp_path, 2)
    write_tensorboard(rec.run_dir)
    rec = _record(tmp_path, 6)  # the run resumed and trained on: records rewritten whole
    write_tensorboard(rec.run_dir)
    scalars = assert_events_match_records(rec.run_dir)
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert [p.name for p in rec.run_dir.iterdir() if "tfevents" in p.name] == [EVENT_FILE]
    assert not list(rec.run_dir.glob(".events-*"))  # no temp file left behind


def test_figures_become_images_at_the_last_epoch(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rec = _record(tmp_path, 3)
    rec.figures_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1])
    fig.savefig(rec.figures_dir / "curves.png")
    plt.close(fig)
    (rec.figures_dir / "broken.png").write_bytes(b"not a png")  # skipped, not fatal
    write_tensorboard(rec.run_dir)
    acc = EventAccumulator(str(rec.run_dir), size_guidance={"images": 0})
    acc.Reload()
    assert acc.Tags()["images"] == ["figures/curves"]
    (img,) = acc.Images("figures/curves")
    assert img.step == 3 and img.width == 200 and img.height == 100
    assert img.encoded_image_string == (rec.figures_dir / "curves.png").read_bytes()
    assert math.isclose(acc.Scalars("train/loss")[0].wall_time + 20.0, acc.Scalars("train/loss")[-1].wall_time)


def test_folders_without_records_and_tree(tmp_path):
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    assert write_tensorboard(tmp_path / "runs" / "empty") is None
    _record(tmp_path, 2)
    assert write_tensorboard_tree(tmp_path / "runs") == [tmp_path / "runs" / "r-s0" / EVENT_FILE]


def test_cli_tensorboard_writes_every_run(tmp_path, capsys):
    from reidlab.cli import main as cli_main

    _record(tmp_path, 2)
    assert cli_main(["tensorboard", "--runs", str(tmp_path / "runs")]) == 0
    assert (tmp_path / "runs" / "r-s0" / EVENT_FILE).is_file()
    assert "tensorboard --logdir" in capsys.readouterr().out
    assert cli_main(["tensorboard", "--runs", str(tmp_path / "nowhere")]) == 2


def test_training_writes_the_event_file_each_epoch(tmp_path):
    """A real (tiny) training run: its event file exists after train() and equals its records."""
    from reidlab.data.synthetic import ensure_world
    from reidlab.engine import train
    from reidlab.notebook import training_config

    world = ensure_world(tmp_path / "world", verbose=False, ids=8, cams=2, frames=[4, 6], distractors=1, junk=0)
    cfg = training_config({"root": str(world), "synthetic": {"ids": 8, "cams": 2, "frames": [4, 6],
                           "distractors": 1, "junk": 0}, "p": 3, "k": 2, "epochs": 2, "steps_per_epoch": 1,
                           "eval_every": 1, "height": 32, "width": 16, "run_id": "tb-s0", "seed": 0},
                          results_dir=tmp_path / "res")
    rec = train(cfg, progress=False)
    assert rec.is_finished()
    scalars = assert_events_match_records(rec.run_dir)
    assert [s for s, _ in scalars["eval/mAP"]] == [1, 2]
    assert {"train/loss", "train/lr", "train/frames_per_s", "eval/rank1"} <= set(scalars)


COMMITTED_RUNS = Path(__file__).resolve().parents[1] / "results" / "runs"


@pytest.mark.parametrize("run_dir", sorted(p for p in COMMITTED_RUNS.glob("*") if p.is_dir()), ids=lambda p: p.name)
def test_committed_runs_have_event_files_matching_their_records(run_dir):
    """What `tensorboard --logdir results/runs` shows for the main job's published runs is their records."""
    assert (run_dir / EVENT_FILE).is_file(), f"{run_dir}: no TensorBoard event file"
    assert_events_match_records(run_dir)
