# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Attention maps and per-frame fusion weights on one tracklet
#
# - top: the tracklet's frames, corrupted frames (synthetic ground truth) framed in red with their kind;
#   beneath, each variant's per-frame fusion weights (dashed: the uniform 1/T of `mean`);
# - then, per run with attention: where CAM / PAM rewrote the features (‖out − x‖ per position, ABD runs) and
#   the first-level `template_mask` masks α, β, upsampled and overlaid on the frames.
#
# ```bash
# python -m reidlab run attention -p prefix fusion- -p tracklet 3
# ```

# %% tags=["parameters"]
results_dir: str = "results"  # results folder holding runs/ (tables and figures are written there too)
runs: list = []  # run ids to analyse ([]: the lowest seed of every finished variant whose id starts with prefix)
prefix: str = ""  # run-id prefix selecting the runs, e.g. "fusion-" for the main sweep
figures_dir: str = ""  # where figures go ("": <results_dir>/figures)
tag: str = ""  # suffix for figure/table names, to keep several analyses apart
split: str = "query"  # split the tracklet comes from: query | gallery
tracklet: int = -1  # tracklet index in that split (-1: the first with both corrupted and clean frames)
num_frames: int = 0  # frames shown (0: the seq_len of the first run); a window around the first corrupted frame
alpha: float = 0.5  # opacity of the overlaid maps
which: str = "last"  # checkpoint: last | best

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
from reidlab.viz.overlays import attention_overlay, fusion_weight_strip

# %%
models = {d: load_run_model(d, which) for d in run_dirs}
_, cfg0, ds0 = models[run_dirs[0]]
records = getattr(ds0, split)
if tracklet < 0:
    tracklet = next((i for i, r in enumerate(records)
                     if r.corruption and any(c is not None for c in r.corruption) and any(c is None for c in r.corruption)), 0)
trk = records[tracklet]
T = num_frames or cfg0.data.seq_len
window = A.corrupted_window(trk, T)
print(f"{split} tracklet {tracklet}: pid {trk.pid}, camera {trk.camid}, {len(trk.paths)} frames; showing frames {window}")
print("corruption:", [trk.corruption[i] if trk.corruption else None for i in window])

# %%
weights, overlays = {}, {}
for d, (model, cfg, _) in models.items():
    inputs, images, corruption = A.load_frames(trk, cfg, window)
    aux, _ = A.clip_forward(model, inputs)
    weights[labels[d]] = A.frame_weights_from_aux(aux.get("fusion"), len(window))[0]
    maps = A.attention_frame_maps(model, inputs)
    masks = A.template_masks_per_frame(aux.get("fusion"), len(window))
    if masks is not None:
        maps["template α/β"] = masks
    if maps:
        overlays[labels[d]] = maps
fig = fusion_weight_strip(images, weights, corruption, frame_indices=window,
                          title=f"per-frame fusion weights, {split} tracklet {tracklet} (red: corrupted frames)")
save_figure(fig, figures / f"fusion_weights{suffix}.png")
plt.show()
pd.DataFrame(weights, index=[f"t={i} {c or ''}" for i, c in zip(window, corruption)]).round(3)

# %%
if not overlays:
    print("no run with CAM/PAM attention or template masks among", [labels[d] for d in run_dirs])
for label, maps in overlays.items():
    fig = attention_overlay(images, maps, alpha=alpha, title=f"{label}: attention on {split} tracklet {tracklet}",
                            frame_labels=[f"t={i} {c or ''}" for i, c in zip(window, corruption)])
    save_figure(fig, figures / f"attention-{label}{suffix}.png")
    plt.show()
