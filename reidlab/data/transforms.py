"""Image/clip transforms (torchvision transforms v2).

Input: a uint8 tensor ``(C, H, W)`` (one image) or ``(T, C, H, W)`` (a clip). v2 transforms treat the
leading dims as a batch and draw their random parameters once, so all frames of a clip get the same
flip, crop and erased box (temporally consistent augmentation, as in AP3D; per-frame independent
augmentation would add flicker that no real camera produces). Output: float32, normalised.

Randomness comes from torch's global generator; the datasets in :mod:`reidlab.data.loading` seed it
per item (inside ``torch.random.fork_rng``) so results do not depend on DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_transforms(height: int, width: int, *, train: bool, flip_p: float = 0.5, pad: int = 4,
                     erase_p: float = 0.5, mean: tuple[float, float, float] = IMAGENET_MEAN,
                     std: tuple[float, float, float] = IMAGENET_STD) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 ``(..., C, H, W)`` -> float32 ``(..., C, height, width)``, normalised.

    Train: resize, horizontal flip (p=``flip_p``), zero-pad by ``pad`` pixels + random crop back to size,
    normalise, random erasing (p=``erase_p``; Zhong et al., AAAI 2020). Test: resize + normalise.
    """
    if height < 1 or width < 1:
        raise ValueError(f"build_transforms: height and width must be >= 1, got {height}x{width}")
    ops: list = [v2.Resize((height, width), antialias=True)]
    if train:
        if flip_p > 0:
            ops.append(v2.RandomHorizontalFlip(p=flip_p))
        if pad > 0:
            ops += [v2.Pad(pad), v2.RandomCrop((height, width))]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
    if train and erase_p > 0:
        ops.append(v2.RandomErasing(p=erase_p, value=0))
    return v2.Compose(ops)
