# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Train one video re-ID run with a temporal fusion variant
#
# Trains and evaluates one run (`reidlab.engine.train`), then shows the per-epoch table in the lab-notes
# format and the curves. From a shell:
#
# ```bash
# python -m reidlab run train_fusion -p fusion softmax_cosine -p fusion_options '{tau: 0.1}' -p seed 1
# ```
#
# A finished run with the same id is not trained again (`force` does); an interrupted one resumes.

# %% tags=["parameters"]
dataset: str = "synthetic"  # dataset: synthetic | mars | dukemtmcvidreid | ilidsvid | prid2011 (image models: market1501, ...)
root: str = ""  # dataset folder ("": data/synthetic, generated on first use)
synthetic: dict = {}  # synthetic-world knobs for ensure_world, e.g. {"ids": 60, "cams": 3} (see reidlab.data.synthetic)
height: int = 64  # input height in pixels
width: int = 32  # input width in pixels
seq_len: int = 4  # frames per training clip and per dense test chunk
fusion: str = "mean"  # temporal fusion: mean | max | softmax_cosine | spherical | temporal_attention | template_mask
fusion_options: dict = {}  # options of the fusion, e.g. {"tau": 0.1} for softmax_cosine
backbone: str = "resnet18"  # frame encoder: resnet18 | resnet34 | resnet50
pretrained: str = ""  # local torchvision state-dict file ("": random init; nothing is ever downloaded)
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
print(f"run {run_id} -> {run_dir}")

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
