"""DukeMTMC-VideoReID (Wu et al., "Exploit the Unknown Gradually", CVPR 2018; Ristani et al., ECCVW 2016).

Published layout (``root`` is ``DukeMTMC-VideoReID/``, or a parent holding it, or ``dukemtmc-vidreid/``
holding it, as torchreid expects)::

    DukeMTMC-VideoReID/
      train/<pid:4>/<tracklet:4>/<pid:4>C<cam>F<frame:4>X<video frame>.jpg   e.g. train/0001/0003/0001C6F0099X30823.jpg
      query/<pid>/<tracklet>/...
      gallery/<pid>/<tracklet>/...       # includes the 408 distractor identities

Underscore-separated names (``0001_C6_F0099_X30823.jpg``) found in some copies are accepted too.
Frames are ordered by the in-tracklet frame number ``F``. Query and gallery are the release's folders.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

from reidlab.data.datasets._common import DatasetFormatError, finish, list_dirs, list_images, locate_root, require
from reidlab.data.records import ReIDDataset, Tracklet

LAYOUT = """\
  dukemtmc-vidreid/DukeMTMC-VideoReID/
    train/<pid:4>/<tracklet:4>/<pid:4>C<cam>F<frame:4>X<video frame>.jpg   e.g. train/0001/0003/0001C6F0099X30823.jpg
    query/<pid:4>/<tracklet:4>/...
    gallery/<pid:4>/<tracklet:4>/..."""

NAME_RE = re.compile(r"^(\d+)_?C(\d+)_?F(\d+)_?X(\d+)\.jpe?g$", re.IGNORECASE)


def _read_split(split_dir: Path) -> list[Tracklet]:
    out = []
    for pdir in list_dirs(split_dir):
        if not pdir.name.isdigit():
            raise DatasetFormatError(f"malformed person folder {pdir}: expected a numeric pid such as 0001")
        pid = int(pdir.name)
        for tdir in list_dirs(pdir):
            frames = []
            pids, cams = set(), set()
            for img in list_images(tdir):
                m = NAME_RE.match(img.name)
                if m is None:
                    raise DatasetFormatError(
                        f"malformed DukeMTMC-VideoReID image name {img}: expected <pid:4>C<cam>F<frame:4>X<n>.jpg"
                    )
                pids.add(int(m.group(1)))
                cams.add(int(m.group(2)))
                frames.append((int(m.group(3)), img))
            if not frames:
                warnings.warn(f"DukeMTMC-VideoReID: empty tracklet folder {tdir} skipped", stacklevel=3)
                continue
            if pids != {pid} or len(cams) != 1:
                raise DatasetFormatError(
                    f"tracklet {tdir} mixes persons or cameras: folder pid {pid}, "
                    f"image names have pids {sorted(pids)} cameras {sorted(cams)}"
                )
            frames.sort()
            cam = cams.pop()
            if cam < 1:
                raise DatasetFormatError(f"tracklet {tdir}: camera ids are 1-based, got C{cam}")
            out.append(Tracklet(tuple(str(p) for _, p in frames), pid, cam - 1))
    return out


def load_dukemtmcvidreid(root: str | Path, *, min_seq_len: int = 0, verbose: bool = True) -> ReIDDataset:
    """Read DukeMTMC-VideoReID. ``min_seq_len`` drops short *train* tracklets only."""
    base = locate_root(root, ["DukeMTMC-VideoReID", "dukemtmc-vidreid/DukeMTMC-VideoReID"],
                       ["train", "query", "gallery"], "DukeMTMC-VideoReID", LAYOUT)
    dirs = {s: require(base / s, f"DukeMTMC-VideoReID {s} folder", LAYOUT, is_dir=True)
            for s in ("train", "query", "gallery")}
    train = [t for t in _read_split(dirs["train"]) if len(t.paths) >= min_seq_len]
    query = _read_split(dirs["query"])
    gallery = _read_split(dirs["gallery"])
    where = {s: str(d) for s, d in dirs.items()}
    return finish("dukemtmcvidreid", "video", train, query, gallery, {"min_seq_len": min_seq_len}, where, verbose)
