"""The fusion study as a whole (``sweeps/study.yaml``; run by ``python -m reidlab main``).

Given the trained runs of the study's sweep (mean-trained trunks, and end-to-end learned fusions):

1. per trunk seed and test corruption rate, the per-frame features of every test tracklet are extracted
   once and cached in the run folder (``reidlab.study.extract``);
2. every test-time operator of the spec (``reidlab.study.operators``) embeds the same features; the
   embeddings are evaluated with every labelled test tracklet as a query against all test tracklets
   (market1501 rule: same identity + same camera removed, which removes the query itself);
3. learned fusion heads are trained on each frozen trunk (``reidlab.study.heads``) and evaluated the same
   way; end-to-end runs are evaluated on their own trunks with their own fusion, same protocol;
4. every comparison with the baseline is a paired bootstrap over seeds x query identities
   (``reidlab.eval.bootstrap``); diagnostics (frame-to-frame cosine vs lag next to same-identity /
   other-camera and different-identity cosines, weight shares, embedding correlation) come from the
   same features.

Outputs (``<results>/study/``): per_query_ap.csv.gz (the raw material: every number below can be recomputed
from it), operators.csv, heads.csv, end_to_end.csv, weights.csv, cosine_lag.csv, correlation.npz,
protocol.json, study.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reidlab.eval import evaluate, pairwise_distance
from reidlab.eval.bootstrap import bootstrap_mean_ci, paired_delta_ci
from reidlab.study.frames import FrameFeatures
from reidlab.study.operators import SCOPES, BNAffine, Operator, apply_operator, weight_stats

__all__ = ["StudySpec", "load_study_spec", "run_study", "evaluate_embeddings", "PROTOCOL",
           "cosine_by_lag", "compare", "summarise"]

PROTOCOL = {
    "name": "all-vs-rest, cross-camera",
    "queries": "every labelled test tracklet (pid > 0)",
    "gallery": "every test tracklet incl. pid-0 distractors (MARS 'all' gallery); the evaluator removes "
               "same-identity same-camera entries, the query itself among them",
    "metric": "euclidean", "evaluation": "market1501", "ap_mode": "toolbox",
    "ci": "95% percentile interval of a paired bootstrap over seeds x query identities (crossed)",
}


@dataclass
class StudySpec:
    name: str
    sweep: Path
    baseline: str
    trunk_variant: str
    end_to_end: list[str]
    corruption_rates: list[float]
    operators: dict[str, Operator]
    heads: dict[str, dict]
    bootstrap: dict = field(default_factory=lambda: {"n_boot": 10000, "level": 0.95, "seed": 0})
    negative_control: str | None = None
    oracle: str | None = None
    source: Path | None = None


def load_study_spec(path: str | Path) -> StudySpec:
    """Read ``sweeps/study.yaml``; errors name the key and what was expected."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: study spec not found")
    d = yaml.safe_load(p.read_text()) or {}
    allowed = {"name", "description", "sweep", "baseline", "trunk_variant", "end_to_end", "corruption_rates",
               "operators", "heads", "bootstrap", "negative_control", "oracle"}
    bad = sorted(set(d) - allowed)
    if bad:
        raise ValueError(f"{p}: unknown keys {bad}; allowed: {sorted(allowed)}")
    for key in ("name", "sweep", "baseline", "trunk_variant", "operators", "corruption_rates"):
        if key not in d:
            raise ValueError(f"{p}: key {key!r} is required")
    ops = {}
    for name, od in (d["operators"] or {}).items():
        if not isinstance(od, dict):
            raise ValueError(f"{p}: operators.{name} must be a mapping, got {od!r}")
        ops[name] = Operator.from_dict(name, od)
    for key in ("baseline", "negative_control", "oracle"):
        if d.get(key) is not None and d[key] not in ops:
            raise ValueError(f"{p}: {key} {d[key]!r} is not one of the operators {sorted(ops)}")
    rates = [float(r) for r in d["corruption_rates"]]
    if not rates or any(not 0 <= r <= 1 for r in rates):
        raise ValueError(f"{p}: corruption_rates must be a non-empty list in [0, 1], got {d['corruption_rates']}")
    sweep = Path(d["sweep"])
    if not sweep.is_absolute():
        sweep = p.parent / sweep
    return StudySpec(name=str(d["name"]), sweep=sweep, baseline=d["baseline"], trunk_variant=d["trunk_variant"],
                     end_to_end=list(d.get("end_to_end") or []), corruption_rates=rates, operators=ops,
                     heads={k: dict(v or {}) for k, v in (d.get("heads") or {}).items()},
                     bootstrap={"n_boot": 10000, "level": 0.95, "seed": 0, **(d.get("bootstrap") or {})},
                     negative_control=d.get("negative_control"), oracle=d.get("oracle"), source=p)


# ------------------------------------------------------------------------------------------- numbers


def per_query_scores(emb: np.ndarray, pids: np.ndarray, camids: np.ndarray) -> pd.DataFrame:
    """Per-query AP and rank-1 hit of tracklet embeddings (N, D) under :data:`PROTOCOL`: every labelled
    tracklet (pid > 0) against all N, cross-camera (same identity and camera removed, the query among them).

    Returns one row per query tracklet: ``query`` (tracklet index), ``pid``, ``ap``, ``r1`` (0/1).
    Raises when a query has no cross-camera match (the protocol would silently drop it).
    """
    q = np.flatnonzero(pids > 0)
    # one (Q, N) distance matrix serves both the evaluator and the rank-1 hits
    dist = np.asarray(pairwise_distance(emb[q], emb, "euclidean"), dtype=np.float64)
    r = evaluate(dist, pids[q], pids, camids[q], camids, max_rank=1)
    if r.num_skipped_queries:
        raise ValueError(f"{r.num_skipped_queries} query tracklets have no cross-camera match; every test "
                         "identity must be seen by two cameras for this protocol")
    same = (pids[q][:, None] == pids[None, :]) & (camids[q][:, None] == camids[None, :])
    dist[same] = np.inf
    r1 = pids[np.argmin(dist, axis=1)] == pids[q]
    return pd.DataFrame({"query": q, "pid": pids[q], "ap": r.ap, "r1": r1.astype(float)})


def evaluate_embeddings(emb: np.ndarray, ff: FrameFeatures) -> pd.DataFrame:
    """:func:`per_query_scores` of tracklet embeddings (N, D) with the identities and cameras of ``ff``."""
    return per_query_scores(emb, ff.pids, ff.camids)


def cosine_by_lag(x: np.ndarray, ff: FrameFeatures, max_lag: int = 8, pairs: int = 20000,
                  seed: int = 0) -> pd.DataFrame:
    """Mean cosine of frame pairs of one tracklet at lag 1..max_lag, next to two baselines drawn at random
    (``pairs`` each): frames of the same identity under another camera, and of different identities.

    x: (F, D) per-frame vectors in the space that is evaluated (e.g. after the BNNeck). Rows: ``kind``
    ("lag", "same id, other camera", "different id"), ``lag`` (NaN for baselines), ``cos``, ``sd``, ``n``.
    """
    u = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    rows = []
    for lag in range(1, max_lag + 1):
        c = [np.sum(u[s.start:s.stop - lag] * u[s.start + lag:s.stop], 1)
             for s in (ff.frames_of(i) for i in range(ff.num_tracklets)) if s.stop - s.start > lag]
        if c:
            c = np.concatenate(c)
            rows.append({"kind": "lag", "lag": lag, "cos": float(c.mean()), "sd": float(c.std()), "n": len(c)})
    owner = np.repeat(np.arange(ff.num_tracklets), ff.lengths)
    fp, fc = ff.pids[owner], ff.camids[owner]
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(u), (2, pairs * 20))
    labelled = (fp[a] > 0) & (fp[b] > 0)
    for kind, mask in (("same id, other camera", labelled & (fp[a] == fp[b]) & (fc[a] != fc[b])),
                       ("different id", labelled & (fp[a] != fp[b]))):
        i, j = a[mask][:pairs], b[mask][:pairs]
        c = np.sum(u[i] * u[j], 1)
        rows.append({"kind": kind, "lag": np.nan, "cos": float(c.mean()) if len(c) else np.nan,
                     "sd": float(c.std()) if len(c) else np.nan, "n": len(c)})
    return pd.DataFrame(rows)


def compare(per_query: pd.DataFrame, method: str, baseline: str, boot: dict) -> dict[str, Any]:
    """Paired bootstrap of mAP(method) - mAP(baseline) over the seeds both have and the same queries.

    per_query: rows with columns seed, method, query, pid, ap (one condition, e.g. one corruption rate).
    Returns mAP of both (percent), Δ and its interval (percent points), half-width, P(Δ > 0).
    """
    a = per_query[per_query.method == method].pivot(index="query", columns="seed", values="ap")
    b = per_query[per_query.method == baseline].pivot(index="query", columns="seed", values="ap")
    seeds = sorted(set(a.columns) & set(b.columns))
    queries = a.index.intersection(b.index)
    if not seeds or len(queries) == 0:
        raise ValueError(f"no common seeds/queries between {method!r} and {baseline!r}")
    pid = per_query.drop_duplicates("query").set_index("query").loc[queries, "pid"].to_numpy()
    A, B = a.loc[queries, seeds].to_numpy().T, b.loc[queries, seeds].to_numpy().T
    kw = dict(n_boot=int(boot["n_boot"]), level=float(boot["level"]), seed=int(boot["seed"]))
    d = paired_delta_ci(A, B, pid, **kw)
    m = bootstrap_mean_ci(A, pid, **kw)
    return {"seeds": len(seeds), "queries": len(queries), "mAP": 100 * m.estimate, "mAP_lo": 100 * m.lo,
            "mAP_hi": 100 * m.hi, "baseline_mAP": 100 * float(B.mean()), "delta": 100 * d.estimate,
            "delta_lo": 100 * d.lo, "delta_hi": 100 * d.hi, "half_width": 100 * d.half_width,
            "p_better": d.prob_positive, "detected": d.excludes_zero}


# ------------------------------------------------------------------------------------------- the run


def _log(msg: str) -> None:
    print(f"[study] {msg}", flush=True)


def _base_rate(cfg: Any) -> float:
    from reidlab.data import synthetic

    return float(cfg.data.synthetic.get("corruption_rate", synthetic.DEFAULT_KNOBS["corruption_rate"]))


def _world_for_rate(cfg: Any, rate: float) -> Path:
    """Root of the test world at corruption ``rate``: the run's own world when the rate is its own, else a
    sibling world with the same knobs but that rate (same identities, other corruption), made if missing."""
    from reidlab.data import synthetic
    from reidlab.engine.builders import dataset_root

    base_root = dataset_root(cfg, verbose=False)
    if abs(_base_rate(cfg) - rate) < 1e-12:
        return base_root
    knobs = {**cfg.data.synthetic, "corruption_rate": rate}
    return synthetic.ensure_world(base_root.parent / f"{base_root.name}-corruption{rate:g}", verbose=False, **knobs)


def _test_tracklets(root: Path) -> list:
    from reidlab.data import build_dataset

    return list(build_dataset("synthetic", root, verbose=False, mars_gallery="all").gallery)


@dataclass
class _Collected:
    """What the study gathers before summarising: per-query AP rows, weight statistics, cosines, extras."""

    per_query: list = field(default_factory=list)
    weights: list = field(default_factory=list)
    cosines: list = field(default_factory=list)
    corr: dict = field(default_factory=dict)
    described: dict = field(default_factory=dict)

    def add(self, df: pd.DataFrame, fw: np.ndarray, ff: FrameFeatures, ref_w: np.ndarray, *, seed: int,
            rate: float, method: str, kind: str) -> None:
        self.per_query.append(df.assign(seed=seed, rate=rate, method=method, kind=kind))
        self.weights.append({"seed": seed, "rate": rate, "method": method, **weight_stats(fw, ff, ref_w)})


def _study_trunk(c: _Collected, spec: StudySpec, run: Path, seed: int, first: bool) -> tuple[float, int]:
    """Every operator (and head) on one mean-trained trunk at every corruption rate; returns the
    training world's rate and seq_len."""
    from reidlab.data import build_dataset
    from reidlab.engine import load_run_model
    from reidlab.runs.records import RunRecord
    from reidlab.study.extract import cached_frames, trunk_and_neck
    from reidlab.study.heads import head_embeddings, train_head

    ck = RunRecord(run).checkpoint_path("last")
    model, cfg, _ = load_run_model(run, with_dataset=False)
    bn = BNAffine.from_module(trunk_and_neck(model)[1])
    base_rate, (h, w, L) = _base_rate(cfg), (cfg.data.height, cfg.data.width, cfg.data.seq_len)
    ref: FrameFeatures | None = None  # the first world's features: its clean frames recur in the others
    for rate in sorted(spec.corruption_rates):
        wroot = _world_for_rate(cfg, rate)
        own = abs(rate - base_rate) < 1e-12
        t0 = time.monotonic()
        ff, built = cached_frames(run, f"test-corruption{rate:g}", ck, model, _test_tracklets(wroot), wroot,
                                  h, w, maps=(own or ref is None) and bool(spec.heads), reuse=ref)
        ref = ref or ff
        _log(f"{run.name}: test features at corruption {rate:g} "
             f"({'extracted' if built else 'cached'}, {len(ff.vectors)} frames, {time.monotonic() - t0:.0f} s)")
        # the plain mean's weights per scope: what "how far an operator's weights move" is measured from
        ref_w = {scope: apply_operator(Operator("mean", scope=scope), ff, bn, L)[1] for scope in SCOPES}
        for name, op in spec.operators.items():
            emb, fw = apply_operator(op, ff, bn, L)
            c.add(evaluate_embeddings(emb, ff), fw, ff, ref_w[op.scope], seed=seed, rate=rate, method=name,
                  kind="test-time operator")
        if not own:
            continue
        x = bn(ff.vectors.astype(np.float64))
        c.cosines.append(cosine_by_lag(x, ff, seed=seed).assign(seed=seed))
        if first:
            from reidlab.analysis import correlation_summary, feature_correlation

            c.corr["frames_bn"] = feature_correlation(x).astype(np.float32)
            c.described["correlation"] = {"samples": int(len(x)), "dims": int(x.shape[1]), **correlation_summary(x)}
        if spec.heads:
            train = list(build_dataset("synthetic", wroot, verbose=False).train)
            tr, _ = cached_frames(run, "train", ck, model, train, wroot, h, w, maps=True)
            for hname, hopt in spec.heads.items():
                t0 = time.monotonic()
                opts = dict(hopt)
                fusion = opts.pop("fusion", hname)
                head = train_head(fusion, tr, seq_len=L, seed=seed, **opts)
                emb, fw = head_embeddings(head, ff, L)
                df = evaluate_embeddings(emb, ff)
                c.add(df, fw, ff, ref_w["clip"], seed=seed, rate=rate, method=f"head:{hname}",
                      kind="head on frozen trunk")
                _log(f"{run.name}: head {hname} trained in {time.monotonic() - t0:.0f} s, mAP {100 * df.ap.mean():.1f}")
                c.described[f"head:{hname}"] = {"fusion": fusion, "options": hopt,
                                                "parameters": int(sum(p.numel() for p in head.parameters()))}
    return base_rate, L


def _study_end_to_end(c: _Collected, spec: StudySpec, run: Path, seed: int, variant: str, rate: float) -> None:
    """A run's own trunk and fusion (the trained video model), same protocol, at the training world's rate."""
    from reidlab.engine import load_run_model
    from reidlab.runs.records import RunRecord
    from reidlab.study.extract import cached_frames
    from reidlab.study.heads import FusionHead, head_embeddings

    model, cfg, _ = load_run_model(run, with_dataset=False)
    wroot = _world_for_rate(cfg, rate)
    # the trunk runs' cache at this rate already holds maps for the heads: ask for the same key
    maps = model.fusion.input_kind == "maps" or (variant == spec.trunk_variant and bool(spec.heads))
    ff, _ = cached_frames(run, f"test-corruption{rate:g}", RunRecord(run).checkpoint_path("last"), model,
                          _test_tracklets(wroot), wroot, cfg.data.height, cfg.data.width, maps=maps)
    emb, fw = head_embeddings(FusionHead.from_modules(model.fusion, model.neck), ff, cfg.data.seq_len)
    ref_w = apply_operator(Operator("mean"), ff, BNAffine.identity(ff.vectors.shape[1]), cfg.data.seq_len)[1]
    c.add(evaluate_embeddings(emb, ff), fw, ff, ref_w, seed=seed, rate=rate, method=f"e2e:{variant}",
          kind="trained end-to-end")
    _log(f"{run.name}: end-to-end embedding evaluated")


def summarise(pq: pd.DataFrame, weights: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    """One row per (rate, method): mAP and Δ vs its baseline with intervals (``compare``), plus the mean
    over seeds of its weight statistics. End-to-end runs compare with the end-to-end trunk variant."""
    rows = []
    for rate in spec.corruption_rates:
        cond = pq[pq.rate == rate]
        for method in cond.method.unique():
            kind = cond[cond.method == method].kind.iloc[0]
            base = f"e2e:{spec.trunk_variant}" if kind == "trained end-to-end" else spec.baseline
            op = spec.operators.get(method)
            rows.append({"rate": rate, "method": method, "kind": kind, "baseline": base,
                         "uses_ground_truth": bool(op and op.uses_ground_truth),
                         "label": (op.label if op else "") or method,
                         **compare(cond, method, base, spec.bootstrap)})
    wt = weights.groupby(["rate", "method"], as_index=False).mean(numeric_only=True).drop(columns="seed")
    return pd.DataFrame(rows).merge(wt, on=["rate", "method"], how="left")


def run_study(results_root: str | Path, spec: StudySpec, *, sweep_name: str) -> Path:
    """Run the whole study on the sweep's runs under ``results_root/runs``; outputs in ``results_root/study``.

    Returns that folder. Every missing checkpoint is named in the error (the study never reads a run the
    sweep did not produce).
    """
    import gzip
    import io

    from reidlab.atomic import atomic_write_bytes, atomic_write_json
    from reidlab.runs.records import RunRecord
    from reidlab.sweep import load_spec

    t_start = time.monotonic()
    root = Path(results_root)
    out = root / "study"
    sweep = load_spec(spec.sweep)
    seeds = {v: list(sweep.variants[v].get("seeds", sweep.seeds)) for v in sweep.variants}
    if spec.trunk_variant not in seeds:
        raise ValueError(f"study {spec.name!r}: trunk_variant {spec.trunk_variant!r} is not a variant of {spec.sweep}")

    def run_dir(variant: str, seed: int) -> Path:
        d = root / "runs" / f"{sweep_name}-{variant}-s{seed}"
        ck = RunRecord(d).checkpoint_path("last")
        if not ck.exists():
            raise FileNotFoundError(f"study {spec.name!r} needs the checkpoint {ck}, which the sweep "
                                    f"{spec.sweep.name} should have produced (run it first)")
        return d

    c = _Collected()
    trunk_seeds = seeds[spec.trunk_variant]
    if not trunk_seeds:
        raise ValueError(f"study {spec.name!r}: the sweep has no seeds for {spec.trunk_variant!r}")
    for i, seed in enumerate(trunk_seeds):
        base_rate, L = _study_trunk(c, spec, run_dir(spec.trunk_variant, seed), seed, first=i == 0)
    for variant in [spec.trunk_variant, *spec.end_to_end]:
        for seed in seeds.get(variant, []):
            _study_end_to_end(c, spec, run_dir(variant, seed), seed, variant, base_rate)
    pq = pd.concat(c.per_query, ignore_index=True)
    table = summarise(pq, pd.DataFrame(c.weights), spec)
    out.mkdir(parents=True, exist_ok=True)
    buf = pq[["rate", "method", "kind", "seed", "query", "pid", "ap", "r1"]].to_csv(index=False, float_format="%.6g")
    atomic_write_bytes(out / "per_query_ap.csv.gz", gzip.compress(buf.encode(), mtime=0))
    atomic_write_bytes(out / "operators.csv", table.to_csv(index=False, float_format="%.6g").encode())
    atomic_write_bytes(out / "cosine_lag.csv", pd.concat(c.cosines).to_csv(index=False, float_format="%.6g").encode())
    b = io.BytesIO()
    np.savez_compressed(b, **{k: v.astype(np.float16) for k, v in c.corr.items()})
    atomic_write_bytes(out / "correlation.npz", b.getvalue())
    n_queries = int(pq[(pq.method == spec.baseline) & (pq.rate == base_rate)].groupby("seed").size().iloc[0])
    atomic_write_json(out / "protocol.json", {**PROTOCOL, "seq_len": L, "base_corruption_rate": base_rate,
                                               "corruption_rates": spec.corruption_rates, "num_queries": n_queries,
                                               "query_rows": "every labelled test tracklet (pid > 0)"})
    atomic_write_json(out / "study.json", {
        "spec": str(spec.source.name if spec.source else ""), "sweep": spec.sweep.name,
        "operators": {k: {"fusion": o.fusion, "options": o.options, "scope": o.scope, "oracle": o.oracle,
                          "l2": o.l2, "label": o.label} for k, o in spec.operators.items()},
        "heads": c.described, "bootstrap": spec.bootstrap, "seeds": seeds, "baseline": spec.baseline,
        "negative_control": spec.negative_control, "oracle": spec.oracle,
        "seconds": round(time.monotonic() - t_start, 1)})
    _log(f"done in {time.monotonic() - t_start:.0f} s -> {out}")
    return out
