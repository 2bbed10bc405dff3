"""Re-ID evaluation: exact, fast CMC / mAP / mINP, chunked distances, k-reciprocal re-ranking.

Pure functions on arrays/tensors; no file I/O, no config objects.
"""

from .distance import METRICS, pairwise_distance
from .features import evaluate_features
from .metrics import AP_MODES, PROTOCOLS, EvalResult, QueryEvaluator, evaluate
from .rerank import re_ranking

__all__ = ["AP_MODES", "METRICS", "PROTOCOLS", "EvalResult", "QueryEvaluator", "evaluate",
           "evaluate_features", "pairwise_distance", "re_ranking"]
