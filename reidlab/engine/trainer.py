"""The training engine: one trainer for image and video re-ID models.

``train(cfg)`` builds data, model and losses from a :class:`~reidlab.config.RunConfig`, trains with
CE(label smoothing) + batch-hard triplet + optional O.F./O.W. orthogonality terms (ABD-Net, Chen et al.,
ICCV 2019), evaluates every ``eval_every`` epochs and at the end through ``reidlab.eval``, and keeps a
complete run record under ``results_dir/run_id`` (see :mod:`reidlab.runs.records`).

Reproducibility and resume
    Python/numpy/torch are re-seeded at the start of every epoch from ``(seed, epoch, rank)``, the identity
    sampler and the frame sampling are deterministic in ``(seed, epoch)`` (and the draw, when an explicit
    ``train.steps_per_epoch`` needs further P x K draws beyond one sampler pass), the learning rate is a pure
    function of ``(epoch, step)``, and ``checkpoints/last.pt`` (model, optimiser, scaler, RNG states,
    metrics so far) is written atomically after every epoch. A run killed at any moment therefore resumes
    from the last completed epoch and, on CPU with a fixed seed, ends with the same ``metrics.csv``
    (up to the ``seconds`` column) as an uninterrupted run.

Faults
    A non-finite loss stops the run (status ``failed``, the message names epoch and step) without touching
    the last good checkpoint; Ctrl-C / SIGTERM write ``checkpoints/interrupted.pt`` (mid-epoch weights, for
    inspection) and status ``interrupted`` -- resuming continues from ``last.pt``; an unwritable results
    folder or too little free disk space fails before any training step.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from reidlab.atomic import atomic_write_text
from reidlab.config import ConfigError, RunConfig
from reidlab.engine.distributed import DistInfo, init_distributed, resolve_device
from reidlab.engine.extraction import autocast_context, extract_features
from reidlab.runs.records import (
    BEST_LABEL,
    CHECKPOINT_FORMAT,
    RunRecord,
    collect_env,
    load_checkpoint_file,
    record_config,
    resolved_config,
)

__all__ = [
    "TrainingError",
    "PreflightError",
    "DataBundle",
    "train",
    "build_data",
    "build_run_model",
    "lr_factor",
    "evaluate_model",
    "load_run_model",
    "evaluate_checkpoint",
    "extract_records",
    "NON_SEMANTIC_KEYS",
]

#: Config keys that may change between a run and its resumption (they do not change the numbers).
NON_SEMANTIC_KEYS = frozenset({
    "results_dir", "train.max_minutes", "train.log_every", "train.checkpoint_every", "train.device",
    "train.compile", "data.workers", "data.cache", "data.cache_items", "eval.batch_size",
})  # fmt: skip

LOSS_PARTS = ("loss", "loss_ce", "loss_triplet", "loss_of", "loss_ow")


class TrainingError(RuntimeError):
    """Training stopped (non-finite loss, ...); the message names epoch and step."""


class PreflightError(RuntimeError):
    """The run cannot start (results folder unwritable, not enough disk space, ...)."""


# ---------------------------------------------------------------------- builders
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


def _dataset_root(cfg: RunConfig, dist: DistInfo | None = None, verbose: bool = True) -> Path:
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


def build_dataset_for(cfg: RunConfig, dist: DistInfo | None = None, verbose: bool = True) -> Any:
    """``reidlab.data.build_dataset`` for ``cfg.data`` (generating the synthetic world if needed)."""
    from reidlab.data import build_dataset

    root = _dataset_root(cfg, dist, verbose)
    dataset = build_dataset(cfg.data.dataset, root, verbose=verbose, **cfg.data.options)
    if dataset.kind != cfg.model.task:
        raise ConfigError(
            f"config key 'model.task' is {cfg.model.task!r} but dataset {cfg.data.dataset!r} is a {dataset.kind} dataset"
        )
    return dataset


def _test_loader(cfg: RunConfig, records: Sequence[Any], transform: Any, cache: Any) -> Any:
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
        query_loader=_test_loader(cfg, dataset.query, test_tf, cache),
        gallery_loader=_test_loader(cfg, dataset.gallery, test_tf, cache),
    )


def build_run_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    """``reidlab.models.build_model`` with the arguments of ``cfg.model``."""
    from reidlab.models import build_model

    m = cfg.model
    kwargs: dict[str, Any] = dict(backbone=m.backbone, last_stride=m.last_stride, pretrained=m.pretrained, abd=m.abd)
    if m.task == "video":
        kwargs.update(fusion=m.fusion, fusion_options=dict(m.fusion_options))
    return build_model(m.task, num_classes, **kwargs)


@dataclass
class _Losses:
    ce: Any
    triplet: Any
    of: Any  # FeatureOrthogonality or None
    ow: Any  # WeightOrthogonality or None

    def describe(self) -> dict:
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


def _build_losses(cfg: RunConfig, model: nn.Module, num_classes: int) -> _Losses:
    from reidlab import losses as L

    lc = cfg.loss
    of = ow = None
    if lc.of.name != "none":
        of = L.FeatureOrthogonality(name=lc.of.name, beta=lc.of.beta, exponent=lc.of.exponent, n_iter=lc.of.n_iter)
    if lc.ow.name != "none":
        ow = L.WeightOrthogonality(
            model, name=lc.ow.name, beta=lc.ow.beta, exponent=lc.ow.exponent, side=lc.ow.side, n_iter=lc.ow.n_iter
        )
    return _Losses(
        ce=L.CrossEntropyLabelSmooth(num_classes, epsilon=lc.label_smooth),
        triplet=L.TripletLoss(margin=lc.margin, soft=lc.soft_margin),
        of=of,
        ow=ow,
    )


def lr_factor(epoch: int, step: int, steps_per_epoch: int, cfg: RunConfig) -> float:
    """Multiplier of ``optim.lr`` at (0-based) ``epoch`` and ``step``.

    Linear warm-up from 0.1 to 1 over ``warmup_epochs`` (per step), then cosine decay to 0 over the
    remaining epochs (per step) or step decay (``gamma`` every ``step_size`` epochs), or constant.
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
    return 1.0


def _build_optimizer(cfg: RunConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, weight_decay=o.weight_decay, momentum=o.momentum, nesterov=False)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank, 0x5EED]).generate_state(1)[0])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(st["cuda"])
        except Exception:  # noqa: BLE001 - different GPU count on resume: per-epoch reseeding covers it
            pass


def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = []
    for k in sorted(set(a) | set(b)):
        key = f"{prefix}.{k}" if prefix else k
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        sections = ("data", "model", "loss", "optim", "train", "eval", "loss.of", "loss.ow")
        if isinstance(va, dict) and isinstance(vb, dict) and key in sections:
            keys += _config_diff(va, vb, key)
        elif va != vb and key not in NON_SEMANTIC_KEYS:
            keys.append(key)
    return keys


def _amp_dtype(cfg: RunConfig, device: torch.device) -> torch.dtype | None:
    if not cfg.train.amp or device.type != "cuda":
        return None
    if cfg.train.amp_dtype == "fp16":
        return torch.float16
    if cfg.train.amp_dtype == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def _unwrap(model: nn.Module) -> nn.Module:
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _checkpoint_bytes_estimate(model: nn.Module, cfg: RunConfig) -> int:
    n = sum(p.numel() * p.element_size() for p in model.state_dict().values() if isinstance(p, torch.Tensor))
    slots = 2 if cfg.optim.name == "adam" else 1
    last = n * (1 + slots)
    # last.pt is rewritten through a temp file (two copies briefly), plus best.pt and interrupted.pt
    total = 2 * last + 2 * n + (16 << 20)
    if cfg.train.checkpoint_every:
        total += (cfg.train.epochs // cfg.train.checkpoint_every) * last
    return int(total)


def _check_writable(record: RunRecord) -> None:
    try:
        record.run_dir.mkdir(parents=True, exist_ok=True)
        probe = record.run_dir / f".write_test.{os.getpid()}"
        atomic_write_text(probe, "ok")
        probe.unlink()
    except OSError as e:
        raise PreflightError(
            f"results folder {record.run_dir} is not writable ({type(e).__name__}: {e}); "
            "fix its permissions or choose another results_dir"
        ) from None


def _lock_run(record: RunRecord) -> Any:
    """Exclusive advisory lock on ``run_dir/checkpoints/.lock`` for the life of the process's training call.

    flock locks vanish with their process, so a SIGKILLed run never leaves a stale lock behind.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX: no lock
        return None
    # inside checkpoints/ (not committed with the records; RunRecord.clear keeps it)
    record.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    fh = open(record.checkpoint_dir / ".lock", "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise PreflightError(f"run {record.run_id!r} ({record.run_dir}) is being trained by another process") from None
    return fh


def _check_disk(record: RunRecord, need: int) -> None:
    free = shutil.disk_usage(record.run_dir).free
    if free < need:
        raise PreflightError(
            f"not enough free disk space under {record.run_dir}: the run needs about {need / 2**20:.0f} MiB "
            f"for checkpoints, {free / 2**20:.0f} MiB are free"
        )


# ---------------------------------------------------------------------- evaluation
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
    loader = _test_loader(cfg, records, tf, None)
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
    """Extract query/gallery features and run ``reidlab.eval.evaluate_features``; returns its EvalResult."""
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


def _metrics_of(result: Any) -> dict[str, float]:
    cmc = np.asarray(result.cmc, dtype=float)

    def rank(k: int) -> float:
        return float(cmc[k - 1]) if len(cmc) >= k else float("nan")

    return {"mAP": float(result.mAP), "rank1": rank(1), "rank5": rank(5), "rank10": rank(10),
            "mINP": float(result.mINP)}  # fmt: skip


# ---------------------------------------------------------------------- the run
class _Run:
    def __init__(self, cfg: RunConfig, dist: DistInfo, *, force: bool, resume: bool, progress: bool):
        self.cfg = cfg
        self.dist = dist
        self.force = force
        self.resume = resume
        self.progress = progress and dist.is_main
        self.record = RunRecord(cfg.run_dir)
        self.device = resolve_device(cfg.train.device, dist.local_rank)
        self.amp_dtype = _amp_dtype(cfg, self.device)
        self.channels_last = cfg.train.channels_last and self.device.type == "cuda"
        self.metric_rows: list[dict] = []
        self.epoch_rows: list[dict] = []
        self.best: dict | None = None
        self.start_epoch = 0
        self.elapsed_before = 0.0  # seconds spent in earlier sessions of this run
        self.t0 = time.monotonic()
        self.epoch = 0
        self.step = 0
        self._lock: Any = None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # ------------------------------------------------------------ helpers
    def log(self, msg: str) -> None:
        if self.dist.is_main:
            print(f"[reidlab] {self.cfg.run_id}: {msg}", flush=True)

    def elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.t0)

    def _status(self, state: str, message: str, **extra: Any) -> None:
        if not self.dist.is_main:
            return
        best = None
        if self.best is not None:
            best = {"epoch": self.best["epoch"], "mAP": self.best["mAP"], "note": BEST_LABEL}
        self.record.write_status(state, message, epoch=self.epoch_done, best=best,
                                 seconds=round(self.elapsed(), 3), **extra)  # fmt: skip

    @property
    def epoch_done(self) -> int:
        return self.epoch_rows[-1]["epoch"] if self.epoch_rows else self.start_epoch

    # ------------------------------------------------------------ set-up
    def _prepare_dir(self) -> str:
        """Rank 0: decide what to do with an existing run folder. Returns 'done' | 'fresh' | 'resume'."""
        rec = self.record
        old_cfg = rec.config if (rec.run_dir / "config.json").is_file() else None
        # compared as config.json stores them (paths inside the project relative to its root), so an
        # absolute and a relative spelling of the same folder are the same run
        new_cfg = record_config(self.cfg.to_dict())
        if old_cfg is not None:
            old_cfg = record_config(resolved_config(old_cfg))
        if self.force:
            rec.clear()
            return "fresh"
        if old_cfg is not None:
            diff = _config_diff(old_cfg, new_cfg)
            if diff and (rec.is_finished() or self.resume):
                raise ConfigError(
                    f"run {self.cfg.run_id!r} in {rec.run_dir} exists with a different config "
                    f"(keys {', '.join(diff)}); use another run_id, or force=True to discard it"
                )
        if rec.is_finished():
            return "done"
        rec.remove_stale_temps()  # this run id is ours now: nobody else is mid-write
        if not self.resume:
            rec.clear()
            return "fresh"
        return "resume" if rec.checkpoint_path("last").is_file() else "fresh"

    def setup(self) -> str:
        cfg = self.cfg

        def prepare() -> str:
            _check_writable(self.record)  # before anything expensive
            self._lock = _lock_run(self.record)
            return self._prepare_dir()

        mode = self.dist.on_main(prepare)
        if mode == "done":
            return mode
        _seed_everything(cfg.seed)
        self.data = build_data(cfg, self.dist, verbose=self.progress)
        self.num_classes = int(self.data.dataset.num_train_pids)
        _seed_everything(cfg.seed)  # model init independent of how much RNG the data set-up used
        self.model = build_run_model(cfg, self.num_classes).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.losses = _build_losses(cfg, self.model, self.num_classes)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = _build_optimizer(cfg, self.params)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.dist.on_main(lambda: _check_disk(self.record, _checkpoint_bytes_estimate(self.model, cfg)))
        n_batches = len(self.data.train_loader)
        if n_batches == 0:
            raise ConfigError(
                f"the training split yields no full batch of data.p x data.k = {cfg.data.p} x {cfg.data.k}"
                f" (per process, {self.dist.world_size} process(es)); lower data.p or data.k"
            )
        self.steps = n_batches if cfg.train.steps_per_epoch is None else cfg.train.steps_per_epoch
        if cfg.train.steps_per_epoch is not None and cfg.train.steps_per_epoch > n_batches:
            self.log(f"train.steps_per_epoch={cfg.train.steps_per_epoch} exceeds one sampler pass ({n_batches} "
                     "batches): each epoch continues with further P x K draws")
        if mode == "resume":
            self._load_last()
        self.dist.barrier()
        if self.dist.is_main:
            self._write_static_records()
        return mode

    def _write_static_records(self) -> None:
        rec, cfg = self.record, self.cfg
        rec.write_config(cfg)
        rec.write_env(collect_env(str(self.device), {
            "world_size": self.dist.world_size, "backend": self.dist.backend,
            "amp_dtype": None if self.amp_dtype is None else str(self.amp_dtype).replace("torch.", ""),
            "channels_last": self.channels_last, "compile": cfg.train.compile,
        }))  # fmt: skip
        desc = dict(self.model.describe()) if hasattr(self.model, "describe") else {"class": type(self.model).__name__}
        desc["regularizers"] = self.losses.describe()
        desc["num_classes"] = self.num_classes
        rec.write_model(desc)
        ds = self.data.dataset
        stats = ds.split_stats() if hasattr(ds, "split_stats") else None
        rec.write_protocol({
            "dataset": dict(ds.protocol), "dataset_name": ds.name, "kind": ds.kind, "splits": stats,
            "eval": {"metric": cfg.eval.metric, "rerank": cfg.eval.rerank, "flip": cfg.eval.flip,
                     "max_rank": cfg.eval.max_rank, "protocol": cfg.eval.protocol, "ap_mode": cfg.eval.ap_mode,
                     "test_sampling": "dense" if cfg.model.task == "video" else "single",
                     "seq_len": cfg.data.seq_len, "aggregation": "mean of chunk embeddings"},
            "model_selection": "tables report the last evaluated epoch; best.pt is " + BEST_LABEL,
        })  # fmt: skip

    def _load_last(self) -> None:
        # CPU first: RNG states must stay CPU tensors; load_state_dict moves weights/moments to the device
        ck = load_checkpoint_file(self.record.checkpoint_path("last"), map_location="cpu")
        diff = _config_diff(ck["config"], self.cfg.to_dict())
        if diff:
            raise ConfigError(f"checkpoint {self.record.checkpoint_path('last')} was written with a different "
                              f"config (keys {', '.join(diff)}); use force=True to start over")  # fmt: skip
        self.model.load_state_dict(ck["model"])
        self.start_epoch = int(ck["epoch"])
        self._set_phase(self.start_epoch, announce=False)
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.scaler is not None and ck.get("scaler") is not None:
            self.scaler.load_state_dict(ck["scaler"])
        self.metric_rows = list(ck["metrics"])
        self.epoch_rows = list(ck["epoch_rows"])
        self.best = ck.get("best")
        self.elapsed_before = float(ck.get("elapsed", 0.0))
        if "rng" in ck:
            _set_rng_state(ck["rng"])
        self.log(f"resuming after epoch {self.start_epoch} from {self.record.checkpoint_path('last')}")

    # ------------------------------------------------------------ fixbase phases
    def _set_phase(self, epoch: int, announce: bool = True) -> None:
        """Frozen trunk during the first fixbase_epochs (only model.new_parameters() train)."""
        fb = self.cfg.train.fixbase_epochs
        frozen = epoch < fb
        if fb > 0 and epoch == fb and announce:
            # ABD-Net recipe: the heads were warmed up on a frozen trunk; Adam moments restart for the full model
            self.optimizer.state.clear()
            self.log(f"fixbase done after {fb} epoch(s): trunk unfrozen, optimiser state reset")
        if getattr(self, "frozen", None) == frozen and hasattr(self, "train_model"):
            return
        if not hasattr(self, "_new_ids"):
            new = self.model.new_parameters() if hasattr(self.model, "new_parameters") else list(self.params)
            self._new_ids = {id(p) for p in new}
        for p in self.params:
            p.requires_grad_(not frozen or id(p) in self._new_ids)
        self.frozen = frozen
        # modules whose own parameters are all frozen stay in eval mode (BN statistics frozen too)
        self._frozen_modules = []
        if frozen:
            for m in self.model.modules():
                own = list(m.parameters(recurse=False))
                if own and all(id(p) not in self._new_ids for p in own):
                    self._frozen_modules.append(m)
        self._wrap()

    def _wrap(self) -> None:
        m: nn.Module = self.model
        if self.dist.enabled:
            dev_ids = [self.device.index] if self.device.type == "cuda" else None
            m = nn.parallel.DistributedDataParallel(m, device_ids=dev_ids, find_unused_parameters=True)
        if self.cfg.train.compile:
            m = torch.compile(m)
        self.train_model = m

    def _train_mode(self) -> None:
        self.model.train()
        for m in self._frozen_modules:
            m.eval()

    # ------------------------------------------------------------ checkpoints
    def _checkpoint(self, epoch_done: int) -> dict:
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": "last",
            "label": "last completed epoch (resume point)",
            "epoch": epoch_done,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": "lr_factor(epoch, step)", "epoch": epoch_done,
                          "lr_factor": lr_factor(epoch_done, 0, 1, self.cfg)},  # fmt: skip
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": _rng_state(),
            "sampler_epoch": epoch_done,
            "metrics": list(self.metric_rows),
            "epoch_rows": list(self.epoch_rows),
            "best": self.best,
            "elapsed": self.elapsed(),
            "config": self.cfg.to_dict(),
            "num_classes": self.num_classes,
            "task": self.cfg.model.task,
        }

    def _save_epoch(self, epoch_done: int, evaluated: dict | None) -> None:
        if not self.dist.is_main:
            return
        rec = self.record
        ck = self._checkpoint(epoch_done)
        rec.save_checkpoint(ck, "last")
        if self.cfg.train.checkpoint_every and epoch_done % self.cfg.train.checkpoint_every == 0:
            rec.save_checkpoint({**ck, "kind": "snapshot", "label": f"snapshot after epoch {epoch_done}"},
                                f"epoch_{epoch_done:03d}")  # fmt: skip
        if evaluated is not None and evaluated.get("new_best"):
            rec.save_checkpoint({
                "format": CHECKPOINT_FORMAT, "kind": "best", "label": BEST_LABEL, "epoch": epoch_done,
                "model": ck["model"], "metrics": evaluated["row"], "config": ck["config"],
                "num_classes": self.num_classes, "task": self.cfg.model.task,
            }, "best")  # fmt: skip
        rec.write_metrics(self.metric_rows)
        rec.write_epochs(self.epoch_rows)

    # ------------------------------------------------------------ one epoch
    def _loss(self, out: Any, pids: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        lc, L = self.cfg.loss, self.losses
        zero = torch.zeros((), device=self.device)
        if not isinstance(out, dict):
            raise TypeError(f"model in training mode must return a dict with logits/features, got {type(out).__name__}")
        ce = L.ce(out["logits"].float(), pids) if lc.ce > 0 else zero
        tri = L.triplet(out["features"].float(), pids) if lc.triplet > 0 else zero
        of = zero
        if L.of is not None and epoch >= lc.of.start_epoch:
            taps = out.get("of_taps") or []
            if taps:
                of = L.of([t.float() for t in taps])
        ow = L.ow() if L.ow is not None and epoch >= lc.ow.start_epoch else zero
        total = lc.ce * ce + lc.triplet * tri + of + ow
        return total, torch.stack([total.detach(), ce.detach(), tri.detach(), of.detach(), ow.detach()])

    def _check_finite(self, vals: list[float], epoch: int, step: int) -> None:
        if all(math.isfinite(v) for v in vals):
            return
        self.failed_at = (epoch, step)
        parts = ", ".join(f"{n}={v:.4g}" for n, v in zip(LOSS_PARTS, vals))
        last = self.record.checkpoint_path("last")
        keep = (f"the last good checkpoint {last} (after epoch {self.epoch_done}) is kept"
                if last.is_file() else "no checkpoint was written yet")  # fmt: skip
        raise TrainingError(
            f"non-finite loss at epoch {epoch + 1}, step {step + 1} ({parts}); training stopped, {keep}. "
            f"Lower optim.lr ({self.cfg.optim.lr:g}) or check the data"
        )

    def _set_draw(self, epoch: int, draw: int) -> None:
        """Point the sampler and the train set at pass ``draw`` of ``epoch`` (0 = the ordinary pass)."""
        for obj in (self.data.sampler, self.data.train_set):
            if not hasattr(obj, "set_epoch"):
                continue
            if draw == 0:  # the plain set_epoch(epoch) contract: samplers without draws still work
                obj.set_epoch(epoch)
            else:
                obj.set_epoch(epoch, draw=draw)

    def _batches(self, epoch: int) -> Iterator[Any]:
        """The epoch's P x K batches: the ordinary sampler pass, then further draws 1, 2, ... (each a fresh,
        seeded pass of the same epoch), for as long as the caller asks. Stops if a draw yields no batch.
        Expects ``_set_draw(epoch, 0)`` to have been called (before the step count was read)."""
        loader = self.data.train_loader
        draw = 0
        while True:
            if draw:
                self._set_draw(epoch, draw)
            got = 0
            for batch in loader:
                got += 1
                yield batch
            if got == 0:  # an empty pass would repeat forever
                return
            draw += 1

    def _train_epoch(self, epoch: int) -> dict:
        cfg = self.cfg
        _seed_everything(_epoch_seed(cfg.seed, epoch, self.dist.rank))
        loader = self.data.train_loader
        gen = getattr(loader, "generator", None)
        if gen is not None:  # worker base seeds come from it: make them a function of the epoch, for resume
            gen.manual_seed(_epoch_seed(cfg.seed, epoch, self.dist.rank + 7919))
        self._set_draw(epoch, 0)
        # the identity sampler's batch count can vary from epoch to epoch (it is a function of (seed, epoch));
        # an explicit steps_per_epoch is honoured exactly, beyond one pass by further draws (_batches)
        n_steps = len(loader) if cfg.train.steps_per_epoch is None else cfg.train.steps_per_epoch
        self._train_mode()
        sums = [0.0] * len(LOSS_PARTS)
        frames = 0
        done_steps = 0
        lazy = self.device.type == "cuda"  # read step i's loss after launching step i+1: no pipeline stall
        pending: tuple[torch.Tensor, int] | None = None
        pbar = None
        if self.progress:
            from tqdm.auto import tqdm

            pbar = tqdm(total=n_steps, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False,
                        dynamic_ncols=True, unit="step")  # fmt: skip
        t_start = time.monotonic()
        base_lrs = cfg.optim.lr
        groups = self.optimizer.param_groups
        log_every = cfg.train.log_every
        last_vals: list[float] = [float("nan")] * len(LOSS_PARTS)

        def consume(parts: torch.Tensor, step: int) -> None:
            nonlocal last_vals
            vals = parts.tolist()  # the one host sync per step
            self._check_finite(vals, epoch, step)
            for i, v in enumerate(vals):
                sums[i] += v
            last_vals = vals

        batches = self._batches(epoch)
        try:
            # islice: no batch is fetched (nor a further draw started) beyond the last step
            for step, batch in enumerate(itertools.islice(batches, n_steps)):
                self.epoch, self.step = epoch, step
                x, pids = batch[0], batch[1]
                x = x.to(self.device, non_blocking=True)
                pids = torch.as_tensor(pids).to(self.device, non_blocking=True)
                if self.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                lr = base_lrs * lr_factor(epoch, step, n_steps, cfg)
                for g in groups:
                    g["lr"] = lr
                with autocast_context(self.device, self.amp_dtype):
                    out = self.train_model(x)
                loss, parts = self._loss(out, pids, epoch)
                self.optimizer.zero_grad(set_to_none=True)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                    if cfg.train.grad_clip is not None:
                        self.scaler.unscale_(self.optimizer)
                        torch.nn.utils.clip_grad_norm_(self.params, cfg.train.grad_clip)
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    loss.backward()
                    if cfg.train.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(self.params, cfg.train.grad_clip)
                    self.optimizer.step()
                frames += x.shape[0] * (x.shape[1] if x.dim() == 5 else 1)
                done_steps += 1
                if lazy:
                    if pending is not None:
                        consume(*pending)
                    pending = (parts, step)
                else:
                    consume(parts, step)
                if pbar is not None:
                    pbar.update(1)
                    pbar.set_postfix(loss=f"{last_vals[0]:.3f}",
                                     fps=f"{frames / max(time.monotonic() - t_start, 1e-9):.0f}", refresh=False)  # fmt: skip
                if log_every and (step + 1) % log_every == 0:
                    self.log(f"epoch {epoch + 1}/{cfg.train.epochs} step {step + 1}/{n_steps} "
                             f"loss {last_vals[0]:.4f} lr {lr:.3g} "
                             f"frames/s {frames / max(time.monotonic() - t_start, 1e-9):.0f}")  # fmt: skip
            if pending is not None:
                consume(*pending)
        finally:
            batches.close()
            if pbar is not None:
                pbar.close()
        n = max(done_steps, 1)
        if self.dist.enabled:  # mean over ranks, one collective per epoch
            t = torch.tensor(sums + [float(frames)], dtype=torch.float64)
            t = self.dist.all_reduce_sum(t.to(self.device) if self.dist.backend == "nccl" else t).cpu()
            sums = [v / self.dist.world_size for v in t[:-1].tolist()]
            frames = int(t[-1].item())
        secs = time.monotonic() - t_start
        row = {name: (sums[i] / n if done_steps else float("nan")) for i, name in enumerate(LOSS_PARTS)}
        row.update(epoch=epoch + 1, lr=groups[0]["lr"], steps=done_steps, frames_per_s=frames / max(secs, 1e-9))
        return row

    # ------------------------------------------------------------ evaluation
    def _evaluate(self, epoch_done: int, losses: dict) -> dict | None:
        if self.dist.is_main:
            t = time.monotonic()
            result = evaluate_model(self.model, self.data, self.cfg, self.device, amp_dtype=self.amp_dtype,
                                    channels_last=self.channels_last, progress=self.progress)  # fmt: skip
            m = _metrics_of(result)
            row = {"epoch": epoch_done, **m, **{k: losses[k] for k in LOSS_PARTS}, "seconds": round(self.elapsed(), 3)}
            self.metric_rows.append(row)
            new_best = self.best is None or m["mAP"] > self.best["mAP"]
            if new_best:
                self.best = {"epoch": epoch_done, "mAP": m["mAP"], "note": BEST_LABEL}
            self.log(f"epoch {epoch_done}: mAP {m['mAP']:.4f} rank1 {m['rank1']:.4f} rank5 {m['rank5']:.4f} "
                     f"mINP {m['mINP']:.4f} (eval {time.monotonic() - t:.1f}s)")  # fmt: skip
            out = {"row": row, "new_best": new_best}
        else:
            out = None
        self.dist.barrier()
        self._train_mode()
        return out

    # ------------------------------------------------------------ main loop
    def run(self) -> RunRecord:
        cfg = self.cfg
        mode = self.setup()
        if mode == "done":
            self.log(f"already finished ({self.record.run_dir}); pass force=True to run it again")
            return self.record
        E = cfg.train.epochs
        self._status("running", f"training from epoch {self.start_epoch + 1}/{E}")
        budget = None if cfg.train.max_minutes is None else cfg.train.max_minutes * 60.0
        stopped_by_budget = False
        epoch = self.start_epoch
        try:
            while epoch < E:
                self._set_phase(epoch)
                row = self._train_epoch(epoch)
                row["seconds"] = round(self.elapsed(), 3)
                self.epoch_rows.append(row)
                done = epoch + 1
                over = budget is not None and (time.monotonic() - self.t0) >= budget
                over = bool(self.dist.broadcast(over))
                due = done == E or over or (cfg.train.eval_every > 0 and done % cfg.train.eval_every == 0) \
                    or done in cfg.train.eval_epochs
                evaluated = self._evaluate(done, row) if due else None
                self._save_epoch(done, evaluated)
                epoch = done
                if over and done < E:
                    stopped_by_budget = True
                    break
                if self.dist.is_main:
                    self._status("running", f"epoch {done}/{E} done")
        except KeyboardInterrupt:
            self._on_interrupt()
            raise
        except TrainingError as e:
            ep, st = getattr(self, "failed_at", (self.epoch, self.step))
            self._status("failed", str(e), failed_epoch=ep + 1, failed_step=st + 1)
            raise
        except Exception as e:
            try:
                self._status("failed", f"{type(e).__name__}: {e}")
            except Exception:  # noqa: BLE001 - e.g. the disk is full: keep the original error
                pass
            raise
        if stopped_by_budget:
            msg = (f"stopped by the max_minutes={cfg.train.max_minutes:g} budget after epoch {epoch}/{E}; "
                   "train() again resumes it")  # fmt: skip
            self._status("budget", msg)
            self.log(msg)
        else:
            self._status("finished", f"{E} epochs done")
            self.log(f"finished in {self.elapsed():.0f}s -> {self.record.run_dir}")
        return self.record

    def _on_interrupt(self) -> None:
        if not self.dist.is_main:
            return
        where = f"epoch {self.epoch + 1}, step {self.step + 1}"
        try:
            self.record.save_checkpoint({
                "format": CHECKPOINT_FORMAT, "kind": "interrupted",
                "label": f"mid-epoch weights at {where} (inspection only; resume uses last.pt)",
                "epoch": self.epoch, "step": self.step, "model": self.model.state_dict(),
                "config": self.cfg.to_dict(), "num_classes": self.num_classes, "task": self.cfg.model.task,
            }, "interrupted")  # fmt: skip
        except Exception:  # noqa: BLE001 - interrupted before the model existed, or disk trouble
            pass
        resume_from = self.epoch_done
        msg = f"interrupted at {where}; train() again resumes after epoch {resume_from} (checkpoints/last.pt)"
        try:
            self._status("interrupted", msg)
        except Exception:  # noqa: BLE001
            pass
        self.log(msg)


class _SigtermAsInterrupt:
    """Treat SIGTERM (schedulers, torchrun, notebook kernels) like Ctrl-C while training, in the main thread."""

    def __enter__(self) -> "_SigtermAsInterrupt":
        self.prev = None
        if threading.current_thread() is threading.main_thread():
            def handler(signum: int, frame: Any) -> None:
                raise KeyboardInterrupt(f"signal {signum}")

            self.prev = signal.signal(signal.SIGTERM, handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.prev is not None:
            signal.signal(signal.SIGTERM, self.prev)


def train(cfg: RunConfig, *, force: bool = False, resume: bool = True, progress: bool = True) -> RunRecord:
    """Train and evaluate one run; returns its :class:`RunRecord`.

    A run whose record says ``finished`` is returned as is unless ``force`` (which discards the old record).
    An unfinished record is resumed from ``checkpoints/last.pt`` when ``resume`` (else started over).
    Under ``torchrun`` the same call trains with DistributedDataParallel; rank 0 writes the record.

    Raises:
        TrainingError: non-finite loss (status ``failed``; last good checkpoint kept).
        PreflightError: unwritable results folder / not enough disk space (before training).
        ConfigError: invalid config, or an existing run with the same id but a different config.
        KeyboardInterrupt: after saving ``interrupted.pt`` and status ``interrupted``.
    """
    if not isinstance(cfg, RunConfig):
        raise TypeError(f"train() expects a RunConfig, got {type(cfg).__name__}")
    cfg.validate()
    dist = init_distributed(cfg.train.device)
    try:
        run = _Run(cfg, dist, force=force, resume=resume, progress=progress)
        try:
            with _SigtermAsInterrupt():
                return run.run()
        finally:
            run.release()
    finally:
        dist.cleanup()


# ---------------------------------------------------------------------- loading finished runs
def _model_from_checkpoint(ck: dict, device: torch.device | str) -> tuple[nn.Module, RunConfig]:
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
    model, cfg = _model_from_checkpoint(ck, device)
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
    model, cfg = _model_from_checkpoint(ck, dev)
    if overrides:
        bad = [k for k in overrides if not (k.startswith("eval.") or k in ("data.root", "data.workers"))]
        if bad:
            raise ConfigError(f"evaluate_checkpoint overrides may only touch eval.* / data.root, got {bad}")
        cfg = cfg.override(overrides)
    from reidlab import data as D

    dataset = build_dataset_for(cfg, verbose=progress)
    tf = D.build_transforms(cfg.data.height, cfg.data.width, train=False)
    cache = D.FrameCache(cfg.data.cache_items) if cfg.data.cache else None
    loaders = (_test_loader(cfg, dataset.query, tf, cache), _test_loader(cfg, dataset.gallery, tf, cache),
               dataset.query, dataset.gallery)  # fmt: skip
    return evaluate_model(model, loaders, cfg, dev, progress=progress)
