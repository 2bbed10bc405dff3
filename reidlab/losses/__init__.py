"""Losses: identity (label-smoothed CE), metric (batch-hard triplet), orthogonality (SVDO, SO, SRIP)."""

from .metric import CrossEntropyLabelSmooth, TripletLoss, pairwise_euclidean
from .orthogonal import (
    REGULARIZERS,
    FeatureOrthogonality,
    WeightOrthogonality,
    dominant_eigenvalue,
    exact_extremes,
    power_iteration_extremes,
)

__all__ = [
    "CrossEntropyLabelSmooth",
    "TripletLoss",
    "pairwise_euclidean",
    "REGULARIZERS",
    "FeatureOrthogonality",
    "WeightOrthogonality",
    "dominant_eigenvalue",
    "exact_extremes",
    "power_iteration_extremes",
]
