"""Sweeps: a grid of notebook runs (variants × options × seeds) from a YAML spec (`reidlab sweep`).

Spec (see sweeps/fusion.yaml)::

    name: fusion                    # run ids start with this
    notebook: train_fusion          # shipped notebook stem or a path
    parameters: {epochs: 6}         # shared by every run
    variants:                       # label -> parameters; the label is part of the run id
      mean: {fusion: mean}
      softmax_cosine: {fusion: softmax_cosine, fusion_options: {tau: 1.0}}
      learned: {fusion: temporal_attention, seeds: [0]}   # a variant may run its own seeds
    options:                        # optional grid axes crossed with every variant
      seq_len: [4, 8]
    seeds: [0, 1, 2]

Run id of a grid point: `<name>-<variant>[-<option>=<value>...]-s<seed>`, e.g. `fusion-mean-seq_len=8-s1`
(the `-s<seed>` suffix is what `reidlab table` groups seeds by). Every run's parameters are validated
against the notebook's parameters cell before the first run starts. A run whose record says
`finished` is skipped unless forced; any other state (none, running, failed, interrupted, budget)
is run again — the engine resumes from its last checkpoint. Runs execute as separate processes
(`python -m reidlab run ...`); a launcher (reidlab.launchers) decides where: `local` (default) runs
`jobs` at a time on this machine, each told to use cpu_count / jobs threads; `dask` hands each run to a
Dask distributed cluster.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reidlab.launchers import RunResult, RunTask, Stagger  # noqa: F401 - Stagger: moved there, kept importable
from reidlab.notebook import (
    ParameterError,
    slug,
    default_results_dir,
    find_notebook,
    notebook_parameters,
    validate_parameters,
)

if TYPE_CHECKING:
    from reidlab.launchers import Launcher

__all__ = ["SweepJob", "SweepSpec", "load_spec", "expand", "job_state", "run_sweep", "SweepReport"]

_NAME_OK = re.compile(r"^[A-Za-z0-9._=+,-]+$")


@dataclass(frozen=True)
class SweepJob:
    """One grid point: a notebook run with its parameters (run_id included)."""

    run_id: str
    variant: str
    seed: int
    parameters: dict = field(hash=False)


@dataclass
class SweepSpec:
    name: str
    notebook: Path
    parameters: dict
    variants: dict[str, dict]
    options: dict[str, list]
    seeds: list[int]
    source: Path | None = None


def _spec_error(source: Any, msg: str) -> ValueError:
    return ValueError(f"{source}: {msg}")


def load_spec(path_or_dict: str | Path | Mapping[str, Any], *, base_dir: str | Path | None = None) -> SweepSpec:
    """Read and check a sweep spec (YAML file or dict). Errors name the key and what was expected."""
    import yaml

    if isinstance(path_or_dict, Mapping):
        d, source = dict(path_or_dict), "<sweep spec>"
    else:
        p = Path(path_or_dict)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: sweep spec not found")
        try:
            d = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise _spec_error(p, f"not valid YAML ({e})") from None
        source = p
    if not isinstance(d, dict):
        raise _spec_error(source, f"top level must be a mapping, got {type(d).__name__}")
    allowed = {"name", "notebook", "parameters", "variants", "options", "seeds", "description"}
    unknown = set(d) - allowed
    if unknown:
        raise _spec_error(source, f"unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    name = d.get("name")
    if not isinstance(name, str) or not _NAME_OK.match(name):
        raise _spec_error(source, f"'name' must be a plain identifier (letters, digits, ._-), got {name!r}")
    if "notebook" not in d:
        raise _spec_error(source, "'notebook' is required (a shipped notebook stem or a path)")
    nb = Path(str(d["notebook"]))
    if base_dir is not None and not nb.is_absolute() and not nb.exists():
        cand = Path(base_dir) / nb
        nb = cand if cand.exists() else nb
    notebook = find_notebook(nb)
    params = d.get("parameters") or {}
    if not isinstance(params, dict):
        raise _spec_error(source, "'parameters' must be a mapping of notebook parameters")
    variants = d.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise _spec_error(source, "'variants' must be a non-empty mapping label -> parameters")
    for label, vp in variants.items():
        if not isinstance(label, str) or not _NAME_OK.match(label):
            raise _spec_error(source, f"variant label {label!r} must be a plain identifier")
        if vp is not None and not isinstance(vp, dict):
            raise _spec_error(source, f"variant {label!r} must map to parameters, got {vp!r}")
        vs = (vp or {}).get("seeds")
        if vs is not None and (not isinstance(vs, list) or not vs or not all(isinstance(s, int) and s >= 0 for s in vs)):
            raise _spec_error(source, f"variant {label!r}: 'seeds' must be a non-empty list of non-negative ints")
    options = d.get("options") or {}
    if not isinstance(options, dict) or any(not isinstance(v, list) or not v for v in options.values()):
        raise _spec_error(source, "'options' must map parameter names to non-empty lists of values")
    seeds = d.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise _spec_error(source, f"'seeds' must be a non-empty list of non-negative ints, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise _spec_error(source, f"'seeds' repeats a seed: {seeds}")
    return SweepSpec(name=name, notebook=notebook, parameters=params,
                     variants={k: dict(v or {}) for k, v in variants.items()},
                     options=options, seeds=seeds, source=source if isinstance(source, Path) else None)


def expand(spec: SweepSpec, overrides: Mapping[str, Any] | None = None) -> list[SweepJob]:
    """All grid points, in spec order (variant, then options, then seed); parameters validated.

    overrides: parameters applied to every run on top of the spec (e.g. {"epochs": 1} for a smoke run;
    they do not change run ids, so use them for budgets, not for variants).
    """
    declared = notebook_parameters(spec.notebook)
    for key in ("run_id", "seed"):
        if key not in declared:
            raise ValueError(f"{spec.notebook}: a sweep notebook must declare a {key!r} parameter")
    axes = list(spec.options.items())
    jobs: list[SweepJob] = []
    seen: dict[str, str] = {}
    for label, vparams in spec.variants.items():
        for combo in itertools.product(*[vals for _, vals in axes]) if axes else [()]:
            opt = {name: val for (name, _), val in zip(axes, combo)}
            opt_part = "".join(f"-{k}={slug(v)}" for k, v in opt.items())
            for seed in vparams.get("seeds", spec.seeds):
                rid = f"{spec.name}-{label}{opt_part}-s{seed}"
                own = {k: v for k, v in vparams.items() if k != "seeds"}
                params = {**spec.parameters, **own, **opt, **(overrides or {}), "seed": seed, "run_id": rid}
                try:
                    params = validate_parameters(spec.notebook, params)
                except ParameterError as e:
                    raise ParameterError(f"sweep {spec.name!r}, run {rid}: {e}") from None
                key = json.dumps(params, sort_keys=True, default=str)
                if rid in seen:
                    raise ValueError(f"sweep {spec.name!r}: two grid points map to run id {rid!r}")
                seen[rid] = key
                jobs.append(SweepJob(run_id=rid, variant=label, seed=seed, parameters=params))
    return jobs


def job_state(results_dir: str | Path, run_id: str) -> str | None:
    """The run's recorded state (`finished`, `running`, `failed`, ...) or None when it never started."""
    from reidlab.runs.records import RunRecord

    return RunRecord(Path(results_dir) / "runs" / run_id).state


@dataclass
class SweepReport:
    """What a sweep did: run ids per outcome, seconds per executed run, log files."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # run id -> error line
    seconds: dict[str, float] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)  # run id -> times started (retries on lost workers)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def _cli_value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _command(job: SweepJob, notebook: Path, results_dir: Path, force: bool, declared: Mapping) -> list[str]:
    cmd = [sys.executable, "-m", "reidlab", "run", str(notebook), "--results", str(results_dir), "--quiet"]
    params = dict(job.parameters)
    if force and "force" in declared:
        params["force"] = True
    for k, v in params.items():
        cmd += ["-p", k, _cli_value(v)]
    return cmd


def _last_error_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return "no log"
    for ln in reversed(lines):
        if "failed:" in ln or "Error" in ln:
            return ln.strip()
    return lines[-1].strip() if lines else "no output"


def _prepare_synthetic_worlds(todo: list[SweepJob], declared: Mapping, echo: Callable[[str], None],
                              cwd: str | Path | None = None) -> None:
    """Generate each synthetic world the runs need once, before parallel runs could race to create it."""
    defaults = {k: p.default for k, p in declared.items()}
    if "dataset" not in defaults:
        return
    seen = set()
    for job in todo:
        params = {**defaults, **job.parameters}
        if params.get("dataset") != "synthetic":
            continue
        from reidlab.config import DataConfig

        root = Path(params.get("root") or DataConfig().root)
        if cwd is not None and not root.is_absolute():
            root = Path(cwd) / root
        knobs = params.get("synthetic") or {}
        key = (str(root), json.dumps(knobs, sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        from reidlab.data.synthetic import ensure_world

        t0 = time.monotonic()
        ensure_world(root, verbose=False, **knobs)
        echo(f"synthetic world {root}: ready ({time.monotonic() - t0:.0f} s)")


def run_sweep(
    spec: str | Path | SweepSpec,
    *,
    jobs: int = 1,
    dry_run: bool = False,
    force: bool = False,
    results_dir: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    echo: Callable[[str], None] = print,
    cwd: str | Path | None = None,
    launcher: Launcher | None = None,
) -> SweepReport:
    """Run the grid of `spec`: skip finished runs (unless `force`), on `launcher` (default: `jobs` local
    processes at a time; see reidlab.launchers).

    dry_run lists each run id with its state and parameters and runs nothing. Logs go to
    `<results>/sweeps/<name>/<run_id>.log`. Returns a SweepReport; a failed run does not stop the others.
    """
    from reidlab.launchers import LocalLauncher

    sp = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    res = (Path(results_dir) if results_dir is not None else default_results_dir()).absolute()
    grid = expand(sp, overrides)
    declared = notebook_parameters(sp.notebook)
    report = SweepReport()
    todo: list[SweepJob] = []
    for job in grid:
        state = job_state(res, job.run_id)
        if state == "finished" and not force:
            report.skipped.append(job.run_id)
            if dry_run:
                echo(f"  skip  {job.run_id}  (finished)")
            continue
        todo.append(job)
        if dry_run:
            shown = {k: v for k, v in job.parameters.items() if k not in ("run_id",)}
            echo(f"  run   {job.run_id}  [{state or 'new'}]  {json.dumps(shown, default=str)}")
    if dry_run:
        echo(f"{len(grid)} runs in sweep {sp.name!r}: {len(todo)} to run, {len(report.skipped)} finished "
             f"(notebook {sp.notebook}, results {res})")
        return report
    if not todo:
        echo(f"sweep {sp.name!r}: all {len(grid)} runs finished; nothing to do (use --force to re-run)")
        return report

    launcher = launcher if launcher is not None else LocalLauncher(jobs=jobs)
    _prepare_synthetic_worlds(todo, declared, echo, cwd)
    log_dir = res / "sweeps" / sp.name
    log_dir.mkdir(parents=True, exist_ok=True)
    # a launcher on other machines gets absolute paths (its workers share the file system, not our cwd)
    remote = getattr(launcher, "remote", False)
    notebook = Path(sp.notebook).absolute() if remote else sp.notebook
    run_cwd = str(cwd) if cwd else (str(Path.cwd()) if remote else None)
    tasks = []
    for job in todo:
        cmd = _command(job, notebook, res, force, declared)
        tasks.append(RunTask(
            run_id=job.run_id, cmd=cmd, log=log_dir / f"{job.run_id}.log", run_dir=res / "runs" / job.run_id,
            # the kernels keep their inline backend; figures are saved explicitly
            env={"MPLBACKEND": None}, cwd=run_cwd,
            # a retry after a lost worker resumes what the first attempt started over
            retry_cmd=_command(job, notebook, res, False, declared) if force else None,
        ))
        report.logs[job.run_id] = tasks[-1].log
    start = time.monotonic()
    total = len(todo)
    counter = itertools.count(1)

    def done(task: RunTask, r: RunResult) -> None:
        report.seconds[task.run_id] = r.seconds
        report.attempts[task.run_id] = r.attempts
        i = next(counter)
        where = f" on {r.host}" if r.host and remote else ""
        tries = f" ({r.attempts} attempts)" if r.attempts > 1 else ""
        if r.ok:
            report.ran.append(task.run_id)
            echo(f"[{i}/{total}] {task.run_id}: done in {r.seconds:.0f} s{where}{tries}")
        else:
            report.failed[task.run_id] = r.error or _last_error_line(task.log)
            echo(f"[{i}/{total}] {task.run_id}: FAILED after {r.seconds:.0f} s{where}{tries}: "
                 f"{report.failed[task.run_id]} (log {task.log})")

    echo(f"sweep {sp.name!r}: {total} runs to do ({len(report.skipped)} finished skipped), {launcher.describe()}")
    launcher.run(tasks, done)
    report.wall_seconds = time.monotonic() - start
    return report
