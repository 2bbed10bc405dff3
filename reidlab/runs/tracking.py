"""TensorBoard event files for runs, made from the run's records (the records stay the source of truth).

Each run folder gets one event file, ``<run_dir>/events.out.tfevents.reidlab``, so that
``tensorboard --logdir results/runs`` lists every run side by side under its run id. It holds, per epoch:

- ``train/<part>``: the loss and its parts, ``train/lr``, ``train/frames_per_s`` (from epochs.csv);
- ``eval/<metric>``: mAP, rank-1/5/10, mINP in % (from metrics.csv, at the evaluated epochs);
- ``figures/<name>``: the run's figures (``figures/*.png``) at the last epoch written.

The file is rebuilt whole from the records every time (atomically: temp file, then rename) rather than
appended to: a resumed run replays nothing twice, a run re-evaluated or trained further shows what its
records say, and old runs get event files after the fact (``reidlab tensorboard``). Event wall times are
the run's start plus the records' elapsed ``seconds``, so TensorBoard's "relative" axis is training time.
"""

from __future__ import annotations

import csv
import math
import os
import struct
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

__all__ = ["EVENT_FILE", "write_tensorboard", "read_scalars", "write_tensorboard_tree"]

#: the event file's name inside a run folder (TensorBoard reads any file whose name contains "tfevents")
EVENT_FILE = "events.out.tfevents.reidlab"
_TRAIN_SKIP = {"epoch", "seconds", "steps"}
_METRICS_AS_PERCENT = {"mAP", "rank1", "rank5", "rank10", "rank20", "mINP"}


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _number(text: str | None) -> float | None:
    try:
        v = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _start_time(run_dir: Path) -> float:
    """Seconds since the epoch at which the run started: status.json's last update less its elapsed
    seconds; the config's mtime when there is no status yet."""
    import json

    try:
        st = json.loads((run_dir / "status.json").read_text())
        updated = datetime.strptime(st["updated"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
        return updated - float(st.get("seconds") or 0.0)
    except (OSError, ValueError, KeyError, TypeError):
        cfg = run_dir / "config.json"
        return cfg.stat().st_mtime if cfg.exists() else 0.0


def _png_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return height, width


def _events(run_dir: Path) -> Iterable[Any]:
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    t0 = _start_time(run_dir)
    yield Event(wall_time=t0, step=0, file_version="brain.Event:2")
    last_epoch, last_time = 0, t0
    for row in _rows(run_dir / "epochs.csv"):
        epoch = int(float(row["epoch"]))
        wall = t0 + (_number(row.get("seconds")) or 0.0)
        values = [Summary.Value(tag=f"train/{k}", simple_value=v) for k, raw in row.items()
                  if k not in _TRAIN_SKIP and (v := _number(raw)) is not None]
        yield Event(wall_time=wall, step=epoch, summary=Summary(value=values))
        last_epoch, last_time = max(last_epoch, epoch), max(last_time, wall)
    for row in _rows(run_dir / "metrics.csv"):
        epoch = int(float(row["epoch"]))
        wall = t0 + (_number(row.get("seconds")) or 0.0)
        values = []
        for k, raw in row.items():
            v = _number(raw)
            if k in ("epoch", "seconds") or k.startswith("loss") or v is None:
                continue  # losses are logged per epoch under train/
            values.append(Summary.Value(tag=f"eval/{k}", simple_value=100.0 * v if k in _METRICS_AS_PERCENT else v))
        yield Event(wall_time=wall, step=epoch, summary=Summary(value=values))
        last_epoch, last_time = max(last_epoch, epoch), max(last_time, wall)
    figures = sorted((run_dir / "figures").glob("*.png")) if (run_dir / "figures").is_dir() else []
    for fig in figures:
        data = fig.read_bytes()
        try:
            h, w = _png_size(data)
        except ValueError:
            continue  # a figure being rewritten right now: the next rebuild picks it up
        image = Summary.Image(height=h, width=w, colorspace=4, encoded_image_string=data)
        yield Event(wall_time=last_time, step=last_epoch,
                    summary=Summary(value=[Summary.Value(tag=f"figures/{fig.stem}", image=image)]))


def write_tensorboard(run_dir: str | Path) -> Path | None:
    """(Re)write ``<run_dir>/events.out.tfevents.reidlab`` from the run's records; returns its path, or
    None when the folder has no epochs.csv / metrics.csv yet. Atomic: readers see the old or the new file."""
    from tensorboard.summary.writer.record_writer import RecordWriter

    run_dir = Path(run_dir)
    if not ((run_dir / "epochs.csv").is_file() or (run_dir / "metrics.csv").is_file()):
        return None
    target = run_dir / EVENT_FILE
    # Not reidlab.atomic.atomic_write_bytes: its temp name (".<name>.XXXX.tmp") would contain "tfevents",
    # and a TensorBoard watching the folder reads any such file, half-written ones included.
    fd, tmp = tempfile.mkstemp(prefix=".events-", suffix=".tmp", dir=run_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            writer = RecordWriter(f)
            for event in _events(run_dir):
                writer.write(event.SerializeToString())
            writer.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_tensorboard_tree(runs_dir: str | Path) -> list[Path]:
    """``write_tensorboard`` for every run folder directly under ``runs_dir``; returns the files written."""
    out = []
    for run_dir in sorted(p for p in Path(runs_dir).iterdir() if p.is_dir()):
        written = write_tensorboard(run_dir)
        if written is not None:
            out.append(written)
    return out


def read_scalars(event_file: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in an event file as ``{tag: [(step, value), ...]}`` in file order (for checks)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out: dict[str, list[tuple[int, float]]] = {}
    for event in EventFileLoader(str(event_file)).Load():
        for v in event.summary.value:
            if v.HasField("simple_value"):
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
            elif v.HasField("tensor") and v.metadata.plugin_data.plugin_name == "scalars":
                from tensorboard.util import tensor_util

                out.setdefault(v.tag, []).append((event.step, float(tensor_util.make_ndarray(v.tensor))))
    return out
