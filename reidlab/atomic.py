"""Atomic file writers: temp file in the same folder, fsync, ``os.replace``.

A kill at any moment leaves either the old or the new version of a file, never a torn one. This module
sits below everything else in reidlab (it imports no other reidlab module), so the config, the run
records, the figures and the tables can all write through it without importing each other.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_torch_save"]


def _fsync_dir(folder: Path) -> None:
    # makes the rename itself durable; not supported everywhere (e.g. Windows), where it is skipped
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``.

    The parent folder is created if needed. On any error the temp file is removed and the previous
    content of ``path`` (if any) is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Atomic text write (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode(encoding))


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy / torch scalars and arrays
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"object of type {type(o).__name__} is not JSON serialisable")


def atomic_write_json(path: str | Path, obj: Any, *, indent: int = 2) -> Path:
    """Atomic JSON write; numpy/torch values are converted, NaN is refused (not valid JSON)."""
    text = json.dumps(obj, indent=indent, default=_json_default, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to memory, then an atomic write, so a checkpoint is never half-written."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())

