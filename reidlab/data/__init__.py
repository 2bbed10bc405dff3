"""Data: dataset readers for the published layouts, the synthetic world, sampling and loading.

Public API (see COMMON contracts)::

    Sample, Tracklet, ReIDDataset, CORRUPTION_KINDS          records
    build_dataset(name, root, *, verbose=True, **options)   DATASETS, DATASET_KINDS
    DEFAULT_SYNTHETIC_ROOT, default_synthetic_root()
    build_transforms(height, width, *, train, ...)
    sample_frames, dense_chunks, PKSampler
    VideoTrainDataset, VideoTestDataset, ImageDataset, FrameCache, read_image
    build_train_loader, build_test_loader

The synthetic world itself: ``reidlab.data.synthetic`` (generate_world, ensure_world, main, render_gallery).
"""

from reidlab.data.datasets import DATASET_KINDS, DATASETS, DatasetFormatError, build_dataset
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
from reidlab.data.records import CORRUPTION_KINDS, ReIDDataset, Sample, Tracklet
from reidlab.data.sampling import SAMPLING_MODES, PKSampler, dense_chunks, sample_frames
from reidlab.data.synthetic import DEFAULT_SYNTHETIC_ROOT, default_synthetic_root
from reidlab.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms

__all__ = [
    "Sample", "Tracklet", "ReIDDataset", "CORRUPTION_KINDS",
    "build_dataset", "DATASETS", "DATASET_KINDS", "DatasetFormatError",
    "DEFAULT_SYNTHETIC_ROOT", "default_synthetic_root",
    "build_transforms", "IMAGENET_MEAN", "IMAGENET_STD",
    "sample_frames", "dense_chunks", "PKSampler", "SAMPLING_MODES",
    "VideoTrainDataset", "VideoTestDataset", "ImageDataset", "FrameCache", "read_image",
    "build_train_loader", "build_test_loader", "default_workers",
]
