"""Pose tracking across frames: track ids by optimal assignment on OKS / box IoU, One Euro smoothing per keypoint.

``PoseTracker.update(poses, timestamp)`` takes one frame's poses (any method's ``Pose`` list) and returns one
:class:`TrackedPose` per input pose, in the input order, with a ``track_id`` (None until its track is
confirmed) and the smoothed keypoints; the raw keypoints stay in ``raw_keypoints``. Tracks are kept by
matching each frame's poses to the tracks' predicted poses (constant velocity) with
``scipy.optimize.linear_sum_assignment`` on ``1 - similarity``, where similarity is OKS, box IoU or their
mean, confirmed tracks first and then the tracks left (see ``PoseTracker._match``). A track gets its id
after ``min_hits`` matched frames in a row (at once in the first frame) once its pose shows ``min_keypoints``
keypoints, and survives ``max_age`` frames without a match; a new pose that matches no track starts a
tentative track, which is dropped at its first miss. The smoothing is in
:mod:`simplepose.smoothing`.

Example:
    >>> tracker = PoseTracker(skeleton.sigmas)
    >>> for t, frame in enumerate(frames):
    ...     for pose in tracker.update(predictor.predict(frame), timestamp=t / 25):
    ...         print(pose.track_id, pose.keypoints, pose.raw_keypoints)
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import linear_sum_assignment

from simplepose.pose import Pose
from simplepose.smoothing import OneEuroFilter, PoseSmoother, SmoothingSettings

__all__ = ["COSTS", "OneEuroFilter", "PoseSmoother", "PoseTracker", "SmoothingSettings", "TrackedPose",
           "TrackerSettings", "box_iou", "identity_metrics", "keypoint_box", "oks"]

COSTS = ("oks", "iou", "oks+iou")


@dataclasses.dataclass(frozen=True)
class TrackerSettings:
    """How poses are matched to tracks, and when tracks start and end."""

    #: Similarity of a track's predicted pose and a new pose: ``oks`` (object keypoint similarity over
    #: the keypoints both have), ``iou`` (of their keypoint boxes) or ``oks+iou`` (the mean of the two).
    cost: str = "oks"
    #: A pose joins a track only if their similarity is at least this.
    min_similarity: float = 0.1
    #: Smallest person area (pixels^2) in the OKS: the keypoint box of a partial pose (someone entering the
    #: frame with one arm) is tiny, and OKS over a tiny area would reject its own next detection.
    min_area: float = 64.0 ** 2
    #: Match confirmed tracks first, keeping pairs at least ``confirmed_similarity`` alike, then the tracks left
    #: (confirmed or tentative) to the poses left with ``min_similarity``; False: one assignment of all tracks.
    confirmed_first: bool = True
    confirmed_similarity: float = 0.3
    #: Frames a confirmed track survives without a matching pose (it coasts at its last velocity).
    max_age: int = 15
    #: Matched frames in a row before a track is confirmed and gets its id (2, as in ByteTrack: one frame more
    #: than the pose itself; 3 kept a spurious pose out one frame longer but left every newcomer without an
    #: id for two frames).
    min_hits: int = 2
    #: ... and not before it shows at least this many keypoints: a lone keypoint at the frame edge (someone
    #: stepping in or out; a stray peak of a bottom-up decoder) gets no id of its own. Tuning clips: with 1,
    #: every walker leaving the frame with one hand in view whose track was lost got a new id for a frame.
    min_keypoints: int = 2
    #: A matched track whose predicted pose is at least this alike another track's keeps its velocity instead
    #: of learning it from the pose it got: while two people overlap, which pose is whose is a guess, and a
    #: wrong guess that also swapped their velocities would keep the swap once they part (as OC-SORT, the
    #: motion is not learned from uncertain frames). Above 1: off. Tuning clips 100-139 / 200-239: wrong-id
    #: frames 127 -> 26 / 270 -> 247 at 0.7 (0.5 helped the first set, hurt the second).
    overlap_similarity: float = 0.7
    #: Tracks started in the first frame are confirmed at once: no earlier frame could have confirmed them, and
    #: waiting would leave everyone in the opening frames without an id (SORT and ByteTrack do the same).
    confirm_first_frame: bool = True
    #: Keypoints scoring at or below this are ignored for matching (not for smoothing).
    min_keypoint_score: float = 0.05
    #: Frame rate assumed when ``update`` gets no timestamp.
    fps: float = 25.0

    def __post_init__(self):
        if self.cost not in COSTS:
            raise ValueError(f"unknown tracking cost {self.cost!r}; expected one of {', '.join(COSTS)}")
        if self.max_age < 0 or self.min_hits < 1 or self.min_keypoints < 1 or not 0 <= self.min_similarity <= 1 or \
                not self.min_similarity <= self.confirmed_similarity <= 1 or not self.fps > 0 \
                or not self.min_area >= 1:
            raise ValueError(f"tracker needs max_age >= 0, min_hits >= 1, min_keypoints >= 1, "
                             f"0 <= min_similarity <= confirmed_similarity <= 1, fps > 0 and "
                             f"min_area >= 1, got {self}")


@dataclasses.dataclass
class TrackedPose(Pose):
    """A :class:`Pose` of a tracked person: ``keypoints`` smoothed (when smoothing is on), ``raw_keypoints``
    as the predictor gave them, ``track_id`` the person's id (None while its track is tentative)."""

    track_id: int | None = None
    raw_keypoints: np.ndarray | None = None

    def to_dict(self, skeleton) -> dict:
        """:meth:`Pose.to_dict` plus ``track_id`` and, when smoothed, the raw positions as ``raw_keypoints``."""
        out = dict(super().to_dict(skeleton), track_id=self.track_id)
        raw = self.raw_keypoints
        if raw is not None and not np.array_equal(raw, self.keypoints):
            out["raw_keypoints"] = Pose(raw, self.score).to_dict(skeleton)["keypoints"]
        return out


def _inside_each(xy, image_size) -> np.ndarray:
    """``(N,)``: which of the points ``(N, 2)`` lie inside an image of ``(width, height)``."""
    x, y = xy[:, 0], xy[:, 1]
    return (x >= 0) & (x < image_size[0]) & (y >= 0) & (y < image_size[1])


def _inside(xy, image_size) -> bool:
    """Whether any of the points ``(N, 2)`` lies inside an image of ``(width, height)``."""
    return bool(np.any(_inside_each(xy, image_size)))


def keypoint_box(xy, mask) -> np.ndarray | None:
    """``[x0, y0, x1, y1]`` of the ``mask``ed points, or None if there are none."""
    if not np.any(mask):
        return None
    pts = np.asarray(xy)[mask]
    return np.concatenate([pts.min(0), pts.max(0)])


def oks(a, a_mask, b, b_mask, sigmas, area: float) -> float:
    """Object keypoint similarity of two poses, counting keypoints that only one of them has as mismatches.

    ``OKS = sum_{k in both} exp(-|a_k - b_k|^2 / (2 area (2 sigma_k)^2)) / |keypoints of either|``: COCO's
    OKS where both poses have every keypoint, and low when they share few keypoints (a person entering
    the frame with one arm is not similar to a whole person whose wrist happens to be near that arm).
    Shapes: ``a, b (K, 2)``, masks ``(K,)``.
    """
    a_mask, b_mask = np.asarray(a_mask, bool), np.asarray(b_mask, bool)
    both, either = a_mask & b_mask, int((a_mask | b_mask).sum())
    if not both.any():
        return 0.0
    d2 = ((np.asarray(a)[both] - np.asarray(b)[both]) ** 2).sum(1)
    var = (2.0 * np.asarray(sigmas, np.float64)[both]) ** 2
    return float(np.exp(-d2 / (2.0 * max(area, 1.0) * var)).sum() / either)


def box_iou(a, b) -> float:
    """IoU of two ``[x0, y0, x1, y1]`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _padded(box):
    """A keypoint box grown by 10% of its larger side plus 2 px each way (single points get an area)."""
    pad = 0.1 * max(box[2] - box[0], box[3] - box[1]) + 2.0
    return box + np.array([-pad, -pad, pad, pad])


class _Track:
    """One person's track: the last position of every keypoint seen (moved on with the pose while unseen),
    the keypoints seen in its last matched frame, the pose's velocity and its size."""

    def __init__(self, pose: Pose, mask, t: float, num_keypoints: int, smoothing):
        self.id = None
        self.hits, self.misses = 1, 0
        self.xy, self.mask, self.t = np.asarray(pose.keypoints)[:, :2].astype(np.float64), mask, t
        self.velocity = np.zeros(2)  # pixels per second, of the whole pose
        box = keypoint_box(self.xy, pose.present)
        self.scale = max(1.0, float(max(box[2:] - box[:2]))) if box is not None else 1.0
        self.smoother = PoseSmoother(smoothing, num_keypoints) if smoothing is not None else None

    def predicted(self, t: float) -> np.ndarray:
        return self.xy + self.velocity * (t - self.t)

    def update(self, pose: Pose, mask, t: float, keep_velocity: bool = False) -> None:
        xy = np.asarray(pose.keypoints)[:, :2].astype(np.float64)
        shared = mask & self.mask
        # keep_velocity: not while the track has none yet (its first match gives it its first velocity).
        if shared.any() and t > self.t and not (keep_velocity and self.hits > 1):
            step = (xy[shared] - self.xy[shared]).mean(0) / (t - self.t)
            self.velocity = step if self.hits == 1 else 0.5 * self.velocity + 0.5 * step
        box = keypoint_box(xy, pose.present)
        if box is not None:
            self.scale = 0.8 * self.scale + 0.2 * max(1.0, float(max(box[2:] - box[:2])))
        self.xy = self.predicted(t)  # keypoints missing now move on with the pose
        self.xy[mask] = xy[mask]
        self.mask = mask
        self.t = t
        self.hits += 1
        self.misses = 0


class PoseTracker:
    """Track ids and smoothed keypoints for the poses of consecutive frames (either method's poses).

    Args:
        sigmas: ``(K,)`` OKS sigmas of the poses' skeleton (``skeleton.sigmas``).
        settings: :class:`TrackerSettings` (default: OKS cost, max_age 15, min_hits 3).
        smoothing: :class:`SmoothingSettings`, or None to switch smoothing off (keypoints = raw keypoints).

    Attributes:
        num_tracks: ids given so far (ids are 1, 2, ... in order of confirmation).
    """

    def __init__(self, sigmas, settings: TrackerSettings | None = None,
                 smoothing: SmoothingSettings | None = SmoothingSettings()):
        self.sigmas = np.asarray(sigmas, np.float64)
        self.settings = settings or TrackerSettings()
        self.smoothing = smoothing
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new video)."""
        self.tracks: list[_Track] = []
        self.num_tracks = 0
        self.frame = 0

    def update(self, poses, timestamp: float | None = None, image_size=None) -> list[TrackedPose]:
        """The poses of the next frame with their track ids and smoothed keypoints, in the input order.

        Args:
            poses: ``Pose`` list of this frame (keypoints ``(K, 3)`` ``[x, y, score]``, absent ones score 0).
            timestamp: the frame's time in seconds (default: frames so far / ``settings.fps``).
            image_size: ``(width, height)`` of the frame, if known: a track that missed its last frame and
                whose predicted pose has left the frame ends (the person walked out), instead of coasting on
                and taking over someone who enters where they left.
        """
        s = self.settings
        t = self.frame / s.fps if timestamp is None else float(timestamp)
        self.frame += 1
        if image_size is not None:
            self.tracks = [tr for tr in self.tracks if not tr.misses or _inside(tr.predicted(t)[tr.mask], image_size)]
        masks = [np.asarray(p.keypoints)[:, 2] > s.min_keypoint_score for p in poses]
        masks = [m if m.any() else np.asarray(p.keypoints)[:, 2] > 0 for m, p in zip(masks, poses)]
        pairs = self._match(poses, masks, t, image_size)
        matched = {d: tr for tr, d in pairs}
        crowded = self._crowded([tr for tr, _ in pairs], t, image_size)
        for track in self.tracks:
            if track not in matched.values():
                track.misses += 1
        self.tracks = [tr for tr in self.tracks if tr in matched.values()
                       or (tr.id is not None and tr.misses <= s.max_age)]
        out = []
        for d, pose in enumerate(poses):
            track = matched.get(d)
            if track is None:
                track = _Track(pose, masks[d], t, len(self.sigmas), self.smoothing)
                self.tracks.append(track)
            else:
                track.update(pose, masks[d], t, keep_velocity=track in crowded)
            if track.id is None and int(masks[d].sum()) >= s.min_keypoints and \
                    (track.hits >= s.min_hits or (s.confirm_first_frame and self.frame == 1)):
                self.num_tracks += 1
                track.id = self.num_tracks
            out.append(self._output(pose, track, t))
        return out

    def _crowded(self, tracks, t: float, image_size=None) -> set:
        """Those of ``tracks`` whose predicted pose is at least ``settings.overlap_similarity`` alike another
        track's (two people overlapping: which pose is whose is a guess). Only pairs whose predicted keypoint
        boxes intersect are compared."""
        threshold = self.settings.overlap_similarity
        if threshold > 1 or len(self.tracks) < 2:
            return set()
        predicted = {id(tr): tr.predicted(t) for tr in self.tracks}
        boxes = {id(tr): keypoint_box(predicted[id(tr)], tr.mask) for tr in self.tracks}
        out = set()
        for a in tracks:
            if boxes[id(a)] is None:
                continue
            pose_a = Pose(np.concatenate([predicted[id(a)], a.mask[:, None]], 1), 1.0)
            if any(b is not a and boxes[id(b)] is not None and box_iou(boxes[id(a)], boxes[id(b)]) > 0
                   and self.similarity(b, pose_a, a.mask, t, image_size) >= threshold for b in self.tracks):
                out.add(a)
        return out

    def _match(self, poses, masks, t: float, image_size=None) -> list:
        """``(track, pose index)`` pairs in two rounds (one without ``settings.confirmed_first``), each the
        optimal assignment of its tracks to the poses still free, keeping pairs whose similarity reaches the
        round's threshold: first the confirmed tracks, with ``settings.confirmed_similarity``, then every track
        left, with ``settings.min_similarity``. A
        newcomer's one-frame-old track (with no velocity yet) cannot outbid a person's long track for that
        person's pose, and a confirmed track cannot take a newcomer's pose on a weak match."""
        if not self.tracks or not poses:
            return []
        s = self.settings
        sim = np.array([[self.similarity(tr, p, m, t, image_size) for p, m in zip(poses, masks)]
                        for tr in self.tracks])
        pairs, free_rows, free_cols = [], list(range(len(self.tracks))), list(range(len(poses)))
        rounds = ((True, s.confirmed_similarity),) if s.confirmed_first else ()
        for confirmed_only, threshold in rounds + ((False, s.min_similarity),):
            rows_in = [r for r in free_rows if self.tracks[r].id is not None or not confirmed_only]
            if not rows_in or not free_cols:
                continue
            sub = sim[np.ix_(rows_in, free_cols)]
            taken = [(rows_in[r], free_cols[c]) for r, c in zip(*linear_sum_assignment(1.0 - sub))
                     if sub[r, c] >= threshold]
            pairs += [(self.tracks[r], c) for r, c in taken]
            free_rows = [r for r in free_rows if r not in {r for r, _ in taken}]
            free_cols = [c for c in free_cols if c not in {c for _, c in taken}]
        return pairs

    def similarity(self, track, pose: Pose, mask, t: float, image_size=None) -> float:
        """OKS, box IoU or their mean between ``track``'s pose predicted at ``t`` and ``pose``.

        With ``image_size``, the track's keypoints predicted outside the frame are left out: a person walking
        out loses them, and counting them as mismatches would favour a newcomer showing the same keypoints.
        """
        pred, xy = track.predicted(t), np.asarray(pose.keypoints)[:, :2]
        expected = track.mask if image_size is None else track.mask & _inside_each(pred, image_size)
        box_t, box_p = keypoint_box(pred, expected), keypoint_box(xy, mask)
        if box_t is None or box_p is None:
            return 0.0
        out = []
        if self.settings.cost in ("oks", "oks+iou"):
            area = max(0.5 * (np.prod(box_t[2:] - box_t[:2]) + np.prod(box_p[2:] - box_p[:2])),
                       self.settings.min_area)
            out.append(oks(pred, expected, xy, mask, self.sigmas, area))
        if self.settings.cost in ("iou", "oks+iou"):
            out.append(box_iou(_padded(box_t), _padded(box_p)))
        return float(np.mean(out))

    def _output(self, pose: Pose, track: _Track, t: float) -> TrackedPose:
        raw = np.asarray(pose.keypoints, np.float32)
        kp = raw.copy()
        if track.smoother is not None:
            kp[:, :2] = track.smoother(raw[:, :2], raw[:, 2] > 0, t, track.scale)
        return TrackedPose(kp, float(pose.score), track_id=track.id, raw_keypoints=raw)


def identity_metrics(gt_ids, hyp_ids) -> dict:
    """IDF1 (Ristani et al. 2016), ID switches (CLEAR MOT) and counts of per-frame ground truth and tracker ids.

    Args:
        gt_ids: per frame, the ground-truth identity (any hashable) of every true person.
        hyp_ids: per frame, aligned with ``gt_ids``: the track id (any hashable) the tracker gave that person, or None
            (not detected, or its track not confirmed).

    Returns:
        ``{"idf1", "id_switches", "gt", "hyp", "idtp", "gt_ids", "track_ids"}``: IDF1 = 2 IDTP / (gt + hyp),
        where IDTP counts the frames whose track id is the one globally assigned to that identity; a switch
        is a person whose track id differs from the one it last had.
    """
    pairs = [(g, h) for gs, hs in zip(gt_ids, hyp_ids) for g, h in zip(gs, hs)]
    gts = sorted({g for g, _ in pairs}, key=repr)
    hyps = sorted({h for _, h in pairs if h is not None}, key=repr)
    counts = np.zeros((len(gts), len(hyps)))
    gi, hi = {g: i for i, g in enumerate(gts)}, {h: i for i, h in enumerate(hyps)}
    last, switches = {}, 0
    for g, h in pairs:
        if h is None:
            continue
        counts[gi[g], hi[h]] += 1
        switches += int(g in last and last[g] != h)
        last[g] = h
    idtp = float(counts[linear_sum_assignment(-counts)].sum()) if counts.size else 0.0
    n_gt, n_hyp = len(pairs), sum(h is not None for _, h in pairs)
    return {"idf1": 2 * idtp / (n_gt + n_hyp) if n_gt + n_hyp else 1.0, "id_switches": switches, "gt": n_gt,
            "hyp": n_hyp, "idtp": int(idtp), "gt_ids": len(gts), "track_ids": len(hyps)}
