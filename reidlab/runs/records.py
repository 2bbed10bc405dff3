"""Run records: the only writer of result files.

Every file goes through :func:`reidlab.atomic.atomic_write_bytes` (temp file in the same folder, fsync,
``os.replace``), so a kill at any moment leaves either the old or the new version of a file, never a torn
one. The atomic writers are re-exported here for older imports; new code imports them from reidlab.atomic.

Layout of ``results/runs/<run_id>/``::

    config.json     full resolved RunConfig (seed included)
    env.json        package versions, platform, git commit + dirty flag, device, CPU model/capability/threads
    model.json      model.describe() (+ regulariser descriptions)
    protocol.json   dataset protocol + evaluation settings
    metrics.csv     one row per evaluation (METRIC_COLUMNS; metrics as fractions 0..1)
    epochs.csv      one row per trained epoch (loss parts, lr, throughput)
    status.json     state (running | finished | failed | interrupted | budget), message, last epoch
    checkpoints/last.pt, best.pt   (best.pt is selected on the test split and labelled so)

Records are committed, so they hold no absolute paths of the machine that wrote them: a path inside the
project root (the folder holding ``pyproject.toml`` at or above the cwd, where ``enter_workspace`` runs
things) is stored relative to it -- the config's path keys (``PATH_KEYS``) and any absolute path inside
the project met in the JSON records' strings (messages included). Paths outside the project are kept
as given. :meth:`RunRecord.run_config` resolves the relative path keys against the project root again.
Checkpoints are not committed and keep the config as the run was given it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Iterable, Mapping

from reidlab.atomic import (  # noqa: F401 - re-exported (older imports take them from here)
    _fsync_dir,
    _json_default,
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from reidlab.config import PATH_KEYS, RunConfig

__all__ = [
    "METRIC_COLUMNS",
    "EPOCH_COLUMNS",
    "STATES",
    "BEST_LABEL",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "collect_env",
    "project_root",
    "record_path",
    "resolve_record_path",
    "record_text",
    "record_strings",
    "record_config",
    "resolved_config",
    "RunRecord",
]

METRIC_COLUMNS = (
    "epoch", "mAP", "rank1", "rank5", "rank10", "mINP",
    "loss", "loss_ce", "loss_triplet", "loss_of", "loss_ow", "seconds",
)  # fmt: skip
EPOCH_COLUMNS = (
    "epoch", "loss", "loss_ce", "loss_triplet", "loss_of", "loss_ow", "lr", "steps", "frames_per_s", "seconds",
)  # fmt: skip
STATES = ("running", "finished", "failed", "interrupted", "budget")
BEST_LABEL = "selected on the test split — do not report"


# ---------------------------------------------------------------------- portable paths
def project_root(start: str | Path | None = None) -> Path | None:
    """The folder record paths are stored relative to: the nearest folder at or above ``start`` (default:
    the cwd) that holds ``pyproject.toml`` -- the project root ``enter_workspace`` moves notebooks to --
    or None outside any project (then paths are stored as given)."""
    here = Path(os.path.abspath(os.getcwd() if start is None else start))
    for folder in (here, *here.parents):
        if folder.parent != folder and (folder / "pyproject.toml").is_file():  # never the filesystem root
            return folder
    return None


def _relative_inside(path: Path, root: Path) -> str | None:
    """Absolute ``path`` relative to ``root`` (posix, "." for the root itself), or None when outside."""
    pairs = [(path, root)]
    try:  # symlinked spellings (e.g. /tmp -> /private/tmp) count as inside too
        pairs.append((path.resolve(), root.resolve()))
    except OSError:
        pass
    for p, r in pairs:
        try:
            return p.relative_to(r).as_posix()
        except ValueError:
            continue
    return None


def record_path(path: str | Path | None, root: Path | None = None) -> str | None:
    """How a record stores a path the user gave (a relative one meaning: from the cwd): relative to the
    project root (``root``, default :func:`project_root`) when it lies inside it, else as given."""
    if path is None:
        return None
    root = project_root() if root is None else root
    if root is None or str(path) == "":
        return str(path)
    rel = _relative_inside(Path(os.path.normpath(os.path.abspath(path))), root)
    return str(path) if rel is None else rel


def resolve_record_path(path: str | Path | None, root: Path | None = None) -> str | None:
    """Inverse of :func:`record_path`: a stored relative path made absolute against the project root
    (absolute paths, None, "" and paths read outside any project are returned unchanged)."""
    if path is None:
        return None
    if str(path) == "" or Path(path).is_absolute():
        return str(path)
    root = project_root() if root is None else root
    return str(path) if root is None else os.path.normpath(root / path)


def record_text(text: str, root: Path | None = None) -> str:
    """``text`` with every absolute path inside the project root rewritten relative to it (messages, logs,
    tracebacks); "/proj/results/x" -> "results/x", a bare "/proj" -> ".". Other text is untouched."""
    root = project_root() if root is None else root
    if root is None:
        return text
    spellings = {str(root)}
    try:
        spellings.add(str(root.resolve()))
    except OSError:
        pass
    for spelling in sorted(spellings, key=len, reverse=True):
        if spelling not in text:
            continue
        # the root must start a path (not continue a longer one): "/proj" never matches in "/proj2" or
        # "/x/proj"; "/proj/a" -> "a" (sub), a bare "/proj" or "/proj/" -> "." or "./" (end)
        pattern = re.compile(rf"(?<![\w.~/-]){re.escape(spelling)}"
                             rf"(?:(?P<sub>/)(?=[\w.~@+%=-])|(?P<end>/?)(?![\w.~/-]))")
        text = pattern.sub(lambda m: "" if m.group("sub") else "." + m.group("end"), text)
    return text


def record_strings(obj: Any, root: Path | None = None, *, skip: Callable[[Any], bool] | None = None) -> Any:
    """A copy of a JSON-like ``obj`` with :func:`record_text` applied to every string value; ``skip(key)``
    (optional) marks dict keys whose values are kept as they are (e.g. base64 images)."""
    root = project_root() if root is None else root
    if root is None:
        return obj

    def walk(o: Any) -> Any:
        if isinstance(o, str):
            return record_text(o, root)
        if isinstance(o, Mapping):
            return {k: (v if skip is not None and skip(k) else walk(v)) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [walk(v) for v in o]
        return o

    return walk(obj)


def _map_path_keys(d: Mapping[str, Any], fn: Callable[[str], str | None]) -> dict:
    """A deep copy of config dict ``d`` with ``fn`` applied to each PATH_KEYS string present."""
    out = json.loads(json.dumps(d, default=_json_default))  # a deep copy of plain JSON data
    for dotted in PATH_KEYS:
        *parents, leaf = dotted.split(".")
        sec = out
        for name in parents:
            sec = sec.get(name) if isinstance(sec, dict) else None
        if isinstance(sec, dict) and isinstance(sec.get(leaf), str):
            sec[leaf] = fn(sec[leaf])
    return out


def record_config(d: Mapping[str, Any], root: Path | None = None) -> dict:
    """A config dict as config.json stores it: the PATH_KEYS through :func:`record_path`."""
    root = project_root() if root is None else root
    return _map_path_keys(d, lambda p: record_path(p, root))


def resolved_config(d: Mapping[str, Any], root: Path | None = None) -> dict:
    """A stored config dict with its relative PATH_KEYS resolved against the project root."""
    root = project_root() if root is None else root
    return _map_path_keys(d, lambda p: resolve_record_path(p, root))


# ---------------------------------------------------------------------- environment
def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The CPU's model name from ``cpuinfo`` (Linux), else ``platform.processor()``; None when unknown."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                # x86 names it "model name"; some ARM kernels only give "Hardware" or "Processor"
                if sep and key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _cpu_capability() -> str | None:
    """The SIMD level torch's CPU kernels dispatch to ("AVX2", "AVX512", "DEFAULT", ...): CPU results are
    bitwise comparable only between machines (and processes) that share it."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):  # torch < 2.0 has no such query
        return None


def collect_env(device: str | None = None, extra: Mapping[str, Any] | None = None) -> dict:
    """Package versions, platform, git commit + dirty flag of the reidlab checkout, device, CPU model,
    SIMD capability and threads."""
    import numpy
    import torch

    try:
        import torchvision

        tv = torchvision.__version__
    except ImportError:  # pragma: no cover
        tv = None
    pkg_dir = Path(__file__).resolve().parents[2]
    commit = _git(["rev-parse", "HEAD"], pkg_dir)
    dirty = None
    if commit is not None:
        st = _git(["status", "--porcelain", "--untracked-files=no"], pkg_dir)
        dirty = bool(st) if st is not None else None
    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": tv,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "git_commit": commit,
        "git_dirty": dirty,
        "device": device,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_model": _cpu_model(),
        "cpu_capability": _cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import reidlab

        env["reidlab"] = reidlab.__version__
    except Exception:  # pragma: no cover
        env["reidlab"] = None
    if extra:
        env.update(extra)
    return env


# ---------------------------------------------------------------------- run record
def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return repr(v)  # shortest repr that round-trips exactly
    return str(v)


class RunRecord:
    """Reader and writer of one run folder ``results/runs/<run_id>/``.

    Readers return what is on disk (``config``, ``env``, ``model``, ``protocol``, ``status`` as dicts,
    ``metrics`` as a pandas DataFrame); missing files read as ``None`` (empty DataFrame for metrics).
    """

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)

    def __repr__(self) -> str:
        st = self.status or {}
        return f"RunRecord({str(self.run_dir)!r}, state={st.get('state')!r}, epoch={st.get('epoch')!r})"

    # paths
    @property
    def run_id(self) -> str:
        return self.run_dir.name

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def figures_dir(self) -> Path:
        return self.run_dir / "figures"

    def checkpoint_path(self, which: str = "last") -> Path:
        """``last`` | ``best`` | ``interrupted`` | ``epoch_NNN`` -> checkpoints/<which>.pt."""
        return self.checkpoint_dir / f"{which}.pt"

    # readers
    def _read_json(self, name: str) -> dict | None:
        p = self.run_dir / name
        if not p.is_file():
            return None
        with open(p, encoding="utf-8") as f:
            return json.load(f)

    @property
    def config(self) -> dict | None:
        """config.json as stored (path keys relative to the project root when inside it); use
        :meth:`run_config` for a RunConfig with the paths resolved."""
        return self._read_json("config.json")

    def run_config(self):
        """config.json as a validated :class:`reidlab.config.RunConfig`, relative path keys resolved
        against the project root (:func:`resolved_config`)."""
        d = self.config
        if d is None:
            raise FileNotFoundError(f"{self.run_dir / 'config.json'} does not exist")
        return RunConfig.from_dict(resolved_config(d))

    @property
    def env(self) -> dict | None:
        return self._read_json("env.json")

    @property
    def model(self) -> dict | None:
        return self._read_json("model.json")

    @property
    def protocol(self) -> dict | None:
        return self._read_json("protocol.json")

    @property
    def status(self) -> dict | None:
        return self._read_json("status.json")

    @property
    def state(self) -> str | None:
        st = self.status
        return None if st is None else st.get("state")

    def is_finished(self) -> bool:
        return self.state == "finished"

    def _read_csv(self, name: str, columns: Iterable[str]):
        import pandas as pd

        p = self.run_dir / name
        if not p.is_file():
            return pd.DataFrame(columns=list(columns))
        return pd.read_csv(p)

    @property
    def metrics(self):
        """metrics.csv as a DataFrame (one row per evaluation, columns METRIC_COLUMNS)."""
        return self._read_csv("metrics.csv", METRIC_COLUMNS)

    @property
    def epochs(self):
        """epochs.csv as a DataFrame (one row per trained epoch, columns EPOCH_COLUMNS)."""
        return self._read_csv("epochs.csv", EPOCH_COLUMNS)

    def final_metrics(self) -> dict | None:
        """The LAST evaluated row (what tables report), or None when nothing was evaluated."""
        m = self.metrics
        if len(m) == 0:
            return None
        return m.iloc[-1].to_dict()

    # writers (JSON records are made portable: no absolute paths inside the project, see module docstring)
    def write_config(self, cfg: Any) -> Path:
        d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
        return atomic_write_json(self.run_dir / "config.json", record_config(d))

    def write_env(self, env: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.run_dir / "env.json", record_strings(dict(env)))

    def write_model(self, desc: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.run_dir / "model.json", record_strings(dict(desc)))

    def write_protocol(self, protocol: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.run_dir / "protocol.json", record_strings(dict(protocol)))

    @staticmethod
    def _csv_text(rows: Iterable[Mapping[str, Any]], columns: tuple[str, ...]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            unknown = set(r) - set(columns)
            if unknown:
                raise ValueError(f"unknown columns {sorted(unknown)}; expected a subset of {columns}")
            w.writerow([_fmt(r.get(c)) for c in columns])
        return buf.getvalue()

    def write_metrics(self, rows: Iterable[Mapping[str, Any]]) -> Path:
        """Rewrite metrics.csv from all rows so far (atomically)."""
        return atomic_write_text(self.run_dir / "metrics.csv", self._csv_text(rows, METRIC_COLUMNS))

    def write_epochs(self, rows: Iterable[Mapping[str, Any]]) -> Path:
        """Rewrite epochs.csv from all rows so far (atomically)."""
        return atomic_write_text(self.run_dir / "epochs.csv", self._csv_text(rows, EPOCH_COLUMNS))

    def write_status(self, state: str, message: str = "", *, epoch: int | None = None, **extra: Any) -> Path:
        """status.json: ``state`` in STATES, a human message, the last completed epoch, extra fields."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        st = {"state": state, "message": message, "epoch": epoch,
              "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}  # fmt: skip
        return atomic_write_json(self.run_dir / "status.json", record_strings(st))

    def write_event_file(self) -> Path | None:
        """Rebuild the run's TensorBoard event file from its records (``reidlab.runs.tracking``). Without
        the tensorboard package it warns and returns None: the records are what counts."""
        try:
            from reidlab.runs.tracking import write_tensorboard
        except ImportError as e:  # pragma: no cover - tensorboard is a declared dependency
            import warnings

            warnings.warn(f"{self.run_dir}: no TensorBoard event file ({e})", stacklevel=2)
            return None
        return write_tensorboard(self.run_dir)

    def save_checkpoint(self, obj: Mapping[str, Any], which: str = "last") -> Path:
        return atomic_torch_save(dict(obj), self.checkpoint_path(which))

    def load_checkpoint(self, which: str = "last", map_location: Any = "cpu") -> dict:
        p = self.checkpoint_path(which)
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint {p} does not exist")
        return load_checkpoint_file(p, map_location)

    def remove_stale_temps(self) -> int:
        """Delete temp files orphaned by a kill during an atomic write; returns how many."""
        n = 0
        for folder in (self.run_dir, self.checkpoint_dir):
            if folder.is_dir():
                for p in folder.glob(".*.tmp"):
                    try:
                        p.unlink()
                        n += 1
                    except OSError:
                        pass
        return n

    def clear(self) -> None:
        """Remove everything the engine writes (used by ``train(force=True)``); keeps other files
        (e.g. an executed notebook placed there by the notebook runner)."""
        for name in ("config.json", "env.json", "model.json", "protocol.json", "metrics.csv",
                     "epochs.csv", "status.json"):  # fmt: skip
            try:
                (self.run_dir / name).unlink()
            except FileNotFoundError:
                pass
        if self.checkpoint_dir.is_dir():
            for p in self.checkpoint_dir.iterdir():
                if p.name == ".lock":  # held by the engine while it trains; kept so the lock stays valid
                    continue
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu") -> dict:
    """Load a reidlab checkpoint (a dict written by the engine); clear error for other files."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:
        raise ValueError(f"{path}: cannot be read as a torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a reidlab checkpoint (missing format tag {CHECKPOINT_FORMAT!r})")
    return obj


CHECKPOINT_FORMAT = "reidlab-checkpoint-1"
