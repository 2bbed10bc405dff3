"""reidlab.eval.evaluate against hand-computed cases and a deliberately plain per-query loop.

``plain_evaluate`` below is the reference: one query at a time, a full stable sort, the toolbox
recipe written out literally, and the Market-1501 MATLAB ``compute_AP.m`` loop for the official AP.
benchmarks/bench_eval.py imports it, so the benchmark times exactly this code.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from reidlab.eval import EvalResult, evaluate


def plain_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, ap_mode="toolbox"):
    """Reference market1501 evaluation: returns (cmc, mAP, mINP, per-query AP list, num_valid)."""
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")  # ties: lower gallery index first
        junk = (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
        good = (g_pids[order] == q_pids[i]) & ~junk
        if not good.any():
            continue
        matches = good[~junk].astype(np.int64)
        cum = np.cumsum(matches)
        cmc = (cum >= 1).astype(np.float64)
        cmc = np.concatenate([cmc, np.full(max(0, max_rank - len(cmc)), cmc[-1])])[:max_rank]
        all_cmc.append(cmc)
        hit_positions = np.flatnonzero(matches)
        all_inp.append(cum[hit_positions[-1]] / (hit_positions[-1] + 1.0))
        if ap_mode == "toolbox":
            precision = cum / np.arange(1, len(matches) + 1)
            all_ap.append(float((precision * matches).sum() / matches.sum()))
        else:  # compute_AP.m, line by line; junk entries are skipped in the ranked list
            ngood = good.sum()
            ap, old_recall, old_precision, intersect, j = 0.0, 0.0, 1.0, 0, 0
            for n in range(len(order)):
                if junk[n]:
                    continue
                if good[n]:
                    intersect += 1
                recall = intersect / ngood
                precision = intersect / (j + 1)
                ap += (recall - old_recall) * ((old_precision + precision) / 2)
                old_recall, old_precision = recall, precision
                j += 1
                if intersect == ngood:
                    break
            all_ap.append(ap)
    return np.mean(all_cmc, axis=0), float(np.mean(all_ap)), float(np.mean(all_inp)), all_ap, len(all_ap)


def random_case(seed, num_q=40, num_g=300, num_ids=30, cams=4, distractors=60, signal=1.0):
    """Tie-free random distances with identity signal, pid-0 distractors and same-camera junk."""
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, num_ids + 1, num_q)
    g_pids = np.concatenate([rng.integers(1, num_ids + 1, num_g - distractors), np.zeros(distractors, int)])
    q_cams, g_cams = rng.integers(0, cams, num_q), rng.integers(0, cams, num_g)
    dist = rng.random((num_q, num_g)) + signal * (q_pids[:, None] != g_pids[None, :])
    return dist, q_pids, g_pids, q_cams, g_cams


# ------------------------------------------------------------------------------ hand-computed

def tiny():
    # query pid 1 cam 0. Gallery index: 0 hit, 1 neg, 2 junk (same pid, same cam), 3 hit, 4 neg.
    # Valid ranking by distance: g1 (0.1, neg), g0 (0.3, hit), g4 (0.4, neg), g3 (0.5, hit)
    d = np.array([[0.3, 0.1, 0.05, 0.5, 0.4]])
    return d, np.array([1]), np.array([1, 2, 1, 1, 3]), np.array([0]), np.array([1, 1, 0, 2, 1])


def test_hand_computed_toolbox_official_minp():
    d, qp, gp, qc, gc = tiny()
    r = evaluate(d, qp, gp, qc, gc, max_rank=4)
    # hits at ranks 2 and 4: AP = (1/2 + 2/4) / 2
    assert r.mAP == pytest.approx(0.5, abs=1e-12)
    assert r.mINP == pytest.approx(2 / 4, abs=1e-12)
    np.testing.assert_array_equal(r.cmc, [0, 1, 1, 1])
    o = evaluate(d, qp, gp, qc, gc, max_rank=4, ap_mode="official")
    # trapezoid: hit 1: (p(1)=0 + p(2)=1/2)/2; hit 2: (p(3)=1/3 + p(4)=1/2)/2; each weighted 1/2
    assert o.mAP == pytest.approx(0.5 * (0.25 + (1 / 3 + 1 / 2) / 2), abs=1e-12)  # = 1/3
    assert o.mAP == pytest.approx(1 / 3, abs=1e-12)
    assert o.mINP == r.mINP and np.array_equal(o.cmc, r.cmc)


def test_hand_computed_two_queries_first_rank_hit():
    # q0: hits at ranks 1 and 3 -> toolbox (1 + 2/3)/2 = 5/6; official (1+1)/2 and (1/2 + 2/3)/2 -> 19/24
    # q1: single hit at rank 2 -> toolbox 1/2; official (0 + 1/2)/2 = 1/4
    d = np.array([[0.1, 0.2, 0.3, 0.9],
                  [0.5, 0.05, 0.9, 0.1]])  # q1: g1 (pid 3) 0.05, then its hit g3 0.1
    qp, qc = np.array([1, 2]), np.array([0, 0])
    gp, gc = np.array([1, 3, 1, 2]), np.array([1, 1, 2, 1])
    r = evaluate(d, qp, gp, qc, gc, max_rank=3)
    np.testing.assert_allclose(r.ap, [5 / 6, 1 / 2], atol=1e-12)
    np.testing.assert_allclose(r.inp, [2 / 3, 1 / 2], atol=1e-12)
    assert r.mAP == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert r.mINP == pytest.approx((2 / 3 + 1 / 2) / 2)
    np.testing.assert_allclose(r.cmc, [0.5, 1.0, 1.0])
    o = evaluate(d, qp, gp, qc, gc, max_rank=3, ap_mode="official")
    np.testing.assert_allclose(o.ap, [19 / 24, 1 / 4], atol=1e-12)
    assert (o.ap <= r.ap + 1e-15).all()  # the trapezoid never exceeds the toolbox AP


def test_skipped_queries_counted_and_result_fields():
    d, qp, gp, qc, gc = tiny()
    # add a query whose only same-pid gallery entries share its camera, and one with an unseen pid
    d = np.vstack([d, [0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]])
    qp, qc = np.array([1, 3, 7]), np.array([0, 1, 0])
    r = evaluate(d, qp, gp, qc, gc, max_rank=5)
    assert (r.num_valid_queries, r.num_skipped_queries) == (1, 2)
    np.testing.assert_array_equal(r.valid_queries, [0])
    assert r.mAP == pytest.approx(0.5)
    assert r.protocol == "market1501" and r.ap_mode == "toolbox"
    rec = r.as_dict()
    assert rec["mAP"] == pytest.approx(0.5) and rec["rank1"] == 0.0 and rec["rank5"] == 1.0
    assert np.isnan(rec["rank10"]) and rec["num_skipped_queries"] == 2.0
    assert all(isinstance(v, float) for v in rec.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.mAP = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        r.cmc[0] = 1.0  # read-only arrays


def test_max_rank_beyond_gallery_pads_cmc():
    d, qp, gp, qc, gc = tiny()  # 4 valid gallery entries, first hit at rank 2
    r = evaluate(d, qp, gp, qc, gc, max_rank=10)
    assert r.cmc.shape == (10,)
    np.testing.assert_array_equal(r.cmc, [0] + [1] * 9)


# ----------------------------------------------------------------------- against the plain loop

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ap_mode", ["toolbox", "official"])
def test_equals_plain_loop(seed, ap_mode):
    signal = [0.0, 0.3, 0.7, 1.0, 2.0, 0.5][seed]
    d, qp, gp, qc, gc = random_case(seed, signal=signal)
    if seed % 2:
        d = d.astype(np.float32)
    r = evaluate(d, qp, gp, qc, gc, max_rank=20, ap_mode=ap_mode)
    cmc, mAP, mINP, aps, nv = plain_evaluate(d, qp, gp, qc, gc, max_rank=20, ap_mode=ap_mode)
    assert r.num_valid_queries == nv and r.num_skipped_queries == len(qp) - nv
    np.testing.assert_allclose(r.cmc, cmc, atol=1e-6)
    np.testing.assert_allclose(r.ap, aps, atol=1e-6)
    assert abs(r.mAP - mAP) < 1e-6 and abs(r.mINP - mINP) < 1e-6


@pytest.mark.parametrize("dense_fraction", [0.0, 0.25, 2.0])  # all rows per-row / mixed / vectorised
def test_small_blocks_and_both_ranking_paths_equal_plain(monkeypatch, dense_fraction):
    import reidlab.eval.metrics as m
    monkeypatch.setattr(m, "_DENSE_FRACTION", dense_fraction)
    for seed, ties in ((11, False), (12, True)):
        d, qp, gp, qc, gc = random_case(seed, num_q=50, signal=0.4)
        if ties:
            d = np.round(d, 1)
        ref_cmc, _, ref_minp, ref_ap, _ = plain_evaluate(d, qp, gp, qc, gc)
        full = evaluate(d, qp, gp, qc, gc)
        monkeypatch.setattr(m, "_BLOCK_ENTRIES", 3 * d.shape[1] + 5)  # 3 query rows per block
        small = evaluate(d, qp, gp, qc, gc)
        monkeypatch.setattr(m, "_BLOCK_ENTRIES", 1 << 22)
        for r in (full, small):
            np.testing.assert_allclose(r.ap, ref_ap, atol=1e-12)
            np.testing.assert_allclose(r.cmc, ref_cmc, atol=1e-12)
            assert abs(r.mINP - ref_minp) < 1e-12


# ------------------------------------------------------------------------------------ ties

def test_ties_lower_gallery_index_first():
    qp, qc = np.array([1]), np.array([0])
    # equal distance 0.2 for a non-match (pid 2) and a hit: whichever has the lower index wins
    r = evaluate(np.array([[0.2, 0.2]]), qp, np.array([2, 1]), qc, np.array([1, 1]), max_rank=2)
    assert r.mAP == 0.5 and r.cmc[0] == 0.0
    r = evaluate(np.array([[0.2, 0.2]]), qp, np.array([1, 2]), qc, np.array([1, 1]), max_rank=2)
    assert r.mAP == 1.0 and r.cmc[0] == 1.0
    # junk tied in between does not count
    r = evaluate(np.array([[0.2, 0.2, 0.2]]), qp, np.array([2, 1, 1]), qc, np.array([1, 0, 1]), max_rank=2)
    assert r.mAP == 0.5


@pytest.mark.parametrize("seed", range(3))
def test_heavy_ties_equal_stable_plain_loop(seed):
    d, qp, gp, qc, gc = random_case(seed + 20, num_q=30, num_g=120)
    d = np.floor(d * 4)  # integer distances 0..7: most hits tie with non-matches
    for ap_mode in ("toolbox", "official"):
        r = evaluate(d.astype(np.int64), qp, gp, qc, gc, max_rank=10, ap_mode=ap_mode)
        cmc, mAP, mINP, aps, _ = plain_evaluate(d, qp, gp, qc, gc, max_rank=10, ap_mode=ap_mode)
        np.testing.assert_allclose(r.ap, aps, atol=1e-12)
        np.testing.assert_allclose(r.cmc, cmc, atol=1e-12)
        assert abs(r.mINP - mINP) < 1e-12


# ----------------------------------------------------------------------------------- cuhk03

def plain_cuhk03_cmc(d, qp, gp, qc, gc, max_rank, seed, repeats=10):
    """Single-gallery-shot CMC with the documented draws: per query i a generator
    default_rng([seed, i]) gives u (repeats, P) for the P gallery pids in ascending order, then
    u_hit (repeats,); an identity's sample is its floor(u * count)-th entry by gallery index."""
    pids = np.unique(gp)
    out = []
    for i in range(len(qp)):
        hits = np.flatnonzero((gp == qp[i]) & (gc != qc[i]))
        if len(hits) == 0:
            continue
        rng = np.random.default_rng([seed, i])
        u, u_hit = rng.random((repeats, len(pids))), rng.random(repeats)
        acc = np.zeros(max_rank)
        for t in range(repeats):
            chosen = []
            for p, pid in enumerate(pids):
                members = np.flatnonzero(gp == pid)
                if pid == qp[i]:
                    chosen.append(hits[int(u_hit[t] * len(hits))])
                else:
                    chosen.append(members[int(u[t, p] * len(members))])
            chosen = np.array(chosen)
            order = chosen[np.lexsort((chosen, d[i, chosen]))]  # by distance, then gallery index
            rank = int(np.flatnonzero(gp[order] == qp[i])[0]) + 1
            acc += np.arange(1, max_rank + 1) >= rank
        out.append(acc / repeats)
    return np.mean(out, axis=0)


def test_cuhk03_matches_plain_draws_and_is_seeded():
    d, qp, gp, qc, gc = random_case(3, num_q=25, num_g=150, signal=0.3)
    r0 = evaluate(d, qp, gp, qc, gc, max_rank=10, protocol="cuhk03", seed=0)
    np.testing.assert_allclose(r0.cmc, plain_cuhk03_cmc(d, qp, gp, qc, gc, 10, seed=0), atol=1e-12)
    again = evaluate(d, qp, gp, qc, gc, max_rank=10, protocol="cuhk03", seed=0)
    np.testing.assert_array_equal(r0.cmc, again.cmc)
    other = evaluate(d, qp, gp, qc, gc, max_rank=10, protocol="cuhk03", seed=1)
    assert not np.array_equal(r0.cmc, other.cmc)
    # AP / mINP are those of the full gallery, as in the toolboxes' cuhk03 evaluation
    m = evaluate(d, qp, gp, qc, gc, max_rank=10)
    assert r0.mAP == m.mAP and r0.mINP == m.mINP and r0.protocol == "cuhk03"
    assert np.all(np.diff(r0.cmc) >= 0)


def test_cuhk03_one_entry_per_identity_equals_market():
    rng = np.random.default_rng(5)
    g_pids = np.arange(1, 41)
    q_pids = rng.integers(1, 41, 30)
    d = rng.random((30, 40))
    a = evaluate(d, q_pids, g_pids, np.zeros(30, int), np.ones(40, int), max_rank=10, protocol="cuhk03")
    b = evaluate(d, q_pids, g_pids, np.zeros(30, int), np.ones(40, int), max_rank=10)
    np.testing.assert_allclose(a.cmc, b.cmc, atol=1e-12)


# ---------------------------------------------------------------------------- degenerate input

def test_one_identity_and_single_gallery_item():
    # everyone is pid 1: every valid gallery entry is a hit -> perfect scores
    d = np.random.default_rng(0).random((4, 6))
    r = evaluate(d, np.ones(4, int), np.ones(6, int), np.array([0, 1, 2, 3]), np.array([4, 4, 5, 5, 0, 1]))
    assert r.mAP == 1.0 and r.mINP == 1.0 and r.cmc[0] == 1.0 and np.isfinite(r.ap).all()
    s = evaluate(np.array([[0.7], [0.3]]), np.array([1, 2]), np.array([1]), np.array([0, 0]), np.array([1]),
                 max_rank=5)
    assert (s.num_valid_queries, s.num_skipped_queries) == (1, 1)
    np.testing.assert_array_equal(s.cmc, np.ones(5))


def test_torch_and_list_inputs():
    torch = pytest.importorskip("torch")
    d, qp, gp, qc, gc = random_case(2)
    a = evaluate(d, qp, gp, qc, gc)
    b = evaluate(torch.from_numpy(d), torch.from_numpy(qp), list(gp), qc.astype(float), gc)
    np.testing.assert_array_equal(a.ap, b.ap)
    assert isinstance(a, EvalResult)


# ------------------------------------------------------------------------------- bad input

def _good():
    d, qp, gp, qc, gc = tiny()
    return dict(distmat=d, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc)


@pytest.mark.parametrize("change, match", [
    (dict(distmat=np.zeros((1, 4))), r"shape \(1, 4\).*expected \(1, 5\)"),
    (dict(distmat=np.zeros(5)), "2-D"),
    (dict(q_camids=np.array([0, 1])), "q_pids has length 1 but q_camids 2"),
    (dict(g_pids=np.array([1, 2, 1, 1])), "g_pids has length 4 but g_camids 5"),
    (dict(distmat=np.array([[0.1, np.nan, 0.2, 0.3, 0.4]])), r"NaN or inf \(first at query 0, gallery 1\)"),
    (dict(distmat=np.array([[0.1, 0.2, np.inf, 0.3, 0.4]])), "NaN or inf"),
    (dict(distmat=np.zeros((0, 5)), q_pids=np.array([], int), q_camids=np.array([], int)), "empty query"),
    (dict(distmat=np.zeros((1, 0)), g_pids=np.array([], int), g_camids=np.array([], int)), "empty gallery"),
    (dict(q_pids=np.array([9])), "no valid query"),
    (dict(max_rank=0), "max_rank must be >= 1"),
    (dict(max_rank=2.5), "max_rank must be an integer"),
    (dict(protocol="viper"), "unknown protocol 'viper'"),
    (dict(ap_mode="interpolated"), "unknown ap_mode 'interpolated'"),
    (dict(q_pids=np.array([1.5])), "q_pids must hold integers"),
    (dict(distmat=np.array([["a", "b", "c", "d", "e"]])), "real-valued"),
])
def test_bad_input_raises_value_error(change, match):
    kw = _good()
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        evaluate(**kw)


# ------------------------------------------------------------------- rows with a deep last hit

def deep_hit_case(seed, num_q=40, num_g=400):
    """Strong signal, but one hit of most queries pushed among the worst distances (an occluded
    gallery image), so their last hit is deep and the per-row counting path ranks them."""
    d, qp, gp, qc, gc = random_case(seed, num_q=num_q, num_g=num_g, num_ids=12, signal=2.0)
    rng = np.random.default_rng(seed + 100)
    for i in range(num_q):
        hits = np.flatnonzero((gp == qp[i]) & (gc != qc[i]))
        if len(hits) and rng.random() < 0.8:
            d[i, rng.choice(hits)] = 2.0 + 0.99 * rng.random()  # among the non-matches' 1..3
    return d, qp, gp, qc, gc


@pytest.mark.parametrize("sort_subset", [0, 8, 1 << 20])  # passes only / passes then sort / sort only
@pytest.mark.parametrize("kind", ["float64", "float32", "ties"])
def test_deep_last_hit_rows_equal_plain(monkeypatch, sort_subset, kind):
    import reidlab.eval.metrics as m
    monkeypatch.setattr(m, "_SORT_SUBSET", sort_subset)
    d, qp, gp, qc, gc = deep_hit_case(30 + sort_subset % 7)
    if kind == "float32":
        d = d.astype(np.float32)
    elif kind == "ties":
        d = np.round(d, 1)  # hits tie with each other, with junk and with non-matches
        # and exact copies of hit distances on lower- and higher-index non-matches
        for i in range(0, len(qp), 3):
            hits = np.flatnonzero((gp == qp[i]) & (gc != qc[i]))
            others = np.flatnonzero(gp != qp[i])
            if len(hits):
                d[i, others[[0, -1]]] = d[i, hits[-1]]
    for dense_fraction in (0.0, 0.05, 2.0):  # counting path for every row / mixed / none
        monkeypatch.setattr(m, "_DENSE_FRACTION", dense_fraction)
        for ap_mode in ("toolbox", "official"):
            r = evaluate(d, qp, gp, qc, gc, max_rank=20, ap_mode=ap_mode)
            cmc, mAP, mINP, aps, nv = plain_evaluate(d, qp, gp, qc, gc, max_rank=20, ap_mode=ap_mode)
            assert r.num_valid_queries == nv
            np.testing.assert_allclose(r.ap, aps, atol=1e-12)
            np.testing.assert_allclose(r.cmc, cmc, atol=1e-12)
            assert abs(r.mINP - mINP) < 1e-12


def test_dense_row_counts_direct(monkeypatch):
    import reidlab.eval.metrics as m
    from reidlab.eval.metrics import _dense_row_counts
    rng = np.random.default_rng(5)
    row = rng.random(1000)
    hit_idx, junk_idx = np.array([3, 500, 999]), np.array([7, 8])
    row[hit_idx] = [0.01, 0.5, 0.99]
    hits = np.sort(row[hit_idx])
    own = row[np.concatenate([hit_idx, junk_idx])]
    nonmatch = np.delete(row, np.concatenate([hit_idx, junk_idx]))
    buf = np.empty(len(row), bool)
    for sub in (0, 16, 4096):
        monkeypatch.setattr(m, "_SORT_SUBSET", sub)
        below, at_or_below = _dense_row_counts(row, hits, own, buf)
        np.testing.assert_array_equal(below, [(nonmatch < h).sum() for h in hits])
        np.testing.assert_array_equal(at_or_below, below)
    row[100] = hits[1]  # a non-match at exactly a hit's distance
    below, at_or_below = _dense_row_counts(row, hits, own, buf)
    np.testing.assert_array_equal(at_or_below - below, [0, 1, 0])
    row[100] = 0.3
    row[junk_idx[0]] = hits[1]  # junk at a hit's distance is no tie
    own = row[np.concatenate([hit_idx, junk_idx])]
    below, at_or_below = _dense_row_counts(row, hits, own, buf)
    np.testing.assert_array_equal(at_or_below, below)


def test_tied_hit_ranks_stable_order():
    from reidlab.eval.metrics import _tied_hit_ranks
    # valid entries in stable order: idx 0 (0.1 nm), 2 (0.2 hit), 4 (0.2 nm), 5 (0.2 hit), 1 (0.3 hit),
    # 6 (0.3 nm); idx 3 is junk at 0.2, idx 7 a non-match at 0.9
    row = np.array([0.1, 0.3, 0.2, 0.2, 0.2, 0.2, 0.3, 0.9], np.float32)
    ranks = _tied_hit_ranks(row, np.array([1, 2, 5]), np.array([3]), np.empty(8, bool))
    np.testing.assert_array_equal(ranks, [2, 4, 5])
