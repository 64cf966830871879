"""Bottom-up proposals refined top-down: boxes from poses, the hybrid predictor on oracles, the commands."""
import json

import cv2
import numpy as np
import pytest

from simplepose.bottomup.oracle import oracle_image
from simplepose.commands import demo, evaluate, main
from simplepose.config import TopDownConfig, load_config
from simplepose.errors import ConfigError
from simplepose.methods import get_method
from simplepose.pose import Pose
from simplepose.predictor import Predictor
from simplepose.skeleton import UPRIGHT_POSE, get_skeleton
from simplepose.topdown.data import render_heatmaps
from simplepose.topdown.hybrid import HybridPredictor, pose_boxes
from simplepose.topdown.predictor import TopDownPredictor
from simplepose.tracking import PoseTracker
from simplepose.video import process_video
from simplepose.video.sources import Frame, FrameSource

COCO17 = get_skeleton("coco17")
CROP = (256, 192)
#: Blue value of keypoint k's disc in the test images (green and red 255): the oracle network finds it.
CODES = 10 + 14 * np.arange(17)


def test_pose_boxes_hold_the_keypoints_with_the_margin_and_the_aspect():
    rng = np.random.default_rng(0)
    kp = np.concatenate([rng.uniform(0, 300, (50, 17, 2)), rng.uniform(0.1, 1, (50, 17, 1))], axis=2)
    kp[rng.random((50, 17)) < 0.3, 2] = 0.0  # absent keypoints lie anywhere and are ignored
    kp[kp[..., 2] == 0, :2] = -1000.0
    kp[7, :2, 2], kp[7, 2:, 2] = 0.5, 0.0  # 2 present keypoints: kept at min_keypoints 2
    kp[8, 0, 2], kp[8, 1:, 2] = 0.5, 0.0  # 1 present keypoint: dropped
    kp[9, :, :2] = 42.0  # every keypoint on one point: no extent, dropped
    for aspect, margin in ((0.75, 0.1), (1.0, 0.0), (0.5, 0.3)):
        boxes, kept = pose_boxes(kp, aspect, margin, min_keypoints=2)
        assert 7 in kept and 8 not in kept and 9 not in kept and len(boxes) == len(kept) == 48
        np.testing.assert_allclose(boxes[:, 2] / boxes[:, 3], aspect, rtol=1e-5)
        for (x, y, w, h), i in zip(boxes, kept):
            xy = kp[i, kp[i, :, 2] > 0, :2]
            lo, hi = xy.min(0), xy.max(0)
            need = margin * (hi - lo)  # at least this much room on each side
            room = np.array([[lo[0] - x, x + w - hi[0]], [lo[1] - y, y + h - hi[1]]])
            assert np.all(room >= need[:, None] - 1e-3)
            np.testing.assert_allclose(room[:, 0], room[:, 1], atol=1e-3)  # centred on the keypoints
            # the smallest such box: one axis is exactly extent + margins
            assert np.isclose(w, (hi - lo)[0] * (1 + 2 * margin), rtol=1e-5) or \
                np.isclose(h, (hi - lo)[1] * (1 + 2 * margin), rtol=1e-5)
    assert pose_boxes(np.zeros((0, 17, 3)), 0.75)[0].shape == (0, 4)
    assert len(pose_boxes(kp, 0.75, 0.1, min_keypoints=18)[0]) == 0


def _people(n=3, spacing=160, height=180):
    """COCO keypoints ``(n, 17, 3)`` of upright people standing side by side, all labelled."""
    kp = np.full((n, 17, 3), 2.0, np.float32)
    for i in range(n):
        kp[i, :, :2] = UPRIGHT_POSE * height + [80 + spacing * i, 40]
    return kp


def _image(people, size=(240, 480)):
    """Black image with keypoint k of every person a disc of colour (CODES[k], 255, 255)."""
    image = np.zeros(size + (3,), np.uint8)
    for person in people:
        for k, (x, y, _) in enumerate(person):
            cv2.circle(image, (int(round(x)), int(round(y))), 2, (int(CODES[k]), 255, 255), -1)
    return image


class ColourOracle:
    """A top-down "network" that finds each keypoint's colour in a crop and renders its heatmap there."""

    def __init__(self):
        self.batches = []

    def __call__(self, crops, training=False):
        crops = np.asarray(crops)
        self.batches.append(len(crops))
        out = np.zeros((len(crops), CROP[0] // 4, CROP[1] // 4, 17), np.float32)
        for b, crop in enumerate(crops.astype(np.int32)):
            white = (crop[..., 1] >= 250) & (crop[..., 2] >= 250)  # blended edges are darker
            kp = np.zeros((17, 3), np.float32)
            for k, code in enumerate(CODES):
                ys, xs = np.nonzero(white & (np.abs(crop[..., 0] - code) <= 3))
                if len(xs):
                    kp[k] = xs.mean(), ys.mean(), 2
            out[b] = render_heatmaps(kp, out.shape[1:3], CROP)[0]
        return {"heatmaps": out}


class OracleBottomUp(Predictor):
    """Bottom-up people decoded from the true maps of given people (rendered by the training target code)."""

    def __init__(self, people_coco, extra=()):
        self.cfg = load_config("configs/quickstart.yaml")
        self.skeleton, self.meta = self.cfg.skeleton, get_method("bottomup").head_meta(self.cfg)
        self.people, self.extra = self.skeleton.from_coco(people_coco), list(extra)

    def predict(self, image, boxes=None, box_scores=None):
        poses, timings = oracle_image(self.people, image.shape[0], image.shape[1], self.cfg)
        self.last_timings = timings
        return poses + self.extra


def _topdown(flip_test=False):
    params = TopDownConfig(input_shape=CROP, flip_test=flip_test)
    return TopDownPredictor(ColourOracle(), COCO17, stride=4, params=params)


def test_hybrid_on_oracles_returns_each_person_once_at_its_place():
    people = _people()
    image = _image(people)
    bottomup = OracleBottomUp(people)
    assert len(bottomup.predict(image)) == 3
    hybrid = HybridPredictor(_topdown(), bottomup)
    poses = hybrid.predict(image)
    assert len(poses) == 3 and len(hybrid.last_boxes) == 3
    found = sorted((p.keypoints for p in poses), key=lambda kp: kp[0, 0])
    for kp, truth in zip(found, people):
        assert np.abs(kp[:, :2] - truth[:, :2]).max() < 3.8  # within a heatmap cell (4 crop px, 3.8 image px)
        assert kp[:, 2].min() > 0.5
    assert hybrid.topdown.model.batches == [4]  # 3 crops, one call, padded to a power of two
    assert {"proposal_decode", "boxes", "crop", "network", "decode"} <= set(hybrid.last_timings)
    with pytest.raises(ValueError, match="proposes its own"):
        hybrid.predict(image, boxes=[[0, 0, 10, 10]])


def test_duplicate_proposals_of_one_person_are_suppressed():
    """A second bottom-up person on the first one, lacking middle keypoints (elbows, knees), has the same
    box: it is refined into the same pose, which OKS-NMS removes."""
    people = _people()
    image = _image(people)
    base = OracleBottomUp(people).predict(image)
    fragment = Pose(base[0].keypoints.copy(), 0.5 * base[0].score)
    names = OracleBottomUp(people).skeleton.keypoints
    middle = [names.index(n) for n in ("left_elbow", "right_elbow", "left_knee", "right_knee")]
    fragment.keypoints[middle] = 0.0
    hybrid = HybridPredictor(_topdown(), OracleBottomUp(people, extra=[fragment]))
    poses = hybrid.predict(image)
    assert len(hybrid.last_boxes) == 4 and len(poses) == 3


class _Frames(FrameSource):
    """The same image ``count`` times, as a video source."""

    def __init__(self, image, count):
        super().__init__()
        self.image, self.num_frames = image, count
        self.size = (image.shape[1], image.shape[0])

    def frames(self):
        for i in range(self.num_frames):
            yield Frame(i, i / self.fps, self.image.copy())


def test_video_frames_are_refined_from_the_proposals_not_the_whole_frame(tmp_path):
    """Through the video runner a hybrid predictor proposes its own boxes (it refuses given ones): every frame
    has its three people, tracked under three ids once ``min_hits`` frames have matched."""
    people = _people()
    hybrid = HybridPredictor(_topdown(), OracleBottomUp(people))
    assert not hybrid.takes_boxes and hybrid.topdown.takes_boxes
    js = tmp_path / "poses.jsonl"
    summary = process_video(hybrid, _Frames(_image(people), 5), json_path=js, progress=False,
                            tracker=PoseTracker(COCO17.sigmas))
    lines = [json.loads(line) for line in js.read_text().splitlines()]
    assert summary.frames == len(lines) == 5 and all(len(line["poses"]) == 3 for line in lines)
    assert sorted(pose["track_id"] for pose in lines[-1]["poses"]) == [1, 2, 3]
    assert {"proposal_decode", "crop", "network"} <= set(summary.stage_ms)  # both models timed per frame


def test_flip_test_crops_go_through_with_the_plain_ones_in_one_call():
    people = _people()
    topdown = _topdown(flip_test=True)
    boxes, _ = pose_boxes(np.concatenate([people[..., :2], np.ones((3, 17, 1))], axis=2), 0.75)
    poses = topdown.predict(_image(people), boxes)
    assert topdown.model.batches == [8]  # 3 crops + 3 mirrors, one call, padded to 8
    assert len(poses) == 3


def test_hybrid_refuses_models_of_the_wrong_kind():
    people = _people()
    with pytest.raises(ConfigError, match="top-down model"):
        HybridPredictor(OracleBottomUp(people), OracleBottomUp(people))
    with pytest.raises(ConfigError, match="bottom-up"):
        HybridPredictor(_topdown(), _topdown())


@pytest.mark.slow
def test_commands_take_boxes_from_a_bottomup_model(runs, synthetic_coco, tmp_path, capsys):
    topdown, bottomup = (str(runs[name][1] / "model.keras") for name in ("topdown", "bottomup"))
    ann, images = str(synthetic_coco.ann_file), str(synthetic_coco.image_dir)
    out = tmp_path / "eval"
    assert evaluate.main(["--weights", topdown, "--boxes-from", bottomup, "--annotations", ann, "--images", images,
                          "--limit", "3", "--out", str(out)]) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["box_source"] == f"bottom-up model {bottomup}" and metrics["images"] == 3
    assert "proposal_network" in metrics["timing"]
    image = next(synthetic_coco.image_dir.iterdir())
    png = tmp_path / "demo.png"
    assert demo.main(["--weights", topdown, "--boxes-from", bottomup, "--image", str(image),
                      "--out", str(png)]) == 0, capsys.readouterr().err
    assert png.exists() and "whole image" not in capsys.readouterr().out
    frames, js = tmp_path / "frames", tmp_path / "video.jsonl"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"{i}.png"), cv2.imread(str(image)))
    assert main(["video", "--weights", topdown, "--boxes-from", bottomup, "--source", str(frames), "--json", str(js),
                 "--no-progress"]) == 0, capsys.readouterr().err
    assert len(js.read_text().splitlines()) == 2 and "proposal_network" in capsys.readouterr().out
    # the wrong way round, or a top-down model as the proposer: one line each
    for weights, boxes_from in ((bottomup, topdown), (topdown, topdown)):
        assert evaluate.main(["--weights", weights, "--boxes-from", boxes_from, "--annotations", ann,
                              "--images", images]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
