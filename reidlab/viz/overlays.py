"""Attention maps over frames, and per-frame fusion weights under a tracklet's frames."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["to_display_image", "upsample_map", "attention_overlay", "fusion_weight_strip"]

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
_IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def to_display_image(frame: Any, *, normalized: bool | None = None) -> np.ndarray:
    """A frame as an (H, W, 3) float image in [0, 1] for `imshow`.

    frame: (H, W, 3) uint8 / float, or a (3, H, W) tensor/array. `normalized=True` (or None with values
    outside [0, 1]) undoes the ImageNet normalisation of the test transform.
    """
    if hasattr(frame, "detach"):
        frame = frame.detach().float().cpu().numpy()
    img = np.asarray(frame)
    if img.ndim != 3:
        raise ValueError(f"frame: expected (H, W, 3) or (3, H, W), got shape {img.shape}")
    if img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.transpose(img, (1, 2, 0))
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    img = img.astype(np.float64)
    if normalized is None:
        normalized = bool(img.min() < -1e-3 or img.max() > 1.0 + 1e-3)
    if normalized:
        img = img * _IMAGENET_STD[: img.shape[-1]] + _IMAGENET_MEAN[: img.shape[-1]]
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    return np.clip(img, 0.0, 1.0)


def upsample_map(m: Any, size: tuple[int, int], *, normalize: bool = True) -> np.ndarray:
    """Bilinear upsampling of a low-resolution map (h, w) to `size` (H, W), min-max scaled to [0, 1]
    when `normalize` (a constant map becomes all zeros, never NaN)."""
    from scipy import ndimage

    if hasattr(m, "detach"):
        m = m.detach().float().cpu().numpy()
    a = np.asarray(m, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"map: expected (h, w), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("map: contains NaN or inf")
    h, w = a.shape
    out = ndimage.zoom(a, (size[0] / h, size[1] / w), order=1, mode="nearest", grid_mode=True)
    out = out[: size[0], : size[1]]
    if normalize:
        lo, hi = out.min(), out.max()
        out = (out - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(out)
    return out


def attention_overlay(
    frames: Sequence[Any],
    maps: Mapping[str, Sequence[Any]],
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
    title: str | None = None,
    frame_labels: Sequence[str] | None = None,
):
    """Frames in the top row, each kind of map (e.g. "CAM", "PAM", "template α") overlaid below.

    frames: T frames (see `to_display_image`); maps: kind -> T maps (h, w) (None for a frame without a
    map of that kind), each upsampled to its frame's size and drawn with `alpha` over it, both images
    sharing one `extent` so they align pixel for pixel.
    """
    import matplotlib.pyplot as plt

    imgs = [to_display_image(f) for f in frames]
    t = len(imgs)
    if t == 0:
        raise ValueError("attention_overlay: no frames")
    for kind, ms in maps.items():
        if len(ms) != t:
            raise ValueError(f"attention_overlay: {len(ms)} {kind!r} maps for {t} frames")
    rows = 1 + len(maps)
    fig, axes = plt.subplots(rows, t, figsize=(1.3 * t + 0.8, 2.3 * rows), squeeze=False)
    for j, img in enumerate(imgs):
        h, w = img.shape[:2]
        extent = (0, w, h, 0)
        axes[0][j].imshow(img, extent=extent)
        if frame_labels is not None:
            axes[0][j].set_title(frame_labels[j], fontsize=7)
        for i, (kind, ms) in enumerate(maps.items(), start=1):
            ax = axes[i][j]
            ax.imshow(img, extent=extent)
            if ms[j] is not None:
                ax.imshow(upsample_map(ms[j], (h, w)), extent=extent, alpha=alpha, cmap=cmap, vmin=0, vmax=1)
            if j == 0:
                ax.set_ylabel(kind, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def fusion_weight_strip(
    frames: Sequence[Any],
    weights: Mapping[str, Any],
    corruption: Sequence[str | None] | None = None,
    *,
    frame_indices: Sequence[int] | None = None,
    title: str | None = None,
):
    """A tracklet's frames in a row with each variant's per-frame fusion weights as bars beneath.

    frame_indices: the frames' positions in the tracklet (labels "t=i"; default 0..T-1).
    weights: variant -> (T,) weights (summing to 1). corruption: the synthetic ground truth per frame
    (None = clean, else the kind, e.g. "occluder"): corrupted frames get a red frame border and label and
    red bars. A dashed line marks the uniform weight 1/T, i.e. what `mean` gives every frame.
    """
    import matplotlib.pyplot as plt

    imgs = [to_display_image(f) for f in frames]
    t = len(imgs)
    if t == 0:
        raise ValueError("fusion_weight_strip: no frames")
    if corruption is not None and len(corruption) != t:
        raise ValueError(f"fusion_weight_strip: corruption has {len(corruption)} entries for {t} frames")
    bad = [c is not None for c in corruption] if corruption is not None else [False] * t
    pos = list(frame_indices) if frame_indices is not None else list(range(t))
    if len(pos) != t:
        raise ValueError(f"fusion_weight_strip: {len(pos)} frame indices for {t} frames")
    rows = 1 + len(weights)
    fig = plt.figure(figsize=(1.2 * t + 1.5, 2.2 + 1.3 * len(weights)))
    gs = fig.add_gridspec(rows, t, height_ratios=[2.2] + [1.3] * len(weights))
    for j, img in enumerate(imgs):
        ax = fig.add_subplot(gs[0, j])
        ax.imshow(img)
        ax.set_xticks([])
        ax.set_yticks([])
        if bad[j]:
            for sp in ax.spines.values():
                sp.set_edgecolor("red")
                sp.set_linewidth(3)
            ax.set_title(f"t={pos[j]} {corruption[j]}", fontsize=7, color="red")
        else:
            ax.set_title(f"t={pos[j]}", fontsize=7)
    for i, (variant, w) in enumerate(weights.items(), start=1):
        wv = np.asarray(w.detach().cpu().numpy() if hasattr(w, "detach") else w, dtype=float).reshape(-1)
        if len(wv) != t:
            raise ValueError(f"fusion_weight_strip: {variant!r} has {len(wv)} weights for {t} frames")
        ax = fig.add_subplot(gs[i, :])
        bars = ax.bar(np.arange(t), wv, color=["tab:red" if b else "tab:blue" for b in bad], width=0.7)
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in wv], fontsize=6, padding=1)
        ax.axhline(1.0 / t, color="gray", ls="--", lw=1)
        ax.set_xlim(-0.5, t - 0.5)
        ax.set_xticks(np.arange(t), [f"t={i}" for i in pos])
        ax.set_ylabel(variant, fontsize=8, rotation=0, ha="right", va="center")
        ax.set_ylim(0, max(float(wv.max()) * 1.15, 1.5 / t))
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
