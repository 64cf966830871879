"""Drawing poses on images (one colour per limb type, keypoints as dots) and training samples; no GUI calls."""
from __future__ import annotations

import colorsys
import os

import cv2
import numpy as np

from simplepose import atomic
from simplepose.errors import DataError


def limb_colours(num_limbs: int) -> list[tuple[int, int, int]]:
    """``num_limbs`` distinct BGR colours around the hue circle, like the published figures."""
    out = []
    for k in range(num_limbs):
        r, g, b = colorsys.hsv_to_rgb(k / max(num_limbs, 1), 1.0, 1.0)
        out.append((int(255 * b), int(255 * g), int(255 * r)))
    return out


def draw_poses(image, poses, skeleton, *, min_score: float = 0.0, thickness: int = 0):
    """A copy of ``image`` with every pose's limbs, keypoints and person score drawn so they stand out.

    Limbs are coloured lines (one hue per limb type) on a black outline, keypoints white dots ringed in
    black, and each person's score is printed above its keypoints on a black label; the picture itself is
    dimmed a little. Drawn people in the image (the synthetic stick figures have the same limb colours) can
    so be told apart from the predictions.

    Args:
        image: BGR uint8 image.
        poses: :class:`~simplepose.pose.Pose` list with keypoints in this image's pixels.
        skeleton: the poses' skeleton (``drawing_limbs`` gives the lines).
        min_score: keypoints scoring at or below this are not drawn.
        thickness: line width in pixels; 0 picks one from the image size.

    Shapes: ``image (H, W, 3)`` -> ``(H, W, 3)`` uint8.
    """
    canvas = (np.ascontiguousarray(image, dtype=np.uint8) * 0.75).astype(np.uint8)
    size = max(canvas.shape[:2])
    width = thickness or max(1, int(round(size / 300)))
    outline = width + max(2, width)
    colours = limb_colours(len(skeleton.drawing_limbs))
    for pose in poses:
        kp = pose.keypoints
        present = kp[:, 2] > min_score
        limbs = [(a, b, colour) for (a, b), colour in zip(skeleton.drawing_limbs, colours) if present[a] and present[b]]
        points = {a: (int(round(kp[a, 0])), int(round(kp[a, 1]))) for a in np.flatnonzero(present)}
        for a, b, _ in limbs:
            cv2.line(canvas, points[a], points[b], (0, 0, 0), outline, cv2.LINE_AA)
        for a, b, colour in limbs:
            cv2.line(canvas, points[a], points[b], colour, width, cv2.LINE_AA)
        for point in points.values():
            cv2.circle(canvas, point, width + 2, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(canvas, point, width + 1, (255, 255, 255), -1, cv2.LINE_AA)
        if points:
            xs, ys = zip(*points.values())
            _label(canvas, f"{pose.score:.2f}", min(xs), min(ys) - 2 * width - 4)
    return canvas


def _label(canvas, text: str, x: int, y: int) -> None:
    """White ``text`` on a black box whose bottom-left corner is near ``(x, y)``, kept inside the image."""
    scale = max(0.35, max(canvas.shape[:2]) / 1200)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x = int(np.clip(x, 0, max(0, canvas.shape[1] - tw - 4)))
    y = int(np.clip(y, th + 4, canvas.shape[0] - base - 1))
    cv2.rectangle(canvas, (x, y - th - 4), (x + tw + 4, y + base), (0, 0, 0), -1)
    cv2.putText(canvas, text, (x + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def write_image(path, image) -> None:
    """Encode ``image`` by the file extension of ``path`` and write it atomically (temporary file + rename)."""
    path = os.fspath(path)
    try:
        ok, data = cv2.imencode(os.path.splitext(path)[1] or ".png", image)
    except cv2.error:
        ok = False
    if not ok:
        raise DataError(f"{path}: OpenCV cannot encode an image with this file extension")
    atomic.write_bytes(path, data.tobytes())


def _overlay(image, values):
    """Blend a [0, 1] map (output grid) over the crop as a JET heat overlay."""
    size = image.shape[0]
    up = cv2.resize(values.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.clip(up * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = np.clip(up, 0, 1)[..., None] * 0.7
    return (image * (1 - alpha) + heat * alpha).astype(np.uint8)


def draw_people(image, keypoints, skeleton):
    """Limbs as lines, keypoints as dots (filled = visible, ring = occluded); left side green, right blue."""
    out = image.copy()
    for person in keypoints:
        for a, b in skeleton.limbs:
            if person[a, 2] > 0 and person[b, 2] > 0:
                cv2.line(out, tuple(np.round(person[a, :2]).astype(int)), tuple(np.round(person[b, :2]).astype(int)),
                         (0, 255, 255), 1, cv2.LINE_AA)
        for name, (x, y, v) in zip(skeleton.keypoints, person):
            if v > 0:
                color = (0, 200, 0) if name.startswith("left") else (255, 80, 0) if name.startswith("right") \
                    else (0, 0, 255)
                cv2.circle(out, (int(round(x)), int(round(y))), 3, color, -1 if v >= 2 else 1, cv2.LINE_AA)
    return out


#: Titles of the panels of :func:`sample_panels`, left to right.
PANEL_TITLES = ("people (dot: visible, ring: occluded)", "keypoint heatmaps (max)", "limb maps (max)",
                "loss mask (red: unsupervised)")


def sample_panels(image, keypoints, targets, skeleton, *, caption: str = "") -> np.ndarray:
    """Four titled panels of a training sample: the crop with its people | keypoint heatmaps (max over
    channels) | limb maps (max over channels) | the loss mask (red = not supervised); ``caption`` goes on a
    line of its own above the titles (e.g. the sample and its augmentation).

    Shapes: ``image (S, S, 3)`` uint8, ``keypoints (N, K, 3)`` crop pixels, ``targets`` as
    ``render_targets`` gives them -> ``(T + S, 4 * S, 3)`` uint8 BGR, ``T`` the height of the title band.
    """
    k = skeleton.num_keypoints
    unsupervised = _upsample(1.0 - targets["mask"][..., 0], image.shape[0])[..., None] * 0.6
    masked = (image * (1 - unsupervised) + np.array([0, 0, 255]) * unsupervised).astype(np.uint8)
    panels = [draw_people(image, keypoints, skeleton), _overlay(image, targets["keypoints"][..., :k].max(axis=-1)),
              _overlay(image, targets["limbs"].max(axis=-1, initial=0.0)), masked]
    titles = np.concatenate([_title(title, p.shape[1]) for title, p in zip(PANEL_TITLES, panels)], axis=1)
    rows = ([_title(caption, titles.shape[1])] if caption else []) + [titles, np.concatenate(panels, axis=1)]
    return np.concatenate(rows, axis=0)


def _title(text: str, width: int, height: int = 16) -> np.ndarray:
    """A black band ``(height, width, 3)`` with white ``text`` in it (shrunk to fit the width)."""
    band = np.zeros((height, width, 3), np.uint8)
    scale = 0.4
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    if tw > width - 4:
        scale *= (width - 4) / tw
    cv2.putText(band, text, (2, height - 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return band


def _upsample(values, size):
    return cv2.resize(values.astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)


def draw_track_ids(image, poses, *, scale: float = 0.0):
    """Each tracked pose's ``track_id`` as ``#N`` above its highest keypoint, in a colour of its own (in place;
    also returned). Poses without a ``track_id`` (untracked, or tentative) are left unlabelled.

    Args:
        scale: OpenCV font scale; 0 picks one from the image size.
    """
    scale = scale or max(0.35, max(image.shape[:2]) / 900)
    thickness = max(1, int(round(2 * scale)))
    for pose in poses:
        track_id = getattr(pose, "track_id", None)
        present = pose.keypoints[:, 2] > 0
        if track_id is None or not present.any():
            continue
        xy = pose.keypoints[present, :2]
        x, y = int(round(float(xy[:, 0].mean()))), int(round(float(xy[:, 1].min()))) - 4
        r, g, b = colorsys.hsv_to_rgb((track_id * 0.618034) % 1.0, 0.9, 1.0)
        label, colour = f"#{track_id}", (int(255 * b), int(255 * g), int(255 * r))
        (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        origin = (min(max(x - w // 2, 0), max(image.shape[1] - w, 0)), min(max(y, h + 1), image.shape[0] - 2))
        cv2.putText(image, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.putText(image, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA)
    return image
