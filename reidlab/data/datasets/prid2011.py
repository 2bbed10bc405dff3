"""PRID2011 (Hirzer et al., "Person Re-Identification by Descriptive and Discriminative Classification",
SCIA 2011), multi-shot sequences.

Layout as the toolboxes use it (``root`` is ``prid2011/`` or its parent)::

    prid2011/
      splits_prid2011.json        [{"train": ["person_0001", ...], "test": [...]}, ...]   (10 splits)
      prid_2011/multi_shot/cam_a/person_0001/0001.png ...
      prid_2011/multi_shot/cam_b/person_0001/0001.png ...

The split file (distributed with the iLIDS-VID protocol, 178 persons with long enough sequences, 89/89)
is not part of the PRID release; it names person folders present in both cameras. Query = cam_a
tracklets of the test persons, gallery = cam_b. Original pid = the person number.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from reidlab.data.datasets._common import DatasetFormatError, finish, list_images, locate_root, missing, require
from reidlab.data.records import ReIDDataset, Tracklet

LAYOUT = """\
  prid2011/
    splits_prid2011.json     list of {"train": [person dirs], "test": [person dirs]}
    prid_2011/multi_shot/cam_a/person_0001/0001.png ...
    prid_2011/multi_shot/cam_b/person_0001/0001.png ..."""

NAME_RE = re.compile(r"^(\d+)\.png$", re.IGNORECASE)
PERSON_RE = re.compile(r"^person_(\d+)$")


def _tracklet(pdir: Path, camid: int) -> Tracklet:
    if not pdir.is_dir():
        raise missing(pdir, "PRID2011 person folder named by the split file", LAYOUT)
    pm = PERSON_RE.match(pdir.name)
    if pm is None:
        raise DatasetFormatError(f"malformed PRID2011 person folder {pdir}: expected person_NNNN")
    frames = []
    for img in list_images(pdir):
        m = NAME_RE.match(img.name)
        if m is None:
            raise DatasetFormatError(f"malformed PRID2011 image name {img}: expected NNNN.png")
        frames.append((int(m.group(1)), img))
    if not frames:
        raise DatasetFormatError(f"PRID2011 person folder {pdir} holds no NNNN.png frames")
    frames.sort()
    return Tracklet(tuple(str(p) for _, p in frames), int(pm.group(1)), camid)


def load_prid2011(root: str | Path, *, split_id: int = 0, verbose: bool = True) -> ReIDDataset:
    """Read PRID2011 (multi-shot) with split ``split_id`` of ``splits_prid2011.json``."""
    base = locate_root(root, ["prid2011", "PRID2011"], ["splits_prid2011.json", "prid_2011"], "PRID2011", LAYOUT)
    split_p = require(base / "splits_prid2011.json", "PRID2011 split file", LAYOUT)
    shot = base / "prid_2011" / "multi_shot"
    cams = [require(shot / c, f"PRID2011 {c} folder", LAYOUT, is_dir=True) for c in ("cam_a", "cam_b")]
    try:
        splits = json.loads(split_p.read_text())
    except json.JSONDecodeError as e:
        raise DatasetFormatError(f"{split_p}: not valid JSON ({e})") from e
    if not isinstance(splits, list) or not all(isinstance(s, dict) and "train" in s and "test" in s for s in splits):
        raise DatasetFormatError(f"{split_p}: expected a list of {{'train': [...], 'test': [...]}} splits")
    if not 0 <= split_id < len(splits):
        raise ValueError(f"split_id must be in 0..{len(splits) - 1} for {split_p}, got {split_id}")
    split = splits[split_id]
    overlap = set(split["train"]) & set(split["test"])
    if overlap:
        raise DatasetFormatError(f"{split_p}: split {split_id} has persons in both train and test: {sorted(overlap)[:5]}")
    train = [_tracklet(cams[c] / p, c) for p in split["train"] for c in (0, 1)]
    query = [_tracklet(cams[0] / p, 0) for p in split["test"]]
    gallery = [_tracklet(cams[1] / p, 1) for p in split["test"]]
    where = {"train": str(split_p), "query": str(split_p), "gallery": str(split_p)}
    return finish("prid2011", "video", train, query, gallery, {"split_id": split_id}, where, verbose)
