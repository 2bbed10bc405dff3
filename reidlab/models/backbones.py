"""ResNet trunks with re-ID conventions, strict local pretrained loading, BNNeck head, image model.

Re-ID conventions (Luo et al., "Bag of Tricks and a Strong Baseline for Deep Person Re-ID", CVPRW 2019):
last stride 1 (layer4 keeps the layer3 resolution: 16x8 maps for 256x128 input) and the BNNeck head
(pooled feature -> BatchNorm1d without learnable shift -> bias-free classifier; the triplet loss sees the
pre-BN feature, retrieval uses the post-BN one).

Weights are never downloaded: torchvision models are built with ``weights=None`` and ImageNet weights come
from a user-given local file in torchvision state-dict format.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
import torchvision

from torch import Tensor, nn

from reidlab.suggest import did_you_mean

__all__ = [
    "BACKBONES",
    "TRUNK_CHANNELS",
    "StateDictMismatchError",
    "ResNetTrunk",
    "build_trunk",
    "read_state_dict",
    "load_trunk_weights",
    "strict_load",
    "BNNeck",
    "ReIDModel",
    "ImageReIDModel",
]

BACKBONES: dict[str, Callable[..., torchvision.models.ResNet]] = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
}
TRUNK_CHANNELS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}
# An ImageNet checkpoint carries the 1000-way classifier; re-ID trunks have no use for it. These keys are
# skipped *by name* and reported; any other unused or missing key is an error.
EXPECTED_UNUSED = ("fc.weight", "fc.bias")
STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class StateDictMismatchError(ValueError):
    """A weight file does not match the model: lists missing, unexpected and wrongly shaped keys."""

    def __init__(self, source: str, missing: list[str], unexpected: list[str],
                 shape_mismatch: list[tuple[str, tuple, tuple]]) -> None:
        self.source, self.missing, self.unexpected, self.shape_mismatch = source, missing, unexpected, shape_mismatch
        lines = [f"weights from {source} do not match the model (strict loading):"]
        if missing:
            lines.append(f"  {len(missing)} missing key(s) (in the model, not in the file): " + _short(missing))
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected key(s) (in the file, not in the model): "
                         + _short(unexpected))
        for k, want, got in shape_mismatch[:20]:
            lines.append(f"  shape mismatch {k}: model {tuple(want)} vs file {tuple(got)}")
        if len(shape_mismatch) > 20:
            lines.append(f"  ... and {len(shape_mismatch) - 20} more shape mismatches")
        super().__init__("\n".join(lines))


def _short(keys: list[str], n: int = 25) -> str:
    s = ", ".join(keys[:n])
    return s + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def _check_backbone(name: str) -> None:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}{did_you_mean(str(name), BACKBONES)}; "
                         f"choose one of {sorted(BACKBONES)}")


def set_last_stride(layer4: nn.Sequential, stride: int) -> None:
    """Set the spatial stride of the first block of layer4 (both the strided conv and the shortcut)."""
    if stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {stride}")
    block = layer4[0]
    # torchvision puts the stride on the 3x3 conv: conv2 of a Bottleneck, conv1 of a BasicBlock.
    conv = block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
    conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


class ResNetTrunk(nn.Module):
    """torchvision ResNet without avgpool/fc. Submodule names equal torchvision's, so a torchvision
    state dict (minus fc.*) loads key for key.

    forward(x (B, 3, H, W)) -> layer4 map (B, C, H/16, W/16) with last stride 1 (H/32 with 2);
    C = 512 (resnet18/34) or 2048 (resnet50).
    """

    def __init__(self, name: str = "resnet50", last_stride: int = 1) -> None:
        super().__init__()
        _check_backbone(name)
        net = BACKBONES[name](weights=None)
        for s in STAGES:
            setattr(self, s, getattr(net, s))
        set_last_stride(self.layer4, last_stride)
        self.name = name
        self.last_stride = last_stride
        self.out_channels = TRUNK_CHANNELS[name]
        self.stage_channels = {
            "layer1": self.out_channels // 8, "layer2": self.out_channels // 4,
            "layer3": self.out_channels // 2, "layer4": self.out_channels,
        }

    def stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def build_trunk(name: str = "resnet50", last_stride: int = 1, pretrained: str | None = None) -> ResNetTrunk:
    trunk = ResNetTrunk(name, last_stride)
    if pretrained is not None:
        load_trunk_weights(trunk, pretrained)
    return trunk


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Load a state dict from a local file (never the network). Accepts a plain torchvision state dict
    or a dict with a "state_dict"/"model" entry holding one."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"pretrained weight file not found: {p} (weights are never downloaded; "
                                f"give the path of a local torchvision state-dict file)")
    obj = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and not any(isinstance(v, Tensor) for v in obj.values()):
        for k in ("state_dict", "model"):
            if isinstance(obj.get(k), dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{p} does not hold a state dict (mapping of parameter names to tensors)")
    return dict(obj)


def strict_load(module: nn.Module, state: dict[str, Tensor], source: str,
                skip: Iterable[str] = ()) -> dict:
    """Load `state` into `module`; every key must load (names and shapes), except those listed in `skip`
    which are dropped explicitly. Raises StateDictMismatchError listing the offending keys.
    Returns a report {"loaded": n, "skipped": [...]}."""
    skip = set(skip)
    own = module.state_dict()
    skipped = sorted(k for k in state if k in skip)
    file_keys = [k for k in state if k not in skip]
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in file_keys if k not in own)
    shapes = [(k, tuple(own[k].shape), tuple(state[k].shape)) for k in file_keys
              if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        raise StateDictMismatchError(source, missing, unexpected, shapes)
    module.load_state_dict({k: state[k] for k in file_keys}, strict=True)
    return {"loaded": len(file_keys), "skipped": skipped}


def load_trunk_weights(trunk: ResNetTrunk, path: str | Path) -> dict:
    """Load torchvision ImageNet weights (local file) into a trunk; fc.weight/fc.bias are skipped."""
    return strict_load(trunk, read_state_dict(path), str(path), skip=EXPECTED_UNUSED)


class BNNeck(nn.Module):
    """feature (B, D) -> BatchNorm1d (shift frozen at 0) -> bias-free Linear (B, num_classes).

    forward(f) in training: (logits, f) with f the pre-BN feature; in eval: the post-BN feature (B, D).
    """

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)  # BNNeck: no shift (Luo et al. 2019)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, f: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if self.training:
            return self.classifier(self.bn(f)), f
        return self.bn(f)


class ReIDModel(nn.Module):
    """Base class of all reidlab models (contract: see COMMON.md `reidlab.models`).

    Subclasses define `encode(x) -> (pre-BN embedding (B, D), of_taps list, aux dict)`, `neck`,
    `trunk_modules()` (pretrainable parts), `embedding_dim`, `task`, and `_describe_extra()`.
    """

    task: str = "image"
    embedding_dim: int
    neck: BNNeck

    def encode(self, x: Tensor, want_aux: bool = False) -> tuple[Tensor, list[Tensor], dict]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> dict | Tensor:
        f, taps, aux = self.encode(x, want_aux=False)
        if self.training:
            # logits/features are lists (one per part) when the neck classifies parts (ABD neck="parts")
            logits, feat = self.neck(f)
            return {"logits": logits, "features": feat, "of_taps": taps,
                    "of_positions": aux.get("of_positions", {})}
        return self.neck(f)

    @torch.no_grad()
    def forward_aux(self, x: Tensor) -> tuple[Tensor, dict]:
        """Eval-mode embedding (B, D) plus {"fusion": fusion aux, "attention": {"cam": [...], "pam": [...],
        ...}} for plots. Always runs in eval mode (BN running statistics untouched) and restores the mode."""
        was_training = self.training
        self.eval()
        try:
            f, _, aux = self.encode(x, want_aux=True)
            emb = self.neck(f)
        finally:
            self.train(was_training)
        aux.setdefault("fusion", {})
        aux.setdefault("attention", {"cam": [], "pam": []})
        return emb, aux

    def trunk_modules(self) -> list[nn.Module]:
        raise NotImplementedError

    def new_parameters(self) -> list[nn.Parameter]:
        """Parameters that do not come from the (ImageNet-pretrainable) ResNet trunk (fixbase epochs)."""
        old = {id(p) for m in self.trunk_modules() for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in old]

    def describe(self) -> dict:
        d = {"class": type(self).__name__, "task": self.task, "backbone": self.backbone_name,
             "last_stride": self.last_stride, "pretrained": self.pretrained, "fusion": None, "abd": None,
             "num_parameters": int(sum(p.numel() for p in self.parameters())),
             "embedding_dim": int(self.embedding_dim)}
        d.update(self._describe_extra())
        return d

    def _describe_extra(self) -> dict:
        return {}


class ImageReIDModel(ReIDModel):
    """Plain re-ID baseline: ResNet trunk -> global average pooling -> BNNeck. x: (B, 3, H, W)."""

    task = "image"

    def __init__(self, num_classes: int, backbone: str = "resnet50", last_stride: int = 1,
                 pretrained: str | None = None) -> None:
        super().__init__()
        self.trunk = build_trunk(backbone, last_stride, pretrained)
        self.backbone_name, self.last_stride, self.pretrained = backbone, last_stride, pretrained
        self.embedding_dim = self.trunk.out_channels
        self.neck = BNNeck(self.embedding_dim, num_classes)

    def encode(self, x: Tensor, want_aux: bool = False) -> tuple[Tensor, list[Tensor], dict]:
        if x.dim() != 4:
            raise ValueError(f"image model expects (B, C, H, W), got shape {tuple(x.shape)}")
        return F.adaptive_avg_pool2d(self.trunk(x), 1).flatten(1), [], {}

    def trunk_modules(self) -> list[nn.Module]:
        return [self.trunk]


def clone_module(m: nn.Module) -> nn.Module:
    return copy.deepcopy(m)
