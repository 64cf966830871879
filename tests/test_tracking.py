"""PoseTracker: ids kept through crossings, max_age / min_hits, both costs, either method's poses; One Euro
smoothing reduces error and keeps the raw positions; identity metrics against hand-computed values."""
import math

import numpy as np
import pytest

from simplepose.data.stick_people import walking_pose
from simplepose.data.synthetic_video import make_synthetic_video
from simplepose.pose import Pose
from simplepose.skeleton import COCO_SIGMAS, get_skeleton
from simplepose.tracking import (OneEuroFilter, PoseTracker, SmoothingSettings, TrackedPose, TrackerSettings,
                                 identity_metrics, oks)


@pytest.fixture(scope="module")
def crossing_clip(tmp_path_factory):
    """60 frames: three walkers, the first two crossing, someone entering, the pillar hiding people."""
    return make_synthetic_video(tmp_path_factory.mktemp("crossing"), num_frames=60, image_size=(240, 180),
                                num_people=3, seed=1, write_video=False)


def true_poses(people):
    """The annotated joints (v > 0) of one frame as poses, with their identities."""
    out = [(int(i), Pose(np.where(kp[:, 2:] > 0, np.concatenate([kp[:, :2], np.ones((17, 1))], 1), 0)
                         .astype(np.float32), 1.0)) for i, kp in zip(people.ids, people.keypoints)
           if (kp[:, 2] > 0).any()]
    return [i for i, _ in out], [p for _, p in out]


def track_clip(clip, settings=None, smoothing=SmoothingSettings()):
    tracker = PoseTracker(COCO_SIGMAS, settings, smoothing)
    gt, hyp = [], []
    for index, people in enumerate(clip.frames):
        ids, poses = true_poses(people)
        tracked = tracker.update(poses, timestamp=index / clip.fps, image_size=clip.size)
        assert [t.raw_keypoints.tolist() for t in tracked] == [p.keypoints.tolist() for p in poses]
        gt.append(ids)
        hyp.append([t.track_id for t in tracked])
    return gt, hyp, tracker


def test_ids_stay_constant_through_crossings_with_true_poses(crossing_clip):
    xs = {}
    for people in crossing_clip.frames:
        for i, kp in zip(people.ids, people.keypoints):
            xs.setdefault(int(i), []).append(float(kp[11:13, 0].mean()))
    assert (np.sign(np.subtract(xs[1][0], xs[2][0])) != np.sign(np.subtract(xs[1][-1], xs[2][-1])))  # a crossing
    for cost in ("oks", "iou", "oks+iou"):
        gt, hyp, tracker = track_clip(crossing_clip, TrackerSettings(cost=cost))
        by_identity = {}
        for ids, tracks in zip(gt, hyp):
            for i, t in zip(ids, tracks):
                by_identity.setdefault(i, []).append(t)
        for i, tracks in by_identity.items():
            # The first frame's people get their id at once; someone entering later has none in their first frame.
            assert (tracks[0] is not None) == (i in gt[0]), (cost, i, tracks)
        # Box IoU alone loses the newcomer once while its keypoint box grows from a hand to an arm and a
        # shoulder (IoU < min_similarity between two frames); OKS keeps it. The crossing people keep theirs.
        people = by_identity if cost != "iou" else {i: by_identity[i] for i in gt[0]}
        for i, tracks in people.items():
            assert len(set(tracks) - {None}) == 1, (cost, i, tracks)  # one id (None: one hand left in view)
        labelled = [max(t for t in tracks if t is not None) for tracks in people.values()]
        assert len(set(labelled)) == len(labelled), cost  # one id per person
        if cost != "iou":
            assert tracker.num_tracks == 4 and identity_metrics(gt, hyp)["id_switches"] == 0, cost


def moving_pose(frame, step=3.0):
    kp = np.zeros((17, 3), np.float32)
    kp[:, :2] = walking_pose(0.2 * frame, 100.0) + (40.0 + step * frame, 80.0)
    kp[:, 2] = 1.0
    return Pose(kp, 1.0)


def test_min_hits_and_max_age():
    settings = TrackerSettings(min_hits=3, max_age=4, confirm_first_frame=False)
    tracker = PoseTracker(COCO_SIGMAS, settings, smoothing=None)
    ids = [tracker.update([moving_pose(f)])[0].track_id for f in range(5)]
    assert ids == [None, None, 1, 1, 1]
    for f in range(5, 9):  # 4 missed frames: the track coasts on
        assert tracker.update([]) == []
    assert tracker.update([moving_pose(9)])[0].track_id == 1
    for f in range(10, 15):  # 5 missed frames: it ends; the person comes back as a new track
        tracker.update([])
    assert [tracker.update([moving_pose(f)])[0].track_id for f in range(15, 18)] == [None, None, 2]


def test_tentative_tracks_end_at_their_first_miss():
    tracker = PoseTracker(COCO_SIGMAS, TrackerSettings(min_hits=3, confirm_first_frame=False), smoothing=None)
    assert tracker.update([moving_pose(0)])[0].track_id is None
    tracker.update([])
    assert [tracker.update([moving_pose(f)])[0].track_id for f in (2, 3, 4)] == [None, None, 1]


def test_first_frame_people_get_ids_at_once_later_ones_after_min_hits():
    tracker = PoseTracker(COCO_SIGMAS, smoothing=None)  # defaults: min_hits 2, confirm_first_frame
    assert [t.track_id for t in tracker.update([moving_pose(0)])] == [1]
    newcomer = [moving_pose(1), moving_pose(30, step=-3.0)]  # someone appears in the second frame
    assert [t.track_id for t in tracker.update(newcomer)] == [1, None]
    assert [t.track_id for t in tracker.update([moving_pose(2), moving_pose(31, step=-3.0)])] == [1, 2]
    tracker.reset()  # a new video: its first frame confirms again
    assert [t.track_id for t in tracker.update([moving_pose(0)])] == [1]


def test_a_lone_keypoint_gets_no_id_until_the_pose_shows_min_keypoints():
    def partial(frame, shown):
        pose = moving_pose(frame)
        pose.keypoints[shown:, :] = 0.0  # only the first `shown` keypoints (someone at the frame edge)
        return pose

    tracker = PoseTracker(COCO_SIGMAS, TrackerSettings(min_hits=2, min_keypoints=2), smoothing=None)
    ids = [tracker.update([partial(f, 1)])[0].track_id for f in range(4)]
    assert ids == [None] * 4  # matched every frame, but one keypoint never confirms a track
    assert [tracker.update([partial(f, 3)])[0].track_id for f in (4, 5)] == [1, 1]
    assert tracker.update([partial(6, 1)])[0].track_id == 1  # a confirmed track keeps its id on one keypoint
    with pytest.raises(ValueError, match="min_keypoints >= 1"):
        TrackerSettings(min_keypoints=0)


def test_overlapping_tracks_keep_their_velocities_apart_tracks_learn_them():
    """Two people at one spot: their tracks keep the velocities they had (which pose is whose is a guess);
    with ``overlap_similarity`` above 1, or for a person alone, the velocity follows the poses."""
    for threshold, kept in ((0.7, True), (1.01, False)):
        tracker = PoseTracker(COCO_SIGMAS, TrackerSettings(overlap_similarity=threshold), smoothing=None)
        for f in range(3):  # one walks right 2 px per frame, the other 6 px; they meet at x = 100 in frame 3
            tracker.update([_shifted(100 - 2 * (3 - f)), _shifted(100 - 6 * (3 - f))], timestamp=f / 25)
        before = [tr.velocity.copy() for tr in tracker.tracks]
        tracker.update([_shifted(100), _shifted(100.5)], timestamp=3 / 25)
        after = [tr.velocity for tr in tracker.tracks]
        assert all(np.allclose(a, b) for a, b in zip(after, before)) == kept, threshold
    alone = PoseTracker(COCO_SIGMAS, smoothing=None)
    for f in range(4):
        alone.update([_shifted(10.0 * f)], timestamp=f / 25)
    assert alone.tracks[0].velocity[0] == pytest.approx(250.0)  # 10 px per frame at 25 fps


def _shifted(x):
    """``moving_pose``'s pose of frame 0 with its origin at ``x`` (the same stance wherever it is)."""
    pose = moving_pose(0)
    pose.keypoints[:, 0] += x - 40.0
    return pose


def test_a_track_leaving_the_frame_ends_instead_of_taking_over_a_newcomer():
    tracker = PoseTracker(COCO_SIGMAS, TrackerSettings(min_hits=1), smoothing=None)
    leaving = [moving_pose(f, step=-12.0) for f in range(4)]  # walks out at the left edge
    assert [tracker.update([p], image_size=(320, 240))[0].track_id for p in leaving] == [1, 1, 1, 1]
    for _ in range(3):
        tracker.update([], image_size=(320, 240))
    assert tracker.tracks == []


def test_topdown_style_poses_every_keypoint_present_with_low_scores():
    """Top-down poses have every keypoint, some with tiny scores: those are left out of matching."""
    rng = np.random.default_rng(0)
    tracker = PoseTracker(get_skeleton("coco17").sigmas, TrackerSettings(min_hits=1), smoothing=None)
    for f in range(10):
        people = [moving_pose(f, 3.0), moving_pose(40 - f, 3.0)]
        for p in people:
            junk = rng.random(17) < 0.3
            p.keypoints[junk, :2] = rng.uniform(0, 300, (int(junk.sum()), 2))  # junk at a tiny score
            p.keypoints[junk, 2] = 1e-6
        ids = [t.track_id for t in tracker.update(people)]
        assert ids == [1, 2], f


def test_smoothing_cuts_the_error_of_a_noisy_walk_and_keeps_raw_positions():
    rng = np.random.default_rng(0)
    errors = {}
    for name, smoothing in (("raw", None), ("smoothed", SmoothingSettings()),
                            ("image frame", SmoothingSettings(person_frame=False))):
        tracker = PoseTracker(COCO_SIGMAS, smoothing=smoothing)
        total = []
        for f in range(150):
            truth = moving_pose(f, step=1.0)
            noisy = Pose(truth.keypoints.copy(), 1.0)
            noisy.keypoints[:, :2] += rng.normal(0, 3.0, (17, 2))
            out = tracker.update([noisy], timestamp=f / 25)[0]
            assert np.array_equal(out.raw_keypoints, noisy.keypoints)
            assert np.array_equal(out.keypoints[:, 2], noisy.keypoints[:, 2])
            if smoothing is None:
                assert np.array_equal(out.keypoints, out.raw_keypoints)
            if f >= 10:
                total.append(np.linalg.norm(out.keypoints[:, :2] - truth.keypoints[:, :2], axis=1).mean())
        errors[name] = float(np.mean(total))
    assert errors["smoothed"] < 0.7 * errors["raw"], errors
    assert errors["image frame"] < errors["raw"], errors


def test_one_euro_filter_follows_a_constant_and_resets_absent_points():
    f = OneEuroFilter(SmoothingSettings(), 2)
    for t in range(5):
        out = f(np.array([[3.0, 4.0], [10.0, 10.0]]), np.array([True, True]), t / 25)
    assert np.allclose(out, [[3.0, 4.0], [10.0, 10.0]])
    f(np.zeros((2, 2)), np.array([True, False]), 0.24)  # the second point disappears...
    out = f(np.array([[0.0, 0.0], [50.0, 60.0]]), np.array([True, True]), 0.28)
    assert np.allclose(out[1], [50.0, 60.0])  # ...and restarts where it comes back
    # a step is followed gradually, faster with a higher min_cutoff
    slow, fast = OneEuroFilter(SmoothingSettings(min_cutoff=0.5, beta=0), 1), \
        OneEuroFilter(SmoothingSettings(min_cutoff=5.0, beta=0), 1)
    for filt in (slow, fast):
        filt(np.zeros((1, 2)), np.array([True]), 0.0)
    a, b = (filt(np.full((1, 2), 10.0), np.array([True]), 0.04)[0, 0] for filt in (slow, fast))
    alpha = 1 / (1 + 1 / (2 * math.pi * 0.5 * 0.04))
    assert a == pytest.approx(10 * alpha) and 0 < a < b < 10


def test_tracked_pose_json_has_track_id_and_raw_positions():
    skeleton = get_skeleton("coco17")
    kp = moving_pose(0).keypoints
    shifted = kp.copy()
    shifted[:, 0] += 1
    d = TrackedPose(shifted, 0.9, track_id=4, raw_keypoints=kp).to_dict(skeleton)
    assert d["track_id"] == 4
    assert d["keypoints"]["nose"][0] == pytest.approx(d["raw_keypoints"]["nose"][0] + 1, abs=0.01)
    assert "raw_keypoints" not in TrackedPose(kp, 0.9, track_id=None, raw_keypoints=kp).to_dict(skeleton)


def test_oks_counts_keypoints_only_one_pose_has_as_mismatches():
    a = moving_pose(0).keypoints[:, :2]
    full, two = np.ones(17, bool), np.zeros(17, bool)
    two[[9, 10]] = True
    assert oks(a, full, a, full, COCO_SIGMAS, 5000.0) == pytest.approx(1.0)
    assert oks(a, full, a, two, COCO_SIGMAS, 5000.0) == pytest.approx(2 / 17)
    assert oks(a, two, a + 1000, two, COCO_SIGMAS, 5000.0) == pytest.approx(0.0)


def test_identity_metrics_by_hand():
    perfect = identity_metrics([[1, 2]] * 4, [[7, 8]] * 4)
    assert perfect["idf1"] == 1.0 and perfect["id_switches"] == 0
    # person 1 switches from track 7 to 9 after 2 frames; person 2's last frame is missed
    m = identity_metrics([[1, 2]] * 4, [[7, 8], [7, 8], [9, 8], [9, None]])
    assert m["id_switches"] == 1 and m["gt"] == 8 and m["hyp"] == 7
    assert m["idtp"] == 5 and m["idf1"] == pytest.approx(2 * 5 / 15)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="unknown tracking cost"):
        TrackerSettings(cost="euclid")
    with pytest.raises(ValueError, match="min_hits >= 1"):
        TrackerSettings(min_hits=0)
    with pytest.raises(ValueError, match="min_similarity <= confirmed_similarity"):
        TrackerSettings(min_similarity=0.4, confirmed_similarity=0.3)
    with pytest.raises(ValueError, match="min_cutoff > 0"):
        SmoothingSettings(min_cutoff=0)


def one_keypoint_pose(k, x, y):
    kp = np.zeros((17, 3), np.float32)
    kp[k] = (x, y, 1.0)
    return Pose(kp, 1.0)


def test_a_confirmed_track_keeps_its_person_against_a_newcomer_at_the_edge():
    """A person walks out at the right edge (one wrist in view) as a newcomer's wrist appears just ahead of
    them; next frame the newcomer has stepped in, close to where the new track started. One assignment of
    all tracks gives the walker's pose to the newcomer's motionless track; confirmed tracks first do not."""
    size = (320, 240)
    for first, expected in ((True, [1, None]), (False, [None, 1])):
        settings = TrackerSettings(confirmed_first=first, min_hits=3, min_keypoints=1, confirm_first_frame=False)
        tracker = PoseTracker(COCO_SIGMAS, settings, smoothing=None)
        for f in range(6):  # 5 px per frame to the right
            assert tracker.update([one_keypoint_pose(9, 280 + 5 * f, 100)], image_size=size)[0].track_id \
                == (1 if f >= 2 else None)
        assert [p.track_id for p in tracker.update([one_keypoint_pose(9, 310, 100), one_keypoint_pose(9, 316, 100)],
                                                   image_size=size)] == [1, None]
        out = tracker.update([one_keypoint_pose(9, 315, 100), one_keypoint_pose(9, 311, 100)], image_size=size)
        assert [p.track_id for p in out] == expected, first


def test_keypoints_predicted_outside_the_frame_are_not_counted_missing():
    """A walker leaving at the right edge: the wrist predicted beyond the edge is not a mismatch when the image
    size is known, so their remaining hip matches fully; without it the OKS counts the wrist as missing."""
    tracker = PoseTracker(COCO_SIGMAS, smoothing=None)
    for f in range(3):
        kp = np.zeros((17, 3), np.float32)
        kp[9], kp[11] = (305 + 6 * f, 100, 1), (290 + 6 * f, 120, 1)
        tracker.update([Pose(kp, 1.0)])
    track, t = tracker.tracks[0], 3 / 25
    assert track.predicted(t)[9, 0] > 320 > track.predicted(t)[11, 0]
    hip = one_keypoint_pose(11, 308, 120)
    mask = hip.keypoints[:, 2] > 0
    assert tracker.similarity(track, hip, mask, t, image_size=(320, 240)) == pytest.approx(1.0)
    assert tracker.similarity(track, hip, mask, t) == pytest.approx(0.5)
