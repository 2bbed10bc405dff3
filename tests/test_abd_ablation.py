"""The ABD ablation report (reidlab.study.abd) and the `reidlab abd` job."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from reidlab.eval import evaluate, pairwise_distance
from reidlab.study.abd import (
    RunScores,
    ablation_tables,
    format_ablation_markdown,
    noise_floor_abs_r,
    per_query_scores,
)


def test_noise_floor_matches_independent_gaussians():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((800, 60))
    r = np.corrcoef(x, rowvar=False)
    mean_abs = np.abs(r[~np.eye(60, dtype=bool)]).mean()
    assert mean_abs == pytest.approx(noise_floor_abs_r(800), rel=0.08)
    assert np.isfinite(noise_floor_abs_r(1))  # degenerate: one sample


def test_per_query_scores_every_labelled_tracklet_against_all():
    rng = np.random.default_rng(1)
    pids = np.array([1, 1, 2, 2, 3, 3, 0])
    cams = np.array([0, 1, 0, 1, 0, 1, 0])
    emb = rng.standard_normal((7, 4))
    pq = per_query_scores(emb, pids, cams)
    assert pq["query"].tolist() == [0, 1, 2, 3, 4, 5]  # the distractor is gallery only
    d = np.asarray(pairwise_distance(emb[:6], emb, "euclidean"))
    want = evaluate(d, pids[:6], pids, cams[:6], cams, max_rank=1)
    assert np.allclose(pq.ap, want.ap)
    # one cross-camera match each: AP = 1 / rank of the match = rank-1 hit when it is first
    assert np.array_equal(pq.r1.to_numpy() == 1, np.isclose(pq.ap, 1.0))
    with pytest.raises(ValueError, match="no cross-camera match"):  # identity 3 seen by one camera only
        per_query_scores(emb, pids, np.array([0, 1, 0, 1, 0, 0, 0]))


def _scores(variant: str, seed: int, ap: np.ndarray, abs_r: float) -> RunScores:
    q = np.arange(len(ap))
    pq = pd.DataFrame({"query": q, "pid": q // 2 + 1, "ap": ap, "r1": (ap > 0.5).astype(float)})
    return RunScores(f"abd-{variant}-s{seed}", variant, seed, pq,
                     {"embedding_abs_r": abs_r, "embedding_erank_ratio": 0.5, "channel_abs_r": abs_r / 2,
                      "channel_erank_ratio": 0.4})


def _train(variant: str, seed: int) -> dict:
    return {"split_mAP_prev": 0.3, "split_mAP_last": 0.305, "plateau_gap": 0.005, "epochs": 20.0,
            "ce_over_chance": 0.4, "loss_of_last": 0.0, "loss_ow_first": 0.0, "loss_ow_last": 0.0}


def test_ablation_table_pairs_seeds_and_reports_deltas():
    rng = np.random.default_rng(2)
    base = [rng.uniform(0, 1, 40) for _ in range(3)]
    scores = [_scores("bare", s, base[s], 0.20) for s in range(3)]
    scores += [_scores("of", s, np.clip(base[s] + 0.05, 0, 1), 0.15 - 0.01 * s) for s in range(3)]
    train = {s.run: _train(s.variant, s.seed) for s in scores}
    t = ablation_tables(scores, train, n_boot=500).set_index("variant")
    want = np.mean([np.clip(base[s] + 0.05, 0, 1).mean() - base[s].mean() for s in range(3)])
    assert t.loc["of", "delta_mAP"] == pytest.approx(want)
    assert t.loc["of", "delta_lo"] <= want <= t.loc["of", "delta_hi"]
    assert t.loc["of", "delta_embedding_abs_r"] == pytest.approx(-0.06)
    assert bool(t.loc["of", "delta_embedding_abs_r_same_sign"])
    md = format_ablation_markdown(t.reset_index())
    assert "| + O.F. | 3 |" in md and "baseline" in md
    with pytest.raises(ValueError, match="bare"):
        ablation_tables([s for s in scores if s.variant == "of"], train)


def test_abd_job_quick_trains_scores_and_publishes_nothing(tmp_path):
    from reidlab.cli import abd_job

    rc = abd_job(quick=True, work=str(tmp_path / "wk"), results=str(tmp_path / "results"))
    assert rc == 0
    t = pd.read_csv(tmp_path / "wk" / "tables" / "abd_ablation.csv")
    assert t.variant.tolist() == ["bare", "full"] and t.seeds.tolist() == [2, 2]
    assert np.isfinite(t.mAP).all() and np.isfinite(t.embedding_abs_r).all()
    assert (tmp_path / "wk" / "figures" / "abd_correlation.png").is_file()
    assert not (tmp_path / "results").exists()  # a quick job never publishes
