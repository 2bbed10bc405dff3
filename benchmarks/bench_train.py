"""Training throughput of the engine vs a minimal hand-written PyTorch loop (same model, data, process).

    python benchmarks/bench_train.py [--quick] [--amp] [--repeats N] [--steps N] [--root DIR] [--threads N]

Prints frames/s of a training epoch of the default run config (ResNet-18 video model on the synthetic
world) through ``reidlab.engine`` and through a bare loop (forward, CE + triplet, backward, optimiser step),
and the ratio of their epoch times (median over interleaved repeats). Target: engine <= 1.05 x loop.
``--amp`` runs both on CUDA with autocast (and channels_last), when a GPU is present.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reidlab.config import RunConfig  # noqa: E402
from reidlab.engine import trainer as T  # noqa: E402
from reidlab.engine.distributed import DistInfo  # noqa: E402
from reidlab.engine.extraction import autocast_context  # noqa: E402


def hand_loop_epoch(model, loader, sampler, train_set, optimizer, ce, tri, steps, epoch, device, amp_dtype,
                    channels_last) -> int:  # fmt: skip
    """The baseline: what anyone would write by hand. Returns frames processed."""
    sampler.set_epoch(epoch)
    train_set.set_epoch(epoch)
    model.train()
    frames = 0
    for i, (x, pids, _) in enumerate(loader):
        if i >= steps:
            break
        x, pids = x.to(device, non_blocking=True), pids.to(device, non_blocking=True)
        with autocast_context(device, amp_dtype):
            out = model(x)
        loss = ce(out["logits"].float(), pids) + tri(out["features"].float(), pids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        frames += x.shape[0] * x.shape[1]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return frames


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 steps per epoch, 3 repeats")
    ap.add_argument("--amp", action="store_true", help="CUDA: autocast + channels_last for both loops")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="steps per timed epoch (default: one sampler pass)")
    ap.add_argument("--root", default=None, help="synthetic world folder (default: the default world)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    steps = args.steps or (2 if args.quick else None)

    over = {"run_id": "bench", "train.device": args.device, "train.amp": bool(args.amp),
            "train.channels_last": bool(args.amp), "train.steps_per_epoch": steps}  # fmt: skip
    if args.root:
        over["data.root"] = args.root
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig().override({**over, "results_dir": tmp})
        run = T._Run(cfg, DistInfo(), force=True, resume=False, progress=False)
        if args.amp and run.device.type != "cuda":
            print("--amp needs CUDA; none here: running the CPU comparison without AMP")
        t = time.perf_counter()
        run.setup()
        run._set_phase(0)
        print(f"set-up (data + model) {time.perf_counter() - t:.1f}s; device {run.device}, "
              f"amp {run.amp_dtype}, threads {torch.get_num_threads()}")  # fmt: skip
        b = run.data
        loop_model = copy.deepcopy(run.model)
        loop_opt = T._build_optimizer(cfg, [p for p in loop_model.parameters() if p.requires_grad])
        ce, tri = run.losses.ce, run.losses.triplet
        frames_per_epoch = None

        # warm-up (caches, allocator, cudnn autotune) for both, not timed
        run._train_epoch(0)
        hand_loop_epoch(loop_model, b.train_loader, b.sampler, b.train_set, loop_opt, ce, tri, run.steps, 0,
                        run.device, run.amp_dtype, run.channels_last)  # fmt: skip
        eng_t, loop_t, eng_c, loop_c = [], [], [], []
        for r in range(repeats):
            epoch = 1 + r
            order = ("engine", "loop") if r % 2 == 0 else ("loop", "engine")  # interleave against drift
            for which in order:
                if run.device.type == "cuda":
                    torch.cuda.synchronize()
                t, c = time.perf_counter(), time.process_time()
                if which == "engine":
                    run._train_epoch(epoch)
                    if run.device.type == "cuda":
                        torch.cuda.synchronize()
                    eng_t.append(time.perf_counter() - t)
                    eng_c.append(time.process_time() - c)
                    frames_per_epoch = run.steps * cfg.data.p * cfg.data.k * cfg.data.seq_len
                else:
                    hand_loop_epoch(loop_model, b.train_loader, b.sampler, b.train_set, loop_opt, ce, tri, run.steps,
                                    epoch, run.device, run.amp_dtype, run.channels_last)  # fmt: skip
                    loop_t.append(time.perf_counter() - t)
                    loop_c.append(time.process_time() - c)
            print(f"  repeat {r + 1}/{repeats}: engine {eng_t[-1]:.2f}s (cpu {eng_c[-1]:.2f}s)  "
                  f"loop {loop_t[-1]:.2f}s (cpu {loop_c[-1]:.2f}s)", flush=True)
        me, ml = statistics.median(eng_t), statistics.median(loop_t)
        ratios = [e / l for e, l in zip(eng_t, loop_t)]
        print(f"\nepoch = {run.steps} steps x {cfg.data.p}x{cfg.data.k} tracklets x {cfg.data.seq_len} frames "
              f"= {frames_per_epoch} frames ({cfg.model.backbone}, {cfg.data.height}x{cfg.data.width}, "
              f"device {run.device}{', amp ' + str(run.amp_dtype) if run.amp_dtype else ''})")  # fmt: skip
        print(f"engine : median {me:.3f}s/epoch  {frames_per_epoch / me:8.1f} frames/s")
        print(f"loop   : median {ml:.3f}s/epoch  {frames_per_epoch / ml:8.1f} frames/s")
        print(f"ratio engine/loop: {me / ml:.3f} (median of per-repeat ratios {statistics.median(ratios):.3f}; "
              f"target <= 1.05)")  # fmt: skip
        # on a shared machine wall time swings with other jobs; CPU time of this process is steadier
        print(f"ratio of the fastest repeats (least disturbed by other jobs): {min(eng_t) / min(loop_t):.3f}")
        cpu_ratio = statistics.median(eng_c) / statistics.median(loop_c)
        print(f"ratio engine/loop in process CPU time: {cpu_ratio:.3f} "
              f"(engine {statistics.median(eng_c):.3f}s, loop {statistics.median(loop_c):.3f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
