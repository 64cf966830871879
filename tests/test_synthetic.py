"""Synthetic COCO generator: pycocotools validity, AP = 1 self-check, determinism, edge cases, geometry, CLI."""
import contextlib
import io
import json
import pathlib

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from simplepose.data import stick_people
from simplepose.data.stick_people import LIMB_COLOURS
from simplepose.commands import synthetic as synthetic_tool
from simplepose.data.synthetic import CASES, make_synthetic_coco
from simplepose.skeleton import COCO_KEYPOINTS, COCO_SKELETON

KP = {name: i for i, name in enumerate(COCO_KEYPOINTS)}
# The skeleton exactly as it appears in COCO's person_keypoints_*.json (1-indexed).
COCO_JSON_SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
                      [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]


def quiet_coco(path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


@pytest.fixture(scope="module")
def coco(synthetic_coco):
    return quiet_coco(synthetic_coco.ann_file)


@pytest.fixture(scope="module")
def png_set(tmp_path_factory):
    """A lossless set (exact colours) with more images, for pixel and geometry statistics."""
    return make_synthetic_coco(tmp_path_factory.mktemp("synthetic_png"), num_images=24, seed=3, image_format="png")


def people_with_poses(data, coco):
    """(annotation, true pose (17, 3)) for every non-crowd annotation."""
    for image_id, poses in data.poses_by_image.items():
        anns = sorted((a for a in coco.imgToAnns[image_id] if not a["iscrowd"]), key=lambda a: a["id"])
        assert len(anns) == len(poses)
        yield from zip(anns, poses)


def keypoints(ann) -> np.ndarray:
    return np.asarray(ann["keypoints"], np.float64).reshape(17, 3)


def test_json_is_valid_and_keypoints_are_consistent(synthetic_coco, coco):
    assert len(coco.imgs) == synthetic_coco.num_images == 12
    assert synthetic_coco.num_people == sum(1 for a in coco.anns.values() if not a["iscrowd"]) > 12
    for img in coco.imgs.values():
        pixels = cv2.imread(str(synthetic_coco.image_dir / img["file_name"]))
        assert pixels.shape == (img["height"], img["width"], 3) == (240, 320, 3)
    for ann in coco.anns.values():
        kp, (w, h) = keypoints(ann), (coco.imgs[ann["image_id"]]["width"], coco.imgs[ann["image_id"]]["height"])
        labelled = kp[:, 2] > 0
        assert ann["category_id"] == 1 and len(ann["keypoints"]) == 51
        assert ann["num_keypoints"] == labelled.sum()
        assert set(kp[:, 2]) <= {0, 1, 2} and not kp[~labelled, :2].any()
        assert ((kp[labelled, 0] >= 0) & (kp[labelled, 0] <= w - 1)).all()
        assert ((kp[labelled, 1] >= 0) & (kp[labelled, 1] <= h - 1)).all()
        x, y, bw, bh = ann["bbox"]
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and ann["area"] > 0
        # Labelled joints are drawn, so they lie in the bbox of the drawn extent.
        assert ((kp[labelled, 0] >= x) & (kp[labelled, 0] < x + bw)).all()
        assert ((kp[labelled, 1] >= y) & (kp[labelled, 1] < y + bh)).all()
        mask = coco.annToMask(ann)
        assert mask.sum() == pytest.approx(ann["area"])
    assert not list(synthetic_coco.ann_file.parent.rglob("*.tmp"))


def test_categories_match_coco(coco):
    (cat,) = coco.loadCats(coco.getCatIds())
    assert (cat["id"], cat["name"]) == (1, "person")
    assert cat["keypoints"] == list(COCO_KEYPOINTS)
    assert cat["skeleton"] == COCO_JSON_SKELETON


@pytest.mark.coco
def test_categories_match_real_coco(coco, coco_mini):
    real = json.loads((coco_mini / "annotations" / "person_keypoints_val2017.json").read_text())["categories"]
    ours = coco.loadCats(coco.getCatIds())
    assert [(c["keypoints"], c["skeleton"]) for c in ours] == [(c["keypoints"], c["skeleton"]) for c in real]


def evaluate(coco, shift=0.0) -> np.ndarray:
    results = []
    for ann in coco.anns.values():
        if ann["iscrowd"] or ann["num_keypoints"] == 0:
            continue
        kp = keypoints(ann)
        kp[:, :2] += shift
        results.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": kp.reshape(-1).tolist(),
                        "score": 1.0})
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(coco, coco.loadRes(results), iouType="keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_ground_truth_as_results_scores_ap_one(coco):
    stats = evaluate(coco)
    assert stats[0] == pytest.approx(1.0) and stats[1] == pytest.approx(1.0) and stats[2] == pytest.approx(1.0)
    assert stats[5] == pytest.approx(1.0)  # AR
    assert evaluate(coco, shift=6.0)[0] < 0.9  # the check can fail: shifted keypoints lose AP


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
    kwargs = dict(num_images=9, image_size=(160, 120), image_format="png")
    a, b = make_synthetic_coco(tmp_path / "a", seed=5, **kwargs), make_synthetic_coco(tmp_path / "b", seed=5, **kwargs)
    c = make_synthetic_coco(tmp_path / "c", seed=6, **kwargs)
    assert a.ann_file.read_bytes() == b.ann_file.read_bytes()
    assert a.cases == b.cases and a.case_annotations == b.case_annotations
    names = sorted(p.name for p in a.image_dir.iterdir())
    assert len(names) == 9
    for name in names:
        assert (a.image_dir / name).read_bytes() == (b.image_dir / name).read_bytes()
    assert a.ann_file.read_bytes() != c.ann_file.read_bytes()
    differs = [(a.image_dir / n).read_bytes() != (c.image_dir / n).read_bytes() for n in names]
    assert all(differs)


def test_jpeg_is_deterministic_too(tmp_path):
    a = make_synthetic_coco(tmp_path / "a", num_images=2, seed=1, edge_cases=False)
    b = make_synthetic_coco(tmp_path / "b", num_images=2, seed=1, edge_cases=False)
    for name in ("000000000001.jpg", "000000000002.jpg"):
        assert (a.image_dir / name).read_bytes() == (b.image_dir / name).read_bytes()


def test_every_edge_case_is_present_and_as_described(synthetic_coco, coco):
    cases, case_anns = synthetic_coco.cases, synthetic_coco.case_annotations
    assert all(cases[c] for c in CASES), cases
    for image_id in cases["empty"]:
        assert coco.imgToAnns[image_id] == []
    crowds = [coco.anns[i] for i in case_anns["crowd"]]
    for ann in crowds:
        assert ann["iscrowd"] == 1 and ann["num_keypoints"] == 0 and not any(ann["keypoints"])
        assert isinstance(ann["segmentation"]["counts"], str)
        assert coco.annToMask(ann).sum() == ann["area"] > 500
    for image_id in cases["two_crowds"]:
        assert sum(a["iscrowd"] for a in coco.imgToAnns[image_id]) >= 2
    poses = {ann["id"]: pose for ann, pose in people_with_poses(synthetic_coco, coco)}
    for i in case_anns["no_keypoints"]:
        ann = coco.anns[i]
        assert ann["num_keypoints"] == 0 and ann["iscrowd"] == 0 and not any(ann["keypoints"])
    assert max(coco.anns[i]["area"] for i in case_anns["no_keypoints"]) > 32 ** 2  # clearly visible
    for i in case_anns["tiny"]:
        assert coco.anns[i]["area"] < 32 ** 2
    assert any(coco.anns[i]["num_keypoints"] > 0 for i in case_anns["tiny"])
    for i in case_anns["border"]:
        outside = ((poses[i][:, :2] < 0) | (poses[i][:, :2] > (319, 239))).any(1)
        assert outside.any() and (poses[i][outside, 2] == 0).all() and coco.anns[i]["num_keypoints"] > 0
    for i in case_anns["occluded"]:
        assert (keypoints(coco.anns[i])[:, 2] == 1).any()
    for i in case_anns["missing"]:
        inside = ((poses[i][:, :2] >= 0) & (poses[i][:, :2] <= (319, 239))).all(1)
        assert (inside & (poses[i][:, 2] == 0))[list(stick_people.DISTAL)].any()


def test_occluded_keypoints_lie_under_another_person(synthetic_coco, coco):
    """A v=1 joint other than a (possibly faint) wrist or ankle is covered by another person's silhouette."""
    checked = 0
    for ann in coco.anns.values():
        kp = keypoints(ann)
        for k in np.flatnonzero(kp[:, 2] == 1):
            if k in stick_people.DISTAL:
                continue
            x, y = int(kp[k, 0]), int(kp[k, 1])
            others = [o for o in coco.imgToAnns[ann["image_id"]] if o["id"] != ann["id"] and not o["iscrowd"]]
            assert any(coco.annToMask(o)[max(0, y - 1):y + 2, max(0, x - 1):x + 2].any() for o in others)
            checked += 1
    assert checked > 0


def test_true_poses_agree_with_annotations(synthetic_coco, coco):
    for ann, pose in people_with_poses(synthetic_coco, coco):
        kp = keypoints(ann)
        np.testing.assert_array_equal(pose[:, 2], kp[:, 2])
        labelled = kp[:, 2] > 0
        np.testing.assert_array_equal(pose[labelled, :2], kp[labelled, :2])


def test_left_and_right_follow_the_person(png_set):
    coco = quiet_coco(png_set.ann_file)
    back = set(png_set.case_annotations["back_facing"])
    pairs = [("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_ear", "right_ear")]
    counts = {True: 0, False: 0}
    for ann, pose in people_with_poses(png_set, coco):
        is_back = ann["id"] in back
        counts[is_back] += 1
        for left, right in pairs:
            # Facing the camera, the person's left is on the image's right; seen from behind, on its left.
            assert (pose[KP[left], 0] > pose[KP[right], 0]) != is_back, (ann["id"], left)
        if is_back:  # no face from behind: nose and eyes are not labelled
            assert not pose[[KP["nose"], KP["left_eye"], KP["right_eye"]], 2].any()
    assert counts[True] >= 5 and counts[False] >= 5


def test_bone_lengths_are_symmetric_and_realistic(png_set):
    coco = quiet_coco(png_set.ann_file)

    def length(pose, a, b):
        return float(np.hypot(*(pose[KP[a], :2] - pose[KP[b], :2])))

    checked = 0
    for _, pose in people_with_poses(png_set, coco):
        bones = {}
        for bone, (a, b) in {"upper_arm": ("shoulder", "elbow"), "forearm": ("elbow", "wrist"),
                             "thigh": ("hip", "knee"), "shin": ("knee", "ankle")}.items():
            left, right = length(pose, "left_" + a, "left_" + b), length(pose, "right_" + a, "right_" + b)
            assert abs(left - right) <= 2 * np.sqrt(2), bone  # equal up to rounding each joint to a pixel
            bones[bone] = 0.5 * (left + right)
        if bones["thigh"] > 30:  # UPRIGHT_POSE proportions: thigh / upper arm = 0.2201 / 0.1628
            assert bones["thigh"] / bones["upper_arm"] == pytest.approx(1.352, rel=0.12)
            assert bones["shin"] / bones["forearm"] == pytest.approx(1.496, rel=0.12)
            checked += 1
    assert checked > 20


def test_limbs_are_drawn_in_their_own_colours(png_set):
    """Sampled at limb midpoints, colours identify the limb, and left is never confused with right."""
    coco = quiet_coco(png_set.ann_file)
    palette = np.array(LIMB_COLOURS, np.float64)
    assert len({tuple(c) for c in LIMB_COLOURS}) == len(COCO_SKELETON)
    side = {k: name.split("_")[0] for k, name in enumerate(COCO_KEYPOINTS)}
    body = [i for i, (a, b) in enumerate(COCO_SKELETON) if a >= 5 and b >= 5]
    hits = sides_swapped = total = 0
    for img in coco.imgs.values():
        pixels = cv2.imread(str(png_set.image_dir / img["file_name"])).astype(np.float64)
        for ann in coco.imgToAnns[img["id"]]:
            kp = keypoints(ann)
            for i in body:
                a, b = COCO_SKELETON[i]
                if kp[a, 2] != 2 or kp[b, 2] != 2 or np.hypot(*(kp[a, :2] - kp[b, :2])) < 12:
                    continue
                x, y = np.rint(0.5 * (kp[a, :2] + kp[b, :2])).astype(int)
                nearest = body[int(np.argmin(np.abs(palette[body] - pixels[y, x]).sum(1)))]
                total += 1
                hits += nearest == i
                sides_swapped += {side[a], side[COCO_SKELETON[nearest][0]]} == {"left", "right"}
    assert total > 100
    assert hits / total > 0.8 and sides_swapped / total < 0.05, (hits, sides_swapped, total)


def test_edge_cases_toggle(tmp_path):
    clean = make_synthetic_coco(tmp_path / "clean", num_images=8, seed=2, edge_cases=False)
    coco = quiet_coco(clean.ann_file)
    assert all(not a["iscrowd"] and a["num_keypoints"] > 0 for a in coco.anns.values())
    assert all(coco.imgToAnns[i] for i in coco.imgs)
    assert not any(clean.cases[c] for c in ("empty", "crowd", "two_crowds", "no_keypoints", "border", "missing"))
    only = make_synthetic_coco(tmp_path / "only", num_images=3, seed=2, edge_cases={"crowd", "tiny"})
    assert only.cases["crowd"] and only.cases["tiny"] and not only.cases["two_crowds"] and not only.cases["empty"]
    with pytest.raises(ValueError, match="unknown edge cases"):
        make_synthetic_coco(tmp_path / "bad", edge_cases={"crowds"})


@pytest.mark.parametrize("num_images", [1, 3])
def test_few_images_still_hold_every_case(tmp_path, num_images):
    data = make_synthetic_coco(tmp_path, num_images=num_images, seed=4, image_size=(160, 120))
    expected = [c for c in CASES if not (c == "empty" and num_images == 1)]
    assert all(data.cases[c] for c in expected), data.cases
    assert evaluate(quiet_coco(data.ann_file))[0] == pytest.approx(1.0)


def test_cli_writes_the_dataset(tmp_path, capsys):
    out = tmp_path / "out"
    assert synthetic_tool.main([str(out), "--num-images", "3", "--seed", "1", "--image-size", "96", "64",
                                "--max-people", "2", "--log-level", "WARNING"]) == 0
    data = json.loads((out / "annotations.json").read_text())
    assert [img["file_name"] for img in data["images"]] == [f"{i:012d}.jpg" for i in (1, 2, 3)]
    assert all((out / "images" / img["file_name"]).is_file() for img in data["images"])
    assert (data["images"][0]["width"], data["images"][0]["height"]) == (96, 64)


def test_cli_user_errors_are_one_line(tmp_path, capsys):
    afile = tmp_path / "file"
    afile.write_text("x")
    assert synthetic_tool.main([str(afile)]) == 2
    assert synthetic_tool.main([str(tmp_path / "d"), "--image-size", "16", "16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)
    assert not (tmp_path / "d" / "annotations.json").exists()


def test_rewriting_a_directory_replaces_the_dataset(tmp_path):
    make_synthetic_coco(tmp_path, num_images=2, seed=0)
    again = make_synthetic_coco(tmp_path, num_images=3, seed=1)
    assert len(json.loads(again.ann_file.read_text())["images"]) == 3
    assert pathlib.Path(again.image_dir, "000000000003.jpg").is_file()
