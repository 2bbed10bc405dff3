"""reidlab.analysis against hand-computed values, and finite on degenerate input."""

import math

import numpy as np
import pytest

from reidlab import analysis as A


def test_identity_correlation_stats():
    eye = np.eye(5)
    assert A.mean_abs_offdiag(eye) == 0.0
    assert A.effective_rank(eye) == pytest.approx(5.0)


def test_all_ones_and_rank_one():
    ones = np.ones((4, 4))
    assert A.mean_abs_offdiag(ones) == pytest.approx(1.0)
    # rank one: a single non-zero singular value -> exp(0) = 1
    assert A.effective_rank(ones) == pytest.approx(1.0)
    assert A.effective_rank(np.outer([1.0, 2.0, 3.0], [4.0, 5.0])) == pytest.approx(1.0)


def test_effective_rank_hand_computed():
    # singular values 3 and 1: p = (0.75, 0.25), H = -(.75 ln .75 + .25 ln .25)
    m = np.diag([3.0, 1.0])
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert A.effective_rank(m) == pytest.approx(math.exp(h))
    # invariant to an orthogonal rotation
    q, _ = np.linalg.qr(np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert A.effective_rank(q @ m) == pytest.approx(math.exp(h))


def test_mean_abs_offdiag_hand_computed():
    m = np.array([[1.0, -0.5, 0.2], [-0.5, 1.0, 0.0], [0.2, 0.0, 1.0]])
    # off-diagonal |values|: 0.5, 0.2, 0.5, 0.0, 0.2, 0.0 -> 1.4 / 6
    assert A.mean_abs_offdiag(m) == pytest.approx(1.4 / 6)


def test_feature_correlation_matches_numpy_and_handles_constant_dims():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    x[:, 1] = 2 * x[:, 0] + 1  # perfectly correlated
    np.testing.assert_allclose(A.feature_correlation(x), np.corrcoef(x, rowvar=False), atol=1e-12)
    assert A.feature_correlation(x)[0, 1] == pytest.approx(1.0)
    xc = x.copy()
    xc[:, 2] = 7.0  # constant (dead) dimension: uncorrelated by convention, not NaN
    c = A.feature_correlation(xc)
    assert np.all(np.isfinite(c))
    assert c[2, 2] == 1.0 and np.all(c[2, [0, 1, 3]] == 0.0)


@pytest.mark.parametrize("x", [np.zeros((10, 3)), np.ones((1, 6)), np.zeros((1, 1)), np.full((3, 2), 5.0)])
def test_degenerate_features_are_finite(x):
    s = A.correlation_summary(x)
    assert all(np.isfinite(v) for v in s.values())
    assert s["mean_abs_offdiag"] == 0.0
    assert s["effective_rank"] == pytest.approx(x.shape[1])  # correlation is the identity


def test_effective_rank_of_zero_matrix_is_zero_and_bad_input_raises():
    assert A.effective_rank(np.zeros((3, 3))) == 0.0
    with pytest.raises(ValueError, match="2-D"):
        A.effective_rank(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        A.feature_correlation(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        A.mean_abs_offdiag(np.zeros((2, 3)))


def test_cosine_vs_frame_distance_hand_computed():
    # frames at angles 0, 90, 180 degrees: cos(d=1) = 0 (both pairs), cos(d=2) = -1
    tr = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
    df = A.cosine_vs_frame_distance([tr])
    assert list(df["distance"]) == [1, 2]
    np.testing.assert_allclose(df["mean_cos"], [0.0, -1.0], atol=1e-12)
    assert list(df["count"]) == [2, 1]
    # a second tracklet adds its pairs; max_distance cuts
    tr2 = np.array([[1.0, 1.0], [1.0, 1.0]])
    df2 = A.cosine_vs_frame_distance([tr, tr2], max_distance=1)
    assert list(df2["distance"]) == [1]
    assert df2["mean_cos"].iloc[0] == pytest.approx((0 + 0 + 1) / 3)
    assert df2["count"].iloc[0] == 3


def test_cosine_degenerate_inputs():
    assert A.cosine_vs_frame_distance([np.ones((1, 4))]).empty  # single frame: no pair
    c = A.cosine_matrix(np.zeros((3, 4)))
    assert np.all(c == 0.0)


def test_softmax_cosine_weights_and_lab_note_floor():
    # two frames opposite each other around a centre: cosines to the centre are 0/0 -> guarded to 0;
    # use three frames so the centre is non-zero and hand-compute
    f = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    c = f.mean(axis=0)  # (2/3, 1/3)
    cos = f @ c / (np.linalg.norm(f, axis=1) * np.linalg.norm(c))
    for tau in (1.0, 0.1):
        e = np.exp(cos / tau)
        np.testing.assert_allclose(A.softmax_cosine_weights(f, tau), e / e.sum(), atol=1e-12)
    # the floor in the lab notes: cos -1 vs +1 at tau = 1 -> e^-1 / (e + e^-1) = 0.119
    assert A.weight_floor_bound(2, 1.0) == pytest.approx(math.exp(-1) / (math.exp(1) + math.exp(-1)))
    assert A.weight_floor_bound(2, 1.0) == pytest.approx(0.1192, abs=1e-4)
    assert A.weight_floor_bound(1, 1.0) == 1.0
    assert A.weight_floor_bound(4, 0.001) == 0.0  # overflow guarded
    z = A.softmax_cosine_weights(np.zeros((3, 5)), 1.0)
    np.testing.assert_allclose(z, [1 / 3] * 3)
    with pytest.raises(ValueError):
        A.softmax_cosine_weights(f, 0.0)


def test_weight_floor_vs_tau():
    rng = np.random.default_rng(1)
    feats = [rng.normal(size=(4, 8)) for _ in range(5)]
    df = A.weight_floor_vs_tau(feats, [0.1, 1.0, 10.0])
    assert list(df["tau"]) == [0.1, 1.0, 10.0]
    # smaller tau -> sharper softmax -> lower floor; every realised floor respects the bound
    assert df["mean_min_weight"].is_monotonic_increasing
    assert np.all(df["min_weight"] >= df["bound"] - 1e-12)
    assert np.all(df["uniform"] == 0.25)
    w = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    r = A.realised_weight_floor(w)
    assert r["min_weight"] == pytest.approx(0.1)
    assert r["mean_min_weight"] == pytest.approx(0.175)
    assert r["min_ratio_to_uniform"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="equal frame counts"):
        A.weight_floor_vs_tau([np.ones((3, 2)), np.ones((4, 2))], [1.0])


def test_frame_weights_from_aux():
    assert A.frame_weights_from_aux(None, 4).tolist() == [[0.25] * 4]
    w = A.frame_weights_from_aux({"weights": np.array([[1.0, 3.0]])}, 2)
    np.testing.assert_allclose(w, [[0.25, 0.75]])
    masks = np.ones((1, 2, 3, 3))
    masks[0, 1] = 3.0
    np.testing.assert_allclose(A.frame_weights_from_aux({"masks": masks}, 2), [[0.25, 0.75]])
    with pytest.raises(ValueError):
        A.frame_weights_from_aux({"weights": np.ones((1, 3))}, 2)


def test_corrupted_weight_share_and_table():
    assert A.corrupted_weight_share([0.1, 0.6, 0.3], [False, True, False]) == pytest.approx(0.6)
    assert math.isnan(A.corrupted_weight_share([0.0, 0.0], [True, False]))
    recs = [
        ("mean", [0.25] * 4, (None, "blur", None, None)),
        ("mean", [0.25] * 4, (None, None, None, None)),  # no corrupted frame: not counted
        ("sc", [0.3, 0.1, 0.3, 0.3], (None, "blur", None, None)),
        ("sc", [0.2, 0.2, 0.4, 0.2], ("occluder", "misalign", None, None)),
        ("tm", [0.5, 0.5], None),  # unknown ground truth: skipped
    ]
    t = A.corruption_share_table(recs).set_index("variant")
    assert t.loc["mean", "tracklets"] == 1
    assert t.loc["mean", "ratio"] == pytest.approx(1.0)
    # sc: shares 0.1 and 0.4 -> mean 0.25; uniform shares 0.25 and 0.5 -> 0.375
    assert t.loc["sc", "weight_share"] == pytest.approx(0.25)
    assert t.loc["sc", "uniform_share"] == pytest.approx(0.375)
    assert t.loc["sc", "ratio"] == pytest.approx(0.25 / 0.375)
    assert t.loc["tm", "tracklets"] == 0 and math.isnan(t.loc["tm", "ratio"])
