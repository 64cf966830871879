"""COCO reading: miss masks (crowds, people without keypoints), main-person selection, keypoint checks."""
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from simplepose.data import coco

H, W = 48, 64


def rect(x0, y0, x1, y1):
    """A COCO polygon for the rectangle [x0, x1] x [y0, y1]."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def person(ann_id, segmentation, bbox, num_keypoints=6, area=2000.0, iscrowd=0):
    kp = [0] * 51
    for k in range(num_keypoints):
        kp[3 * k: 3 * k + 3] = [bbox[0] + 1 + k, bbox[1] + 1, 2]
    return {"id": ann_id, "image_id": 1, "category_id": 1, "segmentation": segmentation, "bbox": bbox,
            "area": area, "iscrowd": iscrowd, "num_keypoints": num_keypoints, "keypoints": kp}


def crowd_pixels():
    """Two crowd regions given as exact pixel sets (RLE stores pixels, so no rasterisation ambiguity)."""
    first = np.zeros((H, W), np.uint8)
    first[2:30, 30:60] = 1      # overlaps person a (before it) and person c (listed after it)
    second = np.zeros((H, W), np.uint8)
    second[34:46, 2:20] = 1     # a second crowd: the seed raised an exception here
    return first, second


def uncompressed_rle(m):
    """COCO's uncompressed RLE (column-major run lengths starting with zeros), as crowd annotations use."""
    flat = m.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": [H, W], "counts": counts}


@pytest.fixture()
def crowd_image(tmp_path):
    first, second = crowd_pixels()
    compressed = mask_utils.encode(np.asfortranarray(second))
    compressed["counts"] = compressed["counts"].decode("ascii")
    anns = [
        person(1, rect(24, 4, 40, 20), [24, 4, 16, 16]),                              # a: labelled
        person(2, uncompressed_rle(first), [30, 2, 30, 28], 0, 840.0, iscrowd=1),   # crowd 1
        person(3, rect(4, 4, 14, 24), [4, 4, 10, 20], num_keypoints=0),              # b: no keypoints
        person(4, rect(46, 20, 58, 28), [46, 20, 12, 8]),                            # c: after crowd 1
        person(5, compressed, [2, 34, 18, 12], 0, 216.0, iscrowd=1),                 # crowd 2
    ]
    data = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}], "annotations": anns,
            "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path, anns


def test_miss_mask_matches_pycocotools_and_rules(crowd_image):
    path, anns = crowd_image
    ref = COCO(str(path))
    seg = {a["id"]: ref.annToMask(a).astype(bool) for a in ref.loadAnns(ref.getAnnIds(imgIds=[1]))}
    people = seg[1] | seg[3] | seg[4]
    expected = ~(((seg[2] | seg[5]) & ~people) | seg[3])
    mask = coco.miss_mask(anns, H, W)
    assert mask.dtype == np.uint8 and mask.shape == (H, W)
    np.testing.assert_array_equal(mask, expected.astype(np.uint8))
    # The same by hand on pixels whose status does not depend on polygon rasterisation.
    first, second = crowd_pixels()
    assert mask[10, 50] == 0 and mask[40, 10] == 0       # inside a crowd, no person: ignored
    assert mask[10, 30] == 1                              # crowd 1 under person a: supervised
    assert mask[24, 50] == 1                              # crowd 1 under person c (listed AFTER it)
    assert mask[10, 8] == 0                               # person b has no keypoints
    assert mask[44, 40] == 1 and mask[0, 0] == 1          # nothing there
    assert seg[2].sum() == first.sum() and seg[5].sum() == second.sum()


def test_miss_mask_without_crowds_or_unlabelled_people_is_all_ones():
    anns = [person(1, rect(2, 2, 20, 20), [2, 2, 18, 18])]
    assert coco.miss_mask(anns, H, W).all()
    assert coco.miss_mask([], H, W).all()


def test_annotation_rle_falls_back_to_bbox():
    ann = person(1, [], [4, 6, 10, 5])
    m = mask_utils.decode(coco.annotation_rle(ann, H, W))
    ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(rect(4, 6, 14, 11), H, W)))
    np.testing.assert_array_equal(m, ref)
    assert m.sum() > 0


def ann(cx, cy, w, h, num_keypoints=10, area=5000.0, iscrowd=0):
    return person(0, [], [cx - w / 2, cy - h / 2, w, h], num_keypoints, area, iscrowd)


def test_main_people_thresholds():
    anns = [ann(100, 100, 50, 100),
            ann(300, 100, 50, 100, num_keypoints=4),        # too few keypoints
            ann(400, 100, 50, 100, area=1023.0),             # too small
            ann(500, 100, 50, 100, iscrowd=1),               # crowd
            ann(600, 100, 50, 100, num_keypoints=5, area=1024.0)]
    assert coco.select_main_people(anns) == [0, 4]


def test_main_people_distance_uses_the_chosen_persons_bbox():
    # b's centre is 50 px from a's; a's max side is 200 -> 0.3 * 200 = 60 > 50: b is not a main person.
    # The seed used the LAST annotation's bbox (max side 40 -> 12 < 50) and kept b.
    anns = [ann(100, 100, 200, 150), ann(150, 100, 100, 100), ann(400, 400, 40, 40, num_keypoints=0)]
    assert coco.select_main_people(anns) == [0]
    assert coco.select_main_people(anns, coco.MainPersonRules(legacy_stale_max_side=True)) == [0, 1]
    # The reverse: a small chosen person and a big last annotation.
    # b is 20 px away from a: >= 0.3 * 40 = 12 (kept), but < 0.3 * 300 = 90 (the seed dropped it).
    anns = [ann(100, 100, 40, 40, area=1600), ann(120, 100, 40, 40, area=1600), ann(400, 400, 300, 300, 0)]
    assert coco.select_main_people(anns) == [0, 1]
    assert coco.select_main_people(anns, coco.MainPersonRules(legacy_stale_max_side=True)) == [0]


def test_main_people_distance_is_strict_and_checks_every_chosen_person():
    anns = [ann(100, 100, 100, 100), ann(130, 100, 100, 100)]   # exactly 0.3 * 100 away: kept
    assert coco.select_main_people(anns) == [0, 1]
    anns = [ann(100, 100, 100, 100), ann(300, 100, 100, 100), ann(310, 100, 100, 100)]
    assert coco.select_main_people(anns) == [0, 1]


def test_keypoints_outside_the_image_become_unlabelled():
    a = person(1, [], [0, 0, 10, 10], num_keypoints=0)
    a["keypoints"][0:9] = [5, 5, 2, -1, 5, 1, 5, H + 0.5, 2]
    a["keypoints"][9:12] = [W, H, 2]                       # on the far edge: inside COCO's extent
    a["keypoints"][12:15] = [70, 70, 0]                    # unlabelled anyway: not counted
    kp, outside = coco.keypoints_array([a], H, W)
    assert kp.shape == (1, 17, 3) and kp.dtype == np.float32
    assert outside == 2
    np.testing.assert_array_equal(kp[0, :4], [[5, 5, 2], [0, 0, 0], [0, 0, 0], [W, H, 2]])


def test_load_reports_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        coco.load_coco_keypoints(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(coco.CocoFormatError, match="bad.json.*not valid JSON"):
        coco.load_coco_keypoints(bad)
    bad.write_text(json.dumps({"images": []}))
    with pytest.raises(coco.CocoFormatError, match="'annotations'"):
        coco.load_coco_keypoints(bad)
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "x", "width": 2, "height": 2}],
                               "annotations": [{"image_id": 1, "bbox": [0, 0, 1, 1]}]}))
    with pytest.raises(coco.CocoFormatError, match="annotation 0 lacks field.*keypoints"):
        coco.load_coco_keypoints(bad)


def test_load_groups_annotations_by_image(crowd_image):
    path, anns = crowd_image
    data = coco.load_coco_keypoints(path)
    assert [i["id"] for i in data.images] == [1]
    assert [a["id"] for a in data.annotations[1]] == [a["id"] for a in anns]
