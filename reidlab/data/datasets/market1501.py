"""Market-1501 (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015) and the
shared reader for Market-style image folders (DukeMTMC-reID uses the same layout).

Published layout (``root`` is ``Market-1501-v15.09.15/``, or ``market1501/`` holding it, or a parent)::

    Market-1501-v15.09.15/
      bounding_box_train/0002_c1s1_000451_03.jpg     <pid:4>_c<cam>s<seq>_<frame:6>_<box:2>.jpg
      query/...
      bounding_box_test/...     pid -1 = junk (dropped), pid 0000 = distractor (kept in the gallery)
"""

from __future__ import annotations

import re
from pathlib import Path

from reidlab.data.datasets._common import DatasetFormatError, finish, list_images, locate_root, require
from reidlab.data.records import ReIDDataset, Sample

LAYOUT = """\
  market1501/Market-1501-v15.09.15/
    bounding_box_train/<pid:4>_c<cam>s<seq>_<frame:6>_<box:2>.jpg   e.g. 0002_c1s1_000451_03.jpg
    query/...
    bounding_box_test/...   (pid -1 junk, 0000 distractors)"""

NAME_RE = re.compile(r"^(-1|\d+)_c(\d+)s\d+_\d+_\d+\.jpe?g$", re.IGNORECASE)
FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def read_image_folder(folder: Path, name_re: re.Pattern, dataset: str, expected: str, max_cam: int) -> list[Sample]:
    """Samples of one Market-style folder, junk (pid -1) dropped, cameras 0-based."""
    out = []
    for img in list_images(folder):
        m = name_re.match(img.name)
        if m is None:
            raise DatasetFormatError(f"malformed {dataset} image name {img}: expected {expected}")
        pid, cam = int(m.group(1)), int(m.group(2))
        if not 1 <= cam <= max_cam:
            raise DatasetFormatError(f"{img}: camera c{cam} outside 1..{max_cam} for {dataset}")
        if pid == -1:
            continue
        out.append(Sample(str(img), pid, cam - 1))
    return out


def load_image_folders(root: str | Path, *, name: str, folder_names: list[str], name_re: re.Pattern,
                       expected: str, max_cam: int, layout: str, verbose: bool) -> ReIDDataset:
    base = locate_root(root, folder_names, list(FOLDERS.values()), name, layout)
    dirs = {s: require(base / f, f"{name} {f} folder", layout, is_dir=True) for s, f in FOLDERS.items()}
    splits = {s: read_image_folder(d, name_re, name, expected, max_cam) for s, d in dirs.items()}
    # distractors (pid 0) are not an identity to learn
    train = [s for s in splits["train"] if s.pid > 0]
    where = {s: str(d) for s, d in dirs.items()}
    return finish(name, "image", train, splits["query"], splits["gallery"], {}, where, verbose)


def load_market1501(root: str | Path, *, verbose: bool = True) -> ReIDDataset:
    """Read Market-1501."""
    return load_image_folders(
        root, name="market1501",
        folder_names=["Market-1501-v15.09.15", "market1501", "market1501/Market-1501-v15.09.15", "Market-1501"],
        name_re=NAME_RE, expected="<pid:4>_c<cam>s<seq>_<frame:6>_<box:2>.jpg", max_cam=6, layout=LAYOUT,
        verbose=verbose,
    )
