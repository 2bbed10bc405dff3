"""Write notebooks/*.ipynb from the cell sources below (stored without outputs).

    python tools/make_notebooks.py           # rewrite every notebook
    python tools/make_notebooks.py --check   # exit 1 if a stored notebook differs from this source

Why a generator: notebooks diff badly; this file is the reviewed source, and the check keeps the two in
step. Conventions every notebook follows (papermill and JupyterLab both run them top to bottom):
- the first code cell is tagged `parameters` and holds plain literals only, one per line, documented as
  `name: type = value  # help` (what `papermill.inspect_notebook` and `reidlab run` validate against);
- everything derived from parameters happens in the next cell (papermill does not recompute defaults);
- cells call into reidlab and plot; figures are saved as PNG (reidlab.viz.save_figure) and shown inline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "notebooks"

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

# ----------------------------------------------------------------------------------------------------
# shared cell fragments
# ----------------------------------------------------------------------------------------------------

TRAIN_DATA_PARAMS = '''\
dataset: str = "synthetic"  # dataset: synthetic | mars | dukemtmcvidreid | ilidsvid | prid2011 (image models: market1501, ...)
root: str = ""  # dataset folder ("" = data/synthetic, generated on first use)
synthetic: dict = {}  # synthetic-world knobs for ensure_world, e.g. {"ids": 60, "cams": 3} (see reidlab.data.synthetic)
height: int = 64  # input height in pixels
width: int = 32  # input width in pixels
seq_len: int = 4  # frames per training clip and per dense test chunk'''

TRAIN_RUN_PARAMS = '''\
p: int = 8  # identities per batch
k: int = 4  # tracklets per identity per batch
lr: float = 0.00035  # Adam learning rate
epochs: int = 6  # training epochs
eval_every: int = 2  # evaluate every N epochs (the last epoch is always evaluated)
steps_per_epoch: int = 0  # optimiser steps per epoch (0 = one pass of the identity sampler)
seed: int = 0  # seed of data order, frame sampling and initialisation
max_minutes: float = 0.0  # time budget in minutes (0 = none); running the notebook again resumes the run
device: str = "auto"  # auto | cpu | cuda | cuda:N
overrides: dict = {}  # further RunConfig keys, dotted, e.g. {"optim.schedule": "step"}
run_id: str = ""  # run folder name ("" = derived from the parameters)
results_dir: str = "results"  # results folder; the run is filed in <results_dir>/runs/<run_id>
force: bool = False  # discard a finished run with this id and train it again
progress: bool = True  # progress bars while training'''

TRAIN_RESULTS = '''\
record = train(cfg, force=force, progress=progress)
print(record)
status = record.status or {}
assert status.get("state") in ("finished", "budget"), f"run did not finish: {status}"'''

TRAIN_PROVENANCE = '''\
# what was actually built and how it was evaluated (read back from the run record)
model_desc, protocol = record.model, record.protocol
display(Markdown(
    f"**model** `{model_desc.get('class')}` — backbone `{model_desc.get('backbone')}`, "
    f"fusion `{(model_desc.get('fusion') or {}).get('name')}` → `{(model_desc.get('fusion') or {}).get('class')}` "
    f"options `{(model_desc.get('fusion') or {}).get('options')}`, "
    f"{model_desc.get('num_parameters', 0):,} parameters, embedding {model_desc.get('embedding_dim')}-d  \\n"
    f"**protocol** {protocol_label(protocol)}"
))'''

TRAIN_TABLE_AND_CURVES = '''\
run = load_run(run_dir)
display(Markdown(f"### {run_id}: per-epoch results (lab-notes format)\\n\\n" + lab_table([run])))
fig = plot_curves(metrics_long({run_id: [run]}), title=run_id)
save_figure(fig, run_dir / "figures" / "curves.png")
plt.show()
epochs_df = record.epochs
if len(epochs_df):
    fig = plot_loss_curves(epochs_df, title=f"{run_id}: training loss")
    save_figure(fig, run_dir / "figures" / "loss.png")
    plt.show()'''

ANALYSIS_COMMON_PARAMS = '''\
results_dir: str = "results"  # results folder holding runs/ (tables and figures are written there too)
runs: list = []  # run ids to analyse ([] = the lowest seed of every finished variant whose id starts with prefix)
prefix: str = ""  # run-id prefix selecting the runs, e.g. "fusion-" for the main sweep
figures_dir: str = ""  # where figures go ("" = <results_dir>/figures)
tag: str = ""  # suffix for figure/table names, to keep several analyses apart'''

ANALYSIS_SETUP = '''\
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
print("runs:", *[f"{labels[d]} ({d.name})" for d in run_dirs], sep="\\n  ")'''


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text)


def _parameter_line(line: str) -> str:
    """papermill skips a parameter line with more than one `=`: keep `=` out of the help text."""
    head, sep, help_text = line.partition("  # ")
    if head.count("=") != 1 or not sep:
        raise ValueError(f"parameter line needs `name: type = literal  # help`: {line!r}")
    return head + sep + help_text.replace(" = ", ": ").replace("=", ":")


def code(text: str, *, parameters: bool = False) -> nbformat.NotebookNode:
    if parameters:
        text = "\n".join(_parameter_line(ln) for ln in text.splitlines())
    cell = nbformat.v4.new_code_cell(text)
    if parameters:
        cell.metadata["tags"] = ["parameters"]
    return cell


# ----------------------------------------------------------------------------------------------------
# the notebooks
# ----------------------------------------------------------------------------------------------------


def train_fusion() -> list:
    return [
        md("# Train one video re-ID run with a temporal fusion variant\n\n"
           "Trains and evaluates one run (`reidlab.engine.train`), then shows the per-epoch table in the "
           "lab-notes format and the curves. From a shell:\n\n"
           "```bash\npython -m reidlab run train_fusion -p fusion softmax_cosine -p fusion_options '{tau: 0.1}' "
           "-p seed 1\n```\n\n"
           "A finished run with the same id is not trained again (`force` does); an interrupted one resumes."),
        code(TRAIN_DATA_PARAMS + "\n" + '''\
fusion: str = "mean"  # temporal fusion: mean | max | softmax_cosine | spherical | temporal_attention | template_mask
fusion_options: dict = {}  # options of the fusion, e.g. {"tau": 0.1} for softmax_cosine
backbone: str = "resnet18"  # frame encoder: resnet18 | resnet34 | resnet50
pretrained: str = ""  # local torchvision state-dict file ("" = random init; nothing is ever downloaded)
''' + TRAIN_RUN_PARAMS, parameters=True),
        code('''\
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from reidlab.engine import train
from reidlab.notebook import enter_workspace, training_config
from reidlab.runs.tables import lab_table, load_run, metrics_long, protocol_label
from reidlab.viz import save_figure
from reidlab.viz.curves import plot_curves, plot_loss_curves

enter_workspace()
if not run_id:
    run_id = f"train_fusion-{fusion}-s{seed}"
cfg = training_config(dict(
    run_id=run_id, seed=seed, dataset=dataset, root=root, synthetic=synthetic, height=height, width=width,
    seq_len=seq_len, p=p, k=k, lr=lr, epochs=epochs, eval_every=eval_every, steps_per_epoch=steps_per_epoch,
    max_minutes=max_minutes, device=device, fusion=fusion, fusion_options=fusion_options, backbone=backbone,
    pretrained=pretrained,
), overrides, results_dir=results_dir)
run_dir = cfg.run_dir
print(f"run {run_id} -> {run_dir}")'''),
        code(TRAIN_RESULTS),
        code(TRAIN_PROVENANCE),
        code(TRAIN_TABLE_AND_CURVES),
    ]


def abd_ablation() -> list:
    return [
        md("# ABD-Net ablation: one configuration\n\n"
           "Chen et al., *ABD-Net: Attentive but Diverse Person Re-Identification* (ICCV 2019): channel and "
           "position attention (CAM, PAM) plus orthogonality regularisation of features (O.F.) and of conv "
           "weights (O.W.). Switch the parts on and off to reproduce the paper's ablation grid "
           "(baseline, +CAM, +PAM, +O.F., +O.W., all); the run's embedding correlation is shown at the end "
           "(the paper's argument: attention alone concentrates features, orthogonality spreads them).\n\n"
           "```bash\npython -m reidlab run abd_ablation -p pam false -p of_name so -p seed 1\n```"),
        code(TRAIN_DATA_PARAMS + "\n" + '''\
task: str = "video"  # video (synthetic, MARS, ...: ABD per frame, then `fusion`) | image (market1501, ...)
fusion: str = "mean"  # vector fusion of the per-frame ABD embeddings (video only)
backbone: str = "resnet18"  # resnet18 | resnet34 | resnet50 (the paper: resnet50)
pretrained: str = ""  # local torchvision state-dict file ("" = random init)
cam: bool = True  # CAM heads on the attention-branch stripes
pam: bool = True  # PAM heads on the attention-branch stripes
shallow_cam: bool = True  # CAM after the first ResNet stage
branch_dim: int = 256  # width of each ABD branch / stripe embedding (the paper: 1024)
abd_options: dict = {}  # further ABD switches (reidlab.models.abd.ABD_DEFAULTS), e.g. {"num_stripes": 2}
of: bool = True  # feature orthogonality (O.F.) on the two attention taps
of_name: str = "svdo"  # O.F. regulariser: svdo | svdo_exact | so | srip
of_beta: float = 1e-06  # O.F. weight beta
of_start_epoch: int = 0  # epoch from which O.F. is added
ow: bool = True  # weight orthogonality (O.W.) on every conv layer
ow_name: str = "svdo"  # O.W. regulariser: svdo | svdo_exact | so | srip
ow_beta: float = 0.001  # O.W. weight beta
ow_start_epoch: int = 0  # epoch from which O.W. is added
max_items: int = 300  # tracklets used for the correlation heatmap at the end
''' + TRAIN_RUN_PARAMS, parameters=True),
        code('''\
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

import reidlab.analysis as A
from reidlab.engine import load_run_model, train
from reidlab.notebook import enter_workspace, training_config
from reidlab.runs.tables import lab_table, load_run, metrics_long, protocol_label
from reidlab.viz import save_figure
from reidlab.viz.curves import plot_curves, plot_loss_curves
from reidlab.viz.heatmaps import correlation_heatmaps

enter_workspace()
abd = {"cam": cam, "pam": pam, "shallow_cam": shallow_cam, "of_taps": of, "branch_dim": branch_dim, **abd_options}
parts = "+".join(n for n, on in (("CAM", cam), ("PAM", pam), ("OF", of), ("OW", ow)) if on) or "baseline"
if not run_id:
    run_id = f"abd_ablation-{parts}-s{seed}"
cfg = training_config(dict(
    run_id=run_id, seed=seed, dataset=dataset, root=root, synthetic=synthetic, height=height, width=width,
    seq_len=seq_len, p=p, k=k, lr=lr, epochs=epochs, eval_every=eval_every, steps_per_epoch=steps_per_epoch,
    max_minutes=max_minutes, device=device, task=task, fusion=fusion, backbone=backbone, pretrained=pretrained,
    abd=abd, of_name=of_name if of else "none", of_beta=of_beta, of_start_epoch=of_start_epoch,
    ow_name=ow_name if ow else "none", ow_beta=ow_beta, ow_start_epoch=ow_start_epoch,
), overrides, results_dir=results_dir)
run_dir = cfg.run_dir
print(f"run {run_id} ({parts}) -> {run_dir}")'''),
        code(TRAIN_RESULTS),
        code(TRAIN_PROVENANCE + '''
display(Markdown(f"**regularisers** `{model_desc.get('regularizers')}`"))'''),
        code(TRAIN_TABLE_AND_CURVES),
        md("## Embedding correlation of this run\n\nMean |off-diagonal correlation| and effective rank "
           "(Roy & Vetterli 2007) of the gallery embeddings' dimensions; compare runs side by side with "
           "the `correlation` notebook."),
        code('''\
model, run_cfg, ds = load_run_model(run_dir)
feats, _ = A.split_features(model, run_cfg, ds.gallery, max_items=max_items, seed=seed)
summary = A.correlation_summary(feats)
fig = correlation_heatmaps({parts: A.feature_correlation(feats)}, {parts: summary})
save_figure(fig, run_dir / "figures" / "correlation.png")
plt.show()
summary'''),
    ]


def correlation() -> list:
    return [
        md("# Feature correlation of the embedding dimensions, runs side by side\n\n"
           "ABD-Net's argument made visible: attention tends to put features in a compact subspace (large "
           "off-diagonal correlations between embedding dimensions, low effective rank); orthogonality "
           "regularisation spreads them. Each panel is the Pearson correlation of the embedding dimensions "
           "over the test tracklets (query + gallery) of one run; the numbers use all dimensions. With N "
           "tracklets the effective rank cannot exceed N − 1: compare runs on the same tracklets.\n\n"
           "```bash\npython -m reidlab run correlation -p prefix fusion-\n"
           "python -m reidlab run correlation -p runs '[abd_ablation-baseline-s0, abd_ablation-CAM+PAM+OF+OW-s0]'\n```"),
        code(ANALYSIS_COMMON_PARAMS + '''
split: str = "test"  # whose embeddings: test (query + gallery) | gallery | query | train
max_items: int = 300  # tracklets per run (a seeded random subset; 0 = all)
max_dims: int = 64  # dimensions drawn per heatmap (the summary numbers use all)
which: str = "last"  # checkpoint: last (what tables report) | best (selected on the test split)
seed: int = 0  # seed of the tracklet subset''', parameters=True),
        code(ANALYSIS_SETUP + '''
from reidlab.engine import load_run_model
from reidlab.viz.heatmaps import correlation_heatmaps'''),
        code('''\
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
table'''),
        code('''\
fig = correlation_heatmaps(matrices, summaries, max_dims=max_dims,
                           title=f"embedding-dimension correlation ({split}, {which} checkpoint)")
save_figure(fig, figures / f"correlation{suffix}.png")
plt.show()
shown = table.assign(**{c: table[c].map(lambda v: f"{v:.3f}") for c in ("mean_abs_offdiag", "effective_rank_ratio")},
                     effective_rank=table["effective_rank"].map(lambda v: f"{v:.1f}"),
                     dims=table["dims"].astype(int), samples=table["samples"].astype(int))
atomic_write_text(results / "tables" / f"correlation{suffix}.md", "# Embedding correlation\\n\\n" + format_markdown(shown))
atomic_write_text(results / "tables" / f"correlation{suffix}.csv", table.to_csv(index=False))'''),
    ]


def attention() -> list:
    return [
        md("# Attention maps and per-frame fusion weights on one tracklet\n\n"
           "- top: the tracklet's frames, corrupted frames (synthetic ground truth) framed in red with their "
           "kind; beneath, each variant's per-frame fusion weights (dashed: the uniform 1/T of `mean`);\n"
           "- then, per run with attention: where CAM / PAM rewrote the features (‖out − x‖ per position, "
           "ABD runs) and the first-level `template_mask` masks α, β, upsampled and overlaid on the frames.\n\n"
           "```bash\npython -m reidlab run attention -p prefix fusion- -p tracklet 3\n```"),
        code(ANALYSIS_COMMON_PARAMS + '''
split: str = "query"  # split the tracklet comes from: query | gallery
tracklet: int = -1  # tracklet index in that split (-1 = the first with both corrupted and clean frames)
num_frames: int = 0  # frames shown (0 = the seq_len of the first run); a window around the first corrupted frame
alpha: float = 0.5  # opacity of the overlaid maps
which: str = "last"  # checkpoint: last | best''', parameters=True),
        code(ANALYSIS_SETUP + '''
from reidlab.engine import load_run_model
from reidlab.viz.overlays import attention_overlay, fusion_weight_strip'''),
        code('''\
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
print("corruption:", [trk.corruption[i] if trk.corruption else None for i in window])'''),
        code('''\
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
pd.DataFrame(weights, index=[f"t={i} {c or ''}" for i, c in zip(window, corruption)]).round(3)'''),
        code('''\
if not overlays:
    print("no run with CAM/PAM attention or template masks among", [labels[d] for d in run_dirs])
for label, maps in overlays.items():
    fig = attention_overlay(images, maps, alpha=alpha, title=f"{label}: attention on {split} tracklet {tracklet}",
                            frame_labels=[f"t={i} {c or ''}" for i, c in zip(window, corruption)])
    save_figure(fig, figures / f"attention-{label}{suffix}.png")
    plt.show()'''),
    ]


def fusion_diagnostics() -> list:
    return [
        md("# Fusion diagnostics: the open questions of the fusion study, answered with numbers\n\n"
           "(a) **Are frame features within a time window convergent?** Cosine similarity of the per-frame "
           "features each run's fusion receives (its input, before BNNeck) vs their distance in frames, "
           "within tracklets. Flat and high: convergent; decaying: the walk changes the features.\n\n"
           "(b) **The weight floor of softmax-cosine.** w_t = softmax_t(cos(f_t, c)/τ): at τ = 1 a frame "
           "opposite the centre still keeps e⁻¹/(e + e⁻¹) ≈ 0.119 against one on it (the lab notes). On "
           "real frame features, how low does the smallest weight actually go for each τ, against the "
           "worst case 1/(1 + (T−1)e^{2/τ}) and the uniform 1/T?\n\n"
           "(c) **Does weighting weaken problem frames?** The share of fusion weight on corrupted frames "
           "(synthetic ground truth) per variant, against the uniform share: ratio < 1 means the variant "
           "down-weights corrupted frames.\n\n"
           "```bash\npython -m reidlab run fusion_diagnostics -p prefix fusion-\n```"),
        code(ANALYSIS_COMMON_PARAMS + '''
split: str = "gallery"  # tracklets analysed: gallery | query
max_tracklets: int = 80  # tracklets per run (a seeded random subset; 0 = all)
max_distance: int = 12  # largest frame distance in (a)
taus: list = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]  # temperatures for (b)
which: str = "last"  # checkpoint: last | best
seed: int = 0  # seed of the tracklet subset''', parameters=True),
        code(ANALYSIS_SETUP + '''
import seaborn as sns
from reidlab.engine import load_run_model'''),
        md("### Per-frame features and fusion weights of every run"),
        code('''\
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
    print(f"{labels[d]}: {len(recs)} tracklets, {sum(len(f) for f, _ in frame_feats)} frames")'''),
        md("## (a) cosine similarity vs frame distance"),
        code('''\
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
cos_wide.round(3)'''),
        md("## (b) realised softmax-cosine weight floor vs τ"),
        code('''\
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
floor_df.round(4)'''),
        md("## (c) share of fusion weight on corrupted frames"),
        code('''\
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
share.round(4)'''),
        code('''\
def _fmt(df):
    return df.assign(**{c: df[c].map(lambda v: f"{v:.4f}") for c in df.columns if df[c].dtype.kind == "f"})

run_list = ", ".join(f"{k} ({v['run']})" for k, v in per_run.items())
text = ["# Fusion diagnostics", "", f"Runs: {run_list}; {split} tracklets, at most {max_tracklets} per run.", "",
        "## (a) mean cosine similarity of frame embeddings vs frame distance (all frames)", "",
        format_markdown(_fmt(cos_wide.reset_index())), "## (b) softmax-cosine weight floor vs tau", "",
        format_markdown(_fmt(floor_df)), "## (c) share of fusion weight on corrupted frames", "",
        format_markdown(_fmt(share))]
atomic_write_text(results / "tables" / f"diagnostics{suffix}.md", "\\n".join(text))
atomic_write_text(results / "tables" / f"diagnostics_cosine{suffix}.csv", cos_df.to_csv(index=False))
atomic_write_text(results / "tables" / f"diagnostics_weight_floor{suffix}.csv", floor_df.to_csv(index=False))
atomic_write_text(results / "tables" / f"diagnostics_corruption_share{suffix}.csv", share.to_csv(index=False))'''),
    ]


def report() -> list:
    return [
        md("# Report: every table and figure from `results/runs/`\n\n"
           "Regenerates `results/tables/` (per-epoch tables in the lab-notes format, the summary with the "
           "seed spread and the difference to the `mean` baseline), the per-epoch curves with seed bands, "
           "and — with `analyses` — re-runs the correlation, attention and fusion-diagnostics notebooks on "
           "the runs (their executed copies go to `results/notebooks/`). Nothing is trained here.\n\n"
           "```bash\npython -m reidlab run report -p prefix fusion-\n```"),
        code('''\
results_dir: str = "results"  # results folder holding runs/
prefix: str = ""  # run-id prefix of the runs for curves and analyses ("": all); the tables use every run
baseline: str = ""  # baseline variant of the summary ("": the one that fused with `mean`)
include_unfinished: bool = False  # also tabulate runs that did not finish
figures_dir: str = ""  # where figures go ("": <results_dir>/figures)
analyses: bool = True  # also re-run the correlation, attention and fusion_diagnostics notebooks
analysis_parameters: dict = {}  # extra parameters per analysis notebook, e.g. {"fusion_diagnostics": {"max_tracklets": 40}}''', parameters=True),
        code('''\
import matplotlib.pyplot as plt
from pathlib import Path
from IPython.display import Image, Markdown, display

from reidlab.notebook import enter_workspace, run_notebook
from reidlab.runs.tables import group_runs, load_runs, metrics_long, write_tables
from reidlab.viz import save_figure
from reidlab.viz.curves import plot_curves

enter_workspace()
results = Path(results_dir).absolute()
figures = Path(figures_dir).absolute() if figures_dir else results / "figures"'''),
        code('''\
written = write_tables(results / "runs", results / "tables", baseline=baseline or None,
                       include_unfinished=include_unfinished)
print(*written, sep="\\n")
display(Markdown((results / "tables" / "summary.md").read_text()))'''),
        code('''\
display(Markdown((results / "tables" / "per_epoch.md").read_text()))'''),
        code('''\
runs = [r for r in load_runs(results / "runs", include_unfinished=include_unfinished) if r.run_id.startswith(prefix)]
groups = group_runs(runs)
fig = plot_curves(metrics_long(groups), title="per-epoch test metrics, mean ± 1 std over seeds")
save_figure(fig, figures / "curves.png")
plt.show()'''),
        md("## Analyses (correlation, attention, fusion diagnostics)"),
        code('''\
if analyses:
    for name in ("correlation", "attention", "fusion_diagnostics"):
        params = {"prefix": prefix, "figures_dir": str(figures), **analysis_parameters.get(name, {})}
        print(name, "->", run_notebook(name, params, results_dir=results))
    for png in sorted(figures.glob("*.png")):
        display(Markdown(f"**{png.name}**"), Image(filename=str(png)))'''),
    ]


def study() -> list:
    return [
        md("# The fusion study: tables and figures\n\n"
           "Reads `<results_dir>/study/` (written by `python -m reidlab main`, see `reidlab.study.pipeline`) and "
           "draws the τ curve, the corruption curves, the oracle gap, the weight shares, the frame-cosine "
           "baselines and the embedding correlation. Nothing is trained or extracted here.\n\n"
           "```bash\npython -m reidlab run study\n```"),
        code('''\
results_dir: str = "results"  # results folder holding study/ and tables/
figures_dir: str = ""  # where figures go ("": <results_dir>/figures)''', parameters=True),
        code('''\
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
        display(Markdown(p.read_text()))'''),
        code('''\
fig = plot_tau_curve(ops)
save_figure(fig, figures / "study_tau.png")
plt.show()'''),
        code('''\
curves = ["mean", "oracle", "mean_tracklet", "max", "mean_l2", "spherical", "softmax_cosine_t1",
          "softmax_cosine_t0.01_tracklet", "head:temporal_attention", "head:template_mask"]
fig = plot_corruption_curves(ops, curves)
save_figure(fig, figures / "study_corruption.png")
plt.show()
fig = plot_oracle_gap(ops, ["oracle", "softmax_cosine_t0.01_tracklet", "spherical", "max"])
save_figure(fig, figures / "study_oracle_gap.png")
plt.show()'''),
        code('''\
fig = plot_weight_shares(ops, base)
save_figure(fig, figures / "study_weights.png")
plt.show()
fig = plot_cosine_lag(cos)
save_figure(fig, figures / "study_cosine_lag.png")
plt.show()'''),
        code('''\
corr_file = results / "study" / "correlation.npz"
if corr_file.exists():
    c = study["heads"].get("correlation", {})
    with np.load(corr_file) as z:
        fig = plot_correlation(z["frames_bn"], f"per-frame post-BNNeck features, mean trunk seed 0\\n"
                               f"{c.get('samples')} samples for {c.get('dims')} dims")
    save_figure(fig, figures / "study_correlation.png")
    plt.show()'''),
    ]


NOTEBOOKS = {
    "train_fusion": train_fusion,
    "abd_ablation": abd_ablation,
    "correlation": correlation,
    "attention": attention,
    "fusion_diagnostics": fusion_diagnostics,
    "report": report,
    "study": study,
}


def build(name: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = NOTEBOOKS[name]()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):  # stable ids: regenerating gives identical files
        cell["id"] = f"{name[:20]}-{i:02d}"
    nbformat.validate(nb)
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if a stored notebook differs from this source")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stale = []
    for name in NOTEBOOKS:
        text = nbformat.writes(build(name)) + "\n"
        path = out / f"{name}.ipynb"
        if a.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.write_text(text)
    if stale:
        print("out of date (run python tools/make_notebooks.py):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
