"""Dataset readers on miniature copies of the published layouts (written here, tiny images, real .mat)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from reidlab.data import DATASETS, Sample, Tracklet, build_dataset
from reidlab.data.datasets import DatasetFormatError


def _img(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.fromarray(np.full((8, 4, 3), value, np.uint8)).save(path, fmt)


# ------------------------------------------------------------------------------------------------
# MARS
# ------------------------------------------------------------------------------------------------

# (pid, cam 1-based, tracklet, n_frames)
MARS_TRAIN = [(1, 1, 1, 3), (1, 2, 1, 2), (2, 1, 1, 2), (5, 3, 1, 2)]
MARS_TEST = [(7, 1, 1, 2), (7, 2, 1, 3), (7, 1, 2, 2), (8, 2, 1, 2), (8, 3, 1, 2), (0, 1, 1, 2), (-1, 2, 1, 2)]
MARS_QUERY = [1, 4]  # 1-based rows of the test table


def _mars_name(pid, cam, t, f):
    p = "00-1" if pid == -1 else f"{pid:04d}"
    return f"{p}C{cam}T{t:04d}F{f:03d}.jpg"


def write_mars(root: Path, train=MARS_TRAIN, test=MARS_TEST, query=MARS_QUERY, images=True) -> Path:
    info = root / "info"
    info.mkdir(parents=True)
    for split, rows, key in (("train", train, "track_train_info"), ("test", test, "track_test_info")):
        names, table = [], []
        for pid, cam, t, n in rows:
            start = len(names) + 1
            for f in range(1, n + 1):
                name = _mars_name(pid, cam, t, f)
                names.append(name)
                if images:
                    _img(root / f"bbox_{split}" / name[:4] / name)
            table.append([start, len(names), pid, cam])
        (info / f"{split}_name.txt").write_text("\n".join(names) + "\n")
        (root / f"bbox_{split}").mkdir(exist_ok=True)
        scipy.io.savemat(str(info / f"tracks_{split}_info.mat"), {key: np.array(table, float).reshape(-1, 4)})
    scipy.io.savemat(str(info / "query_IDX.mat"), {"query_IDX": np.array([query], float)})
    return root


@pytest.fixture
def mars(tmp_path):
    return write_mars(tmp_path / "mars")


def test_mars_counts_relabel_and_query_gallery(mars):
    ds = build_dataset("mars", mars, verbose=False)
    assert ds.kind == "video" and ds.name == "mars"
    assert ds.protocol["dataset"] == "mars" and ds.protocol["mars_gallery"] == "remaining"
    json.dumps(ds.protocol)
    # train: original pids 1, 2, 5 -> 0, 1, 2 in pid order; cameras 0-based
    assert [(t.pid, t.camid, len(t.paths)) for t in ds.train] == [(0, 0, 3), (0, 1, 2), (1, 0, 2), (2, 2, 2)]
    assert ds.num_train_pids == 3 and ds.num_train_cams == 3
    assert ds.train[0].paths[0].endswith("bbox_train/0001/0001C1T0001F001.jpg")
    assert all(t.corruption is None for t in ds.train)
    # query = rows 1 and 4 of the test table; original pids kept
    assert [(t.pid, t.camid) for t in ds.query] == [(7, 0), (8, 1)]
    # remaining gallery: rows 2, 3, 5, 6 (junk row 7 dropped, distractor pid 0 kept)
    assert [(t.pid, t.camid) for t in ds.gallery] == [(7, 1), (7, 0), (8, 2), (0, 0)]
    assert ds.protocol["junk_dropped"] == 1


def test_mars_gallery_all_includes_queries(mars):
    ds = build_dataset("mars", mars, verbose=False, mars_gallery="all")
    assert ds.protocol["mars_gallery"] == "all"
    assert [(t.pid, t.camid) for t in ds.gallery] == [(7, 0), (7, 1), (7, 0), (8, 1), (8, 2), (0, 0)]
    assert ds.query[0] in ds.gallery and ds.query[1] in ds.gallery
    with pytest.raises(ValueError, match="mars_gallery"):
        build_dataset("mars", mars, verbose=False, mars_gallery="rest")


def test_mars_parent_folder_and_summary(mars, capsys):
    ds = build_dataset("mars", mars.parent, verbose=True)
    out = capsys.readouterr().out
    assert "train" in out and "query" in out and "gallery" in out and "# tracklets" in out
    assert len(ds.train) == 4
    s = ds.summary()
    # train row: 3 ids, 4 tracklets, 9 frames, 3 cams
    row = [line for line in s.splitlines() if line.strip().startswith("train")][0]
    assert [c.strip() for c in row.split("|")][1:] == ["3", "4", "9", "3"]


def test_mars_min_seq_len_filters_train_only(mars):
    ds = build_dataset("mars", mars, verbose=False, min_seq_len=3)
    assert [len(t.paths) for t in ds.train] == [3]
    assert len(ds.query) == 2 and len(ds.gallery) == 4


def test_mars_missing_root_and_files(tmp_path, mars):
    with pytest.raises(FileNotFoundError, match="Expected layout") as e:
        build_dataset("mars", tmp_path / "nowhere", verbose=False)
    assert "nowhere" in str(e.value)
    (mars / "info" / "query_IDX.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"info/query_IDX\.mat") as e:
        build_dataset("mars", mars, verbose=False)
    assert "tracks_train_info.mat" in str(e.value)  # the layout is described


def test_mars_missing_image_folder(mars):
    import shutil
    shutil.rmtree(mars / "bbox_train" / "0005")
    with pytest.raises(FileNotFoundError, match="bbox_train/0005"):
        build_dataset("mars", mars, verbose=False)


def test_mars_malformed_name(tmp_path):
    root = write_mars(tmp_path / "mars")
    names = (root / "info" / "train_name.txt").read_text().splitlines()
    names[1] = "0001X1T0001F002.jpg"
    (root / "info" / "train_name.txt").write_text("\n".join(names))
    with pytest.raises(DatasetFormatError, match="0001X1T0001F002.jpg"):
        build_dataset("mars", root, verbose=False)


@pytest.mark.parametrize("what", ["person", "camera"])
def test_mars_tracklet_mixing_persons_or_cameras(tmp_path, what):
    root = write_mars(tmp_path / "mars")
    names = (root / "info" / "train_name.txt").read_text().splitlines()
    names[1] = "0002C1T0001F002.jpg" if what == "person" else "0001C4T0001F002.jpg"
    (root / "info" / "train_name.txt").write_text("\n".join(names))
    with pytest.raises(DatasetFormatError, match="mixes persons or cameras") as e:
        build_dataset("mars", root, verbose=False)
    assert "row 1 of tracks_train_info.mat" in str(e.value)


def test_mars_bad_tables(tmp_path):
    root = write_mars(tmp_path / "a")
    scipy.io.savemat(str(root / "info" / "query_IDX.mat"), {"query_IDX": np.array([[1, 99]], float)})
    with pytest.raises(DatasetFormatError, match="query_IDX"):
        build_dataset("mars", root, verbose=False)
    root = write_mars(tmp_path / "b")
    scipy.io.savemat(str(root / "info" / "tracks_train_info.mat"), {"track_train_info": np.array([[1, 50, 1, 1]], float)})
    with pytest.raises(DatasetFormatError, match="outside 1..9"):
        build_dataset("mars", root, verbose=False)
    root = write_mars(tmp_path / "c")
    scipy.io.savemat(str(root / "info" / "tracks_train_info.mat"), {"track_train_info": np.zeros((3, 2))})
    with pytest.raises(DatasetFormatError, match="N x 4"):
        build_dataset("mars", root, verbose=False)


def test_mars_empty_split(tmp_path):
    root = write_mars(tmp_path / "mars", train=[])
    with pytest.raises(DatasetFormatError, match="train split is empty"):
        build_dataset("mars", root, verbose=False)
    # a train set of junk/distractors only is empty too
    root = write_mars(tmp_path / "mars2", train=[(-1, 1, 1, 2), (0, 1, 1, 2)])
    with pytest.raises(DatasetFormatError, match="train split is empty"):
        build_dataset("mars", root, verbose=False)


def test_mars_attaches_corruption_sidecar(mars):
    frames = {"0001C1T0001F002.jpg": {"kind": "blur", "radius": 3.0}, "0007C2T0001F003.jpg": {"kind": "occluder"}}
    (mars / "info" / "corruption.json").write_text(json.dumps({"format": "reidlab-corruption/1", "frames": frames}))
    ds = build_dataset("mars", mars, verbose=False)
    assert ds.train[0].corruption == (None, "blur", None)
    assert ds.train[1].corruption == (None, None)
    assert ds.gallery[0].corruption == (None, None, "occluder")
    assert ds.protocol["corruption_ground_truth"] is True
    (mars / "info" / "corruption.json").write_text(json.dumps({"format": "reidlab-corruption/1",
                                                                "frames": {"x.jpg": {"kind": "smudge"}}}))
    with pytest.raises(ValueError, match="smudge"):
        build_dataset("mars", mars, verbose=False)


# ------------------------------------------------------------------------------------------------
# DukeMTMC-VideoReID
# ------------------------------------------------------------------------------------------------


def write_duke_video(base: Path) -> Path:
    root = base / "dukemtmc-vidreid" / "DukeMTMC-VideoReID"
    spec = {"train": [(3, 1, 2, 3), (3, 2, 5, 2), (9, 1, 1, 2)],
            "query": [(20, 1, 2, 2)],
            "gallery": [(20, 2, 6, 3), (30, 3, 1, 2)]}
    for split, rows in spec.items():
        for pid, tid, cam, n in rows:
            for f in range(n, 0, -1):  # written in reverse: the reader must order by F
                _img(root / split / f"{pid:04d}" / f"{tid:04d}" / f"{pid:04d}C{cam}F{f:04d}X{1000 + f:05d}.jpg")
    return root


def test_duke_video_layout(tmp_path):
    root = write_duke_video(tmp_path)
    for arg in (tmp_path, tmp_path / "dukemtmc-vidreid", root):
        ds = build_dataset("dukemtmcvidreid", arg, verbose=False)
        assert [(t.pid, t.camid, len(t.paths)) for t in ds.train] == [(0, 1, 3), (0, 4, 2), (1, 0, 2)]
        assert [(t.pid, t.camid) for t in ds.query] == [(20, 1)]
        assert [(t.pid, t.camid) for t in ds.gallery] == [(20, 5), (30, 0)]
    frames = [Path(p).name for p in ds.train[0].paths]
    assert frames == sorted(frames) and frames[0].startswith("0003C2F0001")


def test_duke_video_errors(tmp_path):
    root = write_duke_video(tmp_path)
    _img(root / "train" / "0003" / "0001" / "0003C7F0009X01009.jpg")
    with pytest.raises(DatasetFormatError, match=r"mixes persons or cameras") as e:
        build_dataset("dukemtmcvidreid", root, verbose=False)
    assert "0003/0001" in str(e.value)
    (root / "train" / "0003" / "0001" / "0003C7F0009X01009.jpg").unlink()
    _img(root / "query" / "0020" / "0001" / "frame1.jpg")
    with pytest.raises(DatasetFormatError, match="frame1.jpg"):
        build_dataset("dukemtmcvidreid", root, verbose=False)
    import shutil
    shutil.rmtree(root / "query")
    with pytest.raises(FileNotFoundError, match="query"):
        build_dataset("dukemtmcvidreid", root, verbose=False)


# ------------------------------------------------------------------------------------------------
# iLIDS-VID
# ------------------------------------------------------------------------------------------------


def write_ilids(base: Path, persons=(1, 2, 4, 7), ls_set=((2, 4, 1, 3), (1, 2, 3, 4))) -> Path:
    root = base / "ilids-vid"
    for cam in (1, 2):
        for p in persons:
            for f in (10, 3, 25):
                _img(root / "i-LIDS-VID" / "sequences" / f"cam{cam}" / f"person{p:03d}" / f"cam{cam}_person{p:03d}_{f:05d}.png")
    split_dir = root / "train-test people splits"
    split_dir.mkdir(parents=True)
    scipy.io.savemat(str(split_dir / "train_test_splits_ilidsvid.mat"), {"ls_set": np.array(ls_set, float)})
    return root


def test_ilidsvid_layout(tmp_path):
    root = write_ilids(tmp_path)
    ds = build_dataset("ilidsvid", tmp_path, verbose=False)
    # split 0: first half (indices 2, 4 -> person002, person007) test; second half (1, 3 -> person001, 004) train
    assert [(t.pid, t.camid) for t in ds.train] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [(t.pid, t.camid) for t in ds.query] == [(2, 0), (7, 0)]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(2, 1), (7, 1)]
    assert [Path(p).name[-9:-4] for p in ds.query[0].paths] == ["00003", "00010", "00025"]
    ds1 = build_dataset("ilidsvid", root, verbose=False, split_id=1)
    assert [t.pid for t in ds1.query] == [1, 2] and ds1.protocol["split_id"] == 1
    with pytest.raises(ValueError, match="split_id"):
        build_dataset("ilidsvid", root, verbose=False, split_id=2)


def test_ilidsvid_errors(tmp_path):
    root = write_ilids(tmp_path / "a")
    _img(root / "i-LIDS-VID" / "sequences" / "cam1" / "person002" / "cam1_person004_00099.png")
    with pytest.raises(DatasetFormatError, match="mixes persons or cameras"):
        build_dataset("ilidsvid", root, verbose=False)
    root = write_ilids(tmp_path / "b")
    (root / "train-test people splits" / "train_test_splits_ilidsvid.mat").unlink()
    with pytest.raises(FileNotFoundError, match="train_test_splits_ilidsvid.mat"):
        build_dataset("ilidsvid", root, verbose=False)
    root = write_ilids(tmp_path / "c")
    _img(root / "i-LIDS-VID" / "sequences" / "cam2" / "person001" / "img.png")
    with pytest.raises(DatasetFormatError, match="img.png"):
        build_dataset("ilidsvid", root, verbose=False)


# ------------------------------------------------------------------------------------------------
# PRID2011
# ------------------------------------------------------------------------------------------------


def write_prid(base: Path) -> Path:
    root = base / "prid2011"
    for cam, persons in (("cam_a", (1, 2, 3, 4, 5)), ("cam_b", (1, 2, 3, 4, 6))):
        for p in persons:
            for f in (2, 1, 3):
                _img(root / "prid_2011" / "multi_shot" / cam / f"person_{p:04d}" / f"{f:04d}.png")
    splits = [{"train": ["person_0001", "person_0003"], "test": ["person_0002", "person_0004"]},
              {"train": ["person_0002", "person_0004"], "test": ["person_0001", "person_0003"]}]
    (root / "splits_prid2011.json").write_text(json.dumps(splits))
    return root


def test_prid2011_layout_and_errors(tmp_path):
    root = write_prid(tmp_path)
    ds = build_dataset("prid2011", tmp_path, verbose=False)
    assert [(t.pid, t.camid, len(t.paths)) for t in ds.train] == [(0, 0, 3), (0, 1, 3), (1, 0, 3), (1, 1, 3)]
    assert [(t.pid, t.camid) for t in ds.query] == [(2, 0), (4, 0)]
    assert [(t.pid, t.camid) for t in ds.gallery] == [(2, 1), (4, 1)]
    assert [Path(p).name for p in ds.query[0].paths] == ["0001.png", "0002.png", "0003.png"]
    assert [t.pid for t in build_dataset("prid2011", root, verbose=False, split_id=1).query] == [1, 3]
    (root / "splits_prid2011.json").write_text(json.dumps([{"train": ["person_0005"], "test": ["person_0001"]}]))
    with pytest.raises(FileNotFoundError, match=r"cam_b/person_0005"):
        build_dataset("prid2011", root, verbose=False)
    (root / "splits_prid2011.json").unlink()
    with pytest.raises(FileNotFoundError, match="splits_prid2011.json"):
        build_dataset("prid2011", root, verbose=False)


# ------------------------------------------------------------------------------------------------
# image datasets
# ------------------------------------------------------------------------------------------------


def write_market(base: Path) -> Path:
    root = base / "market1501" / "Market-1501-v15.09.15"
    files = {
        "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c3s1_000551_01.jpg", "0007_c2s3_070952_01.jpg",
                               "0011_c6s1_000001_01.jpg"],
        "query": ["0001_c1s1_001051_00.jpg", "0003_c2s1_000301_00.jpg"],
        "bounding_box_test": ["0001_c2s1_000301_01.jpg", "0003_c4s1_000001_01.jpg", "0000_c1s1_000001_02.jpg",
                              "-1_c1s1_000401_03.jpg"],
    }
    for folder, names in files.items():
        for n in names:
            _img(root / folder / n)
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"x")
    return root


def test_market1501_layout(tmp_path):
    root = write_market(tmp_path)
    for arg in (tmp_path, tmp_path / "market1501", root):
        ds = build_dataset("market1501", arg, verbose=False)
        assert ds.kind == "image"
        assert [(s.pid, s.camid) for s in ds.train] == [(0, 0), (0, 2), (1, 1), (2, 5)]
        assert ds.num_train_pids == 3 and ds.num_train_cams == 4
        assert [(s.pid, s.camid) for s in ds.query] == [(1, 0), (3, 1)]
        # junk -1 dropped, distractor 0 kept (sorted by file name)
        assert sorted((s.pid, s.camid) for s in ds.gallery) == [(0, 0), (1, 1), (3, 3)]
        assert all(isinstance(s, Sample) for s in ds.train + ds.query + ds.gallery)


def test_market1501_errors(tmp_path):
    root = write_market(tmp_path / "a")
    _img(root / "query" / "0001-c1.jpg")
    with pytest.raises(DatasetFormatError, match="0001-c1.jpg"):
        build_dataset("market1501", root, verbose=False)
    root = write_market(tmp_path / "b")
    for p in (root / "query").iterdir():
        p.unlink()
    with pytest.raises(DatasetFormatError, match="query split is empty"):
        build_dataset("market1501", root, verbose=False)
    root = write_market(tmp_path / "c")
    _img(root / "query" / "0001_c9s1_001051_00.jpg")
    with pytest.raises(DatasetFormatError, match="camera c9"):
        build_dataset("market1501", root, verbose=False)


def test_dukemtmcreid_layout(tmp_path):
    root = tmp_path / "dukemtmc-reid" / "DukeMTMC-reID"
    for folder, names in {"bounding_box_train": ["0005_c2_f0046985.jpg", "0008_c8_f0000001.jpg"],
                          "query": ["0010_c1_f0000100.jpg"],
                          "bounding_box_test": ["0010_c5_f0000200.jpg", "0011_c7_f0000300.jpg"]}.items():
        for n in names:
            _img(root / folder / n)
    ds = build_dataset("dukemtmcreid", tmp_path, verbose=False)
    assert [(s.pid, s.camid) for s in ds.train] == [(0, 1), (1, 7)]
    assert [(s.pid, s.camid) for s in ds.gallery] == [(10, 4), (11, 6)]
    _img(root / "query" / "0010_c1.jpg")
    with pytest.raises(DatasetFormatError, match="0010_c1.jpg"):
        build_dataset("dukemtmcreid", tmp_path, verbose=False)


def write_msmt(base: Path, version="V1") -> Path:
    root = base / "msmt17" / f"MSMT17_{version}"
    tr, te = ("train", "test") if version == "V1" else ("mask_train_v2", "mask_test_v2")
    lists = {
        "train": (tr, [("0000/0000_000_01_0303morning_0015_0.jpg", 0), ("0000/0000_001_05_0303noon_0020_1.jpg", 0),
                       ("0001/0001_000_15_0303afternoon_0001_0.jpg", 1)]),
        "val": (tr, [("0002/0002_000_02_0303morning_0100_0.jpg", 2)]),
        "query": (te, [("0000/0000_000_03_0303morning_0001_0.jpg", 0)]),
        "gallery": (te, [("0000/0000_001_07_0303noon_0001_0.jpg", 0), ("0004/0004_000_10_0303noon_0002_0.jpg", 4)]),
    }
    for split, (folder, rows) in lists.items():
        for rel, _ in rows:
            _img(root / folder / rel)
        (root / f"list_{split}.txt").write_text("".join(f"{rel} {pid}\n" for rel, pid in rows))
    return root


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_msmt17_layout(tmp_path, version):
    write_msmt(tmp_path, version)
    ds = build_dataset("msmt17", tmp_path, verbose=False)
    assert [(s.pid, s.camid) for s in ds.train] == [(0, 0), (0, 4), (1, 14)]
    assert [(s.pid, s.camid) for s in ds.query] == [(0, 2)]
    assert [(s.pid, s.camid) for s in ds.gallery] == [(0, 6), (4, 9)]
    assert Path(ds.gallery[0].path).is_file()
    ds = build_dataset("msmt17", tmp_path, verbose=False, include_val=True)
    assert [s.pid for s in ds.train] == [0, 0, 1, 2] and ds.protocol["include_val"] is True


def test_msmt17_errors(tmp_path):
    root = write_msmt(tmp_path / "a")
    (root / "list_query.txt").write_text("0000/0000_000_03_0303morning_0001_0.jpg\n")
    with pytest.raises(DatasetFormatError, match=r"list_query.txt line 1"):
        build_dataset("msmt17", root, verbose=False)
    root = write_msmt(tmp_path / "b")
    (root / "list_gallery.txt").write_text("0000/garbage.jpg 0\n")
    with pytest.raises(DatasetFormatError, match="garbage.jpg"):
        build_dataset("msmt17", root, verbose=False)
    root = write_msmt(tmp_path / "c")
    (root / "list_val.txt").unlink()
    with pytest.raises(FileNotFoundError, match="list_val.txt"):
        build_dataset("msmt17", root, verbose=False)


# ------------------------------------------------------------------------------------------------
# build_dataset
# ------------------------------------------------------------------------------------------------


def test_build_dataset_names_and_options(mars):
    assert set(DATASETS) == {"mars", "dukemtmcvidreid", "ilidsvid", "prid2011", "market1501", "dukemtmcreid",
                             "msmt17", "synthetic"}
    with pytest.raises(ValueError, match="unknown dataset 'marz'"):
        build_dataset("marz", mars)
    with pytest.raises(ValueError, match="split_id"):
        build_dataset("mars", mars, split_id=1)


def test_records_validate():
    with pytest.raises(ValueError, match="no frames"):
        Tracklet((), 1, 0)
    with pytest.raises(ValueError, match="corruption has 1 entries for 2 frames"):
        Tracklet(("a", "b"), 1, 0, (None,))
    t = Tracklet(["a", "b"], 1, 0, [None, "blur"])
    assert t.paths == ("a", "b") and t.num_corrupted == 1 and hash(t)


def test_record_paths_are_plain_strings(tmp_path):
    # records travel to spawned DataLoader workers: they must pickle as plain data
    import pickle

    write_market(tmp_path)
    write_duke_video(tmp_path)
    for name in ("market1501", "dukemtmcvidreid"):
        ds = build_dataset(name, tmp_path, verbose=False)
        rec = ds.train[0]
        paths = [rec.path] if isinstance(rec, Sample) else list(rec.paths)
        assert all(type(p) is str for p in paths)
        assert pickle.loads(pickle.dumps(ds)).train == ds.train
