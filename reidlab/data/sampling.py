"""Which frames of a tracklet to use, and which tracklets/images go into a batch.

Frame sampling (``sample_frames``), for a tracklet of ``n`` frames and clips of ``seq_len`` frames:

- ``evenly``: the centre frame of each of ``seq_len`` equal segments (deterministic);
- ``random``: ``seq_len`` distinct frames drawn uniformly, in temporal order (repeats only if n < seq_len);
- ``restricted_random``: one random frame from each of ``seq_len`` equal segments (Li et al.,
  "Diversity Regularized Spatiotemporal Attention for Video-based Person Re-identification",
  CVPR 2018), so a clip always spans the whole tracklet.

``dense_chunks`` covers every frame for testing. ``PKSampler`` draws P identities x K instances per
batch (Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification", 2017).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
import torch.utils.data

from reidlab.suggest import did_you_mean

SAMPLING_MODES = ("evenly", "random", "restricted_random")


def sample_frames(num_frames: int, seq_len: int, mode: str, rng: np.random.Generator) -> list[int]:
    """``seq_len`` frame indices (ascending, repeats allowed only when ``num_frames < seq_len``)."""
    if num_frames < 1:
        raise ValueError(f"sample_frames: num_frames must be >= 1, got {num_frames}")
    if seq_len < 1:
        raise ValueError(f"sample_frames: seq_len must be >= 1, got {seq_len}")
    if mode == "evenly":
        # centre of segment i = (i + 0.5) * n / L
        return [min(int((2 * i + 1) * num_frames // (2 * seq_len)), num_frames - 1) for i in range(seq_len)]
    if mode == "random":
        if num_frames >= seq_len:
            return sorted(rng.choice(num_frames, size=seq_len, replace=False).tolist())
        # every frame once, then random repeats: short tracklets still show all they have
        extra = rng.choice(num_frames, size=seq_len - num_frames, replace=True).tolist()
        return sorted(list(range(num_frames)) + extra)
    if mode == "restricted_random":
        out = []
        for i in range(seq_len):
            lo = i * num_frames // seq_len
            hi = max((i + 1) * num_frames // seq_len, lo + 1)
            out.append(min(int(rng.integers(lo, hi)), num_frames - 1))
        return out
    raise ValueError(f"sample_frames: unknown mode {mode!r}{did_you_mean(str(mode), SAMPLING_MODES)}; "
                     f"expected one of {SAMPLING_MODES}")


def dense_chunks(num_frames: int, seq_len: int) -> list[list[int]]:
    """All frames in consecutive chunks of ``seq_len``; the last chunk is padded by cycling its own
    frames (``[8, 9] -> [8, 9, 8, 9]``), so padding does not over-weight a single frame."""
    if num_frames < 1 or seq_len < 1:
        raise ValueError(f"dense_chunks: num_frames and seq_len must be >= 1, got {num_frames}, {seq_len}")
    chunks = []
    for start in range(0, num_frames, seq_len):
        idx = list(range(start, min(start + seq_len, num_frames)))
        base = len(idx)
        while len(idx) < seq_len:
            idx.append(idx[len(idx) % base])
        chunks.append(idx)
    return chunks


class PKSampler(torch.utils.data.Sampler):
    """P identities x K instances per batch, deterministic from ``(seed, epoch)``, sharded for DDP.

    Per epoch: each identity's instances are shuffled and cut into groups of K (an identity with fewer
    than K instances contributes one group drawn with replacement; a remainder < K is dropped); then
    batches are formed by repeatedly drawing P distinct identities among those with groups left, until
    fewer than P remain. Batch ``b`` goes to rank ``b % num_replicas``; every rank gets the same number
    of batches (the last few are dropped), so DDP ranks step in lockstep and never share a batch.

    Yields flat dataset indices, batch after batch: use ``DataLoader(batch_size=sampler.batch_size,
    drop_last=True)``. ``len(sampler)`` is the number of indices this rank yields in the current epoch.

    ``set_epoch(epoch, draw=d)`` with ``d >= 1`` selects a further, independent pass of the same epoch
    (deterministic from ``(seed, epoch, d)``): the trainer uses it when an epoch asks for more steps than
    one pass holds. ``draw=0`` is the epoch's ordinary pass.
    """

    def __init__(self, pids: Sequence[int], p: int, k: int, *, seed: int = 0, num_replicas: int = 1, rank: int = 0):
        if p < 1 or k < 1:
            raise ValueError(f"PKSampler: p and k must be >= 1, got p={p}, k={k}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"PKSampler: need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}")
        self.p, self.k, self.seed = int(p), int(k), int(seed)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        index_of: dict[int, list[int]] = defaultdict(list)
        for i, pid in enumerate(pids):
            index_of[int(pid)].append(i)
        self._index_of = {pid: np.asarray(ix, dtype=np.int64) for pid, ix in sorted(index_of.items())}
        if len(self._index_of) < self.p:
            raise ValueError(f"PKSampler: p={p} identities per batch but the data holds only {len(self._index_of)}")
        self.epoch, self.draw = 0, 0
        self._batches = self._plan(0)
        if not self._batches:
            raise ValueError(
                f"PKSampler: {len(self._index_of)} identities give no batch of p={p} x k={k} for each of "
                f"{num_replicas} replicas"
            )

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def set_epoch(self, epoch: int, draw: int = 0) -> None:
        """Select the epoch (and its ``draw``-th extra pass, 0 = the ordinary one) whose batches
        ``__iter__`` yields; call before iterating the DataLoader."""
        if draw < 0:
            raise ValueError(f"PKSampler: draw must be >= 0, got {draw}")
        self.epoch, self.draw = int(epoch), int(draw)
        self._batches = self._plan(self.epoch, self.draw)

    def _plan(self, epoch: int, draw: int = 0) -> list[np.ndarray]:
        # draw 0 keeps the (seed, epoch) key of runs made before extra draws existed
        rng = np.random.default_rng([self.seed, epoch] if draw == 0 else [self.seed, epoch, draw])
        groups: dict[int, list[np.ndarray]] = {}
        for pid, ix in self._index_of.items():
            if len(ix) < self.k:
                groups[pid] = [rng.choice(ix, size=self.k, replace=True)]
            else:
                perm = rng.permutation(ix)
                groups[pid] = [perm[j:j + self.k] for j in range(0, len(perm) - self.k + 1, self.k)]
        batches = []
        alive = [pid for pid in groups if groups[pid]]
        while len(alive) >= self.p:
            chosen = rng.choice(len(alive), size=self.p, replace=False)
            batch = []
            for c in chosen:
                batch.append(groups[alive[c]].pop())
            batches.append(np.concatenate(batch))
            alive = [pid for pid in alive if groups[pid]]
        per_rank = len(batches) // self.num_replicas
        return [batches[b] for b in range(self.rank, per_rank * self.num_replicas, self.num_replicas)]

    def batches(self) -> list[list[int]]:
        """This rank's batches of the current epoch (lists of dataset indices)."""
        return [b.tolist() for b in self._batches]

    def __iter__(self) -> Iterator[int]:
        for b in self._batches:
            yield from (int(i) for i in b)

    def __len__(self) -> int:
        return len(self._batches) * self.batch_size
