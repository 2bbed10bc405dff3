"""Ranked lists of a finished run (``reidlab rank RUN_DIR``): the run's model, its query/gallery
features and distances exactly as its own evaluation computes them, then ``reidlab.eval.rank_gallery``,
the figure of ``reidlab.viz.ranked`` and a CSV.

Notebook entry point: ``ranked_lists(run_dir, topk=10, queries=12, order="worst") -> (RankedLists, Figure)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reidlab.runs.records import RunRecord, atomic_write_text, resolve_record_path

__all__ = ["RunRanking", "checkpoint_run_dir", "rank_run", "ranked_lists", "ranked_table", "write_ranked_csv"]


@dataclass
class RunRanking:
    """A run's ranked lists in query order, with what produced them.

    ranked: ``reidlab.eval.RankedLists`` of every query (row i = query i).
    distmat: (Q, G) the distances the run's evaluation ranks by (re-ranked when ``eval.rerank``).
    dataset: the run's ``reidlab.data.ReIDDataset`` (query/gallery records hold the frame paths).
    """

    ranked: Any
    distmat: np.ndarray
    q_pids: np.ndarray
    q_camids: np.ndarray
    g_pids: np.ndarray
    g_camids: np.ndarray
    dataset: Any
    cfg: Any
    run_id: str
    checkpoint: Path

    def rerank(self, topk: int) -> Any:
        """The RankedLists with another ``topk`` (no feature extraction)."""
        from reidlab.eval import rank_gallery

        if topk == self.ranked.topk:
            return self.ranked
        return rank_gallery(self.distmat, self.q_pids, self.g_pids, self.q_camids, self.g_camids, topk=topk,
                            ap_mode=self.cfg.eval.ap_mode)


def checkpoint_run_dir(run_dir: str | Path, which: str = "last") -> Path:
    """The folder holding ``checkpoints/<which>.pt`` for the run at ``run_dir``.

    That is ``run_dir`` itself, or -- for a published record (``results/runs/<id>``, which keeps no
    checkpoints) -- the folder its config.json names (``results_dir/run_id``, e.g. ``work/main/runs/<id>``
    for the main job's runs). Raises FileNotFoundError naming the paths that were tried.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist (expected a run folder holding "
                                f"config.json and checkpoints/{which}.pt)")
    rec = RunRecord(run_dir)
    tried = [rec.checkpoint_path(which)]
    if tried[0].is_file():
        return run_dir
    cfg = rec.config or {}
    if cfg.get("results_dir") and cfg.get("run_id"):
        other = Path(resolve_record_path(cfg["results_dir"])) / str(cfg["run_id"])
        alt = RunRecord(other).checkpoint_path(which)
        if alt.resolve() != tried[0].resolve():
            if alt.is_file():
                return other
            tried.append(alt)
    hint = ("" if (run_dir / "config.json").is_file() else f"; {run_dir} has no config.json either, so it is "
            "probably not a run folder")
    raise FileNotFoundError(
        f"no checkpoint for run {run_dir}: expected {' or '.join(str(p) for p in tried)} (checkpoint "
        f"{which!r}; published records under results/runs keep no checkpoints -- the main job keeps "
        f"them in work/main/runs/<id>){hint}"
    )


def _distances(qf: Any, gf: Any, cfg: Any) -> np.ndarray:
    """(Q, G) distances as ``reidlab.eval.evaluate_features`` computes them for ``cfg.eval``."""
    import inspect

    from reidlab.eval import evaluate_features
    from reidlab.eval.distance import DistanceSource
    from reidlab.eval.rerank import FeaturePoints, rerank_blocks

    src = DistanceSource(qf, gf, cfg.eval.metric)
    Q, G = src.shape
    if not cfg.eval.rerank:
        return src.query_rows(0, Q).cpu().numpy()
    # the run's evaluation (engine evaluate_model) calls evaluate_features with its default k1/k2/lambda
    p = inspect.signature(evaluate_features).parameters
    k1, k2, lam, budget = (p[n].default for n in ("k1", "k2", "lambda_value", "memory_budget_bytes"))
    out = np.empty((Q, G), np.float64)
    for q0, block in rerank_blocks(FeaturePoints(src), k1, k2, lam, budget, None):
        out[q0:q0 + len(block)] = block
    return out


def rank_run(run_dir: str | Path, *, topk: int = 10, which: str = "last", device: str = "cpu",
             progress: bool = False) -> RunRanking:
    """Load a run's model and dataset, extract query/gallery features with the run's test pipeline
    (``reidlab.engine.trainer.extract_records``) and rank the gallery for every query under the run's
    evaluation settings (metric, re-ranking, ap_mode). Raises FileNotFoundError for a missing checkpoint
    or dataset root (naming the path)."""
    from reidlab.engine.trainer import extract_records, load_run_model
    from reidlab.eval import rank_gallery

    ck_dir = checkpoint_run_dir(run_dir, which)
    rec = RunRecord(ck_dir)
    try:
        model, cfg, dataset = load_run_model(ck_dir, which, device=device)
    except FileNotFoundError as e:  # the checkpoint exists: it is the dataset
        data = (rec.config or {}).get("data", {})
        raise FileNotFoundError(f"run {rec.run_id}: dataset {data.get('dataset')!r} not found at data.root "
                                f"{data.get('root')!r}: {e}") from None
    qf, qp, qc = extract_records(model, dataset.query, cfg, device, progress=progress)
    gf, gp, gc = extract_records(model, dataset.gallery, cfg, device, progress=progress)
    distmat = _distances(qf, gf, cfg)
    ranked = rank_gallery(distmat, qp, gp, qc, gc, topk=topk, ap_mode=cfg.eval.ap_mode)
    return RunRanking(ranked=ranked, distmat=distmat, q_pids=np.asarray(qp), q_camids=np.asarray(qc),
                      g_pids=np.asarray(gp), g_camids=np.asarray(gc), dataset=dataset, cfg=cfg,
                      run_id=cfg.run_id, checkpoint=rec.checkpoint_path(which))


def ranked_table(ranked: Any) -> Any:
    """One row per row of ``ranked`` (a RankedLists), in its order: query index, pid, camid, AP,
    first-match rank, counts, then per rank j = 1..k the gallery index, pid, camid, distance and match
    flag (empty cells past the query's valid gallery). AP in [0, 1]; first_match 0 = no true match."""
    import pandas as pd

    cols: dict[str, Any] = {
        "row": np.arange(len(ranked)), "query": ranked.query, "pid": ranked.q_pid, "camid": ranked.q_camid,
        "ap": ranked.ap, "first_match": ranked.first_match, "num_matches": ranked.num_matches,
        "num_valid": ranked.num_valid,
    }
    pad = ranked.gallery < 0
    for j in range(ranked.topk):
        p = pad[:, j]
        cols[f"g{j + 1}_index"] = pd.array(np.where(p, 0, ranked.gallery[:, j]), dtype="Int64")
        cols[f"g{j + 1}_pid"] = pd.array(np.where(p, 0, ranked.g_pid[:, j]), dtype="Int64")
        cols[f"g{j + 1}_camid"] = pd.array(np.where(p, 0, ranked.g_camid[:, j]), dtype="Int64")
        cols[f"g{j + 1}_distance"] = ranked.distance[:, j]
        cols[f"g{j + 1}_match"] = pd.array(ranked.match[:, j], dtype="boolean")
        for name in ("index", "pid", "camid", "match"):
            cols[f"g{j + 1}_{name}"][p] = pd.NA
    return pd.DataFrame(cols)


def write_ranked_csv(ranked: Any, path: str | Path) -> Path:
    """``ranked_table(ranked)`` as CSV at ``path`` (written atomically)."""
    return atomic_write_text(path, ranked_table(ranked).to_csv(index=False, float_format="%.6g"))


def ranked_lists(run_dir: str | Path, *, topk: int = 10, queries: int | None = 12, order: str = "worst",
                 seed: int = 0, which: str = "last", device: str = "cpu", frames_per_query: int = 3,
                 image_size: tuple[int, int] | None = None, ranking: RunRanking | None = None):
    """The ranked lists of a finished run and their figure: ``(RankedLists, Figure)``.

    The RankedLists holds every query, in display ``order`` ("worst": AP ascending, "best",
    "random" with ``seed``, "first-match": latest first true match first; queries without a true
    match last -- see ``reidlab.eval.order_queries``); the figure shows its first ``queries`` rows
    (all when None) with ``topk`` gallery entries each. ``ranking`` reuses a ``rank_run`` result (no
    second feature extraction when drawing several orders). ``image_size`` (H, W) defaults to the run's
    input size scaled to 128 px high.
    """
    from reidlab.eval import order_queries
    from reidlab.viz.ranked import plot_ranked_lists

    r = ranking if ranking is not None else rank_run(run_dir, topk=topk, which=which, device=device)
    ranked = r.rerank(topk)
    ordered = ranked.take(order_queries(ranked, order, seed=seed))
    if image_size is None:
        h, w = r.cfg.data.height, r.cfg.data.width
        image_size = (128, max(8, round(128 * w / h)))
    s = ordered.summary()
    extra = f", seed {seed}" if order == "random" else ""
    title = (f"run {r.run_id} ({r.cfg.data.dataset}, {r.checkpoint.stem} checkpoint): mAP "
             f"{100 * s['mAP']:.1f}%, rank-1 {100 * s['rank1']:.1f}% over {int(s['num_valid_queries'])} "
             f"queries  ·  order: {order}{extra}  ·  top-{topk} of the gallery without the query's "
             f"same-camera entries")
    fig = plot_ranked_lists(ordered.head(queries), r.dataset.query, r.dataset.gallery,
                            frames_per_query=frames_per_query, image_size=image_size, title=title)
    return ordered, fig
