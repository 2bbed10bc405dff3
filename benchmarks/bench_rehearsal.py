"""MARS-scale rehearsal: indexing, loading, dense extraction and evaluation at MARS's counts, on CPU.

    python benchmarks/bench_rehearsal.py [--root data/mars_rehearsal] [--generate] [--quick]

The world is :mod:`reidlab.data.rehearsal` (1,261 identities, 20,478 tracklets, 1,191,003 frame names in
the MARS layout, every name a hard link into a pool of distinct 128x64 JPEGs); it is generated (and the
generation timed) when missing or with ``--generate``, else the generation time recorded in its
``info/rehearsal.json`` is reported.

Measured at full counts: generation, dataset indexing (``build_dataset("mars", root)``, median of
``--repeats``), ``check_dataset(decode=False)`` (every one of the 1.19 M files stat-ed), building the
dense test index over the whole test set, and evaluation of 1,980 x 9,330 (and 1,980 x 11,310,
``mars_gallery="all"``) 2048-d features with ``evaluate_features`` (median time; peak memory measured as
the peak RSS of a fresh child process above its RSS before the call).

Measured on a subset and **extrapolated** to full counts (linearly in frames, as printed): train-loader
frames/s (P x K = 8 x 4 clips of 4 frames, restricted random sampling, train transforms, workers 0 and
2; median of windows of batches), one training step (forward + backward + SGD, cross-entropy on the
logits only) of ResNet-50 and ResNet-18 video models, and dense extraction frames/s (``extract_features``
over a subset of test tracklets; median of ``--repeats`` subsets). Decoding cost is that of the pool's
128x64 JPEGs; a decode-only ratio against 256x128 JPEGs (MARS's size), measured in the same process,
says how much slower real MARS files decode. File reads are warm (the pool fits in the page cache).
Peak RAM: the process's ``ru_maxrss`` after each stage (monotonic) and the RSS each structure adds.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from reidlab.data import (  # noqa: E402
    PKSampler,
    VideoTestDataset,
    VideoTrainDataset,
    build_dataset,
    build_test_loader,
    build_train_loader,
    build_transforms,
)
from reidlab.data.check import check_dataset  # noqa: E402
from reidlab.data.rehearsal import DEFAULT_REHEARSAL_ROOT, MARS_COUNTS, generate_rehearsal, rehearsal_meta  # noqa: E402
from reidlab.engine.extraction import extract_features  # noqa: E402
from reidlab.eval import evaluate_features  # noqa: E402
from reidlab.models import build_model  # noqa: E402

MiB = 1 << 20
P, K, SEQ = 8, 4, 4
ROWS: list[tuple[str, str, str, str, str]] = []  # (stage, figure, value, how, 1-min load average)
PEAKS: list[int] = []  # per-stage VmHWM peaks (clear_refs also resets ru_maxrss, so the run's peak is their max)


def rss_bytes() -> int:
    """Current resident set size of this process (bytes), from /proc/self/statm."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (bytes; ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM) of this process; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def hwm_bytes() -> int:
    """VmHWM: peak RSS since the process started or since :func:`reset_peak` (bytes). Unlike ru_maxrss it
    belongs to the address space, so a spawned child does not inherit its forking parent's peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return peak_rss_bytes()


def row(stage: str, figure: str, value: str, how: str) -> None:
    load = f"{os.getloadavg()[0]:.1f}"
    ROWS.append((stage, figure, value, how, load))
    print(f"  {stage:<12} {figure:<46} {value:>16}  [{how}] load {load}", flush=True)


def stage_peak(stage: str, note: str = "VmHWM") -> None:
    """Report this process's peak RSS since the last :func:`reset_peak` and remember it."""
    PEAKS.append(hwm_bytes())
    row(stage, "peak RSS of this stage (main process)", f"{PEAKS[-1] / MiB:.0f} MiB", note)


def hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{(s % 3600) // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# ----------------------------------------------------------------------------------------------------
# evaluation in a fresh child: its peak RSS above its RSS before the call is the evaluation's memory
# ----------------------------------------------------------------------------------------------------


def _eval_child(q_pids, q_cams, g_pids, g_cams, dim: int, repeats: int, out) -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = np.random.default_rng(0)
    ids = np.unique(np.concatenate([q_pids, g_pids]))
    centres = {int(p): rng.standard_normal(dim).astype(np.float32) for p in ids if p > 0}

    def feats(pids):  # identity centre (weight 0.25) + unit noise: a mediocre model, not a perfect one
        f = rng.standard_normal((len(pids), dim)).astype(np.float32)
        for i, p in enumerate(pids):
            if p > 0:
                f[i] += 0.25 * centres[int(p)]
        return f

    qf, gf = feats(q_pids), feats(g_pids)
    before = rss_bytes()
    if not reset_peak():
        before = hwm_bytes()
    times = []
    res = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams)
        times.append(time.perf_counter() - t0)
    out.put({"seconds": statistics.median(times), "times": times, "extra_bytes": hwm_bytes() - before,
             "inputs_bytes": qf.nbytes + gf.nbytes, "mAP": float(res.mAP), "rank1": float(res.cmc[0])})


def eval_in_child(q, g, dim: int, repeats: int) -> dict:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    args = (np.asarray([t.pid for t in q]), np.asarray([t.camid for t in q]),
            np.asarray([t.pid for t in g]), np.asarray([t.camid for t in g]), dim, repeats, out)
    proc = ctx.Process(target=_eval_child, args=args)
    proc.start()
    res = out.get()
    proc.join()
    return res


# ----------------------------------------------------------------------------------------------------


def train_loader_fps(ds, workers: int, hw: tuple[int, int], batches: int, windows: int) -> tuple[float, int]:
    """(median frames/s over ``windows`` windows of ``batches`` batches after 2 warm-up batches,
    batches in one PKSampler epoch)."""
    vt = VideoTrainDataset(ds.train, SEQ, "restricted_random", build_transforms(*hw, train=True), seed=0)
    sampler = PKSampler(vt.pids, P, K, seed=0)
    loader = build_train_loader(vt, sampler, sampler.batch_size, workers, seed=0)
    vt.set_epoch(0)
    sampler.set_epoch(0)
    it = iter(loader)
    for _ in range(2):
        next(it)
    rates = []
    for _ in range(windows):
        t0 = time.perf_counter()
        n = 0
        for _ in range(batches):
            x = next(it)[0]
            n += x.shape[0] * x.shape[1]
        rates.append(n / (time.perf_counter() - t0))
    del it, loader
    return statistics.median(rates), len(sampler) // sampler.batch_size


def train_step_seconds(backbone: str, num_classes: int, hw: tuple[int, int], repeats: int) -> float:
    """Median seconds of one training step (P*K clips of SEQ frames, forward + backward + SGD step)."""
    torch.manual_seed(0)
    model = build_model("video", num_classes, backbone=backbone)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(P * K, SEQ, 3, *hw)
    y = torch.randint(0, num_classes, (P * K,))
    times = []
    for i in range(repeats + 1):
        xb, yb = (x[:2], y[:2]) if i == 0 else (x, y)  # a small first step warms up allocator and kernels
        t0 = time.perf_counter()
        out = model(xb)
        loss = torch.nn.functional.cross_entropy(out["logits"], yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def extraction_fps(backbone: str, tracklets, hw: tuple[int, int], subsets: list[list[int]], batch: int,
                   workers: int) -> float:
    """Median frames/s of ``extract_features`` over the given subsets of ``tracklets`` (dense chunks)."""
    model = build_model("video", 625, backbone=backbone).eval()
    tf = build_transforms(*hw, train=False)
    warm = VideoTestDataset([tracklets[i] for i in subsets[0][:4]], SEQ, tf)
    extract_features(model, build_test_loader(warm, batch, 0), "cpu")  # warm-up (allocator, kernels)
    rates = []
    for sub in subsets:
        te = VideoTestDataset([tracklets[i] for i in sub], SEQ, tf)
        loader = build_test_loader(te, batch, workers)
        t0 = time.perf_counter()
        extract_features(model, loader, "cpu")
        rates.append(len(te) * SEQ / (time.perf_counter() - t0))
        del loader
    return statistics.median(rates)


def decode_ratio(pool_file: str, repeats: int = 400) -> tuple[float, float]:
    """(decode frames/s of a pool JPEG, of the same picture upscaled to 256x128 and re-encoded)."""
    small = Path(pool_file).read_bytes()
    with Image.open(io.BytesIO(small)) as im:
        w, h = im.size
        buf = io.BytesIO()
        im.convert("RGB").resize((128, 256), Image.BICUBIC).save(buf, "JPEG", quality=90, subsampling=0)
    big = buf.getvalue()
    rates = []
    for data in (small, big):
        t0 = time.perf_counter()
        for _ in range(repeats):
            with Image.open(io.BytesIO(data)) as im:
                np.array(im.convert("RGB"))
        rates.append(repeats / (time.perf_counter() - t0))
    return rates[0], rates[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(ROOT / DEFAULT_REHEARSAL_ROOT))
    p.add_argument("--generate", action="store_true", help="(re)generate the world and time it")
    p.add_argument("--quick", action="store_true", help="fewer/smaller timed windows (a smoke run)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--input", default="128x64", help="model/loader input HxW (MARS papers: 256x128)")
    p.add_argument("--extract-frames", type=int, default=512, help="frames per timed extraction subset")
    a = p.parse_args(argv)
    hw = tuple(int(v) for v in a.input.lower().split("x"))
    reps = 1 if a.quick else a.repeats
    root = Path(a.root)
    t_start = time.perf_counter()
    print(f"MARS-scale rehearsal at {root}; torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}; input {hw[0]}x{hw[1]}, P x K = {P} x {K}, seq_len {SEQ}\n")

    # --- generation ------------------------------------------------------------------------------------
    meta = rehearsal_meta(root)
    if meta is None or a.generate:
        meta = generate_rehearsal(root, verbose=True)
        how = "measured now"
    else:
        how = "recorded in info/rehearsal.json"
    st = meta["stats"]
    sec = meta["seconds"]
    row("generate", "wall time (render / hard-link)", f"{sec['total']:.0f} s ({sec['render']:.0f}/{sec['link']:.0f})",
        how)
    row("generate", "frame names / pool images", f"{st['frames']:,} / {st['pool_images']:,}", "counted")
    row("generate", "tracklet length min/median/mean/p99/max",
        f"{st['length_min']}/{st['length_median']:.0f}/{st['length_mean']:.0f}/{st['length_p99']:.0f}/{st['length_max']}",
        "counted")

    # --- indexing --------------------------------------------------------------------------------------
    times = []
    reset_peak()
    hwm0 = hwm_bytes()
    ds = None
    for _ in range(reps):
        ds = None
        t0 = time.perf_counter()
        ds = build_dataset("mars", root, verbose=False)
        times.append(time.perf_counter() - t0)
    assert ds is not None
    index_peak = hwm_bytes() - hwm0
    tracemalloc.start()
    again = build_dataset("mars", root, verbose=False)  # untimed: allocations of one build
    ds_held, ds_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del again
    n_train_frames = sum(len(t.paths) for t in ds.train)
    test = ds.query + ds.gallery
    n_test_frames = sum(len(t.paths) for t in test)
    print(f"  dataset: train {len(ds.train):,} tracklets / {ds.num_train_pids} ids / {n_train_frames:,} frames; "
          f"query {len(ds.query):,} ({len({t.pid for t in ds.query})} ids); gallery {len(ds.gallery):,} "
          f"({len({t.pid for t in ds.gallery})} ids incl. pid 0); test frames without junk {n_test_frames:,}")
    row("index", "build_dataset('mars') (1.19 M names)", f"{statistics.median(times):.1f} s",
        f"median of {reps}")
    row("index", "memory held by the dataset / build peak", f"{ds_held / MiB:.0f} / {ds_peak / MiB:.0f} MiB",
        "tracemalloc, one build")
    row("index", "RSS peak rise while indexing", f"{index_peak / MiB:.0f} MiB", "VmHWM")
    PEAKS.append(hwm_bytes())
    t0 = time.perf_counter()
    rep = check_dataset("mars", root, decode=False, progress=False)
    row("index", "check_dataset(decode=False) vs published MARS", f"{time.perf_counter() - t0:.0f} s",
        f"{'ok' if rep.ok else 'MISMATCH'}: {rep.files_checked:,} files, measured once")
    if not rep.ok:
        print(rep.format())

    # --- evaluation ------------------------------------------------------------------------------------
    ds_all = build_dataset("mars", root, verbose=False, mars_gallery="all")
    for name, q, g in (("remaining", ds.query, ds.gallery), ("all", ds_all.query, ds_all.gallery)):
        r = eval_in_child(q, g, 2048, reps)
        row("eval", f"evaluate_features {len(q):,} x {len(g):,}, 2048-d", f"{r['seconds']:.2f} s",
            f"median of {reps}, gallery '{name}'")
        row("eval", f"  peak RSS above inputs ({r['inputs_bytes'] / MiB:.0f} MiB)", f"{r['extra_bytes'] / MiB:.0f} MiB",
            f"fresh child; mAP {r['mAP']:.3f} on synthetic features")

    # --- train loader ----------------------------------------------------------------------------------
    batches = 5 if a.quick else 10
    reset_peak()
    fps = {}
    for workers in (0, 2):
        fps[workers], epoch_batches = train_loader_fps(ds, workers, hw, batches, reps)
        row("train", f"loader frames/s, workers={workers}", f"{fps[workers]:,.0f}",
            f"median of {reps} x {batches} batches")
    small_fps, big_fps = decode_ratio(str(next((root / "pool").iterdir())))
    row("train", "decode-only fr/s 128x64 vs 256x128 JPEG", f"{small_fps:,.0f} vs {big_fps:,.0f}",
        f"x{small_fps / big_fps:.1f} slower at MARS size")
    mars_batches = MARS_COUNTS.train_tracklets // (P * K)
    row("train", f"batches: PKSampler epoch / 8,298 // {P * K}", f"{epoch_batches} / {mars_batches}", "counted")
    best = max(fps.values())
    row("train", "loader time for one MARS epoch (8,298 // 32)",
        hms(mars_batches * P * K * SEQ / best), "EXTRAPOLATED from best fr/s")
    stage_peak("train", "VmHWM; loader workers not included")

    # --- dense extraction ------------------------------------------------------------------------------
    reset_peak()
    t0 = time.perf_counter()
    full = VideoTestDataset(test, SEQ, build_transforms(*hw, train=False))
    t_index = time.perf_counter() - t0
    n_chunks = len(full)
    del full
    tracemalloc.start()
    full = VideoTestDataset(test, SEQ, build_transforms(*hw, train=False))
    index_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del full
    row("extract", "dense chunk index, whole test set", f"{n_chunks:,} chunks", f"{t_index:.1f} s, "
        f"{index_bytes / MiB:.0f} MiB (tracemalloc), measured")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(test)).tolist()
    per_subset = (a.extract_frames // 2) if a.quick else a.extract_frames
    subsets, cur, nfr = [], [], 0
    for i in order:  # disjoint random subsets of ~per_subset frames each (MARS-like length mix)
        cur.append(i)
        nfr += len(test[i].paths)
        if nfr >= per_subset:
            subsets.append(cur)
            cur, nfr = [], 0
            if len(subsets) == reps:
                break
    ext = {}
    for bb in ("resnet18", "resnet50"):
        ext[bb] = extraction_fps(bb, test, hw, subsets, 32, 0)
        row("extract", f"{bb} dense extraction frames/s", f"{ext[bb]:,.0f}",
            f"median of {len(subsets)} subsets of ~{per_subset} frames, workers 0")
        row("extract", f"{bb} full test pass ({n_chunks * SEQ:,} frames)", hms(n_chunks * SEQ / ext[bb]),
            "EXTRAPOLATED linearly in frames")
    stage_peak("extract")

    # --- training steps (model cost) ------------------------------------------------------------------
    reset_peak()
    step = {}
    for bb in ("resnet18", "resnet50"):
        step[bb] = train_step_seconds(bb, ds.num_train_pids, hw, 1 if a.quick else 2)
        row("step", f"{bb} train step (128 frames)", f"{step[bb]:.2f} s", "median of steps after a warm-up")
        row("step", f"{bb} one MARS epoch (step + loader)",
            hms(mars_batches * max(step[bb], P * K * SEQ / best)),
            "EXTRAPOLATED: batches x max(step, loader)")
    stage_peak("step")
    row("all", "main-process peak RSS over the run", f"{max(PEAKS) / MiB:.0f} MiB", "max of the stage peaks")

    print(f"\nbenchmark wall time {time.perf_counter() - t_start:.0f} s\n")
    print("| stage | figure | value | how | load |\n|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
