"""Figures of the fusion study, drawn from its stored tables (``reidlab.study.report.load_study``).

Every function takes the operators table (one row per corruption rate x method, mAP/Δ in percent with
CI bounds) or the cosine table and returns a matplotlib Figure; nothing is computed beyond selection.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

__all__ = ["plot_tau_curve", "plot_corruption_curves", "plot_oracle_gap", "plot_weight_shares",
           "plot_cosine_lag", "plot_correlation"]

_TAU = re.compile(r"^softmax_cosine_t(?P<tau>[0-9.]+)(?P<tr>_tracklet)?$")


def _errorbar(ax, x, r: pd.DataFrame, col: str, **kw) -> None:
    y = r[col].to_numpy()
    ax.errorbar(x, y, yerr=[y - r[f"{col}_lo"].to_numpy(), r[f"{col}_hi"].to_numpy() - y], capsize=3, marker="o", **kw)


def plot_tau_curve(ops: pd.DataFrame, rates: list[float] | None = None):
    """Δ mAP of softmax_cosine vs mean as a function of τ (log axis), clip centre vs tracklet centre, one
    panel per corruption rate; error bars are the paired 95 % CIs."""
    import matplotlib.pyplot as plt

    t = ops[ops.method.str.match(_TAU)].copy()
    parts = t.method.str.extract(_TAU)
    t["tau"], t["centre"] = parts.tau.astype(float), np.where(parts.tr.notna(), "tracklet centre", "clip centre")
    rates = rates or sorted(t.rate.unique())
    fig, axes = plt.subplots(1, len(rates), figsize=(3.6 * len(rates), 3.4), sharey=True, squeeze=False)
    for ax, rate in zip(axes[0], rates):
        for centre, g in t[t.rate == rate].groupby("centre"):
            g = g.sort_values("tau")
            _errorbar(ax, g.tau, g, "delta", label=centre)
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(f"test corruption {rate:g}")
        ax.set_xlabel("τ")
    axes[0][0].set_ylabel("Δ mAP vs mean (points)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle("softmax_cosine: how small τ must be before weighting matters")
    fig.tight_layout()
    return fig


def plot_corruption_curves(ops: pd.DataFrame, methods: list[str]):
    """mAP vs test corruption rate for ``methods`` (95 % CIs); the oracle uses ground truth."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for m in methods:
        g = ops[ops.method == m].sort_values("rate")
        if len(g):
            _errorbar(ax, g.rate, g, "mAP", label=m, ls="--" if "oracle" in m else "-")
    ax.set_xlabel("test corruption rate (share of frames corrupted)")
    ax.set_ylabel("mAP (%)")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("mAP vs corruption: same trunks, same identities")
    fig.tight_layout()
    return fig


def plot_oracle_gap(ops: pd.DataFrame, methods: list[str]):
    """Δ mAP vs mean by corruption rate for ``methods`` (the oracle first): the room any frame weighting
    has, and how much of it each operator takes."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    rates = sorted(ops.rate.unique())
    width = 0.8 / max(len(methods), 1)
    for i, m in enumerate(methods):
        g = ops[ops.method == m].set_index("rate").reindex(rates)
        x = np.arange(len(rates)) + (i - (len(methods) - 1) / 2) * width
        y = g.delta.to_numpy()
        ax.bar(x, y, width, label=m, yerr=[y - g.delta_lo.to_numpy(), g.delta_hi.to_numpy() - y], capsize=2)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(np.arange(len(rates)), [f"{r:g}" for r in rates])
    ax.set_xlabel("test corruption rate")
    ax.set_ylabel("Δ mAP vs mean (points, 95% CI)")
    ax.legend(fontsize=7)
    ax.set_title("oracle gap: what dropping the corrupted frames is worth")
    fig.tight_layout()
    return fig


def plot_weight_shares(ops: pd.DataFrame, rate: float):
    """Per method at ``rate``: weight share on corrupted frames relative to uniform (1 = no effect), and
    the total-variation distance of its weights from the plain mean's at the same scope."""
    import matplotlib.pyplot as plt

    t = ops[(ops.rate == rate) & ops.share_ratio.notna()].sort_values("share_ratio")
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.28 * len(t) + 1.6), sharey=True)
    axes[0].barh(t.method, t.share_ratio)
    axes[0].axvline(1, color="0.3", lw=0.8)
    axes[0].set_xlabel("weight share on corrupted frames / uniform share")
    axes[1].barh(t.method, t.tv_from_reference)
    axes[1].set_xlabel("how far the weights move: TV distance from the mean's weights")
    fig.suptitle(f"does the weighting weaken bad frames? (test corruption {rate:g})")
    fig.tight_layout()
    return fig


def plot_cosine_lag(cos: pd.DataFrame):
    """Frame-to-frame cosine vs lag (mean ± sd over pairs, averaged over seeds) with the same-identity /
    other-camera and different-identity baselines as horizontal bands."""
    import matplotlib.pyplot as plt

    c = cos.groupby(["kind", "lag"], dropna=False, as_index=False)[["cos", "sd"]].mean()
    lag = c[c.kind == "lag"].sort_values("lag")
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.errorbar(lag.lag, lag.cos, yerr=lag.sd, marker="o", capsize=3, label="same tracklet, lag k")
    for (kind, colour) in (("same id, other camera", "tab:green"), ("different id", "tab:red")):
        r = c[c.kind == kind]
        if len(r):
            m, s = float(r.cos.iloc[0]), float(r.sd.iloc[0])
            ax.axhline(m, color=colour, label=f"{kind}: {m:.2f}")
            ax.axhspan(m - s, m + s, color=colour, alpha=0.12)
    ax.set_xlabel("lag (frames)")
    ax.set_ylabel("cosine (post-BNNeck)")
    ax.legend(fontsize=8)
    ax.set_title("are frames in a window convergent? — against baselines")
    fig.tight_layout()
    return fig


def plot_correlation(corr: np.ndarray, title: str):
    """Heatmap of a (D, D) correlation matrix (centred colour scale)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    im = ax.imshow(np.asarray(corr, dtype=float), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("embedding dimension")
    ax.set_ylabel("embedding dimension")
    fig.tight_layout()
    return fig
