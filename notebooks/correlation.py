# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Feature correlation of the embedding dimensions, runs side by side
#
# ABD-Net's argument made visible: attention tends to put features in a compact subspace (large off-diagonal
# correlations between embedding dimensions, low effective rank); orthogonality regularisation spreads them.
# Each panel is the Pearson correlation of the embedding dimensions over the test tracklets (query + gallery)
# of one run; the numbers use all dimensions. With N tracklets the effective rank cannot exceed N − 1: compare
# runs on the same tracklets.
#
# ```bash
# python -m reidlab run correlation -p prefix fusion-
# python -m reidlab run correlation -p runs '[abd_ablation-baseline-s0, abd_ablation-CAM+PAM+OF+OW-s0]'
# ```

# %% tags=["parameters"]
results_dir: str = "results"  # results folder holding runs/ (tables and figures are written there too)
runs: list = []  # run ids to analyse ([]: the lowest seed of every finished variant whose id starts with prefix)
prefix: str = ""  # run-id prefix selecting the runs, e.g. "fusion-" for the main sweep
figures_dir: str = ""  # where figures go ("": <results_dir>/figures)
tag: str = ""  # suffix for figure/table names, to keep several analyses apart
split: str = "test"  # whose embeddings: test (query + gallery) | gallery | query | train
max_items: int = 300  # tracklets per run (a seeded random subset; 0: all)
max_dims: int = 64  # dimensions drawn per heatmap (the summary numbers use all)
which: str = "last"  # checkpoint: last (what tables report) | best (selected on the test split)
seed: int = 0  # seed of the tracklet subset

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from pathlib import Path
from IPython.display import Markdown, display

import reidlab.analysis as A
from reidlab.notebook import enter_workspace
from reidlab.runs.records import atomic_write_text
from reidlab.runs.tables import format_markdown
from reidlab.viz import save_figure

enter_workspace()
results = Path(results_dir)
figures = Path(figures_dir) if figures_dir else results / "figures"
suffix = f"-{tag}" if tag else ""
run_dirs = A.select_runs(results, runs, prefix)
if not run_dirs:
    raise FileNotFoundError(f"no finished runs in {results / 'runs'} matching runs={runs} prefix={prefix!r}")
labels = {d: A.variant_label(d, prefix) for d in run_dirs}
print("runs:", *[f"{labels[d]} ({d.name})" for d in run_dirs], sep="\n  ")
from reidlab.engine import load_run_model
from reidlab.viz.heatmaps import correlation_heatmaps

# %%
matrices, summaries, rows = {}, {}, []
for d in run_dirs:
    model, cfg, ds = load_run_model(d, which)
    records = list(ds.query) + list(ds.gallery) if split == "test" else getattr(ds, split)
    feats, _ = A.split_features(model, cfg, records, max_items=max_items, seed=seed)
    label = labels[d]
    matrices[label] = A.feature_correlation(feats)
    summaries[label] = A.correlation_summary(feats)
    desc = model.describe()
    rows.append({"variant": label, "run": d.name, "fusion class": (desc.get("fusion") or {}).get("class"),
                 "abd": bool(desc.get("abd")), **summaries[label]})
table = pd.DataFrame(rows)
table

# %%
fig = correlation_heatmaps(matrices, summaries, max_dims=max_dims,
                           title=f"embedding-dimension correlation ({split}, {which} checkpoint)")
save_figure(fig, figures / f"correlation{suffix}.png")
plt.show()
shown = table.assign(**{c: table[c].map(lambda v: f"{v:.3f}") for c in ("mean_abs_offdiag", "effective_rank_ratio")},
                     effective_rank=table["effective_rank"].map(lambda v: f"{v:.1f}"),
                     dims=table["dims"].astype(int), samples=table["samples"].astype(int))
atomic_write_text(results / "tables" / f"correlation{suffix}.md", "# Embedding correlation\n\n" + format_markdown(shown))
atomic_write_text(results / "tables" / f"correlation{suffix}.csv", table.to_csv(index=False))
