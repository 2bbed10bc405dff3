"""MARS (Zheng et al., "MARS: A Video Benchmark for Large-Scale Person Re-identification", ECCV 2016).

Published layout (``root`` is this folder, or its parent holding ``mars/``)::

    mars/
      bbox_train/0001/0001C1T0001F001.jpg ...     # <pid:4>C<cam>T<tracklet:4>F<frame:3>.jpg
      bbox_test/0000/..., bbox_test/00-1/...      # 0000 = distractors, 00-1 = junk
      info/train_name.txt, info/test_name.txt     # one image name per line
      info/tracks_train_info.mat  (variable track_train_info)  rows: start, end, pid, camid
      info/tracks_test_info.mat   (variable track_test_info)   (1-based, inclusive row indices
      info/query_IDX.mat          (variable query_IDX)          into the name lists; camid 1-based)

Protocol: junk tracklets (pid -1) are dropped everywhere; distractors (pid 0) stay in the gallery and
are dropped from train. Query = the rows listed by ``query_IDX`` (1-based). Gallery convention
``mars_gallery``:

- ``"remaining"``: every other non-junk test tracklet (torchreid; Gao & Nevatia 2018). About 140 MARS
  queries then have no cross-camera match and are skipped by the evaluation;
- ``"all"``: every non-junk test tracklet, the queries included (the MARS release's MATLAB evaluation,
  AP3D/TCLNet/PSTA/TF-CLIP); the same-camera rule then removes the query itself.

A synthetic world written by :mod:`reidlab.data.synthetic` has the same layout plus ``info/world.json``
and the corruption ground truth ``info/corruption.json``, which is attached as ``Tracklet.corruption``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import scipy.io

from reidlab.data.datasets._common import DatasetFormatError, finish, locate_root, require
from reidlab.data.records import ReIDDataset, Tracklet
from reidlab.data.sidecar import SIDECAR_NAME, read_sidecar

LAYOUT = """\
  mars/
    bbox_train/<pid:4>/<pid:4>C<cam>T<tracklet:4>F<frame:3>.jpg   e.g. bbox_train/0001/0001C1T0001F001.jpg
    bbox_test/<pid:4 | 0000 distractor | 00-1 junk>/...
    info/train_name.txt  info/test_name.txt            (one image name per line)
    info/tracks_train_info.mat  info/tracks_test_info.mat  (N x 4: start, end, pid, camid; 1-based)
    info/query_IDX.mat                                  (1-based rows of tracks_test_info)"""

NAME_RE = re.compile(r"^(00-1|-?\d+)C(\d+)T(\d+)F(\d+)\.(?:jpg|jpeg|png)$", re.IGNORECASE)
GALLERY_MODES = ("remaining", "all")


def parse_name(name: str, source: Path | str) -> tuple[int, int]:
    """(pid, 1-based camid) from a MARS image name; ValueError naming the file when malformed."""
    m = NAME_RE.match(name)
    if m is None:
        raise DatasetFormatError(
            f"malformed MARS image name {name!r} in {source}: expected <pid:4>C<cam>T<tracklet:4>F<frame:3>.jpg "
            "(e.g. 0001C1T0001F001.jpg)"
        )
    pid = -1 if m.group(1) == "00-1" else int(m.group(1))
    return pid, int(m.group(2))


def _read_names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _read_mat(path: Path, key: str) -> np.ndarray:
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises several types for garbage input
        raise DatasetFormatError(f"cannot read MATLAB file {path}: {e}") from e
    if key in mat:
        return np.asarray(mat[key])
    variables = [k for k in mat if not k.startswith("__")]
    if len(variables) == 1:  # some redistributions renamed the variable
        return np.asarray(mat[variables[0]])
    raise DatasetFormatError(f"{path}: expected a variable named {key!r}, found {variables}")


def _track_info(path: Path, key: str) -> np.ndarray:
    info = _read_mat(path, key)
    if info.ndim != 2 or info.shape[1] < 4:
        raise DatasetFormatError(f"{path}: {key} must be an N x 4 array (start, end, pid, camid), got shape {info.shape}")
    if not np.all(np.isfinite(info)) or not np.all(info == np.round(info)):
        raise DatasetFormatError(f"{path}: {key} must hold integers")
    return info[:, :4].astype(np.int64)


def _build_tracklets(info: np.ndarray, names: list[str], image_dir: Path, info_path: Path,
                     names_path: Path, sidecar: dict[str, str] | None) -> list[tuple[int, Tracklet]]:
    """All tracklets of one info table as (row, Tracklet) with 0-based cameras; validates every name."""
    out = []
    checked_dirs: set[str] = set()
    sep = os.sep
    base = str(image_dir) + sep
    for row, (start, end, pid, cam) in enumerate(info.tolist()):
        where = f"row {row + 1} of {info_path.name}"
        if not 1 <= start <= end <= len(names):
            raise DatasetFormatError(
                f"{info_path}: {where} has frame range {start}..{end}, outside 1..{len(names)} "
                f"(the number of names in {names_path.name})"
            )
        frame_names = names[start - 1:end]
        pids, cams = set(), set()
        for n in frame_names:
            p, c = parse_name(n, names_path)
            pids.add(p)
            cams.add(c)
        if pids != {pid} or cams != {cam}:
            raise DatasetFormatError(
                f"tracklet {where} (frames {frame_names[0]} .. {frame_names[-1]}) mixes persons or cameras: "
                f"table says pid {pid} camera {cam}, image names have pids {sorted(pids)} cameras {sorted(cams)}"
            )
        folder = frame_names[0][:4]
        if folder not in checked_dirs:
            # one stat per person folder (not per frame) keeps loading the real MARS fast;
            # a missing single frame is reported by name when it is read
            require(image_dir / folder, f"MARS image folder for {where}", LAYOUT, is_dir=True)
            checked_dirs.add(folder)
        # plain string joins: pathlib costs ~20 us per frame, a minute of loading on the real MARS
        paths = tuple(f"{base}{n[:4]}{sep}{n}" for n in frame_names)
        corruption = None if sidecar is None else tuple(sidecar.get(n) for n in frame_names)
        out.append((row, Tracklet(paths, int(pid), int(cam) - 1, corruption)))
    return out


def load_mars(root: str | Path, *, mars_gallery: str = "remaining", min_seq_len: int = 0,
              verbose: bool = True) -> ReIDDataset:
    """Read MARS (or a synthetic world in MARS layout; its corruption sidecar is attached).

    ``mars_gallery``: ``"remaining"`` or ``"all"`` (see module docstring); stored in ``.protocol``.
    ``min_seq_len``: drop *train* tracklets shorter than this (test sets are never filtered so results
    stay comparable).
    """
    return read_mars_layout(root, mars_gallery=mars_gallery, min_seq_len=min_seq_len, verbose=verbose)


def read_mars_layout(root: str | Path, *, mars_gallery: str = "remaining", min_seq_len: int = 0,
                     verbose: bool = True, name: str = "mars", folder_names: tuple[str, ...] = ("mars", "MARS"),
                     protocol_extra: dict | None = None) -> ReIDDataset:
    """:func:`load_mars` with the reported dataset name and conventional folder names as parameters."""
    if mars_gallery not in GALLERY_MODES:
        raise ValueError(f"mars_gallery must be one of {GALLERY_MODES}, got {mars_gallery!r}")
    base = locate_root(root, folder_names, ["info", "bbox_train"], name, LAYOUT)
    info_dir = require(base / "info", "MARS info folder", LAYOUT, is_dir=True)
    train_names_p = require(info_dir / "train_name.txt", "MARS train name list", LAYOUT)
    test_names_p = require(info_dir / "test_name.txt", "MARS test name list", LAYOUT)
    train_info_p = require(info_dir / "tracks_train_info.mat", "MARS train tracklet table", LAYOUT)
    test_info_p = require(info_dir / "tracks_test_info.mat", "MARS test tracklet table", LAYOUT)
    query_p = require(info_dir / "query_IDX.mat", "MARS query index", LAYOUT)
    train_dir = require(base / "bbox_train", "MARS train images folder", LAYOUT, is_dir=True)
    test_dir = require(base / "bbox_test", "MARS test images folder", LAYOUT, is_dir=True)

    sidecar_p = info_dir / SIDECAR_NAME
    sidecar = read_sidecar(sidecar_p) if sidecar_p.is_file() else None

    train_all = _build_tracklets(_track_info(train_info_p, "track_train_info"), _read_names(train_names_p),
                                 train_dir, train_info_p, train_names_p, sidecar)
    test_all = _build_tracklets(_track_info(test_info_p, "track_test_info"), _read_names(test_names_p),
                                test_dir, test_info_p, test_names_p, sidecar)

    query_idx = _read_mat(query_p, "query_IDX").astype(np.int64).ravel()
    if query_idx.size and (query_idx.min() < 1 or query_idx.max() > len(test_all)):
        raise DatasetFormatError(
            f"{query_p}: query_IDX values must be 1-based rows of tracks_test_info (1..{len(test_all)}), "
            f"got range {query_idx.min()}..{query_idx.max()}"
        )
    if len(set(query_idx.tolist())) != query_idx.size:
        raise DatasetFormatError(f"{query_p}: query_IDX lists a row twice")
    query_rows = [int(i) - 1 for i in query_idx]

    train = [t for _, t in train_all if t.pid > 0 and len(t.paths) >= min_seq_len]
    query = [test_all[r][1] for r in query_rows if test_all[r][1].pid >= 0]
    query_set = set(query_rows)
    if mars_gallery == "remaining":
        gallery = [t for row, t in test_all if t.pid >= 0 and row not in query_set]
    else:
        gallery = [t for _, t in test_all if t.pid >= 0]

    protocol = {
        "mars_gallery": mars_gallery,
        "junk_dropped": sum(t.pid < 0 for _, t in test_all) + sum(t.pid < 0 for _, t in train_all),
        "min_seq_len": min_seq_len,
        "corruption_ground_truth": sidecar is not None,
    }
    world_p = info_dir / "world.json"
    if world_p.is_file():
        try:
            protocol["world"] = json.loads(world_p.read_text()).get("knobs", {})
        except json.JSONDecodeError as e:
            raise DatasetFormatError(f"{world_p}: not valid JSON ({e})") from e
    if protocol_extra:
        protocol.update(protocol_extra)
    where = {"train": str(train_info_p), "query": str(query_p), "gallery": str(test_info_p)}
    return finish(name, "video", train, query, gallery, protocol, where, verbose)


__all__ = ["load_mars", "read_mars_layout", "parse_name", "LAYOUT", "GALLERY_MODES"]
