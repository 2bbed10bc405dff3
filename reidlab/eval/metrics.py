"""Exact, fast re-ID retrieval metrics: CMC, mAP (toolbox or official AP) and mINP.

Protocol ("market1501", the one used by the widely used re-ID toolboxes)
-------------------------------------------------------------------------
For each query, gallery entries with the same pid AND the same camid are removed ("junk"); the
remaining gallery is ranked by ascending distance. Its entries with the query's pid are the true
matches ("hits"). A query with no hit left is skipped and counted in ``num_skipped_queries``.

* CMC@k: fraction of valid queries whose first hit is within the top k.
* AP, ``ap_mode="toolbox"``: mean over hits of the precision at the hit's rank (non-interpolated).
* AP, ``ap_mode="official"``: the trapezoidal AP of the Market-1501 release's MATLAB
  ``compute_AP.m``: each hit adds ``(1/n_hits) * (p(r-1) + p(r)) / 2`` where ``p(r)`` is the
  precision at rank r and ``p(0) = 1``. It is never above the toolbox AP.
* mINP (Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook", TPAMI 2021):
  mean over valid queries of ``n_hits / rank_of_the_last_hit``.

Equal distances: ranks are those of a *stable* sort of the gallery by distance, i.e. among equal
distances the lower gallery index ranks first. (The toolboxes use numpy's unstable default sort, so
their result on ties is arbitrary; on tie-free distances ours equals theirs.)

``max_rank`` larger than the gallery: the CMC keeps length ``max_rank``; past the last possible rank
it stays at its final value (a query whose first hit was reached stays counted), which is what the
toolboxes' clipped cumulative sum gives when padded.

Speed
-----
A full sort of each gallery row is not needed: AP, CMC and mINP depend only on the ranks of the
hits, and the rank of a hit is ``1 + (#hits before it) + (#valid non-matches before it)``. Per block
of queries we sort only the few hit distances, keep the valid non-matches whose distance does not
exceed the query's last hit (one vectorised comparison over the block), and place each of them
between the sorted hits with a vectorised binary search; a ``bincount`` then gives every hit's rank.
Work is O(Q*G) comparisons plus O(E log K) for the E kept entries (K = hits per query), against
O(Q*G log G) for sorting. That search costs tens of ns per kept entry, so rows that keep more than a
small fraction of the gallery -- real models put a query's last hit far down the ranking when one
of its gallery images is occluded or badly cropped -- are instead counted with comparison passes
(``_dense_row_counts``): from the deepest hit upwards, one pass per hit over a subset of the row
that shrinks as the thresholds fall, then a sort of the few entries left. A query where a
non-match has exactly the distance of one of its hits (not rare with float32 and large galleries)
is re-ranked with those counts plus one equality pass per tied distance, so the tie rule above
holds exactly without sorting the row. Scratch memory is bounded by working on blocks of ~4M distance entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["EvalResult", "evaluate", "PROTOCOLS", "AP_MODES", "CUHK03_REPEATS", "QueryEvaluator",
           "classify_pairs", "protocol_masks"]

PROTOCOLS = ("market1501", "cuhk03")
AP_MODES = ("toolbox", "official")
CUHK03_REPEATS = 10
# Entries of one working block of the distance matrix: bounds the evaluator's scratch memory
# (about 40 bytes per entry in the worst case, a near-random model) at ~160 MB.
_BLOCK_ENTRIES = 1 << 22
# A row whose valid non-matches below its last hit exceed this fraction of the gallery is ranked
# by per-row counting passes (``_dense_row_counts``: a few passes over G plus ~30 us of calls) instead
# of the vectorised binary search (tens of ns per such entry). Measured on a 2-core machine with
# benchmarks/bench_eval.py: anywhere in 0.02-0.25 is within noise there, 0.05 is the cost-model
# crossover at Market-1501 size.
_DENSE_FRACTION = 0.05
# A row subset this small is sorted outright in ``_dense_row_counts``.
_SORT_SUBSET = 512


@dataclass(frozen=True, eq=False)
class EvalResult:
    """Result of a re-ID evaluation. Metrics are fractions in [0, 1].

    cmc: (max_rank,) CMC curve, ``cmc[k-1]`` = rank-k accuracy.
    ap: (num_valid_queries,) AP of each valid query, in query order (``valid_queries`` gives their
        indices into the query set).
    inp: (num_valid_queries,) INP of each valid query.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int
    num_skipped_queries: int
    ap: np.ndarray
    inp: np.ndarray
    valid_queries: np.ndarray
    protocol: str = "market1501"
    ap_mode: str = "toolbox"

    @property
    def rank1(self) -> float:
        return float(self.cmc[0])

    def rank(self, k: int) -> float:
        """Rank-k accuracy (fraction); NaN when k > max_rank."""
        return float(self.cmc[k - 1]) if 1 <= k <= len(self.cmc) else float("nan")

    def as_dict(self) -> dict[str, float]:
        """Plain floats for records: mAP, rank1, rank5, rank10, rank20, mINP (fractions; rank-k is
        NaN when k > max_rank) and the query counts."""
        return {
            "mAP": float(self.mAP),
            "rank1": self.rank(1),
            "rank5": self.rank(5),
            "rank10": self.rank(10),
            "rank20": self.rank(20),
            "mINP": float(self.mINP),
            "num_valid_queries": float(self.num_valid_queries),
            "num_skipped_queries": float(self.num_skipped_queries),
        }

    def __repr__(self) -> str:
        return (f"EvalResult(protocol={self.protocol!r}, ap_mode={self.ap_mode!r}, mAP={self.mAP:.4f}, "
                f"rank1={self.rank(1):.4f}, rank5={self.rank(5):.4f}, mINP={self.mINP:.4f}, "
                f"valid={self.num_valid_queries}, skipped={self.num_skipped_queries})")


# ----------------------------------------------------------------------------------------- inputs

def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_ids(x: Any, name: str) -> np.ndarray:
    a = _to_numpy(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.dtype.kind in "iub":
        return a.astype(np.int64, copy=False)
    if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
        return a.astype(np.int64)
    raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")


def _check_options(max_rank: Any, protocol: str, ap_mode: str) -> int:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
    if ap_mode not in AP_MODES:
        raise ValueError(f"unknown ap_mode {ap_mode!r}; expected one of {AP_MODES}")
    if isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)):
        raise ValueError(f"max_rank must be an integer >= 1, got {max_rank!r}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    return int(max_rank)


def _as_distances(distmat: Any) -> np.ndarray:
    d = _to_numpy(distmat)
    if d.ndim != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {d.shape}")
    if d.dtype.kind in "iub":
        d = d.astype(np.float64)  # exact for integer distances below 2**53
    elif d.dtype == np.float16:
        d = d.astype(np.float32)
    elif d.dtype.kind != "f":
        raise ValueError(f"distmat must be real-valued, got dtype {d.dtype}")
    return d


def _check_finite(block: np.ndarray, row0: int) -> None:
    # One fast reduction in the block's own dtype (a float64 accumulator would cost a conversion per
    # entry); the element-wise check only runs when the sum is not finite (a NaN/inf is present, or
    # finite values overflowed).
    if np.isfinite(np.add.reduce(block, axis=None)):
        return
    bad = ~np.isfinite(block)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"distmat contains NaN or inf (first at query {row0 + r}, gallery {c})")


# -------------------------------------------------------------------------------------- protocol

def classify_pairs(same_pid: np.ndarray, same_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The protocol's rule for (query, gallery) pairs: ``(junk, match)`` boolean arrays.

    A pair with the same pid AND the same camid is junk (removed from the query's ranked gallery); a
    pair with the same pid and another camid is a true match. Everything else (another pid, including
    pid-0 distractors) stays as a false match. Inputs and outputs broadcast alike. Junk *identities*
    (pid -1 tracklets/images) are not handled here: the dataset readers drop them.
    """
    same_pid = np.asarray(same_pid, dtype=bool)
    same_cam = np.asarray(same_cam, dtype=bool)
    return same_pid & same_cam, same_pid & ~same_cam


def protocol_masks(q_pids: Any, q_camids: Any, g_pids: Any, g_camids: Any) -> tuple[np.ndarray, np.ndarray]:
    """Dense masks of ``classify_pairs`` for Q queries against G gallery entries.

    q_pids/q_camids: (Q,), g_pids/g_camids: (G,) integer arrays. Returns ``(valid, match)``, both
    (Q, G) bool: ``valid`` = the gallery entries that stay in the query's ranked list (not junk),
    ``match`` = its true matches (``match`` implies ``valid``). ``evaluate`` applies exactly this rule.
    """
    qp, qc = _as_ids(q_pids, "q_pids"), _as_ids(q_camids, "q_camids")
    gp, gc = _as_ids(g_pids, "g_pids"), _as_ids(g_camids, "g_camids")
    if len(qp) != len(qc):
        raise ValueError(f"q_pids has length {len(qp)} but q_camids {len(qc)}")
    if len(gp) != len(gc):
        raise ValueError(f"g_pids has length {len(gp)} but g_camids {len(gc)}")
    junk, match = classify_pairs(qp[:, None] == gp[None, :], qc[:, None] == gc[None, :])
    return ~junk, match


# ------------------------------------------------------------------------------------- evaluator

class _GalleryIndex:
    """Gallery entries grouped by pid, to list each query's hits and junk without a Q x G pass."""

    def __init__(self, g_pids: np.ndarray, g_camids: np.ndarray):
        self.g_pids, self.g_camids = g_pids, g_camids
        self.order = np.argsort(g_pids, kind="stable")  # within a pid: ascending gallery index
        sorted_pids = g_pids[self.order]
        self.pids, self.starts, self.counts = np.unique(sorted_pids, return_index=True, return_counts=True)

    def group_of(self, q_pids: np.ndarray) -> np.ndarray:
        """Index into ``self.pids`` of each query pid, -1 if absent from the gallery."""
        gi = np.searchsorted(self.pids, q_pids)
        gi_c = np.minimum(gi, len(self.pids) - 1)
        return np.where(self.pids[gi_c] == q_pids, gi_c, -1)

    def same_pid_entries(self, q_pids: np.ndarray, q_camids: np.ndarray):
        """(rows, cols, same_cam) of all (query-in-block, gallery) pairs with equal pid, grouped by
        row, ascending gallery index within a row."""
        grp = self.group_of(q_pids)
        cnt = np.where(grp >= 0, self.counts[grp], 0)
        st = np.where(grp >= 0, self.starts[grp], 0)
        total = int(cnt.sum())
        rows = np.repeat(np.arange(len(q_pids)), cnt)
        first = np.cumsum(cnt) - cnt
        offs = np.arange(total) - np.repeat(first, cnt)
        cols = self.order[np.repeat(st, cnt) + offs]
        same_cam = self.g_camids[cols] == q_camids[rows]
        return rows, cols, same_cam


def _dense_row_counts(row: np.ndarray, hits: np.ndarray, own: np.ndarray,
                      buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For one gallery row whose valid non-matches reach deep below its first hits: the numbers of
    valid non-matches with distance strictly below each hit, and at or below it (they differ where
    a non-match ties with the hit).

    row: (G,) distances. hits: (n,) the row's hit distances, sorted ascending. own: distances of the
    row's hits and junk (excluded from the counts). buf: (G,) bool scratch.

    Thresholds are taken from the deepest hit upwards and each costs one comparison pass (plus one
    for ``<=``, which detects ties) over a shrinking subset ``S`` of the row: S always holds every
    entry <= the previous threshold, so counts on S are counts on the row. S is cut down to the
    entries <= the threshold when that keeps a twentieth of it or less (measured best on realistic
    Market- and MSMT-sized rows), and once it is small it is sorted and all the remaining hits are
    placed by ``np.searchsorted``. A typical weak row (most hits near the top, one
    or two far down) costs a few passes over G instead of the O(G log G) of sorting it.
    """
    n = len(hits)
    lt = np.empty(n, np.int64)
    le = np.empty(n, np.int64)
    S = row
    j = n - 1
    while j >= 0:
        if len(S) <= _SORT_SUBSET:
            S = np.sort(S)
            lt[:j + 1] = np.searchsorted(S, hits[:j + 1], side="left")
            le[:j + 1] = np.searchsorted(S, hits[:j + 1], side="right")
            break
        x = hits[j]
        if j < n - 1 and x == hits[j + 1]:  # hits at equal distance share their counts
            lt[j], le[j] = lt[j + 1], le[j + 1]
            j -= 1
            continue
        m = np.less_equal(S, x, out=buf[:len(S)])
        le[j] = np.count_nonzero(m)
        if 20 * le[j] <= len(S):  # extracting costs ~5-20 passes: only worth it for a big cut
            S = S[m]
        lt[j] = np.count_nonzero(np.less(S, x, out=buf[:len(S)]))
        j -= 1
    own = np.sort(own)
    return lt - np.searchsorted(own, hits, side="left"), le - np.searchsorted(own, hits, side="right")


def _tied_hit_ranks(row: np.ndarray, hit_cols: np.ndarray, junk_cols: np.ndarray,
                    buf: np.ndarray) -> np.ndarray:
    """1-based ranks, ascending, of the hits of one gallery row where a non-match has exactly the
    distance of a hit: ties go to the lower gallery index (the stable sort's order).

    rank = 1 + (hits before it in (distance, index) order) + (non-matches strictly closer) +
    (non-matches at the same distance with a lower index). The last term takes one equality pass
    over the row per tied distance (rare), instead of a stable sort of the whole row.
    """
    hv = row[hit_cols]
    order = np.lexsort((hit_cols, hv))
    hv, hit_cols = hv[order], hit_cols[order]
    own_cols = np.concatenate([hit_cols, junk_cols])
    below, at_or_below = _dense_row_counts(row, hv, row[own_cols], buf)
    ranks = np.arange(1, len(hv) + 1) + below
    for j in np.flatnonzero(at_or_below > below):
        eq = np.flatnonzero(row == hv[j])
        eq = eq[~np.isin(eq, own_cols)]
        ranks[j] += np.count_nonzero(eq < hit_cols[j])
    return ranks


class QueryEvaluator:
    """Streaming evaluator: feed the distance matrix by blocks of query rows, then ``result()``.

    Used by ``evaluate`` (blocks are views of the full matrix) and ``evaluate_features`` (blocks are
    computed on the fly, so the full Q x G matrix never exists).
    """

    def __init__(self, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, *, max_rank: int = 50,
                 protocol: str = "market1501", ap_mode: str = "toolbox", seed: int = 0):
        self.max_rank = _check_options(max_rank, protocol, ap_mode)
        self.protocol, self.ap_mode, self.seed = protocol, ap_mode, int(seed)
        self.q_pids, self.g_pids = _as_ids(q_pids, "q_pids"), _as_ids(g_pids, "g_pids")
        self.q_camids, self.g_camids = _as_ids(q_camids, "q_camids"), _as_ids(g_camids, "g_camids")
        if len(self.q_pids) != len(self.q_camids):
            raise ValueError(f"q_pids has length {len(self.q_pids)} but q_camids {len(self.q_camids)}")
        if len(self.g_pids) != len(self.g_camids):
            raise ValueError(f"g_pids has length {len(self.g_pids)} but g_camids {len(self.g_camids)}")
        if len(self.q_pids) == 0:
            raise ValueError("empty query set (0 queries)")
        if len(self.g_pids) == 0:
            raise ValueError("empty gallery (0 gallery entries)")
        self.num_q, self.num_g = len(self.q_pids), len(self.g_pids)
        self.gallery = _GalleryIndex(self.g_pids, self.g_camids)
        q = self.num_q
        self.first = np.zeros(q, np.int64)  # rank of the first hit, 0 = query skipped
        self.ap = np.zeros(q, np.float64)
        self.inp = np.zeros(q, np.float64)
        self.done = np.zeros(q, bool)
        self.cmc_ss = np.zeros((q, self.max_rank), np.float64) if protocol == "cuhk03" else None

    @property
    def block_rows(self) -> int:
        """Query rows per working block (bounds scratch memory)."""
        return max(1, _BLOCK_ENTRIES // self.num_g)

    def add(self, block: Any, row0: int) -> None:
        """Evaluate query rows ``row0 .. row0 + len(block) - 1`` given their distances (B, G)."""
        block = _as_distances(block)
        if block.shape[1] != self.num_g:
            raise ValueError(f"distance block has {block.shape[1]} gallery columns, expected {self.num_g}")
        if row0 < 0 or row0 + block.shape[0] > self.num_q:
            raise ValueError(f"rows {row0}..{row0 + block.shape[0] - 1} outside the {self.num_q} queries")
        step = self.block_rows
        for a in range(0, block.shape[0], step):
            sub = np.ascontiguousarray(block[a:a + step])
            _check_finite(sub, row0 + a)
            self._add_block(sub, row0 + a)

    def _add_block(self, D: np.ndarray, row0: int) -> None:
        B, G = D.shape
        sl = slice(row0, row0 + B)
        qp, qc = self.q_pids[sl], self.q_camids[sl]
        rows, cols, same_cam = self.gallery.same_pid_entries(qp, qc)
        junk, hit = classify_pairs(True, same_cam)  # every listed pair has the query's pid
        hr, hc = rows[hit], cols[hit]
        jr, jc = rows[junk], cols[junk]
        nh = np.bincount(hr, minlength=B)
        self.done[sl] = True
        if not nh.any():
            return
        kmax = int(nh.max())
        width = 1 << int(np.ceil(np.log2(kmax + 1)))  # power of two >= kmax + 1: inf sentinel column
        H = np.full((B, width), np.inf, dtype=D.dtype)
        hpos = np.arange(len(hr)) - np.repeat(np.cumsum(nh) - nh, nh)
        H[hr, hpos] = D[hr, hc]
        H.sort(axis=1)
        has = nh > 0
        last = np.where(has, H[np.arange(B), np.maximum(nh - 1, 0)], -np.inf)

        # Valid non-matches that can precede the last hit: distance <= last hit distance.
        keep = D <= last[:, None]
        keep[jr, jc] = False
        keep[hr, hc] = False
        per_row = np.add.reduce(keep.view(np.uint8), axis=1, dtype=np.int64)  # count_nonzero(axis=1) is slower
        # Rows keeping much of the gallery (a hit far down the ranking): per-row counting passes are
        # cheaper than extracting and searching the entries; other rows take the vectorised path.
        dense = per_row > _DENSE_FRACTION * G
        if dense.any():
            keep[dense] = False
            per_row[dense] = 0
        counts = np.zeros(B * width, np.int64)
        tie = np.zeros(B, bool)
        vals = D[keep]
        r = np.repeat(np.arange(B, dtype=np.int32), per_row)
        # Branch-free binary search: pos = number of hits of row r strictly below vals.
        Hf = H.ravel()
        base = r * np.int32(width)
        pos = np.zeros(len(vals), np.int32)
        step = width // 2
        while step >= 1:
            nxt = pos + np.int32(step)
            pos = np.where(Hf[base + (nxt - 1)] < vals, nxt, pos)
            step //= 2
        base += pos
        # A non-match equal to a hit: the index decides, that query is re-ranked by _tied_hit_ranks.
        tie[r[Hf[base] == vals]] = True
        counts += np.bincount(base, minlength=B * width)
        counts = counts.reshape(B, width)
        h_first = np.cumsum(nh) - nh
        nj = np.bincount(jr, minlength=B)
        j_first = np.cumsum(nj) - nj
        buf = np.empty(G, bool)
        if dense.any():
            for t in np.flatnonzero(dense):
                n = nh[t]
                own = np.concatenate([hc[h_first[t]:h_first[t] + n], jc[j_first[t]:j_first[t] + nj[t]]])
                below, at_or_below = _dense_row_counts(D[t], H[t, :n], D[t, own], buf)
                tie[t] = bool(np.any(at_or_below != below))
                counts[t, 0] = below[0]
                counts[t, 1:n] = below[1:] - below[:-1]
        tie_rows = np.flatnonzero(tie)
        before = np.cumsum(counts, axis=1)  # non-matches before hit j (0-based)
        j = np.arange(width)
        ranks = (j + 1 + before).astype(np.float64)  # 1-based rank of the (j+1)-th hit
        hit_mask = j[None, :] < nh[:, None]
        for t in tie_rows:
            ranks[t, :nh[t]] = _tied_hit_ranks(D[t], hc[h_first[t]:h_first[t] + nh[t]],
                                               jc[j_first[t]:j_first[t] + nj[t]], buf)
        self._score(ranks, hit_mask, nh, row0)
        if self.protocol == "cuhk03":
            self._cuhk03_cmc(D, row0, hr, hc, nh)

    def _score(self, ranks: np.ndarray, hit_mask: np.ndarray, nh: np.ndarray, row0: int) -> None:
        B = len(nh)
        has = nh > 0
        n = np.maximum(nh, 1).astype(np.float64)
        j = np.arange(1, ranks.shape[1] + 1, dtype=np.float64)[None, :]
        prec = np.where(hit_mask, j / ranks, 0.0)
        if self.ap_mode == "toolbox":
            ap = prec.sum(axis=1) / n
        else:
            # precision just before the hit's rank; 1 at rank 0 (MATLAB: old_precision = 1).
            denom = np.maximum(ranks - 1.0, 1.0)
            prev = np.where(ranks > 1.0, (j - 1.0) / denom, 1.0)
            ap = (np.where(hit_mask, (prev + prec) / 2.0, 0.0)).sum(axis=1) / n
        last_rank = ranks[np.arange(B), np.maximum(nh - 1, 0)]
        sl = slice(row0, row0 + B)
        self.first[sl] = np.where(has, ranks[:, 0], 0).astype(np.int64)
        self.ap[sl] = np.where(has, ap, 0.0)
        self.inp[sl] = np.where(has, nh / last_rank, 0.0)

    def _cuhk03_cmc(self, D: np.ndarray, row0: int, hr: np.ndarray, hc: np.ndarray, nh: np.ndarray) -> None:
        """Single-gallery-shot CMC: per query and repeat, one random valid gallery entry per
        identity; the rank of the query's sampled hit among the sampled entries. Random numbers
        come from a generator seeded by (seed, global query index): independent of blocking."""
        g = self.gallery
        P, R = len(g.pids), CUHK03_REPEATS
        own = g.group_of(self.q_pids[row0:row0 + D.shape[0]])
        hit_start = np.cumsum(nh) - nh
        ks = np.arange(1, self.max_rank + 1)
        for b in np.flatnonzero(nh > 0):
            rng = np.random.default_rng([self.seed, row0 + int(b)])
            u = rng.random((R, P))
            u_hit = rng.random(R)
            cols = g.order[g.starts[None, :] + np.minimum((u * g.counts[None, :]).astype(np.int64),
                                                          g.counts[None, :] - 1)]
            hit_cols = hc[hit_start[b] + np.minimum((u_hit * nh[b]).astype(np.int64), nh[b] - 1)]
            d = D[b, cols]
            dh = D[b, hit_cols][:, None]
            before = (d < dh) | ((d == dh) & (cols < hit_cols[:, None]))
            before[:, own[b]] = False
            rank = 1 + before.sum(axis=1)
            self.cmc_ss[row0 + b] = (rank[:, None] <= ks[None, :]).mean(axis=0)

    def result(self) -> EvalResult:
        if not self.done.all():
            missing = np.flatnonzero(~self.done)
            raise ValueError(f"{len(missing)} query rows were never evaluated (first: {missing[0]})")
        valid = self.first > 0
        nv = int(valid.sum())
        if nv == 0:
            raise ValueError("no valid query: no query has a true match (same pid, different camera) "
                             "in the gallery")
        if self.protocol == "cuhk03":
            cmc = self.cmc_ss[valid].mean(axis=0)
        else:
            ks = np.arange(1, self.max_rank + 1)
            cmc = (self.first[valid][:, None] <= ks[None, :]).mean(axis=0)
        ap, inp = self.ap[valid].copy(), self.inp[valid].copy()
        vq = np.flatnonzero(valid)
        for a in (cmc, ap, inp, vq):
            a.setflags(write=False)
        return EvalResult(cmc=cmc, mAP=float(ap.mean()), mINP=float(inp.mean()), num_valid_queries=nv,
                          num_skipped_queries=self.num_q - nv, ap=ap, inp=inp, valid_queries=vq,
                          protocol=self.protocol, ap_mode=self.ap_mode)


def evaluate(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, max_rank: int = 50,
             protocol: str = "market1501", ap_mode: str = "toolbox", seed: int = 0) -> EvalResult:
    """Evaluate a query x gallery distance matrix (smaller = more similar).

    distmat: (Q, G) numpy array or torch tensor, finite. q_pids/q_camids: (Q,), g_pids/g_camids: (G,)
    integer arrays. protocol: "market1501" (see module docstring) or "cuhk03": single-gallery-shot
    CMC, averaged over 10 draws of one gallery entry per identity among the query's valid entries
    (its own identity: one of its hits); AP/mAP/mINP as in market1501, like the toolboxes' cuhk03
    evaluation. Draws for query i come from ``numpy.random.default_rng([seed, i])``: u (10, P) for
    the P gallery pids in ascending order, then u_hit (10,); the sample is the floor(u * count)-th
    entry of the identity by gallery index. Hence reproducible and independent of chunking.
    ap_mode: "toolbox" or "official" (Market-1501 MATLAB trapezoid AP).
    Ties: lower gallery index ranks first. max_rank > gallery size: the CMC is padded with its
    last value (length stays max_rank).
    Raises ValueError on shape/length mismatch, NaN/inf, empty query/gallery, no valid query,
    max_rank < 1, unknown protocol/ap_mode.
    """
    d = _as_distances(distmat)
    ev = QueryEvaluator(q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, protocol=protocol,
                        ap_mode=ap_mode, seed=seed)
    if d.shape != (ev.num_q, ev.num_g):
        raise ValueError(f"distmat has shape {d.shape} but there are {ev.num_q} queries and "
                         f"{ev.num_g} gallery entries (expected ({ev.num_q}, {ev.num_g}))")
    ev.add(d, 0)
    return ev.result()
