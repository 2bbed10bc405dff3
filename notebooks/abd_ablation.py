# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # ABD-Net ablation: one configuration
#
# Chen et al., *ABD-Net: Attentive but Diverse Person Re-Identification* (ICCV 2019): channel and position
# attention (CAM, PAM) plus orthogonality regularisation of features (O.F.) and of conv weights (O.W.). Switch
# the parts on and off to reproduce the paper's ablation grid (baseline, +CAM, +PAM, +O.F., +O.W., all); the
# run's embedding correlation is shown at the end (the paper's argument: attention alone concentrates
# features, orthogonality spreads them).
#
# ```bash
# python -m reidlab run abd_ablation -p pam false -p of_name so -p seed 1
# ```

# %% tags=["parameters"]
dataset: str = "synthetic"  # dataset: synthetic | mars | dukemtmcvidreid | ilidsvid | prid2011 (image models: market1501, ...)
root: str = ""  # dataset folder ("": data/synthetic, generated on first use)
synthetic: dict = {}  # synthetic-world knobs for ensure_world, e.g. {"ids": 60, "cams": 3} (see reidlab.data.synthetic)
height: int = 64  # input height in pixels
width: int = 32  # input width in pixels
seq_len: int = 4  # frames per training clip and per dense test chunk
task: str = "video"  # video (synthetic, MARS, ...: ABD per frame, then `fusion`) | image (market1501, ...)
fusion: str = "mean"  # vector fusion of the per-frame ABD embeddings (video only)
backbone: str = "resnet18"  # resnet18 | resnet34 | resnet50 (the paper: resnet50)
pretrained: str = ""  # local torchvision state-dict file ("": random init)
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
p: int = 8  # identities per batch
k: int = 4  # tracklets per identity per batch
lr: float = 0.00035  # Adam learning rate
epochs: int = 6  # training epochs
eval_every: int = 2  # evaluate every N epochs (the last epoch is always evaluated)
steps_per_epoch: int = 0  # optimiser steps per epoch (0: one pass of the identity sampler)
seed: int = 0  # seed of data order, frame sampling and initialisation
max_minutes: float = 0.0  # time budget in minutes (0: none); running the notebook again resumes the run
device: str = "auto"  # auto | cpu | cuda | cuda:N
overrides: dict = {}  # further RunConfig keys, dotted, e.g. {"optim.schedule": "step"}
run_id: str = ""  # run folder name ("": derived from the parameters)
results_dir: str = "results"  # results folder; the run is filed in <results_dir>/runs/<run_id>
force: bool = False  # discard a finished run with this id and train it again
progress: bool = True  # progress bars while training

# %%
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
print(f"run {run_id} ({parts}) -> {run_dir}")

# %%
record = train(cfg, force=force, progress=progress)
print(record)
status = record.status or {}
assert status.get("state") in ("finished", "budget"), f"run did not finish: {status}"

# %%
# what was actually built and how it was evaluated (read back from the run record)
model_desc, protocol = record.model, record.protocol
display(Markdown(
    f"**model** `{model_desc.get('class')}` — backbone `{model_desc.get('backbone')}`, "
    f"fusion `{(model_desc.get('fusion') or {}).get('name')}` → `{(model_desc.get('fusion') or {}).get('class')}` "
    f"options `{(model_desc.get('fusion') or {}).get('options')}`, "
    f"{model_desc.get('num_parameters', 0):,} parameters, embedding {model_desc.get('embedding_dim')}-d  \n"
    f"**protocol** {protocol_label(protocol)}"
))
display(Markdown(f"**regularisers** `{model_desc.get('regularizers')}`"))

# %%
run = load_run(run_dir)
display(Markdown(f"### {run_id}: per-epoch results (lab-notes format)\n\n" + lab_table([run])))
fig = plot_curves(metrics_long({run_id: [run]}), title=run_id)
save_figure(fig, run_dir / "figures" / "curves.png")
plt.show()
epochs_df = record.epochs
if len(epochs_df):
    fig = plot_loss_curves(epochs_df, title=f"{run_id}: training loss")
    save_figure(fig, run_dir / "figures" / "loss.png")
    plt.show()

# %% [markdown]
# ## Embedding correlation of this run
#
# Mean |off-diagonal correlation| and effective rank (Roy & Vetterli 2007) of the gallery embeddings'
# dimensions; compare runs side by side with the `correlation` notebook.

# %%
model, run_cfg, ds = load_run_model(run_dir)
feats, _ = A.split_features(model, run_cfg, ds.gallery, max_items=max_items, seed=seed)
summary = A.correlation_summary(feats)
fig = correlation_heatmaps({parts: A.feature_correlation(feats)}, {parts: summary})
save_figure(fig, run_dir / "figures" / "correlation.png")
plt.show()
summary
