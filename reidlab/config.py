"""Typed run configuration: nested dataclasses with a strict JSON/YAML round trip.

A run is fully described by one :class:`RunConfig`. Every key is checked on load: an unknown key or a
value of the wrong type raises :class:`ConfigError` naming the dotted key (``"train.epochs"``) and the
expected type, so a typo in a sweep file never silently falls back to a default.

The defaults describe a SHORT run on the built-in synthetic world (about a minute on a 2-core CPU), which
is what the notebooks and the main job start from; real-data recipes override them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from reidlab.atomic import atomic_write_text

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "OFConfig",
    "OWConfig",
    "LossConfig",
    "OptimConfig",
    "TrainConfig",
    "EvalConfig",
    "RunConfig",
    "PATH_KEYS",
]

#: config keys holding filesystem paths; run records store them relative to the project root when they lie
#: inside it (see reidlab.runs.records.record_config), and RunRecord.run_config() resolves them back
PATH_KEYS = ("results_dir", "data.root", "model.pretrained")


class ConfigError(ValueError):
    """A configuration key is unknown, ill-typed or out of range; the message names the dotted key."""


@dataclass
class DataConfig:
    """Dataset and input pipeline. ``root`` is the dataset folder (for ``synthetic``: where the world lives)."""

    dataset: str = "synthetic"
    root: str = "data/synthetic"
    options: dict = field(default_factory=dict)  # passed to build_dataset, e.g. {"mars_gallery": "all"}
    synthetic: dict = field(default_factory=dict)  # knobs for synthetic.ensure_world (ids, cams, seed, ...)
    height: int = 64  # input size in pixels
    width: int = 32
    seq_len: int = 4  # frames per training clip and per dense test chunk (video)
    sampling: str = "restricted_random"  # train frame sampling: evenly | random | restricted_random
    p: int = 8  # identities per batch
    k: int = 4  # tracklets (or images) per identity per batch
    workers: int = 0  # DataLoader worker processes
    cache: bool = True  # keep decoded frames in an LRU cache
    cache_items: int = 20000  # frames held by that cache


@dataclass
class ModelConfig:
    """Arguments of ``reidlab.models.build_model`` (num_classes comes from the dataset)."""

    task: str = "video"  # video | image
    backbone: str = "resnet18"
    last_stride: int = 1
    pretrained: str | None = None  # local torchvision state-dict file; never downloaded
    fusion: str = "mean"  # temporal fusion (video only)
    fusion_options: dict = field(default_factory=dict)
    abd: dict | None = None  # None = plain backbone; else ABD-Net switches (cam, pam, of_taps, ...)


@dataclass
class OFConfig:
    """Feature orthogonality (O.F., ABD-Net): regulariser on the model's ``of_taps`` feature maps."""

    name: str = "none"  # svdo | svdo_exact | so | srip | none
    beta: float = 1e-6
    exponent: int = 1
    start_epoch: int = 0  # 0-based epoch from which the term is added (released ABD-Net code: 23)
    n_iter: int = 2  # power iterations
    grad: str = "fixed_vectors"  # fixed_vectors | unrolled (backprop through every iteration, as the released code)
    taps: str = "trunk"  # trunk: shallow map + raw res_conv_5 map | released: shallow + per-stripe maps around CAM/PAM
    shallow_weight: float = 1.0  # multiplier of the shallow tap's term (released code: 0.01)
    factor: float = 1.0  # constant multiplier (released code: sum / (B / 32) = 32 x the per-sample mean)


@dataclass
class OWConfig:
    """Weight orthogonality (O.W., ABD-Net): regulariser on every conv weight."""

    name: str = "none"
    beta: float = 1e-3
    exponent: int = 2
    start_epoch: int = 0
    side: str = "rows"  # rows | smaller (Gram of the smaller side of an expanding conv)
    n_iter: int = 2
    grad: str = "fixed_vectors"  # fixed_vectors | unrolled (backprop through every iteration, as the released code)
    scope: str = "all"  # all convs of the model | backbone (trunk + layer4 copies) | stem (conv1 only: what the released code's module walk reached)
    reduction: str = "sum"  # sum | mean of the per-layer terms
    factor: float = 1.0  # constant multiplier (released code: 10, i.e. beta * 10 * gap^2)


@dataclass
class LossConfig:
    """Weights of the loss terms: ce * CE(label smoothing) + triplet * batch-hard triplet + O.F. + O.W."""

    ce: float = 1.0
    label_smooth: float = 0.1
    triplet: float = 1.0
    margin: float = 0.3
    soft_margin: bool = False
    of: OFConfig = field(default_factory=OFConfig)
    ow: OWConfig = field(default_factory=OWConfig)


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (linear warm-up from 0.1 x lr, then cosine or step decay)."""

    name: str = "adam"  # adam | sgd
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    momentum: float = 0.9  # sgd only
    warmup_epochs: float = 1.0  # may be fractional; the ramp is per step
    schedule: str = "cosine"  # cosine | step | multistep | constant
    step_size: int = 40  # step schedule: multiply by gamma every step_size epochs
    milestones: list = field(default_factory=list)  # multistep: 0-based epochs at which lr is multiplied by gamma, e.g. [20, 40]
    gamma: float = 0.1


@dataclass
class TrainConfig:
    """Training loop. ``steps_per_epoch=None`` means one pass of the identity sampler; an explicit count is
    run exactly: fewer steps stop the pass early, more continue with further seeded P x K draws."""

    epochs: int = 6
    eval_every: int = 2  # evaluate every N epochs (0 = only at the end); the last epoch is always evaluated
    eval_epochs: list = field(default_factory=list)  # further epochs (1-based, ints) to evaluate, e.g. [22]: a close pair at the end shows a plateau
    fixbase_epochs: int = 0  # train only model.new_parameters() for these first epochs, then reset optimiser
    max_minutes: float | None = None  # time budget: stop after the epoch that crosses it, evaluate, status "budget"
    amp: bool = True  # autocast on CUDA only (ignored on CPU)
    amp_dtype: str = "auto"  # auto (bf16 where supported, else fp16) | bf16 | fp16
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile the training model
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    steps_per_epoch: int | None = None  # optimiser steps per epoch (None = one sampler pass, whatever its length)
    checkpoint_every: int = 0  # keep a numbered snapshot every N epochs (0 = none); last.pt is written every epoch
    log_every: int = 0  # print a plain progress line every N steps (0 = off); for logs without a terminal
    grad_clip: float | None = None  # max gradient norm (None = no clipping)


@dataclass
class EvalConfig:
    """Evaluation through ``reidlab.eval.evaluate_features``."""

    metric: str = "euclidean"  # euclidean | cosine
    rerank: bool = False  # k-reciprocal re-ranking
    flip: bool = False  # mean of the features of each frame and its mirror image
    max_rank: int = 50
    batch_size: int = 32  # dense chunks (video) or images per forward pass
    protocol: str = "market1501"  # evaluation protocol of reidlab.eval (market1501 | cuhk03)
    ap_mode: str = "toolbox"  # toolbox | official


@dataclass
class RunConfig:
    """Everything that defines one run; ``results_dir/run_id`` holds its record."""

    run_id: str = "default"
    results_dir: str = "results/runs"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # ------------------------------------------------------------------ construction / serialisation
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        """Build from a (possibly partial) nested dict; missing keys take their defaults."""
        cfg = _build(cls, d, "")
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        """Plain nested dict (JSON/YAML serialisable), every key present."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        """Load a ``.json``, ``.yaml`` or ``.yml`` file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        text = path.read_text(encoding="utf-8")
        suffix = path.suffix.lower()
        if suffix == ".json":
            try:
                d = json.loads(text)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}: not valid JSON ({e})") from None
        elif suffix in (".yaml", ".yml"):
            import yaml

            try:
                d = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise ConfigError(f"{path}: not valid YAML ({e})") from None
            d = {} if d is None else d
        else:
            raise ConfigError(f"{path}: config files must end in .json, .yaml or .yml")
        if not isinstance(d, Mapping):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(d).__name__}")
        return cls.from_dict(d)

    def to_file(self, path: str | Path) -> Path:
        """Write as JSON or YAML (by suffix), atomically."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = self.to_json()
        elif suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            raise ConfigError(f"{path}: config files must end in .json, .yaml or .yml")
        atomic_write_text(path, text)
        return path

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    # ------------------------------------------------------------------ changes
    def override(self, updates: Mapping[str, Any] | None = None, /, **kw: Any) -> "RunConfig":
        """Return a copy with dotted keys replaced, e.g. ``override({"model.fusion": "softmax_cosine"})``.

        A dotted key may reach into a dict field (``"data.options.mars_gallery"``); a dict given for a
        nested section (``{"loss.of": {"name": "svdo"}}``) updates only the keys it names.
        """
        items = dict(updates or {})
        items.update(kw)
        d = self.to_dict()
        for key, value in items.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f"override keys must be dotted strings, got {key!r}")
            _set_dotted(d, key, value, RunConfig)
        return RunConfig.from_dict(d)

    def validate(self) -> None:
        """Re-check every field (types and choices); raises ConfigError naming the key."""
        _build(RunConfig, dataclasses.asdict(self), "")
        _check_values(self)

    def copy(self) -> "RunConfig":
        return copy.deepcopy(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.results_dir) / self.run_id


# ---------------------------------------------------------------------- checking machinery

_CHOICES: dict[str, tuple] = {
    "data.sampling": ("evenly", "random", "restricted_random"),
    "model.task": ("video", "image"),
    "loss.ow.side": ("rows", "smaller"),
    "loss.ow.grad": ("fixed_vectors", "unrolled"),
    "loss.ow.scope": ("all", "backbone", "stem"),
    "loss.ow.reduction": ("sum", "mean"),
    "loss.of.grad": ("fixed_vectors", "unrolled"),
    "loss.of.taps": ("trunk", "released"),
    "optim.name": ("adam", "sgd"),
    "optim.schedule": ("cosine", "step", "multistep", "constant"),
    "train.amp_dtype": ("auto", "bf16", "fp16"),
    "eval.metric": ("euclidean", "cosine"),
    "eval.ap_mode": ("toolbox", "official"),
}

# (dotted key, lowest allowed value)
_MINIMA: dict[str, float] = {
    "seed": 0,
    "data.height": 1,
    "data.width": 1,
    "data.seq_len": 1,
    "data.p": 1,
    "data.k": 1,
    "data.workers": 0,
    "data.cache_items": 0,
    "model.last_stride": 1,
    "loss.ce": 0.0,
    "loss.label_smooth": 0.0,
    "loss.triplet": 0.0,
    "loss.margin": 0.0,
    "loss.of.beta": 0.0,
    "loss.of.start_epoch": 0,
    "loss.of.n_iter": 1,
    "loss.ow.beta": 0.0,
    "loss.ow.start_epoch": 0,
    "loss.ow.n_iter": 1,
    "loss.ow.factor": 0.0,
    "loss.of.shallow_weight": 0.0,
    "loss.of.factor": 0.0,
    "optim.lr": 0.0,
    "optim.weight_decay": 0.0,
    "optim.momentum": 0.0,
    "optim.warmup_epochs": 0.0,
    "optim.step_size": 1,
    "optim.gamma": 0.0,
    "train.epochs": 1,
    "train.eval_every": 0,
    "train.fixbase_epochs": 0,
    "train.max_minutes": 0.0,
    "train.steps_per_epoch": 1,
    "train.checkpoint_every": 0,
    "train.log_every": 0,
    "train.grad_clip": 0.0,
    "eval.max_rank": 1,
    "eval.batch_size": 1,
}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}' expects {_type_name(tp)}, got {type(value).__name__} ({value!r})")
    if tp is type(None):
        if value is None:
            return None
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, Mapping):
            return _build(tp, value, key)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is dict:
        if isinstance(value, Mapping):
            for k in value:
                if not isinstance(k, str):
                    raise ConfigError(f"config key '{key}' must have string keys, got {k!r}")
            # JSON-plain (tuples -> lists) so a config equals its own JSON/YAML round trip
            return _plain(copy.deepcopy(dict(value)))
    elif tp is list:  # lists of epochs: ints only
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return [int(v) for v in value]
    else:  # pragma: no cover - every annotation above is one of these
        raise TypeError(f"unsupported config annotation {tp!r} for {key}")
    raise ConfigError(f"config key '{key}' expects {_type_name(tp)}, got {type(value).__name__} ({value!r})")


def _build(cls: type, d: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(d, Mapping):
        raise ConfigError(f"config key '{prefix or '<root>'}' expects a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for k, v in d.items():
        dotted = f"{prefix}.{k}" if prefix else str(k)
        if k not in hints or k not in names:
            where = f"under '{prefix}'" if prefix else "at top level"
            raise ConfigError(f"unknown config key '{dotted}'; valid keys {where}: {', '.join(names)}")
        kwargs[k] = _coerce(hints[k], v, dotted)
    return cls(**kwargs)


def _check_values(cfg: RunConfig) -> None:
    d = _flatten(cfg.to_dict())
    for key, allowed in _CHOICES.items():
        if d[key] not in allowed:
            raise ConfigError(f"config key '{key}' must be one of {', '.join(allowed)}; got {d[key]!r}")
    for key, lo in _MINIMA.items():
        v = d[key]
        if v is not None and v < lo:
            raise ConfigError(f"config key '{key}' must be >= {lo}; got {v!r}")
    if not cfg.run_id or any(c in cfg.run_id for c in "/\\\0") or cfg.run_id in (".", ".."):
        raise ConfigError(f"config key 'run_id' must be a plain folder name, got {cfg.run_id!r}")
    if cfg.train.fixbase_epochs > cfg.train.epochs:
        raise ConfigError(
            f"config key 'train.fixbase_epochs' ({cfg.train.fixbase_epochs}) exceeds train.epochs ({cfg.train.epochs})"
        )
    ms = cfg.optim.milestones
    if not all(isinstance(m, int) and not isinstance(m, bool) and m >= 0 for m in ms) or list(ms) != sorted(set(ms)):
        raise ConfigError(f"config key 'optim.milestones' must be increasing non-negative ints (0-based epochs); got {ms!r}")
    if cfg.optim.schedule == "multistep" and not ms:
        raise ConfigError("config key 'optim.milestones' must list epochs when optim.schedule is 'multistep'")
    dev = cfg.train.device
    if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise ConfigError(f"config key 'train.device' must be auto, cpu, cuda or cuda:N; got {dev!r}")


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted view of the dataclass part of a config dict (dict-valued fields stay whole)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, Mapping) and key in _SECTION_KEYS:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _section_keys(cls: type, prefix: str = "") -> set[str]:
    keys = set()
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            key = f"{prefix}.{f.name}" if prefix else f.name
            keys.add(key)
            keys |= _section_keys(tp, key)
    return keys


_SECTION_KEYS = _section_keys(RunConfig)


def _set_dotted(d: dict, key: str, value: Any, cls: type) -> None:
    parts = key.split(".")
    node: Any = d
    tp: Any = cls
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if tp is not None and dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            if part not in hints:
                names = ", ".join(f.name for f in dataclasses.fields(tp))
                where = ".".join(parts[:i]) or "top level"
                raise ConfigError(f"unknown config key '{here}'; valid keys under {where}: {names}")
            tp = hints[part]
            if last:
                if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
                    merged = dict(node.get(part) or {})
                    for k, v in value.items():
                        _set_dotted(merged, str(k), v, tp)
                    node[part] = merged
                else:
                    node[part] = copy.deepcopy(value)
                return
            if not dataclasses.is_dataclass(tp):
                # entering a dict-valued field (options, abd, ...): plain keys from here on
                if node.get(part) is None:
                    node[part] = {}
                if not isinstance(node[part], dict):
                    raise ConfigError(f"config key '{here}' is not a mapping; cannot set '{key}'")
                tp = None
            node = node[part]
        else:
            if last:
                node[part] = copy.deepcopy(value)
                return
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]


def _plain(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
