"""Batched feature extraction with bounded memory.

Video test sets are read in dense chunks (``reidlab.data.VideoTestDataset``: every frame of a tracklet, in
``seq_len`` chunks). A batch of chunks goes through the model at a time and each chunk embedding is
scatter-added into its tracklet's row, so the memory a forward pass needs is ``batch_size x seq_len``
frames however long a tracklet is (MARS tracklets reach ~900 frames; code that feeds a whole tracklet at
once runs out of memory there). A tracklet's feature is the mean of its chunk embeddings.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["extract_features", "autocast_context"]


def autocast_context(device: torch.device, amp_dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on CUDA with ``amp_dtype``; a no-op elsewhere or when ``amp_dtype`` is None."""
    if amp_dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=amp_dtype)


def _embed(model: nn.Module, x: torch.Tensor, flip: bool, device: torch.device,
           amp_dtype: torch.dtype | None, channels_last: bool) -> torch.Tensor:  # fmt: skip
    if channels_last and x.dim() == 4 and device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast_context(device, amp_dtype):
        f = model(x)
        if flip:
            # mirror along the width axis (last dim for both (B, C, H, W) and (B, T, C, H, W))
            f = (f + model(torch.flip(x, dims=[-1]))) * 0.5
    if isinstance(f, (tuple, list)):  # tolerate models returning (embedding, aux)
        f = f[0]
    if not isinstance(f, torch.Tensor) or f.dim() != 2 or f.shape[0] != x.shape[0]:
        raise ValueError(
            f"model in eval mode must return a (B, D) embedding for a batch of {x.shape[0]}; "
            f"got {type(f).__name__} {tuple(getattr(f, 'shape', ()))}"
        )
    return f.float()


def _records_of(loader: Any) -> Sequence[Any] | None:
    ds = getattr(loader, "dataset", None)
    for name in ("tracklets", "records", "samples", "items"):
        recs = getattr(ds, name, None)
        if recs is not None:
            return recs
    return None


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    *,
    flip: bool = False,
    records: Sequence[Any] | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool = False,
    desc: str = "extract",
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Embeddings of every tracklet (video) or image of a test loader.

    Video batches are ``(frames (B, T, C, H, W), tracklet_index (B,))`` from ``VideoTestDataset`` (one item
    per dense chunk); the result row of tracklet i is the mean of the embeddings of its chunks. Image
    batches are ``(images (B, C, H, W), pids (B,), camids (B,))``.

    Args:
        model: a ReIDModel; put in eval mode here (its previous mode is restored).
        flip: average each embedding with the embedding of the horizontally mirrored input.
        records: the tracklets/samples of the split (for pids/camids of video sets); taken from
            ``loader.dataset`` when it exposes them.
        amp_dtype: autocast dtype on CUDA (None = full precision).

    Returns:
        ``(features (N, D) float32 on CPU, pids (N,) int64, camids (N,) int64)``.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sums: torch.Tensor | None = None
    counts: torch.Tensor | None = None
    img_feats: list[torch.Tensor] = []
    img_pids: list[torch.Tensor] = []
    img_cams: list[torch.Tensor] = []
    video = None
    recs = records if records is not None else _records_of(loader)
    n_items = len(recs) if recs is not None else None
    it = loader
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(loader, desc=desc, leave=False, dynamic_ncols=True)
    try:
        for batch in it:
            x = batch[0]
            if video is None:
                video = x.dim() == 5
            x = x.to(device, non_blocking=True)
            f = _embed(model, x, flip, device, amp_dtype, channels_last)
            if video:
                idx = torch.as_tensor(batch[1], dtype=torch.long).to(device, non_blocking=True)
                if sums is None:
                    if n_items is None:
                        owner = getattr(getattr(loader, "dataset", None), "chunk_owner", None)
                        if owner is None:
                            raise ValueError("video extraction needs `records` (or loader.dataset.tracklets)")
                        n_items = int(max(owner)) + 1
                    sums = torch.zeros(n_items, f.shape[1], dtype=torch.float32, device=device)
                    counts = torch.zeros(n_items, dtype=torch.float32, device=device)
                sums.index_add_(0, idx, f)
                counts.index_add_(0, idx, torch.ones_like(idx, dtype=torch.float32))
            else:
                img_feats.append(f.cpu())
                img_pids.append(torch.as_tensor(batch[1]).cpu())
                img_cams.append(torch.as_tensor(batch[2]).cpu())
    finally:
        model.train(was_training)
    if video is None:
        raise ValueError("the loader yielded no batch: empty split?")
    if video:
        assert sums is not None and counts is not None
        missing = (counts == 0).nonzero().flatten()
        if len(missing):
            raise ValueError(f"{len(missing)} tracklets received no chunk (first: index {int(missing[0])})")
        feats = (sums / counts[:, None]).cpu()
        if recs is None:
            raise ValueError("video extraction needs `records` (or loader.dataset.tracklets) for pids/camids")
        pids = np.asarray([r.pid for r in recs], dtype=np.int64)
        cams = np.asarray([r.camid for r in recs], dtype=np.int64)
        return feats, pids, cams
    return (
        torch.cat(img_feats),
        torch.cat(img_pids).numpy().astype(np.int64),
        torch.cat(img_cams).numpy().astype(np.int64),
    )
