"""The corruption ground-truth sidecar written next to a MARS-layout synthetic world.

``info/corruption.json``::

    {"format": "reidlab-corruption/1",
     "kinds": ["occluder", "blur", "misalign", "foreign_patch"],
     "rate": 0.2,                                   # requested per-frame corruption rate
     "frames": {"0001C1T0001F004.jpg": {"kind": "blur", ...parameters...}, ...}}

Only corrupted frames are listed; every other frame of the world is clean. Keys are MARS image
names (unique within a MARS release), so the file is independent of folder locations.
"""

from __future__ import annotations

import json
from pathlib import Path

from reidlab.data.records import CORRUPTION_KINDS

SIDECAR_NAME = "corruption.json"
SIDECAR_FORMAT = "reidlab-corruption/1"


def read_sidecar(path: str | Path) -> dict[str, str]:
    """Map image name -> corruption kind for the corrupted frames listed in ``path``.

    Raises ValueError naming the file when it is not a corruption sidecar or names an unknown kind.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT or not isinstance(data.get("frames"), dict):
        raise ValueError(f"{path}: not a corruption sidecar (expected {{'format': '{SIDECAR_FORMAT}', 'frames': {{...}}}})")
    out: dict[str, str] = {}
    for name, rec in data["frames"].items():
        kind = rec.get("kind") if isinstance(rec, dict) else rec
        if kind not in CORRUPTION_KINDS:
            raise ValueError(f"{path}: frame {name} has unknown corruption kind {kind!r}; expected one of {CORRUPTION_KINDS}")
        out[name] = kind
    return out
