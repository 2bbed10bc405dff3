"""Training engine: ``train(cfg)``, feature extraction, loading and re-evaluating stored runs.

Imports the data/models/losses/eval packages lazily, so ``import reidlab.engine`` stays cheap.
"""

from reidlab.engine.builders import DataBundle, build_data, build_run_model, lr_factor
from reidlab.engine.checkpoints import PreflightError
from reidlab.engine.distributed import DistInfo, init_distributed, resolve_device
from reidlab.engine.evaluation import evaluate_checkpoint, evaluate_model, extract_records, load_run_model
from reidlab.engine.extraction import extract_features
from reidlab.engine.trainer import TrainingError, train

__all__ = [
    "DataBundle",
    "DistInfo",
    "PreflightError",
    "TrainingError",
    "build_data",
    "build_run_model",
    "evaluate_checkpoint",
    "evaluate_model",
    "extract_features",
    "extract_records",
    "init_distributed",
    "load_run_model",
    "lr_factor",
    "resolve_device",
    "train",
]
