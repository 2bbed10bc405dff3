"""Feature-correlation heatmaps side by side (ABD-Net's argument made visible)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["correlation_heatmaps"]


def correlation_heatmaps(
    matrices: Mapping[str, Any],
    summaries: Mapping[str, Mapping[str, float]] | None = None,
    *,
    max_dims: int = 64,
    max_cols: int = 3,
    title: str | None = None,
):
    """Correlation matrices (D, D) side by side (`max_cols` per row), diverging colours centred at 0 on
    [−1, 1].

    matrices: label -> (D, D) correlation matrix. Only the first `max_dims` dimensions are drawn (a
    2048-d heatmap is unreadable); the summary numbers in `summaries` (label -> {"mean_abs_offdiag",
    "effective_rank", "dims"}, from `reidlab.analysis.correlation_summary`) go in each panel's title and
    are computed on all dimensions.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if not matrices:
        raise ValueError("correlation_heatmaps: no matrices given")
    n = len(matrices)
    ncols = min(n, max_cols)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols + 0.8, 4.4 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for i, (ax, (label, mat)) in enumerate(zip(axes.flat, matrices.items())):
        m = np.asarray(mat, dtype=float)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise ValueError(f"correlation_heatmaps: {label!r} is not a square matrix, shape {m.shape}")
        k = min(max_dims, m.shape[0])
        sns.heatmap(m[:k, :k], ax=ax, cmap="RdBu_r", center=0, vmin=-1, vmax=1, square=True,
                    xticklabels=False, yticklabels=False, cbar=(i % ncols == ncols - 1 or i == n - 1))
        lines = [str(label)]
        if summaries and label in summaries:
            s = summaries[label]
            lines.append(f"mean|offdiag| {s['mean_abs_offdiag']:.3f}")
            lines.append(f"eff. rank {s['effective_rank']:.1f} / {int(s.get('dims', m.shape[0]))}")
        if k < m.shape[0]:
            lines.append(f"(first {k} of {m.shape[0]} dims shown)")
        ax.set_title("\n".join(lines), fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
