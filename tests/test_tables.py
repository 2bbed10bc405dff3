"""`reidlab table` against hand-computed numbers from fabricated run records."""

import json
import math

import pandas as pd
import pytest
from scipy import stats

from reidlab.cli import main as cli_main
from reidlab.runs import tables as T

COLS = ["epoch", "mAP", "rank1", "rank5", "rank10", "mINP", "loss", "loss_ce", "loss_triplet", "loss_of",
        "loss_ow", "seconds"]


def make_run(runs, run_id, seed, fusion, fclass, rows, *, state="finished", protocol=None, nparams=1000):
    d = runs / run_id
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"run_id": run_id, "seed": seed, "model": {"fusion": fusion}}))
    (d / "model.json").write_text(json.dumps({"class": "ReIDModel", "task": "video", "num_parameters": nparams,
                                              "fusion": {"name": fusion, "class": fclass, "options": {}}}))
    (d / "protocol.json").write_text(json.dumps(protocol or {"dataset": "synthetic", "eval": "market1501"}))
    (d / "status.json").write_text(json.dumps({"state": state, "message": "", "epoch": rows[-1][0]}))
    lines = [",".join(COLS)]
    for ep, m, r1, r5 in rows:
        lines.append(",".join(str(v) for v in [ep, m, r1, r5, 0.95, 0.3, 1.0, 0.5, 0.5, 0.0, 0.0, 10.0]))
    (d / "metrics.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def runs(tmp_path):
    r = tmp_path / "runs"
    make_run(r, "fusion-mean-s0", 0, "mean", "MeanFusion", [(2, 0.50, 0.60, 0.80), (4, 0.60, 0.70, 0.90)])
    make_run(r, "fusion-mean-s1", 1, "mean", "MeanFusion", [(2, 0.52, 0.58, 0.82), (4, 0.62, 0.72, 0.88)])
    make_run(r, "fusion-soft_cos-s0", 0, "softmax_cosine", "SoftmaxCosineFusion",
             [(2, 0.55, 0.62, 0.84), (4, 0.65, 0.74, 0.92)])
    make_run(r, "fusion-soft_cos-s1", 1, "softmax_cosine", "SoftmaxCosineFusion",
             [(2, 0.53, 0.60, 0.80), (4, 0.66, 0.75, 0.90)])
    # unfinished: never in the tables by default
    make_run(r, "fusion-tm-s0", 0, "template_mask", "TemplateMaskFusion", [(2, 0.9, 0.9, 0.9)], state="running")
    return r


def test_grouping_and_per_epoch(runs):
    groups = T.group_runs(T.load_runs(runs))
    assert list(groups) == ["mean", "soft_cos"]  # shared `fusion-` prefix dropped, unfinished left out
    assert [r.seed for r in groups["soft_cos"]] == [0, 1]
    t = T.per_epoch_table(groups["soft_cos"]).set_index("epoch")
    assert t.loc[4, "mAP"] == pytest.approx(65.5)
    assert t.loc[4, "mAP_std"] == pytest.approx(math.sqrt(0.5))  # sample std of 65, 66
    assert t.loc[2, "rank1"] == pytest.approx(61.0)
    assert t.loc[4, "rank5"] == pytest.approx(91.0)
    assert t.loc[4, "seeds"] == 2


def test_summary_hand_computed(runs):
    groups = T.group_runs(T.load_runs(runs))
    s = T.summary_table(groups).set_index("variant")
    assert s.loc["mean", "ci_method"] == "baseline"
    assert s.loc["mean", "mAP_mean"] == pytest.approx(61.0)
    assert s.loc["mean", "mAP_std"] == pytest.approx(math.sqrt(2.0))  # 60, 62
    assert s.loc["soft_cos", "fusion_class"] == "SoftmaxCosineFusion"
    assert s.loc["soft_cos", "epoch"] == 4
    # paired by seed: mAP diffs 5 and 4 -> 4.5, sd 0.7071, n 2
    half = 12.706204736 * math.sqrt(0.5) / math.sqrt(2)
    assert s.loc["soft_cos", "d_mAP"] == pytest.approx(4.5)
    assert s.loc["soft_cos", "d_mAP_lo"] == pytest.approx(4.5 - half, rel=1e-6)
    assert s.loc["soft_cos", "d_mAP_hi"] == pytest.approx(4.5 + half, rel=1e-6)
    # rank1 diffs 4 and 3
    assert s.loc["soft_cos", "d_rank1"] == pytest.approx(3.5)
    assert s.loc["soft_cos", "ci_method"] == "paired t (n=2)"


def test_welch_when_seeds_differ(tmp_path):
    r = tmp_path / "runs"
    make_run(r, "a-mean-s0", 0, "mean", "MeanFusion", [(1, 0.50, 0.5, 0.5)])
    make_run(r, "a-mean-s1", 1, "mean", "MeanFusion", [(1, 0.54, 0.5, 0.5)])
    make_run(r, "a-max-s5", 5, "max", "MaxFusion", [(1, 0.60, 0.5, 0.5)])
    make_run(r, "a-max-s6", 6, "max", "MaxFusion", [(1, 0.70, 0.5, 0.5)])
    make_run(r, "a-max-s7", 7, "max", "MaxFusion", [(1, 0.65, 0.5, 0.5)])
    s = T.summary_table(T.group_runs(T.load_runs(r))).set_index("variant")
    x, y = [60.0, 70.0, 65.0], [50.0, 54.0]
    vx, vy = 25.0 / 3, 8.0 / 2  # sample variances / n
    df = (vx + vy) ** 2 / (vx**2 / 2 + vy**2 / 1)
    half = stats.t.ppf(0.975, df) * math.sqrt(vx + vy)
    assert s.loc["max", "ci_method"] == "Welch t"
    assert s.loc["max", "d_mAP"] == pytest.approx(65.0 - 52.0)
    assert s.loc["max", "d_mAP_hi"] - s.loc["max", "d_mAP"] == pytest.approx(half)
    assert sum(x) / 3 == 65.0 and sum(y) / 2 == 52.0


def test_single_seed_has_no_interval_and_difference_ci_plain():
    d, lo, hi, m = T.difference_ci({0: 70.0}, {0: 60.0})
    assert (d, m) == (10.0, "n/a") and math.isnan(lo) and math.isnan(hi)
    d, lo, hi, m = T.difference_ci({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0})
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert (d, m) == (2.0, "paired t (n=3)")
    assert (lo, hi) == (pytest.approx(2.0 - half), pytest.approx(2.0 + half))


def test_written_files(runs, tmp_path):
    out = tmp_path / "tables"
    assert cli_main(["table", "--runs", str(runs), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["per_epoch.csv", "per_epoch.md", "per_epoch.tex", "summary.csv", "summary.md", "summary.tex"]
    md = (out / "per_epoch.md").read_text()
    # lab-notes format, latest epoch first
    assert "| epoch | mAP | Rank1 | Rank5 |" in md
    sec = md.split("## soft_cos")[1]
    assert sec.index("| 4 | 65.5% | 74.5% | 91.0% |") < sec.index("| 2 | 54.0% | 61.0% | 82.0% |")
    summary = (out / "summary.md").read_text()
    assert "| mean | MeanFusion | 1,000 | 2 | 4 | 61.0 ± 1.4 | 71.0 ± 1.4 | 89.0 ± 1.4 | baseline | baseline |" in summary
    lo, hi = 4.5 - 12.706204736 * 0.5, 4.5 + 12.706204736 * 0.5
    assert f"+4.5 [{lo:+.1f}, {hi:+.1f}]" in summary
    assert "paired t-interval" in summary
    csv = pd.read_csv(out / "per_epoch.csv")
    row = csv[(csv["variant"] == "soft_cos") & (csv["epoch"] == 4)].iloc[0]
    assert row["mAP"] == pytest.approx(65.5)
    tex = (out / "summary.tex").read_text()
    assert "\\begin{tabular}" in tex and "soft\\_cos" in tex and "$\\pm$" in tex
    scsv = pd.read_csv(out / "summary.csv").set_index("variant")
    assert scsv.loc["soft_cos", "d_mAP"] == pytest.approx(4.5)


def test_protocol_mismatch_and_errors(tmp_path):
    r = tmp_path / "runs"
    make_run(r, "b-mean-s0", 0, "mean", "MeanFusion", [(1, 0.5, 0.5, 0.5)])
    make_run(r, "b-max-s0", 0, "max", "MaxFusion", [(1, 0.6, 0.5, 0.5)], protocol={"dataset": "mars"})
    built = T.build_tables(r)
    s = built["summary"].set_index("variant")
    assert s.loc["max", "ci_method"].startswith("n/a (different protocol)")
    assert math.isnan(s.loc["max", "d_mAP"])
    assert "different protocols" in built["files"]["summary.md"]
    with pytest.raises(ValueError, match="baseline 'nope'"):
        T.build_tables(r, baseline="nope")
    with pytest.raises(FileNotFoundError):
        T.load_runs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert cli_main(["table", "--runs", str(tmp_path / "empty"), "--out", str(tmp_path / "t")]) == 2
    assert not (tmp_path / "t").exists()
