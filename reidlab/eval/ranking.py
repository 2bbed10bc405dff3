"""Ranked lists per query (torchreid's ``visrank``, as data): top-k valid gallery entries, match flags,
per-query AP and rank of the first true match, under the protocol of ``reidlab.eval.evaluate``.

Protocol: the query's junk (same pid AND same camid, ``reidlab.eval.metrics.protocol_masks``) is
removed, the remaining gallery is ranked by ascending distance with a *stable* sort (equal distances:
lower gallery index first), and entries with the query's pid are true matches. AP is computed over the
whole ranked valid gallery, so it equals ``evaluate``'s per-query AP (toolbox or official mode) and
``first_match`` equals the rank ``evaluate`` puts into the CMC. Pure numpy; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .metrics import AP_MODES, _as_distances, _as_ids, _check_finite, protocol_masks

__all__ = ["QUERY_ORDERS", "RankedLists", "rank_gallery", "order_queries"]

#: query orders of ``order_queries``: see its docstring
QUERY_ORDERS = ("worst", "best", "random", "first-match")
# distance entries per working block (bounds scratch memory at roughly 40 bytes per entry)
_BLOCK_ENTRIES = 1 << 20


@dataclass(frozen=True, eq=False)
class RankedLists:
    """Ranked lists of N queries (rows, in the order given by ``query``), k = ``topk`` columns.

    query: (N,) int64 index of each row's query in the query set.
    q_pid, q_camid: (N,) the query's pid and camid.
    gallery: (N, k) int64 gallery indices of the query's top-k *valid* entries, nearest first.
    distance: (N, k) float64 their distances.
    g_pid, g_camid: (N, k) int64 their pids and camids.
    match: (N, k) bool, True where the entry is a true match (same pid, another camera).
    num_valid: (N,) int64 valid gallery entries of the query (the gallery minus its junk).
    num_matches: (N,) int64 true matches among them.
    ap: (N,) float64 AP over the whole ranked valid gallery (``ap_mode``); 0.0 when num_matches == 0.
    first_match: (N,) int64 1-based rank of the first true match in the whole ranked list (it may lie
        beyond k); 0 when num_matches == 0.

    Padding: a query with fewer than k valid entries (k > num_valid) has its row padded past
    ``num_valid``: gallery -1, distance NaN, g_pid / g_camid -1, match False. Every other value is
    finite. A query with no true match (``evaluated`` False) is one ``evaluate`` skips.
    """

    query: np.ndarray
    q_pid: np.ndarray
    q_camid: np.ndarray
    gallery: np.ndarray
    distance: np.ndarray
    g_pid: np.ndarray
    g_camid: np.ndarray
    match: np.ndarray
    num_valid: np.ndarray
    num_matches: np.ndarray
    ap: np.ndarray
    first_match: np.ndarray
    topk: int
    ap_mode: str = "toolbox"

    _ROW_FIELDS = ("query", "q_pid", "q_camid", "gallery", "distance", "g_pid", "g_camid", "match",
                   "num_valid", "num_matches", "ap", "first_match")

    def __len__(self) -> int:
        return len(self.query)

    @property
    def evaluated(self) -> np.ndarray:
        """(N,) bool: the query has at least one true match (``evaluate`` counts it)."""
        return self.num_matches > 0

    @property
    def shown(self) -> np.ndarray:
        """(N,) int64 number of real (non-padding) columns of each row: min(k, num_valid)."""
        return np.minimum(self.num_valid, self.topk)

    def take(self, rows: Any) -> "RankedLists":
        """The rows at positions ``rows`` (a subset and/or a new order), as a new RankedLists."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        kw = {f: getattr(self, f)[idx] for f in self._ROW_FIELDS}
        return RankedLists(**kw, topk=self.topk, ap_mode=self.ap_mode)

    def head(self, n: int | None) -> "RankedLists":
        """The first ``n`` rows (all when ``n`` is None)."""
        return self if n is None else self.take(np.arange(min(max(int(n), 0), len(self))))

    def summary(self) -> dict[str, float]:
        """mAP and rank-1 over the evaluated rows (as ``evaluate`` reports them), and the counts."""
        ev = self.evaluated
        n = int(ev.sum())
        return {
            "mAP": float(self.ap[ev].mean()) if n else float("nan"),
            "rank1": float((self.first_match[ev] == 1).mean()) if n else float("nan"),
            "num_valid_queries": float(n),
            "num_skipped_queries": float(len(self) - n),
        }


def rank_gallery(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, *, topk: int = 10,
                 ap_mode: str = "toolbox") -> RankedLists:
    """Ranked lists of every query of a (Q, G) distance matrix (smaller = more similar).

    distmat: (Q, G) finite numpy array (or torch tensor). q_pids/q_camids: (Q,), g_pids/g_camids: (G,)
    integer arrays (argument order as ``reidlab.eval.evaluate``). topk: columns kept per query (k >= 1;
    k larger than the valid gallery pads, see ``RankedLists``). ap_mode: "toolbox" or "official", as
    in ``evaluate``. Rows come in query order (``query == arange(Q)``); ``order_queries`` reorders.
    Raises ValueError on shape/length mismatch, NaN/inf, an empty query set or gallery, bad topk/ap_mode.
    """
    if ap_mode not in AP_MODES:
        raise ValueError(f"unknown ap_mode {ap_mode!r}; expected one of {AP_MODES}")
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
        raise ValueError(f"topk must be an integer >= 1, got {topk!r}")
    topk = int(topk)
    d = _as_distances(distmat)
    qp, qc = _as_ids(q_pids, "q_pids"), _as_ids(q_camids, "q_camids")
    gp, gc = _as_ids(g_pids, "g_pids"), _as_ids(g_camids, "g_camids")
    if len(qp) != len(qc) or len(gp) != len(gc):
        raise ValueError(f"pid/camid lengths differ: q {len(qp)}/{len(qc)}, g {len(gp)}/{len(gc)}")
    Q, G = len(qp), len(gp)
    if Q == 0:
        raise ValueError("empty query set (0 queries)")
    if G == 0:
        raise ValueError("empty gallery (0 gallery entries)")
    if d.shape != (Q, G):
        raise ValueError(f"distmat has shape {d.shape} but there are {Q} queries and {G} gallery entries "
                         f"(expected ({Q}, {G}))")
    kk = min(topk, G)
    gallery = np.full((Q, topk), -1, np.int64)
    distance = np.full((Q, topk), np.nan, np.float64)
    match = np.zeros((Q, topk), bool)
    num_valid = np.zeros(Q, np.int64)
    num_matches = np.zeros(Q, np.int64)
    ap = np.zeros(Q, np.float64)
    first = np.zeros(Q, np.int64)
    ranks = np.arange(1, G + 1, dtype=np.float64)
    step = max(1, _BLOCK_ENTRIES // G)
    for a in range(0, Q, step):
        b = min(Q, a + step)
        D = d[a:b]
        _check_finite(D, a)
        valid, hit = protocol_masks(qp[a:b], qc[a:b], gp, gc)
        # invalid entries sort after every (finite) valid one; stable: ties keep gallery order
        order = np.argsort(np.where(valid, D, np.inf), axis=1, kind="stable")
        m = np.take_along_axis(hit, order, axis=1)  # hits in ranked order (junk is never a hit)
        nv, nh = valid.sum(axis=1), m.sum(axis=1)
        cum = np.cumsum(m, axis=1, dtype=np.float64)  # hits up to and including each rank
        prec = cum / ranks
        if ap_mode == "toolbox":
            contrib = prec
        else:  # trapezoid: mean of the precision just before the hit's rank (1 at rank 1) and at it
            prev = np.where(ranks > 1, (cum - 1.0) / np.maximum(ranks - 1.0, 1.0), 1.0)
            contrib = (prev + prec) / 2.0
        ap[a:b] = np.where(nh > 0, np.where(m, contrib, 0.0).sum(axis=1) / np.maximum(nh, 1), 0.0)
        first[a:b] = np.where(nh > 0, m.argmax(axis=1) + 1, 0)
        num_valid[a:b], num_matches[a:b] = nv, nh
        top = order[:, :kk]
        real = np.arange(kk)[None, :] < nv[:, None]
        gallery[a:b, :kk] = np.where(real, top, -1)
        distance[a:b, :kk] = np.where(real, np.take_along_axis(D, top, axis=1), np.nan)
        match[a:b, :kk] = m[:, :kk] & real
    safe = np.maximum(gallery, 0)
    pad = gallery < 0
    return RankedLists(
        query=np.arange(Q, dtype=np.int64), q_pid=qp.copy(), q_camid=qc.copy(), gallery=gallery,
        distance=distance, g_pid=np.where(pad, -1, gp[safe]), g_camid=np.where(pad, -1, gc[safe]),
        match=match, num_valid=num_valid, num_matches=num_matches, ap=ap, first_match=first, topk=topk,
        ap_mode=ap_mode,
    )


def order_queries(ranked: RankedLists, order: str = "worst", *, seed: int = 0) -> np.ndarray:
    """Row positions of ``ranked`` in display order (use ``ranked.take(...)``).

    order: "worst" (AP ascending; ties: later first true match first, then query index), "best" (AP
    descending; ties: earlier first match first, then query index), "first-match" (rank of the first
    true match descending, i.e. the queries whose first true match comes latest first; ties: lower AP
    first, then query index), "random" (a permutation drawn from ``numpy.random.default_rng(seed)``).
    Queries without a true match (skipped by ``evaluate``; AP and first-match rank are meaningless for
    them) always come last, in query order.
    """
    if order not in QUERY_ORDERS:
        raise ValueError(f"unknown order {order!r}; expected one of {QUERY_ORDERS}")
    ev = np.flatnonzero(ranked.evaluated)
    skipped = np.flatnonzero(~ranked.evaluated)
    skipped = skipped[np.argsort(ranked.query[skipped], kind="stable")]
    ap, fm, qi = ranked.ap[ev], ranked.first_match[ev], ranked.query[ev]
    if order == "worst":
        pos = np.lexsort((qi, -fm, ap))
    elif order == "best":
        pos = np.lexsort((qi, fm, -ap))
    elif order == "first-match":
        pos = np.lexsort((qi, ap, -fm))
    else:
        pos = np.random.default_rng(seed).permutation(len(ev))
    return np.concatenate([ev[pos], skipped]).astype(np.int64)
