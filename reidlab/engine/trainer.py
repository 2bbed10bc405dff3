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

Layout
    This module holds the epoch loop (``_Run``) and ``train()``; what a run is built from (data, model,
    losses, optimiser, schedule) is in :mod:`reidlab.engine.builders`, checkpoints, RNG states and resume
    in :mod:`reidlab.engine.checkpoints`, evaluation (per epoch and of stored runs) in
    :mod:`reidlab.engine.evaluation`. Their public names are re-exported here.
"""

from __future__ import annotations

import itertools
import math
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from reidlab.config import ConfigError, RunConfig
from reidlab.engine.builders import (  # noqa: F401 - re-exported (older imports take them from here)
    LOSS_PARTS,
    DataBundle,
    _dataset_root,
    build_data,
    build_dataset_for,
    build_losses,
    build_optimizer,
    build_run_model,
    dataset_root,
    lr_factor,
    model_record,
    resolve_amp_dtype,
)
from reidlab.engine.checkpoints import (  # noqa: F401 - re-exported
    NON_SEMANTIC_KEYS,
    PreflightError,
    check_disk,
    check_writable,
    checkpoint_bytes_estimate,
    epoch_seed,
    interrupted_checkpoint,
    last_checkpoint,
    load_last_checkpoint,
    lock_run,
    prepare_run_dir,
    save_epoch_checkpoints,
    seed_everything,
    set_rng_state,
)
from reidlab.engine.distributed import DistInfo, init_distributed, resolve_device
from reidlab.engine.evaluation import (  # noqa: F401 - re-exported
    evaluate_checkpoint,
    evaluate_metrics,
    evaluate_model,
    extract_records,
    load_run_model,
    protocol_record,
)
from reidlab.engine.extraction import autocast_context
from reidlab.runs.records import BEST_LABEL, RunRecord, collect_env

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

_lock_run = lock_run  # the former private name (tests take a run's lock with it)


class TrainingError(RuntimeError):
    """Training stopped (non-finite loss, ...); the message names epoch and step."""


class _FixbasePhases:
    """Which parameters train: during the first ``train.fixbase_epochs`` only ``model.new_parameters()``
    (ABD-Net's warm-up of the new heads on a frozen trunk), from then on all of them.

    Also holds ``train_model``, the model as the training step calls it (DDP / torch.compile wrapped),
    rebuilt when the phase changes: DDP records which parameters take gradients when it wraps.
    """

    def __init__(self, cfg: RunConfig, dist: DistInfo, device: torch.device, model: nn.Module,
                 params: list[nn.Parameter], optimizer: torch.optim.Optimizer, log: Any):  # fmt: skip
        self.cfg, self.dist, self.device, self.log = cfg, dist, device, log
        self.model, self.params, self.optimizer = model, params, optimizer
        new = model.new_parameters() if hasattr(model, "new_parameters") else list(params)
        self.new_ids = {id(p) for p in new}
        self.frozen: bool | None = None
        self.frozen_modules: list[nn.Module] = []
        self.train_model: Any = None

    def enter(self, epoch: int, announce: bool = True) -> None:
        """Set the phase of (0-based) ``epoch``; ``announce``: a phase change, not a resume into it."""
        fb = self.cfg.train.fixbase_epochs
        frozen = epoch < fb
        if fb > 0 and epoch == fb and announce:
            # ABD-Net recipe: the heads were warmed up on a frozen trunk; Adam moments restart for the full model
            self.optimizer.state.clear()
            self.log(f"fixbase done after {fb} epoch(s): trunk unfrozen, optimiser state reset")
        if self.frozen == frozen and self.train_model is not None:
            return
        for p in self.params:
            p.requires_grad_(not frozen or id(p) in self.new_ids)
        self.frozen = frozen
        # modules whose own parameters are all frozen stay in eval mode (BN statistics frozen too)
        self.frozen_modules = []
        if frozen:
            for m in self.model.modules():
                own = list(m.parameters(recurse=False))
                if own and all(id(p) not in self.new_ids for p in own):
                    self.frozen_modules.append(m)
        self._wrap()

    def _wrap(self) -> None:
        m: nn.Module = self.model
        if self.dist.enabled:
            dev_ids = [self.device.index] if self.device.type == "cuda" else None
            m = nn.parallel.DistributedDataParallel(m, device_ids=dev_ids, find_unused_parameters=True)
        if self.cfg.train.compile:
            m = torch.compile(m)
        self.train_model = m

    def train_mode(self) -> None:
        """``model.train()``, except the modules frozen in this phase (kept in eval mode)."""
        self.model.train()
        for m in self.frozen_modules:
            m.eval()


# ---------------------------------------------------------------------- the run
class _Run:
    """One ``train()`` call of one run on this process: set-up, the epoch loop, evaluation, checkpoints.

    ``build_data`` and ``build_run_model`` are looked up in this module when a run is set up, so tests
    can route them to stand-ins by patching ``reidlab.engine.trainer``.
    """

    def __init__(self, cfg: RunConfig, dist: DistInfo, *, force: bool, resume: bool, progress: bool):
        self.cfg = cfg
        self.dist = dist
        self.force = force
        self.resume = resume
        self.progress = progress and dist.is_main
        self.record = RunRecord(cfg.run_dir)
        self.device = resolve_device(cfg.train.device, dist.local_rank)
        self.amp_dtype = resolve_amp_dtype(cfg, self.device)
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
    def setup(self) -> str:
        cfg = self.cfg

        def prepare() -> str:
            check_writable(self.record)  # before anything expensive
            self._lock = lock_run(self.record)
            return prepare_run_dir(self.record, cfg, force=self.force, resume=self.resume)

        mode = self.dist.on_main(prepare)
        if mode == "done":
            return mode
        seed_everything(cfg.seed)
        self.data = build_data(cfg, self.dist, verbose=self.progress)
        self.num_classes = int(self.data.dataset.num_train_pids)
        seed_everything(cfg.seed)  # model init independent of how much RNG the data set-up used
        self.model = build_run_model(cfg, self.num_classes).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.losses = build_losses(cfg, self.model, self.num_classes)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(cfg, self.params)
        self.phases = _FixbasePhases(cfg, self.dist, self.device, self.model, self.params, self.optimizer, self.log)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.dist.on_main(lambda: check_disk(self.record, checkpoint_bytes_estimate(self.model, cfg)))
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
            self._restore(load_last_checkpoint(self.record, cfg))
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
        rec.write_model(model_record(self.model, self.losses, self.num_classes))
        rec.write_protocol(protocol_record(cfg, self.data.dataset))

    def _restore(self, ck: dict) -> None:
        """Continue from checkpoint ``ck`` (last.pt, on the CPU): weights, optimiser, rows, RNG states."""
        self.model.load_state_dict(ck["model"])
        self.start_epoch = int(ck["epoch"])
        self.phases.enter(self.start_epoch, announce=False)
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.scaler is not None and ck.get("scaler") is not None:
            self.scaler.load_state_dict(ck["scaler"])
        self.metric_rows = list(ck["metrics"])
        self.epoch_rows = list(ck["epoch_rows"])
        self.best = ck.get("best")
        self.elapsed_before = float(ck.get("elapsed", 0.0))
        if "rng" in ck:
            set_rng_state(ck["rng"])
        self.log(f"resuming after epoch {self.start_epoch} from {self.record.checkpoint_path('last')}")

    # ------------------------------------------------------------ checkpoints
    def _save_epoch(self, epoch_done: int, evaluated: dict | None) -> None:
        """Rank 0: last.pt (+ snapshot, best.pt), then metrics.csv and epochs.csv, after ``epoch_done``."""
        if not self.dist.is_main:
            return
        ck = last_checkpoint(
            self.cfg, epoch_done, model=self.model, optimizer=self.optimizer, scaler=self.scaler,
            metric_rows=self.metric_rows, epoch_rows=self.epoch_rows, best=self.best, elapsed=self.elapsed(),
            num_classes=self.num_classes,
        )  # fmt: skip
        save_epoch_checkpoints(self.record, ck, self.cfg, evaluated)
        self.record.write_metrics(self.metric_rows)
        self.record.write_epochs(self.epoch_rows)
        self.record.write_event_file()  # live TensorBoard view, rebuilt from the records just written

    # ------------------------------------------------------------ one epoch
    def _loss(self, out: Any, pids: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.losses.compute(out, pids, epoch, self.cfg, self.device)

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

    def _step(self, batch: Any, epoch: int, step: int, n_steps: int) -> tuple[torch.Tensor, int, float]:
        """One optimiser step on a P x K batch (clips (B, T, C, H, W) or images (B, C, H, W), pids (B,)).

        Returns ``(loss parts (5,) on the device, not yet read back; frames in the batch; the step's lr)``.
        """
        cfg = self.cfg
        x, pids = batch[0], batch[1]
        x = x.to(self.device, non_blocking=True)
        pids = torch.as_tensor(pids).to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        lr = cfg.optim.lr * lr_factor(epoch, step, n_steps, cfg)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        with autocast_context(self.device, self.amp_dtype):
            out = self.phases.train_model(x)
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
        return parts, x.shape[0] * (x.shape[1] if x.dim() == 5 else 1), lr

    def _train_epoch(self, epoch: int) -> dict:
        """Train 0-based ``epoch``; returns its epochs.csv row (mean loss parts, last lr, steps, frames/s)."""
        cfg = self.cfg
        seed_everything(epoch_seed(cfg.seed, epoch, self.dist.rank))
        loader = self.data.train_loader
        gen = getattr(loader, "generator", None)
        if gen is not None:  # worker base seeds come from it: make them a function of the epoch, for resume
            gen.manual_seed(epoch_seed(cfg.seed, epoch, self.dist.rank + 7919))
        self._set_draw(epoch, 0)
        # the identity sampler's batch count can vary from epoch to epoch (it is a function of (seed, epoch));
        # an explicit steps_per_epoch is honoured exactly, beyond one pass by further draws (_batches)
        n_steps = len(loader) if cfg.train.steps_per_epoch is None else cfg.train.steps_per_epoch
        self.phases.train_mode()
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
                parts, n_frames, lr = self._step(batch, epoch, step, n_steps)
                frames += n_frames
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
        """Rank 0: evaluate after ``epoch_done``, append the metrics.csv row, track the best mAP."""
        if self.dist.is_main:
            t = time.monotonic()
            m = evaluate_metrics(self.model, self.data, self.cfg, self.device, amp_dtype=self.amp_dtype,
                                 channels_last=self.channels_last, progress=self.progress)  # fmt: skip
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
        self.phases.train_mode()
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
                self.phases.enter(epoch)
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
            ck = interrupted_checkpoint(self.cfg, self.epoch, self.step, self.model, self.num_classes)
            self.record.save_checkpoint(ck, "interrupted")
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
