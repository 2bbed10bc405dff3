"""Evaluate features directly: distances by query chunks fed into the streaming evaluator, so the
full Q x G distance matrix never exists."""

from __future__ import annotations

from typing import Any

from .distance import DistanceSource, chunk_rows_for
from .metrics import EvalResult, QueryEvaluator
from .rerank import FeaturePoints, rerank_blocks

__all__ = ["evaluate_features"]


def evaluate_features(qf: Any, gf: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any,
                      metric: str = "euclidean", rerank: bool = False, k1: int = 20, k2: int = 6,
                      lambda_value: float = 0.3, max_rank: int = 50, protocol: str = "market1501",
                      ap_mode: str = "toolbox", chunk_size: int | None = None,
                      memory_budget_bytes: int = 1 << 30, seed: int = 0) -> EvalResult:
    """Evaluate query features qf (Q, D) against gallery features gf (G, D).

    qf/gf: numpy arrays or torch tensors (same device; CUDA tensors keep the matmuls on the GPU).
    metric: "euclidean" (L2) or "cosine" (1 - cos). rerank: apply k-reciprocal re-ranking
    (``reidlab.eval.rerank``; k1, k2, lambda_value as in Zhong et al. 2017).
    chunk_size: query rows per distance block; default from ``memory_budget_bytes`` (scratch beyond
    the inputs is about that budget plus the evaluator's ~160 MB block).
    Other arguments and the result: as ``reidlab.eval.evaluate`` on ``pairwise_distance(qf, gf)``
    (or on the re-ranked distances), to which the result is equal.
    """
    ev = QueryEvaluator(q_pids, g_pids, q_camids, g_camids, max_rank=max_rank, protocol=protocol,
                        ap_mode=ap_mode, seed=seed)
    src = DistanceSource(qf, gf, metric)
    if src.shape != (ev.num_q, ev.num_g):
        raise ValueError(f"qf/gf have {src.shape[0]}/{src.shape[1]} rows but there are {ev.num_q} query and "
                         f"{ev.num_g} gallery labels")
    if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")
    if rerank:
        blocks = rerank_blocks(FeaturePoints(src), k1, k2, lambda_value, memory_budget_bytes, chunk_size)
    else:
        rows = chunk_size or chunk_rows_for(memory_budget_bytes, ev.num_g, src.qf.element_size())
        blocks = src.iter_query_chunks(int(rows))
    for q0, block in blocks:
        ev.add(block, q0)
        del block  # drop it before the generator computes the next one: one block alive at a time
    return ev.result()
