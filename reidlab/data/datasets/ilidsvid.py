"""iLIDS-VID (Wang et al., "Person Re-Identification by Video Ranking", ECCV 2014).

Published layout (``root`` is ``ilids-vid/``, the folder holding the release, or its parent)::

    ilids-vid/
      i-LIDS-VID/sequences/cam1/person001/cam1_person001_00317.png ...
      i-LIDS-VID/sequences/cam2/person001/cam2_person001_00001.png ...
      train-test people splits/train_test_splits_ilidsvid.mat     (variable ls_set: 10 x 300)

``ls_set`` row ``split_id`` lists 1-based indices into the sorted person folders; as in the toolboxes
(torchreid, and the split files' authors' usage) the first half of a row is the test set, the second
half the training set. Test protocol: query = camera-1 tracklets, gallery = camera-2 tracklets of the
test persons. Original pids are the person numbers (``person001`` -> 1).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from reidlab.data.datasets._common import DatasetFormatError, finish, list_dirs, list_images, locate_root, require
from reidlab.data.datasets.mars import _read_mat
from reidlab.data.records import ReIDDataset, Tracklet

LAYOUT = """\
  ilids-vid/
    i-LIDS-VID/sequences/cam1/person001/cam1_person001_00317.png ...
    i-LIDS-VID/sequences/cam2/person001/cam2_person001_00001.png ...
    train-test people splits/train_test_splits_ilidsvid.mat   (ls_set: splits x persons, 1-based indices)"""

NAME_RE = re.compile(r"^cam(\d)_person(\d+)_(\d+)\.png$", re.IGNORECASE)
PERSON_RE = re.compile(r"^person(\d+)$")


def _tracklet(pdir: Path, cam: int) -> Tracklet:
    pm = PERSON_RE.match(pdir.name)
    if pm is None:
        raise DatasetFormatError(f"malformed iLIDS-VID person folder {pdir}: expected personNNN")
    pid = int(pm.group(1))
    frames = []
    for img in list_images(pdir):
        m = NAME_RE.match(img.name)
        if m is None:
            raise DatasetFormatError(f"malformed iLIDS-VID image name {img}: expected cam<c>_person<NNN>_<frame>.png")
        if int(m.group(1)) != cam or int(m.group(2)) != pid:
            raise DatasetFormatError(
                f"tracklet {pdir} mixes persons or cameras: {img.name} is camera {m.group(1)} person {m.group(2)}, "
                f"the folder is camera {cam} person {pid}"
            )
        frames.append((int(m.group(3)), img))
    if not frames:
        raise DatasetFormatError(f"iLIDS-VID tracklet folder {pdir} holds no cam{cam}_person*_*.png frames")
    frames.sort()
    return Tracklet(tuple(str(p) for _, p in frames), pid, cam - 1)


def load_ilidsvid(root: str | Path, *, split_id: int = 0, verbose: bool = True) -> ReIDDataset:
    """Read iLIDS-VID with split ``split_id`` (0-based row of ``ls_set``)."""
    base = locate_root(root, ["ilids-vid", "iLIDS-VID"], ["i-LIDS-VID", "train-test people splits"], "iLIDS-VID",
                       LAYOUT)
    seq = base / "i-LIDS-VID" / "sequences"
    cam_dirs = [require(seq / f"cam{c}", f"iLIDS-VID camera {c} folder", LAYOUT, is_dir=True) for c in (1, 2)]
    split_p = require(base / "train-test people splits" / "train_test_splits_ilidsvid.mat", "iLIDS-VID split file",
                      LAYOUT)
    ls_set = _read_mat(split_p, "ls_set")
    if ls_set.ndim != 2 or ls_set.shape[1] % 2:
        raise DatasetFormatError(f"{split_p}: ls_set must be splits x persons with an even number of persons, "
                                 f"got shape {ls_set.shape}")
    if not 0 <= split_id < ls_set.shape[0]:
        raise ValueError(f"split_id must be in 0..{ls_set.shape[0] - 1} for {split_p}, got {split_id}")

    persons = [p.name for p in list_dirs(cam_dirs[0])]
    persons2 = [p.name for p in list_dirs(cam_dirs[1])]
    if persons != persons2:
        only = sorted(set(persons) ^ set(persons2))[:5]
        raise DatasetFormatError(f"iLIDS-VID: cam1 and cam2 must hold the same person folders; differing: {only}")
    row = np.asarray(ls_set[split_id]).astype(np.int64)
    if row.min() < 1 or row.max() > len(persons) or len(set(row.tolist())) != row.size:
        raise DatasetFormatError(
            f"{split_p}: ls_set row {split_id} must hold distinct 1-based indices into the {len(persons)} "
            f"person folders, got range {row.min()}..{row.max()}"
        )
    half = row.size // 2
    test_persons = [persons[i - 1] for i in sorted(row[:half].tolist())]
    train_persons = [persons[i - 1] for i in sorted(row[half:].tolist())]

    train = [_tracklet(cam_dirs[c] / p, c + 1) for p in train_persons for c in (0, 1)]
    query = [_tracklet(cam_dirs[0] / p, 1) for p in test_persons]
    gallery = [_tracklet(cam_dirs[1] / p, 2) for p in test_persons]
    where = {"train": str(split_p), "query": str(cam_dirs[0]), "gallery": str(cam_dirs[1])}
    return finish("ilidsvid", "video", train, query, gallery, {"split_id": split_id}, where, verbose)
