"""Run records (``results/runs/<run_id>/``): atomic writers and the RunRecord reader."""

from reidlab.atomic import atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text
from reidlab.runs.records import BEST_LABEL, METRIC_COLUMNS, RunRecord

__all__ = [
    "BEST_LABEL",
    "METRIC_COLUMNS",
    "RunRecord",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
]
