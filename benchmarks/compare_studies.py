"""Compare two executions of the fusion study (e.g. the same commit on an AVX-512 and an AVX2 CPU, or
`ATEN_CPU_CAPABILITY=avx2` on one machine): how far every number moved, and whether each Δ of the second
lies inside the first's 95 % interval. Prints a table and the largest movements.

    python benchmarks/compare_studies.py results/study /path/to/other/results/study
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def compare(a_dir: Path, b_dir: Path) -> pd.DataFrame:
    a = pd.read_csv(a_dir / "operators.csv")
    b = pd.read_csv(b_dir / "operators.csv")
    m = a.merge(b, on=["rate", "method"], suffixes=("_a", "_b"))
    return pd.DataFrame({
        "rate": m.rate, "method": m.method, "kind": m.kind_a,
        "mAP_a": m.mAP_a, "mAP_b": m.mAP_b, "mAP_moved": (m.mAP_b - m.mAP_a).abs(),
        "delta_a": m.delta_a, "delta_b": m.delta_b, "delta_moved": (m.delta_b - m.delta_a).abs(),
        "half_width_a": m.half_width_a,
        "b_delta_inside_a_ci": (m.delta_b >= m.delta_lo_a - 1e-9) & (m.delta_b <= m.delta_hi_a + 1e-9),
    })


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="study folder of the first execution (holds operators.csv)")
    ap.add_argument("b", type=Path, help="study folder of the second execution")
    args = ap.parse_args()
    t = compare(args.a, args.b)
    pd.set_option("display.width", 200)
    print(t.round(3).to_string(index=False))
    tt = t[t.kind == "test-time operator"]
    print(f"\ntest-time operators: mAP moved by at most {tt.mAP_moved.max():.2f} points "
          f"(median {tt.mAP_moved.median():.2f}); Δ vs mean moved by at most {tt.delta_moved.max():.2f} "
          f"(median {tt.delta_moved.median():.2f}); {int(tt.b_delta_inside_a_ci.sum())}/{len(tt)} of the second "
          "execution's Δs inside the first's 95 % CI")
    other = t[t.kind != "test-time operator"]
    if len(other):
        print(f"heads and end-to-end: mAP moved by at most {other.mAP_moved.max():.2f}; Δ by at most "
              f"{other.delta_moved.max():.2f}; {int(other.b_delta_inside_a_ci.sum())}/{len(other)} inside")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
