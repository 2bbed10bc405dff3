"""Cached arrays (e.g. per-frame features of a trained trunk) kept in a run's folder, keyed by what made them.

A cache file is one ``.npz`` holding the arrays and, under ``__key__``, the JSON of the key it was built
for (checkpoint digest, dataset fingerprint, extraction settings). It is reused only when that key equals
the one asked for, so a retrained checkpoint or a regenerated dataset invalidates it; it is written
atomically (temp file + rename), so a killed job never leaves a half-written cache that looks valid.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from reidlab.atomic import atomic_write_bytes

__all__ = ["file_digest", "cached_arrays", "read_cached_key"]

_KEY = "__key__"


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _key_json(key: Mapping[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def read_cached_key(path: str | Path) -> dict | None:
    """The key a cache file was built for, or None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z[_KEY]))
    except (OSError, KeyError, ValueError):
        return None


def cached_arrays(path: str | Path, key: Mapping[str, Any],
                  build: Callable[[], Mapping[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], bool]:
    """Arrays stored at ``path`` for ``key``; built with ``build()`` and stored when missing or stale.

    Returns ``(arrays, built)`` — ``built`` is True when ``build`` ran (cache miss or key change).
    """
    path = Path(path)
    want = _key_json(key)
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z[_KEY]) == want:
                    return {k: z[k] for k in z.files if k != _KEY}, False
        except (OSError, KeyError, ValueError):
            pass  # unreadable or foreign file: rebuild it
    arrays = {k: np.asarray(v) for k, v in build().items()}
    if _KEY in arrays:
        raise ValueError(f"array name {_KEY!r} is reserved for the cache key")
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{_KEY: np.asarray(want)})
    atomic_write_bytes(path, buf.getvalue())
    return arrays, True
