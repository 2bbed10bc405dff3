"""Result tables regenerated from stored run records (`python -m reidlab table`).

Reads every `results/runs/<run_id>/` folder (config.json, model.json, protocol.json, metrics.csv,
status.json) and writes to `results/tables/`:

- `per_epoch.{md,csv,tex}`: for each variant, epoch | mAP | Rank1 | Rank5 — the lab-notes format (percent,
  one decimal, latest epoch first in Markdown), mean over seeds (CSV also has the std and seed count);
- `summary.{md,csv,tex}`: per variant, mean ± std over seeds of the LAST evaluated epoch, the model
  actually built (fusion class, parameter count, from model.json), the evaluation protocol (protocol.json),
  and the difference to the baseline variant (default: the one whose model fused with `mean`) with a
  95 % confidence interval.

Grouping: runs that differ only by seed form a variant. A run id `<stem>-s<seed>` (what `reidlab sweep`
writes) belongs to variant `<stem>`; other run ids are their own variant.

Confidence interval of a difference (variant − baseline), in percentage points:
- paired t-interval when both have the same seeds and n ≥ 2: d_s = x_s − b_s per seed,
  mean(d) ± t_{0.975, n−1} · sd(d)/√n (seeds share data order and initialisation, so pairing removes
  that shared variance);
- otherwise Welch's t-interval when both sides have ≥ 2 seeds;
- otherwise no interval ("n/a"): one seed says nothing about spread.

All metric values in the tables are percentages (the records store fractions 0..1).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "METRICS",
    "RunInfo",
    "load_run",
    "load_runs",
    "group_runs",
    "choose_baseline",
    "per_epoch_table",
    "lab_table",
    "metrics_long",
    "summary_table",
    "difference_ci",
    "format_markdown",
    "protocol_label",
    "format_latex",
    "build_tables",
    "write_tables",
]

# record column -> display name, in table order
METRICS: dict[str, str] = {"mAP": "mAP", "rank1": "Rank1", "rank5": "Rank5"}

_SEED_SUFFIX = re.compile(r"^(?P<stem>.+)-s(?P<seed>\d+)$")


@dataclass
class RunInfo:
    """One run folder, read without importing the engine (tables must rebuild from files alone)."""

    run_id: str
    run_dir: Path
    config: dict
    model: dict
    protocol: dict
    metrics: pd.DataFrame
    status: dict
    seed: int | None
    variant: str
    finished: bool
    notes: list[str] = field(default_factory=list)

    @property
    def fusion_name(self) -> str | None:
        fusion = self.model.get("fusion")
        if isinstance(fusion, dict):
            return fusion.get("name")
        return fusion if isinstance(fusion, str) else None

    @property
    def fusion_class(self) -> str | None:
        fusion = self.model.get("fusion")
        return fusion.get("class") if isinstance(fusion, dict) else None

    def last_row(self) -> pd.Series | None:
        """The last evaluated epoch (last row with a finite mAP), or None."""
        m = self.metrics
        if m.empty or "mAP" not in m:
            return None
        ok = m[np.isfinite(pd.to_numeric(m["mAP"], errors="coerce"))]
        return None if ok.empty else ok.sort_values("epoch").iloc[-1]


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    return data if isinstance(data, dict) else {}


def _find_seed(config: dict) -> int | None:
    """The run's seed: top-level `seed`, else the first `seed` key found in a nested section."""
    if isinstance(config.get("seed"), int):
        return config["seed"]
    for key in ("train", "data", "optim"):
        sec = config.get(key)
        if isinstance(sec, dict) and isinstance(sec.get("seed"), int):
            return sec["seed"]
    for sec in config.values():
        if isinstance(sec, dict) and isinstance(sec.get("seed"), int):
            return sec["seed"]
    return None


def load_run(run_dir: str | Path) -> RunInfo:
    """Read one run folder. Raises FileNotFoundError when metrics.csv is missing."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.csv"
    if not metrics_path.exists():
        raise FileNotFoundError(f"{metrics_path}: no metrics.csv in run folder {run_dir}")
    metrics = pd.read_csv(metrics_path)
    missing = [c for c in ("epoch", *METRICS) if c not in metrics.columns]
    if missing:
        raise ValueError(f"{metrics_path}: missing columns {missing}; has {list(metrics.columns)}")
    config = _read_json(run_dir / "config.json")
    status = _read_json(run_dir / "status.json")
    run_id = str(config.get("run_id") or run_dir.name)
    seed = _find_seed(config)
    m = _SEED_SUFFIX.match(run_id)
    variant = m.group("stem") if m else run_id
    if seed is None and m:
        seed = int(m.group("seed"))
    return RunInfo(
        run_id=run_id,
        run_dir=run_dir,
        config=config,
        model=_read_json(run_dir / "model.json"),
        protocol=_read_json(run_dir / "protocol.json"),
        metrics=metrics,
        status=status,
        seed=seed,
        variant=variant,
        finished=status.get("state") == "finished",  # RunRecord.is_finished, on the status read above
    )


def load_runs(runs_dir: str | Path, *, include_unfinished: bool = False) -> list[RunInfo]:
    """All run folders under `runs_dir` that have a metrics.csv (finished ones only by default)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"{runs_dir}: runs folder not found (expected results/runs/<run_id>/...)")
    runs = []
    for d in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        if not (d / "metrics.csv").exists():
            continue
        run = load_run(d)
        if run.finished or include_unfinished:
            runs.append(run)
    return runs


def _strip_common_prefix(labels: list[str]) -> dict[str, str]:
    """`fusion-mean`, `fusion-softmax_cosine` -> `mean`, `softmax_cosine` (only whole dash-parts)."""
    if len(labels) < 2:
        return {lab: lab for lab in labels}
    parts = [lab.split("-") for lab in labels]
    k = 0
    while all(len(p) > k + 1 for p in parts) and len({p[k] for p in parts}) == 1:
        k += 1
    return {lab: "-".join(p[k:]) for lab, p in zip(labels, parts)}


def group_runs(runs: Sequence[RunInfo], *, short_labels: bool = True) -> dict[str, list[RunInfo]]:
    """Variant label -> its runs (sorted by seed). Labels lose a prefix shared by all (e.g. `fusion-`)."""
    groups: dict[str, list[RunInfo]] = {}
    for r in runs:
        groups.setdefault(r.variant, []).append(r)
    rename = _strip_common_prefix(list(groups)) if short_labels else {k: k for k in groups}
    out = {}
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0, r.run_id))
        seeds = [r.seed for r in members]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"variant {key!r}: runs {[r.run_id for r in members]} repeat a seed {seeds}")
        out[rename[key]] = members
    return out


def choose_baseline(groups: dict[str, list[RunInfo]], baseline: str | None = None) -> str | None:
    """The baseline variant: `baseline` when given (must exist), else the variant whose model fused with
    `mean` (preferring a label that is exactly or ends with `mean` when several do), else None."""
    if baseline is not None:
        if baseline not in groups:
            raise ValueError(f"baseline {baseline!r} is not a variant; variants: {sorted(groups)}")
        return baseline
    means = [k for k, runs in groups.items() if runs and runs[0].fusion_name == "mean"]
    if not means:
        return None
    for k in means:
        if k == "mean" or k.endswith("-mean") or k.endswith("mean"):
            return k
    return means[0]


def per_epoch_table(runs: Sequence[RunInfo]) -> pd.DataFrame:
    """Mean and std over seeds per evaluated epoch, in percent.

    Returns columns epoch, seeds, then for each metric `<m>` and `<m>_std` (sample std, NaN for one seed),
    ascending epochs; an epoch counts only the runs that evaluated it.
    """
    frames = []
    for r in runs:
        m = r.metrics[["epoch", *METRICS]].copy()
        m = m[np.isfinite(pd.to_numeric(m["mAP"], errors="coerce"))]
        m["run"] = r.run_id
        frames.append(m)
    cols = ["epoch", "seeds"] + [c for k in METRICS for c in (k, f"{k}_std")]
    if not frames:
        return pd.DataFrame(columns=cols)
    allm = pd.concat(frames, ignore_index=True)
    rows = []
    for epoch, g in allm.groupby("epoch", sort=True):
        row: dict[str, Any] = {"epoch": int(epoch), "seeds": int(g["run"].nunique())}
        for k in METRICS:
            vals = 100.0 * g[k].astype(float).to_numpy()
            row[k] = float(vals.mean())
            row[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def metrics_long(groups: dict[str, list[RunInfo]]) -> pd.DataFrame:
    """All evaluated epochs of all runs in one long frame (percent), for curves with seed bands.

    Columns: variant, run_id, seed, epoch, mAP, rank1, rank5.
    """
    frames = []
    for label, runs in groups.items():
        for r in runs:
            m = r.metrics[["epoch", *METRICS]].copy()
            m = m[np.isfinite(pd.to_numeric(m["mAP"], errors="coerce"))]
            for k in METRICS:
                m[k] = 100.0 * m[k].astype(float)
            m.insert(0, "seed", r.seed)
            m.insert(0, "run_id", r.run_id)
            m.insert(0, "variant", label)
            frames.append(m)
    cols = ["variant", "run_id", "seed", "epoch", *METRICS]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def difference_ci(
    values: dict[Any, float], base: dict[Any, float], confidence: float = 0.95
) -> tuple[float, float, float, str]:
    """Difference of means (values − base) with a confidence interval.

    values, base: seed -> metric. Returns (diff, low, high, method) with method "paired t (n=K)",
    "Welch t" or "n/a" (low/high NaN). See the module docstring for when each applies.
    """
    from scipy import stats

    if not values or not base:
        return math.nan, math.nan, math.nan, "n/a"
    x = np.array(list(values.values()), dtype=float)
    y = np.array(list(base.values()), dtype=float)
    diff = float(x.mean() - y.mean())
    alpha = 1.0 - confidence
    if set(values) == set(base) and None not in values and len(values) >= 2:
        d = np.array([values[s] - base[s] for s in values], dtype=float)
        n = len(d)
        half = float(stats.t.ppf(1 - alpha / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
        return float(d.mean()), float(d.mean()) - half, float(d.mean()) + half, f"paired t (n={n})"
    if len(x) >= 2 and len(y) >= 2:
        vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
        se = math.sqrt(vx + vy)
        if se == 0.0:
            return diff, diff, diff, "Welch t"
        df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))
        half = float(stats.t.ppf(1 - alpha / 2, df) * se)
        return diff, diff - half, diff + half, "Welch t"
    return diff, math.nan, math.nan, "n/a"


def _protocol_key(p: dict) -> str:
    return json.dumps(p, sort_keys=True)


def protocol_label(p: dict) -> str:
    """One line naming what a protocol.json says: dataset, gallery convention, evaluation settings."""
    if not p:
        return "unknown protocol"
    ds = p.get("dataset") if isinstance(p.get("dataset"), dict) else {}
    ev = p.get("eval") if isinstance(p.get("eval"), dict) else {}
    parts = [str(p.get("dataset_name") or ds.get("dataset") or p.get("dataset") or "?")]
    if ds.get("mars_gallery"):
        parts.append(f"gallery={ds['mars_gallery']}")
    if ev:
        parts.append(f"{ev.get('protocol', '?')} eval, {ev.get('ap_mode', '?')} AP, {ev.get('metric', '?')} distance")
        if ev.get("test_sampling"):
            parts.append(f"{ev['test_sampling']} test sampling (seq_len {ev.get('seq_len')})")
        if ev.get("rerank"):
            parts.append("re-ranked")
        if ev.get("flip"):
            parts.append("flip")
    return ", ".join(parts)


def summary_table(
    groups: dict[str, list[RunInfo]], baseline: str | None = None, confidence: float = 0.95
) -> pd.DataFrame:
    """One row per variant: last-epoch mean/std over seeds (percent), model provenance, and the
    difference to the baseline (percentage points) with its CI. See the module docstring."""
    base_key = choose_baseline(groups, baseline)
    last: dict[str, dict[str, dict[Any, float]]] = {}
    rows = []
    for label, runs in groups.items():
        per_metric: dict[str, dict[Any, float]] = {k: {} for k in METRICS}
        epochs = []
        for r in runs:
            row = r.last_row()
            if row is None:
                continue
            epochs.append(int(row["epoch"]))
            for k in METRICS:
                per_metric[k][r.seed] = 100.0 * float(row[k])
        last[label] = per_metric
        first = runs[0]
        rec: dict[str, Any] = {
            "variant": label,
            "fusion": first.fusion_name,
            "fusion_class": first.fusion_class,
            "fusion_options": json.dumps((first.model.get("fusion") or {}).get("options", {}), sort_keys=True)
            if isinstance(first.model.get("fusion"), dict) else "",
            "num_parameters": first.model.get("num_parameters"),
            "protocol": _protocol_key(first.protocol) if first.protocol else "",
            "seeds": len(per_metric["mAP"]),
            "seed_list": " ".join(str(s) for s in sorted(per_metric["mAP"], key=lambda s: (s is None, s or 0))),
            "epoch": max(epochs) if epochs else math.nan,
            "epochs_agree": len(set(epochs)) <= 1,
        }
        for k in METRICS:
            vals = np.array(list(per_metric[k].values()), dtype=float)
            rec[f"{k}_mean"] = float(vals.mean()) if len(vals) else math.nan
            rec[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
        rows.append(rec)
    df = pd.DataFrame(rows)
    for k in METRICS:
        df[f"d_{k}"] = math.nan
        df[f"d_{k}_lo"] = math.nan
        df[f"d_{k}_hi"] = math.nan
    df["ci_method"] = ""
    df["baseline"] = base_key or ""
    if base_key is not None and not df.empty:
        base_protocol = df.loc[df["variant"] == base_key, "protocol"].iloc[0]
        for i, rec in df.iterrows():
            if rec["variant"] == base_key:
                df.at[i, "ci_method"] = "baseline"
                continue
            if rec["protocol"] != base_protocol:
                df.at[i, "ci_method"] = "n/a (different protocol)"
                continue
            for k in METRICS:
                d, lo, hi, method = difference_ci(last[rec["variant"]][k], last[base_key][k], confidence)
                df.at[i, f"d_{k}"], df.at[i, f"d_{k}_lo"], df.at[i, f"d_{k}_hi"] = d, lo, hi
                df.at[i, "ci_method"] = method
        # baseline first, the rest in label order
        df = pd.concat([df[df["variant"] == base_key], df[df["variant"] != base_key]], ignore_index=True)
    return df


# --------------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.1f}%"


def _mean_std(m: float, s: float) -> str:
    if not np.isfinite(m):
        return "–"
    return f"{m:.1f}" if not np.isfinite(s) else f"{m:.1f} ± {s:.1f}"


def _delta(d: float, lo: float, hi: float) -> str:
    if not np.isfinite(d):
        return "–"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{d:+.1f}"
    return f"{d:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def format_markdown(table: pd.DataFrame) -> str:
    """A DataFrame of strings as a GitHub Markdown table (no extra dependency such as tabulate)."""
    cols = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(":---:" for _ in cols) + "|"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(str(v) for v in row.tolist()) + " |")
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "–": "--", "Δ": r"$\Delta$"}


def _latex_escape(s: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in s)


def format_latex(table: pd.DataFrame, caption: str = "") -> str:
    """A DataFrame of strings as a booktabs `tabular` (needs \\usepackage{booktabs})."""
    cols = [str(c) for c in table.columns]
    out = ["\\begin{tabular}{" + "l" + "c" * (len(cols) - 1) + "}", "\\toprule",
           " & ".join(_latex_escape(c) for c in cols) + " \\\\", "\\midrule"]
    for _, row in table.iterrows():
        out.append(" & ".join(_latex_escape(str(v)) for v in row.tolist()) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    if caption:
        out.insert(0, f"% {caption}")
    return "\n".join(out) + "\n"


def _per_epoch_display(t: pd.DataFrame) -> pd.DataFrame:
    """Lab-notes layout: epoch | mAP | Rank1 | Rank5, percent with one decimal, latest epoch first."""
    t = t.sort_values("epoch", ascending=False)
    disp = pd.DataFrame({"epoch": t["epoch"].astype(int).astype(str)})
    for k, name in METRICS.items():
        disp[name] = [_pct(v) for v in t[k]]
    return disp.reset_index(drop=True)


def lab_table(runs: Sequence[RunInfo]) -> str:
    """Markdown per-epoch table of `runs` (mean over seeds) in the lab-notes layout."""
    return format_markdown(_per_epoch_display(per_epoch_table(runs)))


def _summary_display(s: pd.DataFrame, base_key: str | None) -> pd.DataFrame:
    disp = pd.DataFrame({
        "variant": s["variant"],
        "fusion class": s["fusion_class"].fillna("?").astype(str),
        "params": [f"{int(p):,}" if p is not None and np.isfinite(p) else "?" for p in s["num_parameters"]],
        "seeds": s["seeds"].astype(int).astype(str),
        "epoch": [str(int(e)) if np.isfinite(e) else "–" for e in s["epoch"]],
    })
    for k, name in METRICS.items():
        disp[name] = [_mean_std(m, sd) for m, sd in zip(s[f"{k}_mean"], s[f"{k}_std"])]
    if base_key:
        for k, name in (("mAP", "mAP"), ("rank1", "Rank1")):
            disp[f"Δ{name} vs {base_key} [95% CI]"] = [
                "baseline" if v == base_key else _delta(d, lo, hi)
                for v, d, lo, hi in zip(s["variant"], s[f"d_{k}"], s[f"d_{k}_lo"], s[f"d_{k}_hi"])
            ]
    return disp


def build_tables(
    runs_dir: str | Path, *, baseline: str | None = None, include_unfinished: bool = False
) -> dict[str, Any]:
    """Everything `write_tables` writes, as objects: {"groups", "baseline", "per_epoch": {variant: df},
    "summary": df, "files": {filename: text}}."""
    runs = load_runs(runs_dir, include_unfinished=include_unfinished)
    if not runs:
        raise FileNotFoundError(
            f"{runs_dir}: no {'' if include_unfinished else 'finished '}runs with a metrics.csv found"
        )
    groups = group_runs(runs)
    base_key = choose_baseline(groups, baseline)
    per_epoch = {label: per_epoch_table(members) for label, members in groups.items()}
    summary = summary_table(groups, base_key)

    # per-epoch files
    md = ["# Per-epoch results", "",
          "Mean over seeds, percent; latest epoch first (the lab-notes layout). Regenerate with "
          "`python -m reidlab table`.", ""]
    tex = ["% Per-epoch results, mean over seeds (percent). Regenerated by `python -m reidlab table`."]
    long_rows = []
    for label, t in per_epoch.items():
        runs_of = groups[label]
        seeds = ", ".join(str(r.seed) for r in runs_of)
        md += [f"## {label}", "",
               f"fusion `{runs_of[0].fusion_name}` ({runs_of[0].fusion_class}), seeds {seeds}", "",
               format_markdown(_per_epoch_display(t))]
        tex += [f"% {label}", format_latex(_per_epoch_display(t), caption=label)]
        lt = t.copy()
        lt.insert(0, "variant", label)
        long_rows.append(lt)
    per_epoch_csv = pd.concat(long_rows, ignore_index=True).to_csv(index=False, float_format="%.4f")

    # summary files
    protocols = sorted(set(summary["protocol"]))
    notes = [
        "Last evaluated epoch of each run (never a best-epoch pick), mean ± sample std over seeds, percent.",
        f"Δ: difference to the `{base_key}` baseline in percentage points with a 95 % confidence interval: "
        "paired t-interval over seeds when both variants ran the same seeds, Welch's t-interval otherwise, "
        "no interval with a single seed." if base_key else "No `mean` fusion baseline among the runs: no Δ.",
        "Model class, parameter count and protocol are read from each run's model.json / protocol.json.",
    ]
    if len(protocols) > 1:
        notes.append("WARNING: the runs were evaluated under different protocols; Δ only within one protocol.")
    if not summary["epochs_agree"].all():
        bad = summary.loc[~summary["epochs_agree"], "variant"].tolist()
        notes.append(f"WARNING: seeds of {bad} ended at different epochs.")
    proto_lines = [f"- protocol: {protocol_label(json.loads(p))}" for p in protocols if p]
    sdisp = _summary_display(summary, base_key)
    summary_md = "\n".join(["# Summary", "", *[f"- {n}" for n in notes], *proto_lines, "",
                            format_markdown(sdisp)])
    summary_tex = format_latex(sdisp, caption="Summary; " + " ".join(notes))
    summary_csv = summary.to_csv(index=False, float_format="%.4f")
    files = {
        "per_epoch.md": "\n".join(md),
        "per_epoch.csv": per_epoch_csv,
        "per_epoch.tex": "\n".join(tex),
        "summary.md": summary_md,
        "summary.csv": summary_csv,
        "summary.tex": summary_tex,
    }
    return {"groups": groups, "baseline": base_key, "per_epoch": per_epoch, "summary": summary, "files": files}


def _atomic_write_text(path: Path, text: str) -> None:
    from reidlab.atomic import atomic_write_text

    atomic_write_text(path, text)


def write_tables(
    runs_dir: str | Path = "results/runs",
    out_dir: str | Path = "results/tables",
    *,
    baseline: str | None = None,
    include_unfinished: bool = False,
) -> list[Path]:
    """Regenerate the table files in `out_dir` from the runs in `runs_dir`; returns the written paths."""
    built = build_tables(runs_dir, baseline=baseline, include_unfinished=include_unfinished)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in built["files"].items():
        _atomic_write_text(out / name, text)
        written.append(out / name)
    return written
