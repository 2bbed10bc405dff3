"""Re-ID evaluation: exact, fast CMC / mAP / mINP, chunked distances, k-reciprocal re-ranking.

Pure functions on arrays/tensors; no file I/O, no config objects.
"""

from .distance import METRICS, pairwise_distance
from .features import evaluate_features
from .metrics import AP_MODES, PROTOCOLS, EvalResult, QueryEvaluator, classify_pairs, evaluate, protocol_masks
from .ranking import QUERY_ORDERS, RankedLists, order_queries, rank_gallery
from .rerank import re_ranking

__all__ = ["AP_MODES", "METRICS", "PROTOCOLS", "QUERY_ORDERS", "EvalResult", "QueryEvaluator", "RankedLists",
           "classify_pairs", "evaluate", "evaluate_features", "order_queries", "pairwise_distance",
           "protocol_masks", "rank_gallery", "re_ranking"]
