"""Recipes: runs with a published target, one YAML file each (``recipes/NAME.yaml``).

A recipe file has two blocks::

    recipe:   what the run reproduces and how it is measured (checked, see below)
      name, title
      source:    citation, url (or document), code
      target:    dataset, metrics {mAP, rank1, ...} in percent, epoch, selected_on_test_split
                 (yes | no | possibly) and selection (how the published number was chosen)
      protocol:  dataset, query, gallery, test_sampling, ap_mode, eval_protocol, distance, flip
                 (+ mars_gallery for MARS)
      follows:   released_code | paper | lab_note   (whose code path the config takes)
      reports:   last_epoch   (a recipe never reports a test-selected epoch)
      hyper_parameters, deviations: [{topic, paper / released_code / lab_note, recipe}, ...]
      variants:  {NAME: {description, overrides: {dotted.key: value}}}  e.g. the corrected variant
    config:   a partial RunConfig dict (data.root and model.pretrained are given at run time)

The protocol fields that the config decides (dataset, ap_mode, eval_protocol, distance, flip, mars_gallery)
are checked against the config, so the description cannot drift from what runs. ``run_recipe`` trains one
recipe (``reidlab.engine.train``) given a dataset root and a local ImageNet weight file and writes
``recipe.json`` next to the run's record: the target, the protocol and the LAST epoch's metrics.
``shrink=True`` turns any recipe into a seconds-long smoke run (ResNet-18, tiny images, 1-2 steps) so the
tests run every recipe.

Recipes are looked up in ./recipes, the source tree's recipes/ and an installed package's
``<prefix>/share/reidlab/recipes`` (first found wins); a path to a ``.yaml`` file works too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from reidlab.atomic import atomic_write_json
from reidlab.config import ConfigError, RunConfig
from reidlab.suggest import did_you_mean

__all__ = [
    "RECIPE_DIR",
    "Recipe",
    "RecipeError",
    "recipe_dirs",
    "list_recipes",
    "find_recipe",
    "load_recipe",
    "recipe_config",
    "shrink_overrides",
    "parse_override",
    "run_recipe",
    "format_target",
]

RECIPE_DIR = "recipes"
FOLLOWS = ("released_code", "paper", "lab_note")
SELECTED = ("yes", "no", "possibly")
TEST_SPLIT_LABEL = "best epoch picked on the test split"
METRIC_NAMES = ("mAP", "rank1", "rank5", "rank10", "rank20", "mINP")

_RECIPE_KEYS = {
    "required": ("name", "title", "source", "target", "protocol", "follows", "reports", "hyper_parameters",
                 "deviations"),
    "optional": ("variants",),
}
_SOURCE_KEYS = {"required": ("citation",), "optional": ("url", "document", "code")}
_TARGET_KEYS = {"required": ("dataset", "metrics", "epoch", "selected_on_test_split", "selection"),
                "optional": ("range",)}
_PROTOCOL_KEYS = {"required": ("dataset", "query", "gallery", "test_sampling", "ap_mode", "eval_protocol",
                               "distance", "flip"),
                  "optional": ("mars_gallery",)}


class RecipeError(ValueError):
    """A recipe file is malformed, names an unknown recipe/variant, or disagrees with its own config."""


@dataclass(frozen=True)
class Recipe:
    """One parsed recipe: its metadata block (``meta``), its partial config and where it was read from."""

    name: str
    path: Path
    meta: dict
    config: dict = field(repr=False)

    @property
    def target(self) -> dict:
        return self.meta["target"]

    @property
    def protocol(self) -> dict:
        return self.meta["protocol"]

    @property
    def variants(self) -> dict:
        return self.meta.get("variants") or {}

    def describe(self) -> str:
        """Several lines: title, source, target (with its selection label) and protocol."""
        p = self.protocol
        src = self.meta["source"]
        lines = [f"{self.name}: {self.meta['title']}",
                 f"  source:   {' '.join(str(src['citation']).split())}",
                 f"            {src.get('url') or src.get('document')}",
                 f"  target:   {format_target(self.target)}",
                 f"  protocol: {p['dataset']}, gallery {p.get('mars_gallery') or _clause(p['gallery'])}, "
                 f"test sampling {_clause(p['test_sampling'])}, AP {p['ap_mode']}, "
                 f"{p['distance']} distance{', flip' if p['flip'] else ''}",
                 f"  follows:  {self.meta['follows']}; reports the last epoch"]
        if self.variants:
            lines.append("  variants: " + ", ".join(self.variants))
        return "\n".join(lines)


# ---------------------------------------------------------------------- finding and loading
def recipe_dirs() -> list[Path]:
    """Where recipes are looked up, in order: ./recipes, the source tree's, an installed package's."""
    dirs = [Path(RECIPE_DIR), Path(__file__).resolve().parents[1] / RECIPE_DIR,
            Path(sys.prefix) / "share" / "reidlab" / RECIPE_DIR]
    out: list[Path] = []
    for d in dirs:
        if d.resolve() not in {o.resolve() for o in out}:
            out.append(d)
    return out


def list_recipes() -> dict[str, Path]:
    """Every recipe name and its file (the first folder of :func:`recipe_dirs` holding it wins), sorted."""
    found: dict[str, Path] = {}
    for d in recipe_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.yaml")):
                found.setdefault(p.stem, p.absolute())
    return dict(sorted(found.items()))


def find_recipe(name: str | Path) -> Path:
    """The file of recipe ``name`` (a name from :func:`list_recipes`, or a path to a .yaml file).

    Raises RecipeError for an unknown name (with a did-you-mean hint and the known names)."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p.absolute()
    known = list_recipes()
    if str(name) in known:
        return known[str(name)]
    listing = ", ".join(known) or f"none (looked in {', '.join(str(d) for d in recipe_dirs())})"
    raise RecipeError(f"unknown recipe {str(name)!r}{did_you_mean(str(name), known)}; known recipes: {listing}")


def load_recipe(name: str | Path) -> Recipe:
    """Read and check a recipe: metadata keys, target, protocol vs config, every variant's overrides.

    Raises RecipeError (naming the file and the key) for anything malformed."""
    import yaml

    path = find_recipe(name)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(doc, Mapping) or set(doc) != {"recipe", "config"}:
        keys = sorted(doc) if isinstance(doc, Mapping) else type(doc).__name__
        raise RecipeError(f"{path}: a recipe has exactly two top-level blocks, 'recipe' and 'config'; got {keys}")
    meta, config = doc["recipe"], doc["config"]
    _check_keys(meta, _RECIPE_KEYS, f"{path}: recipe")
    if meta["name"] != path.stem:
        raise RecipeError(f"{path}: recipe.name {meta['name']!r} must equal the file name {path.stem!r}")
    for key in ("title", "hyper_parameters"):
        _check_text(meta[key], f"{path}: recipe.{key}")
    _check_keys(meta["source"], _SOURCE_KEYS, f"{path}: recipe.source")
    if not (meta["source"].get("url") or meta["source"].get("document")):
        raise RecipeError(f"{path}: recipe.source needs a url (or, for unpublished material, a document)")
    _check_target(meta["target"], path)
    _check_keys(meta["protocol"], _PROTOCOL_KEYS, f"{path}: recipe.protocol")
    if meta["follows"] not in FOLLOWS:
        raise RecipeError(f"{path}: recipe.follows must be one of {FOLLOWS}; got {meta['follows']!r}")
    if meta["reports"] != "last_epoch":
        raise RecipeError(f"{path}: recipe.reports must be 'last_epoch' (a recipe never reports a test-selected "
                          f"epoch); got {meta['reports']!r}")
    _check_deviations(meta["deviations"], path)
    if not isinstance(config, Mapping):
        raise RecipeError(f"{path}: config must be a mapping (a partial RunConfig)")
    recipe = Recipe(name=path.stem, path=path, meta=dict(meta), config=dict(config))
    variants = meta.get("variants") or {}
    if not isinstance(variants, Mapping):
        raise RecipeError(f"{path}: recipe.variants must map names to {{description, overrides}}")
    for vname in [None, *variants]:
        if vname is not None:
            _check_keys(variants[vname], {"required": ("description", "overrides"), "optional": ()},
                        f"{path}: recipe.variants.{vname}")
        try:
            cfg = recipe_config(recipe, "/data", "/weights.pth", variant=vname)
        except ConfigError as e:
            where = f"variant {vname!r}" if vname else "config"
            raise RecipeError(f"{path}: {where}: {e}") from None
        _check_protocol(recipe, cfg, vname)
    return recipe


# ---------------------------------------------------------------------- building a run's config
def recipe_config(
    recipe: Recipe | str | Path,
    root: str | Path,
    weights: str | Path,
    *,
    variant: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    results_dir: str | Path | None = None,
    run_id: str | None = None,
    shrink: bool = False,
) -> RunConfig:
    """The RunConfig of ``recipe``: its config block, then ``data.root`` / ``model.pretrained`` (as given;
    not checked here), the variant's overrides, ``overrides`` (dotted keys), and with ``shrink`` the
    smoke-test settings of :func:`shrink_overrides`. ``run_id`` defaults to the recipe's (plus
    ``-VARIANT``). Raises ConfigError for a bad key or value and RecipeError for an unknown variant."""
    r = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    cfg = RunConfig.from_dict(r.config)
    base_id = r.config.get("run_id", r.name)
    changes: dict[str, Any] = {"data.root": str(root), "model.pretrained": str(weights),
                               "run_id": base_id if variant is None else f"{base_id}-{variant}"}
    if results_dir is not None:
        changes["results_dir"] = str(results_dir)
    cfg = cfg.override(changes)
    if variant is not None:
        if variant not in r.variants:
            raise RecipeError(f"recipe {r.name!r} has no variant {variant!r}{did_you_mean(variant, r.variants)}; "
                              f"variants: {', '.join(r.variants) or 'none'}")
        cfg = cfg.override(dict(r.variants[variant]["overrides"]))
    if overrides:
        cfg = cfg.override(dict(overrides))
    if shrink:
        cfg = cfg.override(shrink_overrides(cfg))
    if run_id is not None:
        cfg = cfg.override({"run_id": run_id})
    return cfg


def shrink_overrides(cfg: RunConfig) -> dict[str, Any]:
    """Overrides that make ``cfg`` a seconds-long CPU smoke run with the same code path: ResNet-18, 32 x 16
    images, P x K = 2 x 2, clips of 2 frames, one step per epoch, one epoch (two when the recipe has a
    fixbase phase: one fixbase epoch, then one full one), O.F./O.W. active in the last epoch, ABD branches
    16 wide, one evaluation at the end. Numbers from such a run mean nothing."""
    fixbase = 1 if cfg.train.fixbase_epochs > 0 else 0
    epochs = 1 + fixbase
    out: dict[str, Any] = {
        "model.backbone": "resnet18", "data.height": 32, "data.width": 16, "data.p": 2, "data.k": 2,
        "data.seq_len": min(cfg.data.seq_len, 2), "data.workers": 0, "train.epochs": epochs,
        "train.fixbase_epochs": fixbase, "train.steps_per_epoch": 1, "train.eval_every": 0,
        "train.eval_epochs": [], "train.checkpoint_every": 0, "train.device": "cpu", "train.max_minutes": None,
        "loss.of.start_epoch": min(cfg.loss.of.start_epoch, epochs - 1),
        "loss.ow.start_epoch": min(cfg.loss.ow.start_epoch, epochs - 1), "eval.batch_size": 8,
    }
    if cfg.optim.schedule == "step":
        out["optim.step_size"] = 1  # the decay itself runs too
    elif cfg.optim.schedule == "multistep":
        out["optim.milestones"] = [epochs - 1] if epochs > 1 else [0]
    if cfg.model.abd is not None:
        out["model.abd.branch_dim"] = 16
    return out


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> (key, value) with the value read as YAML (numbers, booleans, lists, mappings).

    Raises ValueError when there is no ``=`` or the key is empty."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"override {text!r} must look like key=value (dotted key, e.g. train.epochs=10)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


# ---------------------------------------------------------------------- running
def run_recipe(
    name: str | Path,
    root: str | Path,
    weights: str | Path,
    *,
    results: str | Path | None = None,
    variant: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    run_id: str | None = None,
    shrink: bool = False,
    force: bool = False,
    progress: bool = True,
) -> tuple[Any, dict]:
    """Train recipe ``name`` on the dataset at ``root`` from the local ImageNet weight file ``weights``.

    results: results folder (the run goes to ``<results>/runs/<run_id>``; default ``$REIDLAB_RESULTS`` or
    ./results). Returns ``(RunRecord, report)``; the report (also ``recipe.json`` in the run folder) holds
    the recipe, variant, target, protocol and the LAST evaluated epoch's metrics next to the target.

    Raises RecipeError (unknown recipe/variant, malformed file), FileNotFoundError (missing root or
    weight file: nothing is ever downloaded), ConfigError (bad override), and what ``engine.train`` raises.
    """
    from reidlab.notebook import default_results_dir

    recipe = load_recipe(name)
    root_p, weights_p = Path(root), Path(weights)
    if not root_p.is_dir():
        raise FileNotFoundError(f"dataset root {str(root_p)!r} is not a folder (recipe {recipe.name!r} needs the "
                                f"{recipe.protocol['dataset']} folder; datasets are never downloaded)")
    if not weights_p.is_file():
        raise FileNotFoundError(f"weight file {str(weights_p)!r} not found (give a local torchvision ImageNet "
                                f"state dict, e.g. resnet50.pth; weights are never downloaded)")
    res = Path(results) if results is not None else default_results_dir()
    cfg = recipe_config(recipe, root_p.absolute(), weights_p.absolute(), variant=variant, overrides=overrides,
                        results_dir=res / "runs", run_id=run_id, shrink=shrink)
    from reidlab.engine import train

    record = train(cfg, force=force, progress=progress)
    report = recipe_report(recipe, record, variant=variant, overrides=overrides, shrink=shrink)
    atomic_write_json(Path(record.run_dir) / "recipe.json", report)
    return record, report


def recipe_report(recipe: Recipe, record: Any, *, variant: str | None = None,
                  overrides: Mapping[str, Any] | None = None, shrink: bool = False) -> dict:
    """What a recipe run reports: the LAST evaluated epoch's metrics (percent) beside the target."""
    last = record.final_metrics() if record is not None else None
    reported = None
    if last is not None:
        reported = {"epoch": int(last["epoch"])}
        reported.update({k: round(100.0 * float(last[k]), 2) for k in METRIC_NAMES if k in last})
    return {
        "recipe": recipe.name, "title": recipe.meta["title"], "variant": variant,
        "overrides": dict(overrides or {}), "shrunk": shrink,
        "source": recipe.meta["source"], "target": recipe.target, "target_label": format_target(recipe.target),
        "protocol": recipe.protocol, "follows": recipe.meta["follows"],
        "reported": reported, "reported_as": "last evaluated epoch (never a test-selected one)",
        "state": getattr(record, "state", None),
    }


def format_target(target: Mapping[str, Any]) -> str:
    """``"75.8 mAP / 83.1 Rank-1 (...)"`` with how the number was selected (test split labelled)."""
    m = target["metrics"]
    parts = [f"{m['mAP']} mAP", f"{m['rank1']} Rank-1"]
    if target.get("range"):
        rng = target["range"]
        parts.append(f"range {rng['mAP'][0]}-{rng['mAP'][1]} mAP / {rng['rank1'][0]}-{rng['rank1'][1]} Rank-1 "
                     f"over epochs {rng['epochs'][0]}-{rng['epochs'][-1]}")
    sel = target["selected_on_test_split"]
    if sel == "yes":
        how = TEST_SPLIT_LABEL
    elif sel == "possibly":
        how = "epoch not stated; possibly selected on the test split"
    else:
        how = f"epoch {target['epoch']}, not selected" if target.get("epoch") is not None else "not selected"
    return f"{' / '.join(parts[:2])} on {target['dataset']} ({how})" + (f"; {parts[2]}" if len(parts) > 2 else "")


# ---------------------------------------------------------------------- checks
def _check_keys(block: Any, spec: Mapping[str, tuple], where: str) -> None:
    if not isinstance(block, Mapping):
        raise RecipeError(f"{where} must be a mapping, got {type(block).__name__}")
    allowed = (*spec["required"], *spec["optional"])
    for k in block:
        if k not in allowed:
            raise RecipeError(f"{where}: unknown key {k!r}{did_you_mean(str(k), allowed)}; allowed: {', '.join(allowed)}")
    missing = [k for k in spec["required"] if k not in block]
    if missing:
        raise RecipeError(f"{where}: missing key(s) {', '.join(missing)}")


def _check_text(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise RecipeError(f"{where} must be a non-empty text")


def _check_target(t: Any, path: Path) -> None:
    where = f"{path}: recipe.target"
    _check_keys(t, _TARGET_KEYS, where)
    m = t["metrics"]
    if not isinstance(m, Mapping) or not {"mAP", "rank1"} <= set(m):
        raise RecipeError(f"{where}.metrics must give at least mAP and rank1 (percent)")
    for k, v in m.items():
        if k not in METRIC_NAMES:
            raise RecipeError(f"{where}.metrics: unknown metric {k!r}{did_you_mean(str(k), METRIC_NAMES)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 < v <= 100:
            raise RecipeError(f"{where}.metrics.{k} must be a percentage in (1, 100] (not a fraction); got {v!r}")
    if t["epoch"] is not None and (isinstance(t["epoch"], bool) or not isinstance(t["epoch"], int)):
        raise RecipeError(f"{where}.epoch must be an int or null (not stated); got {t['epoch']!r}")
    if t["selected_on_test_split"] not in SELECTED:
        raise RecipeError(f"{where}.selected_on_test_split must be one of {SELECTED} (quote yes/no in YAML); "
                          f"got {t['selected_on_test_split']!r}")
    _check_text(t["selection"], f"{where}.selection")
    if t["selected_on_test_split"] == "yes" and TEST_SPLIT_LABEL not in " ".join(t["selection"].split()):
        raise RecipeError(f"{where}.selection must say '{TEST_SPLIT_LABEL}' when selected_on_test_split is yes")
    rng = t.get("range")
    if rng is not None and (not isinstance(rng, Mapping) or not {"epochs", "mAP", "rank1"} <= set(rng)):
        raise RecipeError(f"{where}.range must give epochs, mAP and rank1")


def _check_deviations(devs: Any, path: Path) -> None:
    where = f"{path}: recipe.deviations"
    if not isinstance(devs, list):
        raise RecipeError(f"{where} must be a list (empty when the recipe follows its source exactly)")
    for i, d in enumerate(devs):
        _check_keys(d, {"required": ("topic", "recipe"), "optional": ("paper", "released_code", "lab_note")},
                    f"{where}[{i}]")
        if not any(k in d for k in ("paper", "released_code", "lab_note")):
            raise RecipeError(f"{where}[{i}] must say what the paper, released_code or lab_note does")


def _check_protocol(recipe: Recipe, cfg: RunConfig, variant: str | None) -> None:
    """The protocol fields that the config decides must describe the (base) config."""
    if variant is not None:
        return  # a variant may change the protocol on purpose (e.g. the MARS gallery convention)
    p, where = recipe.protocol, f"{recipe.path}: recipe.protocol"
    pairs = [("dataset", p["dataset"], cfg.data.dataset), ("ap_mode", p["ap_mode"], cfg.eval.ap_mode),
             ("eval_protocol", p["eval_protocol"], cfg.eval.protocol), ("distance", p["distance"], cfg.eval.metric),
             ("flip", p["flip"], cfg.eval.flip), ("target.dataset", recipe.target["dataset"], cfg.data.dataset)]
    if cfg.data.dataset == "mars":
        if "mars_gallery" not in p:
            raise RecipeError(f"{where}: a MARS recipe must name its mars_gallery convention (remaining | all)")
        pairs.append(("mars_gallery", p["mars_gallery"], cfg.data.options.get("mars_gallery", "remaining")))
    for key, said, runs in pairs:
        if said != runs:
            raise RecipeError(f"{where}.{key} says {said!r} but the config runs {runs!r}")
    sampling = str(p["test_sampling"]).split(":")[0].split()[0].lower()
    expected = "dense" if cfg.model.task == "video" else "single"
    if sampling != expected:
        raise RecipeError(f"{where}.test_sampling must start with {expected!r} for a {cfg.model.task} recipe "
                          f"(the engine's test sampling); got {p['test_sampling']!r}")


def _clause(text: Any) -> str:
    """The first clause of a description (up to its first ':' or ';'), whitespace collapsed."""
    s = str(text)
    for sep in (":", ";"):
        s = s.split(sep)[0]
    return " ".join(s.split())
