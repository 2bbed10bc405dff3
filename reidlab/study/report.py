"""The study's tables (markdown + LaTeX) from its stored outputs (``<results>/study/*.csv``); no computation
beyond formatting, so ``python -m reidlab table``-style regeneration needs no model or checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from reidlab.atomic import atomic_write_text
from reidlab.runs.tables import format_latex, format_markdown

__all__ = ["load_study", "write_study_tables", "operator_table", "corruption_table"]


def load_study(study_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict, dict]:
    """(operators table, cosine-by-lag table, protocol, study description) of a study folder."""
    d = Path(study_dir)
    if not (d / "operators.csv").exists():
        raise FileNotFoundError(f"{d / 'operators.csv'}: no study results here (run `python -m reidlab main`)")
    return (pd.read_csv(d / "operators.csv"), pd.read_csv(d / "cosine_lag.csv"),
            json.loads((d / "protocol.json").read_text()), json.loads((d / "study.json").read_text()))


def _ci(v: float, lo: float, hi: float, signed: bool = False) -> str:
    f = "{:+.1f}" if signed else "{:.1f}"
    return f"{f.format(v)} [{f.format(lo)}, {f.format(hi)}]"


def operator_table(ops: pd.DataFrame, rate: float) -> pd.DataFrame:
    """One row per method at corruption ``rate``: mAP and Δ vs its baseline with 95 % CIs (percent), the
    minimum detectable effect (CI half-width), P(better), and how far its weights move from uniform."""
    t = ops[ops.rate == rate]
    rows = []
    for _, r in t.iterrows():
        rows.append({
            "method": r.label if isinstance(r.label, str) and r.label else r.method,
            "kind": r.kind,
            "seeds": int(r.seeds),
            "mAP [95% CI]": _ci(r.mAP, r.mAP_lo, r.mAP_hi),
            "Δ mAP vs baseline [95% CI]": "baseline" if r.method == r.baseline else _ci(r.delta, r.delta_lo, r.delta_hi, True),
            "MDE (±)": "" if r.method == r.baseline else f"{r.half_width:.2f}",
            "P(better)": "" if r.method == r.baseline else f"{r.p_better:.2f}",
            "weights moved (TV from mean's)": f"{r.tv_from_reference:.3f}",
            "min w / uniform": f"{r.min_over_uniform:.3f}",
            "share on corrupted / uniform": f"{r.share_ratio:.3f}",
        })
    return pd.DataFrame(rows)


def corruption_table(ops: pd.DataFrame) -> pd.DataFrame:
    """mAP (percent) of every test-time operator and head per test corruption rate, Δ vs mean beside it
    ("—" where a method was not evaluated at that rate, e.g. heads outside the training world's rate)."""
    t = ops[ops.kind != "trained end-to-end"]
    rates = sorted(t.rate.unique())
    rows = []
    for m in dict.fromkeys(t.method):  # spec order
        g = t[t.method == m].set_index("rate")
        row = {"method": m}
        for rate in rates:
            if rate in g.index:
                r = g.loc[rate]
                row[f"mAP @ {rate:g}"] = f"{r.mAP:.1f}"
                row[f"Δ @ {rate:g}"] = _ci(r.delta, r.delta_lo, r.delta_hi, True)
            else:
                row[f"mAP @ {rate:g}"] = row[f"Δ @ {rate:g}"] = "—"
        rows.append(row)
    return pd.DataFrame(rows)


def write_study_tables(study_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write study_operators.md (the training world's corruption rate), study_corruption.md and
    study_cosine.md (+ .tex of the first two) into ``out_dir``; returns the written paths."""
    ops, cos, protocol, _ = load_study(study_dir)
    out = Path(out_dir)
    base = float(protocol["base_corruption_rate"])
    head = (f"Protocol: {protocol['name']} — {protocol['num_queries']} query tracklets; {protocol['ci']}. "
            "mAP and Δ in percent; MDE = CI half-width, the smallest difference this comparison can detect.\n\n")
    files = {
        "study_operators": (f"## Test-time operators, heads and end-to-end runs (test corruption {base:g})\n\n"
                            + head, operator_table(ops, base)),
        "study_corruption": ("## mAP vs test corruption rate (same trunks, same identities)\n\n" + head,
                             corruption_table(ops)),
    }
    written = []
    for name, (title, df) in files.items():
        written.append(atomic_write_text(out / f"{name}.md", title + format_markdown(df)))
        written.append(atomic_write_text(out / f"{name}.tex", format_latex(df)))
    c = cos.groupby(["kind", "lag"], dropna=False, as_index=False)[["cos", "sd"]].mean()
    c = c.assign(lag=c.lag.map(lambda v: "" if v != v else str(int(v))), cos=c.cos.map("{:.3f}".format),
                 sd=c.sd.map("{:.3f}".format))
    written.append(atomic_write_text(out / "study_cosine.md",
                                     "## Frame cosine (post-BNNeck embedding space) vs lag, with baselines "
                                     "(mean over seeds; sd = spread over frame pairs)\n\n" + format_markdown(c)))
    return written
