"""The fusion study's pieces: cached features, test-time operators, oracle, controls, heads, comparisons.

Values are checked against hand-computed cases and against the video model's own test path; nothing
here trains a trunk (a randomly initialised tiny model is enough to check that paths agree).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from reidlab.study.frames import FrameFeatures
from reidlab.study.heads import head_embeddings, train_head
from reidlab.study.operators import BNAffine, Operator, apply_operator, chunk_plan, weight_stats
from reidlab.study.pipeline import compare, cosine_by_lag, evaluate_embeddings

pytestmark = pytest.mark.usefixtures("one_thread")


def _ff(lengths, dim=6, seed=0, corrupt=None, pids=None, cams=None, maps=False) -> FrameFeatures:
    rng = np.random.default_rng(seed)
    f = int(sum(lengths))
    n = len(lengths)
    return FrameFeatures(rng.random((f, dim)).astype(np.float32), np.concatenate([[0], np.cumsum(lengths)]),
                         pids if pids is not None else np.arange(1, n + 1), cams if cams is not None else np.zeros(n),
                         corrupt if corrupt is not None else np.zeros(f, bool), True,
                         rng.random((f, dim, 2, 1)).astype(np.float16) if maps else None)


# ----------------------------------------------------------------------------------------- operators


def test_mean_clip_matches_hand_computation_with_cycled_padding():
    ff = _ff([6])  # chunks of 4: [0,1,2,3], [4,5,4,5]
    emb, w = apply_operator(Operator("mean"), ff, BNAffine.identity(6), 4)
    x = ff.vectors.astype(np.float64)
    expect = 0.5 * (x[0:4].mean(0) + x[[4, 5, 4, 5]].mean(0))
    np.testing.assert_allclose(emb[0], expect, rtol=1e-12)
    np.testing.assert_allclose(w, [1 / 8, 1 / 8, 1 / 8, 1 / 8, 1 / 4, 1 / 4])


def test_bn_affine_is_applied_per_chunk_then_averaged():
    ff = _ff([3, 5])
    bn = BNAffine(np.full(6, 0.5), np.full(6, 4.0), np.full(6, 3.0), np.full(6, 1.0), 0.0)
    emb, _ = apply_operator(Operator("mean"), ff, bn, 5)  # tracklet 1 is exactly one chunk
    x = ff.vectors.astype(np.float64)
    np.testing.assert_allclose(emb[1], (x[3:8].mean(0) - 0.5) / 2 * 3 + 1, rtol=1e-12)


def test_negative_control_is_bitwise_identical_and_its_delta_exactly_zero():
    ff = _ff([5, 7, 4, 9], pids=np.array([1, 1, 2, 2]), cams=np.array([0, 1, 0, 1]))
    bn = BNAffine.identity(6)
    a, _ = apply_operator(Operator("mean"), ff, bn, 4)
    b, _ = apply_operator(Operator("mean_renamed", label="negative control"), ff, bn, 4)
    assert np.array_equal(a, b)
    pa, pb = evaluate_embeddings(a, ff), evaluate_embeddings(b, ff)
    pq = pd.concat([pa.assign(method="mean", seed=0), pb.assign(method="mean_renamed", seed=0)])
    r = compare(pq, "mean_renamed", "mean", {"n_boot": 200, "level": 0.95, "seed": 0})
    assert (r["delta"], r["delta_lo"], r["delta_hi"], r["half_width"]) == (0.0, 0.0, 0.0, 0.0)


def test_oracle_drops_corrupted_frames_and_falls_back_when_all_are():
    corrupt = np.array([False, True, False, True, True, True])  # tracklet 0: frames 0-3, tracklet 1: 4-5
    ff = _ff([4, 2], corrupt=corrupt)
    emb, w = apply_operator(Operator("oracle", scope="tracklet", oracle=True), ff, BNAffine.identity(6), 4)
    x = ff.vectors.astype(np.float64)
    np.testing.assert_allclose(emb[0], x[[0, 2]].mean(0), rtol=1e-12)
    np.testing.assert_allclose(emb[1], x[[4, 5]].mean(0), rtol=1e-12)  # no clean frame: keep all
    np.testing.assert_allclose(w, [0.5, 0, 0.5, 0, 0.5, 0.5])
    assert Operator("oracle", oracle=True).uses_ground_truth


def test_oracle_refuses_features_without_ground_truth():
    ff = _ff([3])
    ff.corruption_known = False
    with pytest.raises(ValueError, match="no corruption ground truth"):
        apply_operator(Operator("oracle", oracle=True), ff, BNAffine.identity(6), 4)


def test_softmax_cosine_tracklet_centre_weights_by_hand():
    ff = _ff([3])
    emb, w = apply_operator(Operator("s", fusion="softmax_cosine", options={"tau": 0.1}, scope="tracklet"), ff,
                            BNAffine.identity(6), 4)
    x = ff.vectors.astype(np.float64)
    c = x.mean(0)
    cos = x @ c / np.linalg.norm(x, axis=1) / np.linalg.norm(c)
    ww = np.exp(cos / 0.1) / np.exp(cos / 0.1).sum()
    np.testing.assert_allclose(w, ww, rtol=1e-9)
    np.testing.assert_allclose(emb[0], ww @ x, rtol=1e-9)


def test_l2_control_normalises_before_the_bnneck():
    ff = _ff([4])
    emb, _ = apply_operator(Operator("l2", l2=True), ff, BNAffine.identity(6), 4)
    m = ff.vectors.astype(np.float64).mean(0)
    np.testing.assert_allclose(emb[0], m / np.linalg.norm(m), rtol=1e-12)


@pytest.mark.parametrize("op", [Operator("mean"), Operator("max", fusion="max"),
                                Operator("sc", fusion="softmax_cosine", options={"tau": 0.01}),
                                Operator("sph", fusion="spherical"), Operator("l2", l2=True),
                                Operator("o", scope="tracklet", oracle=True)])
def test_operators_finite_on_degenerate_input(op):
    # zero vectors, a single-frame tracklet, one identity
    ff = FrameFeatures(np.zeros((5, 4), np.float32), [0, 1, 5], [3, 3], [0, 1], [True, False, True, True, True])
    emb, w = apply_operator(op, ff, BNAffine.identity(4), 4)
    assert np.all(np.isfinite(emb)) and np.all(np.isfinite(w))
    np.testing.assert_allclose([w[0:1].sum(), w[1:5].sum()], [1, 1], atol=1e-9)
    stats = weight_stats(w, ff)
    assert all(np.isfinite(v) for k, v in stats.items() if k not in ("corrupted_share", "share_ratio", "uniform_share"))


def test_operator_spec_errors_name_the_operator():
    with pytest.raises(ValueError, match="'att'.*not parameter-free"):
        Operator("att", fusion="temporal_attention")
    with pytest.raises(ValueError, match="scope"):
        Operator("m", scope="window")
    with pytest.raises(ValueError, match="unknown option"):
        Operator("s", fusion="softmax_cosine", options={"temperature": 1})
    with pytest.raises(ValueError, match="unknown key"):
        Operator.from_dict("m", {"fusion": "mean", "scoop": "clip"})


def test_weight_stats_by_hand():
    ff = _ff([4, 2], corrupt=np.array([True, False, False, False, False, False]))
    w = np.array([0.1, 0.3, 0.3, 0.3, 0.5, 0.5])
    s = weight_stats(w, ff)
    assert s["tv_from_uniform"] == pytest.approx((0.5 * (0.15 + 3 * 0.05) + 0) / 2)
    assert s["min_over_uniform"] == pytest.approx((0.4 + 1.0) / 2)
    assert s["corrupted_share"] == pytest.approx(0.1) and s["uniform_share"] == pytest.approx(0.25)
    assert s["share_ratio"] == pytest.approx(0.4) and s["tracklets_with_corruption"] == 1
    assert "tv_from_reference" not in s
    ref = np.array([0.25, 0.25, 0.25, 0.25, 0.5, 0.5])
    assert weight_stats(w, ff, ref)["tv_from_reference"] == pytest.approx((0.5 * (0.15 + 3 * 0.05) + 0) / 2)


def test_chunk_plan_scopes():
    ff = _ff([5, 2])
    chunks, owner = chunk_plan(ff, "clip", 4, False)
    assert [c.tolist() for c in chunks] == [[0, 1, 2, 3], [4, 4, 4, 4], [5, 6, 5, 6]] and owner.tolist() == [0, 0, 1]
    chunks, owner = chunk_plan(ff, "tracklet", 4, False)
    assert [c.tolist() for c in chunks] == [[0, 1, 2, 3, 4], [5, 6]]


def test_mean_operator_reproduces_the_video_models_test_path(tmp_path):
    """Cached-feature mean == the trained model's own dense evaluation (same trunk, same BNNeck)."""
    from reidlab.config import RunConfig
    from reidlab.data.synthetic import ensure_world, load_synthetic
    from reidlab.engine import extract_records
    from reidlab.models import build_model
    from reidlab.study.extract import extract_frames, trunk_and_neck

    root = ensure_world(tmp_path / "w", verbose=False, ids=6, cams=2, frames=[5, 7], distractors=0, junk=0,
                        height=32, width=16)
    tracklets = list(load_synthetic(root, verbose=False, mars_gallery="all").gallery)
    torch.manual_seed(0)
    model = build_model("video", 3, backbone="resnet18", fusion="mean").eval()
    with torch.no_grad():  # non-trivial BN statistics
        model.neck.bn.running_mean.uniform_(0, 1)
        model.neck.bn.running_var.uniform_(0.5, 2)
    cfg = RunConfig.from_dict({"data": {"height": 32, "width": 16, "seq_len": 4}})
    ref, pids, cams = extract_records(model, tracklets, cfg)
    enc, bn = trunk_and_neck(model)
    ff = extract_frames(enc, tracklets, 32, 16)
    emb, _ = apply_operator(Operator("mean"), ff, BNAffine.from_module(bn), 4)
    np.testing.assert_allclose(emb, ref.numpy(), rtol=1e-4, atol=1e-5)
    assert ff.pids.tolist() == pids.tolist() and ff.camids.tolist() == cams.tolist()
    assert ff.corrupt.sum() == sum(t.num_corrupted for t in tracklets)


def test_extraction_reuses_byte_identical_frames_of_another_corruption_rate(tmp_path):
    """Worlds that differ only in corruption share their clean frames: only the others are recomputed."""
    from reidlab.data.synthetic import ensure_world, load_synthetic
    from reidlab.models import build_model
    from reidlab.study.extract import extract_frames, trunk_and_neck

    knobs = dict(ids=6, cams=2, frames=[5, 7], distractors=0, junk=0, height=32, width=16)
    clean = list(load_synthetic(ensure_world(tmp_path / "a", verbose=False, corruption_rate=0.0, **knobs),
                                verbose=False, mars_gallery="all").gallery)
    dirty = list(load_synthetic(ensure_world(tmp_path / "b", verbose=False, corruption_rate=0.5, **knobs),
                                verbose=False, mars_gallery="all").gallery)
    torch.manual_seed(0)
    enc, _ = trunk_and_neck(build_model("video", 3, backbone="resnet18", fusion="mean").eval())
    seen = []
    enc.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    ref = extract_frames(enc, clean, 32, 16, maps=True)
    n_clean = sum(seen)
    seen.clear()
    ff = extract_frames(enc, dirty, 32, 16, maps=True, reuse=ref)
    assert sum(seen) == int(ff.corrupt.sum()) and 0 < sum(seen) < n_clean
    full = extract_frames(enc, dirty, 32, 16, maps=True)
    np.testing.assert_allclose(ff.vectors, full.vectors, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ff.maps.astype(np.float32), full.maps.astype(np.float32), rtol=1e-2, atol=1e-2)
    assert np.array_equal(ff.vectors[~ff.corrupt], ref.vectors[~ff.corrupt])


# ----------------------------------------------------------------------------------------- cache


def test_feature_cache_reused_and_invalidated_when_the_checkpoint_changes(tmp_path, monkeypatch):
    from reidlab.study import extract
    from reidlab.study.extract import cached_frames

    calls = []
    ff = _ff([3, 2])

    def fake_extract(encoder, tracklets, h, w, maps=False, reuse=None):
        calls.append(1)
        return ff

    class T:  # a tracklet-like record
        def __init__(self, pid):
            self.pid, self.camid, self.paths, self.corruption = pid, 0, (f"/x/{pid}.jpg",), None

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.neck = torch.nn.Identity(), torch.nn.Module()
            self.neck.bn = torch.nn.BatchNorm1d(6)

    monkeypatch.setattr(extract, "extract_frames", fake_extract)
    ck = tmp_path / "last.pt"
    ck.write_bytes(b"weights v1")
    run = tmp_path / "run"
    a, built = cached_frames(run, "test", ck, M(), [T(1), T(2)], tmp_path, 8, 4)
    assert built and len(calls) == 1 and (run / "features" / "test.npz").exists()
    b, built = cached_frames(run, "test", ck, M(), [T(1), T(2)], tmp_path, 8, 4)
    assert not built and len(calls) == 1
    np.testing.assert_array_equal(a.vectors, b.vectors)
    ck.write_bytes(b"weights v2")  # retrained
    _, built = cached_frames(run, "test", ck, M(), [T(1), T(2)], tmp_path, 8, 4)
    assert built and len(calls) == 2
    _, built = cached_frames(run, "test", ck, M(), [T(1), T(3)], tmp_path, 8, 4)  # other data
    assert built and len(calls) == 3


def test_cached_arrays_survive_a_corrupt_file(tmp_path):
    from reidlab.runs.features import cached_arrays, read_cached_key

    p = tmp_path / "c.npz"
    p.write_bytes(b"not a zip")
    arrays, built = cached_arrays(p, {"k": 1}, lambda: {"x": np.arange(3)})
    assert built and arrays["x"].tolist() == [0, 1, 2] and read_cached_key(p) == {"k": 1}


# ----------------------------------------------------------------------------------------- heads, eval


@pytest.mark.parametrize("fusion", ["temporal_attention", "template_mask"])
def test_head_trains_on_frozen_features_and_embeds_every_tracklet(fusion):
    lengths = [6, 5, 7, 6, 5, 8, 6, 7]
    pids = np.array([1, 1, 2, 2, 3, 3, 4, 4])
    ff = _ff(lengths, pids=pids, cams=np.array([0, 1] * 4), maps=True)
    head = train_head(fusion, ff, steps=5, p=2, k=2, seed=0)
    emb, w = head_embeddings(head, ff, 4)
    assert emb.shape == (8, 6) and np.all(np.isfinite(emb))
    np.testing.assert_allclose([w[ff.frames_of(i)].sum() for i in range(8)], 1, atol=1e-5)
    again, _ = head_embeddings(train_head(fusion, ff, steps=5, p=2, k=2, seed=0), ff, 4)
    np.testing.assert_array_equal(emb, again)  # seeded


def test_template_mask_head_needs_maps():
    ff = _ff([4, 4], pids=np.array([1, 2]))
    with pytest.raises(ValueError, match="maps"):
        train_head("template_mask", ff, steps=1)


def test_evaluate_embeddings_all_vs_rest_by_hand():
    # 2 identities x 2 cameras + a distractor; perfect embeddings -> AP 1, rank-1 hit
    emb = np.array([[0.0, 0], [0.1, 0], [5, 0], [5.1, 0], [20, 0]])
    ff = FrameFeatures(np.zeros((5, 2)), np.arange(6), [1, 1, 2, 2, 0], [0, 1, 0, 1, 0], np.zeros(5, bool))
    df = evaluate_embeddings(emb, ff)
    assert df["query"].tolist() == [0, 1, 2, 3] and df.ap.tolist() == [1, 1, 1, 1] and df.r1.tolist() == [1, 1, 1, 1]
    emb[1] = [19.9, 0]  # tracklet 1 now sits by the distractor: ranking 4, 3, 2, then its match 0
    df = evaluate_embeddings(emb, ff)
    assert df.ap.tolist()[1] == pytest.approx(1 / 4) and df.r1.tolist()[1] == 0


def test_evaluate_embeddings_refuses_queries_without_cross_camera_match():
    ff = FrameFeatures(np.zeros((3, 2)), [0, 1, 2, 3], [1, 1, 2], [0, 1, 0], np.zeros(3, bool))
    with pytest.raises(ValueError, match="1 query tracklets have no cross-camera match"):
        evaluate_embeddings(np.eye(3)[:, :2], ff)


def test_cosine_by_lag_with_baselines_by_hand():
    # tracklet A (pid 1, cam 0): e1, e1, e2; tracklet B (pid 1, cam 1): e1; tracklet C (pid 2): -e1
    x = np.array([[1.0, 0], [1, 0], [0, 1], [1, 0], [-1, 0]])
    ff = FrameFeatures(x, [0, 3, 4, 5], [1, 1, 2], [0, 1, 0], np.zeros(5, bool))
    t = cosine_by_lag(x, ff, max_lag=2, pairs=500).set_index("kind")
    lag = t.loc["lag"].set_index("lag").cos
    assert lag[1] == pytest.approx(0.5) and lag[2] == pytest.approx(0.0)
    assert t.loc["different id", "cos"] == pytest.approx(-2 / 3, abs=0.1)  # pairs (A frames | B) x C
    assert t.loc["same id, other camera", "cos"] == pytest.approx(2 / 3, abs=0.1)  # A frames x B
