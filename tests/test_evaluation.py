"""COCO evaluation: ground truth as detections scores 1, nothing scores 0, results JSON loads in pycocotools."""
import json

import cv2
import numpy as np
import pytest

from simplepose import atomic, evaluation
from simplepose.pose import Pose
from simplepose.skeleton import UPRIGHT_POSE, get_skeleton

SKELETON = get_skeleton("coco18_limbs24")


def person(height, x, y):
    kp = np.zeros((17, 3), np.float32)
    kp[:, :2] = UPRIGHT_POSE * height + np.array([x, y], np.float32)
    kp[:, 2] = 2
    return kp


@pytest.fixture()
def gt_file(tmp_path):
    people = {1: [person(150, 60, 10), person(120, 200, 40)], 2: [person(90, 150, 50)]}
    images, anns = [], []
    for image_id, kps in people.items():
        images.append({"id": image_id, "file_name": f"{image_id:06d}.png", "width": 320, "height": 240})
        for kp in kps:
            x0, y0 = kp[:, :2].min(0) - 5
            w, h = np.ptp(kp[:, :2], axis=0) + 10
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                         "keypoints": kp.reshape(-1).tolist(), "num_keypoints": 17,
                         "bbox": [float(x0), float(y0), float(w), float(h)], "area": float(w * h),
                         "segmentation": [[float(x0), float(y0), float(x0 + w), float(y0), float(x0 + w),
                                           float(y0 + h)]]})
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "person", "keypoints": list(range(17)), "skeleton": []}]}))
    return path, people


def as_poses(people, shift=0.0):
    """Ground-truth people as poses of the 18-keypoint skeleton (neck synthesised, dropped again on output)."""
    out = {}
    for image_id, kps in people.items():
        internal = SKELETON.from_coco(np.stack(kps))
        internal[..., 2] = (internal[..., 2] > 0) * 0.9
        internal[..., 0] += shift
        out[image_id] = [Pose(kp, 0.8) for kp in internal]
    return out


def test_ground_truth_as_detections_scores_one(gt_file):
    path, people = gt_file
    results = evaluation.poses_to_results(as_poses(people), SKELETON)
    assert len(results) == 3 and all(len(r["keypoints"]) == 51 for r in results)
    metrics = evaluation.run_coco_eval(path, results)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AR"] == pytest.approx(1.0)
    assert set(evaluation.METRIC_NAMES) == set(metrics)


def test_shifted_detections_score_lower_and_image_subset(gt_file):
    path, people = gt_file
    shifted = evaluation.run_coco_eval(path, evaluation.poses_to_results(as_poses(people, shift=6.0), SKELETON))
    assert 0.0 < shifted["AP"] < 1.0
    only_two = evaluation.run_coco_eval(path, evaluation.poses_to_results(as_poses({2: people[2]}), SKELETON),
                                        image_ids=[2])
    assert only_two["AP"] == pytest.approx(1.0)


def test_empty_predictions_give_zero(gt_file):
    path, _ = gt_file
    metrics = evaluation.run_coco_eval(path, [])
    assert metrics == {name: 0.0 for name in evaluation.METRIC_NAMES}
    assert "AP" in evaluation.format_summary(metrics)


def test_results_json_loads_in_pycocotools(gt_file, tmp_path):
    from pycocotools.coco import COCO

    path, people = gt_file
    out = tmp_path / "results.json"
    atomic.write_json(out, evaluation.poses_to_results(as_poses(people), SKELETON))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.json", "results.json"]  # no temporary left
    dt = COCO(str(path)).loadRes(str(out))
    assert len(dt.getAnnIds()) == 3
    ann = dt.loadAnns(dt.getAnnIds(imgIds=[2]))[0]
    assert ann["keypoints"][2] == 1 and ann["score"] == pytest.approx(0.8)


def test_stage_timer_summary():
    timer = evaluation.StageTimer()
    for ms in (1.0, 2.0, 6.0):
        timer.add({"network": 10 * ms, "decode": ms})
    summary = timer.summary()
    assert summary["decode"] == {"median": 2.0, "mean": 3.0, "p95": pytest.approx(5.6), "max": 6.0, "count": 3}
    assert summary["network"]["median"] == 20.0
    assert "network" in evaluation.format_timing(summary)


class GroundTruthPredictor:
    """Returns the ground truth of the image it is given (recognised by its size)."""

    def __init__(self, people, sizes):
        self.people, self.sizes, self.skeleton = people, sizes, SKELETON
        self.last_timings = {}

    def predict(self, image, boxes=None, box_scores=None):
        self.boxes = boxes
        image_id = self.sizes[image.shape[:2]]
        self.last_timings = {"network": 5.0, "decode": 1.0}
        return as_poses({image_id: self.people[image_id]})[image_id]


def test_evaluate_predictor_end_to_end(gt_file, tmp_path):
    path, people = gt_file
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    cv2.imwrite(str(image_dir / "000001.png"), np.zeros((240, 320, 3), np.uint8))
    cv2.imwrite(str(image_dir / "000002.png"), np.zeros((200, 320, 3), np.uint8))
    predictor = GroundTruthPredictor(people, {(240, 320): 1, (200, 320): 2})
    metrics = evaluation.evaluate_predictor(predictor, path, image_dir, out_dir=tmp_path / "out")
    assert metrics["AP"] == pytest.approx(1.0)
    assert metrics["timing"]["network"]["median"] == 5.0 and {"read", "total"} <= set(metrics["timing"])
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["AP"] == pytest.approx(1.0)
    assert metrics["images"] == 2 and metrics["results"] == 3 and "boxes" not in metrics
    (image_dir / "000002.png").unlink()  # skipped, counted and left out of the metrics (image 1 is perfect)
    metrics = evaluation.evaluate_predictor(predictor, path, image_dir)
    assert (metrics["images"], metrics["images_skipped"], metrics["skipped_images"]) == (1, 1, ["000002.png"])
    assert metrics["AP"] == pytest.approx(1.0)
    # With person boxes, images without any are not read (000002.png is gone) and have no people.
    boxes = {1: (np.array([[0, 0, 100, 200]], np.float32), np.array([0.9]))}
    metrics = evaluation.evaluate_predictor(predictor, path, image_dir, boxes=boxes)
    assert metrics["boxes"] == 1 and metrics["results"] == 2 and metrics["images"] == 2
    np.testing.assert_array_equal(predictor.boxes, boxes[1][0])
    assert 0.0 < metrics["AP"] < 1.0  # image 2's person is missed


def test_one_record_writer_reports_present_keypoints_only():
    """COCO records and the demo's JSON follow one rule: a keypoint is reported iff its score is > 0."""
    kp = SKELETON.from_coco(person(150, 60, 10)[None])[0]
    kp[:, 2] = 0.7
    kp[SKELETON.keypoints.index("left_wrist")] = 0.0
    kp[SKELETON.keypoints.index("nose"), 2] = 1e-6  # tiny but present
    pose = Pose(kp, 0.5)
    record = pose.to_coco(SKELETON, 3)
    coco = np.asarray(record["keypoints"]).reshape(17, 3)
    wrist = 9  # COCO left_wrist
    assert coco[wrist].tolist() == [0, 0, 0] and (coco[np.arange(17) != wrist, 2] == 1).all()
    assert record["image_id"] == 3 and record["score"] == 0.5
    named = pose.to_dict(SKELETON)["keypoints"]
    assert "left_wrist" not in named and "nose" in named and "neck" in named and len(named) == 17
