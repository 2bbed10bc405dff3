"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017) with bounded memory.

Definitions, over all N = Q + G probe and gallery points (queries first), following the paper and
its released code (the numbers the literature reports come from that code):

* d(i, j): the base distance squared (the released code squares its input; for the Euclidean
  metric this is the paper's (x_i - x_j)^T M (x_i - x_j) with M = I), then divided by the maximum of
  row i over all N points. If that maximum is 0 (all points identical) the row is taken as all 0.
* N(i, k): the k + 1 nearest points of i by d, i itself included (stable: lower index first on ties).
* R(i, k) = {j in N(i, k) : i in N(j, k)}  (k-reciprocal neighbours).
* R*(i) = R(i, k1) united with every R(c, round(k1/2)) for c in R(i, k1) such that
  |R(c, round(k1/2)) & R(i, k1)| > 2/3 |R(c, round(k1/2))|  (strict ">" as in the released code;
  the paper writes ">="). round() is numpy's (half to even), as in the released code.
* V[i, j] = exp(-d(i, j)) / sum_{j' in R*(i)} exp(-d(i, j')) for j in R*(i), else 0 (Gaussian kernel
  normalised per row, as in the released code).
* local query expansion: V[i] <- mean of V[j] over the k2 nearest j in N(i) (skipped when k2 == 1).
* Jaccard distance d_J(q, g) = 1 - sum_k min(V[q,k], V[g,k]) / sum_k max(V[q,k], V[g,k]); rows of V
  sum to 1, so the denominator is 2 - sum_k min(...).
* final d*(q, g) = (1 - lambda) d_J(q, g) + lambda d(q, g).

Memory and time (honest account): no N x N matrix is kept. Pass 1 computes the N x N distances by
row blocks (O(N^2 D) time, as the plain method) and keeps only each row's top-(k1+1) neighbour list
and row maximum: O(N k1). V is a sparse matrix with O(N |R*|) entries, O(N k2 |R*|) after query
expansion (|R*| is typically 20-60). The Jaccard step joins each query row of V with the gallery
columns of V: O(Q nnz_row nnz_col) time, done by query blocks into (B, G) outputs, which are
yielded one at a time, so the Q x G result need never exist either. Scratch memory beyond that is
one (B, N) block, B chosen from ``memory_budget_bytes``.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import scipy.sparse as sp
import torch

from .distance import DistanceSource, chunk_rows_for

__all__ = ["re_ranking", "rerank_blocks", "FeaturePoints", "MatrixPoints"]


class FeaturePoints:
    """All N = Q + G points given by features; squared base distances on the features' device."""

    def __init__(self, src: DistanceSource):
        self.src = src
        self.Q, self.G = src.shape
        self.N = self.Q + self.G

    def _take(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and aux of points idx (queries first, then gallery)."""
        s, dev = self.src, self.src.qf.device
        f = torch.empty((len(idx), s.qf.shape[1]), dtype=s.qf.dtype, device=dev)
        aux = torch.empty(len(idx), dtype=s.q_aux.dtype, device=dev)
        for sel, feats, faux, off in ((idx < self.Q, s.qf, s.q_aux, 0), (idx >= self.Q, s.gf, s.g_aux, self.Q)):
            where = torch.as_tensor(np.flatnonzero(sel), device=dev)
            src_idx = torch.as_tensor(idx[sel] - off, device=dev)
            f.index_copy_(0, where, feats.index_select(0, src_idx))
            aux.index_copy_(0, where, faux.index_select(0, src_idx))
        return f, aux

    def rows(self, i0: int, i1: int) -> torch.Tensor:
        """(i1 - i0, N) squared distances of points i0..i1-1 to all points."""
        s = self.src
        if i1 <= self.Q:  # contiguous ranges are views, no gather
            a, a_aux = s.qf[i0:i1], s.q_aux[i0:i1]
        elif i0 >= self.Q:
            a, a_aux = s.gf[i0 - self.Q:i1 - self.Q], s.g_aux[i0 - self.Q:i1 - self.Q]
        else:
            a, a_aux = self._take(np.arange(i0, i1))
        out = torch.empty((i1 - i0, self.N), dtype=s.qf.dtype, device=s.qf.device)
        out[:, :self.Q] = s.block(a, a_aux, s.qf, s.q_aux, squared=True)
        out[:, self.Q:] = s.block(a, a_aux, s.gf, s.g_aux, squared=True)
        return out

    def pairs(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Squared distances of point pairs (i[t], j[t]), float64 numpy."""
        s, out = self.src, np.empty(len(i), np.float64)
        step = max(1, (64 << 20) // max(1, 4 * s.qf.shape[1]))
        for a in range(0, len(i), step):
            fa, xa = self._take(i[a:a + step])
            fb, xb = self._take(j[a:a + step])
            out[a:a + step] = s.pair(fa, xa, fb, xb, squared=True).double().cpu().numpy()
        return out

    def query_gallery(self, q0: int, q1: int) -> np.ndarray:
        return self.src.query_rows(q0, q1, squared=True).double().cpu().numpy()


class MatrixPoints:
    """All N = Q + G points given by distance matrices q_g (Q, G), q_q (Q, Q), g_g (G, G)."""

    def __init__(self, q_g: Any, q_q: Any, g_g: Any):
        mats = []
        for name, m in (("q_g_dist", q_g), ("q_q_dist", q_q), ("g_g_dist", g_g)):
            if hasattr(m, "detach"):
                m = m.detach().cpu().numpy()
            m = np.asarray(m, dtype=np.float64)
            if m.ndim != 2:
                raise ValueError(f"{name} must be 2-D, got shape {m.shape}")
            if not np.isfinite(m).all():
                raise ValueError(f"{name} contains NaN or inf")
            mats.append(m)
        self.q_g, self.q_q, self.g_g = mats
        self.Q, self.G = self.q_g.shape
        if self.q_q.shape != (self.Q, self.Q) or self.g_g.shape != (self.G, self.G):
            raise ValueError(f"q_q_dist must be ({self.Q}, {self.Q}) and g_g_dist ({self.G}, {self.G}) "
                             f"for q_g_dist {self.q_g.shape}; got {self.q_q.shape} and {self.g_g.shape}")
        if self.Q == 0 or self.G == 0:
            raise ValueError(f"re-ranking needs at least one query and one gallery entry, got {self.q_g.shape}")
        self.N = self.Q + self.G

    def rows(self, i0: int, i1: int) -> torch.Tensor:
        Q = self.Q
        parts = []
        if i0 < Q:
            a, b = i0, min(i1, Q)
            parts.append(np.hstack([self.q_q[a:b], self.q_g[a:b]]))
        if i1 > Q:
            a, b = max(i0, Q) - Q, i1 - Q
            parts.append(np.hstack([self.q_g[:, a:b].T, self.g_g[a:b]]))
        return torch.from_numpy(np.square(np.vstack(parts)))

    def pairs(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        Q, out = self.Q, np.empty(len(i), np.float64)
        iq, jq = i < Q, j < Q
        m = iq & jq
        out[m] = self.q_q[i[m], j[m]]
        m = iq & ~jq
        out[m] = self.q_g[i[m], j[m] - Q]
        m = ~iq & jq
        out[m] = self.q_g[j[m], i[m] - Q]
        m = ~iq & ~jq
        out[m] = self.g_g[i[m] - Q, j[m] - Q]
        return np.square(out)

    def query_gallery(self, q0: int, q1: int) -> np.ndarray:
        return np.square(self.q_g[q0:q1])


def _check_params(k1: int, k2: int, lambda_value: float) -> None:
    if int(k1) != k1 or k1 < 1:
        raise ValueError(f"k1 must be an integer >= 1, got {k1!r}")
    if int(k2) != k2 or k2 < 1:
        raise ValueError(f"k2 must be an integer >= 1, got {k2!r}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value!r}")


def _neighbours(pts, m: int, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, m) nearest-point lists sorted by (distance, index), and (N,) row maxima."""
    N = pts.N
    nbr = np.empty((N, m), np.int64)
    rowmax = np.empty(N, np.float64)
    rows = chunk_rows_for(budget, N, 8, copies=2)
    for i0 in range(0, N, rows):
        i1 = min(N, i0 + rows)
        dd = pts.rows(i0, i1)
        rowmax[i0:i1] = dd.amax(dim=1).double().cpu().numpy()
        kk = min(m + 1, N)
        vals, idx = torch.topk(dd, kk, dim=1, largest=False, sorted=True)
        vals, idx = vals.cpu().numpy(), idx.cpu().numpy()
        if kk > m:
            # A tie across the boundary: which tied point gets in is up to topk; use a stable sort.
            for r in np.flatnonzero(vals[:, m - 1] == vals[:, m]):
                o = torch.sort(dd[r], stable=True).indices[:m]
                idx[r, :m] = o.cpu().numpy()
                vals[r, :m] = dd[r, o].cpu().numpy()
        idx, vals = idx[:, :m], vals[:, :m]
        o = np.lexsort((idx, vals), axis=-1)
        nbr[i0:i1] = np.take_along_axis(idx, o, axis=1)
        del dd
    return nbr, rowmax


def _reciprocal(nb: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """mask[i, a] = (i is in nb[nb[i, a]]): nb[i, a] is a k-reciprocal neighbour of i."""
    out = np.empty(nb.shape, bool)
    for c0 in range(0, len(nb), chunk):
        ids = np.arange(c0, min(len(nb), c0 + chunk))
        out[c0:c0 + len(ids)] = (nb[nb[ids]] == ids[:, None, None]).any(axis=-1)
    return out


def _expanded_pairs(nbr: np.ndarray, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) for all j in R*(i), sorted by i then j."""
    N = len(nbr)
    kk = min(k1 + 1, N)
    kh = min(int(np.around(k1 / 2.0)) + 1, N)
    nb, nbh = nbr[:, :kk], nbr[:, :kh]
    rec, rech = _reciprocal(nb), _reciprocal(nbh)
    keys = []
    chunk = max(1, (32 << 20) // (kk * kh * kk))
    for c0 in range(0, N, chunk):
        c1 = min(N, c0 + chunk)
        ids = np.arange(c0, c1)
        r_ids, r_mask = nb[c0:c1], rec[c0:c1]               # R(i): (C, kk)
        h_ids, h_mask = nbh[r_ids], rech[r_ids]              # R(c, k1/2) of each slot: (C, kk, kh)
        member = ((h_ids[..., None] == r_ids[:, None, None, :]) & r_mask[:, None, None, :]).any(-1)
        inter = (member & h_mask).sum(-1)
        accept = r_mask & (inter > (2.0 / 3.0) * h_mask.sum(-1))
        ii = np.broadcast_to(ids[:, None], r_ids.shape)
        keys.append(ii[r_mask] * N + r_ids[r_mask])
        sel = accept[..., None] & h_mask
        keys.append(np.broadcast_to(ids[:, None, None], h_ids.shape)[sel] * N + h_ids[sel])
    k = np.unique(np.concatenate(keys))
    return k // N, k % N


def _build_v(pts, nbr: np.ndarray, rowmax: np.ndarray, k1: int, k2: int) -> sp.csr_matrix:
    N = pts.N
    i, j = _expanded_pairs(nbr, k1)
    scale = np.where(rowmax > 0, rowmax, 1.0)
    w = np.exp(-pts.pairs(i, j) / scale[i])
    w /= np.bincount(i, weights=w, minlength=N)[i]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(i, minlength=N))])
    V = sp.csr_matrix((w, j, indptr), shape=(N, N))
    k2e = min(k2, N)
    if k2 != 1:
        A = sp.csr_matrix((np.full(N * k2e, 1.0 / k2e), nbr[:, :k2e].ravel(), np.arange(0, N * k2e + 1, k2e)),
                          shape=(N, N))
        V = (A @ V).tocsr()
    V.sort_indices()
    return V


def rerank_blocks(pts, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                  memory_budget_bytes: int = 1 << 30, chunk_rows: int | None = None
                  ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (q0, (B, G) float64 re-ranked distances d*) over query blocks; see module docstring.

    pts: FeaturePoints or MatrixPoints.
    """
    _check_params(k1, k2, lambda_value)
    N, Q, G = pts.N, pts.Q, pts.G
    m = min(max(k1 + 1, k2), N)
    nbr, rowmax = _neighbours(pts, m, memory_budget_bytes)
    V = _build_v(pts, nbr, rowmax, k1, k2)
    del nbr
    Vg = V[Q:].tocsc()  # column k -> gallery rows g with V[g, k] != 0
    col_nnz = np.diff(Vg.indptr)
    rows = chunk_rows or chunk_rows_for(memory_budget_bytes, G, 8, copies=3)
    max_pairs = max(1 << 18, memory_budget_bytes // 256)  # ~6 scratch arrays of 8 bytes per pair
    lam = float(lambda_value)
    for q0 in range(0, Q, rows):
        q1 = min(Q, q0 + rows)
        B = q1 - q0
        Vq = V[q0:q1].tocoo()
        qr, kcol, a = Vq.row, Vq.col, Vq.data
        cnt = col_nnz[kcol]
        smin = np.zeros(B * G, np.float64)
        # split the join so that at most ~max_pairs (query entry, gallery entry) pairs exist at once
        csum = np.cumsum(cnt)
        start = 0
        while start < len(cnt):
            stop = int(np.searchsorted(csum, (csum[start - 1] if start else 0) + max_pairs, side="right"))
            stop = max(stop, start + 1)
            c = cnt[start:stop]
            rep = np.repeat(np.arange(start, stop), c)
            first = np.cumsum(c) - c
            pos = Vg.indptr[kcol[rep]] + (np.arange(len(rep)) - np.repeat(first, c))
            smin += np.bincount(qr[rep] * G + Vg.indices[pos], weights=np.minimum(a[rep], Vg.data[pos]),
                                minlength=B * G)
            del rep, first, pos
            start = stop
        # final = (1 - lam) * (1 - smin / (2 - smin)) + lam * d, in place: ~3 (B, G) buffers at peak
        out = smin.reshape(B, G)
        den = 2.0 - out
        np.divide(out, den, out=out)
        del den
        np.subtract(1.0, out, out=out)
        out *= 1.0 - lam
        scale = np.where(rowmax[q0:q1] > 0, rowmax[q0:q1], 1.0)
        d = pts.query_gallery(q0, q1)
        d /= scale[:, None]
        d *= lam
        out += d
        del d, smin
        yield q0, out
        del out


def re_ranking(q_g_dist: Any, q_q_dist: Any, g_g_dist: Any, k1: int = 20, k2: int = 6,
               lambda_value: float = 0.3) -> np.ndarray:
    """k-reciprocal re-ranked (Q, G) distances from the three base distance matrices (the released
    code's signature). Inputs are distances (not squared): q_g (Q, G), q_q (Q, Q), g_g (G, G)."""
    pts = MatrixPoints(q_g_dist, q_q_dist, g_g_dist)
    out = np.empty((pts.Q, pts.G), np.float64)
    for q0, blk in rerank_blocks(pts, k1, k2, lambda_value):
        out[q0:q0 + len(blk)] = blk
    return out
