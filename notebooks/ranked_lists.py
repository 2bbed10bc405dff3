# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ranked lists of a run
#
# For each query tracklet of a finished run: its first, middle and last frames (blue), then its top-k gallery
# tracklets nearest first, each shown by its middle frame with a green (true match: same identity, another
# camera) or red (false match) border, its distance, identity and camera. The protocol is the run's own
# evaluation: gallery entries of the query's identity seen by the query's camera are removed, junk is dropped,
# distances use the run's metric (and re-ranking when the run re-ranks); the mean of the rows' AP is the run's
# mAP. Rows are sorted so the worst queries come first (AP ascending); queries without any true match come last.
#
# ```bash
# python -m reidlab run ranked_lists -p run_dir results/runs/fusion-mean-s0
# python -m reidlab rank results/runs/fusion-mean-s0 --order worst --topk 10    # the same, from the shell
# ```
#
# A published record (`results/runs/<id>`, no checkpoints) finds its checkpoint through its config
# (`<results_dir>/runs/<id>/checkpoints`, e.g. `work/main/runs/<id>` for the main job's runs).

# %% tags=["parameters"]
run_dir: str = "results/runs/fusion-mean-s0"  # the run: its folder (checkpoint found through its config)
topk: int = 10  # gallery entries shown per query
queries: int = 8  # query rows per figure
orders: list = ["worst", "best"]  # one figure per order: worst | best | random | first-match
seed: int = 0  # seed of the "random" order
results_dir: str = "results"  # figures go to <results_dir>/figures, the per-query CSV to <results_dir>/tables

# %%
import matplotlib.pyplot as plt
from pathlib import Path
from IPython.display import display

from reidlab.eval import order_queries
from reidlab.notebook import enter_workspace
from reidlab.runs.ranked import rank_run, ranked_lists, ranked_table, write_ranked_csv
from reidlab.viz import save_figure

enter_workspace()
results = Path(results_dir).absolute()
ranking = rank_run(run_dir, topk=topk)  # one feature extraction serves every order below
run_id = ranking.run_id
summary = ranking.ranked.summary()
print(f"run {run_id}: {len(ranking.ranked)} queries ({int(summary['num_skipped_queries'])} without a true match), "
      f"mAP {100 * summary['mAP']:.1f}%, rank-1 {100 * summary['rank1']:.1f}% (checkpoint {ranking.checkpoint.name})")

# %% [markdown]
# ## The ranked lists, one figure per order

# %%
for order in orders:
    ranked, fig = ranked_lists(run_dir, topk=topk, queries=queries, order=order, seed=seed, ranking=ranking)
    save_figure(fig, results / "figures" / f"ranked_{run_id}_{order}.png")
    plt.show()

# %% [markdown]
# ## Every query, worst first
#
# One row per query: AP, the rank of its first true match (which may lie beyond k; 0 = none), how many true
# matches and valid gallery entries it has, then per rank the gallery entry's index, identity, camera, distance
# and whether it matches. The same table is written as CSV for sorting and filtering elsewhere.

# %%
worst = ranking.ranked.take(order_queries(ranking.ranked, "worst"))
csv_path = write_ranked_csv(worst, results / "tables" / f"ranked_{run_id}.csv")
print(csv_path)
display(ranked_table(worst).iloc[:, :8].head(15))
