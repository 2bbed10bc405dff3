"""Module layering: reidlab.atomic sits below everything, reidlab.config below the run records."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _reidlab_modules_after(statement: str) -> list[str]:
    """The reidlab modules loaded by ``statement`` in a fresh interpreter (nothing else imported first)."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('reidlab'))))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_config_does_not_import_the_run_records(tmp_path):
    # writing a config file too: it used to import reidlab.runs.records lazily for its atomic writer
    target = tmp_path / "c.json"
    mods = _reidlab_modules_after(f"import reidlab.config\nreidlab.config.RunConfig().to_file({str(target)!r})")
    assert target.is_file() and "reidlab.config" in mods
    assert "reidlab.runs.records" not in mods and "reidlab.runs" not in mods, mods


def test_atomic_imports_no_other_reidlab_module():
    assert _reidlab_modules_after("import reidlab.atomic") == ["reidlab", "reidlab.atomic"]
    # nor lazily, inside a function
    tree = ast.parse((ROOT / "reidlab" / "atomic.py").read_text(encoding="utf-8"))
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level]
    relative = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
    assert not relative and not [m for m in imported if m.split(".")[0] == "reidlab"], imported


def test_records_still_export_the_atomic_writers():
    from reidlab import atomic
    from reidlab.runs import records

    for name in ("_fsync_dir", "_json_default", "atomic_write_bytes", "atomic_write_text", "atomic_write_json",
                 "atomic_torch_save"):  # fmt: skip
        assert getattr(records, name) is getattr(atomic, name), name
