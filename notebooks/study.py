# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The fusion study: tables and figures
#
# Reads `<results_dir>/study/` (written by `python -m reidlab main`, see `reidlab.study.pipeline`) and draws
# the τ curve, the corruption curves, the oracle gap, the weight shares, the frame-cosine baselines and the
# embedding correlation. Nothing is trained or extracted here.
#
# ```bash
# python -m reidlab run study
# ```

# %% tags=["parameters"]
results_dir: str = "results"  # results folder holding study/ and tables/
figures_dir: str = ""  # where figures go ("": <results_dir>/figures)

# %%
import matplotlib.pyplot as plt
import numpy as np
from pathlib import Path
from IPython.display import Markdown, display

from reidlab.notebook import enter_workspace
from reidlab.study.report import load_study, write_study_tables
from reidlab.viz import save_figure
from reidlab.viz.study import (plot_corruption_curves, plot_correlation, plot_cosine_lag, plot_oracle_gap,
                               plot_tau_curve, plot_weight_shares)

enter_workspace()
results = Path(results_dir).absolute()
figures = Path(figures_dir).absolute() if figures_dir else results / "figures"
ops, cos, protocol, study = load_study(results / "study")
base = float(protocol["base_corruption_rate"])
for p in write_study_tables(results / "study", results / "tables"):
    if p.suffix == ".md":
        display(Markdown(p.read_text()))

# %%
fig = plot_tau_curve(ops)
save_figure(fig, figures / "study_tau.png")
plt.show()

# %%
curves = ["mean", "oracle", "mean_tracklet", "max", "mean_l2", "spherical", "softmax_cosine_t1",
          "softmax_cosine_t0.01_tracklet", "head:temporal_attention", "head:template_mask"]
fig = plot_corruption_curves(ops, curves)
save_figure(fig, figures / "study_corruption.png")
plt.show()
fig = plot_oracle_gap(ops, ["oracle", "softmax_cosine_t0.01_tracklet", "spherical", "max"])
save_figure(fig, figures / "study_oracle_gap.png")
plt.show()

# %%
fig = plot_weight_shares(ops, base)
save_figure(fig, figures / "study_weights.png")
plt.show()
fig = plot_cosine_lag(cos)
save_figure(fig, figures / "study_cosine_lag.png")
plt.show()

# %%
corr_file = results / "study" / "correlation.npz"
if corr_file.exists():
    c = study["heads"].get("correlation", {})
    with np.load(corr_file) as z:
        fig = plot_correlation(z["frames_bn"], f"per-frame post-BNNeck features, mean trunk seed 0\n"
                               f"{c.get('samples')} samples for {c.get('dims')} dims")
    save_figure(fig, figures / "study_correlation.png")
    plt.show()
