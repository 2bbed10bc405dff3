"""Per-frame trunk features of a set of tracklets, as plain arrays (no model, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FrameFeatures"]


@dataclass
class FrameFeatures:
    """Features of every frame of N tracklets, concatenated in tracklet order.

    vectors: (F, D) float32 — pre-BNNeck, spatially average-pooled trunk maps (what a vector fusion of the
        video model receives); F = total frames.
    offsets: (N + 1,) int64 — tracklet i owns frames ``offsets[i]:offsets[i + 1]``.
    pids, camids: (N,) int64.
    corrupt: (F,) bool — ground-truth corrupted frames (all False when unknown, see ``corruption_known``).
    maps: (F, C, h, w) float16 or None — the unpooled trunk maps (for map fusions such as template_mask).
    digests: (F,) 20-byte SHA-1 of each frame file's bytes, or None — lets another extraction reuse the
        features of byte-identical frames (the clean frames of worlds that differ only in corruption).
    """

    vectors: np.ndarray
    offsets: np.ndarray
    pids: np.ndarray
    camids: np.ndarray
    corrupt: np.ndarray
    corruption_known: bool = True
    maps: np.ndarray | None = None
    digests: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.pids = np.asarray(self.pids, dtype=np.int64)
        self.camids = np.asarray(self.camids, dtype=np.int64)
        self.corrupt = np.asarray(self.corrupt, dtype=bool)
        n, f = len(self.pids), len(self.vectors)
        if self.vectors.ndim != 2:
            raise ValueError(f"vectors must be (frames, D), got {self.vectors.shape}")
        if self.offsets.shape != (n + 1,) or self.offsets[0] != 0 or self.offsets[-1] != f:
            raise ValueError(f"offsets must be (N+1,) from 0 to {f} frames for N={n} tracklets, got "
                             f"shape {self.offsets.shape}")
        if np.any(np.diff(self.offsets) < 1):
            raise ValueError("every tracklet needs at least one frame (offsets must increase)")
        if self.camids.shape != (n,) or self.corrupt.shape != (f,):
            raise ValueError(f"camids must be ({n},) and corrupt ({f},), got {self.camids.shape}, {self.corrupt.shape}")
        if self.maps is not None and len(self.maps) != f:
            raise ValueError(f"maps must have one entry per frame ({f}), got {len(self.maps)}")
        if self.digests is not None and len(self.digests) != f:
            raise ValueError(f"digests must have one entry per frame ({f}), got {len(self.digests)}")

    @property
    def num_tracklets(self) -> int:
        return len(self.pids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def frames_of(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def subset(self, idx: Any) -> "FrameFeatures":
        """The tracklets ``idx`` (in that order) as a new FrameFeatures."""
        idx = np.asarray(idx, dtype=np.int64)
        parts = [np.arange(self.offsets[i], self.offsets[i + 1]) for i in idx]
        rows = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        lens = self.lengths[idx]
        return FrameFeatures(self.vectors[rows], np.concatenate([[0], np.cumsum(lens)]), self.pids[idx],
                             self.camids[idx], self.corrupt[rows], self.corruption_known,
                             None if self.maps is None else self.maps[rows],
                             None if self.digests is None else self.digests[rows])

    def to_arrays(self) -> dict[str, np.ndarray]:
        d = {"vectors": self.vectors, "offsets": self.offsets, "pids": self.pids, "camids": self.camids,
             "corrupt": self.corrupt, "corruption_known": np.asarray(self.corruption_known)}
        if self.maps is not None:
            d["maps"] = self.maps
        if self.digests is not None:
            d["digests"] = self.digests
        return d

    @classmethod
    def from_arrays(cls, d: Any) -> "FrameFeatures":
        return cls(d["vectors"], d["offsets"], d["pids"], d["camids"], d["corrupt"],
                   bool(np.asarray(d["corruption_known"])), d["maps"] if "maps" in d else None,
                   d["digests"] if "digests" in d else None)
