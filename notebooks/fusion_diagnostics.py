# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Fusion diagnostics: the open questions of the fusion study, answered with numbers
#
# (a) **Are frame features within a time window convergent?** Cosine similarity of the per-frame features each
# run's fusion receives (its input, before BNNeck) vs their distance in frames, within tracklets. Flat and
# high: convergent; decaying: the walk changes the features.
#
# (b) **The weight floor of softmax-cosine.** w_t = softmax_t(cos(f_t, c)/τ): at τ = 1 a frame opposite the
# centre still keeps e⁻¹/(e + e⁻¹) ≈ 0.119 against one on it (the lab notes). On real frame features, how low
# does the smallest weight actually go for each τ, against the worst case 1/(1 + (T−1)e^{2/τ}) and the uniform
# 1/T?
#
# (c) **Does weighting weaken problem frames?** The share of fusion weight on corrupted frames (synthetic
# ground truth) per variant, against the uniform share: ratio < 1 means the variant down-weights corrupted
# frames.
#
# ```bash
# python -m reidlab run fusion_diagnostics -p prefix fusion-
# ```

# %% tags=["parameters"]
results_dir: str = "results"  # results folder holding runs/ (tables and figures are written there too)
runs: list = []  # run ids to analyse ([]: the lowest seed of every finished variant whose id starts with prefix)
prefix: str = ""  # run-id prefix selecting the runs, e.g. "fusion-" for the main sweep
figures_dir: str = ""  # where figures go ("": <results_dir>/figures)
tag: str = ""  # suffix for figure/table names, to keep several analyses apart
split: str = "gallery"  # tracklets analysed: gallery | query
max_tracklets: int = 80  # tracklets per run (a seeded random subset; 0: all)
max_distance: int = 12  # largest frame distance in (a)
taus: list = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]  # temperatures for (b)
which: str = "last"  # checkpoint: last | best
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
import seaborn as sns
from reidlab.engine import load_run_model

# %% [markdown]
# ### Per-frame features and fusion weights of every run

# %%
per_run = {}
for d in run_dirs:
    model, cfg, ds = load_run_model(d, which)
    recs = list(getattr(ds, split))
    if max_tracklets and len(recs) > max_tracklets:  # the same subset for every run
        pick = np.random.default_rng(seed).choice(len(recs), max_tracklets, replace=False)
        recs = [recs[i] for i in sorted(pick)]
    T = cfg.data.seq_len
    frame_feats, windows = [], []
    for r in recs:
        inputs, _, corruption = A.load_frames(r, cfg)
        _, f = A.clip_forward(model, inputs)  # per-frame features as the fusion receives them
        frame_feats.append((f, corruption))
        win = A.corrupted_window(r, T)
        aux, _ = A.clip_forward(model, inputs[win])  # the clip length the model was trained on
        windows.append((f[win], A.frame_weights_from_aux(aux.get("fusion"), T)[0], [corruption[i] for i in win]))
    desc = model.describe()
    per_run[labels[d]] = {"run": d.name, "T": T, "fusion": (desc.get("fusion") or {}).get("name"),
                          "options": (desc.get("fusion") or {}).get("options") or {}, "frames": frame_feats,
                          "windows": windows}
    print(f"{labels[d]}: {len(recs)} tracklets, {sum(len(f) for f, _ in frame_feats)} frames")

# %% [markdown]
# ## (a) cosine similarity vs frame distance

# %%
rows = []
for label, r in per_run.items():
    every = A.cosine_vs_frame_distance([f for f, _ in r["frames"]], max_distance)
    clean = A.cosine_vs_frame_distance(
        [f[[c is None for c in corr]] for f, corr in r["frames"] if sum(c is None for c in corr) > 1], max_distance)
    rows += [every.assign(variant=label, frames="all"), clean.assign(variant=label, frames="clean only")]
cos_df = pd.concat(rows, ignore_index=True)
fig, ax = plt.subplots(figsize=(7, 4))
sns.lineplot(data=cos_df, x="distance", y="mean_cos", hue="variant", style="frames", marker="o", ax=ax)
ax.set_xlabel("distance between frames (frames)")
ax.set_ylabel("mean cosine similarity")
ax.set_title("(a) within-tracklet similarity of frame embeddings vs frame distance")
ax.grid(alpha=0.3)
sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), frameon=False)
save_figure(fig, figures / f"diag_cosine_vs_distance{suffix}.png")
plt.show()
cos_wide = cos_df[cos_df["frames"] == "all"].pivot(index="distance", columns="variant", values="mean_cos")
cos_wide.round(3)

# %% [markdown]
# ## (b) realised softmax-cosine weight floor vs τ

# %%
floor_rows = []
for label, r in per_run.items():
    feats = [w[0] for w in r["windows"]]
    df = A.weight_floor_vs_tau(feats, taus).assign(variant=label, source="formula on this run's frame features")
    floor_rows.append(df)
    if r["fusion"] == "softmax_cosine":  # what the trained operator itself did, at its own tau
        real = A.realised_weight_floor(np.stack([w[1] for w in r["windows"]]))
        tau_run = float(r["options"].get("tau", 1.0))
        floor_rows.append(pd.DataFrame([{**real, "tau": tau_run, "bound": A.weight_floor_bound(r["T"], tau_run),
                                         "variant": label, "source": "trained operator (aux weights)"}]))
floor_df = pd.concat(floor_rows, ignore_index=True)
T0 = next(iter(per_run.values()))["T"]
fig, ax = plt.subplots(figsize=(7, 4))
for (label, source), g in floor_df.groupby(["variant", "source"], sort=False):
    ax.plot(g["tau"], g["mean_min_weight"], marker="o" if source.startswith("formula") else "*",
            ms=6 if source.startswith("formula") else 14, ls="-" if source.startswith("formula") else "none",
            label=f"{label}: {source}")
grid = np.geomspace(min(taus), max(taus), 60)
ax.plot(grid, [A.weight_floor_bound(T0, t) for t in grid], "k:", label="worst case 1/(1+(T-1)e^{2/τ})")
ax.axhline(1 / T0, color="gray", ls="--", label="uniform 1/T (mean)")
ax.set_xscale("log")
ax.set_xlabel("τ")
ax.set_ylabel("smallest frame weight in a clip (mean over clips)")
ax.set_title(f"(b) softmax-cosine weight floor vs τ (T = {T0})")
ax.grid(alpha=0.3)
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
save_figure(fig, figures / f"diag_weight_floor{suffix}.png")
plt.show()
floor_df.round(4)

# %% [markdown]
# ## (c) share of fusion weight on corrupted frames

# %%
share = A.corruption_share_table([(label, w, corr) for label, r in per_run.items() for _, w, corr in r["windows"]])
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(share["variant"], share["ratio"], color="tab:purple")
ax.axhline(1.0, color="gray", ls="--", label="uniform weighting (mean)")
ax.set_ylabel("weight share on corrupted / uniform share")
ax.set_title("(c) does the fusion weaken corrupted frames? (< 1: yes)")
ax.tick_params(axis="x", rotation=30)
ax.legend(frameon=False)
save_figure(fig, figures / f"diag_corruption_share{suffix}.png")
plt.show()
share.round(4)


# %%
def _fmt(df):
    return df.assign(**{c: df[c].map(lambda v: f"{v:.4f}") for c in df.columns if df[c].dtype.kind == "f"})

run_list = ", ".join(f"{k} ({v['run']})" for k, v in per_run.items())
text = ["# Fusion diagnostics", "", f"Runs: {run_list}; {split} tracklets, at most {max_tracklets} per run.", "",
        "## (a) mean cosine similarity of frame embeddings vs frame distance (all frames)", "",
        format_markdown(_fmt(cos_wide.reset_index())), "## (b) softmax-cosine weight floor vs tau", "",
        format_markdown(_fmt(floor_df)), "## (c) share of fusion weight on corrupted frames", "",
        format_markdown(_fmt(share))]
atomic_write_text(results / "tables" / f"diagnostics{suffix}.md", "\n".join(text))
atomic_write_text(results / "tables" / f"diagnostics_cosine{suffix}.csv", cos_df.to_csv(index=False))
atomic_write_text(results / "tables" / f"diagnostics_weight_floor{suffix}.csv", floor_df.to_csv(index=False))
atomic_write_text(results / "tables" / f"diagnostics_corruption_share{suffix}.csv", share.to_csv(index=False))
