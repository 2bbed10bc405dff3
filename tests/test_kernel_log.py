"""The kernel process's own stderr (e.g. ipykernel's TCP-transport warning) goes to a log file beside the
executed notebook, not to the terminal of `reidlab run` / the main job; cells' outputs are unaffected."""

import nbformat

from reidlab.notebook import kernel_log_path, run_notebook


def _tiny_notebook(path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('x: int = 1  # a number')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("import sys\nprint('out', x)\nprint('err', x, file=sys.stderr)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_kernel_stderr_goes_to_log_not_terminal(tmp_path, capfd):
    nb = _tiny_notebook(tmp_path / "tiny.ipynb")
    out = run_notebook(nb, {"x": 7}, results_dir=tmp_path / "res")
    captured = capfd.readouterr()
    log = kernel_log_path(out)
    assert log == out.with_name("tiny.kernel.log") and log.is_file()
    assert "kernel start" in log.read_text()
    assert "without encryption" not in captured.err + captured.out
    cells = nbformat.read(out, as_version=4).cells
    texts = "".join(o.get("text", "") for o in cells[-1].outputs)
    assert "out 7" in texts and "err 7" in texts  # the cell's own stdout/stderr still land in the notebook
    run_notebook(nb, {"x": 8}, results_dir=tmp_path / "res")
    assert log.read_text().count("kernel start") == 2  # appended, earlier runs' logs kept
