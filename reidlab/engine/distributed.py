"""torch.distributed glue for the engine: set-up from torchrun's environment, rank-0 decisions.

The engine runs unchanged under ``torchrun --nproc_per_node=N -m reidlab.engine --config cfg.json``:
torchrun exports RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT, :func:`init_distributed`
reads them and joins the process group (gloo on CPU, nccl on CUDA). Without those variables everything
here is a no-op for a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as tdist

__all__ = ["DistInfo", "init_distributed", "resolve_device"]

T = TypeVar("T")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``cuda`` -> ``cuda:<local_rank>``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device is {name!r} but CUDA is not available on this machine")
    return dev


@dataclass
class DistInfo:
    """Rank / world size of this process; ``owns_group`` when :func:`init_distributed` created the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and hand its result (or its exception) to every rank.

        Without this, an error on rank 0 (unwritable results dir, ...) would leave the other ranks waiting
        in the next collective forever.
        """
        result: Any = None
        error: BaseException | None = None
        if self.is_main:
            try:
                result = fn()
            except Exception as e:  # noqa: BLE001 - forwarded, re-raised below on every rank
                error = e
        if self.enabled:
            result, error_msg = self.broadcast((result, None if error is None else (type(error), str(error))))
            if error is None and error_msg is not None:
                etype, msg = error_msg
                try:
                    error = etype(msg)
                except Exception:  # noqa: BLE001 - exotic exception signatures
                    error = RuntimeError(msg)
        if error is not None:
            raise error
        return result

    def cleanup(self) -> None:
        if self.owns_group and tdist.is_initialized():
            tdist.destroy_process_group()
            self.owns_group = False


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment variables, if any.

    Backend: nccl when the run uses CUDA, gloo otherwise. An already initialised group is reused.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return DistInfo()
    if not tdist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if tdist.is_initialized():
        return DistInfo(tdist.get_rank(), tdist.get_world_size(), local_rank, tdist.get_backend(), False)
    dev = resolve_device(device, local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    # other ranks wait in a barrier while rank 0 evaluates; a MARS-size evaluation with re-ranking can
    # outlast the 30-minute default timeout. REIDLAB_DIST_TIMEOUT_MIN overrides it.
    minutes = float(os.environ.get("REIDLAB_DIST_TIMEOUT_MIN", "180"))
    tdist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timedelta(minutes=minutes))
    return DistInfo(rank, world, local_rank, backend, True)
