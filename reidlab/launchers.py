"""Launchers: where a sweep's runs execute (`reidlab sweep SPEC --launcher local|dask`).

A sweep (reidlab.sweep) turns every grid point into a :class:`RunTask`: one `python -m reidlab run ...`
command writing its own run record, with a log file. A launcher executes a list of them and reports each
:class:`RunResult` as it comes in; whatever it is, a run stays one papermill execution, so skip, resume
and force mean the same everywhere.

``local`` (default)
    `jobs` subprocesses at a time on this machine, each told to use cpu_count / jobs threads.
``dask``
    Each run is a task on a Dask distributed cluster: a function that starts the same command as a
    subprocess of the worker (workers share the results folder, as on a Slurm cluster). Without a
    scheduler address a local cluster of `jobs` single-threaded worker processes is started (and closed).
    A worker that dies mid-run (node lost, job pre-empted, SIGKILL) takes its run down with it (the child
    gets SIGKILL from the kernel through PR_SET_PDEATHSIG on Linux; the notebook kernel below it exits
    when its parent does), the scheduler hands the task to another worker (``allowed-failures``, default
    3, then KilledWorker) and the run resumes from ``checkpoints/last.pt``. A run that fails for a real
    reason (non-zero exit) is returned as a failed result, never raised, so Dask does not retry it.

GPUs: one run per device. ``gpus`` lists device ids; the local launcher gives concurrent slot i
``CUDA_VISIBLE_DEVICES=gpus[i % len(gpus)]``; the dask launcher's own cluster starts one worker per slot
with that variable in its environment and a ``GPU=1`` resource, and every task asks for ``GPU=1``. On a
remote cluster the workers own their devices (each started with its own CUDA_VISIBLE_DEVICES and
``--resources GPU=1``); ``request_gpu=True`` (CLI ``--gpus workers``) makes each task ask for one.

Threads: a run is told OMP/MKL_NUM_THREADS = cpu_count / jobs locally and on the dask launcher's own
cluster; on a remote worker, the CPUs the worker may use (its Slurm allocation) / the runs it executes
at once (its threads, or its GPUs when runs hold one) -- not Dask's OMP_NUM_THREADS=1 for workers.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

__all__ = ["RunTask", "RunResult", "Launcher", "LocalLauncher", "DaskLauncher", "LAUNCHERS", "make_launcher",
           "parse_gpus", "run_on_worker"]


@dataclass(frozen=True)
class RunTask:
    """One run to execute: a command, its log file, environment changes and its run folder.

    env: variables set for the child on top of the executing process's environment (None: removed).
    retry_cmd: the command for a second attempt after a lost worker (the same without ``force``: the
    first attempt already started the run over, the retry must resume it); None means ``cmd``.
    """

    run_id: str
    cmd: list[str]
    log: Path
    run_dir: Path | None = None
    env: Mapping[str, str | None] = field(default_factory=dict)
    cwd: str | None = None
    retry_cmd: list[str] | None = None


@dataclass
class RunResult:
    run_id: str
    returncode: int
    seconds: float
    attempts: int = 1
    host: str = ""
    error: str | None = None  # the launcher could not run it (e.g. its worker died too often)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.error is None


Done = Callable[[RunTask, RunResult], None]


class Launcher(Protocol):
    """Executes run tasks; calls ``done`` once per task (from any thread), failures included.

    remote: its runs may execute on other machines (the sweep then gives them absolute paths and an
    explicit working folder: they share the file system, not this process's current folder)."""

    remote: bool

    def describe(self) -> str: ...

    def run(self, tasks: Sequence[RunTask], done: Done) -> None: ...


def parse_gpus(text: str | None) -> list[str] | None:
    """`--gpus 0,1,2,3` -> ['0', '1', '2', '3'] (device ids as CUDA_VISIBLE_DEVICES spells them)."""
    if text is None:
        return None
    ids = [s.strip() for s in str(text).split(",")]
    if not ids or any(not s or not all(c.isalnum() or c in "-_:" for c in s) for s in ids):
        raise ValueError(f"--gpus expects comma-separated device ids like 0,1,2,3, got {text!r}")
    return ids


def _child_env(base: Mapping[str, str], *changes: Mapping[str, str | None]) -> dict[str, str]:
    env = dict(base)
    for ch in changes:
        for k, v in ch.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
    return env


def _threads_env(threads: int | None) -> dict[str, str]:
    return {} if threads is None else {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


class Stagger:
    """Spaces out process launches by `gap` seconds (thread-safe): kernels started at the same instant
    by parallel processes can pick the same free port (jupyter_client's port choice races)."""

    def __init__(self, gap: float = 1.5):
        self.gap, self._lock, self._last = gap, threading.Lock(), 0.0

    def wait(self) -> None:
        with self._lock:
            delay = self._last + self.gap - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._last = time.monotonic()


# ------------------------------------------------------------------------------------------------ local


class LocalLauncher:
    """`jobs` subprocesses at a time on this machine; slot i of `gpus` gets CUDA_VISIBLE_DEVICES."""

    name = "local"
    remote = False

    def __init__(self, jobs: int = 1, gpus: Sequence[str] | None = None):
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.jobs, self.gpus = jobs, list(gpus) if gpus else None
        self.threads = max(1, (os.cpu_count() or 1) // jobs)

    def describe(self) -> str:
        gpu = f", GPUs {','.join(self.gpus)} round-robin per slot" if self.gpus else ""
        return f"{self.jobs} at a time, {self.threads} thread(s) each{gpu}"

    def slot_env(self, slot: int) -> dict[str, str]:
        return {"CUDA_VISIBLE_DEVICES": self.gpus[slot % len(self.gpus)]} if self.gpus else {}

    def run(self, tasks: Sequence[RunTask], done: Done) -> None:
        base = _child_env(os.environ, _threads_env(self.threads))
        stagger = Stagger()
        slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(self.jobs):
            slots.put(i)

        def one(task: RunTask) -> None:
            slot = slots.get()
            try:
                stagger.wait()
                t0 = time.monotonic()
                with open(task.log, "w") as f:
                    proc = subprocess.run(task.cmd, stdout=f, stderr=subprocess.STDOUT,
                                          env=_child_env(base, task.env, self.slot_env(slot)), cwd=task.cwd)
                done(task, RunResult(task.run_id, proc.returncode, time.monotonic() - t0, host=socket.gethostname()))
            finally:
                slots.put(slot)

        if self.jobs == 1:
            for task in tasks:
                one(task)
        else:
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                list(pool.map(one, tasks))


# ------------------------------------------------------------------------------------------------ dask

#: stands for the worker's own interpreter in a submitted command (workers may live elsewhere)
PYTHON = "{python}"

# Arms PR_SET_PDEATHSIG (SIGKILL) and execs the command: the run dies with the worker process that
# started it, so a lost worker leaves no orphan writing the run. (A small exec'd wrapper rather than
# subprocess's preexec_fn, which is not safe in a threaded process such as a Dask worker.)
_DIE_WITH_PARENT = """\
import ctypes, os, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
if os.getppid() != int(sys.argv[1]):
    os._exit(137)  # the parent died before the signal was armed
os.execvp(sys.argv[2], sys.argv[2:])
"""

ATTEMPT_MARK = "[reidlab launcher] attempt "


def die_with_parent(cmd: Sequence[str]) -> list[str]:
    """`cmd` wrapped so that the process gets SIGKILL when its parent process dies (Linux)."""
    return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *cmd]


def _attempt_starts(log: Path) -> list[float]:
    """Start times (epoch seconds) of the attempts already logged for this task."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        if line.startswith(ATTEMPT_MARK):
            try:
                out.append(float(line.rsplit(" t=", 1)[1]))
            except (IndexError, ValueError):
                out.append(0.0)
    return out


def wait_for_run_lock(run_dir: Path | None, timeout: float = 60.0) -> bool:
    """Wait until nobody holds the engine's run lock (``checkpoints/.lock``, an flock that vanishes with
    its process): after a lost worker the old notebook kernel exits within about a second of its parent.
    Returns False on timeout (the run then fails in the engine's preflight, naming the lock holder)."""
    if run_dir is None:
        return True
    path = Path(run_dir) / "checkpoints" / ".lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return True
    deadline = time.monotonic() + timeout
    while True:
        try:
            fh = open(path)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
        finally:
            fh.close()
        time.sleep(0.25)


def _forced_record_still_old(run_dir: Path | None, since: float) -> bool:
    """A forced run being retried: is its record still the one from before this sweep (finished before
    the first attempt started, so the first attempt died before discarding it)? Then force again.
    (Compares the worker's clock with the file system's: fine under NTP, as the two cases are apart by
    at least a kernel start and a training run.)"""
    if run_dir is None:
        return True
    from reidlab.runs.records import RunRecord

    status = Path(run_dir) / "status.json"
    return RunRecord(run_dir).state == "finished" and status.stat().st_mtime < since


def worker_threads(gpu: bool = False) -> int:
    """Threads per run on a remote worker: the CPUs this worker process may use (its Slurm task's or
    job's allocation) shared by the runs it can execute at once: its threads, or with `gpu` (each run
    holds one GPU resource) at most its GPUs. (Dask's nanny sets OMP_NUM_THREADS=1 in its workers,
    which is right for numpy tasks, not for a training subprocess.)"""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        from distributed import get_worker

        state = get_worker().state
        concurrent = int(state.nthreads)
        if gpu and state.total_resources.get("GPU"):
            concurrent = min(concurrent, int(state.total_resources["GPU"]))
    except (ImportError, ValueError, AttributeError):  # not inside a Dask worker
        concurrent = 1
    return max(1, cpus // max(1, concurrent))


def run_on_worker(task: RunTask, *, threads: int | None = None, start_delay: float = 0.0,
                  lock_timeout: float = 60.0, gpu: bool = False) -> RunResult:
    """The Dask task: run one command as a child of this worker, appending to the task's log.

    threads: OMP/MKL threads of the run (None: :func:`worker_threads`); gpu: the task holds a GPU resource.

    Every attempt writes a header line to the log, so a second attempt (the scheduler re-ran the task
    after losing a worker) knows it is one: it waits for the run lock, then resumes the run. A non-zero
    exit is returned, not raised (Dask must not retry a run that failed for a real reason)."""
    log = Path(task.log)
    previous = _attempt_starts(log)
    attempt = len(previous) + 1
    cmd = list(task.cmd)
    if attempt > 1 and task.retry_cmd is not None and not _forced_record_still_old(task.run_dir, previous[0]):
        cmd = list(task.retry_cmd)
    cmd = [sys.executable if c == PYTHON else c for c in cmd]
    if start_delay > 0 and attempt == 1:
        time.sleep(start_delay)
    host = socket.gethostname()
    if attempt > 1 and not wait_for_run_lock(task.run_dir, lock_timeout):
        with open(log, "a") as f:
            f.write(f"run lock still held after {lock_timeout:.0f} s; starting anyway\n")
    env = _child_env(os.environ, _threads_env(threads or worker_threads(gpu)), task.env)
    t0 = time.monotonic()
    with open(log, "a") as f:
        f.write(f"{ATTEMPT_MARK}{attempt} on {host} (worker pid {os.getpid()}, "
                f"CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '')}) t={time.time():.3f}\n")
        f.flush()
        proc = subprocess.Popen(die_with_parent(cmd), stdout=f, stderr=subprocess.STDOUT, env=env, cwd=task.cwd)
        rc = proc.wait()
    return RunResult(task.run_id, rc, time.monotonic() - t0, attempts=attempt, host=host)


def _scheduler_kwargs(address: str) -> dict[str, str]:
    """`tcp://host:8786` (any `proto://`, or host:port) -> address; an existing file -> scheduler file."""
    if "://" not in address and Path(address).is_file():
        return {"scheduler_file": address}
    return {"address": address}


class DaskLauncher:
    """Runs each task on a Dask distributed cluster (see the module docstring).

    scheduler: address (tcp://host:8786) or scheduler file of a running cluster; None starts a local
    cluster of `jobs` worker processes (1 thread each) for the sweep and closes it afterwards.
    gpus: device ids for the local cluster's workers (one worker per slot, round-robin); request_gpu:
    every task asks for resources={"GPU": 1} (default: whenever gpus are given). threads: OMP/MKL threads
    per run (default: cpu_count / jobs for the local cluster, :func:`worker_threads` on a remote one).
    """

    name = "dask"
    remote = True

    def __init__(self, jobs: int = 1, gpus: Sequence[str] | None = None, scheduler: str | None = None,
                 request_gpu: bool | None = None, allowed_failures: int | None = None,
                 lock_timeout: float = 60.0, threads: int | None = None, connect_timeout: float = 60.0):
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        if scheduler and gpus:
            raise ValueError("with a scheduler address the workers own their GPUs (each started with its own "
                             "CUDA_VISIBLE_DEVICES and --resources GPU=1): ask for one per run with "
                             "--gpus workers, not device ids")
        self.jobs, self.scheduler = jobs, scheduler
        self.gpus = list(gpus) if gpus else None
        self.request_gpu = bool(self.gpus) if request_gpu is None else request_gpu
        self.allowed_failures, self.lock_timeout = allowed_failures, lock_timeout
        self.connect_timeout = connect_timeout
        # a local cluster shares this machine's cores like the local launcher; remote workers count theirs
        if threads is None and not scheduler:
            threads = max(1, (os.cpu_count() or 1) // jobs)
        self.threads = threads

    def describe(self) -> str:
        gpu = ", one GPU per run" if self.request_gpu else ""
        if self.scheduler:
            each = f"{self.threads} thread(s) each" if self.threads else "threads: the worker's CPUs"
            return f"on the Dask cluster at {self.scheduler} ({each}){gpu}"
        return (f"on a local Dask cluster of {self.jobs} worker(s), {self.threads} thread(s) each"
                + (f", GPUs {','.join(self.gpus)}" if self.gpus else "") + gpu)

    def local_cluster(self) -> Any:
        """The cluster started when no scheduler is given: one single-threaded worker process per slot
        (slot i: CUDA_VISIBLE_DEVICES=gpus[i % len(gpus)] and a GPU=1 resource when gpus are given)."""
        import logging

        from distributed import Nanny, Scheduler, SpecCluster

        # no dashboard; the scheduler's small HTTP server (health, metrics) on any free local port
        sched_opts: dict[str, Any] = {"host": "127.0.0.1", "dashboard": False, "dashboard_address": "127.0.0.1:0"}
        if self.allowed_failures is not None:
            sched_opts["allowed_failures"] = self.allowed_failures
        workers = {}
        for i in range(self.jobs):
            opts: dict[str, Any] = {"nthreads": 1, "host": "127.0.0.1", "dashboard": False,
                                    "silence_logs": logging.ERROR}
            if self.gpus:
                opts["env"] = {"CUDA_VISIBLE_DEVICES": self.gpus[i % len(self.gpus)]}
                opts["resources"] = {"GPU": 1}
            workers[i] = {"cls": Nanny, "options": opts}
        return SpecCluster(scheduler={"cls": Scheduler, "options": sched_opts}, workers=workers,
                           silence_logs=logging.ERROR, name="reidlab-sweep")

    def run(self, tasks: Sequence[RunTask], done: Done) -> None:
        try:
            from distributed import Client, as_completed
        except ImportError as e:
            raise ImportError(f"--launcher dask needs Dask distributed (pip install 'dask[distributed]'): {e}") from e

        cluster = None
        if self.scheduler:
            try:
                client = Client(**_scheduler_kwargs(self.scheduler), set_as_default=False,
                                timeout=self.connect_timeout)
            except OSError as e:  # includes timeouts
                raise ConnectionError(f"cannot reach the Dask scheduler {self.scheduler}: {e}") from None
        else:
            cluster = self.local_cluster()
            client = Client(cluster, set_as_default=False)
        try:
            futures = {}
            for i, task in enumerate(tasks):
                # a fresh log: the attempt headers count this sweep's attempts only
                Path(task.log).parent.mkdir(parents=True, exist_ok=True)
                Path(task.log).write_text("")
                sub = replace(task, cmd=_portable(task.cmd),
                              retry_cmd=None if task.retry_cmd is None else _portable(task.retry_cmd))
                fut = client.submit(run_on_worker, sub, threads=self.threads,
                                    # kernels started at once on one machine can pick the same port (see
                                    # Stagger); on a remote cluster run_notebook's retry covers it
                                    start_delay=1.5 * i if not self.scheduler and i < self.jobs else 0.0,
                                    lock_timeout=self.lock_timeout, gpu=self.request_gpu,
                                    key=f"reidlab-run-{task.run_id}-{uuid.uuid4().hex[:8]}",
                                    pure=False, resources={"GPU": 1} if self.request_gpu else None)
                futures[fut] = task
            for fut in as_completed(list(futures), loop=client.loop):
                task = futures[fut]
                try:
                    result = fut.result()
                except Exception as e:  # noqa: BLE001 - the worker died too often, or the task never ran
                    n = len(_attempt_starts(Path(task.log)))
                    msg = (f"its worker died {n} time(s) during the run (KilledWorker; the scheduler's "
                           "distributed.scheduler.allowed-failures)" if type(e).__name__ == "KilledWorker"
                           else f"{type(e).__name__}: {e}")
                    result = RunResult(task.run_id, -1, 0.0, attempts=n, error=msg)
                done(task, result)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _portable(cmd: Sequence[str]) -> list[str]:
    """This interpreter's path in a command -> PYTHON (the worker substitutes its own)."""
    return [PYTHON if c == sys.executable else c for c in cmd]


#: launcher name -> constructor (`--launcher`)
LAUNCHERS: dict[str, Callable[..., Launcher]] = {"local": LocalLauncher, "dask": DaskLauncher}


def make_launcher(name: str = "local", *, jobs: int = 1, gpus: str | Sequence[str] | None = None,
                  scheduler: str | None = None) -> Launcher:
    """A launcher from command-line choices. gpus: device ids (list or "0,1"), or "workers" (dask with a
    scheduler: each run asks for one of the GPU resources the workers advertise)."""
    if name not in LAUNCHERS:
        raise ValueError(f"unknown launcher {name!r}; choose from {sorted(LAUNCHERS)}")
    if name != "dask" and scheduler:
        raise ValueError("--scheduler needs --launcher dask")
    if gpus == "workers":
        if name != "dask" or not scheduler:
            raise ValueError("--gpus workers needs --launcher dask --scheduler ADDRESS (elsewhere give "
                             "device ids, e.g. --gpus 0,1)")
        return DaskLauncher(jobs=jobs, scheduler=scheduler, request_gpu=True)
    ids = parse_gpus(gpus) if isinstance(gpus, str) else (list(gpus) if gpus else None)
    if name == "dask":
        return DaskLauncher(jobs=jobs, gpus=ids, scheduler=scheduler)
    return LocalLauncher(jobs=jobs, gpus=ids)
