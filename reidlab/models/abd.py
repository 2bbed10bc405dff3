"""ABD-Net: Attentive but Diverse person re-ID (Chen et al., ICCV 2019).

Paper recipe (defaults here): ResNet-50 trunk, last stride 1, 384x128 input.
  shared:     conv1 .. layer1 (res_conv_2) -> shallow CAM [O.F. tap 1] -> layer2, layer3
  "global":   own copy of layer4 -> global max pooling -> Linear(C, 1024) -> BN -> ReLU          (1024-d)
  "attention": own copy of layer4 [O.F. tap 2: res_conv_5 output] -> 1x1 conv (C -> 1024) -> BN -> ReLU
              -> 2 horizontal stripes; per stripe: identity + CAM(x) + PAM(x) (heads shared by the stripes,
              as in the released code) -> 1x1 conv -> average pooling                        (2 x 1024-d)
  embedding = concat(global, stripe 1, stripe 2) = 3072-d, followed by one BNNeck.

Fidelity switches (the released code, github.com/VITA-Group/ABD-Net, differs from the paper's text, and
the published numbers come from the code): ``cam_energy`` ("max_minus" in the code: softmax of
max_j(A_ij) - A_ij; the paper's "affinity" saturates to one-hot rows on realistic maps), ``head`` ("danet":
each of identity/CAM/PAM wrapped in a DANet head, 3x3 conv C -> C/2 ... Dropout2d ... 1x1 conv C/2 -> C),
``head_dropout`` (0.1 in the code, also before the sum conv), ``global_dropout`` (Dropout(0.5) after the global
fc), ``global_pool`` ("avg" in the documented command) and ``neck`` ("parts": one bias-ful linear classifier
per part -- global and each stripe -- with CE and triplet averaged over the parts, and the raw 3072-d concat
at test, no BNNeck). `RELEASED_CODE` collects them. With ``of_taps`` on, the encoder also returns the maps the
released O.F. regularises (aux["of_positions"]: "intermediate" = shallow tap, and per stripe "before",
"cam", "pam" = each head's output, "after" = the sum conv's output).

Every part is switchable (``cam``, ``pam``, ``shallow_cam``, ``of_taps``, each branch) and ``branch_dim``
sets the width so a ResNet-18 variant trains on a CPU. O.W. is a loss, not a model part (see
reidlab.losses.WeightOrthogonality); `ABD_ABLATIONS` lists the paper's ablation grid as model switches
plus the loss flags the engine needs.

Branch order is fixed: branches live in an nn.ModuleDict built in the order ("global", "attention"), so
state-dict keys and the embedding layout never depend on set/dict iteration order (the released code built
the branch list from a set, so published weights could land in the wrong branch). Weight loading is strict.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from torch import Tensor, nn

from reidlab.suggest import did_you_mean

from .attention import CAM, PAM, DANetHead
from .backbones import (
    EXPECTED_UNUSED,
    BNNeck,
    ReIDModel,
    StateDictMismatchError,
    build_trunk,
    read_state_dict,
    strict_load,
)

__all__ = ["ABD_DEFAULTS", "ABD_ABLATIONS", "BRANCH_ORDER", "RELEASED_CODE", "ABDEncoder", "ABDNet", "PartsNeck",
           "build_abd_neck", "resolve_abd_options"]

BRANCH_ORDER = ("global", "attention")
HEAD_ORDER = ("identity", "cam", "pam")

ABD_DEFAULTS: dict = {
    "cam": True,              # CAM head on the attention-branch stripes
    "pam": True,              # PAM head on the attention-branch stripes
    "shallow_cam": True,      # CAM after layer1 (res_conv_2)
    "of_taps": True,          # return the two O.F. feature maps in the training dict
    "branch_dim": 1024,       # width of each branch / stripe embedding
    "num_stripes": 2,         # horizontal stripes of the attention branch
    "global_branch": True,
    "attention_branch": True,
    "global_pool": "max",     # global branch pooling; the released code's documented command uses "avg"
    "pam_reduction": 8,       # query/key channel reduction of PAM
    "cam_energy": "affinity",  # CAM softmax input: "affinity" (paper eq.) or "max_minus" (DANet code)
    "head": "bare",           # attention-branch heads: "bare" (residual CAM/PAM) | "danet" (released code)
    "head_dropout": 0.0,      # Dropout2d inside DANet heads and before the sum conv (released: 0.1)
    "global_dropout": 0.0,    # Dropout after the global branch's fc-BN-ReLU (released: 0.5)
    "neck": "bnneck",         # "bnneck": one BNNeck on the concat | "parts": a classifier per part, raw concat at test
}

# The released code's path (github.com/VITA-Group/ABD-Net, README_Training_and_Testing_Guides.md command and
# torchreid/components/{branches,attention}.py); the published Market-1501 numbers come from it.
RELEASED_CODE: dict = {"cam_energy": "max_minus", "head": "danet", "head_dropout": 0.1, "global_dropout": 0.5,
                       "global_pool": "avg", "neck": "parts"}

# The ablation grid of the paper (Table: baseline, +CAM, +PAM, +O.F., +O.W., full): "abd" is the model
# switch dict for build_model(abd=...), "of"/"ow" tell the engine whether to add the O.F./O.W. losses.
_OFF = {"cam": False, "pam": False, "shallow_cam": False, "of_taps": False}
ABD_ABLATIONS: dict[str, dict] = {
    "baseline": {"abd": dict(_OFF), "of": False, "ow": False},
    "+CAM": {"abd": {**_OFF, "cam": True, "shallow_cam": True}, "of": False, "ow": False},
    "+PAM": {"abd": {**_OFF, "pam": True}, "of": False, "ow": False},
    "+O.F.": {"abd": {**_OFF, "of_taps": True}, "of": True, "ow": False},
    "+O.W.": {"abd": dict(_OFF), "of": False, "ow": True},
    "all": {"abd": {"cam": True, "pam": True, "shallow_cam": True, "of_taps": True}, "of": True, "ow": True},
}


def resolve_abd_options(abd: dict | None) -> dict:
    """Merge user switches into ABD_DEFAULTS; unknown keys or bad values -> ValueError naming the key."""
    opts = dict(ABD_DEFAULTS)
    for k, v in (abd or {}).items():
        if k not in ABD_DEFAULTS:
            raise ValueError(f"unknown ABD option {k!r}{did_you_mean(str(k), ABD_DEFAULTS)}; "
                             f"allowed: {sorted(ABD_DEFAULTS)}")
        opts[k] = v
    for k in ("cam", "pam", "shallow_cam", "of_taps", "global_branch", "attention_branch"):
        if not isinstance(opts[k], bool):
            raise ValueError(f"ABD option {k!r} must be a bool, got {opts[k]!r}")
    for k in ("branch_dim", "num_stripes", "pam_reduction"):
        if not isinstance(opts[k], int) or isinstance(opts[k], bool) or opts[k] < 1:
            raise ValueError(f"ABD option {k!r} must be a positive int, got {opts[k]!r}")
    for k, allowed in (("cam_energy", ("affinity", "max_minus")), ("head", ("bare", "danet")),
                       ("neck", ("bnneck", "parts"))):
        if opts[k] not in allowed:
            raise ValueError(f"ABD option {k!r} must be one of {allowed}, got {opts[k]!r}")
    for k in ("head_dropout", "global_dropout"):
        v = opts[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
            raise ValueError(f"ABD option {k!r} must be a probability in [0, 1), got {v!r}")
    if opts["global_pool"] not in ("max", "avg"):
        raise ValueError(f"ABD option 'global_pool' must be 'max' or 'avg', got {opts['global_pool']!r}")
    if not (opts["global_branch"] or opts["attention_branch"]):
        raise ValueError("ABD needs at least one of 'global_branch' / 'attention_branch'")
    if (opts["cam"] or opts["pam"]) and not opts["attention_branch"]:
        raise ValueError("ABD options 'cam'/'pam' need 'attention_branch': True")
    return opts


def _init_new(m: nn.Module) -> None:
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)


class GlobalBranch(nn.Module):
    """layer4 copy -> global max/avg pool -> Linear(C, d, no bias) -> BN -> ReLU [-> Dropout]; out (B, d)."""

    def __init__(self, layer4: nn.Module, in_channels: int, dim: int, pool: str, dropout: float = 0.0) -> None:
        super().__init__()
        self.layer4 = layer4
        self.pool = pool
        drop = [nn.Dropout(dropout)] if dropout > 0 else []  # parameter-free: state-dict keys unchanged
        self.reduce = nn.Sequential(nn.Linear(in_channels, dim, bias=False), nn.BatchNorm1d(dim), nn.ReLU(), *drop)
        _init_new(self.reduce)
        self.out_dim = dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        m = self.layer4(x)
        v = F.adaptive_max_pool2d(m, 1) if self.pool == "max" else F.adaptive_avg_pool2d(m, 1)
        return self.reduce(v.flatten(1)), m


class AttentionBranch(nn.Module):
    """layer4 copy -> 1x1 conv-BN-ReLU (C -> d) -> stripes -> sum of heads -> 1x1 conv -> avg pool.

    heads: nn.ModuleDict in HEAD_ORDER ("identity", then "cam", "pam" when enabled), shared by the stripes;
    head="bare": identity / residual CAM / residual PAM; head="danet": each wrapped in a DANetHead.
    out: (B, num_stripes * d), the res_conv_5 map (B, C, h, w), per-stripe attention maps and per-stripe
    head outputs {"before": identity head, "cam", "pam", "after": sum conv} (the released O.F. positions).
    """

    def __init__(self, layer4: nn.Module, in_channels: int, dim: int, num_stripes: int, cam: bool, pam: bool,
                 pam_reduction: int, cam_energy: str, head: str = "bare", head_dropout: float = 0.0) -> None:
        super().__init__()
        self.layer4 = layer4
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU())
        heads = nn.ModuleDict()
        kinds = ["identity"] + (["cam"] if cam else []) + (["pam"] if pam else [])
        for kind in kinds:
            if head == "danet":
                heads[kind] = DANetHead(dim, kind, dropout=head_dropout, cam_energy=cam_energy,
                                        pam_reduction=pam_reduction)
            elif kind == "cam":
                heads[kind] = CAM(dim, energy=cam_energy)
            elif kind == "pam":
                heads[kind] = PAM(dim, reduction=pam_reduction)
            else:
                heads[kind] = nn.Identity()
        self.heads = heads
        self.head_kind = head
        self.sum_dropout = nn.Dropout2d(head_dropout)  # parameter-free: state-dict keys unchanged
        self.sum_conv = nn.Conv2d(dim, dim, 1)
        _init_new(self.reduce)
        _init_new(self.sum_conv)
        if head == "danet":
            for h in heads.values():
                _init_new(h)
        self.num_stripes = num_stripes
        self.out_dim = dim * num_stripes

    def forward(self, x: Tensor, want_maps: bool = False) -> tuple[Tensor, Tensor, dict]:
        m = self.layer4(x)
        r = self.reduce(m)
        if r.shape[2] < self.num_stripes:
            raise ValueError(f"attention branch map height {r.shape[2]} < num_stripes {self.num_stripes}; "
                             f"use taller input images")
        maps: dict[str, list[Tensor]] = {"cam": [], "pam": []}
        outs: dict[str, list[Tensor]] = {"before": [], "cam": [], "pam": [], "after": []}
        parts = []
        for stripe in torch.tensor_split(r, self.num_stripes, dim=2):
            total = None
            for name, head in self.heads.items():
                if name == "identity" and self.head_kind == "bare":
                    y = head(stripe)
                else:
                    y, S = head(stripe, return_attention=True)
                    if want_maps and S is not None:
                        maps[name].append(S)
                outs["before" if name == "identity" else name].append(y)
                total = y if total is None else total + y
            after = self.sum_conv(self.sum_dropout(total))
            outs["after"].append(after)
            parts.append(F.adaptive_avg_pool2d(after, 1).flatten(1))
        return torch.cat(parts, dim=1), m, maps, outs


class ABDEncoder(nn.Module):
    """ABD-Net feature extractor: x (B, 3, H, W) -> pre-BN embedding (B, D), D = branch_dim * (global +
    num_stripes). See the module docstring for the layout and `ABD_DEFAULTS` for the switches."""

    def __init__(self, backbone: str = "resnet50", last_stride: int = 1, pretrained: str | None = None,
                 **abd) -> None:
        super().__init__()
        self.options = resolve_abd_options(abd)
        o = self.options
        trunk = build_trunk(backbone, last_stride, None)
        layer4 = trunk.layer4
        trunk.layer4 = nn.Identity()  # the shared trunk ends at layer3; each branch owns a layer4 copy
        self.trunk = trunk
        c1, c4 = trunk.stage_channels["layer1"], trunk.out_channels
        self.shallow_cam = CAM(c1, energy=o["cam_energy"]) if o["shallow_cam"] else None
        branches = nn.ModuleDict()
        for name in BRANCH_ORDER:  # fixed order; never from a set
            if name == "global" and o["global_branch"]:
                branches[name] = GlobalBranch(copy.deepcopy(layer4), c4, o["branch_dim"], o["global_pool"],
                                              o["global_dropout"])
            elif name == "attention" and o["attention_branch"]:
                branches[name] = AttentionBranch(copy.deepcopy(layer4), c4, o["branch_dim"], o["num_stripes"],
                                                 o["cam"], o["pam"], o["pam_reduction"], o["cam_energy"],
                                                 o["head"], o["head_dropout"])
        self.branches = branches
        self.backbone_name, self.last_stride, self.pretrained = backbone, last_stride, pretrained
        self.out_channels = c4
        self.embedding_dim = sum(b.out_dim for b in branches.values())
        # the parts of the embedding, in order: the global vector, then one per stripe (neck="parts")
        self.part_dims = [o["branch_dim"]] * ((1 if o["global_branch"] else 0)
                                              + (o["num_stripes"] if o["attention_branch"] else 0))
        if pretrained is not None:
            self.load_pretrained_trunk(pretrained)

    def forward(self, x: Tensor, want_aux: bool = False) -> tuple[Tensor, list[Tensor], dict]:
        """-> (embedding (B, D), of_taps [shallow map (B, C1, H/4, W/4), res_conv_5 map (B, C4, h, w)] if
        of_taps else [], aux {"attention": {"cam": [...], "pam": [...], "shallow_cam": [...]},
        "of_positions" (of_taps or want_aux): {"intermediate": [shallow map], "before"/"cam"/"pam"/"after": per
        stripe (B, d, h_s, w), "res_conv_5": [attention branch's layer4 map]}})."""
        if x.dim() != 4:
            raise ValueError(f"ABD encoder expects (B, C, H, W), got shape {tuple(x.shape)}")
        t = self.trunk
        y = t.layer1(t.stem(x))
        att: dict[str, list[Tensor]] = {"cam": [], "pam": [], "shallow_cam": []}
        if self.shallow_cam is not None:
            y, S = self.shallow_cam(y, return_attention=True)
            if want_aux:
                att["shallow_cam"].append(S)
        taps = [y] if self.options["of_taps"] else []
        collect = self.options["of_taps"] or want_aux  # the O.F. positions, also for diagnostics (want_aux)
        positions: dict[str, list[Tensor]] = {"intermediate": [y]} if collect else {}
        y = t.layer3(t.layer2(y))
        feats = []
        for name, branch in self.branches.items():
            if name == "global":
                f, _ = branch(y)
            else:
                f, m, maps, outs = branch(y, want_maps=want_aux)
                att["cam"] += maps["cam"]
                att["pam"] += maps["pam"]
                if self.options["of_taps"]:
                    taps.append(m)
                if collect:
                    positions.update({k: v for k, v in outs.items() if v})
                    positions["res_conv_5"] = [m]
            feats.append(f)
        aux: dict = {"attention": att}
        if positions:
            aux["of_positions"] = positions
        return torch.cat(feats, dim=1), taps, aux

    def trunk_modules(self) -> list[nn.Module]:
        return [self.trunk] + [b.layer4 for b in self.branches.values()]

    def load_pretrained_trunk(self, path: str | Path) -> dict:
        """Load torchvision ImageNet weights (local file): conv1..layer3 into the shared trunk, layer4.* into
        every branch's layer4 copy; fc.* skipped. Strict on the trunk parts: a missing, unexpected or
        wrongly shaped key raises StateDictMismatchError."""
        state = read_state_dict(path)
        mapped: dict[str, Tensor] = {}
        skipped = sorted(k for k in state if k in EXPECTED_UNUSED)
        for k, v in state.items():
            if k in EXPECTED_UNUSED:
                continue
            if k.startswith("layer4."):
                for b in self.branches:
                    mapped[f"branches.{b}.{k}"] = v
            else:
                mapped[f"trunk.{k}"] = v
        own = self.state_dict()
        prefixes = ("trunk.",) + tuple(f"branches.{b}.layer4." for b in self.branches)
        wanted = [k for k in own if k.startswith(prefixes)]
        missing = sorted(k for k in wanted if k not in mapped)
        unexpected = sorted(k for k in mapped if k not in own)
        shapes = [(k, tuple(own[k].shape), tuple(v.shape)) for k, v in mapped.items()
                  if k in own and own[k].shape != v.shape]
        if missing or unexpected or shapes:
            raise StateDictMismatchError(str(path), missing, unexpected, shapes)
        result = self.load_state_dict(mapped, strict=False)
        assert not result.unexpected_keys
        return {"loaded": len(mapped), "skipped": skipped}


class PartsNeck(nn.Module):
    """The released code's heads: one Linear(d_p, num_classes) with bias per part of the embedding (global,
    then each stripe), no BNNeck. training: (list of logits (B, K) per part, list of part features (B, d_p));
    eval: the raw embedding (B, D) unchanged (the 3072-d concat of the paper's ResNet-50)."""

    def __init__(self, part_dims: list[int], num_classes: int) -> None:
        super().__init__()
        if not part_dims:
            raise ValueError("PartsNeck needs at least one part")
        self.part_dims = list(part_dims)
        self.classifiers = nn.ModuleList(nn.Linear(d, num_classes) for d in self.part_dims)
        for c in self.classifiers:
            nn.init.normal_(c.weight, std=0.001)
            nn.init.zeros_(c.bias)

    def forward(self, f: Tensor):
        if f.shape[-1] != sum(self.part_dims):
            raise ValueError(f"PartsNeck expects (B, {sum(self.part_dims)}), got {tuple(f.shape)}")
        if not self.training:
            return f
        parts = list(torch.split(f, self.part_dims, dim=1))
        return [c(p) for c, p in zip(self.classifiers, parts)], parts


def build_abd_neck(encoder: ABDEncoder, dim: int, num_classes: int) -> nn.Module:
    """The neck the encoder's ``neck`` option asks for, on an embedding of ``dim`` (= encoder.embedding_dim)."""
    if encoder.options["neck"] == "parts":
        return PartsNeck(encoder.part_dims, num_classes)
    return BNNeck(dim, num_classes)


class ABDNet(ReIDModel):
    """Image ABD-Net: ABDEncoder -> BNNeck on the concatenated embedding (single classifier).

    forward: training -> {"logits", "features" (B, D) pre-BN, "of_taps" (2 maps or [])}; eval -> (B, D).
    """

    task = "image"

    def __init__(self, num_classes: int, backbone: str = "resnet50", last_stride: int = 1,
                 pretrained: str | None = None, **abd) -> None:
        super().__init__()
        self.encoder = ABDEncoder(backbone, last_stride, pretrained, **abd)
        self.backbone_name, self.last_stride, self.pretrained = backbone, last_stride, pretrained
        self.embedding_dim = self.encoder.embedding_dim
        self.neck = build_abd_neck(self.encoder, self.embedding_dim, num_classes)

    def encode(self, x: Tensor, want_aux: bool = False) -> tuple[Tensor, list[Tensor], dict]:
        return self.encoder(x, want_aux=want_aux)

    def trunk_modules(self) -> list[nn.Module]:
        return self.encoder.trunk_modules()

    def load_weights(self, path: str | Path) -> dict:
        """Strictly load a full reidlab ABDNet state dict (file with a plain state dict or a
        "state_dict"/"model" entry): every key must match in name and shape."""
        return strict_load(self, read_state_dict(path), str(path))

    def _describe_extra(self) -> dict:
        return {"abd": dict(self.encoder.options), "branches": list(self.encoder.branches)}
