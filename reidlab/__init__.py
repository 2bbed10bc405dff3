"""reidlab: a notebook-driven workbench for person re-identification ablations.

Layers (each imports only from layers below it):
atomic, suggest  ->  config  ->  data, models, losses, eval  ->  engine, runs  ->  viz, notebook, analysis,
study  ->  sweep, launchers  ->  cli.
(atomic: temp-file-and-rename writers; suggest: "did you mean …?"; neither imports anything from reidlab.)
"""

__version__ = "0.1.0"
