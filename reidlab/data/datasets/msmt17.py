"""MSMT17 (Wei et al., "Person Transfer GAN to Bridge Domain Gap for Person Re-Identification", CVPR 2018).

Published layout (``root`` is ``MSMT17_V1/`` (or ``MSMT17_V2/``), or ``msmt17/`` holding it, or a parent)::

    MSMT17_V1/
      train/0000/0000_000_01_0303morning_0015_0.jpg ...   <pid>_<index>_<cam:2>_<date+time>_..._.jpg
      test/0000/...
      list_train.txt  list_val.txt  list_query.txt  list_gallery.txt      "<relative path> <pid>" per line

V2 names the image folders ``mask_train_v2`` / ``mask_test_v2``. Cameras are 1..15 in the names.
``include_val=True`` adds list_val to training (torchreid's ``combineall``-style choice; the standard
protocol trains on list_train only). The list pids are the release's pids (train 0..1040, test 0..3059).
"""

from __future__ import annotations

from pathlib import Path

from reidlab.data.datasets._common import DatasetFormatError, finish, locate_root, require
from reidlab.data.records import ReIDDataset, Sample

LAYOUT = """\
  msmt17/MSMT17_V1/
    train/<pid:4>/<pid:4>_<idx:3>_<cam:2>_<date+time>_<n>_<n>.jpg    (V2: mask_train_v2/)
    test/<pid:4>/...                                                (V2: mask_test_v2/)
    list_train.txt  list_val.txt  list_query.txt  list_gallery.txt  ("<pid:4>/<name>.jpg <pid>" per line)"""

IMAGE_DIRS = (("train", "test"), ("mask_train_v2", "mask_test_v2"))


def _read_list(list_path: Path, image_dir: Path) -> list[Sample]:
    out = []
    for lineno, line in enumerate(list_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DatasetFormatError(f"{list_path} line {lineno}: expected '<relative path> <pid>', got {line!r}")
        rel, pid = parts[0], int(parts[1])
        fields = Path(rel).name.split("_")
        if len(fields) < 4 or not fields[2].isdigit():
            raise DatasetFormatError(
                f"malformed MSMT17 image name {rel} ({list_path} line {lineno}): "
                "expected <pid>_<index>_<cam:2>_<date+time>_..._.jpg"
            )
        cam = int(fields[2])
        if not 1 <= cam <= 15:
            raise DatasetFormatError(f"{rel} ({list_path} line {lineno}): camera {cam} outside 1..15")
        out.append(Sample(str(image_dir / rel), pid, cam - 1))
    return out


def load_msmt17(root: str | Path, *, include_val: bool = False, verbose: bool = True) -> ReIDDataset:
    """Read MSMT17 (V1 or V2 layout)."""
    base = locate_root(root, ["MSMT17_V1", "MSMT17_V2", "msmt17/MSMT17_V1", "msmt17/MSMT17_V2"],
                       ["list_train.txt", "list_query.txt"], "MSMT17", LAYOUT)
    lists = {s: require(base / f"list_{s}.txt", f"MSMT17 {s} list", LAYOUT)
             for s in ("train", "val", "query", "gallery")}
    for train_dir_name, test_dir_name in IMAGE_DIRS:
        if (base / train_dir_name).is_dir():
            break
    else:
        train_dir_name, test_dir_name = IMAGE_DIRS[0]
    train_dir = require(base / train_dir_name, "MSMT17 train image folder (train/ or mask_train_v2/)", LAYOUT,
                        is_dir=True)
    test_dir = require(base / test_dir_name, "MSMT17 test image folder (test/ or mask_test_v2/)", LAYOUT,
                       is_dir=True)
    train = _read_list(lists["train"], train_dir)
    if include_val:
        train += _read_list(lists["val"], train_dir)
    query = _read_list(lists["query"], test_dir)
    gallery = _read_list(lists["gallery"], test_dir)
    for records, lst in ((train, lists["train"]), (query, lists["query"]), (gallery, lists["gallery"])):
        # one stat per list catches a wrong image folder early without stat-ing 126k files
        if records and not Path(records[0].path).is_file():
            raise FileNotFoundError(f"MSMT17 image listed first in {lst} not found: expected {records[0].path}\n"
                                    f"Expected layout:\n{LAYOUT}")
    where = {"train": str(lists["train"]), "query": str(lists["query"]), "gallery": str(lists["gallery"])}
    return finish("msmt17", "image", train, query, gallery, {"include_val": include_val}, where, verbose)
