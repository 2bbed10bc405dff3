"""papermill wrapper: validate a notebook's parameters, execute it, file the executed copy.

A reidlab notebook's first code cell is tagged `parameters` and holds plain literals only, one per line,
documented as `name: type = value  # help` (what `papermill.inspect_notebook` parses). Derived values go
in the next cell, because papermill injects only the overridden values and would not recompute them.

papermill itself only warns on an unknown parameter name and runs with the defaults; `run_notebook`
therefore validates names and types BEFORE any kernel starts, and nothing is written when they are bad.

Where the executed notebook goes:
- a notebook with a `run_id` parameter (training notebooks) -> `<results>/runs/<run_id>/notebook.ipynb`
  (a run id is derived from the non-default parameters when none is given, ending in `-s<seed>`);
- any other notebook -> `<results>/notebooks/<stem>.ipynb` (`<stem>-<tag>.ipynb` with a `tag`).
The copy is written to a temporary file while executing and moved there at the end, also when a cell
fails (so the error can be read in it). Executed copies are committed records, so the filed copy holds no
absolute path inside the project root: parameters (results_dir is passed to the kernel absolute),
papermill's input/output paths and the texts of the outputs are rewritten relative to the root
(see reidlab.runs.records.record_text); paths outside the project are kept.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reidlab.suggest import did_you_mean

__all__ = [
    "ParameterError",
    "NotebookExecutionError",
    "NotebookParameter",
    "notebook_parameters",
    "coerce_value",
    "validate_parameters",
    "derive_run_id",
    "default_results_dir",
    "output_path",
    "resolve_kernel_name",
    "run_notebook",
    "kernel_log_path",
    "enter_workspace",
    "NOTEBOOK_DIR",
    "find_notebook",
    "slug",
    "TRAIN_PARAMETER_KEYS",
    "training_config",
    "executed_parameters",
]

#: where the shipped notebooks live, relative to the project root
NOTEBOOK_DIR = "notebooks"
#: parameters that locate things rather than define a variant: never part of a derived run id
_NOT_IN_RUN_ID = {"run_id", "seed", "results_dir", "root", "data_root", "force", "progress", "tag"}
_MAX_ID_LEN = 96


class ParameterError(ValueError):
    """A notebook parameter that does not exist or has the wrong type."""


class NotebookExecutionError(RuntimeError):
    """A cell of an executed notebook raised. Carries the cell index, exception name and value, and
    the path of the executed notebook (saved with the error in it)."""

    def __init__(self, notebook: str, cell_index: int | None, ename: str, evalue: str, output: Path | None):
        self.notebook, self.cell_index, self.ename, self.evalue, self.output = (
            notebook, cell_index, ename, evalue, output)
        where = f"cell {cell_index}" if cell_index is not None else "execution"
        msg = f"{notebook}: {where} failed: {ename}: {evalue}"
        if output is not None:
            msg += f"\n  executed notebook with the error: {output}"
        super().__init__(msg)


@dataclass(frozen=True)
class NotebookParameter:
    """One entry of a notebook's parameters cell."""

    name: str
    type: str  # "int" | "float" | "str" | "bool" | "list" | "dict" | "None" (no annotation)
    default: Any
    help: str

    def describe(self) -> str:
        return f"{self.name}: {self.type} = {self.default!r}" + (f"  # {self.help}" if self.help else "")


def find_notebook(name: str | Path) -> Path:
    """A notebook path as given, or a shipped notebook by stem (`train_fusion` -> notebooks/train_fusion.ipynb,
    looked up in the current directory's notebooks folder, the source tree's, then an installed package's
    ``<prefix>/share/reidlab/notebooks``)."""
    p = Path(name)
    if p.suffix != ".ipynb":
        p = p.with_suffix(".ipynb")
    candidates = [p]
    if len(p.parts) == 1:
        candidates += [Path(NOTEBOOK_DIR) / p, Path(__file__).resolve().parents[1] / NOTEBOOK_DIR / p,
                       Path(sys.prefix) / "share" / "reidlab" / NOTEBOOK_DIR / p]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"notebook {str(name)!r} not found (looked at {', '.join(str(c) for c in candidates)})"
    )


def notebook_parameters(notebook: str | Path) -> dict[str, NotebookParameter]:
    """The parameters declared in the notebook's `parameters` cell, in order.

    Raises FileNotFoundError for a missing file and ValueError when there is no `parameters`-tagged cell.
    """
    import nbformat
    import papermill

    path = Path(notebook)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: notebook not found")
    nb = nbformat.read(path, as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise ValueError(f"{path}: no cell tagged 'parameters' (papermill would inject values at the top)")
    raw = papermill.inspect_notebook(str(path))
    out = {}
    for name, p in raw.items():
        try:
            default = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            default = p["default"]
        out[name] = NotebookParameter(name, p.get("inferred_type_name") or "None", default, p.get("help") or "")
    return out


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce_value(param: NotebookParameter, value: Any, *, from_string: bool = False) -> Any:
    """Check `value` against the declared type of `param`; with `from_string`, parse it first (CLI `-p`).

    int: an integer (not a bool, not 1.5); float: any real number; bool: true/false/yes/no/1/0 as text;
    str: as given; list/dict: YAML/JSON text (`'{tau: 0.1}'`, `'[1, 2]'`); untyped: YAML scalar parsing.
    Raises ParameterError naming the parameter, the expected type and the value.
    """
    import yaml

    t = param.type
    bad = ParameterError(
        f"parameter {param.name!r}: expected {t}, got {value!r}" + (f" ({param.help})" if param.help else "")
    )
    if t == "str":
        if from_string or isinstance(value, str):
            return str(value)
        raise bad
    if t == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and from_string and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad
    if t == "int":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, str) and from_string:
            try:
                return int(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if t == "float":
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and from_string:
            try:
                return float(value.strip())
            except ValueError:
                raise bad from None
        raise bad
    if t in ("list", "dict"):
        v = value
        if isinstance(value, str) and from_string:
            try:
                v = yaml.safe_load(value)
            except yaml.YAMLError:
                raise bad from None
            if v is None and t == "dict":
                v = {}
        want = list if t == "list" else dict
        if isinstance(v, tuple) and want is list:
            v = list(v)
        if not isinstance(v, want):
            raise bad
        return v
    # undeclared type: accept what YAML makes of text, any value otherwise
    if isinstance(value, str) and from_string:
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def validate_parameters(
    notebook: str | Path, parameters: Mapping[str, Any] | None, *, from_strings: bool = False
) -> dict[str, Any]:
    """Parameters checked against the notebook's parameters cell; returns the coerced values.

    Unknown name -> ParameterError listing every valid parameter with its type and help.
    """
    declared = notebook_parameters(notebook)
    out = {}
    for name, value in (parameters or {}).items():
        if name not in declared:
            listing = "\n".join("  " + p.describe() for p in declared.values())
            raise ParameterError(f"{notebook}: unknown parameter {name!r}{did_you_mean(name, declared)}; "
                                 f"valid parameters:\n{listing}")
        out[name] = coerce_value(declared[name], value, from_string=from_strings)
    return out


def slug(value: Any) -> str:
    if isinstance(value, dict):
        text = ",".join(f"{k}={slug(v)}" for k, v in sorted(value.items()))
    elif isinstance(value, (list, tuple)):
        text = "+".join(slug(v) for v in value)
    elif isinstance(value, bool):
        text = str(value).lower()
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._=,+]+", "_", text).strip("_")


def derive_run_id(stem: str, parameters: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> str:
    """A readable, deterministic run id: `<stem>[-<name>=<value>...]-s<seed>` from the parameters that
    differ from `defaults` (sorted by name; locations such as results_dir excluded). Ids longer than 96
    characters are shortened with a hash of the full text so that they stay unique."""
    defaults = defaults or {}
    parts = [stem]
    for name in sorted(parameters):
        if name in _NOT_IN_RUN_ID:
            continue
        v = parameters[name]
        if name in defaults and defaults[name] == v:
            continue
        parts.append(f"{name}={slug(v)}")
    rid = "-".join(parts)
    seed = parameters.get("seed", defaults.get("seed"))
    suffix = f"-s{seed}" if seed is not None else ""
    if len(rid) + len(suffix) > _MAX_ID_LEN:
        digest = hashlib.sha1(rid.encode()).hexdigest()[:8]
        rid = rid[: _MAX_ID_LEN - len(suffix) - 9] + "-" + digest
    return rid + suffix


def default_results_dir() -> Path:
    """`$REIDLAB_RESULTS` when set, else `results` (relative to the current directory)."""
    return Path(os.environ.get("REIDLAB_RESULTS") or "results")


def output_path(notebook: str | Path, parameters: Mapping[str, Any], results_dir: str | Path,
                *, tag: str | None = None) -> Path:
    """Where the executed copy of `notebook` run with `parameters` is filed (see module docstring)."""
    results_dir = Path(results_dir)
    rid = parameters.get("run_id")
    if rid:
        return results_dir / "runs" / str(rid) / "notebook.ipynb"
    stem = Path(notebook).stem
    tag = tag or parameters.get("tag") or None  # analysis notebooks name their outputs by their `tag`
    return results_dir / "notebooks" / (f"{stem}-{slug(tag)}.ipynb" if tag else f"{stem}.ipynb")


def _is_current_python(argv0: str) -> bool:
    major, minor = sys.version_info[:2]
    if argv0 in {"python", f"python{major}", f"python{major}.{minor}"}:
        return True  # jupyter_client substitutes sys.executable for these names
    # compare without resolving symlinks: a venv's python links to the system interpreter
    return os.path.normpath(os.path.abspath(argv0)) == os.path.normpath(sys.executable)


def resolve_kernel_name() -> str:
    """A Jupyter kernel that runs THIS interpreter (so the kernel sees the same reidlab and torch).

    The standard `python3` kernel does when its spec says `python` (jupyter_client then launches
    sys.executable), which is the case for the spec ipykernel installs into a venv. A `python3` spec
    registered elsewhere pointing at another interpreter is not used: a kernel spec named after this
    environment is installed into `sys.prefix` (no root or home-directory writes) and used instead.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    ksm = KernelSpecManager()
    try:
        spec = ksm.get_kernel_spec("python3")
        if spec.argv and _is_current_python(spec.argv[0]):
            return "python3"
    except NoSuchKernel:
        pass
    env_name = Path(sys.prefix).name or "python"
    if env_name in (".venv", "venv", "env"):
        env_name = f"{Path(sys.prefix).parent.name}-{env_name.lstrip('.')}"
    name = "reidlab-" + re.sub(r"[^a-z0-9._-]+", "-", env_name.lower()).strip("-")
    try:
        spec = ksm.get_kernel_spec(name)
        if spec.argv and _is_current_python(spec.argv[0]):
            return name
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(kernel_name=name, display_name=f"Python ({env_name})", prefix=sys.prefix)
    return name


def enter_workspace() -> Path:
    """Make relative paths mean the same in JupyterLab as on the command line.

    JupyterLab starts a kernel in the notebook's folder (`notebooks/`); the CLI runs it in the current
    directory (normally the project root). When the cwd is a `notebooks` folder next to a
    `pyproject.toml`, move to the project root. Returns the working directory.
    """
    cwd = Path.cwd()
    if cwd.name == NOTEBOOK_DIR and (cwd.parent / "pyproject.toml").is_file():
        os.chdir(cwd.parent)
    return Path.cwd()


_KERNEL_START_ATTEMPTS = 3


def _kernel_never_started(e: BaseException) -> bool:
    text = f"{type(e).__name__}: {e}"
    return "before replying to kernel_info" in text or "Address already in use" in text


def _error_from_notebook(path: Path) -> tuple[int | None, str, str]:
    """(cell index, ename, evalue) of the first error output of an executed notebook."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return i, out.get("ename", "Error"), out.get("evalue", "")
    return None, "Error", "unknown failure"


def _filed_copy(executed: Path, dest: Path) -> bytes:
    """The bytes filed at ``dest`` for the executed notebook ``executed``: papermill's output_path (the
    temporary file) becomes ``dest``, and absolute paths inside the project root become relative to it in
    every text (metadata, injected parameters, outputs, tracebacks); images are kept as they are. A file
    that is not JSON (a run that died while writing it) is filed unchanged."""
    from reidlab.runs.records import project_root, record_path, record_strings

    raw = executed.read_bytes()
    try:
        nb = json.loads(raw)
    except ValueError:
        return raw
    root = project_root()
    pm = nb.get("metadata", {}).get("papermill") if isinstance(nb, dict) else None
    if isinstance(pm, dict) and "output_path" in pm:
        pm["output_path"] = record_path(dest, root)
    if root is not None:
        nb = record_strings(nb, root, skip=lambda key: isinstance(key, str) and key.startswith("image/"))
    # nbformat's own layout (sorted keys, indent 1, UTF-8 text), so the filed copy reads like papermill's
    return (json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def kernel_log_path(executed: str | Path) -> Path:
    """Where the kernel process's own stderr goes for an executed copy at ``executed``:
    ``<folder>/<stem>.kernel.log`` next to it (git-ignored, never published)."""
    p = Path(executed)
    return p.with_name(f"{p.stem}.kernel.log")


def _kernel_manager_logging_to(log: Path) -> type:
    """An AsyncKernelManager whose kernel process writes its stderr to ``log`` (appending).

    What the kernel process itself prints — ipykernel's start-up log, e.g. "Kernel is running over TCP
    without encryption", a crash trace — is not a cell's output (cells' stderr reaches the notebook
    through the kernel's iopub channel either way). Sent to the caller's terminal it floods the main
    job's output; in a file beside the executed copy it stays available for diagnosis.
    """
    from jupyter_client import AsyncKernelManager

    class KernelManagerWithLog(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as f:  # the kernel keeps its own descriptor once started
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} kernel start\n".encode())
                f.flush()
                kw["stderr"] = f
                await super()._async_launch_kernel(kernel_cmd, **kw)

        _launch_kernel = _async_launch_kernel

    return KernelManagerWithLog


def run_notebook(
    notebook: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    results_dir: str | Path | None = None,
    output: str | Path | None = None,
    tag: str | None = None,
    from_strings: bool = False,
    kernel_name: str | None = None,
    cwd: str | Path | None = None,
    log_output: bool = False,
    execution_timeout: int | None = None,
) -> Path:
    """Validate `parameters`, execute `notebook` with papermill, file the executed copy; returns its path.

    results_dir: passed to the notebook when it declares `results_dir` (default `default_results_dir()`,
    made absolute so the kernel's cwd does not matter). A `run_id` is derived when the notebook declares
    one and none is given. Raises ParameterError before anything runs or is written; raises
    NotebookExecutionError (cell index, ename, evalue, path of the saved copy) when a cell fails.
    The kernel process's own stderr goes to ``kernel_log_path(<executed copy>)``, not to the terminal.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    nb_path = find_notebook(notebook)
    params = validate_parameters(nb_path, parameters, from_strings=from_strings)
    declared = notebook_parameters(nb_path)
    defaults = {k: p.default for k, p in declared.items()}
    if results_dir is None and params.get("results_dir"):
        results_dir = params["results_dir"]  # `-p results_dir X` means the same as `--results X`
    res = (Path(results_dir) if results_dir is not None else default_results_dir()).absolute()
    if "results_dir" in declared:
        params["results_dir"] = str(res)
    if "run_id" in declared and not params.get("run_id"):
        params["run_id"] = derive_run_id(nb_path.stem, {**defaults, **params}, defaults)
    dest = Path(output) if output is not None else output_path(nb_path, params, res, tag=tag)
    kernel = kernel_name or resolve_kernel_name()
    manager = _kernel_manager_logging_to(kernel_log_path(dest).absolute())
    fd, tmp_name = tempfile.mkstemp(prefix=f"{nb_path.stem}-", suffix=".ipynb")
    os.close(fd)
    tmp = Path(tmp_name)
    failure: BaseException | None = None
    for attempt in range(1, _KERNEL_START_ATTEMPTS + 1):
        failure = None
        try:
            papermill.execute_notebook(
                str(nb_path), str(tmp), parameters=params, kernel_name=kernel, progress_bar=False,
                log_output=log_output, cwd=str(cwd) if cwd is not None else os.getcwd(),
                execution_timeout=execution_timeout, kernel_manager_class=manager,
            )
        except PapermillExecutionError as e:
            failure = NotebookExecutionError(str(nb_path), e.cell_index, e.ename, e.evalue, dest)
        except Exception as e:  # kernel death, timeouts: nbclient errors
            failure = NotebookExecutionError(str(nb_path), None, type(e).__name__,
                                             f"{e} (the kernel's own log: {kernel_log_path(dest)})", dest)
            if _kernel_never_started(e) and attempt < _KERNEL_START_ATTEMPTS:
                # jupyter_client picks free ports, then the kernel binds them: kernels started at the same
                # moment by parallel processes can collide ("Address already in use"). No cell ran: retry.
                time.sleep(0.5 + random.random() * 2.0 * attempt)
                continue
        break
    if tmp.exists() and tmp.stat().st_size > 0:
        from reidlab.atomic import atomic_write_bytes

        atomic_write_bytes(dest, _filed_copy(tmp, dest))
    elif isinstance(failure, NotebookExecutionError):
        failure.output = None
    tmp.unlink(missing_ok=True)
    if failure is not None:
        if isinstance(failure, NotebookExecutionError) and failure.cell_index is None and dest.exists():
            idx, ename, evalue = _error_from_notebook(dest)
            if idx is not None:
                failure = NotebookExecutionError(str(nb_path), idx, ename, evalue, dest)
        raise failure
    if "run_id" in declared and (dest.parent / "epochs.csv").is_file():
        from reidlab.runs.records import RunRecord

        RunRecord(dest.parent).write_event_file()  # again, now with the figures the notebook drew
    return dest


def executed_parameters(executed: str | Path) -> dict[str, Any]:
    """The parameters an executed notebook ran with (papermill records them in its metadata)."""
    data = json.loads(Path(executed).read_text())
    return dict(data.get("metadata", {}).get("papermill", {}).get("parameters", {}))


#: training-notebook parameter -> RunConfig dotted key. One place, shared by the notebooks, `sweep`
#: and the provenance test (a sweep variant must reach the model it names).
TRAIN_PARAMETER_KEYS: dict[str, str] = {
    "run_id": "run_id",
    "seed": "seed",
    "dataset": "data.dataset",
    "root": "data.root",
    "dataset_options": "data.options",
    "synthetic": "data.synthetic",
    "height": "data.height",
    "width": "data.width",
    "seq_len": "data.seq_len",
    "sampling": "data.sampling",
    "p": "data.p",
    "k": "data.k",
    "workers": "data.workers",
    "task": "model.task",
    "backbone": "model.backbone",
    "last_stride": "model.last_stride",
    "pretrained": "model.pretrained",
    "fusion": "model.fusion",
    "fusion_options": "model.fusion_options",
    "abd": "model.abd",
    "of_name": "loss.of.name",
    "of_beta": "loss.of.beta",
    "of_start_epoch": "loss.of.start_epoch",
    "ow_name": "loss.ow.name",
    "ow_beta": "loss.ow.beta",
    "ow_start_epoch": "loss.ow.start_epoch",
    "optimizer": "optim.name",
    "lr": "optim.lr",
    "epochs": "train.epochs",
    "eval_every": "train.eval_every",
    "fixbase_epochs": "train.fixbase_epochs",
    "steps_per_epoch": "train.steps_per_epoch",
    "max_minutes": "train.max_minutes",
    "device": "train.device",
    "flip_eval": "eval.flip",
}
# notebook literals cannot be None-or-typed (papermill's parser): these sentinels mean "not set"
_UNSET = {"root": "", "pretrained": "", "steps_per_epoch": 0, "max_minutes": 0.0, "abd": {}}
_NONE_WHEN_UNSET = {"pretrained", "steps_per_epoch", "max_minutes", "abd"}


def training_config(
    parameters: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    *,
    results_dir: str | Path | None = None,
):
    """The RunConfig a training notebook runs: its parameters mapped through TRAIN_PARAMETER_KEYS,
    then `overrides` (dotted RunConfig keys, e.g. {"optim.schedule": "step"}) on top.

    Sentinels: root "" keeps the config default (data/synthetic); pretrained "", steps_per_epoch 0,
    max_minutes 0 and abd {} mean None. results_dir is the results folder (runs go to
    <results_dir>/runs). Unknown parameter names raise ValueError; bad values raise ConfigError.
    """
    from reidlab.config import RunConfig

    updates: dict[str, Any] = {}
    for name, value in parameters.items():
        if name not in TRAIN_PARAMETER_KEYS:
            raise ValueError(f"training parameter {name!r} has no RunConfig key; known: {sorted(TRAIN_PARAMETER_KEYS)}")
        if name in _UNSET and value == _UNSET[name]:
            if name in _NONE_WHEN_UNSET:
                updates[TRAIN_PARAMETER_KEYS[name]] = None
            continue
        updates[TRAIN_PARAMETER_KEYS[name]] = value
    if results_dir is not None:
        updates["results_dir"] = str(Path(results_dir) / "runs")
    cfg = RunConfig().override(updates)
    if overrides:
        cfg = cfg.override(dict(overrides))
    return cfg
