"""The temporal-fusion study: test-time operators on cached per-frame features of trained trunks.

Three kinds of thing, kept apart so each is testable:

* ``frames``: :class:`FrameFeatures`, the per-frame trunk features of a test (or train) set — plain arrays;
* ``operators``: pure computations on those arrays (fusion rules, the ground-truth oracle, controls,
  per-frame weight statistics), no file I/O;
* ``extract`` (trunk -> FrameFeatures, cached in the run folder through ``reidlab.runs.features``),
  ``heads`` (fusion heads trained on a frozen trunk's cached features) and ``pipeline`` (the study as a
  whole, driven by ``sweeps/study.yaml``), which sit above the engine.
"""
