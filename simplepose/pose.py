"""Poses and the coordinate conventions every module shares.

Conventions (design decision 3):
- Keypoints are ``float32 (N, K, 3)`` rows ``[x, y, v]`` in pixels of the *current* image, x first.
  ``v`` keeps COCO's coding: 0 = not labelled (never drawn, never supervised), 1 = labelled but
  occluded, 2 = labelled and visible.
- A pixel's centre has integer coordinates: pixel (row i, column j) covers [j - 0.5, j + 0.5).
- A map cell (row r, column c) at stride s covers an s x s block of input pixels; its centre is at
  input pixel ``s * c + (s - 1) / 2`` (and likewise for rows). Keypoint and limb targets are sampled
  at these centres, and decoded peaks map back through the same formula, so training and inference
  agree to the sub-pixel (the seed used 8c + 3.5 for keypoints but 8c for limbs: a bug).
- Maps are channels-last ``(H, W, C)``; the loss mask is ``(H, W, 1)`` with 1 = supervised.
"""
from __future__ import annotations

import dataclasses

import numpy as np


def cell_to_pixel(cell, stride: int):
    """Centre of a map cell in input pixel coordinates (works on scalars and arrays)."""
    return stride * np.asarray(cell, dtype=np.float32) + (stride - 1) / 2.0


def pixel_to_cell(pixel, stride: int):
    """Inverse of :func:`cell_to_pixel`: a (fractional) cell coordinate."""
    return (np.asarray(pixel, dtype=np.float32) - (stride - 1) / 2.0) / stride


@dataclasses.dataclass
class Pose:
    """One person, and the one place that turns a person into output records.

    Attributes:
        keypoints: ``(K, 3)`` float32 ``[x, y, score]`` in original image pixels. A keypoint is *present*
            when its score is > 0 (absent ones are all zero); the methods make sure every keypoint they
            localise has a positive score.
        score: the person's score (used to rank detections).
    """

    keypoints: np.ndarray
    score: float

    @property
    def present(self) -> np.ndarray:
        """``(K,)`` bool: which keypoints were found."""
        return np.asarray(self.keypoints)[:, 2] > 0

    def to_coco(self, skeleton, image_id: int) -> dict:
        """A COCO keypoint result record: the 17 COCO keypoints, present ones at their place with v = 1,
        absent ones (and synthesised keypoints such as the neck, which COCO lacks) left out as ``0, 0, 0``."""
        coco = skeleton.to_coco(self.keypoints)
        present = coco[:, 2] > 0
        flat = np.zeros((len(coco), 3), dtype=np.float64)
        flat[present, :2] = coco[present, :2]
        flat[present, 2] = 1.0
        return {"image_id": int(image_id), "category_id": 1,
                "keypoints": [round(float(v), 2) for v in flat.reshape(-1)],
                "score": float(self.score)}

    def inside(self, width: int, height: int) -> "Pose":
        """This pose as reported for a ``width`` x ``height`` image: present keypoints clipped to the pixel
        centres' range ``[0, width - 1] x [0, height - 1]`` (flip averaging or a box near the border can put
        one a fraction of a pixel outside) and the person score at least 0."""
        kp = np.array(self.keypoints, dtype=np.float32, copy=True)
        present = kp[:, 2] > 0
        kp[present, 0] = np.clip(kp[present, 0], 0, width - 1)
        kp[present, 1] = np.clip(kp[present, 1], 0, height - 1)
        return Pose(keypoints=kp, score=max(0.0, float(self.score)))

    def to_dict(self, skeleton) -> dict:
        """A plain JSON object: ``{"score", "keypoints": {name: [x, y, score]}}``, present keypoints only."""
        return {"score": round(float(self.score), 4),
                "keypoints": {name: [round(float(x), 2), round(float(y), 2), round(float(s), 4)]
                              for name, (x, y, s), found in zip(skeleton.keypoints, self.keypoints, self.present)
                              if found}}
