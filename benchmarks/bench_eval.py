"""Benchmark reidlab.eval.evaluate at Market-1501 scale against numpy.argsort and a plain loop.

    python benchmarks/bench_eval.py            # Market-1501 scale, three model qualities
    python benchmarks/bench_eval.py --quick    # small smoke run
    python benchmarks/bench_eval.py --rerank   # + re-ranking time and memory at the same scale
    python benchmarks/bench_eval.py --msmt     # + peak memory of evaluate_features at MSMT17 scale
                                               #   (11,659 x 82,161, 2048-d; ~3-4 min on 2 cores)

Synthetic Market-1501-scale case: 3,368 queries x 15,913 gallery; 751 identities (4-5 queries each,
in distinct cameras; 17-18 gallery images each, random cameras) plus 2,798 distractors (pid 0);
6 cameras; features = identity centre (64-d standard normal) + Gaussian noise, Euclidean distance,
float32. Noise levels are set to give mAP ~0.85, ~0.55 and a near-random model.

Timed in one process, medians of ``--repeats`` runs: ``evaluate`` (this package), ``numpy.argsort``
of the same matrix along the gallery axis (the machine-speed yardstick; a full sort is what the
toolbox evaluators start with) and the plain per-query implementation of tests/test_eval_metrics.py
(``plain_evaluate``), run on a subset of queries and extrapolated linearly, as printed. The plain
subset's results are checked equal to ``evaluate``'s.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from reidlab.eval import evaluate, evaluate_features, pairwise_distance  # noqa: E402
from test_eval_metrics import plain_evaluate  # noqa: E402  (the tests' reference loop)

NOISE = {"mAP~0.85": 0.94, "mAP~0.55": 1.12, "near-random": 5.0}


def market_like(noise: float, *, seed: int = 0, dim: int = 64, num_ids: int = 751, num_q: int = 3368,
                num_g_ids: int = 13115, num_distractors: int = 2798, cams: int = 6):
    """(qf, gf, q_pids, g_pids, q_cams, g_cams), float32 features."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_ids, dim)).astype(np.float32)
    q_per = np.full(num_ids, num_q // num_ids)
    q_per[rng.permutation(num_ids)[: num_q - q_per.sum()]] += 1
    g_per = np.full(num_ids, num_g_ids // num_ids)
    g_per[rng.permutation(num_ids)[: num_g_ids - g_per.sum()]] += 1
    q_pids = np.repeat(np.arange(1, num_ids + 1), q_per)
    q_cams = np.concatenate([rng.permutation(cams)[:k] for k in q_per])
    g_pids = np.concatenate([np.repeat(np.arange(1, num_ids + 1), g_per), np.zeros(num_distractors, np.int64)])
    g_cams = rng.integers(0, cams, len(g_pids))
    g_centres = np.vstack([centres[g_pids[:num_g_ids] - 1],
                           rng.standard_normal((num_distractors, dim)).astype(np.float32)])
    qf = centres[q_pids - 1] + noise * rng.standard_normal((num_q, dim)).astype(np.float32)
    gf = g_centres + noise * rng.standard_normal((len(g_pids), dim)).astype(np.float32)
    return qf, gf, q_pids, g_pids, q_cams, g_cams


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_case(name: str, noise: float, scale: dict, repeats: int, plain_queries: int) -> dict:
    qf, gf, qp, gp, qc, gc_ = market_like(noise, **scale)
    D = pairwise_distance(qf, gf)  # (Q, G) float32 Euclidean
    Q, G = D.shape
    t_eval, res = median_time(lambda: evaluate(D, qp, gp, qc, gc_), repeats)
    t_sort, _ = median_time(lambda: np.argsort(D, axis=1), repeats)
    sub = np.linspace(0, Q - 1, min(plain_queries, Q)).astype(int)
    t_plain_sub, ref = median_time(lambda: plain_evaluate(D[sub], qp[sub], gp, qc[sub], gc_), repeats)
    t_plain = t_plain_sub * Q / len(sub)
    mine = evaluate(D[sub], qp[sub], gp, qc[sub], gc_)
    diff = max(float(np.abs(mine.cmc - ref[0]).max()), abs(mine.mAP - ref[1]), abs(mine.mINP - ref[2]))
    print(f"{name:12s} mAP={res.mAP:.4f} R1={res.rank1:.4f} mINP={res.mINP:.4f} | "
          f"evaluate {t_eval:7.3f} s | argsort {t_sort:7.3f} s | plain {t_plain:7.2f} s "
          f"(extrapolated from {len(sub)}/{Q} queries) | evaluate/argsort {t_eval / t_sort:5.3f} | "
          f"plain/evaluate {t_plain / t_eval:7.1f}x | max |diff| vs plain on subset {diff:.1e}")
    return dict(name=name, t_eval=t_eval, t_sort=t_sort, t_plain=t_plain, mAP=res.mAP, diff=diff)


class RssPeak:
    """Peak resident memory of this process, sampled every 5 ms from /proc (Linux)."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = self.now()
        self._stop = threading.Event()

    def now(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.005)

    def __enter__(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.now())


def bench_rerank(scale: dict) -> None:
    qf, gf, qp, gp, qc, gc_ = market_like(NOISE["mAP~0.55"], **scale)
    meter = RssPeak()
    base = meter.now()
    t0 = time.perf_counter()
    with meter:
        plain = evaluate_features(qf, gf, qp, gp, qc, gc_)
        t1 = time.perf_counter()
        res = evaluate_features(qf, gf, qp, gp, qc, gc_, rerank=True)
    t2 = time.perf_counter()
    n = len(qp) + len(gp)
    print(f"re-ranking (k1=20, k2=6, lambda=0.3), mAP~0.55 case: mAP {plain.mAP:.4f} -> {res.mAP:.4f}, "
          f"R1 {plain.rank1:.4f} -> {res.rank1:.4f}; evaluate_features {t1 - t0:.2f} s without, "
          f"{t2 - t1:.2f} s with re-ranking; peak RSS beyond the features {(meter.peak - base) / 2**30:.2f} GiB "
          f"(one dense {n} x {n} float32 matrix would be {n * n * 4 / 2**30:.2f} GiB)")


def bench_msmt(dim: int, budget: int) -> None:
    Q, G, ids = 11659, 82161, 3060
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((ids, dim)).astype(np.float32)
    qp, gp = rng.integers(0, ids, Q), rng.integers(0, ids, G)
    qc, gcam = rng.integers(0, 15, Q), rng.integers(0, 15, G)
    qf = centres[qp]
    noise = 1.12 * (dim / 64) ** 0.25  # SNR ~ sqrt(dim) / noise^2: keeps 2048-d from being trivially separable
    qf += noise * rng.standard_normal((Q, dim), dtype=np.float32)
    gf = centres[gp]
    gf += noise * rng.standard_normal((G, dim), dtype=np.float32)
    del centres
    gc.collect()
    inputs = qf.nbytes + gf.nbytes
    meter = RssPeak()
    base = meter.now()
    tracemalloc.start()
    t0 = time.perf_counter()
    with meter:
        res = evaluate_features(qf, gf, qp, gp, qc, gcam, memory_budget_bytes=budget)
    elapsed = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full = Q * G * 4
    print(f"MSMT17 scale: {Q} x {G}, {dim}-d float32 features ({inputs / 2**30:.2f} GiB inputs), "
          f"euclidean, memory_budget_bytes={budget / 2**30:.2f} GiB, torch threads {torch.get_num_threads()}")
    print(f"  evaluate_features: {elapsed:.1f} s, mAP={res.mAP:.4f}; peak RSS beyond inputs "
          f"{(meter.peak - base) / 2**30:.2f} GiB (sampled every 5 ms); tracemalloc peak (numpy/Python "
          f"allocations) {traced_peak / 2**30:.2f} GiB; the full float32 distance matrix would be "
          f"{full / 2**30:.2f} GiB")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--plain-queries", type=int, default=500, help="queries the plain loop runs on")
    ap.add_argument("--rerank", action="store_true", help="also time re-ranking at the same scale")
    ap.add_argument("--msmt", action="store_true", help="also measure evaluate_features memory at MSMT17 scale")
    ap.add_argument("--msmt-only", action="store_true", help="only the MSMT17 memory measurement")
    ap.add_argument("--msmt-dim", type=int, default=2048)
    ap.add_argument("--msmt-budget", type=float, default=1.0, help="memory_budget_bytes in GiB")
    args = ap.parse_args(argv)
    if args.msmt_only:
        bench_msmt(args.msmt_dim, int(args.msmt_budget * 2**30))
        return 0
    scale = {}
    if args.quick:
        scale = dict(num_ids=100, num_q=450, num_g_ids=1750, num_distractors=350)
    n_q = scale.get("num_q", 3368)
    n_g = scale.get("num_g_ids", 13115) + scale.get("num_distractors", 2798)
    print(f"reidlab.eval benchmark: {n_q} queries x {n_g} gallery, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, medians of {args.repeats} repeats")
    rows = [bench_case(name, noise, scale, args.repeats, args.plain_queries) for name, noise in NOISE.items()]
    worst_good = max(r["t_eval"] / r["t_sort"] for r in rows[:2])
    rand = rows[2]["t_eval"] / rows[2]["t_sort"]
    print(f"targets: evaluate <= 0.5 x argsort at mAP~0.85/0.55 -> worst {worst_good:.3f} "
          f"({'met' if worst_good <= 0.5 else 'MISSED'}); near-random <= 5 x argsort -> {rand:.3f} "
          f"({'met' if rand <= 5 else 'MISSED'}); exact vs plain -> max diff "
          f"{max(r['diff'] for r in rows):.1e}")
    if args.rerank:
        bench_rerank(scale)
    if args.msmt:
        bench_msmt(args.msmt_dim, int(args.msmt_budget * 2**30))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
