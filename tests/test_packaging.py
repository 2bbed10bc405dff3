"""Packaging: pyproject declares the runtime dependencies (so `pip install .` pulls them), equal to
requirements.txt less the test runner; the wheel carries the package, the console script and the notebooks."""

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _name(req: str) -> str:
    return re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].lower()


def test_pyproject_dependencies_equal_requirements_less_test_runner():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    test_deps = project["optional-dependencies"]["test"]
    assert sorted(deps + test_deps) == sorted(_requirements()), \
        "pyproject.toml's dependencies (+ the 'test' extra) and requirements.txt differ: keep them equal"
    assert "pytest" not in {_name(d) for d in deps}
    assert project["scripts"]["reidlab"] == "reidlab.cli:main"


def test_wheel_carries_package_script_and_notebooks(tmp_path):
    src = tmp_path / "src"  # a copy: building in the tree would leave build/ behind
    src.mkdir()
    for part in ("pyproject.toml", "README.md", "reidlab", "notebooks", "sweeps", "recipes"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy2
        copy(ROOT / part, src / part, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                         if (ROOT / part).is_dir() else {}))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(src)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("reidlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "reidlab/cli.py" in names and "reidlab/suggest.py" in names
    shipped = {Path(n).name for n in names if "/share/reidlab/notebooks/" in n}
    assert {p.name for p in (ROOT / "notebooks").glob("*.ipynb")} <= shipped
    recipes = {Path(n).name for n in names if "/share/reidlab/recipes/" in n}
    assert {p.name for p in (ROOT / "recipes").glob("*.yaml")} == recipes and recipes
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [ln.split(":", 1)[1].strip() for ln in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
                if ln.startswith("Requires-Dist:") and "extra ==" not in ln]
    assert {_name(r) for r in requires} == {_name(r) for r in _requirements()} - {"pytest"}
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "reidlab = reidlab.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
