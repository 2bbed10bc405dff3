"""Data: dataset readers for the published layouts, the synthetic world, sampling and loading.

Public API (see COMMON contracts)::

    Sample, Tracklet, ReIDDataset, CORRUPTION_KINDS          records
    build_dataset(name, root, *, verbose=True, **options)   DATASETS, DATASET_KINDS
    DEFAULT_SYNTHETIC_ROOT, default_synthetic_root()
    build_transforms(height, width, *, train, ...)
    sample_frames, dense_chunks, PKSampler
    VideoTrainDataset, VideoTestDataset, ImageDataset, FrameCache, read_image
    build_train_loader, build_test_loader
    check_dataset, CheckReport, PublishedStats, SplitCounts  a dataset folder vs its published statistics

The synthetic world itself: ``reidlab.data.synthetic`` (generate_world, ensure_world, main, render_gallery).

The torch-based parts (sampling, transforms, loading) are imported on first use, so reading datasets
and ``reidlab synth`` do not pay torch's import time (seconds on a small machine); the synthetic
module too, so ``python -m reidlab.data.synthetic`` runs it once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from reidlab.data.datasets import DATASET_KINDS, DATASETS, DatasetFormatError, build_dataset
from reidlab.data.records import CORRUPTION_KINDS, ReIDDataset, Sample, Tracklet

_LAZY = {
    "CheckReport": "reidlab.data.check",
    "PublishedStats": "reidlab.data.check",
    "SplitCounts": "reidlab.data.check",
    "check_dataset": "reidlab.data.check",
    "DEFAULT_SYNTHETIC_ROOT": "reidlab.data.synthetic",
    "default_synthetic_root": "reidlab.data.synthetic",
    "FrameCache": "reidlab.data.loading",
    "ImageDataset": "reidlab.data.loading",
    "VideoTestDataset": "reidlab.data.loading",
    "VideoTrainDataset": "reidlab.data.loading",
    "build_test_loader": "reidlab.data.loading",
    "build_train_loader": "reidlab.data.loading",
    "default_workers": "reidlab.data.loading",
    "read_image": "reidlab.data.loading",
    "SAMPLING_MODES": "reidlab.data.sampling",
    "PKSampler": "reidlab.data.sampling",
    "dense_chunks": "reidlab.data.sampling",
    "sample_frames": "reidlab.data.sampling",
    "IMAGENET_MEAN": "reidlab.data.transforms",
    "IMAGENET_STD": "reidlab.data.transforms",
    "build_transforms": "reidlab.data.transforms",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these come from __getattr__
    from reidlab.data.check import CheckReport, PublishedStats, SplitCounts, check_dataset
    from reidlab.data.loading import (
        FrameCache,
        ImageDataset,
        VideoTestDataset,
        VideoTrainDataset,
        build_test_loader,
        build_train_loader,
        default_workers,
        read_image,
    )
    from reidlab.data.sampling import SAMPLING_MODES, PKSampler, dense_chunks, sample_frames
    from reidlab.data.synthetic import DEFAULT_SYNTHETIC_ROOT, default_synthetic_root
    from reidlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'reidlab.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Sample", "Tracklet", "ReIDDataset", "CORRUPTION_KINDS",
    "build_dataset", "DATASETS", "DATASET_KINDS", "DatasetFormatError",
    "DEFAULT_SYNTHETIC_ROOT", "default_synthetic_root",
    "build_transforms", "IMAGENET_MEAN", "IMAGENET_STD",
    "sample_frames", "dense_chunks", "PKSampler", "SAMPLING_MODES",
    "VideoTrainDataset", "VideoTestDataset", "ImageDataset", "FrameCache", "read_image",
    "build_train_loader", "build_test_loader", "default_workers",
    "check_dataset", "CheckReport", "PublishedStats", "SplitCounts",
]
