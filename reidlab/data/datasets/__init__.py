"""Dataset readers for the published on-disk layouts, and the one name -> reader mapping.

Every reader takes the dataset folder (or its parent holding the conventional folder name) and
keyword options, and returns a :class:`reidlab.data.records.ReIDDataset`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from reidlab.data.datasets._common import DatasetFormatError
from reidlab.data.datasets.dukemtmcreid import load_dukemtmcreid
from reidlab.data.datasets.dukemtmcvidreid import load_dukemtmcvidreid
from reidlab.data.datasets.ilidsvid import load_ilidsvid
from reidlab.data.datasets.market1501 import load_market1501
from reidlab.data.datasets.mars import load_mars
from reidlab.data.datasets.msmt17 import load_msmt17
from reidlab.data.datasets.prid2011 import load_prid2011
from reidlab.data.records import ReIDDataset


def load_synthetic(root: str | Path | None = None, *, verbose: bool = True, **options) -> ReIDDataset:
    """Read (generating it if missing) a synthetic world: :func:`reidlab.data.synthetic.load_synthetic`.

    Imported on call so that ``python -m reidlab.data.synthetic`` does not import the module twice.
    """
    from reidlab.data.synthetic import load_synthetic as _load

    return _load(root, verbose=verbose, **options)


DATASETS: dict[str, Callable[..., ReIDDataset]] = {
    "mars": load_mars,
    "dukemtmcvidreid": load_dukemtmcvidreid,
    "ilidsvid": load_ilidsvid,
    "prid2011": load_prid2011,
    "market1501": load_market1501,
    "dukemtmcreid": load_dukemtmcreid,
    "msmt17": load_msmt17,
    "synthetic": load_synthetic,
}

#: "video" or "image" per dataset name, without loading anything
DATASET_KINDS: dict[str, str] = {
    "mars": "video", "dukemtmcvidreid": "video", "ilidsvid": "video", "prid2011": "video",
    "market1501": "image", "dukemtmcreid": "image", "msmt17": "image", "synthetic": "video",
}


def build_dataset(name: str, root: str | Path, *, verbose: bool = True, **options) -> ReIDDataset:
    """Load dataset ``name`` from ``root`` (its folder, or a parent holding the conventional folder name).

    ``options`` are the reader's keyword options, e.g. ``mars_gallery="all"`` for MARS, ``split_id`` for
    iLIDS-VID/PRID2011, ``include_val`` for MSMT17, world knobs for ``synthetic``. Unknown names or
    options raise ValueError listing what is accepted.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}")
    reader = DATASETS[name]
    params = inspect.signature(reader).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_any:
        accepted = [k for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and k != "verbose"]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(f"dataset {name!r} does not accept option(s) {unknown}; accepted: {accepted}")
    return reader(root, verbose=verbose, **options)


__all__ = ["DATASETS", "DATASET_KINDS", "build_dataset", "DatasetFormatError"]
