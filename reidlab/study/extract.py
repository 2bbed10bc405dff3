"""Per-frame features of a trained video trunk, extracted once and cached in the run's folder.

The cache (``<run>/features/<name>.npz``) is keyed by the checkpoint's SHA-256, the dataset's fingerprint
(its ``info/world.json`` for a synthetic world, else its file lists) and the extraction settings, so it is
rebuilt when the run is retrained or the data regenerated, and reused otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reidlab.runs.features import cached_arrays, file_digest
from reidlab.study.frames import FrameFeatures

__all__ = ["trunk_and_neck", "extract_frames", "cached_frames", "dataset_fingerprint", "EXTRACT_VERSION"]

#: bump when what is extracted changes, so old caches are rebuilt
EXTRACT_VERSION = 2


def trunk_and_neck(model: nn.Module) -> tuple[nn.Module, nn.BatchNorm1d]:
    """The frame encoder (image -> maps (B, C, h, w)) and the BNNeck's BatchNorm of a plain video model."""
    if getattr(model, "is_abd", False) or not hasattr(model, "encoder") or not hasattr(model, "neck"):
        raise ValueError(f"{type(model).__name__}: the study needs a plain-trunk video model (ResNet + BNNeck)")
    return model.encoder, model.neck.bn


def _digests(paths: Sequence[str]) -> np.ndarray:
    out = np.empty(len(paths), dtype="S20")
    for i, p in enumerate(paths):
        with open(p, "rb") as f:
            out[i] = hashlib.sha1(f.read()).digest()
    return out


@torch.no_grad()
def extract_frames(encoder: nn.Module, tracklets: Sequence[Any], height: int, width: int, *,
                   maps: bool = False, batch_frames: int = 256, device: str | torch.device = "cpu",
                   reuse: FrameFeatures | None = None) -> FrameFeatures:
    """Run every frame of ``tracklets`` through ``encoder`` (eval mode) with the test transform.

    Returns pooled pre-BN vectors (F, D) — exactly what the video model's vector fusions receive — and,
    with ``maps=True``, the unpooled maps (F, C, h, w) as float16 (to halve their size; they feed only
    fusion heads, whose inputs are clamped/ReLU'd maps where float16's 3 digits suffice), plus each
    frame file's SHA-1. ``reuse``: features of the same encoder whose frames with identical bytes are
    copied instead of recomputed (worlds that differ only in corruption share every clean frame).
    """
    from reidlab import data as D

    tf = D.build_transforms(height, width, train=False)
    paths = [p for t in tracklets for p in t.paths]
    digests = _digests(paths)
    known: dict[bytes, int] = {}
    if reuse is not None and reuse.digests is not None and (not maps or reuse.maps is not None):
        known = {bytes(d): i for i, d in enumerate(reuse.digests)}
    src = np.array([known.get(bytes(d), -1) for d in digests], dtype=np.int64)
    todo = np.flatnonzero(src < 0)
    lens = [t.num_frames for t in tracklets]
    corrupt = [c is not None for t in tracklets for c in (t.corruption or (None,) * t.num_frames)]
    known_gt = all(t.corruption is not None for t in tracklets)
    was = encoder.training
    encoder.eval()
    vecs: list[np.ndarray] = []
    mps: list[np.ndarray] = []
    try:
        for start in range(0, len(todo), batch_frames):
            rows = todo[start:start + batch_frames]
            imgs = [torch.from_numpy(D.read_image(paths[i])).permute(2, 0, 1) for i in rows]
            x = tf(torch.stack(imgs)).to(device)
            m = encoder(x).float()
            vecs.append(m.mean(dim=(2, 3)).cpu().numpy())
            if maps:
                mps.append(m.cpu().numpy().astype(np.float16))
    finally:
        encoder.train(was)
    new_v = np.concatenate(vecs) if vecs else None
    dim = new_v.shape[1] if new_v is not None else reuse.vectors.shape[1]  # type: ignore[union-attr]
    vectors = np.empty((len(paths), dim), np.float32)
    if new_v is not None:
        vectors[todo] = new_v
    hit = src >= 0
    if hit.any():
        vectors[hit] = reuse.vectors[src[hit]]  # type: ignore[union-attr]
    out_maps = None
    if maps:
        shape = mps[0].shape[1:] if mps else reuse.maps.shape[1:]  # type: ignore[union-attr]
        out_maps = np.empty((len(paths), *shape), np.float16)
        if mps:
            out_maps[todo] = np.concatenate(mps)
        if hit.any():
            out_maps[hit] = reuse.maps[src[hit]]  # type: ignore[union-attr]
    return FrameFeatures(vectors, np.concatenate([[0], np.cumsum(lens)]), [t.pid for t in tracklets],
                         [t.camid for t in tracklets], corrupt, known_gt, out_maps, digests)


def dataset_fingerprint(root: str | Path, tracklets: Sequence[Any]) -> str:
    """A digest that changes when the dataset changes: the synthetic world's ``info/world.json`` (its knobs
    and generator version) when present, plus the frame lists of ``tracklets`` (relative to ``root``)."""
    root = Path(root)
    h = hashlib.sha256()
    world = root / "info" / "world.json"
    if world.exists():
        h.update(world.read_bytes())
    for t in tracklets:
        h.update(f"{t.pid},{t.camid},{len(t.paths)},{Path(t.paths[0]).name},{t.corruption}\n".encode())
    return h.hexdigest()


def cached_frames(run_dir: str | Path, name: str, checkpoint: str | Path, model: nn.Module,
                  tracklets: Sequence[Any], dataset_root: str | Path, height: int, width: int, *,
                  maps: bool = False, reuse: FrameFeatures | None = None) -> tuple[FrameFeatures, bool]:
    """FrameFeatures of ``tracklets`` under ``model``'s trunk, cached as ``<run_dir>/features/<name>.npz``.

    ``reuse``: features of the same checkpoint whose byte-identical frames are copied, not recomputed.
    Returns ``(features, built)``; ``built`` is False when the cache was valid for this checkpoint and data.
    """
    encoder, _ = trunk_and_neck(model)
    key = {"version": EXTRACT_VERSION, "checkpoint_sha256": file_digest(checkpoint),
           "dataset": dataset_fingerprint(dataset_root, tracklets), "height": height, "width": width,
           "maps": bool(maps)}
    arrays, built = cached_arrays(Path(run_dir) / "features" / f"{name}.npz", key,
                                  lambda: extract_frames(encoder, tracklets, height, width, maps=maps,
                                                         reuse=reuse).to_arrays())
    return FrameFeatures.from_arrays(arrays), built
