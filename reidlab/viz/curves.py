"""Per-epoch metric curves with seed bands."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

__all__ = ["plot_curves", "plot_loss_curves"]

_TITLES = {"mAP": "mAP (%)", "rank1": "Rank-1 (%)", "rank5": "Rank-5 (%)", "rank10": "Rank-10 (%)",
           "mINP": "mINP (%)"}


def plot_curves(
    data: pd.DataFrame,
    metrics: Sequence[str] = ("mAP", "rank1", "rank5"),
    *,
    hue: str = "variant",
    title: str | None = None,
):
    """Metric vs epoch, one line per `hue` value, a ±1 std band over seeds where a variant has several.

    data: long frame with columns epoch, `hue`, seed and each metric in percent (as made by
    `reidlab.runs.tables.metrics_long`; for a single run, any frame with epoch + metrics works and
    `hue` may be absent). Returns the Figure (one panel per metric).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    if data.empty:
        raise ValueError("plot_curves: no evaluated epochs to plot (empty frame)")
    missing = [m for m in ("epoch", *metrics) if m not in data.columns]
    if missing:
        raise ValueError(f"plot_curves: missing columns {missing}; has {list(data.columns)}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    use_hue = hue if hue in data.columns and data[hue].nunique() > 0 else None
    for ax, m in zip(axes[0], metrics):
        sns.lineplot(data=data, x="epoch", y=m, hue=use_hue, errorbar="sd", marker="o", ax=ax,
                     legend=(ax is axes[0][-1]) and use_hue is not None)
        ax.set_title(_TITLES.get(m, m))
        ax.set_ylabel("")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if use_hue is not None and axes[0][-1].get_legend() is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_loss_curves(metrics: pd.DataFrame, columns: Sequence[str] | None = None, *, title: str | None = None):
    """Training loss parts vs epoch for one run (metrics.csv columns `loss*`)."""
    import matplotlib.pyplot as plt

    cols = list(columns) if columns is not None else [c for c in metrics.columns if c.startswith("loss")]
    cols = [c for c in cols if c in metrics.columns and metrics[c].notna().any()]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for c in cols:
        ax.plot(metrics["epoch"], metrics[c], marker="o", label=c)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if cols:
        ax.legend(frameon=False)
    ax.set_title(title or "training loss")
    fig.tight_layout()
    return fig
