"""Video: frame sources, the threaded pipeline, atomic outputs (also on Ctrl-C), the command, the clip generator."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from simplepose.data.synthetic_video import make_synthetic_video
from simplepose.errors import DataError
from simplepose.pose import Pose
from simplepose.predictor import Predictor
from simplepose.skeleton import get_skeleton
from simplepose.tracking import PoseTracker
from simplepose.video import open_source, process_video

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """20 frames of two walkers crossing, as an MP4 and as PNG frames."""
    return make_synthetic_video(tmp_path_factory.mktemp("clip"), num_frames=20, image_size=(160, 120), num_people=2,
                                write_frames=True)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny untrained bottom-up model whose stored thresholds are low enough to find (random) people."""
    import keras

    from simplepose.config import load_config
    from simplepose.methods import build_model

    cfg = load_config(REPO / "configs" / "bottomup_tiny.yaml", [
        "model.num_stages=1", "loss.stage_weights=[1]", "inference.box_size=96", "inference.scales=[1.0]",
        "inference.flip=false", "inference.peak_threshold=0.0001", "inference.limb_threshold=0.0",
        "inference.min_mean_score=0.0", "inference.limb_min_fraction=0.0", "inference.min_keypoints=11"])
    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    build_model(cfg).save(path)
    return path


class TruthPredictor(Predictor):
    """Gives the clip's true poses (joints with v > 0) frame after frame; ``interrupt_at``/``fail_at`` raise."""

    def __init__(self, clip, interrupt_at=None, fail_at=None):
        self.clip, self.calls, self.interrupt_at, self.fail_at = clip, 0, interrupt_at, fail_at
        self.skeleton, self.last_timings = get_skeleton("coco17"), {}

    def predict(self, image, boxes=None, box_scores=None):
        index, self.calls = self.calls, self.calls + 1
        if index == self.interrupt_at:
            raise KeyboardInterrupt
        if index == self.fail_at:
            raise RuntimeError("simulated failure")
        people = self.clip.frames[index]
        self.last_timings = {"network": 1.0}
        return [Pose(np.where(kp[:, 2:] > 0, np.concatenate([kp[:, :2], np.ones((17, 1))], 1), 0).astype(np.float32),
                     1.0) for kp in people.keypoints if (kp[:, 2] > 0).any()]


def read_video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


def no_temp_files(folder):
    return not [p for p in os.listdir(folder) if p.startswith(".tmp-")]


def test_generated_clip_has_identities_crossings_and_coco_annotations(clip):
    from pycocotools.coco import COCO

    coco = COCO(str(clip.ann_file))
    assert len(coco.getImgIds()) == clip.num_frames == 20
    anns = coco.loadAnns(coco.getAnnIds())
    assert {a["track_id"] for a in anns} == {int(i) for f in clip.frames for i in f.ids}
    frames, fps = read_video(clip.video)
    assert len(frames) == 20 and frames[0].shape == (120, 160, 3) and fps == pytest.approx(25.0)
    assert len(os.listdir(clip.frame_dir)) == 20
    # the two walkers start on opposite sides and swap sides: a crossing
    first, last = clip.frames[0], clip.frames[-1]
    order = [np.argsort([kp[:, 0].mean() for kp in f.keypoints]) for f in (first, last)]
    assert list(first.ids[order[0]]) == list(last.ids[order[1]][::-1])
    again = make_synthetic_video(clip.ann_file.parent.parent / "again", num_frames=20, image_size=(160, 120),
                                 num_people=2, write_video=False)
    assert all(np.array_equal(a.keypoints, b.keypoints) for a, b in zip(clip.frames, again.frames))


def test_sources_file_folder_glob_and_name_order(clip, tmp_path):
    assert [f.index for f in open_source(str(clip.video)).frames()] == list(range(20))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for n in (10, 2, 1):
        cv2.imwrite(str(folder / f"f{n}.png"), np.full((16, 24, 3), n, np.uint8))
    (folder / "notes.txt").write_text("not an image")
    src = open_source(folder, fps=10)
    frames = list(src.frames())
    assert [f.name for f in frames] == ["f1.png", "f2.png", "f10.png"] and src.fps == 10
    assert [f.time for f in frames] == pytest.approx([0.0, 0.1, 0.2])
    assert [f.name for f in open_source(str(folder / "f1*.png")).frames()] == ["f1.png", "f10.png"]


def test_folder_skips_and_counts_unreadable_and_odd_sized_images(tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((16, 24, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "2.png"), np.zeros((20, 24, 3), np.uint8))
    (tmp_path / "3.png").write_bytes(b"not a png")
    src = open_source(tmp_path)
    assert [f.name for f in src.frames()] == ["0.png", "1.png"]
    assert [os.path.basename(p) for p, _ in src.skipped] == ["2.png", "3.png"]


@pytest.mark.parametrize("kind, message", [("missing", "video not found"), ("text", "not a video OpenCV can read"),
                                           ("empty", "has no images"), ("nomatch", "has no images"),
                                           ("unreadable", "none of its 1 images can be read"),
                                           ("webcam", "webcam 97 cannot be opened")])
def test_bad_sources_are_one_line_errors(tmp_path, kind, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "clip.mp4").write_text("this is not a video")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"\xff\xd8 no jpeg")
    spec = {"missing": tmp_path / "none.mp4", "text": tmp_path / "clip.mp4", "empty": tmp_path / "empty",
            "nomatch": str(tmp_path / "*.png"), "unreadable": tmp_path / "bad", "webcam": "97"}[kind]
    with pytest.raises(DataError, match=message) as e:
        open_source(spec)
    assert "\n" not in str(e.value)


def test_video_track_ids_follow_identities_through_crossings(clip, tmp_path):
    out, js = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    predictor = TruthPredictor(clip)
    summary = process_video(predictor, clip.video, out, json_path=js, tracker=PoseTracker(predictor.skeleton.sigmas),
                            progress=False)
    frames, fps = read_video(out)
    lines = [json.loads(line) for line in js.read_text().splitlines()]
    assert summary.frames == len(frames) == len(lines) == 20 and fps == pytest.approx(clip.fps)
    assert frames[0].shape == (120, 160, 3) and not summary.interrupted and no_temp_files(tmp_path)
    ids_of = {}
    for index, (line, truth) in enumerate(zip(lines, clip.frames)):
        assert line["frame"] == index and line["time"] == pytest.approx(index / clip.fps)
        people = [i for i, kp in zip(truth.ids, truth.keypoints) if (kp[:, 2] > 0).any()]
        assert len(line["poses"]) == len(people)
        for identity, pose in zip(people, line["poses"]):
            if pose["track_id"] is not None:
                ids_of.setdefault(int(identity), set()).add(pose["track_id"])
    assert len(ids_of) == 2 and all(len(v) == 1 for v in ids_of.values())  # one id per walker, kept
    assert len(set.union(*ids_of.values())) == 2 and summary.tracks == 2


def test_interrupt_keeps_a_playable_video_and_complete_lines(clip, tmp_path):
    out, js = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    summary = process_video(TruthPredictor(clip, interrupt_at=7), clip.video, out, json_path=js, progress=False)
    frames, _ = read_video(out)
    lines = [json.loads(line) for line in js.read_text().splitlines()]
    assert summary.interrupted and summary.frames == len(frames) == len(lines) == 7
    assert [line["frame"] for line in lines] == list(range(7)) and no_temp_files(tmp_path)


def test_an_error_leaves_no_output(clip, tmp_path):
    out, js = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="simulated failure"):
        process_video(TruthPredictor(clip, fail_at=5), clip.video, out, json_path=js, progress=False)
    assert os.listdir(tmp_path) == []


def test_video_command_writes_every_frame_it_reads(clip, model_file, tmp_path, capsys):
    from simplepose.commands import main

    out, js = tmp_path / "folder.avi", tmp_path / "folder.jsonl"
    code = main(["video", "--weights", str(model_file), "--source", str(clip.frame_dir), "--fps", "12.5", "--out",
                 str(out), "--json", str(js), "--no-progress", "--log-level", "WARNING"])
    report = capsys.readouterr().out
    assert code == 0, report
    frames, fps = read_video(out)
    lines = [json.loads(line) for line in js.read_text().splitlines()]
    assert len(frames) == len(lines) == 20 and fps == pytest.approx(12.5) and frames[0].shape == (120, 160, 3)
    assert "20 frames" in report and str(out) in report and "MJPG" in report
    assert [line["image"] for line in lines] == [f"{i:06d}.png" for i in range(1, 21)]
    poses = [p for line in lines for p in line["poses"]]
    assert poses and all("track_id" in p and (p["track_id"] is None or p["track_id"] >= 1) for p in poses)
    assert no_temp_files(tmp_path)


def test_video_command_bad_input_is_one_line(clip, model_file, tmp_path, capsys):
    from simplepose.commands import main

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    cases = [(["--source", str(tmp_path / "no.mp4"), "--out", str(tmp_path / "o.mp4")], "video not found"),
             (["--source", str(text), "--out", str(tmp_path / "o.mp4")], "not a video OpenCV can read"),
             (["--source", str(clip.video), "--out", str(tmp_path / "nowhere" / "o.mp4")], "does not exist"),
             (["--source", str(clip.video), "--out", str(tmp_path / "o.gif")], "unsupported ending"),
             (["--source", str(clip.video)], "nothing to write"),
             (["--source", str(clip.video), "--json", str(tmp_path / "o.jsonl"), "--limit", "0"], "--limit"),
             (["--source", str(clip.video), "--out", str(tmp_path / "o.mp4"), "--weights", str(text)], "")]
    for extra, message in cases:
        argv = ["video", "--weights", str(model_file), *extra, "--no-progress"]
        capsys.readouterr()
        assert main(argv) == 2, extra
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


@pytest.mark.slow
def test_sigint_mid_run_leaves_a_playable_file(model_file, tmp_path):
    long_clip = make_synthetic_video(tmp_path / "long", num_frames=400, image_size=(160, 120), num_people=2)
    out, js = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "simplepose", "video", "--weights", str(model_file), "--source",
                             str(long_clip.video), "--out", str(out), "--json", str(js), "--no-progress"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # wait until some frames are done
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-") and p.suffix == ".jsonl"]
        if temps and temps[0].read_text().count("\n") >= 5:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    frames, _ = read_video(out)
    lines = [json.loads(line) for line in js.read_text().splitlines()]
    assert 5 <= len(frames) == len(lines) < 400 and "interrupted" in stdout
    assert no_temp_files(tmp_path)


def test_demo_video_help():
    done = subprocess.run([sys.executable, str(REPO / "demo_video.py"), "--help"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0 and "--source" in done.stdout and "webcam" in done.stdout


@pytest.mark.slow
def test_topdown_model_through_the_video_command(clip, tmp_path, capsys):
    """A top-down model takes the whole frame as its person box; its one person keeps one track id."""
    from simplepose.commands import main
    from simplepose.config import load_config
    from simplepose.methods import build_model

    overrides = ["topdown.flip_test=false", "topdown.rescore_threshold=0"]
    cfg = load_config(REPO / "configs" / "topdown_tiny.yaml", overrides)
    build_model(cfg).save(tmp_path / "td.keras")
    js = tmp_path / "td.jsonl"
    assert main(["video", "--weights", str(tmp_path / "td.keras"), "--source", str(clip.video), "--json", str(js),
                 "--no-progress", "--log-level", "WARNING"]) == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in js.read_text().splitlines()]
    assert len(lines) == 20 and all(len(line["poses"]) == 1 for line in lines)
    assert [line["poses"][0]["track_id"] for line in lines] == [1] * 20  # the first frame confirms at once
