"""reidlab: a notebook-driven workbench for person re-identification ablations.

Layers (each imports only from layers below it):
data, models, losses, eval  ->  engine, runs  ->  viz, notebook, analysis  ->  cli.
"""

__version__ = "0.1.0"
