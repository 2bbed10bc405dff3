"""Bring the notebooks/NAME.py + NAME.ipynb pairs into step and store each .ipynb clean.

    python tools/sync_notebooks.py                 # every pair in notebooks/
    python tools/sync_notebooks.py study attention # some: names, or paths of either file of a pair

Per pair: `jupytext --sync` (the inputs of the more recently saved file win, as jupytext decides; a lone
NAME.ipynb gets its NAME.py), then the .ipynb is stored as papermill, `reidlab run` and the tests expect
it: no outputs, no execution counts, no per-session cell metadata (timings, collapsed/scrolled),
kernelspec `python3` (JupyterLab saves the kernel you switched to into both files), language_info
`{"name": "python"}`. When that changed the .ipynb, the .py is synced from it again (kernelspec header).
Plain `jupytext --sync notebooks/NAME.py` is enough after editing only the .py outside JupyterLab.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
#: cell metadata a JupyterLab or papermill session adds that says nothing about the notebook
SESSION_CELL_METADATA = ("execution", "ExecuteTime", "collapsed", "scrolled", "autoscroll", "trusted", "papermill")


def _jupytext_sync(path: Path) -> None:
    from jupytext.cli import jupytext  # the `jupytext` command, in this process

    if jupytext(["--sync", "--quiet", str(path)]) != 0:
        raise SystemExit(f"jupytext --sync {path} failed")


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in SESSION_CELL_METADATA:
            cell.metadata.pop(key, None)
    if nb.metadata.get("kernelspec", {}).get("name") != "python3":
        nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.pop("papermill", None)
    return nb


def sync(stem: Path) -> bool:
    """Sync the pair `stem`.py / `stem`.ipynb; True when the .ipynb had to be cleaned."""
    py, ipynb = stem.with_suffix(".py"), stem.with_suffix(".ipynb")
    _jupytext_sync(py if py.exists() else ipynb)
    before = ipynb.read_text()
    after = nbformat.writes(clean(nbformat.read(ipynb, as_version=4))) + "\n"
    if after == before:
        return False
    ipynb.write_text(after)
    _jupytext_sync(ipynb)  # now the newer file: carries a reset kernelspec into the .py header
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="names or paths (default: every notebook in notebooks/)")
    a = ap.parse_args(argv)
    if a.notebooks:
        stems = [Path(n).with_suffix("") if Path(n).suffix in (".py", ".ipynb") else NOTEBOOKS / n
                 for n in a.notebooks]
    else:
        stems = sorted({p.with_suffix("") for p in NOTEBOOKS.glob("*.ipynb")} |
                       {p.with_suffix("") for p in NOTEBOOKS.glob("*.py")})
    for stem in stems:
        if not (stem.with_suffix(".py").exists() or stem.with_suffix(".ipynb").exists()):
            print(f"{stem}: neither .py nor .ipynb", file=sys.stderr)
            return 2
        cleaned = sync(stem)
        print(f"{stem.name}: in step" + (" (.ipynb cleaned)" if cleaned else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
