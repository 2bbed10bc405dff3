"""'did you mean …?' for a mistyped name (parameter, config key, option, registry entry).

The lowest layer of the package: imports nothing from reidlab, so every module can use it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["close_matches", "did_you_mean"]


def close_matches(name: str, choices: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` entries of ``choices`` that look like ``name`` (difflib ratio ≥ ``cutoff``; a case-only
    difference always counts), best first."""
    pool = [str(c) for c in choices]
    folded = [c for c in pool if c.lower() == str(name).lower() and c != name]
    rest = difflib.get_close_matches(str(name), pool, n=n, cutoff=cutoff)
    return list(dict.fromkeys(folded + rest))[:n]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` (or ``'x' or 'y'``) when ``name`` resembles some of ``choices``, else ``""``:
    meant to be appended to an error message that already says what is wrong."""
    hits = close_matches(name, choices)
    if not hits:
        return ""
    return " (did you mean " + " or ".join(repr(h) for h in hits) + "?)"
