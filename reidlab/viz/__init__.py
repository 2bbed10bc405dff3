"""Figures for the notebooks and the main job (matplotlib/seaborn).

Every plotting function returns a `matplotlib.figure.Figure` made with pyplot, so a notebook shows it
inline; `save_figure` writes the PNG next to the run. Headless callers (CLI, sweeps) call
`use_headless_backend()` first; notebooks never do (the kernel's inline backend must stay).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

__all__ = ["save_figure", "use_headless_backend"]


def use_headless_backend() -> None:
    """Switch matplotlib to Agg unless running inside an IPython kernel (where inline must stay)."""
    import matplotlib

    try:
        from IPython import get_ipython

        if get_ipython() is not None and "IPKernelApp" in get_ipython().config:
            return
    except ImportError:
        pass
    if os.environ.get("MPLBACKEND") is None:
        matplotlib.use("Agg")


def save_figure(fig, path: str | Path, *, dpi: int = 120) -> Path:
    """Write `fig` as PNG to `path` atomically (temp file + rename, via reidlab.runs.records); returns path."""
    from reidlab.atomic import atomic_write_bytes

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path
