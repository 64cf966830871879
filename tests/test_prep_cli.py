"""training/coco_masks_hdf5.py: bad input gives one line and exit 2; real COCO (coco-mini) prepared by the rules."""
import importlib.util
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from simplepose.data.hdf5 import HDF5Reader

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
SCRIPT = REPO / "training" / "coco_masks_hdf5.py"


def load_script():
    spec = importlib.util.spec_from_file_location("coco_masks_hdf5", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return load_script()


@pytest.fixture()
def small(tmp_path):
    """One 40 x 60 JPEG with one main person."""
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "1.jpg"), np.full((40, 60, 3), 90, np.uint8))
    kp = [10, 10, 2] * 6 + [0, 0, 0] * 11
    ann = {"id": 5, "image_id": 1, "category_id": 1, "bbox": [5, 5, 40, 30], "area": 1200, "iscrowd": 0,
           "num_keypoints": 6, "keypoints": kp, "segmentation": [[5, 5, 45, 5, 45, 35, 5, 35]]}
    data = {"images": [{"id": 1, "file_name": "1.jpg", "width": 60, "height": 40}], "annotations": [ann]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return tmp_path


def test_missing_annotation_file_subprocess(small):
    out = small / "o.h5"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--annotations", str(small / "nope.json"),
                           "--images", str(small / "img"), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.json" in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("content,problem", [("{oops", "not valid JSON"),
                                             (json.dumps({"images": [{"id": 1}], "annotations": []}),
                                              "lacks field"),
                                             (json.dumps([1, 2]), "not a COCO annotation file")])
def test_malformed_annotation_file(script, small, capsys, content, problem):
    (small / "bad.json").write_text(content)
    rc = script.main(["--annotations", str(small / "bad.json"), "--images", str(small / "img"),
                      "--out", str(small / "o.h5"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "bad.json" in err[0] and problem in err[0]
    assert not (small / "o.h5").exists()


def test_missing_image_folder(script, small, capsys):
    rc = script.main(["--annotations", str(small / "ann.json"), "--images", str(small / "nodir"),
                      "--out", str(small / "o.h5"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nodir" in err[0]


def test_bad_image_is_skipped_and_reported(script, small, capsys):
    (small / "img" / "1.jpg").write_bytes(b"not a jpeg")
    rc = script.main(["--annotations", str(small / "ann.json"), "--images", str(small / "img"),
                      "--out", str(small / "o.h5"), "--no-progress", "--log-level", "ERROR", "--allow-empty"])
    out = capsys.readouterr().out
    assert rc == 0 and "images skipped: 1 (corrupt: 1)" in out and "samples written: 0" in out
    assert len(HDF5Reader(small / "o.h5")) == 0


def test_success_prints_summary(script, small, capsys):
    rc = script.main(["--annotations", str(small / "ann.json"), "--images", str(small / "img"),
                      "--out", str(small / "sub" / "o.h5"), "--no-progress", "--workers", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "1 read" in out and "samples written: 1" in out
    assert len(HDF5Reader(small / "sub" / "o.h5")) == 1


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version(script, capsys, flag):
    with pytest.raises(SystemExit) as e:
        script.main([flag])
    assert e.value.code == 0 and capsys.readouterr().out


def expected_main_people(anns):
    """Spec §3.1 main-person rules, written out independently of simplepose.data.coco."""
    chosen = []
    for a in anns:
        x, y, w, h = a["bbox"]
        c = np.array([x + w / 2, y + h / 2])
        if a["iscrowd"] or a["num_keypoints"] < 5 or a["area"] < 1024:
            continue
        if all(np.linalg.norm(c - c2) >= 0.3 * side for c2, side, _ in chosen):
            chosen.append((c, max(w, h), a))
    return [a for *_, a in chosen]


@pytest.mark.coco
def test_coco_mini(script, coco_mini, tmp_path, capsys):
    ann_file = coco_mini / "annotations" / "person_keypoints_val2017.json"
    out = tmp_path / "val.h5"
    rc = script.main(["--annotations", str(ann_file), "--images", str(coco_mini / "val2017"), "--out", str(out),
                      "--limit", "30", "--no-progress", "--log-level", "WARNING"])
    assert rc == 0
    ref = COCO(str(ann_file))
    capsys.readouterr()
    image_ids = [img["id"] for img in json.loads(ann_file.read_text())["images"][:30]]
    expected = [(i, a) for i in image_ids for a in expected_main_people(ref.imgToAnns[i])]
    reader = HDF5Reader(out)
    assert len(reader) == len(expected) > 0
    for k, (image_id, main) in enumerate(expected):
        s = reader[k]
        anns = ref.imgToAnns[image_id]
        assert s.image_id == image_id and s.scale == pytest.approx(main["bbox"][3])
        assert s.image.shape == (ref.imgs[image_id]["height"], ref.imgs[image_id]["width"], 3)
        others = [a for a in anns if a is not main and not a["iscrowd"] and a["num_keypoints"] > 0]
        kp = np.array([main["keypoints"]] + [a["keypoints"] for a in others], np.float32).reshape(-1, 17, 3)
        np.testing.assert_array_equal(s.keypoints, kp)
        crowd = np.zeros(s.mask.shape, bool)
        people = np.zeros(s.mask.shape, bool)
        unlabelled = np.zeros(s.mask.shape, bool)
        for a in anns:
            m = ref.annToMask(a).astype(bool)
            if a["iscrowd"]:
                crowd |= m
            else:
                people |= m
                unlabelled |= m if a["num_keypoints"] == 0 else False
        np.testing.assert_array_equal(s.mask, ~((crowd & ~people) | unlabelled))
