"""What a run is built from: data loaders, model, losses, optimiser and learning-rate schedule.

Each builder is a function of the :class:`~reidlab.config.RunConfig` (and the dataset's class count), so a
resumed run rebuilds exactly the objects its checkpoint's states fit. The data/models/losses packages are
imported lazily, so ``import reidlab.engine`` stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from reidlab.config import ConfigError, RunConfig
from reidlab.engine.distributed import DistInfo

__all__ = [
    "DataBundle",
    "LOSS_PARTS",
    "Losses",
    "dataset_root",
    "build_dataset_for",
    "make_test_loader",
    "build_data",
    "build_run_model",
    "build_losses",
    "model_record",
    "build_optimizer",
    "lr_factor",
    "resolve_amp_dtype",
]

#: The loss terms in the order :meth:`Losses.compute` returns them (and epochs.csv / metrics.csv name them).
LOSS_PARTS = ("loss", "loss_ce", "loss_triplet", "loss_of", "loss_ow")


# ---------------------------------------------------------------------- data
@dataclass
class DataBundle:
    """Everything data-related a run needs."""

    dataset: Any  # reidlab.data.ReIDDataset
    train_set: Any
    sampler: Any  # PKSampler (set_epoch)
    train_loader: Any
    query_loader: Any
    gallery_loader: Any
    extra: dict = field(default_factory=dict)


def dataset_root(cfg: RunConfig, dist: DistInfo | None = None, verbose: bool = True) -> Path:
    """The dataset folder; for ``synthetic`` the world is generated (rank 0 only) when missing."""
    if cfg.data.dataset != "synthetic":
        return Path(cfg.data.root)
    from reidlab.data import synthetic

    dist = dist or DistInfo()
    root = cfg.data.root
    if Path(root) == Path(synthetic.DEFAULT_SYNTHETIC_ROOT):
        root = synthetic.default_synthetic_root()  # honours $REIDLAB_DATA
    root = dist.on_main(lambda: synthetic.ensure_world(root, verbose=verbose, **cfg.data.synthetic))
    dist.barrier()
    return Path(root)


_dataset_root = dataset_root  # the former private name (older imports)


def build_dataset_for(cfg: RunConfig, dist: DistInfo | None = None, verbose: bool = True) -> Any:
    """``reidlab.data.build_dataset`` for ``cfg.data`` (generating the synthetic world if needed)."""
    from reidlab.data import build_dataset

    root = dataset_root(cfg, dist, verbose)
    dataset = build_dataset(cfg.data.dataset, root, verbose=verbose, **cfg.data.options)
    if dataset.kind != cfg.model.task:
        raise ConfigError(
            f"config key 'model.task' is {cfg.model.task!r} but dataset {cfg.data.dataset!r} is a {dataset.kind} dataset"
        )
    return dataset


def make_test_loader(cfg: RunConfig, records: Sequence[Any], transform: Any, cache: Any) -> Any:
    """Test loader over ``records``: dense ``seq_len`` chunks of every tracklet (video) or single images."""
    from reidlab import data as D

    if cfg.model.task == "video":
        ds = D.VideoTestDataset(records, cfg.data.seq_len, transform, cache=cache)
    else:
        ds = D.ImageDataset(records, transform, cache=cache)
    return D.build_test_loader(ds, cfg.eval.batch_size, cfg.data.workers)


def build_data(cfg: RunConfig, dist: DistInfo | None = None, verbose: bool = True) -> DataBundle:
    """Dataset, P x K train loader (per rank) and query/gallery test loaders for ``cfg``."""
    from reidlab import data as D

    dist = dist or DistInfo()
    dataset = build_dataset_for(cfg, dist, verbose=verbose and dist.is_main)
    d = cfg.data
    cache = D.FrameCache(d.cache_items) if d.cache else None
    train_tf = D.build_transforms(d.height, d.width, train=True)
    test_tf = D.build_transforms(d.height, d.width, train=False)
    if cfg.model.task == "video":
        train_set = D.VideoTrainDataset(dataset.train, d.seq_len, d.sampling, train_tf, seed=cfg.seed, cache=cache)
    else:
        train_set = D.ImageDataset(dataset.train, train_tf, seed=cfg.seed, cache=cache)
    sampler = D.PKSampler(
        [r.pid for r in dataset.train], d.p, d.k, seed=cfg.seed, num_replicas=dist.world_size, rank=dist.rank
    )
    train_loader = D.build_train_loader(train_set, sampler, d.p * d.k, d.workers, cfg.seed)
    return DataBundle(
        dataset=dataset,
        train_set=train_set,
        sampler=sampler,
        train_loader=train_loader,
        query_loader=make_test_loader(cfg, dataset.query, test_tf, cache),
        gallery_loader=make_test_loader(cfg, dataset.gallery, test_tf, cache),
    )


# ---------------------------------------------------------------------- model and losses
def build_run_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    """``reidlab.models.build_model`` with the arguments of ``cfg.model``."""
    from reidlab.models import build_model

    m = cfg.model
    kwargs: dict[str, Any] = dict(backbone=m.backbone, last_stride=m.last_stride, pretrained=m.pretrained, abd=m.abd)
    if m.task == "video":
        kwargs.update(fusion=m.fusion, fusion_options=dict(m.fusion_options))
    return build_model(m.task, num_classes, **kwargs)


@dataclass
class Losses:
    """The loss terms of a run: CE(label smoothing) + batch-hard triplet + optional O.F. / O.W."""

    ce: Any
    triplet: Any
    of: Any  # FeatureOrthogonality or None
    ow: Any  # WeightOrthogonality or None

    def compute(
        self, out: Any, pids: torch.Tensor, epoch: int, cfg: RunConfig, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(total loss (), parts (5,) detached, in LOSS_PARTS order)`` of a training forward pass.

        ``out`` is the model's training output (dict with ``logits`` (B, C), ``features`` (B, D) -- or lists of
        them, one per part, averaged -- and optionally ``of_taps`` / ``of_positions``, the latter used when
        ``loss.of.taps`` is "released"); O.F. / O.W. join from their ``start_epoch`` (0-based ``epoch``).
        """
        lc = cfg.loss
        zero = torch.zeros((), device=device)
        if not isinstance(out, dict):
            raise TypeError(f"model in training mode must return a dict with logits/features, got {type(out).__name__}")
        logits, feats = out["logits"], out["features"]
        if isinstance(logits, (list, tuple)):  # a classifier per part (ABD neck="parts"): average the terms
            ce = torch.stack([self.ce(lg.float(), pids) for lg in logits]).mean() if lc.ce > 0 else zero
            tri = torch.stack([self.triplet(f.float(), pids) for f in feats]).mean() if lc.triplet > 0 else zero
        else:
            ce = self.ce(logits.float(), pids) if lc.ce > 0 else zero
            tri = self.triplet(feats.float(), pids) if lc.triplet > 0 else zero
        of = zero
        if self.of is not None and epoch >= lc.of.start_epoch:
            if lc.of.taps == "released":
                maps = out.get("of_positions") or {}
                if maps:
                    of = self.of.positions({k: [t.float() for t in v] for k, v in maps.items()})
            else:
                taps = out.get("of_taps") or []
                if taps:
                    of = self.of([t.float() for t in taps])
        ow = self.ow() if self.ow is not None and epoch >= lc.ow.start_epoch else zero
        total = lc.ce * ce + lc.triplet * tri + of + ow
        return total, torch.stack([total.detach(), ce.detach(), tri.detach(), of.detach(), ow.detach()])

    def describe(self) -> dict:
        """Descriptions of the O.F. / O.W. regularisers (for model.json)."""
        out: dict[str, Any] = {}
        for name in ("of", "ow"):
            reg = getattr(self, name)
            if reg is not None and hasattr(reg, "describe"):
                try:
                    out[name] = reg.describe()
                except Exception as e:  # noqa: BLE001 - a description must never stop a run
                    out[name] = {"error": repr(e)}
            elif reg is not None:
                out[name] = {"class": type(reg).__name__}
        return out


def model_record(model: nn.Module, losses: Losses, num_classes: int) -> dict:
    """model.json of a run: ``model.describe()`` (or its class), the regularisers and the class count."""
    desc = dict(model.describe()) if hasattr(model, "describe") else {"class": type(model).__name__}
    desc["regularizers"] = losses.describe()
    desc["num_classes"] = num_classes
    return desc


def build_losses(cfg: RunConfig, model: nn.Module, num_classes: int) -> Losses:
    """The loss terms of ``cfg.loss``; O.W. holds on to ``model``'s conv weights."""
    from reidlab import losses as L

    lc = cfg.loss
    of = ow = None
    if lc.of.name != "none":
        of = L.FeatureOrthogonality(name=lc.of.name, beta=lc.of.beta, exponent=lc.of.exponent, n_iter=lc.of.n_iter,
                                    grad=lc.of.grad, shallow_weight=lc.of.shallow_weight, factor=lc.of.factor)
    if lc.ow.name != "none":
        ow = L.WeightOrthogonality(
            model, name=lc.ow.name, beta=lc.ow.beta, exponent=lc.ow.exponent, side=lc.ow.side, n_iter=lc.ow.n_iter,
            grad=lc.ow.grad, scope=lc.ow.scope, reduction=lc.ow.reduction, factor=lc.ow.factor,
        )
    return Losses(
        ce=L.CrossEntropyLabelSmooth(num_classes, epsilon=lc.label_smooth),
        triplet=L.TripletLoss(margin=lc.margin, soft=lc.soft_margin),
        of=of,
        ow=ow,
    )


# ---------------------------------------------------------------------- optimiser, schedule, precision
def build_optimizer(cfg: RunConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam or SGD over ``params`` with ``cfg.optim``'s lr and weight decay (the lr is reset every step)."""
    o = cfg.optim
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum, nesterov=False)


def lr_factor(epoch: int, step: int, steps_per_epoch: int, cfg: RunConfig) -> float:
    """Multiplier of ``optim.lr`` at (0-based) ``epoch`` and ``step``.

    Linear warm-up from 0.1 to 1 over ``warmup_epochs`` (per step), then cosine decay to 0 over the
    remaining epochs (per step), step decay (``gamma`` every ``step_size`` epochs), multistep decay (``gamma`` at
    each of ``milestones``, 0-based epochs, as torch's MultiStepLR), or constant.
    """
    o = cfg.optim
    t = epoch + step / max(steps_per_epoch, 1)  # fractional epoch
    if o.warmup_epochs > 0 and t < o.warmup_epochs:
        return 0.1 + 0.9 * t / o.warmup_epochs
    if o.schedule == "cosine":
        span = max(cfg.train.epochs - o.warmup_epochs, 1e-12)
        return 0.5 * (1.0 + math.cos(math.pi * min((t - o.warmup_epochs) / span, 1.0)))
    if o.schedule == "step":
        return o.gamma ** (epoch // o.step_size)
    if o.schedule == "multistep":
        return o.gamma ** sum(epoch >= m for m in o.milestones)
    return 1.0


def resolve_amp_dtype(cfg: RunConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``cfg.train`` on ``device``: None (full precision) off CUDA or with amp off."""
    if not cfg.train.amp or device.type != "cuda":
        return None
    if cfg.train.amp_dtype == "fp16":
        return torch.float16
    if cfg.train.amp_dtype == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16
