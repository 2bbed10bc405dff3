"""Launchers (reidlab.launchers): a sweep's runs on local processes or on a Dask distributed cluster.

Tiny real training runs (the tiny synthetic world of test_notebooks, 32x16 frames, 4 one-step epochs):
the Dask launcher gives the same records as the local one; a worker SIGKILLed in the middle of a run
takes its run down with it, the task is retried and the run resumes from its checkpoint to the same
numbers; a run that fails for a real reason is reported failed (not retried) while the others finish.
GPU slots are checked with stand-in commands (no GPU needed): each concurrent slot's child sees its own
CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pandas as pd
import psutil
import pytest
import yaml

from reidlab.cli import main as cli_main
from reidlab.launchers import (
    ATTEMPT_MARK,
    DaskLauncher,
    LocalLauncher,
    RunTask,
    die_with_parent,
    make_launcher,
    run_on_worker,
    wait_for_run_lock,
)
from reidlab.runs.records import RunRecord
from reidlab.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
TINY_WORLD = {"ids": 10, "cams": 2, "frames": [6, 8], "distractors": 1, "junk": 0}
RUNS = ["ln-mean-s0", "ln-sc-s0"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from reidlab.data.synthetic import ensure_world

    return ensure_world(tmp_path_factory.mktemp("data") / "tiny", verbose=False, **TINY_WORLD)


def write_spec(world: Path, path: Path, variants: list[str]) -> Path:
    """Tiny train_fusion runs; 4 epochs of one step, so a run can be killed between checkpoints."""
    all_variants = {"mean": {"fusion": "mean"}, "sc": {"fusion": "softmax_cosine", "fusion_options": {"tau": 0.5}}}
    d = {"name": "ln", "notebook": str(ROOT / "notebooks" / "train_fusion.ipynb"),
         "parameters": {"root": str(world), "synthetic": TINY_WORLD, "height": 32, "width": 16, "p": 3, "k": 2,
                        "epochs": 4, "steps_per_epoch": 1, "eval_every": 2, "progress": False},
         "variants": {v: all_variants[v] for v in variants}, "seeds": [0]}
    path.write_text(yaml.safe_dump(d))
    return path


@pytest.fixture(scope="module")
def spec(world, tmp_path_factory) -> Path:
    return write_spec(world, tmp_path_factory.mktemp("spec") / "ln.yaml", ["mean", "sc"])


@pytest.fixture(scope="module")
def cluster():
    """A Dask cluster of 2 single-threaded worker processes, as `dask scheduler` + 2 `dask worker`s would
    be; closed after the module, and none of its processes left behind."""
    from distributed import Client, LocalCluster

    c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                     scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, silence_logs=logging.ERROR)
    with Client(c, set_as_default=False) as client:
        first = set(client.run(os.getpid).values())
    try:
        yield c
    finally:
        with Client(c, set_as_default=False) as client:
            pids = set(client.run(os.getpid).values()) | first  # restarted workers too
        c.close()
        _, alive = psutil.wait_procs([p for p in map(_proc, pids) if p], timeout=10)
        assert not alive, f"worker processes left running: {alive}"


@pytest.fixture(scope="module")
def reference(spec, tmp_path_factory) -> Path:
    """The uninterrupted sweep on the local launcher (2 runs at a time, 1 thread each)."""
    res = tmp_path_factory.mktemp("local")
    report = run_sweep(spec, results_dir=res, launcher=LocalLauncher(jobs=2), echo=lambda s: None)
    assert report.ok and sorted(report.ran) == RUNS, report.failed
    return res


def run_process(rid: str) -> psutil.Process | None:
    """The `python -m reidlab run ... -p run_id RID` process, if running."""
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "reidlab" in cmd and "run" in cmd and any(a == "run_id" and b == rid for a, b in zip(cmd, cmd[1:])):
            return p
    return None


def _proc(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def metrics(res: Path, rid: str) -> pd.DataFrame:
    return RunRecord(res / "runs" / rid).metrics.drop(columns=["seconds"])


def epochs(res: Path, rid: str) -> pd.DataFrame:
    return RunRecord(res / "runs" / rid).epochs.drop(columns=["seconds", "frames_per_s"])


def attempt_lines(log: Path) -> list[str]:
    return [ln for ln in log.read_text().splitlines() if ln.startswith(ATTEMPT_MARK)]


# ------------------------------------------------------------------------------------------------ runs on dask


def test_dask_sweep_gives_the_local_launchers_records(spec, reference, cluster, tmp_path):
    res = tmp_path / "res"
    lines: list[str] = []
    report = run_sweep(spec, results_dir=res, launcher=DaskLauncher(scheduler=cluster.scheduler_address, threads=1),
                       echo=lines.append)
    assert report.ok and sorted(report.ran) == RUNS, (report.failed, lines)
    assert report.attempts == {rid: 1 for rid in RUNS}
    for rid in RUNS:
        assert RunRecord(res / "runs" / rid).is_finished()
        pd.testing.assert_frame_equal(metrics(res, rid), metrics(reference, rid))
        pd.testing.assert_frame_equal(epochs(res, rid), epochs(reference, rid))
        assert len(attempt_lines(report.logs[rid])) == 1
    assert any("on the Dask cluster at tcp://" in ln for ln in lines)


def test_killed_worker_run_is_retried_and_resumes_from_its_checkpoint(world, reference, cluster, tmp_path):
    spec = write_spec(world, tmp_path / "ln.yaml", ["mean"])  # the reference's first run alone
    res = tmp_path / "res"
    rid = RUNS[0]
    last = res / "runs" / rid / "checkpoints" / "last.pt"
    out: dict = {}
    sweep = threading.Thread(target=lambda: out.setdefault("report", run_sweep(
        spec, results_dir=res, launcher=DaskLauncher(scheduler=cluster.scheduler_address, threads=1),
        echo=lambda s: None)))
    sweep.start()
    try:
        run_proc = None
        deadline = time.monotonic() + 120
        while not last.exists():  # the run's process (a child of its worker), then its first checkpoint
            assert time.monotonic() < deadline and sweep.is_alive(), "the run never wrote a checkpoint"
            run_proc = run_proc or run_process(rid)
            time.sleep(0.05)
        assert run_proc is not None
        assert not RunRecord(res / "runs" / rid).is_finished(), "the run finished before it could be killed"
        worker = run_proc.parent()  # a worker process: its nanny lives in this process
        assert worker.ppid() == os.getpid(), worker.cmdline()
        below = run_proc.children(recursive=True)  # the notebook kernel
        assert below, "no kernel under the run's process"
        worker.send_signal(signal.SIGKILL)
        # the run and its kernel die with the worker: no orphan keeps writing the run
        _, alive = psutil.wait_procs([run_proc, *below], timeout=15)
        assert not alive, f"left running after their worker was killed: {alive}"
        import torch

        ck = torch.load(last, map_location="cpu", weights_only=False)  # what the retry resumes from
        assert 1 <= ck["epoch"] < 4
    finally:
        sweep.join(timeout=300)
    report = out["report"]
    assert report.ok and report.ran == [rid], report.failed
    assert report.attempts == {rid: 2}
    heads = attempt_lines(report.logs[rid])
    assert [h.split()[3] for h in heads] == ["1", "2"], heads
    executed = (res / "runs" / rid / "notebook.ipynb").read_text()
    assert f"resuming after epoch {ck['epoch']}" in executed
    # the epochs before the kill were not trained again: their rows (timings included) are the checkpoint's
    ep = RunRecord(res / "runs" / rid).epochs
    kept = pd.DataFrame(ck["epoch_rows"])
    assert list(ep["seconds"][: len(kept)]) == list(kept["seconds"])
    # and the resumed run ends where the uninterrupted one did
    pd.testing.assert_frame_equal(metrics(res, rid), metrics(reference, rid))
    pd.testing.assert_frame_equal(epochs(res, rid), epochs(reference, rid))


# a stand-in training notebook (no torch): rejects a fusion name the way only the kernel can
STUB_PARAMS = '''\
run_id: str = ""  # run folder name
seed: int = 0  # seed
fusion: str = "mean"  # fusion
results_dir: str = "results"  # results folder
force: bool = False  # re-run'''
STUB_BODY = '''\
from pathlib import Path
from reidlab.runs.records import RunRecord
if fusion not in ("mean", "max"):
    raise ValueError(f"unknown fusion {fusion!r}")
rec = RunRecord(Path(results_dir) / "runs" / run_id)
rec.write_config({"run_id": run_id, "seed": seed, "model": {"fusion": fusion}})
rec.write_metrics([{"epoch": 1, "mAP": 0.5 + seed / 100, "rank1": 0.6, "rank5": 0.7}])
rec.write_status("finished", "stub")'''


def stub_spec(tmp_path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(STUB_PARAMS)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(STUB_BODY)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "stub.ipynb")
    spec = {"name": "st", "notebook": str(tmp_path / "stub.ipynb"),
            "variants": {"mean": {"fusion": "mean"}, "bogus": {"fusion": "bogus"}}, "seeds": [0]}
    (tmp_path / "st.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "st.yaml"


def test_failed_run_is_reported_not_retried_and_others_finish(cluster, tmp_path, capsys):
    spec, res = stub_spec(tmp_path), tmp_path / "res"
    # the scheduler given as a scheduler file (what `dask scheduler --scheduler-file` writes)
    sched_file = tmp_path / "scheduler.json"
    sched_file.write_text(json.dumps({"address": cluster.scheduler_address}))
    rc = cli_main(["sweep", str(spec), "--results", str(res), "--launcher", "dask", "--scheduler", str(sched_file)])
    out = capsys.readouterr().out
    assert rc == 1, out
    assert "st-bogus-s0: FAILED" in out and "unknown fusion 'bogus'" in out
    assert "1 ran, 0 skipped (finished), 1 failed" in out
    assert RunRecord(res / "runs" / "st-mean-s0").is_finished()
    assert len(attempt_lines(res / "sweeps" / "st" / "st-bogus-s0.log")) == 1  # a real failure: no retry
    # a second sweep skips the finished runs and tries the failed one again
    report = run_sweep(spec, results_dir=res, launcher=DaskLauncher(scheduler=cluster.scheduler_address),
                       echo=lambda s: None)
    assert report.skipped == ["st-mean-s0"] and list(report.failed) == ["st-bogus-s0"]


# ------------------------------------------------------------------------------------------------ GPU slots

# a stand-in run: records the CUDA_VISIBLE_DEVICES it was given and when it ran
SLOT_PROBE = """\
import os, sys, time
t0 = time.time(); time.sleep(0.4)
with open(sys.argv[1], "a") as f:
    f.write(f"{os.environ.get('CUDA_VISIBLE_DEVICES')} {t0} {time.time()} {os.environ.get('OMP_NUM_THREADS')}\\n")
"""


def probe_tasks(tmp_path: Path, n: int) -> tuple[list[RunTask], Path]:
    out = tmp_path / "slots.txt"
    return [RunTask(run_id=f"p{i}", cmd=[sys.executable, "-c", SLOT_PROBE, str(out)], log=tmp_path / f"p{i}.log")
            for i in range(n)], out


def assert_one_run_per_gpu(out: Path, gpus: set[str], n: int) -> None:
    rows = [ln.split() for ln in out.read_text().splitlines()]
    assert len(rows) == n and {r[0] for r in rows} == gpus, rows
    for g in gpus:
        spans = sorted((float(a), float(b)) for dev, a, b, _ in rows if dev == g)
        assert all(s[1] <= t[0] for s, t in zip(spans, spans[1:])), f"two runs at once on GPU {g}: {spans}"


def test_local_launcher_gives_each_slot_its_gpu(tmp_path):
    tasks, out = probe_tasks(tmp_path, 4)
    results = []
    launcher = LocalLauncher(jobs=2, gpus=["3", "5"])
    launcher.run(tasks, lambda t, r: results.append(r))
    assert sorted(r.run_id for r in results if r.ok) == ["p0", "p1", "p2", "p3"]
    assert_one_run_per_gpu(out, {"3", "5"}, 4)
    assert "GPUs 3,5 round-robin per slot" in launcher.describe()


def test_dask_local_cluster_one_worker_per_gpu(tmp_path):
    tasks, out = probe_tasks(tmp_path, 4)
    results = []
    launcher = DaskLauncher(jobs=2, gpus=["3", "5"])
    assert launcher.request_gpu  # each task asks for resources={"GPU": 1}
    launcher.run(tasks, lambda t, r: results.append(r))
    assert sorted(r.run_id for r in results if r.ok) == ["p0", "p1", "p2", "p3"]
    assert_one_run_per_gpu(out, {"3", "5"}, 4)
    # the child is told how many threads to use (cpu_count / jobs), not dask's OMP_NUM_THREADS=1
    assert {ln.split()[3] for ln in out.read_text().splitlines()} == {str(max(1, (os.cpu_count() or 1) // 2))}


def test_worker_dying_too_often_is_a_failed_run(tmp_path):
    """Past the scheduler's allowed failures (here 0) a run whose worker dies is reported failed."""
    kill_worker = "import os, signal; os.kill(os.getppid(), signal.SIGKILL)"
    tasks = [RunTask(run_id="doomed", cmd=[sys.executable, "-c", kill_worker], log=tmp_path / "doomed.log"),
             RunTask(run_id="fine", cmd=[sys.executable, "-c", "print('ok')"], log=tmp_path / "fine.log")]
    results = {}
    DaskLauncher(jobs=2, allowed_failures=0).run(tasks, lambda t, r: results.setdefault(t.run_id, r))
    assert results["fine"].ok
    doomed = results["doomed"]
    assert not doomed.ok and doomed.attempts == 1 and "its worker died 1 time(s)" in doomed.error


# ------------------------------------------------------------------------------------------------ plumbing


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_child_dies_with_its_parent(tmp_path):
    """What makes a killed worker leave no orphan: the run's process gets SIGKILL with its parent."""
    code = ("import subprocess, sys\nfrom reidlab.launchers import die_with_parent\n"
            "p = subprocess.Popen(die_with_parent([sys.executable, '-c', 'import time; time.sleep(60)']))\n"
            "print(p.pid, flush=True)\nimport time; time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        deadline = time.monotonic() + 10
        while child.cmdline()[:2] != [sys.executable, "-c"] or len(child.cmdline()) != 3:  # until exec'd
            assert time.monotonic() < deadline, child.cmdline()
            time.sleep(0.02)
        parent.send_signal(signal.SIGKILL)
        child.wait(timeout=5)
    finally:
        parent.kill()
        parent.wait()
    assert die_with_parent(["x"])[-1] == "x"


def test_retry_resumes_what_the_first_attempt_started(tmp_path):
    """A retried task (its log already holds an attempt) re-runs `cmd` with --force only while the record
    is still the old finished one; once the first attempt started the run over, it resumes (`retry_cmd`)."""
    run_dir = tmp_path / "runs" / "r"
    say = [sys.executable, "-c", "import sys; print(sys.argv[1])"]
    task = RunTask(run_id="r", cmd=[*say, "forced"], retry_cmd=[*say, "resumed"], log=tmp_path / "r.log",
                   run_dir=run_dir)
    rec = RunRecord(run_dir)
    rec.write_status("finished", "an old record")
    old = time.time() - 100
    os.utime(run_dir / "status.json", (old, old))

    def attempt(first_started: float) -> str:
        task.log.write_text(f"{ATTEMPT_MARK}1 on h (worker pid 1, CUDA_VISIBLE_DEVICES=) t={first_started:.3f}\n")
        r = run_on_worker(task, threads=1)
        assert r.ok and r.attempts == 2
        return task.log.read_text().splitlines()[-1]

    assert attempt(time.time()) == "forced"  # killed before it discarded the old record: force again
    rec.write_status("running", "epoch 2")
    assert attempt(old - 10) == "resumed"  # the forced run had started: resume it
    rec.write_status("finished", "done by the first attempt")
    assert attempt(old - 10) == "resumed"  # finished by the first attempt: the engine skips it


def test_threads_per_run_on_a_remote_worker(monkeypatch):
    """A remote worker's runs share its CPUs: per concurrent task, or per GPU when each run holds one
    (e.g. a SLURMCluster job of 8 cores whose worker has 8 threads but one GPU)."""
    import types

    import distributed

    from reidlab.launchers import worker_threads

    state = types.SimpleNamespace(nthreads=8, total_resources={"GPU": 1})
    monkeypatch.setattr(distributed, "get_worker", lambda: types.SimpleNamespace(state=state))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert worker_threads() == 1 and worker_threads(gpu=True) == 8
    state.nthreads, state.total_resources = 2, {}
    assert worker_threads(gpu=True) == 4


def test_wait_for_run_lock(tmp_path):
    """The engine's run lock is an flock on checkpoints/.lock: a retry waits until it is free."""
    import fcntl

    assert wait_for_run_lock(tmp_path / "never-ran", timeout=0)
    (tmp_path / "checkpoints").mkdir()
    holder = open(tmp_path / "checkpoints" / ".lock", "a+")
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not wait_for_run_lock(tmp_path, timeout=0.3)
    threading.Timer(0.3, holder.close).start()  # the old kernel exits: its lock goes with it
    t0 = time.monotonic()
    assert wait_for_run_lock(tmp_path, timeout=10) and time.monotonic() - t0 < 5


def test_launcher_options_and_errors(tmp_path, capsys, monkeypatch):
    assert isinstance(make_launcher("local", jobs=2, gpus="0,1"), LocalLauncher)
    d = make_launcher("dask", jobs=3, scheduler="tcp://login01:8786", gpus="workers")
    assert isinstance(d, DaskLauncher) and d.request_gpu and d.threads is None
    assert not make_launcher("dask", jobs=2, scheduler="tcp://h:1").request_gpu
    for kw, msg in [({"name": "local", "scheduler": "tcp://h:1"}, "--scheduler needs --launcher dask"),
                    ({"name": "dask", "gpus": "workers"}, "--gpus workers needs"),
                    ({"name": "dask", "scheduler": "tcp://h:1", "gpus": "0,1"}, "the workers own their GPUs"),
                    ({"name": "local", "gpus": "0,,1"}, "comma-separated device ids"),
                    ({"name": "ray"}, "unknown launcher")]:
        with pytest.raises(ValueError, match=msg):
            make_launcher(**kw)
    spec = stub_spec(tmp_path)
    assert cli_main(["sweep", str(spec), "--scheduler", "tcp://h:1", "--results", str(tmp_path / "r")]) == 2
    assert "--scheduler needs --launcher dask" in capsys.readouterr().err
    # an unreachable scheduler is an error before anything ran, not a traceback
    with pytest.raises(ConnectionError, match="cannot reach the Dask scheduler tcp://127.0.0.1:9"):
        DaskLauncher(scheduler="tcp://127.0.0.1:9", connect_timeout=1).run([], lambda t, r: None)

    def unreachable(self, tasks, done):
        raise ConnectionError("cannot reach the Dask scheduler tcp://h:1: refused")

    monkeypatch.setattr(DaskLauncher, "run", unreachable)
    rc = cli_main(["sweep", str(spec), "--launcher", "dask", "--scheduler", "tcp://h:1",
                   "--results", str(tmp_path / "r")])
    assert rc == 2 and "cannot reach the Dask scheduler" in capsys.readouterr().err
    assert not (tmp_path / "r" / "runs").exists()


def test_main_passes_the_launcher_to_its_sweep(tmp_path, monkeypatch):
    import reidlab.cli as cli

    seen = {}

    def fake_sweep(spec_path, **kw):
        seen.update(kw)
        return 1  # stop the main job after its sweep

    monkeypatch.setattr(cli, "_sweep", fake_sweep)
    args = ["main", "--spec", str(ROOT / "sweeps" / "study.yaml"), "--work", str(tmp_path / "wk"),
            "--launcher", "dask", "--scheduler", "tcp://login01:8786", "--gpus", "workers"]
    assert cli_main(args) == 1
    assert (seen["launcher"], seen["scheduler"], seen["gpus"]) == ("dask", "tcp://login01:8786", "workers")
    seen.clear()
    assert cli_main(["main", "--spec", str(ROOT / "sweeps" / "study.yaml"), "--work", str(tmp_path / "wk"),
                     "--gpus", "0,1,2,3"]) == 1
    assert seen["launcher"] == "local" and seen["jobs"] is None  # one run per GPU: jobs from --gpus


def test_dask_is_imported_only_by_the_dask_launcher():
    code = "import sys, reidlab.cli, reidlab.sweep, reidlab.launchers; print('distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
