"""k-reciprocal re-ranking against a direct, deliberately plain implementation of the paper's
formulas (Zhong et al., CVPR 2017), with the conventions documented in reidlab.eval.rerank:
squared base distance normalised by its row maximum, N(i, k) = k + 1 nearest incl. i (stable),
strict '> 2/3' expansion rule, kernel weights normalised per row, k2 query expansion, Jaccard as
sum-min / sum-max."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.eval import evaluate, evaluate_features, pairwise_distance, re_ranking
from reidlab.eval.rerank import FeaturePoints, rerank_blocks
from reidlab.eval.distance import DistanceSource


def plain_rerank(q_g, q_q, g_g, k1=20, k2=6, lam=0.3):
    Q, G = q_g.shape
    N = Q + G
    full = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64) ** 2
    d = full / full.max(axis=1, keepdims=True)
    ranked = [list(np.argsort(d[i], kind="stable")) for i in range(N)]

    def nearest(i, k):
        return set(ranked[i][:k + 1])

    def reciprocal(i, k):
        return {j for j in nearest(i, k) if i in nearest(j, k)}

    half = int(np.around(k1 / 2))
    V = np.zeros((N, N))
    for i in range(N):
        r_i = reciprocal(i, k1)
        r_star = set(r_i)
        for c in r_i:
            r_c = reciprocal(c, half)
            if len(r_c & r_i) > 2 / 3 * len(r_c):
                r_star |= r_c
        members = sorted(r_star)
        w = np.exp(-d[i, members])
        V[i, members] = w / w.sum()
    if k2 != 1:
        V = np.array([V[ranked[i][:k2]].mean(axis=0) for i in range(N)])
    out = np.zeros((Q, G))
    for q in range(Q):
        for g in range(G):
            a, b = V[q], V[Q + g]
            d_jaccard = 1 - np.minimum(a, b).sum() / np.maximum(a, b).sum()
            out[q, g] = (1 - lam) * d_jaccard + lam * d[q, Q + g]
    return out


def features(seed, num_q=10, num_g=36, dim=8, ids=6):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, dim))
    qp, gp = rng.integers(0, ids, num_q), rng.integers(0, ids, num_g)
    qf = centres[qp] + 0.8 * rng.standard_normal((num_q, dim))
    gf = centres[gp] + 0.8 * rng.standard_normal((num_g, dim))
    return qf, gf, qp, gp, rng.integers(0, 3, num_q), rng.integers(0, 3, num_g)


@pytest.mark.parametrize("seed, k1, k2, lam", [(0, 20, 6, 0.3), (1, 6, 3, 0.3), (2, 4, 1, 0.5), (3, 5, 2, 0.0)])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_matches_plain_paper_formulas(seed, k1, k2, lam, metric):
    qf, gf, *_ = features(seed)
    q_g, q_q, g_g = (pairwise_distance(a, b, metric) for a, b in ((qf, gf), (qf, qf), (gf, gf)))
    ref = plain_rerank(q_g, q_q, g_g, k1, k2, lam)
    got = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    np.testing.assert_allclose(got, ref, atol=1e-9)
    # from features (the path evaluate_features takes), in blocks of 3 query rows
    pts = FeaturePoints(DistanceSource(qf, gf, metric))
    blocks = dict(rerank_blocks(pts, k1, k2, lam, chunk_rows=3))
    np.testing.assert_allclose(np.vstack([blocks[q] for q in sorted(blocks)]), ref, atol=1e-9)


def test_evaluate_features_rerank_equals_evaluate_on_reference():
    qf, gf, qp, gp, qc, gc = features(4, num_q=14, num_g=50)
    q_g, q_q, g_g = (pairwise_distance(a, b) for a, b in ((qf, gf), (qf, qf), (gf, gf)))
    ref = evaluate(plain_rerank(q_g, q_q, g_g), qp, gp, qc, gc, max_rank=10)
    for chunk in (None, 4):
        r = evaluate_features(qf, gf, qp, gp, qc, gc, rerank=True, max_rank=10, chunk_size=chunk)
        np.testing.assert_allclose(r.ap, ref.ap, atol=1e-9)
        np.testing.assert_allclose(r.cmc, ref.cmc, atol=1e-12)
    # torch input gives the same
    t = evaluate_features(torch.from_numpy(qf), torch.from_numpy(gf), qp, gp, qc, gc, rerank=True, max_rank=10)
    np.testing.assert_allclose(t.ap, ref.ap, atol=1e-9)


def test_degenerate_identical_and_zero_features_stay_finite():
    qf, gf = np.ones((3, 4)), np.ones((5, 4))  # all distances 0: row maximum 0
    out = re_ranking(*(pairwise_distance(a, b) for a, b in ((qf, gf), (qf, qf), (gf, gf))), k1=2, k2=2)
    assert out.shape == (3, 5) and np.isfinite(out).all()
    z = np.zeros((3, 4))
    src = FeaturePoints(DistanceSource(z, np.zeros((4, 4)), "cosine"))
    blocks = list(rerank_blocks(src, k1=3, k2=2))
    assert all(np.isfinite(b).all() for _, b in blocks)
    # a single gallery item and k1 larger than the number of points
    one = re_ranking(np.array([[1.0], [2.0]]), np.array([[0.0, 1.5], [1.5, 0.0]]), np.array([[0.0]]))
    assert one.shape == (2, 1) and np.isfinite(one).all()


@pytest.mark.parametrize("kw, match", [
    (dict(k1=0), "k1 must be"), (dict(k2=0), "k2 must be"), (dict(lambda_value=1.5), "lambda_value"),
])
def test_bad_parameters(kw, match):
    q_g = np.ones((2, 3))
    with pytest.raises(ValueError, match=match):
        re_ranking(q_g, np.ones((2, 2)), np.ones((3, 3)), **kw)


def test_bad_matrices():
    with pytest.raises(ValueError, match=r"q_q_dist must be \(2, 2\)"):
        re_ranking(np.ones((2, 3)), np.ones((3, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="g_g_dist contains NaN"):
        re_ranking(np.ones((2, 3)), np.ones((2, 2)), np.full((3, 3), np.nan))
