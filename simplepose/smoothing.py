"""Temporal smoothing of a tracked person's keypoints: a One Euro filter per keypoint (used by
:class:`simplepose.tracking.PoseTracker`, which re-exports these names)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class SmoothingSettings:
    """One Euro filter (Casiez, Roussel & Vogel, CHI 2012) on each keypoint of each track.

    Each coordinate is low-pass filtered with a cutoff frequency that rises with the keypoint's speed:
    still keypoints are smoothed hard (little jitter), fast ones lightly (little lag). Speeds are measured in
    person heights per second (the track's keypoint-box height), so one setting fits near and far people.

    With ``person_frame`` (the default) the filter runs on each keypoint's offset from the person's centre
    (the mean over the keypoints of position minus smoothed offset), and the centre follows an alpha-beta
    (constant velocity) filter: a walking person's whole-body motion would make a low-pass filter lag
    behind, the articulation is slow enough to smooth, and averaging over K keypoints already divides the
    centre's noise by sqrt(K). ``person_frame=False`` filters image positions directly (the filter's classic
    use, for people who stay in place).
    """

    #: Cutoff (Hz) of a keypoint at rest: lower = less jitter, more lag on slow motion.
    min_cutoff: float = 1.0
    #: Cutoff increase per unit of speed (Hz per person height per second): higher = less lag when moving.
    beta: float = 6.0
    #: Cutoff (Hz) of the low-pass filter on the speed estimate itself.
    d_cutoff: float = 1.0
    #: Filter offsets from the person's centre (True) or image positions (False).
    person_frame: bool = True
    #: Share of the centre's measured-minus-predicted residual taken each frame (1: the centre is not smoothed).
    centre_gain: float = 0.6
    #: Share of that residual, over the time step, added to the centre's velocity.
    centre_velocity_gain: float = 0.15

    def __post_init__(self):
        if not (self.min_cutoff > 0 and self.d_cutoff > 0 and self.beta >= 0 and 0 < self.centre_gain <= 1
                and 0 <= self.centre_velocity_gain <= 1):
            raise ValueError(f"smoothing needs min_cutoff > 0, d_cutoff > 0, beta >= 0, 0 < centre_gain <= 1 and "
                             f"0 <= centre_velocity_gain <= 1, got {self}")


class OneEuroFilter:
    """One Euro filter of ``num_points`` 2-D points with their own state (see :class:`SmoothingSettings`).

    A point that is absent in a call is reset (it restarts from its next position); time gaps (frames
    without a call) are handled through the timestamps.
    """

    def __init__(self, settings: SmoothingSettings, num_points: int):
        self.settings = settings
        self.x = np.zeros((num_points, 2))
        self.dx = np.zeros((num_points, 2))
        self.t = np.zeros(num_points)
        self.valid = np.zeros(num_points, bool)

    @staticmethod
    def alpha(cutoff, dt):
        """Smoothing factor of a first-order low-pass filter with ``cutoff`` Hz over ``dt`` seconds."""
        return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff * dt))

    def __call__(self, points, present, t: float, scale: float = 1.0) -> np.ndarray:
        """Filtered ``points`` at time ``t`` (seconds). Shapes: ``points (P, 2)``, ``present (P,)`` -> ``(P, 2)``.

        ``scale``: pixels per person height (speeds are divided by it before the ``beta`` term).
        """
        s = self.settings
        points = np.asarray(points, np.float64)
        present = np.asarray(present, bool)
        go, fresh = present & self.valid, present & ~self.valid
        if go.any():
            dt = np.maximum(t - self.t[go], 1e-6)[:, None]
            a_d = self.alpha(s.d_cutoff, dt)
            self.dx[go] = a_d * (points[go] - self.x[go]) / dt + (1 - a_d) * self.dx[go]
            speed = np.linalg.norm(self.dx[go], axis=1, keepdims=True) / max(scale, 1e-6)
            a = self.alpha(s.min_cutoff + s.beta * speed, dt)
            self.x[go] = a * points[go] + (1 - a) * self.x[go]
        self.x[fresh], self.dx[fresh] = points[fresh], 0.0
        self.t[present] = t
        self.valid = present.copy()
        return np.where(present[:, None], self.x, points)


class PoseSmoother:
    """The smoothed keypoints of one person over time (see :class:`SmoothingSettings`)."""

    def __init__(self, settings: SmoothingSettings, num_keypoints: int):
        self.settings = settings
        self.filter = OneEuroFilter(settings, num_keypoints)
        self.centre = self.velocity = None
        self.t = 0.0

    def __call__(self, xy, present, t: float, scale: float = 1.0) -> np.ndarray:
        """Smoothed ``xy`` at time ``t`` (absent keypoints returned as given). Shapes: ``(K, 2)``, ``(K,)``."""
        xy = np.asarray(xy, np.float64)
        present = np.asarray(present, bool)
        if not self.settings.person_frame or not present.any():
            return self.filter(xy, present, t, scale)
        known = present & self.filter.valid
        measured = (xy[known] - self.filter.x[known] if known.any() else xy[present]).mean(0)
        if self.centre is None or not known.any() or t <= self.t:
            self.centre, self.velocity = measured, np.zeros(2)
        else:  # alpha-beta filter: constant velocity, corrected by a share of the residual
            dt = t - self.t
            predicted = self.centre + self.velocity * dt
            residual = measured - predicted
            self.centre = predicted + self.settings.centre_gain * residual
            self.velocity = self.velocity + self.settings.centre_velocity_gain * residual / dt
        self.t = t
        return self.centre + self.filter(xy - measured, present, t, scale)
