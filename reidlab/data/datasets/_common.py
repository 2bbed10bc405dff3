"""Helpers shared by the dataset readers: locating the dataset folder, errors that say what was
expected, relabelling, and building the final :class:`ReIDDataset` in one step (nothing half-loaded:
readers collect everything into locals and only construct the dataset when every check passed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from reidlab.data.records import ReIDDataset, Sample, Tracklet

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetFormatError(ValueError):
    """A dataset file exists but its content does not follow the published layout."""


def missing(path: Path | str, what: str, layout: str) -> FileNotFoundError:
    """Error for a missing file/folder: names the expected path and shows the expected layout."""
    return FileNotFoundError(f"{what} not found: expected {path}\nExpected layout:\n{layout}")


def locate_root(root: str | Path, folder_names: Sequence[str], markers: Sequence[str], dataset: str,
                layout: str) -> Path:
    """Return the dataset's own folder.

    ``root`` may be the dataset folder itself (it holds one of ``markers``) or its parent holding one
    of the conventional ``folder_names`` (e.g. ``mars``). Nested release folders are handled by
    listing them as ``folder_names`` too (``market1501/Market-1501-v15.09.15``).
    """
    base = Path(root).expanduser()
    candidates = [base] + [base / name for name in folder_names]
    for cand in candidates:
        if any((cand / m).exists() for m in markers):
            return cand
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"{dataset} dataset not found under {base} (looked for {', '.join(markers)} in: {tried})\n"
        f"Pass the dataset folder or its parent.\nExpected layout:\n{layout}"
    )


def require(path: Path, what: str, layout: str, *, is_dir: bool = False) -> Path:
    if is_dir and not path.is_dir():
        raise missing(path, what, layout)
    if not is_dir and not path.is_file():
        raise missing(path, what, layout)
    return path


class ImageFile(str):
    """A file path (the string itself) that also knows its base ``name``; far cheaper than a Path
    when a reader lists hundreds of thousands of frames."""

    name: str

    def __new__(cls, path: str, name: str):
        obj = super().__new__(cls, path)
        obj.name = name
        return obj


def list_images(folder: Path) -> list[ImageFile]:
    """Image files of one folder (hidden files and e.g. Thumbs.db ignored), sorted by name."""
    out = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            if entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
                out.append(ImageFile(entry.path, entry.name))
    out.sort(key=lambda f: f.name)
    return out


def list_dirs(folder: Path) -> list[Path]:
    out = []
    with os.scandir(folder) as it:
        for entry in it:
            if not entry.name.startswith(".") and entry.is_dir():
                out.append(Path(entry.path))
    return sorted(out)


def relabel(records: Sequence[Tracklet | Sample]) -> tuple[list, dict[int, int]]:
    """Train pids -> ``0..N-1`` in order of original pid (stable across runs and machines)."""
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    out = []
    for r in records:
        if isinstance(r, Tracklet):
            out.append(Tracklet(r.paths, mapping[r.pid], r.camid, r.corruption))
        else:
            out.append(Sample(r.path, mapping[r.pid], r.camid))
    return out, mapping


def check_nonempty(dataset: str, splits: dict[str, Sequence], where: dict[str, str]) -> None:
    for split, records in splits.items():
        if len(records) == 0:
            raise DatasetFormatError(
                f"{dataset}: the {split} split is empty (read from {where.get(split, '?')}); "
                "a re-ID dataset needs train, query and gallery records"
            )


def finish(name: str, kind: str, train: list, query: list, gallery: list, protocol: dict,
           where: dict[str, str], verbose: bool) -> ReIDDataset:
    """Final checks and construction; train is relabelled here."""
    check_nonempty(name, {"train": train, "query": query, "gallery": gallery}, where)
    train_relabelled, _ = relabel(train)
    ds = ReIDDataset(
        name=name,
        kind=kind,
        train=train_relabelled,
        query=list(query),
        gallery=list(gallery),
        num_train_pids=len({r.pid for r in train_relabelled}),
        num_train_cams=len({r.camid for r in train_relabelled}),
        protocol={"dataset": name, **protocol},
    )
    if verbose:
        print(ds.summary())
    return ds

