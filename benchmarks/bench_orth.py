"""Benchmark of the orthogonality regularisers (ABD-Net SVDO and friends).

(a) Accuracy: relative error of `power_iteration_extremes` against eigvalsh for n_iter = 1, 2, 5, 10 on the
    Gram matrices of all 53 ResNet-50 conv weights (torchvision random init: kaiming-normal, fan_out; no
    pretrained weights are available offline) and of ResNet-50 feature maps (same random net, uniform-noise
    images), on the "rows" Gram (paper) and the "smaller" Gram.
(b) Cost: one training step (forward + backward + SGD) of the reidlab ResNet-50 image model (last stride 1,
    BNNeck) on a CPU batch of 8x3x256x128, with O.W. on every conv layer: none vs svdo vs svdo_exact vs so
    (plus variants), rounds interleaved, medians, ratios against "none" measured in the same run.

    python benchmarks/bench_orth.py [--quick] [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from reidlab.losses import WeightOrthogonality, exact_extremes, power_iteration_extremes
from reidlab.losses.orthogonal import svdo_distance
from reidlab.models import build_model, build_trunk


def _rel(a: float, b: float, scale: float) -> float:
    return abs(a - b) / max(abs(scale), 1e-30)


def accuracy_table(n_iters=(1, 2, 5, 10), quick: bool = False) -> None:
    torch.manual_seed(0)
    trunk = build_trunk("resnet50", last_stride=1).eval()
    weights = [m.weight.detach().flatten(1).double() for m in trunk.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        x = torch.rand(2, 3, 256, 128)
        t = trunk
        l1 = t.layer1(t.stem(x))
        l4 = t.layer4(t.layer3(t.layer2(l1)))
    feats = {
        "feat layer1 256x(64*32)": [l1[b].flatten(1).double() for b in range(l1.shape[0])],
        "feat layer4 2048x(16*8)": [l4[b].flatten(1).double() for b in range(l4.shape[0])],
    }
    sources = {f"conv weights (53 layers)": weights, **feats}
    print("\n(a) power_iteration_extremes vs eigvalsh (float64). Relative errors, median [max] over matrices: "
          "lambda_max; lambda_min scaled by lambda_max (lmin can be ~0) and by itself (only where lmin > 1e-9 "
          "lmax; n = how many); gap = lambda_max - lambda_min (what SVDO penalises)")
    hdr = (f"{'source':28s} {'side':8s} {'n_iter':>6s} {'err lmax':>18s} {'err lmin/lmax':>18s} "
           f"{'err lmin/lmin':>22s} {'err gap':>18s}")
    print(hdr)
    print("-" * len(hdr))
    for src, mats in sources.items():
        for side in ("rows", "smaller"):
            exact = [exact_extremes(M, side=side) for M in mats]
            for n in n_iters:
                e_max, e_min, e_own, e_gap = [], [], [], []
                for M, (emax, emin) in zip(mats, exact):
                    pmax, pmin = power_iteration_extremes(M, n, side=side)
                    emax, emin, pmax, pmin = emax.item(), emin.item(), pmax.item(), pmin.item()
                    e_max.append(_rel(pmax, emax, emax))
                    e_min.append(_rel(pmin, emin, emax))
                    if emin > 1e-9 * emax:
                        e_own.append(_rel(pmin, emin, emin))
                    e_gap.append(_rel(pmax - pmin, emax - emin, emax - emin))

                def f(v):
                    return f"{statistics.median(v):7.3f} [{max(v):6.3f}]" if v else "n/a"

                own = f"{f(e_own)} n={len(e_own)}" if e_own else "n/a"
                print(f"{src:28s} {side:8s} {n:6d} {f(e_max):>18s} {f(e_min):>18s} {own:>22s} {f(e_gap):>18s}")
        print()


class PerLayerSVDO:
    """Reference variant without grouping: one power-iteration call per conv layer (Python loop)."""

    def __init__(self, model: nn.Module, beta: float = 1e-3) -> None:
        self.convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        self.beta = beta

    def __call__(self) -> torch.Tensor:
        total = 0.0
        for c in self.convs:
            total = total + svdo_distance(c.weight.flatten(1).unsqueeze(0)).pow(2).sum()
        return self.beta * total


def step_costs(repeats: int, batch: int, quick: bool, exact_repeats: int = 2) -> None:
    torch.manual_seed(0)
    model = build_model("image", 100, backbone="resnet50", last_stride=1)
    model.train()
    x = torch.randn(batch, 3, 256, 128)
    y = torch.randint(0, 100, (batch,))
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    variants: dict[str, object] = {
        "none": None,
        "svdo": WeightOrthogonality(model, "svdo"),
        "svdo side=smaller": WeightOrthogonality(model, "svdo", side="smaller"),
        "svdo n_iter=10": WeightOrthogonality(model, "svdo", n_iter=10),
        "svdo grad=unrolled": WeightOrthogonality(model, "svdo", grad="unrolled"),
        "svdo per-layer loop": PerLayerSVDO(model),
        "so": WeightOrthogonality(model, "so"),
        "srip": WeightOrthogonality(model, "srip"),
        "svdo_exact": WeightOrthogonality(model, "svdo_exact"),
    }
    if quick:
        for k in ("svdo n_iter=10", "svdo per-layer loop", "srip"):
            variants.pop(k)
    n_conv = variants["svdo"].num_layers
    print(f"\n(b) ResNet-50 (reidlab image model, last stride 1, BNNeck) training step, batch {batch}x3x256x128, "
          f"CPU threads {torch.get_num_threads()}, O.W. on all {n_conv} conv layers "
          f"({len(variants['svdo'].groups)} equal-shape groups in {len(variants['svdo'].chunks())} chunks), {repeats} interleaved rounds "
          f"({exact_repeats} for svdo_exact), medians")

    def step(reg) -> tuple[float, float]:
        opt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        out = model(x)
        loss = F.cross_entropy(out["logits"], y)
        if reg is not None:
            loss = loss + reg()
        loss.backward()
        opt.step()
        return time.perf_counter() - t0, 0.0

    def reg_only(reg) -> float:
        opt.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        reg().backward()
        return time.perf_counter() - t0

    expensive = {"svdo_exact"}  # timed in fewer rounds: one step costs many cheap ones
    for name, reg in variants.items():  # warm-up (allocator, oneDNN kernels)
        if name not in expensive:
            step(reg)
    times: dict[str, list[float]] = {k: [] for k in variants}
    reg_times: dict[str, list[float]] = {k: [] for k in variants if k != "none"}
    for r in range(repeats):
        for name, reg in variants.items():
            if name in expensive and r >= exact_repeats:
                continue
            times[name].append(step(reg)[0])
            if reg is not None:
                reg_times[name].append(reg_only(reg))
    base = statistics.median(times["none"])
    print(f"{'regulariser':22s} {'step median s':>14s} {'ratio vs none':>14s} {'penalty fwd+bwd ms':>19s} "
          f"{'penalty / none-step':>20s}")
    for name in variants:
        med = statistics.median(times[name])
        if name == "none":
            print(f"{name:22s} {med:14.3f} {1.0:14.3f} {'-':>19s} {'-':>20s}")
            continue
        rm = statistics.median(reg_times[name])
        print(f"{name:22s} {med:14.3f} {med / base:14.3f} {rm * 1e3:19.1f} {rm / base:19.1%}")
    print("step ratios on a shared CPU are noisy; 'penalty fwd+bwd' times the regulariser alone (same rounds).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and variants")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--repeats", type=int, default=0, help="timed rounds (default 7, quick 3)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-timing", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.skip_accuracy:
        accuracy_table(quick=args.quick)
    if not args.skip_timing:
        step_costs(args.repeats or (3 if args.quick else 7), args.batch, args.quick,
                   exact_repeats=1 if args.quick else 2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
