"""Every shipped notebook executed by papermill with tiny parameters, in temporary folders.

A tiny synthetic world (10 identities, 2 cameras, 6-8 frames) and 1-epoch / 1-step runs keep this to
about a minute; the numbers are meaningless, the plumbing is not: parameters reach the engine, run
folders get the executed notebook and figures, analysis notebooks find the runs and write their output.
Nothing is written into the repository's results/.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from reidlab.cli import main as cli_main
from reidlab.notebook import (
    NotebookExecutionError,
    ParameterError,
    notebook_parameters,
    resolve_kernel_name,
    run_notebook,
    training_config,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["train_fusion", "abd_ablation", "correlation", "attention", "fusion_diagnostics", "report", "study"]
NB_DIR = ROOT / "notebooks"
#: every notebook in notebooks/, by stem, whichever file of the pair exists (the shipped ones and any new one)
ON_DISK = sorted({p.stem for p in NB_DIR.glob("*.ipynb")} | {p.stem for p in NB_DIR.glob("*.py")})
#: cell metadata jupytext keeps out of the script (and tools/sync_notebooks.py strips from the .ipynb)
SESSION_CELL_METADATA = {"execution", "ExecuteTime", "collapsed", "scrolled", "autoscroll", "trusted", "papermill"}
TINY_WORLD = {"ids": 10, "cams": 2, "frames": [6, 8], "distractors": 1, "junk": 0}


def tiny_train_params(world: Path) -> dict:
    return {"root": str(world), "synthetic": TINY_WORLD, "p": 3, "k": 2, "epochs": 1, "steps_per_epoch": 1,
            "eval_every": 1, "progress": False}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from reidlab.data.synthetic import ensure_world

    return ensure_world(tmp_path_factory.mktemp("data") / "tiny", verbose=False, **TINY_WORLD)


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory) -> Path:
    """A results folder with three finished tiny runs, trained in-process (no kernel start-up)."""
    from reidlab.engine import train

    res = tmp_path_factory.mktemp("results")
    for fusion in ("mean", "softmax_cosine", "template_mask"):
        p = {k: v for k, v in tiny_train_params(world).items() if k != "progress"}
        cfg = training_config({**p, "fusion": fusion, "run_id": f"fusion-{fusion}-s0", "seed": 0},
                              results_dir=res)
        assert train(cfg, progress=False).is_finished()
    return res


def _outputs(nb_path: Path) -> list:
    nb = nbformat.read(nb_path, as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _has_png(nb_path: Path) -> bool:
    return any("image/png" in o.get("data", {}) for o in _outputs(nb_path))


# ------------------------------------------------------------------------------------------------ storage


def test_shipped_notebooks_present():
    assert set(NOTEBOOKS) <= set(ON_DISK), sorted(set(NOTEBOOKS) - set(ON_DISK))


@pytest.mark.parametrize("name", ON_DISK)
def test_stored_without_outputs_with_documented_literal_parameters(name):
    path = NB_DIR / f"{name}.ipynb"
    assert path.exists(), f"notebooks/{name}.py has no .ipynb: run `jupytext --sync notebooks/{name}.py`"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), (
        f"notebooks/{name}.ipynb stored with outputs: run `python tools/sync_notebooks.py {name}`")
    first = code[0]
    assert "parameters" in first.metadata.get("tags", [])
    lines = [ln for ln in first.source.splitlines() if ln.strip()]
    declared = notebook_parameters(path)
    assert len(declared) == len(lines), "papermill could not parse every parameter line"
    for ln in lines:  # plain literals only: nothing derived in the parameters cell
        value = ln.split("=", 1)[1].split("  #", 1)[0]
        ast.literal_eval(value.strip())
    for p in declared.values():
        assert p.help, f"{name}: parameter {p.name} has no help text"
        assert p.type in ("int", "float", "str", "bool", "list", "dict"), (p.name, p.type)
    assert nb.metadata["kernelspec"]["name"] == "python3"


def _cells(nb) -> list[tuple[str, str, dict]]:
    return [(c.cell_type, c.source, {k: v for k, v in c.metadata.items() if k not in SESSION_CELL_METADATA})
            for c in nb.cells]


def _first_difference(a: list, b: list) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        for what, u, v in zip(("cell type", "source", "metadata"), x, y):
            if u == v:
                continue
            if what == "source":  # name the first differing line
                ul, vl = u.splitlines() + ["<end>"], v.splitlines() + ["<end>"]
                j = next(j for j, (p, q) in enumerate(zip(ul, vl)) if p != q)
                u, v = f"line {j + 1} {ul[j]!r}", repr(vl[j])
            return f"cell {i} ({x[0]}) differs in {what}: .py has {u}, .ipynb has {v}"
    return f".py has {len(a)} cells, .ipynb has {len(b)}"


def test_notebooks_are_paired_by_jupytext():
    """notebooks/jupytext.toml pairs every NAME.ipynb with a NAME.py percent script (JupyterLab saves both)."""
    from jupytext.config import load_jupytext_config

    for path in (NB_DIR / "new_notebook.ipynb", NB_DIR / "new_notebook.py"):
        config = load_jupytext_config(str(path))  # found as the CLI and JupyterLab find it
        assert config is not None and config.default_formats(str(path)) == "ipynb,py:percent"


@pytest.mark.parametrize("name", ON_DISK)
def test_script_and_notebook_agree(name):
    """The reviewed source is notebooks/NAME.py; the .ipynb papermill runs must hold the same cells."""
    import jupytext

    py, ipynb = NB_DIR / f"{name}.py", NB_DIR / f"{name}.ipynb"
    assert py.exists(), f"notebooks/{name}.ipynb has no paired script: run `jupytext --sync notebooks/{name}.ipynb`"
    assert ipynb.exists(), f"notebooks/{name}.py has no .ipynb: run `jupytext --sync notebooks/{name}.py`"
    script, stored = jupytext.read(py), nbformat.read(ipynb, as_version=4)
    fix = f"run `jupytext --sync notebooks/{name}.py` (the more recently saved file wins)"
    ours, theirs = _cells(script), _cells(stored)
    assert ours == theirs, f"notebooks/{name}: {_first_difference(ours, theirs)}; {fix}"
    ks = script.metadata.get("kernelspec"), stored.metadata.get("kernelspec")
    assert ks[0] == ks[1], f"notebooks/{name}: kernelspec {ks[0]} in the .py, {ks[1]} in the .ipynb; {fix}"


def test_sync_tool_restores_the_stored_pair(tmp_path):
    """What a JupyterLab session leaves behind (outputs, timings, another kernel in both files) is undone by
    tools/sync_notebooks.py, byte for byte; a lone .ipynb gets its script."""
    name = "attention"
    for f in ("jupytext.toml", f"{name}.py", f"{name}.ipynb", "study.ipynb"):
        (tmp_path / f).write_bytes((NB_DIR / f).read_bytes())
    nb = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    code.execution_count = 3
    code.metadata["execution"] = {"iopub.status.busy": "2024-01-01T00:00:00Z"}
    nb.metadata["kernelspec"] = {"name": "reidlab", "display_name": "reidlab (.venv)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.9"}
    nbformat.write(nb, tmp_path / f"{name}.ipynb")
    py = tmp_path / f"{name}.py"
    py.write_text(py.read_text().replace("name: python3", "name: reidlab"))
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "sync_notebooks.py"), str(py),
                        str(tmp_path / "study.ipynb")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for f in (f"{name}.py", f"{name}.ipynb", "study.ipynb", "study.py"):
        assert (tmp_path / f).read_bytes() == (NB_DIR / f).read_bytes(), f


# ------------------------------------------------------------------------------------------------ kernel


def _probe_notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell("x: int = 1  # a number")
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_kernel_runs_this_interpreter(tmp_path):
    # compared inside the kernel: the filed copy rewrites paths inside the project (a venv in the checkout)
    nb = _probe_notebook(tmp_path / "probe.ipynb", f"import sys\nprint(sys.executable == {sys.executable!r})")
    out = run_notebook(nb, {}, output=tmp_path / "out.ipynb", kernel_name=resolve_kernel_name())
    printed = "".join(o.get("text", "") for o in _outputs(out)).strip()
    assert printed == "True"


def test_failing_cell_raises_with_cell_error_and_saves_notebook(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    nb = _probe_notebook(tmp_path / "boom.ipynb", "raise ValueError(f'boom {x}')")
    with pytest.raises(NotebookExecutionError) as ei:
        run_notebook(nb, {"x": 7}, output=tmp_path / "out.ipynb")
    assert ei.value.ename == "ValueError" and ei.value.evalue == "boom 7"
    assert (tmp_path / "out.ipynb").exists()  # saved with the error, for reading
    rc = cli_main(["run", str(nb), "-p", "x", "8", "--output", str(tmp_path / "o2.ipynb"), "--quiet"])
    assert rc == 1
    assert "ValueError: boom 8" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ bad input


def test_bad_parameters_rejected_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    res = tmp_path / "res"
    rc = cli_main(["run", "train_fusion", "--results", str(res), "-p", "fusoin", "softmax_cosine"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown parameter 'fusoin'" in err and "fusion: str = 'mean'" in err and "seq_len: int" in err
    rc = cli_main(["run", "train_fusion", "--results", str(res), "-p", "epochs", "two"])
    assert rc == 2 and "parameter 'epochs': expected int" in capsys.readouterr().err
    rc = cli_main(["run", "train_fusion", "--results", str(res), "-p", "fusion_options", "[1, 2]"])
    assert rc == 2 and "expected dict" in capsys.readouterr().err
    assert not res.exists(), "a rejected run must not create anything"
    assert not list(tmp_path.rglob("*.ipynb"))
    with pytest.raises(ParameterError, match="expected float"):
        run_notebook("train_fusion", {"lr": "fast"}, results_dir=res)
    assert not res.exists()


# ------------------------------------------------------------------------------------------------ execution


def test_train_fusion_via_cli(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = tmp_path / "res"
    args = ["run", "train_fusion", "--results", str(res), "--run-id", "tf-s3", "--quiet",
            "-p", "fusion", "softmax_cosine", "-p", "fusion_options", "{tau: 0.5}", "-p", "seed", "3"]
    for k, v in tiny_train_params(world).items():
        args += ["-p", k, json.dumps(v) if not isinstance(v, str) else v]
    assert cli_main(args) == 0
    run = res / "runs" / "tf-s3"
    executed = run / "notebook.ipynb"
    assert executed.exists() and _has_png(executed)
    assert (run / "figures" / "curves.png").exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"images": 0})  # rebuilt after the notebook's figures
    events.Reload()
    assert "figures/curves" in events.Tags()["images"] and "eval/mAP" in events.Tags()["scalars"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["seed"] == 3 and cfg["model"]["fusion"] == "softmax_cosine"
    assert cfg["model"]["fusion_options"] == {"tau": 0.5}
    model = json.loads((run / "model.json").read_text())
    assert model["fusion"]["class"] == "SoftmaxCosineFusion" and model["fusion"]["options"]["tau"] == 0.5
    params = nbformat.read(executed, as_version=4).metadata["papermill"]["parameters"]
    assert params["run_id"] == "tf-s3" and params["fusion_options"] == {"tau": 0.5}


def test_abd_ablation(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = {**tiny_train_params(world), "branch_dim": 16, "pam": False, "of_name": "so", "max_items": 0,
              "run_id": "abd-s0"}
    out = run_notebook("abd_ablation", params, results_dir=tmp_path / "res")
    run = tmp_path / "res" / "runs" / "abd-s0"
    assert out == run / "notebook.ipynb" and _has_png(out)
    assert (run / "figures" / "correlation.png").exists()
    model = json.loads((run / "model.json").read_text())
    assert model["abd"]["cam"] is True and model["abd"]["pam"] is False and model["abd"]["branch_dim"] == 16
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["loss"]["of"]["name"] == "so" and cfg["loss"]["ow"]["name"] == "svdo"


def test_analysis_notebooks_on_trained_runs(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    figs = tmp_path / "figs"
    common = {"prefix": "fusion-", "figures_dir": str(figs)}
    # the report re-runs the three analysis notebooks itself (nested papermill runs)
    extra = {"correlation": {"max_items": 0, "max_dims": 8},
             "fusion_diagnostics": {"max_tracklets": 3, "taus": [0.1, 1.0]}}
    out = run_notebook("report", {**common, "analysis_parameters": extra}, results_dir=trained)
    assert out == trained / "notebooks" / "report.ipynb" and _has_png(out)
    for name in ("correlation", "attention", "fusion_diagnostics"):
        assert _has_png(trained / "notebooks" / f"{name}.ipynb"), name
    pngs = sorted(p.name for p in figs.glob("*.png"))
    for expected in ("correlation.png", "fusion_weights.png", "attention-template_mask.png", "curves.png",
                     "diag_cosine_vs_distance.png", "diag_weight_floor.png", "diag_corruption_share.png"):
        assert expected in pngs, pngs
    tables = trained / "tables"
    for expected in ("summary.md", "per_epoch.md", "correlation.md", "diagnostics.md",
                     "diagnostics_corruption_share.csv"):
        assert (tables / expected).exists(), expected
    assert "| mean | MeanFusion |" in (tables / "summary.md").read_text()


def test_ranked_lists_notebook_on_a_trained_run(trained, tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    run = trained / "runs" / "fusion-mean-s0"
    out = run_notebook("ranked_lists", {"run_dir": str(run), "queries": 3, "topk": 4, "orders": ["worst", "random"]},
                       results_dir=tmp_path / "r")
    assert out == tmp_path / "r" / "notebooks" / "ranked_lists.ipynb" and _has_png(out)
    for order in ("worst", "random"):
        assert (tmp_path / "r" / "figures" / f"ranked_fusion-mean-s0_{order}.png").stat().st_size > 0
    table = pd.read_csv(tmp_path / "r" / "tables" / "ranked_fusion-mean-s0.csv")
    assert list(table["ap"]) == sorted(table["ap"][table["num_matches"] > 0]) + list(
        table["ap"][table["num_matches"] == 0])  # worst first, queries without a true match last
    final = pd.read_csv(run / "metrics.csv").iloc[-1]
    assert table["ap"][table["num_matches"] > 0].mean() == pytest.approx(final["mAP"], abs=1e-6)


def test_cli_eval_on_trained_checkpoint(trained, capsys):
    ck = trained / "runs" / "fusion-mean-s0" / "checkpoints" / "last.pt"
    assert cli_main(["eval", str(ck)]) == 0
    out = capsys.readouterr().out
    assert "mAP" in out and "Rank1" in out
    assert cli_main(["eval", str(trained / "nope.pt")]) == 2


def test_filed_copy_holds_no_absolute_project_paths(tmp_path, monkeypatch):
    """results_dir reaches the kernel absolute; the filed executed copy stores it (and every other path
    inside the project) relative to the project root. Execution is faked: no kernel starts."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "pyproject.toml").write_text("")
    monkeypatch.chdir(proj)
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('x: int = 1  # a number\nresults_dir: str = "results"  # results folder')
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell("print(results_dir)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, proj / "probe.ipynb")
    png = f"iVBOR{proj}/kept"  # image payloads are never rewritten
    seen = {}

    def fake_execute(src, dst, *, parameters, **kw):  # what papermill records in an executed copy
        seen.update(parameters)
        out = nbformat.read(src, as_version=4)
        inj = nbformat.v4.new_code_cell(f"# Parameters\nresults_dir = {parameters['results_dir']!r}\n")
        inj.metadata["tags"] = ["injected-parameters"]
        out.cells.insert(1, inj)
        out.cells[2].outputs = [
            nbformat.v4.new_output("stream", name="stdout", text=f"{parameters['results_dir']}\n"),
            nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": f"<{proj}/fig.png>"}),
        ]
        out.metadata["papermill"] = {"parameters": parameters, "input_path": src, "output_path": dst}
        nbformat.write(out, dst)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    dest = run_notebook("probe.ipynb", {"x": 2}, results_dir=proj / "res", output=proj / "res" / "out.ipynb",
                        kernel_name="python3")
    assert seen["results_dir"] == str(proj / "res")  # the kernel gets an absolute folder
    text = dest.read_text()
    assert str(proj) + "/kept" in text and text.count(str(proj)) == 1  # only inside the image payload
    filed = nbformat.read(dest, as_version=4)
    pm = filed.metadata["papermill"]
    assert pm["parameters"] == {"x": 2, "results_dir": "res"}
    assert pm["input_path"] == "probe.ipynb" and pm["output_path"] == "res/out.ipynb"
    assert filed.cells[1].source == "# Parameters\nresults_dir = 'res'\n"
    outs = filed.cells[2].outputs
    assert outs[0]["text"] == "res\n" and outs[1]["data"]["text/plain"] == "<fig.png>"
    assert outs[1]["data"]["image/png"] == png


def test_kernel_start_collision_is_retried(tmp_path, monkeypatch):
    """Parallel kernel starts can collide on a port; the runner retries when no cell ran."""
    import reidlab.notebook as rn

    nb = _probe_notebook(tmp_path / "probe.ipynb", "print(x)")
    calls = []

    def fake_execute(src, dst, **kw):
        calls.append(kw["parameters"])
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        nbformat.write(nbformat.read(src, as_version=4), dst)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    monkeypatch.setattr(rn.time, "sleep", lambda s: None)
    out = run_notebook(nb, {"x": 2}, output=tmp_path / "out.ipynb", kernel_name="python3")
    assert out.exists() and len(calls) == 2

    def always_fails(src, dst, **kw):
        raise RuntimeError("Kernel died before replying to kernel_info")

    monkeypatch.setattr(papermill, "execute_notebook", always_fails)
    with pytest.raises(NotebookExecutionError, match="kernel_info"):
        run_notebook(nb, {"x": 2}, output=tmp_path / "out2.ipynb", kernel_name="python3")
