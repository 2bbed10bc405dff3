"""Command line: `python -m reidlab <command>` (also installed as `reidlab`).

    run NOTEBOOK [-p NAME VALUE]...   execute a notebook with papermill (parameters checked first)
    params NOTEBOOK                   list a notebook's parameters (name: type = default  # help)
    sweep SPEC.yaml [--jobs N] [--dry-run] [--force] [-p NAME VALUE]...
          [--launcher local|dask] [--scheduler ADDRESS] [--gpus IDS]   (reidlab.launchers)
    table [--runs DIR] [--out DIR] [--baseline VARIANT]
    synth [--out DIR --ids N --cams N --seed S ...]     (reidlab.data.synthetic)
    eval CHECKPOINT                   evaluate a checkpoint on its run's test split
    rank RUN_DIR [--topk 10] [--queries 12] [--order worst|best|random|first-match] [--out PNG] [--csv CSV]
                                      ranked lists of a run's queries (figure + CSV), worst queries first
    tensorboard [--runs DIR]          (re)write TensorBoard event files of stored runs from their records
    check-data NAME ROOT [--workers N] [--no-decode] [--max-listed N]   a dataset vs its published statistics
    recipe NAME --root DATA_ROOT --weights RESNET.pth [--variant V] [--results DIR] [-o key=value]...
          [--run-id ID] [--shrink] [--force] [--dry-run]     a run with a published target (reidlab.recipes)
    recipe --list                     the recipes, their targets and protocols
    main [--quick] [--jobs N]         the main job: fusion sweep -> study -> tables -> notebooks -> publish
    abd [--quick] [--jobs N]          the ABD-Net ablation: sweep -> scores, CIs, correlation -> results/abd

Exit codes: 0 success, 1 a run/cell failed, 2 bad arguments or parameters (nothing was run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser", "main_job", "abd_job"]

#: notebooks the main job runs on the sweep's runs after `report` (longest first: they run in parallel)
MAIN_SPEC = "sweeps/study.yaml"
#: what the main job publishes from its work folder into results/ (checkpoints and caches stay behind)
PUBLISHED = ("runs", "study", "tables", "figures", "notebooks")
QUICK_OVERRIDES = {"epochs": 1, "steps_per_epoch": 2, "eval_every": 1}
ABD_SPEC = "sweeps/abd.yaml"
ABD_CALIBRATION_SPEC = "sweeps/abd_ow_beta.yaml"  # run first: the O.W. beta the ablation uses comes from it
#: what the ABD job publishes into <results>/abd
ABD_PUBLISHED = ("runs", "tables", "figures", "abd")


def _err(msg: str) -> None:
    print(f"reidlab: error: {msg}", file=sys.stderr)


def _params(pairs: Sequence[Sequence[str]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in pairs or []:
        if name in out:
            raise ValueError(f"parameter {name!r} given twice")
        out[name] = value
    return out


def _add_launcher_args(p: argparse.ArgumentParser) -> None:
    """Where a sweep's runs execute (reidlab.launchers): `sweep` and `main`."""
    p.add_argument("--launcher", choices=("local", "dask"), default="local",
                   help="where runs execute: local processes (default) or a Dask distributed cluster")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="dask: scheduler address (tcp://host:8786) or scheduler file of a running cluster "
                        "(default: a local cluster of --jobs single-threaded workers)")
    p.add_argument("--gpus", metavar="IDS",
                   help="one run per GPU: device ids (e.g. 0,1,2,3; slot i gets CUDA_VISIBLE_DEVICES="
                        "IDS[i %% n]; --jobs defaults to their number), or 'workers' with --scheduler "
                        "(each run asks for a GPU=1 resource; the workers own their devices)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="reidlab", description="reidlab: notebook-driven re-ID ablations.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    param_help = "notebook parameter (repeatable); lists/dicts as YAML, e.g. -p fusion_options '{tau: 0.1}'"

    p = sub.add_parser("run", help="execute a notebook with papermill after checking its parameters")
    p.add_argument("notebook", help="notebook path or shipped notebook name (train_fusion, report, ...)")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help=param_help)
    p.add_argument("--run-id", help="run id (training notebooks; default: derived from the parameters)")
    p.add_argument("--results", help="results folder (default $REIDLAB_RESULTS or ./results)")
    p.add_argument("--output", help="where to write the executed notebook (default: see docs)")
    p.add_argument("--tag", help="suffix of the executed copy of a non-training notebook")
    p.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds (default none)")
    p.add_argument("--kernel", help="Jupyter kernel name (default: one running this interpreter)")
    p.add_argument("--quiet", action="store_true", help="do not stream cell output")

    p = sub.add_parser("params", help="list a notebook's parameters")
    p.add_argument("notebook")

    p = sub.add_parser("sweep", help="run a grid of notebook runs from a YAML spec")
    p.add_argument("spec", help="sweep spec YAML (see sweeps/fusion.yaml)")
    p.add_argument("--jobs", type=int, default=None, help="runs in parallel (processes; default 1)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state; run nothing")
    _add_launcher_args(p)
    p.add_argument("--force", action="store_true", help="re-run finished runs too")
    p.add_argument("--results", help="results folder (default $REIDLAB_RESULTS or ./results)")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="override a parameter for every run (budgets; run ids do not change)")

    p = sub.add_parser("table", help="regenerate result tables from stored runs")
    p.add_argument("--runs", default=None, help="runs folder (default <results>/runs)")
    p.add_argument("--out", default=None, help="output folder (default <results>/tables)")
    p.add_argument("--baseline", default=None, help="baseline variant label (default: the `mean` fusion one)")
    p.add_argument("--include-unfinished", action="store_true", help="also use runs not marked finished")

    p = sub.add_parser("synth", help="generate the synthetic world (reidlab.data.synthetic)", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)

    p = sub.add_parser("eval", help="evaluate a checkpoint on its run's test split")
    p.add_argument("checkpoint")

    p = sub.add_parser("rank", help="ranked lists of a run's queries: figure (true/false matches) and CSV")
    p.add_argument("run_dir", help="run folder with checkpoints/last.pt (or a published record naming it)")
    p.add_argument("--topk", type=int, default=10, help="gallery entries per query (default 10)")
    p.add_argument("--queries", type=int, default=12, help="queries drawn in the figure (default 12)")
    p.add_argument("--order", default="worst", choices=("worst", "best", "random", "first-match"),
                   help="worst/best: by AP; first-match: latest first true match first; random: see --seed")
    p.add_argument("--seed", type=int, default=0, help="seed of --order random (default 0)")
    p.add_argument("--which", default="last", help="checkpoint: last (default), best, epoch_NNN")
    p.add_argument("--out", help="figure PNG (default <run_dir>/figures/ranked-<order>.png)")
    p.add_argument("--csv", help="CSV of every query's ranked list in that order (default: next to --out)")

    p = sub.add_parser("tensorboard", help="(re)write the TensorBoard event files of stored runs from their records")
    p.add_argument("--runs", default=None, help="runs folder (default <results>/runs)")
    p.add_argument("--results", help="results folder (default $REIDLAB_RESULTS or ./results)")

    p = sub.add_parser("check-data", help="compare a dataset folder with its published statistics and decode "
                                          "every image (reidlab.data.check); exit 1 on any mismatch")
    p.add_argument("name", help="dataset name (mars, market1501, dukemtmcreid, msmt17, ilidsvid, prid2011, "
                                "dukemtmcvidreid)")
    p.add_argument("root", help="the dataset folder or its parent")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: available cores)")
    p.add_argument("--no-decode", action="store_true", help="only check that files exist and are not empty")
    p.add_argument("--max-listed", type=int, default=20, help="defective files listed by name (default 20)")

    p = sub.add_parser("recipe", help="train a recipe with a published target (recipes/NAME.yaml), given a "
                                      "dataset root and a local ImageNet weight file; reports the last epoch")
    p.add_argument("name", nargs="?", help="recipe name (see --list) or a recipe .yaml file")
    p.add_argument("--list", action="store_true", help="list the recipes with their targets and protocols")
    p.add_argument("--root", help="dataset folder (e.g. the MARS or Market-1501 folder; never downloaded)")
    p.add_argument("--weights", help="local torchvision ImageNet state-dict file of the recipe's backbone "
                                     "(e.g. resnet50.pth; never downloaded)")
    p.add_argument("--variant", help="one of the recipe's variants (e.g. abdnet_market1501's 'paper')")
    p.add_argument("--results", help="results folder (default $REIDLAB_RESULTS or ./results); the run goes to "
                                     "<results>/runs/<run_id>")
    p.add_argument("--run-id", help="run id (default: the recipe name, plus -VARIANT)")
    p.add_argument("-o", "--override", action="append", metavar="KEY=VALUE", default=[],
                   help="config override, dotted key, YAML value (repeatable), e.g. -o train.device=cuda:1")
    p.add_argument("--shrink", action="store_true",
                   help="smoke run: ResNet-18, tiny images, 1-2 steps (numbers meaningless; needs resnet18 weights)")
    p.add_argument("--force", action="store_true", help="discard a finished run of the same id and train again")
    p.add_argument("--dry-run", action="store_true", help="print the recipe and its resolved config; train nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("main", help="the main job: fusion sweep, tables, diagnostics notebooks")
    p.add_argument("--spec", default=MAIN_SPEC, help=f"study spec (default {MAIN_SPEC}; names its sweep)")
    p.add_argument("--work", help="work folder with checkpoints and caches (default work/main, work/quick)")
    p.add_argument("--jobs", type=int, default=None, help="parallel single-threaded runs (default: cores + 1)")
    p.add_argument("--results", help="results folder (default $REIDLAB_RESULTS or ./results)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: every run 1 epoch of 2 steps (numbers meaningless; default results "
                        "folder <results>/quick)")
    p.add_argument("--force", action="store_true", help="re-run finished runs")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="override a training parameter for every run")
    _add_launcher_args(p)
    p = sub.add_parser("abd", help="the ABD-Net ablation: sweep, paired intervals, correlation -> <results>/abd")
    p.add_argument("--spec", default=ABD_SPEC, help=f"sweep spec (default {ABD_SPEC})")
    p.add_argument("--work", help="work folder with checkpoints and caches (default work/abd, work/abd-quick)")
    p.add_argument("--jobs", type=int, default=None, help="parallel single-threaded runs (default: cores)")
    p.add_argument("--results", help="results folder (default $REIDLAB_RESULTS or ./results); the job "
                                     "publishes into <results>/abd")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: rows bare and full, seeds 0-1, 1 epoch of 2 steps, nothing published")
    p.add_argument("--force", action="store_true", help="re-run finished runs")
    _add_launcher_args(p)
    return ap


def _cmd_run(a: argparse.Namespace) -> int:
    from reidlab.notebook import NotebookExecutionError, ParameterError, run_notebook

    params = _params(a.param)
    if a.run_id:
        params["run_id"] = a.run_id
    t0 = time.monotonic()
    try:
        out = run_notebook(a.notebook, params, results_dir=a.results, output=a.output, tag=a.tag,
                           from_strings=True, kernel_name=a.kernel, log_output=not a.quiet,
                           execution_timeout=a.timeout)
    except (ParameterError, FileNotFoundError) as e:
        _err(str(e))
        return 2
    except NotebookExecutionError as e:
        _err(str(e))
        return 1
    print(f"executed notebook: {out}  ({time.monotonic() - t0:.0f} s)")
    return 0


def _cmd_params(a: argparse.Namespace) -> int:
    from reidlab.notebook import find_notebook, notebook_parameters

    try:
        path = find_notebook(a.notebook)
        for p in notebook_parameters(path).values():
            print(p.describe())
    except (FileNotFoundError, ValueError) as e:
        _err(str(e))
        return 2
    return 0


def _sweep(spec_path: str, *, jobs: int | None, dry_run: bool, force: bool, results: str | None,
           raw_overrides: dict, extra_overrides: dict | None = None, launcher: str = "local",
           scheduler: str | None = None, gpus: str | None = None) -> int:
    from reidlab.launchers import make_launcher, parse_gpus
    from reidlab.notebook import ParameterError, validate_parameters
    from reidlab.sweep import load_spec, run_sweep

    try:
        if jobs is None:  # one run per listed GPU, else one at a time
            jobs = len(parse_gpus(gpus) or []) if gpus and gpus != "workers" else 1
        runner = make_launcher(launcher, jobs=jobs, gpus=gpus, scheduler=scheduler)
        spec = load_spec(spec_path)
        overrides = dict(extra_overrides or {})
        overrides.update(validate_parameters(spec.notebook, raw_overrides, from_strings=True))
        report = run_sweep(spec, jobs=jobs, dry_run=dry_run, force=force, results_dir=results,
                           overrides=overrides, launcher=runner)
    except (ParameterError, FileNotFoundError, ValueError, ConnectionError, ImportError) as e:
        _err(str(e))
        return 2
    if not dry_run:
        print(f"sweep {spec.name!r}: {len(report.ran)} ran, {len(report.skipped)} skipped (finished), "
              f"{len(report.failed)} failed, {report.wall_seconds:.0f} s")
    return 0 if report.ok else 1


def _cmd_sweep(a: argparse.Namespace) -> int:
    if a.jobs is not None and a.jobs < 1:
        _err(f"--jobs must be >= 1, got {a.jobs}")
        return 2
    return _sweep(a.spec, jobs=a.jobs, dry_run=a.dry_run, force=a.force, results=a.results,
                  raw_overrides=_params(a.param), launcher=a.launcher, scheduler=a.scheduler, gpus=a.gpus)


def _results_root(results: str | None) -> Path:
    from reidlab.notebook import default_results_dir

    return Path(results) if results else default_results_dir()


def _cmd_table(a: argparse.Namespace) -> int:
    from reidlab.runs.tables import write_tables

    root = _results_root(None)
    runs = Path(a.runs) if a.runs else root / "runs"
    out = Path(a.out) if a.out else root / "tables"
    try:
        written = write_tables(runs, out, baseline=a.baseline, include_unfinished=a.include_unfinished)
    except (FileNotFoundError, ValueError) as e:
        _err(str(e))
        return 2
    for p in written:
        print(p)
    summary = out / "summary.md"
    if summary.exists():
        print()
        print(summary.read_text())
    return 0


def _cmd_synth(a: argparse.Namespace) -> int:
    from reidlab.data import synthetic

    return int(synthetic.main(list(a.args)) or 0)


def _cmd_eval(a: argparse.Namespace) -> int:
    from reidlab.engine import evaluate_checkpoint

    path = Path(a.checkpoint)
    if not path.is_file():
        _err(f"{path}: checkpoint not found")
        return 2
    r = evaluate_checkpoint(path)
    cmc = getattr(r, "cmc", None)
    ranks = ""
    if cmc is not None:
        ranks = "  ".join(f"Rank{k}: {100 * cmc[k - 1]:.1f}%" for k in (1, 5, 10) if len(cmc) >= k)
    print(f"{path}: mAP {100 * r.mAP:.1f}%  {ranks}  mINP {100 * getattr(r, 'mINP', float('nan')):.1f}%")
    return 0


def _cmd_rank(a: argparse.Namespace) -> int:
    from reidlab.runs.ranked import ranked_lists, write_ranked_csv
    from reidlab.viz import save_figure

    if a.topk < 1 or a.queries < 1:
        _err(f"--topk and --queries must be >= 1, got {a.topk} and {a.queries}")
        return 2
    out = Path(a.out) if a.out else Path(a.run_dir) / "figures" / f"ranked-{a.order}.png"
    csv = Path(a.csv) if a.csv else out.with_suffix(".csv")
    try:
        ranked, fig = ranked_lists(a.run_dir, topk=a.topk, queries=a.queries, order=a.order, seed=a.seed,
                                   which=a.which)
    except FileNotFoundError as e:
        _err(str(e))
        return 2
    save_figure(fig, out)
    write_ranked_csv(ranked, csv)
    s = ranked.summary()
    print(f"{out}: {min(a.queries, len(ranked))} of {len(ranked)} queries ({a.order} first), top-{a.topk}; "
          f"mAP {100 * s['mAP']:.1f}% rank-1 {100 * s['rank1']:.1f}%\n{csv}: every query's ranked list")
    return 0


def _cmd_tensorboard(a: argparse.Namespace) -> int:
    from reidlab.runs.tracking import write_tensorboard_tree

    runs = Path(a.runs) if a.runs else _results_root(a.results) / "runs"
    if not runs.is_dir():
        _err(f"{runs}: runs folder not found (expected <results>/runs/<run_id>/epochs.csv ...)")
        return 2
    written = write_tensorboard_tree(runs)
    print(f"{len(written)} event file(s) written under {runs}; view them with: tensorboard --logdir {runs}")
    return 0


def _cmd_check_data(a: argparse.Namespace) -> int:
    from reidlab.data.check import PUBLISHED, check_dataset
    from reidlab.suggest import did_you_mean

    if a.name not in PUBLISHED:
        _err(f"unknown dataset {a.name!r}{did_you_mean(a.name, PUBLISHED)}; expected one of {sorted(PUBLISHED)}")
        return 2
    if (a.workers is not None and a.workers < 1) or a.max_listed < 0:
        _err(f"--workers must be >= 1 and --max-listed >= 0, got {a.workers} and {a.max_listed}")
        return 2
    try:
        report = check_dataset(a.name, a.root, workers=a.workers, decode=not a.no_decode)
    except FileNotFoundError as e:
        _err(str(e))
        return 2
    print(report.format(max_listed=a.max_listed))
    return 0 if report.ok else 1


def _cmd_recipe(a: argparse.Namespace) -> int:
    import json

    from reidlab.config import ConfigError
    from reidlab.recipes import RecipeError, list_recipes, load_recipe, parse_override, recipe_config, run_recipe

    if a.list:
        for name in list_recipes():
            try:
                print(load_recipe(name).describe())
            except RecipeError as e:
                print(f"{name}: BROKEN ({e})")
        return 0
    if not a.name:
        _err("give a recipe name (reidlab recipe --list shows them)")
        return 2
    try:
        recipe = load_recipe(a.name)
        overrides = dict(parse_override(o) for o in a.override)
        if a.dry_run:
            cfg = recipe_config(recipe, a.root or "<DATA_ROOT>", a.weights or "<WEIGHTS>", variant=a.variant,
                                overrides=overrides, run_id=a.run_id, shrink=a.shrink)
            print(recipe.describe())
            print(cfg.to_json(), end="")
            return 0
        if not a.root or not a.weights:
            _err(f"recipe {recipe.name!r} needs --root DATA_ROOT and --weights FILE (a local ImageNet state dict)")
            return 2
        print(recipe.describe(), flush=True)
        record, report = run_recipe(recipe.path, a.root, a.weights, results=a.results, variant=a.variant,
                                    overrides=overrides, run_id=a.run_id, shrink=a.shrink, force=a.force,
                                    progress=not a.quiet)
    except (RecipeError, ConfigError, FileNotFoundError, ValueError) as e:
        _err(str(e))
        return 2
    got = report["reported"]
    if got is None:
        _err(f"{record.run_dir}: no evaluated epoch (state {report['state']!r})")
        return 1
    print(f"{record.run_dir}: last epoch {got['epoch']}: mAP {got['mAP']:.2f}  Rank-1 {got['rank1']:.2f}"
          + (f"  Rank-5 {got['rank5']:.2f}" if "rank5" in got else "")
          + f"\n  target: {report['target_label']}"
          + ("\n  (shrunk smoke run: the numbers mean nothing)" if a.shrink else ""))
    print(f"  report: {json.dumps({'recipe': report['recipe'], 'variant': report['variant']})} -> "
          f"{record.run_dir}/recipe.json")
    return 0 if report["state"] in ("finished", "budget") else 1


def publish(work: Path, results: Path, parts: Sequence[str] = PUBLISHED, skip_also: Sequence[str] = ()) -> list[Path]:
    """Copy the main job's records from ``work`` into ``results``: every ``parts`` folder is rebuilt next
    to its target and swapped in by renames, so ``results`` holds either the old or the new copy, never a
    mix. Checkpoints and feature caches (large, regenerated) are left out, and any name matching
    ``skip_also`` below the part folders. Returns the published folders."""
    import shutil
    import tempfile

    skip = shutil.ignore_patterns("checkpoints", "features", "*.pt", "*.lock", ".*.tmp", "*.kernel.log", *skip_also)
    results.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    stage = Path(tempfile.mkdtemp(prefix=".publish-", dir=results))
    try:
        for part in parts:
            src = work / part
            if src.exists():
                shutil.copytree(src, stage / part, ignore=skip)
                staged.append((stage / part, results / part))
        for new, target in staged:
            old = stage / f"{target.name}.old"
            if target.exists():
                os.rename(target, old)
            os.rename(new, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return [t for _, t in staged]


def main_job(
    *,
    spec: str = MAIN_SPEC,
    jobs: int | None = None,
    results: str | None = None,
    work: str | None = None,
    quick: bool = False,
    force: bool = False,
    raw_overrides: dict | None = None,
    launcher: str = "local",
    scheduler: str | None = None,
    gpus: str | None = None,
) -> int:
    """The README's first command. In the work folder (default ``work/main``; checkpoints and caches live
    there, so a second call resumes and skips what is done): train the study's sweep, run the study
    (``reidlab.study``), regenerate the tables, run the report, study and ranked_lists notebooks (the
    latter on the baseline trunk's first seed). Only when every stage
    succeeded are the records, tables, figures and executed notebooks published to ``results`` (default
    ./results) — a failed or quick job never replaces committed results. Prints each stage's time.
    launcher / scheduler / gpus: where the sweep's runs execute (``reidlab sweep``'s options)."""
    from reidlab.notebook import NotebookExecutionError, ParameterError, run_notebook
    from reidlab.runs.tables import write_tables
    from reidlab.study.pipeline import load_study_spec, run_study
    from reidlab.study.report import write_study_tables
    from reidlab.sweep import expand, load_spec

    t_start = time.monotonic()
    root = _results_root(results).absolute()
    wk = Path(work or ("work/quick" if quick else "work/main")).absolute()
    try:
        study = load_study_spec(spec)
        sp = load_spec(study.sweep)
    except (FileNotFoundError, ValueError) as e:
        _err(str(e))
        return 2
    if jobs is None and not gpus:  # one single-threaded run more than cores: the 5 runs finish in 2 waves, not 3
        jobs = (os.cpu_count() or 1) + 1
    print(f"== main job: sweep {sp.name!r} ({study.sweep}) + study {study.name!r} ({spec}); work folder {wk}"
          + ("" if quick else f", results published to {root}"))
    rc = _sweep(str(study.sweep), jobs=jobs, dry_run=False, force=force, results=str(wk),
                raw_overrides=raw_overrides or {}, extra_overrides=QUICK_OVERRIDES if quick else None,
                launcher=launcher, scheduler=scheduler, gpus=gpus)
    t_sweep = time.monotonic() - t_start
    print(f"== sweep: {t_sweep:.0f} s")
    if rc:
        _err("the sweep did not finish every run; nothing published (logs under "
             f"{wk / 'sweeps'}; run the command again to resume)")
        return rc
    t0 = time.monotonic()
    try:
        run_study(wk, study, sweep_name=sp.name)
        written = write_tables(wk / "runs", wk / "tables") + write_study_tables(wk / "study", wk / "tables")
    except (FileNotFoundError, ValueError) as e:
        _err(f"study: {e}")
        return 1
    print(f"== study + tables: {time.monotonic() - t0:.0f} s: " + ", ".join(p.name for p in written))
    figures = wk / "figures"
    failures = 0
    # ranked lists of the first trunk every operator was applied to (the baseline's first seed)
    shown = min((j for j in expand(sp) if j.variant == study.trunk_variant), key=lambda j: j.seed)
    notebooks = (("report", {"prefix": f"{sp.name}-", "figures_dir": str(figures), "analyses": False}),
                 ("study", {"figures_dir": str(figures)}),
                 ("ranked_lists", {"run_dir": str(wk / "runs" / shown.run_id), "queries": 8, "topk": 10}))
    for name, params in notebooks:
        t0 = time.monotonic()
        try:
            out = run_notebook(name, params, results_dir=wk, log_output=False)
            print(f"== notebook {name}: {out} ({time.monotonic() - t0:.0f} s)")
        except ParameterError as e:
            _err(f"notebook {name}: {e}")
            return 2
        except NotebookExecutionError as e:
            _err(str(e))
            failures += 1
    if failures:
        _err(f"{failures} notebook(s) failed; nothing published (executed copies under {wk / 'notebooks'})")
        return 1
    if quick:
        print(f"== quick job finished in {time.monotonic() - t_start:.0f} s; outputs in {wk} (not published)")
        return 0
    published = publish(wk, root)
    print(f"== main job finished in {time.monotonic() - t_start:.0f} s (sweep {t_sweep:.0f} s); published "
          + ", ".join(str(p) for p in published))
    return 0


def abd_job(*, spec: str = ABD_SPEC, jobs: int | None = None, results: str | None = None,
            work: str | None = None, quick: bool = False, force: bool = False, launcher: str = "local",
            scheduler: str | None = None, gpus: str | None = None) -> int:
    """The ABD-Net ablation (README, second command): train the O.W. beta calibration sweep and ``spec``'s
    sweep in the work folder (resumable),
    score every run with paired intervals against the bare model and measure the embedding's correlation
    (reidlab.study.abd), then publish runs, tables, figures and raw scores to ``<results>/abd`` -- only if
    every stage succeeded, and never from a quick job."""
    import yaml

    from reidlab.study.abd import run_ablation_report

    t_start = time.monotonic()
    root = _results_root(results).absolute() / "abd"
    wk = Path(work or ("work/abd-quick" if quick else "work/abd")).absolute()
    spec_path = spec
    if quick:  # two rows x two seeds of a tiny world: exercises every stage in about a minute
        d = yaml.safe_load(Path(spec).read_text())
        d["variants"] = {k: d["variants"][k] for k in ("bare", "full")}
        d["seeds"] = [0, 1]
        d["parameters"].update(root=str(wk / "world"), synthetic={"ids": 12, "train_fraction": 0.5, "frames": [2, 3],
                                                                  "cams": 2, "cams_per_id": [2, 2], "distractors": 1, "junk": 0},
                               overrides={}, p=3, k=2)
        wk.mkdir(parents=True, exist_ok=True)
        spec_path = str(wk / "abd-quick.yaml")
        Path(spec_path).write_text(yaml.safe_dump(d, sort_keys=False))
    if jobs is None and not gpus:
        jobs = os.cpu_count() or 1
    print(f"== ABD job: sweep {spec_path}; work folder {wk}" + ("" if quick else f", results published to {root}"))
    rc = 0
    for sp in ([] if quick else [ABD_CALIBRATION_SPEC]) + [spec_path]:
        rc = rc or _sweep(sp, jobs=jobs, dry_run=False, force=force, results=str(wk), raw_overrides={},
                          extra_overrides=QUICK_OVERRIDES if quick else None, launcher=launcher,
                          scheduler=scheduler, gpus=gpus)
    t_sweep = time.monotonic() - t_start
    print(f"== sweep: {t_sweep:.0f} s")
    if rc:
        _err(f"the sweep did not finish every run; nothing published (logs under {wk / 'sweeps'}; run the "
             "command again to resume)")
        return rc
    t0 = time.monotonic()
    try:
        written = run_ablation_report(wk, n_boot=1000 if quick else 10000)
    except (FileNotFoundError, ValueError) as e:
        _err(f"ABD report: {e}")
        return 1
    print(f"== scores, intervals, correlation: {time.monotonic() - t0:.0f} s: "
          + ", ".join(p.name for p in written.values()))
    if quick:
        print(f"== quick ABD job finished in {time.monotonic() - t_start:.0f} s; outputs in {wk} (not published)")
        return 0
    # per-run event files and figures are left out (21 runs: 12 MB): `reidlab tensorboard --runs` rebuilds
    # the former from the records, the executed notebook.ipynb of each run holds the latter
    published = publish(wk, root, ABD_PUBLISHED, skip_also=("events.out.tfevents.*", "figures"))
    print(f"== ABD job finished in {time.monotonic() - t_start:.0f} s (sweep {t_sweep:.0f} s); published "
          + ", ".join(str(p) for p in published))
    return 0


def _cmd_abd(a: argparse.Namespace) -> int:
    return abd_job(spec=a.spec, jobs=a.jobs, results=a.results, work=a.work, quick=a.quick, force=a.force,
                   launcher=a.launcher, scheduler=a.scheduler, gpus=a.gpus)


def _cmd_main(a: argparse.Namespace) -> int:
    return main_job(spec=a.spec, jobs=a.jobs, results=a.results, work=a.work, quick=a.quick, force=a.force,
                    raw_overrides=_params(a.param), launcher=a.launcher, scheduler=a.scheduler, gpus=a.gpus)


_COMMANDS = {"run": _cmd_run, "params": _cmd_params, "sweep": _cmd_sweep, "table": _cmd_table,
             "synth": _cmd_synth, "eval": _cmd_eval, "rank": _cmd_rank, "main": _cmd_main,
             "tensorboard": _cmd_tensorboard, "check-data": _cmd_check_data, "recipe": _cmd_recipe,
             "abd": _cmd_abd}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m reidlab` / `reidlab`; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "synth":  # everything after `synth` belongs to the generator's own parser
        from reidlab.data import synthetic

        return int(synthetic.main(argv[1:]) or 0)
    # headless: figures drawn by commands (not by notebook kernels, which are separate processes)
    from reidlab.viz import use_headless_backend

    use_headless_backend()
    parser = build_parser()
    try:
        a = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits on --help / bad usage; report it as a return code
        return int(e.code or 0)
    try:
        return _COMMANDS[a.command](a)
    except ValueError as e:  # e.g. a parameter given twice
        _err(str(e))
        return 2
