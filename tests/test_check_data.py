"""`reidlab check-data` / reidlab.data.check: miniature copies of every layout (the generators of
test_data_layouts) checked against their own counts, planted defects (missing, zero-byte, truncated,
unreadable files, wrong identity counts) found and named, the published table's internal consistency,
and the CLI's exit codes."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import test_data_layouts as layouts
from PIL import Image, ImageFile

from reidlab.cli import main
from reidlab.data import DATASET_KINDS, DATASETS, build_dataset
from reidlab.data.check import (
    PROBLEM_KINDS,
    PUBLISHED,
    PublishedStats,
    SplitCounts,
    check_dataset,
    check_files,
    expected_stats,
)


def _mini(kind: str, train, query, gallery, cameras: int, **options) -> PublishedStats:
    return PublishedStats(title="miniature", kind=kind, cameras=cameras, options=options,
                          splits={"train": SplitCounts(*train), "query": SplitCounts(*query),
                                  "gallery": SplitCounts(*gallery)})


def write_dukereid(base: Path) -> Path:
    root = base / "dukemtmc-reid" / "DukeMTMC-reID"
    for folder, names in {"bounding_box_train": ["0005_c2_f0046985.jpg", "0008_c8_f0000001.jpg"],
                          "query": ["0010_c1_f0000100.jpg"],
                          "bounding_box_test": ["0010_c5_f0000200.jpg", "0011_c7_f0000300.jpg"]}.items():
        for n in names:
            layouts._img(root / folder / n)
    return root


# name -> (writer of the miniature under a base folder, its own counts (ids, records[, frames]), files)
MINIATURES = {
    "mars": (lambda b: layouts.write_mars(b / "mars"),
             _mini("video", (3, 4, 9), (2, 2, 4), (3, 4, 9), 3), 22),
    "market1501": (layouts.write_market, _mini("image", (3, 4), (2, 2), (3, 3), 5), 9),
    "dukemtmcreid": (write_dukereid, _mini("image", (2, 2), (1, 1), (2, 2), 5), 5),
    "msmt17": (layouts.write_msmt, _mini("image", (3, 4), (1, 1), (2, 2), 7, include_val=True), 7),
    "ilidsvid": (layouts.write_ilids, _mini("video", (2, 4, 12), (2, 2, 6), (2, 2, 6), 2), 24),
    "prid2011": (layouts.write_prid, _mini("video", (2, 4, 12), (2, 2, 6), (2, 2, 6), 2), 24),
    "dukemtmcvidreid": (layouts.write_duke_video, _mini("video", (2, 3, 7), (1, 1, 2), (2, 2, 5), 4), 14),
}


def _check(name, root, expected, **kw):
    return check_dataset(name, root, expected=expected, workers=1, progress=False, **kw)


def _truncated_jpeg(path: Path) -> None:
    """A valid JPEG cut in half (noise, so the cut lands in the scan data, not the header)."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:  # the uncut file is fine
        im.load()
    path.write_bytes(data[: len(data) // 2])


def _plant_defects(frames: list[str]) -> dict[str, str]:
    """Four defects on four distinct frames: kind -> path."""
    missing, empty, trunc, garbage = (Path(p) for p in frames[:4])
    missing.unlink()
    empty.write_bytes(b"")
    _truncated_jpeg(trunc)
    garbage.write_bytes(b"this is not an image\x00\xff" * 20)
    return {"missing": str(missing), "zero-byte": str(empty), "truncated": str(trunc), "unreadable": str(garbage)}


# ------------------------------------------------------------------------------------------------
# the published table
# ------------------------------------------------------------------------------------------------


def test_published_table_covers_every_real_dataset_and_is_consistent():
    assert set(PUBLISHED) == set(DATASETS) - {"synthetic"}
    for name, st in PUBLISHED.items():
        assert st.kind == DATASET_KINDS[name], name
        assert set(st.splits) == {"train", "query", "gallery"} and st.cameras and st.sources, name
        for split, c in st.splits.items():
            assert c.ids and c.records and c.records >= c.ids, (name, split)
            assert c.frames is None or c.frames > c.records, (name, split)
            if st.kind == "image":
                assert c.frames is None, name
    mars = PUBLISHED["mars"]
    s, f = mars.splits, mars.facts
    assert s["query"].records + s["gallery"].records == f["gallery_all_tracklets"] == 11310
    assert s["train"].records + f["test_tracklets_incl_junk"] == f["tracklets_total"]
    assert s["query"].records + s["gallery"].records <= f["test_tracklets_incl_junk"]  # the rest is junk
    assert s["train"].frames + f["test_frames_incl_junk"] == f["frames_total"]
    all_gallery, notes = expected_stats("mars", {"mars_gallery": "all"})
    assert all_gallery.splits["gallery"] == SplitCounts(ids=None, records=f["gallery_all_tracklets"]) and notes
    assert all_gallery.splits["train"] == s["train"]
    assert expected_stats("mars")[0].options["mars_gallery"] == "remaining"

    m = PUBLISHED["market1501"]
    assert m.facts["train_identities"] + m.facts["test_identities"] == m.facts["identities"]
    assert m.splits["train"].ids == m.facts["train_identities"] and m.splits["query"].ids == m.facts["test_identities"]
    assert m.splits["gallery"].ids == m.facts["test_identities"] + 1  # + the distractor pid 0
    assert m.splits["gallery"].records + m.facts["junk_images"] == m.facts["bounding_box_test_images"]

    d = PUBLISHED["dukemtmcreid"]
    assert d.splits["train"].ids + d.splits["query"].ids == d.facts["identities_in_two_or_more_cameras"]
    assert d.facts["identities_in_two_or_more_cameras"] + d.facts["distractor_identities"] == d.facts["identities"]
    assert d.splits["gallery"].ids == d.splits["query"].ids + d.facts["distractor_identities"]
    assert sum(c.records for c in d.splits.values()) == d.facts["bounding_boxes"]

    ms = PUBLISHED["msmt17"]
    assert ms.splits["query"].records + ms.splits["gallery"].records == ms.facts["test_images"]
    assert ms.splits["train"].ids + ms.splits["query"].ids == ms.facts["identities"]
    assert ms.options == {"include_val": True}

    il = PUBLISHED["ilidsvid"]
    assert il.splits["train"].ids + il.splits["query"].ids == il.facts["identities"]
    assert sum(c.records for c in il.splits.values()) == il.facts["tracklets_total"]
    pr = PUBLISHED["prid2011"]
    assert pr.splits["train"].ids + pr.splits["query"].ids == pr.facts["protocol_identities"]
    assert pr.splits["train"].records == 2 * pr.splits["train"].ids
    dv = PUBLISHED["dukemtmcvidreid"]
    assert dv.splits["gallery"].records == dv.facts["test_tracklets"]
    assert dv.splits["query"].ids == dv.splits["query"].records == dv.facts["test_identities"]
    assert dv.splits["gallery"].ids == dv.facts["test_identities"] + dv.facts["distractor_identities"]
    for v in (il, pr):  # one tracklet per identity and camera
        assert v.splits["query"].records == v.splits["gallery"].records == v.splits["query"].ids


def test_expected_stats_options_and_unknown_names():
    assert expected_stats("mars", {"min_seq_len": 3})[0].splits["train"] == SplitCounts()
    assert expected_stats("msmt17", {"include_val": False})[0].splits["train"] == SplitCounts()
    assert expected_stats("ilidsvid", {"split_id": 7})[0].splits == PUBLISHED["ilidsvid"].splits
    with pytest.raises(ValueError, match="did you mean 'mars'"):
        expected_stats("marz")
    with pytest.raises(ValueError, match="did you mean 'market1501'"):
        check_dataset("market1051", "/nowhere")


# ------------------------------------------------------------------------------------------------
# clean miniatures pass, planted defects are found
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MINIATURES))
def test_clean_miniature_passes_against_its_own_counts(tmp_path, name):
    write, expected, files = MINIATURES[name]
    write(tmp_path)
    report = _check(name, tmp_path, expected)
    assert report.ok, report.format()
    compared = [r for r in report.rows if r.compared]
    assert compared and all(r.ok for r in compared)
    assert report.files_checked == files and report.problems == []
    assert report.verdict().startswith("RESULT: OK") and "MISMATCH" not in report.format()


def test_mars_defects_are_found_and_named(tmp_path):
    root = layouts.write_mars(tmp_path / "mars")
    ds = build_dataset("mars", root, verbose=False)
    planted = _plant_defects([ds.train[0].paths[0], ds.train[0].paths[1], ds.query[0].paths[0], ds.gallery[0].paths[2]])
    report = _check("mars", root, MINIATURES["mars"][1])
    assert not report.ok and report.layout_error is None
    # the name lists reference every frame, so the deleted one is reported missing by name
    assert {p.kind: p.path for p in report.problems} == planted
    assert report.problem_counts == dict.fromkeys(PROBLEM_KINDS, 1)
    assert report.mismatches == []  # the annotation counts are intact
    text = report.format()
    for kind, path in planted.items():
        assert f"{kind}" in text and path in text
    assert "truncated" in report.verdict() and "4 defective file(s)" in report.verdict()
    # --max-listed
    short = report.format(max_listed=1)
    assert "first 1 of 4 defective file(s)" in short and "3 more" in short


def test_mars_wrong_identity_counts(tmp_path):
    expected = MINIATURES["mars"][1]
    extra = layouts.write_mars(tmp_path / "extra" / "mars", train=layouts.MARS_TRAIN + [(9, 2, 1, 2)])
    report = _check("mars", extra, expected)
    assert not report.ok and report.problems == []
    assert [r.label for r in report.mismatches] == ["train ids", "train tracklets", "train frames"]
    assert "train ids 4 found, 3 published" in report.verdict() and "MISMATCH (+1)" in report.format()
    # a missing identity folder: the reader rejects the layout, named in the report
    root = layouts.write_mars(tmp_path / "missing" / "mars")
    shutil.rmtree(root / "bbox_train" / "0005")
    report = _check("mars", root, expected)
    assert not report.ok and "bbox_train/0005" in report.layout_error
    assert "LAYOUT ERROR" in report.format() and "layout rejected" in report.verdict()


def test_market_defects_and_identity_counts(tmp_path):
    expected = MINIATURES["market1501"][1]
    root = layouts.write_market(tmp_path / "a")
    train = root / "bounding_box_train"
    gallery = root / "bounding_box_test"
    planted = _plant_defects([str(train / "0002_c1s1_000451_03.jpg"), str(root / "query" / "0003_c2s1_000301_00.jpg"),
                              str(gallery / "0001_c2s1_000301_01.jpg"), str(gallery / "0000_c1s1_000001_02.jpg")])
    report = _check("market1501", root, expected)
    # the folder listing is the layout: a deleted image is not listed, it shows as a count mismatch
    missing = planted.pop("missing")
    assert {p.kind: p.path for p in report.problems} == planted
    assert [r.label for r in report.mismatches] == ["train images"]
    assert "train images 3 found, 4 published" in report.verdict() and missing not in report.format()

    # an extra identity and a missing one
    root = layouts.write_market(tmp_path / "b")
    layouts._img(root / "bounding_box_train" / "0099_c1s1_000001_01.jpg")
    report = _check("market1501", root, expected)
    assert [r.label for r in report.mismatches] == ["train ids", "train images"] and report.problems == []
    root = layouts.write_market(tmp_path / "c")
    (root / "bounding_box_train" / "0007_c2s3_070952_01.jpg").unlink()
    report = _check("market1501", root, expected)
    assert [r.label for r in report.mismatches] == ["train ids", "train images"]
    assert "train ids 2 found, 3 published" in report.verdict()


def test_duke_video_extra_identity_folder(tmp_path):
    root = layouts.write_duke_video(tmp_path)
    layouts._img(root / "gallery" / "0040" / "0001" / "0040C1F0001X00001.jpg")
    report = _check("dukemtmcvidreid", tmp_path, MINIATURES["dukemtmcvidreid"][1])
    assert [r.label for r in report.mismatches] == ["gallery ids", "gallery tracklets", "gallery frames"]


def test_truncated_found_even_when_the_caller_lets_pil_pad_truncated_images(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = tmp_path / "cut.jpg"
    _truncated_jpeg(path)
    with Image.open(path) as im:  # the caller's setting would hide it
        im.load()
    assert [(p.kind, p.path) for p in check_files([str(path)], workers=1, progress=False)] == [("truncated", str(path))]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_process_pool_and_no_decode(tmp_path):
    root = layouts.write_mars(tmp_path / "mars")
    ds = build_dataset("mars", root, verbose=False)
    paths = [p for t in ds.train + ds.query + ds.gallery for p in t.paths]
    planted = _plant_defects([paths[0], paths[5], paths[9], paths[15]])
    in_process = check_files(paths, workers=1, progress=False)
    pooled = check_files(paths + paths[:3], workers=2, progress=True)  # duplicates are checked once
    assert pooled == in_process and {p.kind: p.path for p in pooled} == planted
    stat_only = check_files(paths, decode=False, progress=False)
    assert {p.kind: p.path for p in stat_only} == {k: planted[k] for k in ("missing", "zero-byte")}
    report = check_dataset("mars", root, expected=MINIATURES["mars"][1], decode=False, progress=False)
    assert report.problem_counts["truncated"] == 0 and "--no-decode" in report.format()


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def test_cli_exit_codes(tmp_path, capsys, monkeypatch):
    root = layouts.write_mars(tmp_path / "mars")
    assert main(["check-data", "marz", str(root)]) == 2
    assert "did you mean 'mars'" in capsys.readouterr().err
    assert main(["check-data", "mars", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["check-data", "mars", str(root), "--workers", "0"]) == 2
    capsys.readouterr()
    # the miniature against the real MARS figures: every count is a named mismatch
    assert main(["check-data", "mars", str(root), "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "train ids 3 found, 625 published" in out and "RESULT: FAIL" in out
    # against its own counts: clean, then defective
    monkeypatch.setitem(PUBLISHED, "mars", MINIATURES["mars"][1])
    assert main(["check-data", "mars", str(root), "--workers", "1"]) == 0
    assert "RESULT: OK" in capsys.readouterr().out
    (root / "bbox_test" / "0007" / "0007C2T0001F003.jpg").write_bytes(b"")
    assert main(["check-data", "mars", str(tmp_path), "--workers", "1", "--no-decode", "--max-listed", "0"]) == 1
    out = capsys.readouterr().out
    assert "zero-byte: 1" in out and "1 more" in out and "0007C2T0001F003.jpg" not in out.split("RESULT")[0]
