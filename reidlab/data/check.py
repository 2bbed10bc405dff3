"""Check a dataset folder against the dataset's published statistics, and every image file in it.

``check_dataset(name, root)`` reads the dataset with reidlab's own reader (so it counts exactly what
training and evaluation will see), compares identities / images or tracklets / frames per split and the
number of cameras with :data:`PUBLISHED`, then looks at every image file the records reference:
missing, zero-byte, unreadable (PIL cannot identify or decode it) or truncated (PIL's
``Image.open(...).load()`` stops early). Decoding runs in a process pool with a tqdm progress bar.
``reidlab check-data NAME ROOT`` prints the report and exits 1 on any mismatch or defect.

Like with like
--------------
The published figures are compared with what the readers keep, under the protocol the figures were
published for:

- Market-1501: junk images (pid -1) are dropped by the reader, distractors (pid 0000) stay in the
  gallery. The release's readme counts 19,732 ``bounding_box_test`` images; the published *gallery*
  figure compared here is 15,913, the test folder without its junk (torchreid's count, the one the
  evaluation uses), and the gallery's 751 "identities" are the 750 test identities plus pid 0.
- MARS: junk tracklets (pid -1) are dropped everywhere, distractors (pid 0) stay in the gallery. The
  gallery figure 9,330 is the ``mars_gallery="remaining"`` convention (every non-junk test tracklet
  that is not a query); with ``mars_gallery="all"`` the queries are in the gallery too, so 11,310 =
  1,980 + 9,330 is expected and the gallery identities are not compared (their published count is
  for the remaining gallery only). Frames are compared for train only (509,914 = every train frame; the
  published test figure, 681,089, includes the junk tracklets' frames the reader drops).
- MSMT17: the published training figure (32,621 images) is ``list_train`` + ``list_val``, so the check
  reads MSMT17 with ``include_val=True`` unless told otherwise (then the train counts are not compared).
- iLIDS-VID / PRID2011: the per-split figures hold for every one of the ten splits.
- ``min_seq_len > 0`` (MARS, DukeMTMC-VideoReID) drops short train tracklets, so train is not compared.
- Cameras: the number of distinct cameras over all three splits.

For layouts the reader lists from folders (Market-1501, DukeMTMC-reID, DukeMTMC-VideoReID, iLIDS-VID,
PRID2011) a deleted file cannot be "missing": it simply is not listed, and shows up as a count
mismatch. Files listed by annotation files (MARS name lists, MSMT17 lists) are reported missing by name.
A layout the reader rejects (a missing person folder, a malformed name) is reported as a layout error.
"""

from __future__ import annotations

import math
import os
import sys
import textwrap
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageFile

from reidlab.data.datasets import build_dataset
from reidlab.data.datasets._common import DatasetFormatError
from reidlab.data.records import ReIDDataset
from reidlab.suggest import did_you_mean

__all__ = [
    "PUBLISHED", "SplitCounts", "PublishedStats", "CountRow", "FileProblem", "CheckReport",
    "check_dataset", "check_files", "expected_stats", "available_cores", "PROBLEM_KINDS",
]

SPLITS = ("train", "query", "gallery")
MISSING, ZERO_BYTE, UNREADABLE, TRUNCATED = "missing", "zero-byte", "unreadable", "truncated"
#: the per-file defects, in the order the report lists their totals
PROBLEM_KINDS: tuple[str, ...] = (MISSING, ZERO_BYTE, UNREADABLE, TRUNCATED)


@dataclass(frozen=True)
class SplitCounts:
    """Published (or found) counts of one split; ``None`` = not published, not compared.

    ``records`` are images for image datasets and tracklets for video datasets; ``frames`` (video only) is
    the number of frames over the split's tracklets."""

    ids: int | None = None
    records: int | None = None
    frames: int | None = None


@dataclass(frozen=True)
class PublishedStats:
    """A dataset's published statistics, as the reader with ``options`` should reproduce them.

    ``facts`` are further published figures that are not compared directly (totals over splits, counts
    that include junk the reader drops); they document the table and let its consistency be tested.
    ``compared`` says in words what exactly is compared; ``sources`` where each figure comes from.
    """

    title: str
    kind: str
    splits: Mapping[str, SplitCounts]
    cameras: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    facts: Mapping[str, int] = field(default_factory=dict)
    compared: str = ""
    sources: tuple[str, ...] = ()

    @property
    def unit(self) -> str:
        return "tracklets" if self.kind == "video" else "images"


# --------------------------------------------------------------------------------------------------
# The published figures. Sources are named per figure; "torchreid" is KaiyangZhou/deep-person-reid
# (files under torchreid/data/datasets/ and docs/), whose loaders apply the same junk/distractor rules
# as reidlab's readers, so its printed statistics are the like-with-like reference.
# --------------------------------------------------------------------------------------------------

PUBLISHED: dict[str, PublishedStats] = {
    "mars": PublishedStats(
        title="MARS",
        kind="video",
        splits={
            "train": SplitCounts(ids=625, records=8298, frames=509914),
            "query": SplitCounts(ids=626, records=1980),
            "gallery": SplitCounts(ids=622, records=9330),
        },
        cameras=6,
        options={"mars_gallery": "remaining"},
        facts={
            "identities": 1261,
            "tracklets_total": 20478,
            "test_tracklets_incl_junk": 12180,
            "gallery_all_tracklets": 11310,
            "frames_total": 1191003,
            "test_frames_incl_junk": 681089,
            "distractor_tracklets": 3248,
        },
        compared=("junk tracklets (pid -1) dropped, distractors (pid 0) kept in the gallery; gallery = the "
                  "'remaining' convention (non-junk test tracklets that are not queries); frames: train only"),
        sources=(
            "Zheng et al., 'MARS: A Video Benchmark for Large-Scale Person Re-identification', ECCV 2016 "
            "(https://doi.org/10.1007/978-3-319-46466-4_52): 1,261 identities, 6 cameras; dataset table: train "
            "625 ids / 8,298 tracklets / 509,914 boxes, test 636 ids / 12,180 tracklets / 681,089 boxes, "
            "3,248 distractor tracklets",
            "torchreid torchreid/data/datasets/video/mars.py: 8298 (train) + 1980 (query) + 9330 (gallery) "
            "tracklets, cameras 6; table shapes tracks_train_info (8298, 4), tracks_test_info (12180, 4), "
            "query_IDX (1980,)",
            "jiyanggao/Video-Person-ReID log/log_train.txt (the 'remaining' convention's origin): ids "
            "train 625, query 626, gallery 622",
            "11,310 = 1,980 + 9,330 (gallery with the queries, mars_gallery='all'): derived",
        ),
    ),
    "market1501": PublishedStats(
        title="Market-1501",
        kind="image",
        splits={
            "train": SplitCounts(ids=751, records=12936),
            "query": SplitCounts(ids=750, records=3368),
            "gallery": SplitCounts(ids=751, records=15913),
        },
        cameras=6,
        facts={"identities": 1501, "train_identities": 751, "test_identities": 750,
               "bounding_box_test_images": 19732, "junk_images": 3819},
        compared=("junk (pid -1) dropped; distractors (pid 0000) kept in the gallery and counted as one id "
                  "(751 = 750 test identities + pid 0)"),
        sources=(
            "Zheng et al., 'Scalable Person Re-identification: A Benchmark', ICCV 2015, and the release's "
            "readme (Market-1501-v15.09.15, quoted at https://huggingface.co/datasets/Lekim89/market1501): "
            "1,501 identities, six cameras, 751 train / 750 test identities, 12,936 train, 3,368 query and "
            "19,732 bounding_box_test images",
            "torchreid docs/user_guide.rst (printed statistics) and torchreid/data/datasets/image/"
            "market1501.py: train 751 ids / 12,936, query 750 / 3,368, gallery 751 / 15,913 (junk dropped), "
            "6 cameras",
            "junk images 3,819 = 19,732 - 15,913: derived",
        ),
    ),
    "dukemtmcreid": PublishedStats(
        title="DukeMTMC-reID",
        kind="image",
        splits={
            "train": SplitCounts(ids=702, records=16522),
            "query": SplitCounts(ids=702, records=2228),
            "gallery": SplitCounts(ids=1110, records=17661),
        },
        cameras=8,
        facts={"identities": 1812, "identities_in_two_or_more_cameras": 1404, "distractor_identities": 408,
               "bounding_boxes": 36411},
        compared="every image of the three folders (the release has no junk); gallery ids = 702 + 408 distractors",
        sources=(
            "DukeMTMC-reID release description (layumi/DukeMTMC-reID_evaluation README, e.g. as copied in "
            "naiq/Duke_evaluation README.md): 1,812 identities, 8 cameras, 36,411 boxes; 1,404 identities in "
            "two or more cameras + 408 distractor identities; 16,522 training images of 702 identities, "
            "2,228 query images of the other 702, 17,661 gallery images",
            "torchreid torchreid/data/datasets/image/dukemtmcreid.py: 16522 (train) + 2228 (query) + "
            "17661 (gallery), cameras 8",
            "gallery ids 1,110 = 702 test + 408 distractor identities: derived from the release description",
        ),
    ),
    "msmt17": PublishedStats(
        title="MSMT17",
        kind="image",
        splits={
            "train": SplitCounts(ids=1041, records=32621),
            "query": SplitCounts(ids=3060, records=11659),
            "gallery": SplitCounts(ids=3060, records=82161),
        },
        cameras=15,
        options={"include_val": True},
        facts={"identities": 4101, "test_images": 93820},
        compared="train = list_train + list_val (the published training set; read with include_val=True)",
        sources=(
            "Wei et al., 'Person Transfer GAN to Bridge Domain Gap for Person Re-Identification', CVPR 2018: "
            "4,101 identities, 15 cameras; training 1,041 identities / 32,621 boxes, test 3,060 identities / "
            "93,820 boxes, of which 11,659 query and 82,161 gallery",
            "torchreid torchreid/data/datasets/image/msmt17.py: 32621 (train) + 11659 (query) + "
            "82161 (gallery), cameras 15 (its train = list_train + list_val when combined)",
        ),
    ),
    "ilidsvid": PublishedStats(
        title="iLIDS-VID",
        kind="video",
        splits={
            "train": SplitCounts(ids=150, records=300),
            "query": SplitCounts(ids=150, records=150),
            "gallery": SplitCounts(ids=150, records=150),
        },
        cameras=2,
        facts={"identities": 300, "tracklets_total": 600},
        compared="one split of ls_set: half the 300 persons train (both cameras), half test (cam1 query, cam2 gallery)",
        sources=(
            "Wang et al., 'Person Re-Identification by Video Ranking', ECCV 2014; torchreid "
            "torchreid/data/datasets/video/ilidsvid.py: 300 identities, 600 tracklets, 2 cameras; ls_set is "
            "10 x 300 and each split's first half (150 persons) is the test set",
            "per-split figures (150 / 300, 150 / 150, 150 / 150): derived from the 50/50 split",
        ),
    ),
    "prid2011": PublishedStats(
        title="PRID2011",
        kind="video",
        splits={
            "train": SplitCounts(ids=89, records=178),
            "query": SplitCounts(ids=89, records=89),
            "gallery": SplitCounts(ids=89, records=89),
        },
        cameras=2,
        facts={"identities_in_both_cameras": 200, "protocol_identities": 178, "cam_a_identities": 385,
               "cam_b_identities": 749},
        compared="one split of splits_prid2011.json: 178 persons (long enough sequences), 89 train / 89 test",
        sources=(
            "Hirzer et al., SCIA 2011; torchreid torchreid/data/datasets/video/prid2011.py: 200 identities "
            "in both cameras, 2 cameras; torchreid docs/datasets.rst: following the standard protocol only "
            "178 persons whose sequences are more than a threshold are used (the iLIDS-VID split file)",
            "per-split figures (89 / 178, 89 / 89, 89 / 89): derived from the 50/50 split of the 178",
        ),
    ),
    "dukemtmcvidreid": PublishedStats(
        title="DukeMTMC-VideoReID",
        kind="video",
        splits={
            "train": SplitCounts(ids=702, records=2196),
            "query": SplitCounts(ids=702, records=702),
            "gallery": SplitCounts(ids=1110, records=2636),
        },
        cameras=8,
        facts={"train_identities": 702, "test_identities": 702, "distractor_identities": 408,
               "test_tracklets": 2636},
        compared=("the release's query/ and gallery/ folders as they are; the gallery folder holds all 2,636 "
                  "test tracklets (each query is a copy of one of them), 702 test + 408 distractor ids"),
        sources=(
            "Yu-Wu/DukeMTMC-VideoReID README.md (Wu et al., CVPR 2018): 702 training, 702 test and 408 "
            "distractor identities; 2,196 training and 2,636 test videos; one video per test identity is the "
            "query; gallery/ holds 702 gallery identities and 408 distractors",
            "Yu-Wu/DukeMTMC-VideoReID issue #3: the test set has 2,636 videos in total (queries included)",
            "torchreid torchreid/data/datasets/video/dukemtmcvidreid.py: 702 (train) + 702 (test) "
            "identities, 2196 (train) + 2636 (test) tracklets",
            "DukeMTMC (Ristani et al., ECCVW 2016): 8 cameras",
        ),
    ),
}


def expected_stats(name: str, options: Mapping[str, Any] | None = None) -> tuple[PublishedStats, list[str]]:
    """The published statistics of ``name`` as the reader with ``options`` should reproduce them, and
    notes on what was adjusted. Options that change what the figures count (see the module docstring)
    either translate the figure (MARS ``mars_gallery="all"``) or drop it from the comparison."""
    if name not in PUBLISHED:
        raise ValueError(f"no published statistics for dataset {name!r}{did_you_mean(name, PUBLISHED)}; "
                         f"known: {sorted(PUBLISHED)}")
    stats = PUBLISHED[name]
    opts = {**stats.options, **(options or {})}
    splits = dict(stats.splits)
    notes: list[str] = []
    if name == "mars" and opts.get("mars_gallery") == "all":
        q, g = splits["query"], splits["gallery"]
        splits["gallery"] = SplitCounts(ids=None, records=(q.records or 0) + (g.records or 0))
        notes.append("mars_gallery='all': gallery = queries + remaining gallery "
                     f"({q.records:,} + {g.records:,}); its identities are not compared")
    if int(opts.get("min_seq_len") or 0) > 0:
        splits["train"] = SplitCounts()
        notes.append(f"min_seq_len={opts['min_seq_len']} drops short train tracklets: train not compared")
    if name == "msmt17" and not opts.get("include_val", True):
        splits["train"] = SplitCounts()
        notes.append("include_val=False: the published training figures include list_val; train not compared")
    return replace(stats, splits=splits, options=opts), notes


# --------------------------------------------------------------------------------------------------
# file checks
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileProblem:
    """One defective file: ``kind`` is one of :data:`PROBLEM_KINDS`, ``detail`` the reason in words."""

    path: str
    kind: str
    detail: str = ""


def _check_one(path: str, decode: bool) -> FileProblem | None:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return FileProblem(path, MISSING, "no such file")
    except OSError as e:
        return FileProblem(path, UNREADABLE, f"cannot stat: {e.strerror or e}")
    if size == 0:
        return FileProblem(path, ZERO_BYTE, "file is empty (0 bytes)")
    if not decode:
        return None
    # PIL says "truncated" both when the header ends early (in open) and when the pixel data does (in load)
    try:
        im = Image.open(path)
    except Image.UnidentifiedImageError:
        return FileProblem(path, UNREADABLE, f"PIL cannot identify an image in it; {size} bytes on disk")
    except Exception as e:  # noqa: BLE001 - any failure to open is the finding
        if "truncat" in str(e).lower():
            return FileProblem(path, TRUNCATED, f"{e} while reading the header; {size} bytes on disk")
        return FileProblem(path, UNREADABLE, f"{type(e).__name__}: {e}")
    try:
        with im:
            im.load()
    except Exception as e:  # noqa: BLE001 - OSError mostly, SyntaxError for a broken PNG chunk
        if "truncat" in str(e).lower():
            return FileProblem(path, TRUNCATED, f"{e}; {size} bytes on disk")
        return FileProblem(path, UNREADABLE, f"decoding failed: {type(e).__name__}: {e}")
    return None


def _check_batch(paths: Sequence[str], decode: bool) -> list[FileProblem]:
    """Problems of ``paths``; runs in pool workers. PIL must not pad truncated images here, whatever the
    calling program set, or a truncated file would decode 'fine'."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        return [p for p in (_check_one(path, decode) for path in paths) if p is not None]
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def check_files(paths: Iterable[str], *, decode: bool = True, workers: int | None = None,
                progress: bool = True, desc: str = "checking images") -> list[FileProblem]:
    """Problems among ``paths`` (duplicates checked once), sorted by path.

    Every file is stat-ed (missing, zero-byte); with ``decode`` it is also fully decoded with PIL
    (unreadable, truncated) in a process pool of ``workers`` processes (default: the available cores;
    1 = in this process). ``progress`` shows a tqdm bar on stderr.
    """
    from tqdm import tqdm

    todo = list(dict.fromkeys(str(p) for p in paths))
    workers = available_cores() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    problems: list[FileProblem] = []
    bar = tqdm(total=len(todo), desc=desc, unit="file", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, mininterval=0.5)
    try:
        if workers == 1 or not decode or len(todo) < 2:
            step = 512
            for i in range(0, len(todo), step):
                chunk = todo[i:i + step]
                problems += _check_batch(chunk, decode)
                bar.update(len(chunk))
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed

            # a few batches per worker keep the bar moving and the load balanced. The platform's default
            # start method (fork on Linux, like torch's DataLoader): spawn would re-import the caller's
            # __main__, which fails for scripts read from stdin
            size = max(1, min(256, math.ceil(len(todo) / (workers * 4))))
            batches = [todo[i:i + size] for i in range(0, len(todo), size)]
            with ProcessPoolExecutor(max_workers=min(workers, len(batches))) as pool:
                futures = {pool.submit(_check_batch, b, decode): len(b) for b in batches}
                try:
                    for fut in as_completed(futures):
                        problems += fut.result()
                        bar.update(futures[fut])
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    finally:
        bar.close()
    problems.sort(key=lambda p: p.path)
    return problems


# --------------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CountRow:
    """One compared quantity: ``expected`` None = not published (shown, not compared)."""

    split: str
    quantity: str
    expected: int | None
    found: int | None

    @property
    def compared(self) -> bool:
        return self.expected is not None

    @property
    def ok(self) -> bool:
        return self.expected is None or self.expected == self.found

    @property
    def label(self) -> str:
        return self.quantity if self.split == "all" else f"{self.split} {self.quantity}"


def _n(x: int | None) -> str:
    return "-" if x is None else f"{x:,}"


@dataclass
class CheckReport:
    """What ``check_dataset`` found. ``ok`` when every published count matches, no file is defective
    and the reader accepted the layout. ``str(report)`` / :meth:`format` is the printed table."""

    name: str
    root: str
    expected: PublishedStats
    rows: list[CountRow] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    files_checked: int = 0
    decoded: bool = True
    workers: int = 1
    layout_error: str | None = None
    notes: list[str] = field(default_factory=list)
    reader_warnings: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> list[CountRow]:
        return [r for r in self.rows if not r.ok]

    @property
    def problem_counts(self) -> dict[str, int]:
        c = Counter(p.kind for p in self.problems)
        return {k: c.get(k, 0) for k in PROBLEM_KINDS}

    @property
    def ok(self) -> bool:
        return self.layout_error is None and not self.mismatches and not self.problems

    def format(self, max_listed: int = 20) -> str:
        """The report as text: settings, the count table, the first ``max_listed`` bad files with
        their reason, totals per defect, and a one-line verdict naming every mismatch."""
        exp = self.expected
        lines = [f"check-data {self.name} ({exp.title}, {exp.kind}) at {self.root}"]
        if exp.options:
            lines.append("  reader options: " + ", ".join(f"{k}={v!r}" for k, v in exp.options.items()))
        if exp.compared:
            lines.append(f"  compared: {exp.compared}")
        lines += [f"  note: {n}" for n in self.notes]
        if self.layout_error is not None:
            lines.append("")
            lines.append("LAYOUT ERROR: the reader rejected the dataset folder:")
            lines += ["  " + ln for ln in self.layout_error.splitlines()]
        if self.rows:
            header = f"  {'split':<8} | {'quantity':<9} | {'published':>10} | {'found':>10} | status"
            rule = "  " + "-" * (len(header) - 2)
            lines += ["", header, rule]
            for r in self.rows:
                if not r.compared:
                    status = "not published"
                elif r.ok:
                    status = "ok"
                else:
                    diff = (r.found or 0) - (r.expected or 0)
                    status = f"MISMATCH ({diff:+,})"
                lines.append(f"  {r.split:<8} | {r.quantity:<9} | {_n(r.expected):>10} | {_n(r.found):>10} | {status}")
            lines.append(rule)
        lines += [f"  reader warning: {w}" for w in self.reader_warnings]
        if self.layout_error is None:
            how = (f"decoded with PIL ({self.workers} worker{'s' if self.workers != 1 else ''})" if self.decoded
                   else "existence and size only (--no-decode)")
            lines += ["", f"files: {self.files_checked:,} referenced by the records, checked: {how}"]
            lines.append("  " + "   ".join(f"{k}: {v:,}" for k, v in self.problem_counts.items()))
            if self.problems:
                shown = self.problems[:max(0, max_listed)]
                lines.append(f"  first {len(shown)} of {len(self.problems):,} defective file(s):")
                width = max(len(k) for k in PROBLEM_KINDS)
                lines += [f"    {p.kind:<{width}}  {p.path}  ({p.detail})" for p in shown]
                if len(self.problems) > len(shown):
                    lines.append(f"    ... {len(self.problems) - len(shown):,} more (raise --max-listed to see them)")
        if exp.sources:
            lines += ["", "published figures from:"]
            for src in exp.sources:
                lines += textwrap.wrap(src, width=110, initial_indent="  - ", subsequent_indent="    ")
        lines.append("")
        lines.append(self.verdict())
        return "\n".join(lines)

    def verdict(self) -> str:
        """One line: ``OK`` or ``FAIL`` with every mismatch named."""
        if self.ok:
            compared = sum(r.compared for r in self.rows)
            return (f"RESULT: OK: {compared} published count(s) match, {self.files_checked:,} file(s) "
                    + ("decoded" if self.decoded else "present") + " without defects")
        parts = []
        if self.layout_error is not None:
            parts.append("layout rejected by the reader")
        if self.mismatches:
            parts.append(f"{len(self.mismatches)} count mismatch(es): " + "; ".join(
                f"{r.label} {_n(r.found)} found, {_n(r.expected)} published" for r in self.mismatches))
        if self.problems:
            parts.append(f"{len(self.problems):,} defective file(s): " + ", ".join(
                f"{v:,} {k}" for k, v in self.problem_counts.items() if v))
        return "RESULT: FAIL: " + " | ".join(parts)

    def __str__(self) -> str:
        return self.format()


def _count_rows(ds: ReIDDataset, exp: PublishedStats) -> list[CountRow]:
    found = ds.split_stats()
    unit = "tracklets" if ds.kind == "video" else "images"
    rows = []
    for split in SPLITS:
        e = exp.splits.get(split, SplitCounts())
        f = found[split]
        rows.append(CountRow(split, "ids", e.ids, f["ids"]))
        rows.append(CountRow(split, unit, e.records, f["records"]))
        if ds.kind == "video":
            rows.append(CountRow(split, "frames", e.frames, f["frames"]))
    cams = {r.camid for split in SPLITS for r in getattr(ds, split)}
    rows.append(CountRow("all", "cameras", exp.cameras, len(cams)))
    return rows


def _record_paths(ds: ReIDDataset) -> list[str]:
    paths: list[str] = []
    for split in SPLITS:
        for r in getattr(ds, split):
            if ds.kind == "video":
                paths.extend(r.paths)
            else:
                paths.append(r.path)
    return list(dict.fromkeys(paths))


def check_dataset(name: str, root: str | Path, *, workers: int | None = None, progress: bool = True,
                  decode: bool = True, expected: PublishedStats | None = None, **options: Any) -> CheckReport:
    """Compare the dataset ``name`` at ``root`` with its published statistics and check every image file.

    ``options`` are the reader's (e.g. ``mars_gallery="all"``, ``split_id=3``); the published figures'
    own protocol options (:attr:`PublishedStats.options`) are applied unless overridden. ``expected``
    replaces the published statistics (miniature copies, custom subsets). ``decode=False`` only checks
    that the files exist and are not empty. ``workers``: decoding processes (default: available cores).

    Raises ValueError for an unknown dataset name or reader option and FileNotFoundError when ``root``
    does not exist (usage errors); everything wrong *inside* the dataset is in the report.
    """
    if expected is None:
        exp, notes = expected_stats(name, options)
    else:
        exp, notes = replace(expected, options={**expected.options, **options}), []
    base = Path(root).expanduser()
    if not base.exists():
        raise FileNotFoundError(f"dataset root not found: {base}")
    n_workers = available_cores() if workers is None else int(workers)
    if n_workers < 1:
        raise ValueError(f"workers must be >= 1, got {n_workers}")
    report = CheckReport(name=name, root=str(base), expected=exp, notes=notes, decoded=decode, workers=n_workers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = build_dataset(name, base, verbose=False, **exp.options)
        except (DatasetFormatError, OSError) as e:
            report.layout_error = str(e)
            return report
    report.reader_warnings = [str(w.message) for w in caught]
    if ds.kind != exp.kind:
        raise ValueError(f"dataset {name!r} is a {ds.kind} dataset but the expected statistics are for {exp.kind}")
    report.rows = _count_rows(ds, exp)
    paths = _record_paths(ds)
    report.files_checked = len(paths)
    report.problems = check_files(paths, decode=decode, workers=n_workers, progress=progress,
                                  desc=f"{'decoding' if decode else 'checking'} {name}")
    return report
