"""Ranked-list figure (torchreid's ``visrank``): per query, its representative frames and its top-k
gallery entries framed green (true match) or red (false match)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MATCH_COLOUR", "MISMATCH_COLOUR", "QUERY_COLOUR", "representative_frames", "record_paths",
           "load_frame", "plot_ranked_lists"]

MATCH_COLOUR = (0.10, 0.70, 0.15)
MISMATCH_COLOUR = (0.85, 0.10, 0.10)
QUERY_COLOUR = (0.15, 0.35, 0.85)
_GAP = (1.0, 1.0, 1.0)


def representative_frames(num_frames: int, count: int = 3) -> list[int]:
    """Indices of ``count`` evenly spaced frames of a tracklet, first and last included (count 3:
    first / middle / last); fewer when the tracklet is shorter (each frame at most once)."""
    if num_frames < 1:
        raise ValueError(f"a tracklet has at least one frame, got {num_frames}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if count == 1:
        return [(num_frames - 1) // 2]
    idx = np.floor(np.linspace(0, num_frames - 1, min(count, num_frames)) + 0.5).astype(int)
    return sorted(set(int(i) for i in idx))


def record_paths(record: Any) -> tuple[str, ...]:
    """Frame paths of a dataset record: a Tracklet's ``paths`` or an image Sample's ``path``."""
    if hasattr(record, "paths"):
        return tuple(record.paths)
    if hasattr(record, "path"):
        return (record.path,)
    raise TypeError(f"{type(record).__name__} has neither .paths (tracklet) nor .path (image)")


def load_frame(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """The image at ``path`` as (H, W, 3) floats in [0, 1], resized to ``size`` = (H, W). A missing or
    unreadable file gives a grey image crossed out (with a warning) instead of stopping the figure."""
    from PIL import Image

    h, w = size
    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((w, h), Image.BILINEAR)
            return np.asarray(im, dtype=np.float64) / 255.0
    except (OSError, ValueError) as e:
        warnings.warn(f"ranked list: cannot read frame {path} ({type(e).__name__}); drawn as a grey box",
                      stacklevel=2)
        img = np.full((h, w, 3), 0.6)
        for t in np.linspace(0.0, 1.0, 4 * max(h, w)):
            r, c = int(t * (h - 1)), int(t * (w - 1))
            img[r, c] = img[r, w - 1 - c] = 0.3
        return img


def _framed(img: np.ndarray, colour: Sequence[float], width: int) -> np.ndarray:
    h, w, _ = img.shape
    out = np.empty((h + 2 * width, w + 2 * width, 3))
    out[:] = colour
    out[width:width + h, width:width + w] = img
    return out


def _montage(frames: Sequence[np.ndarray], gap: int) -> np.ndarray:
    h = frames[0].shape[0]
    sep = np.empty((h, gap, 3))
    sep[:] = _GAP
    parts: list[np.ndarray] = []
    for i, f in enumerate(frames):
        if i:
            parts.append(sep)
        parts.append(f)
    return np.concatenate(parts, axis=1)


def _row_title(ranked: Any, i: int, num_frames: int) -> str:
    head = (f"query {int(ranked.query[i])}  ·  id {int(ranked.q_pid[i])}, cam {int(ranked.q_camid[i])}"
            + (f", {num_frames} frames" if num_frames > 1 else ""))
    nv, nh = int(ranked.num_valid[i]), int(ranked.num_matches[i])
    if nh == 0:
        return f"{head}  ·  no true match among {nv} valid gallery entries (skipped by the evaluation)"
    return (f"{head}  ·  AP {100 * float(ranked.ap[i]):.1f}%  ·  first true match at rank "
            f"{int(ranked.first_match[i])}  ·  {nh} true match{'es' if nh > 1 else ''} among {nv} valid")


def plot_ranked_lists(
    ranked: Any,
    query_records: Sequence[Any],
    gallery_records: Sequence[Any],
    *,
    frames_per_query: int = 3,
    image_size: tuple[int, int] = (128, 64),
    title: str | None = None,
):
    """One row per row of ``ranked`` (a ``reidlab.eval.RankedLists``; use ``.head(n)`` to limit it).

    Left: the query's representative frames (``representative_frames``; one image for image datasets)
    framed blue, labelled with the frame numbers. Then its top-k valid gallery entries, nearest first,
    each as its middle frame framed green (true match: same id, another camera) or red (false match),
    labelled with rank, ✓/✗, distance, identity and camera. The row title gives the query's AP, the
    rank of its first true match and its counts. Frames are read from the records' paths
    (``query_records[ranked.query[i]]``, ``gallery_records[ranked.gallery[i, j]]``) and resized to
    ``image_size`` = (H, W). Camera ids are the records' (0-based). Returns the Figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n, k = len(ranked), int(ranked.topk)
    if n == 0:
        raise ValueError("plot_ranked_lists: no query rows to draw")
    h, w = image_size
    border = max(2, round(0.06 * w))
    gap = max(2, round(0.05 * w))
    q_frames = [representative_frames(len(record_paths(query_records[int(q)])), frames_per_query)
                for q in ranked.query]
    m = max(len(f) for f in q_frames)
    q_width = (m * w + (m - 1) * gap + 2 * border) / (w + 2 * border)  # in gallery-cell widths
    # sizes in inches: a gallery cell is cell_w wide; below each image two label lines, above each row
    # its title; the figure's top holds the title and the colour legend
    cell_w = 0.95
    img_h = cell_w * (h + 2 * border) / (w + 2 * border)
    pad_h, head_h, foot_h = 0.62, 0.75, 0.1
    fig_w, fig_h = cell_w * (q_width + 0.35 + k) * 1.08, n * img_h + (n - 1) * pad_h + head_h + foot_h
    fig = plt.figure(figsize=(fig_w, fig_h))
    gs = fig.add_gridspec(n, k + 2, width_ratios=[q_width, 0.35] + [1.0] * k, wspace=0.08,
                          hspace=pad_h / img_h, left=0.01, right=0.99, top=1 - head_h / fig_h,
                          bottom=foot_h / fig_h + 0.3 / fig_h)
    for i in range(n):
        qrec = query_records[int(ranked.query[i])]
        paths = record_paths(qrec)
        frames = [load_frame(paths[j], (h, w)) for j in q_frames[i]]
        ax = fig.add_subplot(gs[i, 0])
        ax.imshow(_framed(_montage(frames, gap), QUERY_COLOUR, border), interpolation="bilinear")
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
        ax.set_anchor("E")
        if len(paths) > 1:
            ax.set_xlabel("frames " + ", ".join(str(j + 1) for j in q_frames[i]) + f" of {len(paths)}",
                          fontsize=7)
        top = gs[i, 0].get_position(fig).y1  # row title at the figure's left edge, above the row
        fig.text(0.01, top + 0.07 / fig_h, _row_title(ranked, i, len(paths)), ha="left", va="bottom",
                 fontsize=8.5, fontweight="bold", color=(0.6, 0.0, 0.0) if ranked.num_matches[i] == 0 else "black")
        for j in range(k):
            ax = fig.add_subplot(gs[i, j + 2])
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            g = int(ranked.gallery[i, j])
            if g < 0:  # padding: the query has fewer than k valid gallery entries
                if j == int(ranked.num_valid[i]):
                    ax.text(0.5, 0.5, "no further\nvalid gallery\nentries", ha="center", va="center",
                            fontsize=7, color="0.4", transform=ax.transAxes)
                continue
            gpaths = record_paths(gallery_records[g])
            img = load_frame(gpaths[(len(gpaths) - 1) // 2], (h, w))
            hit = bool(ranked.match[i, j])
            ax.imshow(_framed(img, MATCH_COLOUR if hit else MISMATCH_COLOUR, border), interpolation="bilinear")
            ax.set_xlabel(f"{j + 1}. {'✓' if hit else '✗'} d={float(ranked.distance[i, j]):.3g}\n"
                          f"id {int(ranked.g_pid[i, j])} · cam {int(ranked.g_camid[i, j])}", fontsize=7,
                          color=MATCH_COLOUR if hit else MISMATCH_COLOUR, labelpad=2)
    handles = [Patch(facecolor="white", edgecolor=QUERY_COLOUR, linewidth=2.5, label="query"),
               Patch(facecolor="white", edgecolor=MATCH_COLOUR, linewidth=2.5,
                     label="✓ true match (same id, other camera)"),
               Patch(facecolor="white", edgecolor=MISMATCH_COLOUR, linewidth=2.5, label="✗ false match")]
    fig.suptitle(title or f"ranked lists: top-{k} valid gallery entries per query (same-camera "
                 "entries of the query's identity removed)", x=0.01, y=1 - 0.05 / fig_h, ha="left", va="top",
                 fontsize=10)
    fig.legend(handles=handles, loc="upper left", ncol=3, fontsize=8, frameon=False, handlelength=1.2,
               bbox_to_anchor=(0.005, 1 - 0.27 / fig_h), borderaxespad=0.0)
    return fig
