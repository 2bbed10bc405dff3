"""Identity and metric losses: label-smoothed cross-entropy and batch-hard triplet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CrossEntropyLabelSmooth", "TripletLoss", "pairwise_euclidean"]


class CrossEntropyLabelSmooth(nn.Module):
    """Cross-entropy against smoothed targets (1 - eps) * onehot + eps / K.

    Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016; used for re-ID by
    Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person Re-ID", CVPRW 2019.
    forward(logits (B, K), targets (B,) int64) -> scalar (mean over the batch).
    """

    def __init__(self, num_classes: int, epsilon: float = 0.1) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.num_classes = int(num_classes)
        self.epsilon = float(epsilon)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be (B, {self.num_classes}), got {tuple(logits.shape)}")
        if targets.shape != (logits.shape[0],):
            raise ValueError(f"targets must be ({logits.shape[0]},), got {tuple(targets.shape)}")
        logp = F.log_softmax(logits.float(), dim=1)
        nll = -logp.gather(1, targets.long().unsqueeze(1)).squeeze(1)
        uniform = -logp.mean(dim=1)
        return ((1.0 - self.epsilon) * nll + self.epsilon * uniform).mean()


def pairwise_euclidean(x: Tensor, eps: float = 1e-12) -> Tensor:
    """(B, D) -> (B, B) Euclidean distances; squared distances clamped at eps before the sqrt so the
    gradient stays finite on the diagonal and for duplicate features."""
    sq = x.pow(2).sum(1)
    d2 = sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (x @ x.t())
    return d2.clamp_min(eps).sqrt()


class TripletLoss(nn.Module):
    """Batch-hard triplet loss (Hermans et al., "In Defense of the Triplet Loss", 2017).

    For every anchor: hardest positive = farthest sample with the same pid (the anchor itself counts, at
    distance 0, so an identity with one sample still gives a term), hardest negative = closest sample with
    another pid. Loss per anchor: relu(d_ap - d_an + margin), or softplus(d_ap - d_an) if soft=True.
    Anchors without any negative (a batch with a single identity) are skipped; if none remains the loss is
    0 (still connected to the graph). forward(features (B, D), pids (B,)) -> scalar.
    """

    def __init__(self, margin: float = 0.3, soft: bool = False) -> None:
        super().__init__()
        if not soft and margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = float(margin)
        self.soft = bool(soft)

    def forward(self, features: Tensor, pids: Tensor) -> Tensor:
        if features.dim() != 2:
            raise ValueError(f"features must be (B, D), got {tuple(features.shape)}")
        if pids.shape != (features.shape[0],):
            raise ValueError(f"pids must be ({features.shape[0]},), got {tuple(pids.shape)}")
        dist = pairwise_euclidean(features.float())
        same = pids.unsqueeze(0) == pids.unsqueeze(1)
        d_ap = dist.masked_fill(~same, float("-inf")).max(1).values
        d_an = dist.masked_fill(same, float("inf")).min(1).values
        valid = ~same.all(1)
        if not bool(valid.any()):
            return features.sum() * 0.0
        diff = d_ap[valid] - d_an[valid]
        loss = F.softplus(diff) if self.soft else F.relu(diff + self.margin)
        return loss.mean()
