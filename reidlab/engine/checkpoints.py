"""Checkpoints and resume: what a run saves after every epoch, and how it picks up again.

A run is resumable from ``checkpoints/last.pt`` (model, optimiser, scaler, RNG states, metrics so far,
written atomically after every epoch). Together with the per-epoch reseeding below (Python/numpy/torch
from ``(seed, epoch, rank)``) that makes a resumed CPU run end with the same numbers as an uninterrupted
one. Also here: the pre-flight checks that keep a run from starting where it could not save (unwritable
results folder, too little disk space, the same run id training in another process).
"""

from __future__ import annotations

import os
import random
import shutil
from typing import Any

import numpy as np
import torch
from torch import nn

from reidlab.atomic import atomic_write_text
from reidlab.config import ConfigError, RunConfig
from reidlab.engine.builders import lr_factor
from reidlab.runs.records import (
    BEST_LABEL,
    CHECKPOINT_FORMAT,
    RunRecord,
    load_checkpoint_file,
    record_config,
    resolved_config,
)

__all__ = [
    "PreflightError",
    "NON_SEMANTIC_KEYS",
    "config_diff",
    "epoch_seed",
    "seed_everything",
    "rng_state",
    "set_rng_state",
    "check_writable",
    "lock_run",
    "check_disk",
    "checkpoint_bytes_estimate",
    "prepare_run_dir",
    "last_checkpoint",
    "interrupted_checkpoint",
    "save_epoch_checkpoints",
    "load_last_checkpoint",
]

#: Config keys that may change between a run and its resumption (they do not change the numbers).
NON_SEMANTIC_KEYS = frozenset({
    "results_dir", "train.max_minutes", "train.log_every", "train.checkpoint_every", "train.device",
    "train.compile", "data.workers", "data.cache", "data.cache_items", "eval.batch_size",
})  # fmt: skip


class PreflightError(RuntimeError):
    """The run cannot start (results folder unwritable, not enough disk space, ...)."""


def config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between config dicts ``a`` and ``b``, NON_SEMANTIC_KEYS left out."""
    keys = []
    for k in sorted(set(a) | set(b)):
        key = f"{prefix}.{k}" if prefix else k
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        sections = ("data", "model", "loss", "optim", "train", "eval", "loss.of", "loss.ow")
        if isinstance(va, dict) and isinstance(vb, dict) and key in sections:
            keys += config_diff(va, vb, key)
        elif va != vb and key not in NON_SEMANTIC_KEYS:
            keys.append(key)
    return keys


# ---------------------------------------------------------------------- RNG
def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of ``epoch`` on ``rank``: a pure function of its arguments, so a resumed epoch replays."""
    return int(np.random.SeedSequence([seed, epoch, rank, 0x5EED]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The global generators' states (CUDA's too once CUDA is in use)."""
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    """Restore states saved by :func:`rng_state`."""
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(st["cuda"])
        except Exception:  # noqa: BLE001 - different GPU count on resume: per-epoch reseeding covers it
            pass


# ---------------------------------------------------------------------- pre-flight checks
def check_writable(record: RunRecord) -> None:
    """Raise PreflightError unless a file can be written atomically in the run folder."""
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


def lock_run(record: RunRecord) -> Any:
    """Exclusive advisory lock on ``run_dir/checkpoints/.lock`` for the life of the process's training call.

    Returns the open lock file (close it to release), None where there is no flock. flock locks vanish
    with their process, so a SIGKILLed run never leaves a stale lock behind.
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


def checkpoint_bytes_estimate(model: nn.Module, cfg: RunConfig) -> int:
    """Bytes of disk the run's checkpoints may take at once (an upper estimate)."""
    n = sum(p.numel() * p.element_size() for p in model.state_dict().values() if isinstance(p, torch.Tensor))
    slots = 2 if cfg.optim.name == "adam" else 1
    last = n * (1 + slots)
    # last.pt is rewritten through a temp file (two copies briefly), plus best.pt and interrupted.pt
    total = 2 * last + 2 * n + (16 << 20)
    if cfg.train.checkpoint_every:
        total += (cfg.train.epochs // cfg.train.checkpoint_every) * last
    return int(total)


def check_disk(record: RunRecord, need: int) -> None:
    """Raise PreflightError if the run folder's file system has fewer than ``need`` bytes free."""
    free = shutil.disk_usage(record.run_dir).free
    if free < need:
        raise PreflightError(
            f"not enough free disk space under {record.run_dir}: the run needs about {need / 2**20:.0f} MiB "
            f"for checkpoints, {free / 2**20:.0f} MiB are free"
        )


def prepare_run_dir(record: RunRecord, cfg: RunConfig, *, force: bool, resume: bool) -> str:
    """Decide what to do with an existing run folder (rank 0): ``'done' | 'fresh' | 'resume'``.

    ``force`` discards any old record; an unfinished one is resumed when ``resume`` (and last.pt exists),
    else cleared. Raises ConfigError when the old record has a different config and would be kept.
    """
    old_cfg = record.config if (record.run_dir / "config.json").is_file() else None
    # compared as config.json stores them (paths inside the project relative to its root), so an
    # absolute and a relative spelling of the same folder are the same run
    new_cfg = record_config(cfg.to_dict())
    if old_cfg is not None:
        old_cfg = record_config(resolved_config(old_cfg))
    if force:
        record.clear()
        return "fresh"
    if old_cfg is not None:
        diff = config_diff(old_cfg, new_cfg)
        if diff and (record.is_finished() or resume):
            raise ConfigError(
                f"run {cfg.run_id!r} in {record.run_dir} exists with a different config "
                f"(keys {', '.join(diff)}); use another run_id, or force=True to discard it"
            )
    if record.is_finished():
        return "done"
    record.remove_stale_temps()  # this run id is ours now: nobody else is mid-write
    if not resume:
        record.clear()
        return "fresh"
    return "resume" if record.checkpoint_path("last").is_file() else "fresh"


# ---------------------------------------------------------------------- checkpoint contents
def last_checkpoint(
    cfg: RunConfig,
    epoch_done: int,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    metric_rows: list[dict],
    epoch_rows: list[dict],
    best: dict | None,
    elapsed: float,
    num_classes: int,
) -> dict:
    """The resume point after ``epoch_done`` (1-based count of finished epochs); ``elapsed`` in seconds."""
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": "last",
        "label": "last completed epoch (resume point)",
        "epoch": epoch_done,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": {"kind": "lr_factor(epoch, step)", "epoch": epoch_done,
                      "lr_factor": lr_factor(epoch_done, 0, 1, cfg)},  # fmt: skip
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(),
        "sampler_epoch": epoch_done,
        "metrics": list(metric_rows),
        "epoch_rows": list(epoch_rows),
        "best": best,
        "elapsed": elapsed,
        "config": cfg.to_dict(),
        "num_classes": num_classes,
        "task": cfg.model.task,
    }


def interrupted_checkpoint(cfg: RunConfig, epoch: int, step: int, model: nn.Module, num_classes: int) -> dict:
    """Mid-epoch weights at 0-based ``epoch``/``step``, for inspection only (resume uses last.pt)."""
    where = f"epoch {epoch + 1}, step {step + 1}"
    return {
        "format": CHECKPOINT_FORMAT, "kind": "interrupted",
        "label": f"mid-epoch weights at {where} (inspection only; resume uses last.pt)",
        "epoch": epoch, "step": step, "model": model.state_dict(),
        "config": cfg.to_dict(), "num_classes": num_classes, "task": cfg.model.task,
    }  # fmt: skip


def save_epoch_checkpoints(record: RunRecord, ck: dict, cfg: RunConfig, evaluated: dict | None) -> None:
    """Write ``ck`` (a :func:`last_checkpoint`) as last.pt, as a numbered snapshot when
    ``train.checkpoint_every`` says so, and its weights as best.pt when ``evaluated`` is a new best."""
    epoch_done = ck["epoch"]
    record.save_checkpoint(ck, "last")
    if cfg.train.checkpoint_every and epoch_done % cfg.train.checkpoint_every == 0:
        record.save_checkpoint({**ck, "kind": "snapshot", "label": f"snapshot after epoch {epoch_done}"},
                               f"epoch_{epoch_done:03d}")  # fmt: skip
    if evaluated is not None and evaluated.get("new_best"):
        record.save_checkpoint({
            "format": CHECKPOINT_FORMAT, "kind": "best", "label": BEST_LABEL, "epoch": epoch_done,
            "model": ck["model"], "metrics": evaluated["row"], "config": ck["config"],
            "num_classes": ck["num_classes"], "task": cfg.model.task,
        }, "best")  # fmt: skip


def load_last_checkpoint(record: RunRecord, cfg: RunConfig) -> dict:
    """``checkpoints/last.pt`` on the CPU, checked against ``cfg`` (ConfigError if written with another)."""
    # CPU first: RNG states must stay CPU tensors; load_state_dict moves weights/moments to the device
    path = record.checkpoint_path("last")
    ck = load_checkpoint_file(path, map_location="cpu")
    diff = config_diff(ck["config"], cfg.to_dict())
    if diff:
        raise ConfigError(f"checkpoint {path} was written with a different "
                          f"config (keys {', '.join(diff)}); use force=True to start over")  # fmt: skip
    return ck
