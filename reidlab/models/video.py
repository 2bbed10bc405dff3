"""Video re-ID model: frame encoder -> temporal fusion -> BNNeck.

x (B, T, C, H, W) -> frames (B*T, C, H, W) -> encoder:
  * plain ResNet trunk: layer4 maps (B*T, C4, h, w). Vector fusions get the average-pooled maps (B, T, C4);
    `template_mask` fuses the maps (B, T, C4, h, w) -> (B, C4, h, w), then average pooling.
  * ABD encoder (abd=...): per-frame ABD embedding (B, T, D) -> vector fusion (map fusions are rejected:
    ABD has several branch maps, not one).
-> fused (B, D) -> BNNeck. Any T >= 1 works in both modes (a single frame too). Test-time dense sampling
(all chunks of a tracklet, averaged) is done by the engine on the eval embeddings.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .abd import ABDEncoder, build_abd_neck
from .backbones import BNNeck, ReIDModel, build_trunk
from .fusion import build_fusion

__all__ = ["VideoReIDModel"]


class VideoReIDModel(ReIDModel):
    """forward: training -> {"logits" (B, K), "features" (B, D) pre-BN fused, "of_taps": ABD taps with
    batch B*T (per frame) or []}; eval -> (B, D) post-BN embedding."""

    task = "video"

    def __init__(self, num_classes: int, backbone: str = "resnet50", last_stride: int = 1,
                 pretrained: str | None = None, fusion: str = "mean", fusion_options: dict | None = None,
                 abd: dict | None = None) -> None:
        super().__init__()
        self.backbone_name, self.last_stride, self.pretrained = backbone, last_stride, pretrained
        self.fusion_name = fusion
        if abd is not None:
            self.encoder: nn.Module = ABDEncoder(backbone, last_stride, pretrained, **abd)
            dim = self.encoder.embedding_dim
        else:
            self.encoder = build_trunk(backbone, last_stride, pretrained)
            dim = self.encoder.out_channels
        self.fusion = build_fusion(fusion, dim, **(fusion_options or {}))
        if abd is not None and self.fusion.input_kind == "maps":
            raise ValueError(f"fusion {fusion!r} works on feature maps; with an ABD frame encoder only vector "
                             f"fusions are supported (ABD yields an embedding per frame)")
        self.is_abd = abd is not None
        self.embedding_dim = dim
        self.neck = build_abd_neck(self.encoder, dim, num_classes) if abd is not None else BNNeck(dim, num_classes)

    def encode(self, x: Tensor, want_aux: bool = False) -> tuple[Tensor, list[Tensor], dict]:
        if x.dim() != 5:
            raise ValueError(f"video model expects (B, T, C, H, W), got shape {tuple(x.shape)}")
        B, T = x.shape[:2]
        frames = x.reshape(B * T, *x.shape[2:])
        aux: dict = {}
        taps: list[Tensor] = []
        if self.is_abd:
            f, taps, enc_aux = self.encoder(frames, want_aux=want_aux)
            aux.update(enc_aux)
            fused, faux = self.fusion(f.reshape(B, T, -1))
        else:
            maps = self.encoder(frames)
            maps = maps.reshape(B, T, *maps.shape[1:])
            if self.fusion.input_kind == "maps":
                fmap, faux = self.fusion(maps)
                fused = F.adaptive_avg_pool2d(fmap, 1).flatten(1)
            else:
                fused, faux = self.fusion(maps.mean(dim=(3, 4)))
        aux["fusion"] = faux
        return fused, taps, aux

    def trunk_modules(self) -> list[nn.Module]:
        return self.encoder.trunk_modules() if self.is_abd else [self.encoder]

    def _describe_extra(self) -> dict:
        d = {"fusion": self.fusion.describe()}
        if self.is_abd:
            d["abd"] = dict(self.encoder.options)
            d["branches"] = list(self.encoder.branches)
        return d
