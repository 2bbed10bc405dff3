"""Ranked lists (reidlab.eval.ranking), their figure (reidlab.viz.ranked) and `reidlab rank` on trained runs.

The pure ranking is checked against hand-computed lists and against ``evaluate``'s per-query AP / CMC
on random matrices with ties; the glue on tiny runs trained on the synthetic world, a miniature MARS
layout and a miniature Market-1501 layout (the run's mAP must come back from the ranked lists).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reidlab.eval import RankedLists, classify_pairs, evaluate, order_queries, protocol_masks, rank_gallery
from reidlab.viz.ranked import plot_ranked_lists, representative_frames

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


# ------------------------------------------------------------------------------------------------
# the pure ranking
# ------------------------------------------------------------------------------------------------

# one query (pid 1, cam 0) against 6 gallery entries
HAND_G_PIDS = np.array([1, 2, 1, 0, 1, 3])
HAND_G_CAMS = np.array([0, 1, 1, 0, 2, 1])
HAND_D = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.05]])


def test_protocol_rule():
    junk, match = classify_pairs(np.array([True, True, False, False]), np.array([True, False, True, False]))
    assert junk.tolist() == [True, False, False, False] and match.tolist() == [False, True, False, False]
    valid, match = protocol_masks([1, 2], [0, 1], HAND_G_PIDS, HAND_G_CAMS)
    # query 0 (pid 1, cam 0): gallery 0 is junk, 2 and 4 are its matches; query 1 (pid 2, cam 1): 1 is junk
    assert valid.tolist() == [[False, True, True, True, True, True], [True, False, True, True, True, True]]
    assert match.tolist() == [[False, False, True, False, True, False], [False] * 6]


def test_hand_computed_list():
    r = rank_gallery(HAND_D, [1], HAND_G_PIDS, [0], HAND_G_CAMS, topk=4)
    # valid ranked: g5 (0.05, pid 3), g1 (0.2, pid 2), g2 (0.3, match), g3 (0.4, distractor), g4 (0.5, match)
    assert r.gallery.tolist() == [[5, 1, 2, 3]]
    assert r.match.tolist() == [[False, False, True, False]]
    np.testing.assert_allclose(r.distance, [[0.05, 0.2, 0.3, 0.4]])
    assert r.g_pid.tolist() == [[3, 2, 1, 0]] and r.g_camid.tolist() == [[1, 1, 1, 0]]
    assert r.num_valid.tolist() == [5] and r.num_matches.tolist() == [2] and r.first_match.tolist() == [3]
    assert r.ap[0] == pytest.approx((1 / 3 + 2 / 5) / 2)  # toolbox: precision at ranks 3 and 5
    off = rank_gallery(HAND_D, [1], HAND_G_PIDS, [0], HAND_G_CAMS, topk=4, ap_mode="official")
    # trapezoid: rank 3 -> (0/2 + 1/3)/2, rank 5 -> (1/4 + 2/5)/2, averaged over the 2 matches
    assert off.ap[0] == pytest.approx(((0 + 1 / 3) / 2 + (1 / 4 + 2 / 5) / 2) / 2)
    for rr in (r, off):
        assert rr.ap[0] == pytest.approx(evaluate(HAND_D, [1], HAND_G_PIDS, [0], HAND_G_CAMS,
                                                  ap_mode=rr.ap_mode).mAP)


def test_degenerate_inputs_are_finite_and_documented():
    # query 0: its only same-pid entry is junk -> no match; query 1: all distances tie, k > gallery
    d = np.array([[0.3, 0.1, 0.2, 0.2, 0.9, 0.4], [0.2] * 6])
    r = rank_gallery(d, [2, 3], HAND_G_PIDS, [1, 0], HAND_G_CAMS, topk=8)
    assert r.num_matches.tolist() == [0, 1] and r.evaluated.tolist() == [False, True]
    assert r.ap[0] == 0.0 and r.first_match[0] == 0 and r.num_valid[0] == 5
    assert r.gallery[0].tolist() == [2, 3, 0, 5, 4, -1, -1, -1]  # ties: lower gallery index first
    # all tied: gallery order; pid 3's only entry (g5, cam 1) is last -> rank 6, AP 1/6
    assert r.gallery[1].tolist() == [0, 1, 2, 3, 4, 5, -1, -1] and r.first_match[1] == 6
    assert r.ap[1] == pytest.approx(1 / 6) and r.shown.tolist() == [5, 6]
    # padding past num_valid: gallery -1, distance NaN, pid/camid -1, match False
    assert np.isnan(r.distance[0, 5:]).all() and np.isfinite(r.distance[0, :5]).all()
    assert (r.g_pid[:, 6:] == -1).all() and (r.g_camid[:, 6:] == -1).all() and not r.match[:, 6:].any()
    assert np.isfinite(r.ap).all()
    # one identity everywhere: same-camera entries are junk; a query seeing only its own camera has none
    one = rank_gallery(np.ones((2, 3)), [5, 5], [5, 5, 5], [0, 1], [0, 0, 1], topk=5)
    assert one.num_valid.tolist() == [1, 2] and one.num_matches.tolist() == [1, 2]
    assert one.ap.tolist() == [1.0, 1.0] and one.first_match.tolist() == [1, 1]
    none = rank_gallery(np.ones((1, 2)), [5], [5, 5], [0], [0, 0], topk=3)
    assert none.num_valid.tolist() == [0] and (none.gallery == -1).all() and none.ap.tolist() == [0.0]
    s = none.summary()
    assert np.isnan(s["mAP"]) and s["num_skipped_queries"] == 1.0
    assert order_queries(none).tolist() == [0]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ap_mode", ["toolbox", "official"])
def test_ap_and_first_match_equal_evaluate(seed, ap_mode):
    rng = np.random.default_rng(seed)
    Q, G = 37, 211
    q_pids, q_cams = rng.integers(1, 15, Q), rng.integers(0, 4, Q)
    g_pids, g_cams = rng.integers(0, 15, G), rng.integers(0, 4, G)
    d = rng.integers(0, 25, (Q, G)).astype(np.float32)  # many ties
    if seed % 2:
        d = rng.random((Q, G))
    r = rank_gallery(d, q_pids, g_pids, q_cams, g_cams, topk=7, ap_mode=ap_mode)
    e = evaluate(d, q_pids, g_pids, q_cams, g_cams, max_rank=G, ap_mode=ap_mode)
    assert np.array_equal(np.flatnonzero(r.evaluated), e.valid_queries)
    np.testing.assert_allclose(r.ap[r.evaluated], e.ap, rtol=0, atol=1e-12)
    cmc = (r.first_match[r.evaluated][:, None] <= np.arange(1, G + 1)[None, :]).mean(axis=0)
    np.testing.assert_allclose(cmc, e.cmc, atol=1e-12)
    assert r.summary()["mAP"] == pytest.approx(e.mAP, abs=1e-12)
    # top-k against a plain per-query stable sort of the valid entries
    for i in range(Q):
        valid = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i]))
        order = np.flatnonzero(valid)[np.argsort(d[i, valid], kind="stable")][:7]
        assert r.gallery[i].tolist() == order.tolist()
        assert r.match[i].tolist() == (g_pids[order] == q_pids[i]).tolist()


def _lists(ap, first, matches):
    n = len(ap)
    z = np.zeros((n, 1), np.int64)
    return RankedLists(query=np.arange(n), q_pid=np.ones(n, int), q_camid=np.zeros(n, int), gallery=z,
                       distance=np.zeros((n, 1)), g_pid=z, g_camid=z, match=np.zeros((n, 1), bool),
                       num_valid=np.full(n, 5), num_matches=np.asarray(matches), ap=np.asarray(ap, float),
                       first_match=np.asarray(first), topk=1)


def test_query_orders():
    r = _lists(ap=[0.5, 0.2, 0.0, 0.2, 1.0, 0.5], first=[2, 3, 0, 5, 1, 2], matches=[1, 2, 0, 1, 1, 3])
    assert order_queries(r, "worst").tolist() == [3, 1, 0, 5, 4, 2]  # query 2 has no match: last
    assert order_queries(r, "best").tolist() == [4, 0, 5, 1, 3, 2]
    assert order_queries(r, "first-match").tolist() == [3, 1, 0, 5, 4, 2]
    rnd = order_queries(r, "random", seed=3)
    assert sorted(rnd[:5].tolist()) == [0, 1, 3, 4, 5] and rnd[5] == 2
    assert rnd.tolist() == order_queries(r, "random", seed=3).tolist()
    assert any(order_queries(r, "random", seed=s).tolist() != rnd.tolist() for s in range(4, 9))
    t = r.take(order_queries(r))
    assert t.query.tolist() == [3, 1, 0, 5, 4, 2] and t.ap.tolist() == [0.2, 0.2, 0.5, 0.5, 1.0, 0.0]
    assert len(t.head(2)) == 2 and t.head(None) is t
    with pytest.raises(ValueError, match="order"):
        order_queries(r, "median")


def test_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        rank_gallery(np.array([[np.nan, 1.0]]), [1], [1, 2], [0], [1, 0])
    with pytest.raises(ValueError, match="shape"):
        rank_gallery(np.ones((2, 2)), [1], [1, 2], [0], [1, 0])
    with pytest.raises(ValueError, match="topk"):
        rank_gallery(np.ones((1, 2)), [1], [1, 2], [0], [1, 0], topk=0)
    with pytest.raises(ValueError, match="ap_mode"):
        rank_gallery(np.ones((1, 2)), [1], [1, 2], [0], [1, 0], ap_mode="area")
    with pytest.raises(ValueError, match="empty"):
        rank_gallery(np.ones((0, 2)), [], [1, 2], [], [1, 0])


def test_representative_frames():
    assert representative_frames(1) == [0]
    assert representative_frames(2) == [0, 1]
    assert representative_frames(9) == [0, 4, 8] and representative_frames(10) == [0, 5, 9]
    assert representative_frames(10, 1) == [4] and representative_frames(7, 5) == [0, 2, 3, 5, 6]
    with pytest.raises(ValueError):
        representative_frames(0)


def test_figure_with_padding_and_a_missing_frame(tmp_path):
    from reidlab.data.records import Sample, Tracklet
    from reidlab.viz import save_figure

    def img(name, colour):
        p = tmp_path / name
        Image.fromarray(np.full((16, 8, 3), colour, np.uint8)).save(p)
        return str(p)

    q = [Tracklet(tuple(img(f"q{i}.png", (200, 0, 0)) for i in range(4)), 1, 0), Sample(img("q.png", 9), 2, 1)]
    g = [Sample(img(f"g{i}.png", (0, 0, 40 * i)), int(pid), int(cam))
         for i, (pid, cam) in enumerate(zip(HAND_G_PIDS, HAND_G_CAMS))]
    g[3] = Sample(str(tmp_path / "gone.png"), 0, 0)
    d = np.vstack([HAND_D, HAND_D])
    r = rank_gallery(d, [1, 2], HAND_G_PIDS, [0, 1], HAND_G_CAMS, topk=7)
    with pytest.warns(UserWarning, match="gone.png"):
        fig = plot_ranked_lists(r, q, g, image_size=(32, 16))
    out = save_figure(fig, tmp_path / "r.png")
    assert out.stat().st_size > 1000 and Image.open(out).size[0] > 500
    titles = [t.get_text() for t in fig.texts if t.get_text().startswith("query")]
    assert titles[0].startswith("query 0") and "AP 36.7%" in titles[0] and "rank 3" in titles[0]
    assert "no true match" in titles[1]


# ------------------------------------------------------------------------------------------------
# runs: the CLI and `ranked_lists` on tiny trained runs (synthetic world, MARS and Market layouts)
# ------------------------------------------------------------------------------------------------

TINY_WORLD = dict(ids=10, cams=2, cams_per_id=(2, 2), tracklets_per_cam=2, frames=(6, 10), distractors=1, junk=0,
                  height=32, width=16)  # fmt: skip


def _train(tmp: Path, run_id: str, **over):
    from reidlab.config import RunConfig
    from reidlab.engine.trainer import train

    base = {"run_id": run_id, "results_dir": str(tmp / "runs"), "seed": 3, "data.height": 32, "data.width": 16,
            "data.seq_len": 2, "data.p": 3, "data.k": 2, "train.epochs": 1, "train.steps_per_epoch": 2,
            "eval.max_rank": 5, "eval.batch_size": 8}  # fmt: skip
    base.update(over)
    return train(RunConfig().override(base), progress=False)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    from reidlab.data import synthetic

    tmp = tmp_path_factory.mktemp("rank_synth")
    world = synthetic.ensure_world(tmp / "synthetic", verbose=False, **TINY_WORLD)
    return _train(tmp, "tiny", **{"data.root": str(world), "data.synthetic": dict(TINY_WORLD)})


def test_cli_rank_on_a_trained_run(synthetic_run, tmp_path, capsys):
    from reidlab.cli import main

    rec = synthetic_run
    out, csv = tmp_path / "worst.png", tmp_path / "worst.csv"
    assert main(["rank", str(rec.run_dir), "--topk", "6", "--queries", "3", "--out", str(out), "--csv",
                 str(csv)]) == 0
    assert f"{out}: 3 of" in capsys.readouterr().out
    assert out.stat().st_size > 10_000 and Image.open(out).size[0] > 800
    t = pd.read_csv(csv)
    m = rec.final_metrics()
    assert t["ap"].mean() == pytest.approx(m["mAP"], abs=1e-5)  # every query has a match in this world
    assert (t["first_match"] == 1).mean() == pytest.approx(m["rank1"], abs=1e-9)
    assert t["ap"].is_monotonic_increasing and list(t["row"]) == list(range(len(t)))
    assert [f"g6_{c}" in t for c in ("index", "pid", "camid", "distance", "match")] == [True] * 5
    assert (t["g1_distance"] <= t["g2_distance"]).all()
    # default output next to the run, another order
    assert main(["rank", str(rec.run_dir), "--order", "best", "--topk", "3", "--queries", "2"]) == 0
    best = pd.read_csv(rec.run_dir / "figures" / "ranked-best.csv")
    assert best["ap"].is_monotonic_decreasing and (rec.run_dir / "figures" / "ranked-best.png").is_file()


def test_cli_rank_errors_name_the_paths(synthetic_run, tmp_path, capsys):
    from reidlab.cli import main

    rec = synthetic_run
    published = tmp_path / "results" / "runs" / "tiny"
    published.mkdir(parents=True)
    for name in ("config.json", "metrics.csv", "status.json"):
        shutil.copy(rec.run_dir / name, published / name)
    (published / "config.json").write_text((published / "config.json").read_text().replace(
        str(rec.run_dir.parent), str(tmp_path / "elsewhere")))
    assert main(["rank", str(published), "--queries", "1"]) == 2
    err = capsys.readouterr().err
    assert str(published / "checkpoints" / "last.pt") in err and str(tmp_path / "elsewhere") in err
    assert main(["rank", str(tmp_path / "nothing")]) == 2 and "does not exist" in capsys.readouterr().err
    assert main(["rank", str(rec.run_dir), "--topk", "0"]) == 2
    assert main(["rank", str(rec.run_dir), "--order", "median"]) == 2


def test_published_record_finds_the_checkpoint_its_config_names(synthetic_run, tmp_path):
    from reidlab.runs.ranked import checkpoint_run_dir

    published = tmp_path / "tiny"
    published.mkdir()
    shutil.copy(synthetic_run.run_dir / "config.json", published / "config.json")
    assert checkpoint_run_dir(published).resolve() == synthetic_run.run_dir.resolve()


def _paint(root: Path) -> None:
    """Give every image of a miniature layout its identity's colour (plus noise), 32 x 16 pixels."""
    rng = np.random.default_rng(0)
    for p in sorted(root.rglob("*.jpg")):
        pid = p.name.split("_")[0][:4]  # Market "0001_c1s1_...", MARS "0007C1T0001F001"
        base = np.random.default_rng(int.from_bytes(pid.encode(), "little")).integers(0, 255, 3)
        Image.fromarray(np.clip(base + rng.normal(0, 25, (32, 16, 3)), 0, 255).astype(np.uint8)).save(p)


def test_rank_on_a_miniature_mars_layout_and_missing_root(tmp_path):
    from test_data_layouts import write_mars

    from reidlab.runs.ranked import ranked_lists, rank_run
    from reidlab.viz import save_figure

    train = [(pid, cam, 1, 3) for pid in (1, 2, 3) for cam in (1, 2)]
    test = [(pid, cam, t, 3) for pid in (7, 8, 9) for cam in (1, 2) for t in (1, 2)] + [(0, 1, 1, 2), (-1, 2, 1, 2)]
    root = write_mars(tmp_path / "MARS", train=train, test=test, query=[1, 7])  # pid 7 cam 1, pid 8 cam 2
    _paint(root)
    rec = _train(tmp_path, "mars", **{"data.dataset": "mars", "data.root": str(root)})
    ranked, fig = ranked_lists(rec.run_dir, topk=4, queries=2)
    assert len(ranked) == 2 and ranked.summary()["mAP"] == pytest.approx(rec.final_metrics()["mAP"], abs=1e-9)
    # MARS "remaining" gallery: the other 10 test tracklets, junk dropped; the same-camera tracklet is junk
    assert ranked.num_valid.tolist() == [10, 10] and ranked.num_matches.tolist() == [2, 2]
    assert (ranked.g_pid[ranked.gallery >= 0] != -1).all()
    assert save_figure(fig, tmp_path / "mars.png").stat().st_size > 5000
    shutil.move(root, tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match=r"dataset 'mars' not found at data.root") as e:
        rank_run(rec.run_dir)
    assert str(root) in str(e.value)


def test_rank_on_an_image_dataset(tmp_path):
    from test_data_layouts import write_market

    from reidlab.runs.ranked import ranked_lists, write_ranked_csv
    from reidlab.viz import save_figure

    root = write_market(tmp_path)
    for folder, names in (("bounding_box_train", ["0005_c1s1_000101_01.jpg", "0005_c2s1_000201_01.jpg",
                                                  "0002_c2s1_000301_01.jpg", "0007_c1s1_000401_01.jpg"]),
                          ("bounding_box_test", ["0001_c3s1_000501_01.jpg", "0003_c2s1_000601_01.jpg"])):
        for n in names:
            (root / folder / n).write_bytes((root / "query" / "0001_c1s1_001051_00.jpg").read_bytes())
    _paint(root)
    rec = _train(tmp_path, "market", **{"data.dataset": "market1501", "data.root": str(root), "model.task": "image",
                                        "data.p": 2})
    ranked, fig = ranked_lists(rec.run_dir, topk=3, queries=2, order="first-match")
    assert ranked.summary()["mAP"] == pytest.approx(rec.final_metrics()["mAP"], abs=1e-9)
    assert ranked.q_pid.tolist() != [] and set(ranked.q_pid.tolist()) == {1, 3}
    assert save_figure(fig, tmp_path / "market.png").stat().st_size > 3000
    t = pd.read_csv(write_ranked_csv(ranked, tmp_path / "market.csv"))
    assert len(t) == 2 and {"g3_pid", "g3_distance"} <= set(t.columns)
