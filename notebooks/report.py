# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Report: every table and figure from `results/runs/`
#
# Regenerates `results/tables/` (per-epoch tables in the lab-notes format, the summary with the seed spread
# and the difference to the `mean` baseline), the per-epoch curves with seed bands, and — with `analyses` —
# re-runs the correlation, attention and fusion-diagnostics notebooks on the runs (their executed copies go to
# `results/notebooks/`). Nothing is trained here.
#
# ```bash
# python -m reidlab run report -p prefix fusion-
# ```

# %% tags=["parameters"]
results_dir: str = "results"  # results folder holding runs/
prefix: str = ""  # run-id prefix of the runs for curves and analyses ("": all); the tables use every run
baseline: str = ""  # baseline variant of the summary ("": the one that fused with `mean`)
include_unfinished: bool = False  # also tabulate runs that did not finish
figures_dir: str = ""  # where figures go ("": <results_dir>/figures)
analyses: bool = True  # also re-run the correlation, attention and fusion_diagnostics notebooks
analysis_parameters: dict = {}  # extra parameters per analysis notebook, e.g. {"fusion_diagnostics": {"max_tracklets": 40}}

# %%
import matplotlib.pyplot as plt
from pathlib import Path
from IPython.display import Image, Markdown, display

from reidlab.notebook import enter_workspace, run_notebook
from reidlab.runs.tables import group_runs, load_runs, metrics_long, write_tables
from reidlab.viz import save_figure
from reidlab.viz.curves import plot_curves

enter_workspace()
results = Path(results_dir).absolute()
figures = Path(figures_dir).absolute() if figures_dir else results / "figures"

# %%
written = write_tables(results / "runs", results / "tables", baseline=baseline or None,
                       include_unfinished=include_unfinished)
print(*written, sep="\n")
display(Markdown((results / "tables" / "summary.md").read_text()))

# %%
display(Markdown((results / "tables" / "per_epoch.md").read_text()))

# %%
runs = [r for r in load_runs(results / "runs", include_unfinished=include_unfinished) if r.run_id.startswith(prefix)]
groups = group_runs(runs)
fig = plot_curves(metrics_long(groups), title="per-epoch test metrics, mean ± 1 std over seeds")
save_figure(fig, figures / "curves.png")
plt.show()

# %% [markdown]
# ## Analyses (correlation, attention, fusion diagnostics)

# %%
if analyses:
    for name in ("correlation", "attention", "fusion_diagnostics"):
        params = {"prefix": prefix, "figures_dir": str(figures), **analysis_parameters.get(name, {})}
        print(name, "->", run_notebook(name, params, results_dir=results))
    for png in sorted(figures.glob("*.png")):
        display(Markdown(f"**{png.name}**"), Image(filename=str(png)))
