"""Plain records shared by every dataset reader: one image, one tracklet, one loaded dataset.

Conventions (the same for all readers):

- camera ids are 0-based;
- train pids are relabelled to ``0..N-1`` (sorted by original pid), so they index classifier logits;
- query and gallery keep the original pids of the release (MARS/Market distractors keep pid 0), so
  results stay comparable with the published toolkits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Names of the frame corruptions the synthetic world can inject (see :mod:`reidlab.data.synthetic`).
CORRUPTION_KINDS: tuple[str, ...] = ("occluder", "blur", "misalign", "foreign_patch")


@dataclass(frozen=True)
class Sample:
    """One image of an image re-ID dataset."""

    path: str
    pid: int
    camid: int


@dataclass(frozen=True)
class Tracklet:
    """One tracklet (a sequence of frames of one person seen by one camera).

    ``corruption`` is per-frame ground truth: ``None`` for a clean frame or the corruption kind
    (one of :data:`CORRUPTION_KINDS`). The whole field is ``None`` when unknown (real datasets).
    """

    paths: tuple[str, ...]
    pid: int
    camid: int
    corruption: tuple[str | None, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.paths, tuple):
            # a list would make the record unhashable and silently mutable
            object.__setattr__(self, "paths", tuple(self.paths))
        if len(self.paths) == 0:
            raise ValueError(f"Tracklet(pid={self.pid}, camid={self.camid}) has no frames")
        if self.corruption is not None:
            if not isinstance(self.corruption, tuple):
                object.__setattr__(self, "corruption", tuple(self.corruption))
            if len(self.corruption) != len(self.paths):
                raise ValueError(
                    f"Tracklet starting at {self.paths[0]}: corruption has {len(self.corruption)} "
                    f"entries for {len(self.paths)} frames"
                )

    @property
    def num_frames(self) -> int:
        return len(self.paths)

    @property
    def num_corrupted(self) -> int | None:
        """Number of corrupted frames, or ``None`` when the ground truth is unknown."""
        if self.corruption is None:
            return None
        return sum(c is not None for c in self.corruption)


@dataclass
class ReIDDataset:
    """A loaded re-ID dataset: three lists of records plus the protocol that produced them.

    ``kind`` is ``"video"`` (records are :class:`Tracklet`) or ``"image"`` (records are :class:`Sample`).
    ``protocol`` is JSON-serialisable and is stored with every result (e.g. which MARS gallery convention).
    """

    name: str
    kind: str
    train: list
    query: list
    gallery: list
    num_train_pids: int
    num_train_cams: int
    protocol: dict = field(default_factory=dict)

    def split_stats(self) -> dict[str, dict[str, Any]]:
        """Per split: number of ids, records, frames (images for image datasets) and cameras."""
        out: dict[str, dict[str, Any]] = {}
        for split in ("train", "query", "gallery"):
            records = getattr(self, split)
            if self.kind == "video":
                frames = sum(len(r.paths) for r in records)
            else:
                frames = len(records)
            out[split] = {
                "ids": len({r.pid for r in records}),
                "records": len(records),
                "frames": frames,
                "cams": len({r.camid for r in records}),
            }
        return out

    def summary(self) -> str:
        """A small table (ids / tracklets or images / cameras per split), like the toolboxes print."""
        stats = self.split_stats()
        unit = "tracklets" if self.kind == "video" else "images"
        header = f"  {'subset':<8} | {'# ids':>6} | {'# ' + unit:>11}"
        if self.kind == "video":
            header += f" | {'# frames':>9}"
        header += f" | {'# cams':>6}"
        rule = "  " + "-" * (len(header) - 2)
        lines = [f"=> {self.name} ({self.kind}) loaded", rule, header, rule]
        for split, s in stats.items():
            line = f"  {split:<8} | {s['ids']:>6} | {s['records']:>11}"
            if self.kind == "video":
                line += f" | {s['frames']:>9}"
            line += f" | {s['cams']:>6}"
            lines.append(line)
        lines.append(rule)
        extra = {k: v for k, v in self.protocol.items() if k != "dataset" and not isinstance(v, (dict, list))}
        if extra:
            lines.append("  protocol: " + ", ".join(f"{k}={v}" for k, v in extra.items()))
        if self.kind == "video" and any(t.corruption is not None for t in self.train + self.query + self.gallery):
            total = sum(len(t.paths) for t in self.train + self.query + self.gallery)
            bad = sum(t.num_corrupted or 0 for t in self.train + self.query + self.gallery)
            lines.append(f"  corrupted frames (ground truth): {bad}/{total} ({bad / max(total, 1):.1%})")
        return "\n".join(lines)
