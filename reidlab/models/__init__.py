"""Models: ResNet trunks + BNNeck, ABD-Net (CAM/PAM attention), temporal fusion, video model.

Entry point: `build_model(task, num_classes, ...)`; see each module for details.
"""

from __future__ import annotations

from reidlab.suggest import did_you_mean

from .abd import ABD_ABLATIONS, ABD_DEFAULTS, BRANCH_ORDER, ABDEncoder, ABDNet, resolve_abd_options
from .attention import CAM, PAM
from .backbones import (
    BACKBONES,
    BNNeck,
    ImageReIDModel,
    ReIDModel,
    ResNetTrunk,
    StateDictMismatchError,
    build_trunk,
    load_trunk_weights,
    read_state_dict,
    strict_load,
)
from .fusion import FUSIONS, Fusion, build_fusion, guarded_cosine
from .video import VideoReIDModel

__all__ = [
    "build_model",
    "TASKS",
    "ReIDModel",
    "ImageReIDModel",
    "ABDNet",
    "ABDEncoder",
    "VideoReIDModel",
    "ABD_ABLATIONS",
    "ABD_DEFAULTS",
    "BRANCH_ORDER",
    "resolve_abd_options",
    "CAM",
    "PAM",
    "BACKBONES",
    "BNNeck",
    "ResNetTrunk",
    "StateDictMismatchError",
    "build_trunk",
    "load_trunk_weights",
    "read_state_dict",
    "strict_load",
    "FUSIONS",
    "Fusion",
    "build_fusion",
    "guarded_cosine",
]

TASKS = ("image", "video")


def build_model(task: str, num_classes: int, *, backbone: str = "resnet18", last_stride: int = 1,
                pretrained: str | None = None, fusion: str = "mean", fusion_options: dict | None = None,
                abd: dict | None = None) -> ReIDModel:
    """Build a re-ID model.

    task "image": ImageReIDModel (abd=None) or ABDNet (abd = switch dict, see ABD_DEFAULTS); fusion must be
    "mean"/None with no options (images have no time axis). task "video": VideoReIDModel with the given
    FUSIONS name and options, on a plain trunk or (abd given) an ABD frame encoder.
    pretrained: local torchvision ResNet state-dict file (never downloaded). abd={} means ABD defaults.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}{did_you_mean(str(backbone), BACKBONES)}; "
                         f"choose one of {sorted(BACKBONES)}")
    if task == "image":
        if fusion not in (None, "mean") or fusion_options:
            raise ValueError(f"fusion={fusion!r} / fusion_options={fusion_options!r} given for an image model; "
                             f"temporal fusion only applies to task='video'")
        if abd is not None:
            return ABDNet(num_classes, backbone, last_stride, pretrained, **abd)
        return ImageReIDModel(num_classes, backbone, last_stride, pretrained)
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}{did_you_mean(str(fusion), FUSIONS)}; "
                         f"choose one of {sorted(FUSIONS)}")
    return VideoReIDModel(num_classes, backbone, last_stride, pretrained, fusion, fusion_options, abd)
