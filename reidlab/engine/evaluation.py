"""Evaluation: of the model in training (every ``eval_every`` epochs) and of stored runs.

Features come from :func:`reidlab.engine.extraction.extract_features` (dense chunks for video, bounded
memory) with the test pipeline of the run's config; metrics from ``reidlab.eval.evaluate_features``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from reidlab.config import ConfigError, RunConfig
from reidlab.engine.builders import DataBundle, build_dataset_for, build_run_model, make_test_loader
from reidlab.engine.distributed import resolve_device
from reidlab.engine.extraction import extract_features
from reidlab.runs.records import BEST_LABEL, RunRecord, load_checkpoint_file

__all__ = [
    "extract_records",
    "evaluate_model",
    "metrics_of",
    "evaluate_metrics",
    "protocol_record",
    "model_from_checkpoint",
    "load_run_model",
    "evaluate_checkpoint",
]


def extract_records(
    model: nn.Module,
    records: Sequence[Any],
    cfg: RunConfig,
    device: torch.device | str = "cpu",
    *,
    flip: bool | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Features of a list of tracklets/samples with the test pipeline of ``cfg`` (dense chunks for video).

    Returns ``(features (N, D) float32 CPU, pids (N,), camids (N,))``.
    """
    from reidlab import data as D

    tf = D.build_transforms(cfg.data.height, cfg.data.width, train=False)
    loader = make_test_loader(cfg, records, tf, None)
    return extract_features(
        model, loader, device, flip=cfg.eval.flip if flip is None else flip, records=records, progress=progress
    )


def evaluate_model(
    model: nn.Module,
    bundle_or_loaders: Any,
    cfg: RunConfig,
    device: torch.device | str,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool = False,
) -> Any:
    """Extract query/gallery features and run ``reidlab.eval.evaluate_features``; returns its EvalResult.

    ``bundle_or_loaders``: a :class:`DataBundle` or ``(query_loader, gallery_loader, query_records,
    gallery_records)``.
    """
    from reidlab.eval import evaluate_features

    if isinstance(bundle_or_loaders, DataBundle):
        b = bundle_or_loaders
        q_loader, g_loader = b.query_loader, b.gallery_loader
        q_recs, g_recs = b.dataset.query, b.dataset.gallery
    else:
        q_loader, g_loader, q_recs, g_recs = bundle_or_loaders
    kw = dict(flip=cfg.eval.flip, amp_dtype=amp_dtype, channels_last=channels_last, progress=progress)
    qf, qp, qc = extract_features(model, q_loader, device, records=q_recs, desc="query", **kw)
    gf, gp, gc = extract_features(model, g_loader, device, records=g_recs, desc="gallery", **kw)
    return evaluate_features(
        qf, gf, qp, gp, qc, gc,
        metric=cfg.eval.metric, rerank=cfg.eval.rerank, max_rank=cfg.eval.max_rank,
        protocol=cfg.eval.protocol, ap_mode=cfg.eval.ap_mode,
    )  # fmt: skip


def metrics_of(result: Any) -> dict[str, float]:
    """The metrics.csv columns of an EvalResult: mAP, rank1/5/10, mINP (fractions 0..1; NaN past max_rank)."""
    cmc = np.asarray(result.cmc, dtype=float)

    def rank(k: int) -> float:
        return float(cmc[k - 1]) if len(cmc) >= k else float("nan")

    return {"mAP": float(result.mAP), "rank1": rank(1), "rank5": rank(5), "rank10": rank(10),
            "mINP": float(result.mINP)}  # fmt: skip


def evaluate_metrics(
    model: nn.Module,
    data: DataBundle,
    cfg: RunConfig,
    device: torch.device | str,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool = False,
) -> dict[str, float]:
    """:func:`metrics_of` :func:`evaluate_model` on the test split of ``data`` (the per-epoch evaluation)."""
    result = evaluate_model(model, data, cfg, device, amp_dtype=amp_dtype, channels_last=channels_last,
                            progress=progress)  # fmt: skip
    return metrics_of(result)


def protocol_record(cfg: RunConfig, dataset: Any) -> dict:
    """protocol.json of a run: the dataset's protocol and splits and how the run is evaluated."""
    stats = dataset.split_stats() if hasattr(dataset, "split_stats") else None
    return {
        "dataset": dict(dataset.protocol), "dataset_name": dataset.name, "kind": dataset.kind, "splits": stats,
        "eval": {"metric": cfg.eval.metric, "rerank": cfg.eval.rerank, "flip": cfg.eval.flip,
                 "max_rank": cfg.eval.max_rank, "protocol": cfg.eval.protocol, "ap_mode": cfg.eval.ap_mode,
                 "test_sampling": "dense" if cfg.model.task == "video" else "single",
                 "seq_len": cfg.data.seq_len, "aggregation": "mean of chunk embeddings"},
        "model_selection": "tables report the last evaluated epoch; best.pt is " + BEST_LABEL,
    }  # fmt: skip


# ---------------------------------------------------------------------- stored runs
def model_from_checkpoint(ck: dict, device: torch.device | str) -> tuple[nn.Module, RunConfig]:
    """The model (eval mode, on ``device``) and config stored in checkpoint dict ``ck``."""
    cfg = RunConfig.from_dict(ck["config"])
    model = build_run_model(cfg, int(ck["num_classes"]))
    model.load_state_dict(ck["model"])
    model.to(device).eval()
    return model, cfg


def load_run_model(
    run_dir: str | Path, which: str = "last", *, device: str | torch.device = "cpu", with_dataset: bool = True
) -> tuple[nn.Module, RunConfig, Any]:
    """The model of a stored run (eval mode), its config and its dataset (None if ``with_dataset=False``).

    ``which``: ``last`` (default; what tables report), ``best`` (selected on the test split -- do not
    report), ``interrupted`` or ``epoch_NNN``.
    """
    rec = RunRecord(run_dir)
    ck = rec.load_checkpoint(which, map_location="cpu")
    model, cfg = model_from_checkpoint(ck, device)
    dataset = build_dataset_for(cfg, verbose=False) if with_dataset else None
    return model, cfg, dataset


def evaluate_checkpoint(
    path: str | Path, *, device: str = "auto", progress: bool = False, overrides: dict | None = None
) -> Any:
    """Re-evaluate a checkpoint file on its run's test split (``reidlab eval CHECKPOINT``).

    ``overrides`` may change evaluation settings, e.g. ``{"eval.rerank": True, "eval.flip": True}``.
    Returns the ``reidlab.eval`` EvalResult.
    """
    ck = load_checkpoint_file(path, map_location="cpu")
    dev = resolve_device(device)
    model, cfg = model_from_checkpoint(ck, dev)
    if overrides:
        bad = [k for k in overrides if not (k.startswith("eval.") or k in ("data.root", "data.workers"))]
        if bad:
            raise ConfigError(f"evaluate_checkpoint overrides may only touch eval.* / data.root, got {bad}")
        cfg = cfg.override(overrides)
    from reidlab import data as D

    dataset = build_dataset_for(cfg, verbose=progress)
    tf = D.build_transforms(cfg.data.height, cfg.data.width, train=False)
    cache = D.FrameCache(cfg.data.cache_items) if cfg.data.cache else None
    loaders = (make_test_loader(cfg, dataset.query, tf, cache), make_test_loader(cfg, dataset.gallery, tf, cache),
               dataset.query, dataset.gallery)  # fmt: skip
    return evaluate_model(model, loaders, cfg, dev, progress=progress)

