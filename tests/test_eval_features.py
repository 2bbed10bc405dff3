"""evaluate_features / pairwise_distance: plain distance formulas, chunked == unchunked, torch and
numpy inputs, degenerate features, bad input; CUDA only where available."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.eval import evaluate, evaluate_features, pairwise_distance


def case(seed=0, num_q=30, num_g=120, dim=16, ids=12):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, dim))
    qp = rng.integers(1, ids + 1, num_q)
    gp = np.concatenate([rng.integers(1, ids + 1, num_g - 10), np.zeros(10, int)])
    qf = (centres[qp - 1] + rng.standard_normal((num_q, dim))).astype(np.float32)
    gf = (np.vstack([centres[gp[:-10] - 1], rng.standard_normal((10, dim))])
          + rng.standard_normal((num_g, dim))).astype(np.float32)
    return qf, gf, qp, gp, rng.integers(0, 4, num_q), rng.integers(0, 4, num_g)


def plain_distance(qf, gf, metric):
    qf, gf = qf.astype(np.float64), gf.astype(np.float64)
    out = np.zeros((len(qf), len(gf)))
    for i in range(len(qf)):
        for j in range(len(gf)):
            if metric == "euclidean":
                out[i, j] = np.sqrt(((qf[i] - gf[j]) ** 2).sum())
            else:
                nq, ng = np.linalg.norm(qf[i]), np.linalg.norm(gf[j])
                out[i, j] = 1.0 - (qf[i] @ gf[j] / (nq * ng) if nq > 0 and ng > 0 else 0.0)
    return out


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_pairwise_distance_matches_plain_formula(metric):
    qf, gf, *_ = case(1, num_q=7, num_g=19)
    gf = gf[:9].copy()
    gf[3] = 0.0  # a zero vector: cosine distance 1 by definition here
    d = pairwise_distance(qf, gf, metric)
    assert isinstance(d, np.ndarray) and d.shape == (7, 9)
    np.testing.assert_allclose(d, plain_distance(qf, gf, metric), atol=2e-5)
    t = pairwise_distance(torch.from_numpy(qf), torch.from_numpy(gf), metric)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), d, atol=1e-6)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("ap_mode", ["toolbox", "official"])
def test_chunked_equals_unchunked_and_evaluate(metric, ap_mode):
    qf, gf, qp, gp, qc, gc = case(2)
    ref = evaluate(pairwise_distance(qf, gf, metric), qp, gp, qc, gc, max_rank=20, ap_mode=ap_mode)
    for chunk in (None, 1, 7, 1000):
        r = evaluate_features(qf, gf, qp, gp, qc, gc, metric=metric, max_rank=20, ap_mode=ap_mode,
                              chunk_size=chunk)
        np.testing.assert_array_equal(r.ap, ref.ap)
        np.testing.assert_array_equal(r.cmc, ref.cmc)
        assert r.mINP == ref.mINP
    # a tiny memory budget forces one-row chunks, same answer
    r = evaluate_features(qf, gf, qp, gp, qc, gc, metric=metric, max_rank=20, ap_mode=ap_mode,
                          memory_budget_bytes=16)
    np.testing.assert_array_equal(r.ap, ref.ap)


def test_torch_inputs_and_cuhk03_chunk_independent():
    qf, gf, qp, gp, qc, gc = case(3)
    a = evaluate_features(qf, gf, qp, gp, qc, gc, protocol="cuhk03", seed=4, max_rank=10)
    b = evaluate_features(torch.from_numpy(qf), torch.from_numpy(gf), torch.from_numpy(qp), gp, qc, gc,
                          protocol="cuhk03", seed=4, max_rank=10, chunk_size=4)
    np.testing.assert_array_equal(a.cmc, b.cmc)
    np.testing.assert_array_equal(a.ap, b.ap)
    c = evaluate(pairwise_distance(qf, gf), qp, gp, qc, gc, protocol="cuhk03", seed=4, max_rank=10)
    np.testing.assert_array_equal(a.cmc, c.cmc)


def test_degenerate_features_finite():
    # zero vectors with cosine, one identity, a single gallery item
    z = np.zeros((3, 5), np.float32)
    r = evaluate_features(z, np.zeros((4, 5), np.float32), np.ones(3, int), np.ones(4, int),
                          np.zeros(3, int), np.ones(4, int), metric="cosine", max_rank=3)
    assert r.mAP == 1.0 and np.isfinite(r.ap).all() and r.cmc[0] == 1.0
    d = pairwise_distance(z, z, "cosine")
    np.testing.assert_array_equal(d, np.ones((3, 3)))
    s = evaluate_features(np.ones((2, 3)), np.ones((1, 3)), [1, 1], [1], [0, 0], [1], max_rank=5)
    np.testing.assert_array_equal(s.cmc, np.ones(5))
    rr = evaluate_features(z, np.zeros((4, 5), np.float32), np.ones(3, int), np.ones(4, int),
                           np.zeros(3, int), np.ones(4, int), metric="cosine", rerank=True, k1=3, k2=2)
    assert np.isfinite(rr.ap).all()


@pytest.mark.parametrize("args, kw, match", [
    (dict(qf=np.ones((3, 4)), gf=np.ones((5, 3))), {}, "feature dim 4 but gf has 3"),
    (dict(qf=np.ones(3)), {}, "qf must be 2-D"),
    (dict(qf=np.full((3, 4), np.nan)), {}, "qf contains NaN"),
    ({}, dict(metric="manhattan"), "unknown metric 'manhattan'"),
    (dict(q_pids=np.ones(2, int), q_camids=np.ones(2, int)), {}, "3/5 rows but there are 2 query"),
    ({}, dict(chunk_size=0), "chunk_size must be"),
    ({}, dict(protocol="x"), "unknown protocol"),
])
def test_bad_input(args, kw, match):
    base = dict(qf=np.ones((3, 4)), gf=np.ones((5, 4)), q_pids=np.ones(3, int), g_pids=np.ones(5, int),
                q_camids=np.zeros(3, int), g_camids=np.ones(5, int))
    base.update(args)
    with pytest.raises(ValueError, match=match):
        evaluate_features(**base, **kw)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_same_result():
    qf, gf, qp, gp, qc, gc = case(5)
    cpu = evaluate_features(qf, gf, qp, gp, qc, gc, max_rank=10)
    dev = evaluate_features(torch.from_numpy(qf).cuda(), torch.from_numpy(gf).cuda(), qp, gp, qc, gc,
                            max_rank=10, chunk_size=8)
    np.testing.assert_allclose(dev.ap, cpu.ap, atol=1e-6)
    d = pairwise_distance(torch.from_numpy(qf).cuda(), torch.from_numpy(gf).cuda())
    assert d.is_cuda
    rr_cpu = evaluate_features(qf, gf, qp, gp, qc, gc, rerank=True, max_rank=10)
    rr_dev = evaluate_features(torch.from_numpy(qf).cuda(), torch.from_numpy(gf).cuda(), qp, gp, qc, gc,
                               rerank=True, max_rank=10)
    np.testing.assert_allclose(rr_dev.ap, rr_cpu.ap, atol=1e-5)
