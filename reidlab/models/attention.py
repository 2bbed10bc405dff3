"""Channel and position attention (Fu et al., "Dual Attention Network for Scene Segmentation", CVPR 2019),
as used by ABD-Net (Chen et al., ICCV 2019), and the DANet head that the released ABD-Net code wraps
around them.

Both modules are residual with a learnable scale gamma initialised to 0, so at initialisation they are the
identity and a pretrained trunk is undisturbed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["CAM", "PAM", "DANetHead"]


class CAM(nn.Module):
    """Channel attention module.

    x (B, C, H, W) -> A = X X^T (B, C, C) over the N = H*W positions, S = softmax over the last dim,
    out = gamma * (S X) + x. ABD-Net eq. (1): s_ij = exp(a_i . a_j) / sum_j exp(a_i . a_j).

    energy="affinity" (default) is the formula above; energy="max_minus" uses max_j(A_ij) - A_ij, the
    variant in the released DANet code, which weights *dissimilar* channels most.
    forward(x, return_attention=False) -> out, or (out, S) with S (B, C, C) rows summing to 1.
    """

    def __init__(self, channels: int, energy: str = "affinity") -> None:
        super().__init__()
        if energy not in ("affinity", "max_minus"):
            raise ValueError(f"energy must be 'affinity' or 'max_minus', got {energy!r}")
        self.channels = channels
        self.energy = energy
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"CAM expects (B, {self.channels}, H, W), got {tuple(x.shape)}")
        B, C, H, W = x.shape
        X = x.reshape(B, C, H * W)
        A = torch.bmm(X, X.transpose(1, 2))
        if self.energy == "max_minus":
            A = A.max(dim=-1, keepdim=True).values - A
        S = torch.softmax(A, dim=-1)  # softmax subtracts the row max: no overflow for large affinities
        out = self.gamma * torch.bmm(S, X).reshape(B, C, H, W) + x
        return (out, S) if return_attention else out


class PAM(nn.Module):
    """Position attention module.

    x (B, C, H, W): query/key 1x1 convs reduce C -> C/reduction, value 1x1 conv keeps C;
    S = softmax_j(q_i . k_j) (B, N, N) over the N = H*W positions; out_i = gamma * sum_j S_ij v_j + x_i.
    forward(x, return_attention=False) -> out, or (out, S) with S rows summing to 1.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        inner = max(1, channels // reduction)
        self.channels = channels
        self.reduction = reduction
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, return_attention: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"PAM expects (B, {self.channels}, H, W), got {tuple(x.shape)}")
        B, C, H, W = x.shape
        N = H * W
        q = self.query(x).reshape(B, -1, N).transpose(1, 2)  # (B, N, C')
        k = self.key(x).reshape(B, -1, N)  # (B, C', N)
        S = torch.softmax(torch.bmm(q, k), dim=-1)  # (B, N, N)
        v = self.value(x).reshape(B, C, N)
        out = self.gamma * torch.bmm(v, S.transpose(1, 2)).reshape(B, C, H, W) + x
        return (out, S) if return_attention else out


class DANetHead(nn.Module):
    """DANet head around one attention module, as in the released ABD-Net code (the paper does not show it).

    x (B, C, H, W) -> 3x3 conv C -> C/2, BN, ReLU -> module (identity, CAM or PAM on C/2 channels)
    -> 3x3 conv C/2 -> C/2, BN, ReLU -> Dropout2d(dropout) -> 1x1 conv C/2 -> C (with bias) -> (B, C, H, W).
    Not residual: unlike a bare CAM/PAM (identity at initialisation), the head transforms its input.
    forward(x, return_attention=False) -> out, or (out, S) with S the module's attention (None for identity).
    """

    def __init__(self, channels: int, module: str, *, dropout: float = 0.1, cam_energy: str = "affinity",
                 pam_reduction: int = 8, collapse: int = 2) -> None:
        super().__init__()
        if module not in ("identity", "cam", "pam"):
            raise ValueError(f"DANetHead module must be identity, cam or pam, got {module!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        inner = max(1, channels // collapse)
        self.channels, self.kind = channels, module
        self.pre = nn.Sequential(nn.Conv2d(channels, inner, 3, padding=1, bias=False), nn.BatchNorm2d(inner), nn.ReLU())
        if module == "cam":
            self.attention: nn.Module = CAM(inner, energy=cam_energy)
        elif module == "pam":
            self.attention = PAM(inner, reduction=pam_reduction)
        else:
            self.attention = nn.Identity()
        self.post = nn.Sequential(nn.Conv2d(inner, inner, 3, padding=1, bias=False), nn.BatchNorm2d(inner), nn.ReLU())
        self.out = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(inner, channels, 1))

    def forward(self, x: Tensor, return_attention: bool = False):
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"DANetHead expects (B, {self.channels}, H, W), got {tuple(x.shape)}")
        y = self.pre(x)
        S = None
        if self.kind == "identity":
            y = self.attention(y)
        else:
            y, S = self.attention(y, return_attention=True)
        out = self.out(self.post(y))
        return (out, S) if return_attention else out
