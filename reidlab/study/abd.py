"""The ABD-Net ablation on trained models: score every run of the `abd` sweep on one protocol, with paired
intervals against the bare model, and measure what the paper says O.F./O.W. do -- decorrelate.

Rows: the sweep ``sweeps/abd.yaml`` (the workbench path, three seeds per ablation row, and one-seed rows for
the released code's choices). Protocol: the fusion study's (:data:`reidlab.study.pipeline.PROTOCOL`):
every labelled test tracklet is a query against all test tracklets, cross-camera, instead of one query per
identity. Intervals: the crossed seed x query-identity paired bootstrap of :mod:`reidlab.eval.bootstrap`;
row seed s is paired with bare seed s (same data order and initial trunk weights: the seed fixes both).

Correlation, two readings (the paper shows "correlation matrix between channels" of Baseline, Baseline +
PAM + CAM and ABD-Net -- caption in the VITA-Group/ABD-Net README of 2019, commits 9a49f48 / 989265c; its
text gives no formula, so both statistics here are Pearson |r|, stated as our choice):
  * channels: the correlation between the channels of the attention branch's output map (the per-stripe
    "after" map that is pooled into the embedding) with every (frame, position) a sample -- the figure's
    "between channels"; 128 channels, >= 4,096 samples;
  * embedding: the correlation between the dimensions of the test embedding (what Euclidean retrieval sees),
    over per-frame embeddings of the test frames (up to 4,096: ~8 samples per dimension of 384) -- tracklet
    embeddings (~1,000) would give fewer samples than a reliable 384 x 384 estimate needs; their figure is
    kept as ``tracklet_embedding_abs_r``. The sampling noise floor sqrt(2 / (pi (N - 1))) is reported beside.
Reported as the mean |off-diagonal r| and the effective rank (Roy & Vetterli 2007) over the dimension count.

Diagnostics of the fidelity switches on the trained models: CAM softmax row maxima (affinity vs
max_minus energy on the same inputs, and the model's own CAMs), the O.W. term per scope (stem / backbone /
all convs) at the trained weights, and the O.F. gap per tap (shallow, res_conv_5, stripe output).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from reidlab.analysis import correlation_summary, feature_correlation
from reidlab.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from reidlab.eval.bootstrap import bootstrap_mean_ci, paired_delta_ci
from reidlab.study.pipeline import per_query_scores  # the fusion study's protocol, shared

__all__ = ["ROWS", "RunScores", "score_run", "ablation_tables", "calibration_table", "run_ablation_report"]

#: sweep variant -> (display label, what it adds to the bare two-branch model), in table order
ROWS: dict[str, tuple[str, str]] = {
    "bare": ("bare two-branch model", "global + attention branches, no attention module, no regulariser"),
    "shallow_cam": ("+ shallow CAM", "CAM after res_conv_2"),
    "cam_pam": ("+ CAM/PAM heads", "CAM and PAM heads on the attention-branch stripes"),
    "of": ("+ O.F.", "feature orthogonality on the shallow and res_conv_5 maps"),
    "ow": ("+ O.W.", "weight orthogonality on every conv (sum)"),
    "full": ("full (all of the above)", "shallow CAM + CAM/PAM + O.F. + O.W."),
    "full_released": ("full, released code path", "DANet heads, dropouts, avg pool, 3 CE + 3 triplet, raw "
                                                  "concat, O.F. positions x 32 from epoch 6, O.W. stem x 10"),
    "full_affinity": ("full, paper's affinity CAM energy", "as full, CAM softmax over a_i . a_j"),
    "ow_stem": ("+ O.W. where the released code reaches", "O.W. on the stem conv only, x 10"),
    "full_danet": ("full, DANet heads (released)", "each head wrapped in 3x3 conv C/2 ... Dropout2d 0.1 ... 1x1 conv"),
    "full_parts": ("full, per-part classifiers (released)", "3 CE + 3 triplet (0.1, margin 1.2), raw concat, "
                                                           "Dropout 0.5 + avg pool on the global branch"),
    "full_of_released": ("full, released O.F.", "O.F. on the per-stripe maps around CAM/PAM + shallow x 0.01, "
                                                  "x 32, from epoch 6"),
    "full_unrolled": ("full, unrolled power-iteration gradient", "O.F./O.W. backpropagate through the iterations"),
}
BASELINE = "bare"
CHANNEL_FRAMES = 512  # test frames whose maps give the channel correlation (x 8 positions = 4,096 samples)
EMBEDDING_FRAMES = 4096  # at most this many test frames give the per-frame embedding correlation


def noise_floor_abs_r(n: int) -> float:
    """Expected |r| of two independent Gaussian variables over n samples, sqrt(2 / (pi (n - 1))): the mean
    |off-diagonal r| that finite sampling alone produces (a decorrelated embedding cannot go below it)."""
    return float(np.sqrt(2.0 / (np.pi * max(n - 1, 1))))


@dataclass
class RunScores:
    """What one trained run contributes: per-query AP / rank-1 and the correlation and switch diagnostics."""

    run: str
    variant: str
    seed: int
    per_query: pd.DataFrame  # query, pid, ap, r1
    stats: dict[str, float]


def _variant_seed(run_id: str, sweep: str) -> tuple[str, int]:
    body = run_id[len(sweep) + 1:]
    variant, _, s = body.rpartition("-s")
    return variant, int(s)


def _test_records(cfg: Any) -> list:
    """Every test tracklet of the run's world (the MARS 'all' gallery: query tracklets included)."""
    from reidlab.data import build_dataset
    from reidlab.engine.builders import dataset_root

    return list(build_dataset(cfg.data.dataset, dataset_root(cfg, verbose=False), verbose=False,
                              mars_gallery="all").gallery)


def _frames(records: Sequence[Any], cfg: Any, n: int, seed: int) -> torch.Tensor:
    """n test frames (n, 3, H, W), one seeded draw over every frame of every tracklet, test transform."""
    from reidlab.data.loading import read_image
    from reidlab.data.transforms import build_transforms

    tf = build_transforms(cfg.data.height, cfg.data.width, train=False)
    paths = [p for r in records for p in r.paths]
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(paths), size=min(n, len(paths)), replace=False).tolist())
    raw = np.stack([read_image(paths[i]) for i in pick])  # (n, H, W, 3) uint8
    return tf(torch.from_numpy(raw).permute(0, 3, 1, 2).contiguous())


def _cam_row_max(S: list[torch.Tensor]) -> float:
    return float(torch.cat([s.max(dim=-1).values.flatten() for s in S]).mean()) if S else float("nan")


@torch.no_grad()
def _diagnostics(model: Any, frames: torch.Tensor) -> dict[str, float]:
    """Channel correlation of the attention branch's output maps, CAM row maxima (the model's own CAMs, and
    both energies on the same maps), O.W. per scope, O.F. terms per tap -- on the trained model (eval mode)."""
    from reidlab.losses import FeatureOrthogonality, WeightOrthogonality
    from reidlab.models.attention import CAM

    enc = model.encoder
    out: dict[str, float] = {}
    got: dict[str, list[torch.Tensor]] = {"after": [], "before": [], "res_conv_5": [], "intermediate": []}
    own: dict[str, list[torch.Tensor]] = {"cam": [], "shallow_cam": []}
    for chunk in torch.split(frames, 64):
        _, _, aux = enc(chunk, want_aux=True)
        pos = aux.get("of_positions", {})
        for k in got:
            got[k] += pos.get(k, [])
        for k in own:
            own[k] += aux["attention"].get(k, [])
    if got["after"]:
        maps = torch.cat([a.permute(0, 2, 3, 1).reshape(-1, a.shape[1]) for a in got["after"]]).double().numpy()
        cs = correlation_summary(maps)
        out.update(channel_abs_r=cs["mean_abs_offdiag"], channel_erank_ratio=cs["effective_rank_ratio"],
                   channel_samples=cs["samples"], channel_dims=cs["dims"])
    out["own_cam_rowmax_stripe"] = _cam_row_max(own["cam"])
    out["own_cam_rowmax_shallow"] = _cam_row_max(own["shallow_cam"])
    # both energies on the same trained maps: the shallow map (what the shallow CAM sees or would see) and the
    # attention branch's per-stripe maps ("before": what the stripe heads start from)
    for where, ts in (("shallow", got["intermediate"]), ("stripe", got["before"])):
        if ts:
            t = torch.cat(ts)[:128]
            for e in ("affinity", "max_minus"):
                out[f"cam_rowmax_{e}_{where}"] = _cam_row_max([CAM(t.shape[1], energy=e)(t, True)[1]])
    for scope in ("stem", "backbone", "all"):
        w = WeightOrthogonality(model, name="svdo", beta=1.0, exponent=2, scope=scope, reduction="sum")
        out[f"ow_gap2_sum_{scope}"] = float(w())
        out[f"ow_layers_{scope}"] = float(w.num_layers)
    of = FeatureOrthogonality(name="svdo", beta=1.0)  # per-sample mean of lambda_max - lambda_min
    for k in ("intermediate", "res_conv_5", "after"):
        if got[k]:
            out[f"of_gap_{k}"] = float(of([torch.cat(got[k])[:128]]))
    return out


def score_run(run_dir: str | Path, sweep: str = "abd") -> RunScores:
    """Score one finished run (cached in ``<run>/abd_scores.json`` + ``abd_per_query.csv``, keyed by the
    last checkpoint's SHA-256: rebuilt when the run is retrained)."""
    from reidlab.engine import extract_records, load_run_model
    from reidlab.runs.features import file_digest
    from reidlab.runs.records import RunRecord

    run_dir = Path(run_dir)
    variant, seed = _variant_seed(run_dir.name, sweep)
    ck = RunRecord(run_dir).checkpoint_path("last")
    key = file_digest(ck)
    jpath, cpath = run_dir / "abd_scores.json", run_dir / "abd_per_query.csv"
    if jpath.is_file() and cpath.is_file():
        cached = json.loads(jpath.read_text())
        if cached.get("checkpoint_sha256") == key:
            stats = {k: (np.nan if v is None else float(v)) for k, v in cached["stats"].items()}
            return RunScores(run_dir.name, variant, seed, pd.read_csv(cpath), stats)
    model, cfg, _ = load_run_model(run_dir, with_dataset=False)
    recs = _test_records(cfg)
    feats, pids, camids = extract_records(model, recs, cfg, "cpu")
    emb = feats.numpy().astype(np.float64)
    pq = per_query_scores(emb, np.asarray(pids), np.asarray(camids))
    ts = correlation_summary(emb)
    frames = _frames(recs, cfg, EMBEDDING_FRAMES, seed=0)
    with torch.no_grad():
        fe = torch.cat([model(c.unsqueeze(1) if model.task == "video" else c) for c in torch.split(frames, 128)])
    fe = fe.numpy().astype(np.float64)
    es = correlation_summary(fe)
    stats = {"mAP": float(pq.ap.mean()), "rank1": float(pq.r1.mean()), "embedding_abs_r": es["mean_abs_offdiag"],
             "embedding_erank_ratio": es["effective_rank_ratio"], "embedding_samples": es["samples"],
             "embedding_dims": es["dims"], "embedding_noise_floor": noise_floor_abs_r(len(fe)),
             "tracklet_embedding_abs_r": ts["mean_abs_offdiag"], "tracklet_samples": ts["samples"]}
    stats.update(_diagnostics(model, frames[:CHANNEL_FRAMES]))
    np.save(run_dir / "abd_embedding_corr.npy", feature_correlation(fe)[:64, :64].astype(np.float32))
    atomic_write_text(cpath, pq.to_csv(index=False))
    # JSON has no NaN (a statistic that does not apply to the run, e.g. CAM row maxima without a CAM): null
    atomic_write_json(jpath, {"checkpoint_sha256": key,
                              "stats": {k: (v if np.isfinite(v) else None) for k, v in stats.items()}})
    return RunScores(run_dir.name, variant, seed, pq, stats)


# ------------------------------------------------------------------------------------------- tables


def _training_stats(run_dir: Path, num_classes: int) -> dict[str, float]:
    """Plateau check and the last CE against chance, from the run's own records (its standard split)."""
    m = pd.read_csv(run_dir / "metrics.csv").sort_values("epoch")
    e = pd.read_csv(run_dir / "epochs.csv").sort_values("epoch")
    last2 = m["mAP"].to_numpy()[-2:]
    return {"split_mAP_prev": float(last2[0]), "split_mAP_last": float(last2[-1]),
            "plateau_gap": float(abs(last2[-1] - last2[0])), "epochs": float(e["epoch"].iloc[-1]),
            "ce_over_chance": float(e["loss_ce"].iloc[-1] / np.log(num_classes)),
            "loss_of_last": float(e["loss_of"].iloc[-1]), "loss_ow_last": float(e["loss_ow"].iloc[-1]),
            "loss_ow_first": float(e["loss_ow"].iloc[0])}


def _stack(scores: list[RunScores], variant: str, seeds: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    by_seed = {s.seed: s for s in scores if s.variant == variant}
    frames = [by_seed[k].per_query.sort_values("query") for k in seeds]
    ap = np.stack([f.ap.to_numpy() for f in frames])
    r1 = np.stack([f.r1.to_numpy() for f in frames])
    return ap, r1, frames[0].pid.to_numpy()


def ablation_tables(scores: list[RunScores], train: dict[str, dict], *, n_boot: int = 10000,
                    boot_seed: int = 0) -> pd.DataFrame:
    """One row per variant (in ROWS order): mAP / rank-1 with intervals, Δ vs the bare model (paired by seed,
    crossed seed x query-identity bootstrap), correlation statistics (mean and per-seed spread) and their Δ
    vs bare, and the training checks. ``train``: run id -> :func:`_training_stats`."""
    variants = [v for v in ROWS if any(s.variant == v for s in scores)]
    if BASELINE not in variants:
        raise ValueError(f"the ablation needs the {BASELINE!r} runs; found {sorted({s.variant for s in scores})}")
    base_seeds = sorted(s.seed for s in scores if s.variant == BASELINE)
    rows = []
    for v in variants:
        seeds = sorted(s.seed for s in scores if s.variant == v)
        paired = [k for k in seeds if k in base_seeds]
        ap, r1, pid = _stack(scores, v, seeds)
        ci = bootstrap_mean_ci(ap, pid, n_boot=n_boot, seed=boot_seed)
        r1ci = bootstrap_mean_ci(r1, pid, n_boot=n_boot, seed=boot_seed)
        row: dict[str, Any] = {"variant": v, "label": ROWS[v][0], "adds": ROWS[v][1], "seeds": len(seeds),
                               "mAP": ci.estimate, "mAP_lo": ci.lo, "mAP_hi": ci.hi,
                               "rank1": r1ci.estimate, "rank1_lo": r1ci.lo, "rank1_hi": r1ci.hi}
        if v != BASELINE and paired:
            a, _, pid_a = _stack(scores, v, paired)
            b, _, pid_b = _stack(scores, BASELINE, paired)
            if not np.array_equal(pid_a, pid_b):
                raise ValueError(f"{v} and {BASELINE} were scored on different queries")
            d = paired_delta_ci(a, b, pid_a, n_boot=n_boot, seed=boot_seed)
            row.update(delta_mAP=d.estimate, delta_lo=d.lo, delta_hi=d.hi, delta_half_width=d.half_width,
                       delta_p_positive=d.prob_positive)
        stats = {s.seed: s.stats for s in scores if s.variant == v}
        base_stats = {s.seed: s.stats for s in scores if s.variant == BASELINE}
        row["embedding_dims"] = float(np.mean([stats[k].get("embedding_dims", np.nan) for k in seeds]))
        row["embedding_noise_floor"] = float(np.mean([stats[k].get("embedding_noise_floor", np.nan) for k in seeds]))
        for key in ("embedding_abs_r", "embedding_erank_ratio", "channel_abs_r", "channel_erank_ratio"):
            vals = np.array([stats[k].get(key, np.nan) for k in seeds], dtype=float)
            row[key] = float(np.mean(vals))
            row[key + "_min"], row[key + "_max"] = float(np.min(vals)), float(np.max(vals))
            if v != BASELINE and paired:
                dv = np.array([stats[k].get(key, np.nan) - base_stats[k].get(key, np.nan) for k in paired])
                row["delta_" + key] = float(np.mean(dv))
                row["delta_" + key + "_same_sign"] = bool(np.all(dv < 0) or np.all(dv > 0))
        for key in ("own_cam_rowmax_stripe", "own_cam_rowmax_shallow", "cam_rowmax_affinity_stripe",
                    "cam_rowmax_max_minus_stripe", "cam_rowmax_affinity_shallow", "cam_rowmax_max_minus_shallow",
                    "ow_gap2_sum_stem", "ow_gap2_sum_backbone", "ow_gap2_sum_all", "ow_layers_all",
                    "of_gap_intermediate", "of_gap_res_conv_5", "of_gap_after"):
            row[key] = float(np.nanmean([stats[k].get(key, np.nan) for k in seeds])) if any(
                key in stats[k] and np.isfinite(stats[k][key]) for k in seeds) else float("nan")
        runs = [train[s.run] for s in scores if s.variant == v]
        row["plateau_gap_max"] = max(t["plateau_gap"] for t in runs)
        row["ce_over_chance_max"] = max(t["ce_over_chance"] for t in runs)
        row["loss_ow_first"] = float(np.mean([t["loss_ow_first"] for t in runs]))
        row["loss_of_last"] = float(np.mean([t["loss_of_last"] for t in runs]))
        rows.append(row)
    return pd.DataFrame(rows)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def format_ablation_markdown(t: pd.DataFrame) -> str:
    """The README/paper table: mAP, Δ vs bare, rank-1, correlations, plateau and CE checks."""
    lines = ["| row | seeds | mAP % [95 % CI] | Δ mAP vs bare [95 % CI] | rank-1 % | embedding mean abs r (Δ vs bare) "
             "| channel mean abs r (Δ vs bare) | last-two-eval gap (max, mAP pts) | last CE / ln(classes) (max) |",
             "|:---|:---:|:---:|:---:|:---:|:---:|:---:|:---:|:---:|"]
    for _, r in t.iterrows():
        delta = "baseline" if r.variant == BASELINE else (
            f"{100 * r.delta_mAP:+.1f} [{100 * r.delta_lo:+.1f}, {100 * r.delta_hi:+.1f}]")

        def corr(key: str) -> str:
            s = f"{r[key]:.3f}"
            if r.variant != BASELINE and f"delta_{key}" in r and pd.notna(r.get(f"delta_{key}")):
                mark = " (every seed)" if r.get(f"delta_{key}_same_sign") and r.seeds > 1 else ""
                s += f" ({r[f'delta_{key}']:+.3f}{mark})"
            return s

        lines.append(f"| {r.label} | {int(r.seeds)} | {_pct(r.mAP)} [{_pct(r.mAP_lo)}, {_pct(r.mAP_hi)}] | {delta} "
                     f"| {_pct(r.rank1)} | {corr('embedding_abs_r')} | {corr('channel_abs_r')} "
                     f"| {100 * r.plateau_gap_max:.2f} | {r.ce_over_chance_max:.2f} |")
    return "\n".join(lines) + "\n"


def format_switch_markdown(t: pd.DataFrame) -> str:
    """The fidelity diagnostics measured on the trained models (see module docstring)."""
    cols = [("own_cam_rowmax_stripe", "own CAM row max, stripes"), ("own_cam_rowmax_shallow", "own CAM row max, shallow"),
            ("cam_rowmax_affinity_stripe", "affinity row max, stripes"),
            ("cam_rowmax_max_minus_stripe", "max_minus row max, stripes"),
            ("cam_rowmax_affinity_shallow", "affinity row max, shallow"),
            ("cam_rowmax_max_minus_shallow", "max_minus row max, shallow"),
            ("ow_gap2_sum_stem", "sum gap² stem"), ("ow_gap2_sum_all", "sum gap² all convs"),
            ("loss_ow_first", "O.W. loss, epoch 1"), ("of_gap_intermediate", "O.F. gap shallow"),
            ("of_gap_res_conv_5", "O.F. gap res_conv_5"), ("of_gap_after", "O.F. gap stripe output")]
    head = "| row | " + " | ".join(c for _, c in cols) + " |"
    lines = [head, "|:---|" + ":---:|" * len(cols)]
    for _, r in t.iterrows():
        lines.append(f"| {r.label} | " + " | ".join("–" if pd.isna(r[k]) else f"{r[k]:.3g}" for k, _ in cols) + " |")
    return "\n".join(lines) + "\n"


def calibration_table(work: str | Path, sweep: str = "abdbeta") -> pd.DataFrame | None:
    """The O.W. beta calibration (sweeps/abd_ow_beta.yaml) from its runs' records: per variant the last CE
    over ln(classes), the last O.W. term and the split's last mAP. None when the sweep has no runs."""
    from reidlab.runs.tables import load_run

    rows = []
    for d in sorted(p for p in (Path(work) / "runs").glob(f"{sweep}-*") if p.is_dir()):
        info = load_run(d)
        if not info.finished:
            raise ValueError(f"calibration run {d.name} has not finished (state {info.status.get('state')!r})")
        k = int(info.model.get("num_classes", 80))
        e = pd.read_csv(d / "epochs.csv").sort_values("epoch")
        beta = info.config.get("loss", {}).get("ow", {})
        on = beta.get("name", "none") != "none"
        rows.append({"run": d.name, "beta": float(beta.get("beta", 0.0)) if on else 0.0,
                     "ow_first": float(e["loss_ow"].iloc[0]), "ow_last": float(e["loss_ow"].iloc[-1]),
                     "ce_over_chance": float(e["loss_ce"].iloc[-1] / np.log(k)),
                     "mAP": float(info.last_row()["mAP"]), "epochs": int(e["epoch"].iloc[-1])})
    return pd.DataFrame(rows).sort_values("beta").reset_index(drop=True) if rows else None


def format_calibration_markdown(t: pd.DataFrame) -> str:
    lines = ["| O.W. beta (sum over every conv) | O.W. term, epoch 1 | O.W. term, last epoch | last CE / ln(classes) "
             "| mAP % (split, last epoch) |", "|:---:|:---:|:---:|:---:|:---:|"]
    for _, r in t.iterrows():
        b = "0 (bare)" if r.beta == 0 else f"{r.beta:g}"
        lines.append(f"| {b} | {r.ow_first:.3g} | {r.ow_last:.3g} | {r.ce_over_chance:.3f} | {_pct(r.mAP)} |")
    return "\n".join(lines) + "\n"


def run_ablation_report(work: str | Path, *, sweep: str = "abd", n_boot: int = 10000) -> dict[str, Path]:
    """Score every finished run ``<work>/runs/<sweep>-*`` and write ``<work>/tables/abd_ablation.{md,csv}``,
    ``abd_switches.md``, ``<work>/abd/per_query_ap.csv.gz`` + ``scores.json`` and
    ``<work>/figures/abd_correlation.png``. Returns the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    from reidlab.runs.tables import load_run
    from reidlab.viz import save_figure
    from reidlab.viz.heatmaps import correlation_heatmaps

    work = Path(work)
    run_dirs = sorted(p for p in (work / "runs").glob(f"{sweep}-*") if p.is_dir())
    scores, train = [], {}
    for d in run_dirs:
        info = load_run(d)
        if not info.finished:
            raise ValueError(f"run {d.name} has not finished (state {info.status.get('state')!r}); "
                             f"train the sweep first")
        scores.append(score_run(d, sweep))
        train[d.name] = _training_stats(d, int(info.model.get("num_classes", 80)))
        print(f"[abd] {d.name}: mAP {scores[-1].stats['mAP']:.4f}", flush=True)
    if not scores:
        raise FileNotFoundError(f"no runs {sweep}-* under {work / 'runs'}")
    t = ablation_tables(scores, train, n_boot=n_boot)
    out = {}
    tables, figs, raw = work / "tables", work / "figures", work / "abd"
    out["table_md"] = atomic_write_text(tables / "abd_ablation.md", format_ablation_markdown(t))
    out["switch_md"] = atomic_write_text(tables / "abd_switches.md", format_switch_markdown(t))
    cal = calibration_table(work)
    if cal is not None:
        out["calibration_md"] = atomic_write_text(tables / "abd_ow_beta.md", format_calibration_markdown(cal))
    out["table_csv"] = atomic_write_text(tables / "abd_ablation.csv", t.to_csv(index=False))
    pq = pd.concat([s.per_query.assign(run=s.run, variant=s.variant, seed=s.seed) for s in scores])
    out["per_query"] = atomic_write_bytes(raw / "per_query_ap.csv.gz",
                                          gzip.compress(pq.to_csv(index=False).encode(), mtime=0))
    def finite(d: dict) -> dict:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in d.items()}

    out["scores"] = atomic_write_json(raw / "scores.json", {
        "protocol": "every labelled test tracklet vs all test tracklets, cross-camera (reidlab.study.pipeline.PROTOCOL)",
        "ci": f"95% percentile, paired bootstrap over seeds x query identities (crossed), {n_boot} replicates",
        "runs": {s.run: finite({**s.stats, **train[s.run]}) for s in scores}})
    shown = [v for v in ("bare", "cam_pam", "full", "full_released") if any(s.variant == v for s in scores)]
    mats = {ROWS[v][0]: np.load(work / "runs" / f"{sweep}-{v}-s0" / "abd_embedding_corr.npy") for v in shown}
    summ = {ROWS[v][0]: {"mean_abs_offdiag": float(t.set_index("variant").loc[v, "embedding_abs_r"]),
                         "dims": float(t.set_index("variant").loc[v, "embedding_dims"]),
                         "effective_rank": float(t.set_index("variant").loc[v, "embedding_erank_ratio"])
                         * float(t.set_index("variant").loc[v, "embedding_dims"]),
                         "effective_rank_ratio": float(t.set_index("variant").loc[v, "embedding_erank_ratio"])}
            for v in shown}
    fig = correlation_heatmaps(mats, summ, max_dims=64, max_cols=4,
                               title="embedding dimensions' correlation over test frames (seed 0; first 64 dimensions drawn, "
                                     "numbers over all of them, means over seeds)")
    out["figure"] = save_figure(fig, figs / "abd_correlation.png")
    return out
