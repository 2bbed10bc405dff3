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
EXTRACT_VERSION = 1


def trunk_and_neck(model: nn.Module) -> tuple[nn.Module, nn.BatchNorm1d]:
    """The frame encoder (image -> maps (B, C, h, w)) and the BNNeck's BatchNorm of a plain video model."""
    if getattr(model, "is_abd", False) or not hasattr(model, "encoder") or not hasattr(model, "neck"):
        raise ValueError(f"{type(model).__name__}: the study needs a plain-trunk video model (ResNet + BNNeck)")
    return model.encoder, model.neck.bn


@torch.no_grad()
def extract_frames(encoder: nn.Module, tracklets: Sequence[Any], height: int, width: int, *,
                   maps: bool = False, batch_frames: int = 256, device: str | torch.device = "cpu") -> FrameFeatures:
    """Run every frame of ``tracklets`` through ``encoder`` (eval mode) with the test transform.

    Returns pooled pre-BN vectors (F, D) — exactly what the video model's vector fusions receive — and,
    with ``maps=True``, the unpooled maps (F, C, h, w) as float16 (to halve their size; they feed only
    fusion heads, whose inputs are clamped/ReLU'd maps where float16's 3 digits suffice).
    """
    from reidlab import data as D

    tf = D.build_transforms(height, width, train=False)
    paths = [p for t in tracklets for p in t.paths]
    lens = [t.num_frames for t in tracklets]
    corrupt = [c is not None for t in tracklets for c in (t.corruption or (None,) * t.num_frames)]
    known = all(t.corruption is not None for t in tracklets)
    was = encoder.training
    encoder.eval()
    vecs: list[np.ndarray] = []
    mps: list[np.ndarray] = []
    try:
        for start in range(0, len(paths), batch_frames):
            imgs = [torch.from_numpy(D.read_image(p)).permute(2, 0, 1) for p in paths[start:start + batch_frames]]
            x = tf(torch.stack(imgs)).to(device)
            m = encoder(x).float()
            vecs.append(m.mean(dim=(2, 3)).cpu().numpy())
            if maps:
                mps.append(m.cpu().numpy().astype(np.float16))
    finally:
        encoder.train(was)
    return FrameFeatures(np.concatenate(vecs), np.concatenate([[0], np.cumsum(lens)]),
                         [t.pid for t in tracklets], [t.camid for t in tracklets], corrupt, known,
                         np.concatenate(mps) if maps else None)


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
                  maps: bool = False) -> tuple[FrameFeatures, bool]:
    """FrameFeatures of ``tracklets`` under ``model``'s trunk, cached as ``<run_dir>/features/<name>.npz``.

    Returns ``(features, built)``; ``built`` is False when the cache was valid for this checkpoint and data.
    """
    encoder, _ = trunk_and_neck(model)
    key = {"version": EXTRACT_VERSION, "checkpoint_sha256": file_digest(checkpoint),
           "dataset": dataset_fingerprint(dataset_root, tracklets), "height": height, "width": width,
           "maps": bool(maps)}
    arrays, built = cached_arrays(Path(run_dir) / "features" / f"{name}.npz", key,
                                  lambda: extract_frames(encoder, tracklets, height, width, maps=maps).to_arrays())
    return FrameFeatures.from_arrays(arrays), built
