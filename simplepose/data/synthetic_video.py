"""Synthetic videos of walking stick people with known identities: crossings, exits and entries, occlusions.

A fixed camera looks at a static background. People walk left or right at different depths (nearer people
are larger and lower in the frame, and drawn over farther ones), so walkers going opposite ways cross and
hide each other; new walkers enter from the edges while others leave; a pillar in the foreground hides
whoever passes behind it. Every frame gets COCO person-keypoint annotations carrying the walker's
identity as ``track_id`` (as in PoseTrack), and the true continuous trajectories are returned as arrays.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib

import cv2
import numpy as np

from simplepose.atomic import TEMP_PREFIX, write_bytes
from simplepose.data.stick_people import FACE, Person, background, bgr, draw, walking_pose
from simplepose.data.synthetic import _categories, _shape_fields

#: FourCC of the written MP4 (MPEG-4 Part 2, which every OpenCV build with FFmpeg writes).
FOURCC = "mp4v"


@dataclasses.dataclass(frozen=True)
class FramePeople:
    """The people of one frame.

    Attributes:
        ids: ``(N,)`` int identity of each person (the annotations' ``track_id``).
        keypoints: ``(N, 17, 3)`` float32: the true (continuous) joint position, also where hidden or outside
            the frame, and the annotated COCO ``v`` (0 outside the frame or not drawn, 1 hidden, 2 visible).
    """

    ids: np.ndarray
    keypoints: np.ndarray


@dataclasses.dataclass(frozen=True)
class SyntheticVideo:
    """A generated clip: its files and its ground truth.

    Attributes:
        video: ``root/video.mp4`` (None when not written). frame_dir: ``root/frames`` (None when not written).
        ann_file: ``root/annotations.json``: COCO images (one per frame, with ``frame_index`` and
            ``timestamp``), annotations with ``track_id``.
        fps: frames per second. size: ``(width, height)``.
        frames: one :class:`FramePeople` per frame (people with at least one joint inside the frame).
        num_identities: walkers that appear.
    """

    video: pathlib.Path | None
    frame_dir: pathlib.Path | None
    ann_file: pathlib.Path
    fps: float
    size: tuple
    frames: tuple = dataclasses.field(repr=False, compare=False)
    num_identities: int = 0

    @property
    def num_frames(self) -> int:
        return len(self.frames)


@dataclasses.dataclass
class _Walker:
    identity: int
    start: int  # the frame at which the hip centre is at x0
    x0: float
    speed: float  # pixels per frame, signed
    depth: float  # 0 far .. 1 near
    height: float
    floor: float  # y of the feet
    phase0: float
    back: bool
    skin: tuple
    cloth: tuple

    def joints(self, frame: int) -> np.ndarray:
        """``(17, 2)`` float joint positions at ``frame``."""
        travelled = self.speed * (frame - self.start)
        phase = self.phase0 + 2 * math.pi * abs(travelled) / (0.8 * self.height)  # a cycle per 0.8 heights
        pose = walking_pose(phase, self.height, self.back)
        return pose + (self.x0 + travelled, self.floor - 0.45 * self.height)

    def outside(self, frame: int, width: int) -> bool:
        x = self.joints(frame)[:, 0]
        return x.max() < -0.05 * self.height or x.min() > width + 0.05 * self.height


def _walker(rng, identity: int, start: int, x0: float, direction: int, size, fps: float) -> _Walker:
    w, h = size
    depth = float(rng.uniform(0, 1))
    height = (0.42 + 0.36 * depth) * h
    speed = direction * rng.uniform(0.45, 0.8) * height / fps  # 0.45-0.8 body heights per second
    return _Walker(identity, start, x0, speed, depth, height, (0.62 + 0.33 * depth) * h, rng.uniform(0, 2 * math.pi),
                   bool(rng.random() < 0.3), bgr(rng.uniform(15, 35), rng.uniform(0.3, 0.6), rng.uniform(0.45, 0.95)),
                   bgr(rng.uniform(0, 360), rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.9)))


def plan_walkers(rng: np.random.Generator, num_frames: int, size, num_people: int, fps: float) -> list[_Walker]:
    """Walkers of a clip: ``num_people`` start inside the frame heading towards each other (left half walks
    right, right half walks left, so they cross early); whenever fewer than ``num_people`` are in the frame a
    new one enters from an edge after a short random wait."""
    w = size[0]
    walkers = []
    for i in range(num_people):
        direction = 1 if i % 2 == 0 else -1
        x0 = w * (rng.uniform(0.08, 0.4) if direction > 0 else rng.uniform(0.6, 0.92))
        walkers.append(_walker(rng, i + 1, 0, x0, direction, size, fps))
    next_entry = 0
    for frame in range(num_frames):
        present = sum(1 for p in walkers if p.start <= frame and not p.outside(frame, w))
        if present < num_people and frame >= next_entry:
            direction = 1 if rng.random() < 0.5 else -1
            p = _walker(rng, len(walkers) + 1, frame, 0.0, direction, size, fps)
            reach = 0.2 * p.height  # just outside the edge it enters from
            p.x0 = -reach if direction > 0 else w + reach
            walkers.append(p)
            next_entry = frame + int(rng.integers(int(0.3 * fps), int(1.5 * fps) + 1))
    return walkers


def _pillar(rng, size) -> tuple[int, int]:
    w = size[0]
    x = int(rng.uniform(0.35, 0.65) * w)
    return x, x + max(4, int(0.06 * w))


def render_frame(bg: np.ndarray, walkers: list, frame: int, pillar) -> tuple[np.ndarray, list]:
    """One frame and, nearest person first, ``(walker, joints (17, 2) float, v (17,), silhouette)`` of the
    people with some of their silhouette inside the frame."""
    h, w = bg.shape[:2]
    img = bg.copy()
    active = sorted((p for p in walkers if p.start <= frame and not p.outside(frame, w)), key=lambda p: p.depth)
    drawn = []
    for p in active:
        joints = p.joints(frame)
        mask = draw(img, Person(np.rint(joints).astype(np.int64), p.height, p.back, skin=p.skin, cloth=p.cloth))
        drawn.append((p, joints, mask))
    in_front = np.zeros((h, w), np.uint8)
    if pillar is not None:
        x0, x1 = pillar
        img[:, x0:x1] = (70, 80, 95)
        img[:, x0:x0 + 2] = (50, 55, 65)
        in_front[:, x0:x1] = 1
    people = []
    for p, joints, mask in reversed(drawn):
        if mask.any():
            xy = np.rint(joints).astype(np.int64)
            inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
            covered = in_front[np.clip(xy[:, 1], 0, h - 1), np.clip(xy[:, 0], 0, w - 1)] > 0
            v = np.where(inside, np.where(covered, 1, 2), 0)
            if p.back:
                v[list(FACE)] = 0
            people.append((p, joints, v, mask & (in_front == 0)))
        in_front |= mask
    return img, people


def make_synthetic_video(root, *, num_frames: int = 150, image_size=(320, 240), num_people: int = 3,
                         fps: float = 25.0, seed: int = 0, occluder: bool = True, write_video: bool = True,
                         write_frames: bool = False) -> SyntheticVideo:
    """Write a deterministic clip of walking stick people under ``root`` with per-frame COCO annotations.

    Args:
        root: output folder (created).
        num_frames: frames (>= 1). image_size: ``(width, height)``, each >= 64. fps: frame rate (> 0).
        num_people: people kept in the frame (>= 1); those at the start cross each other.
        seed: random seed; the same arguments give the same clip.
        occluder: draw a foreground pillar that hides people passing behind it.
        write_video: write ``root/video.mp4`` (FourCC :data:`FOURCC`).
        write_frames: write ``root/frames/000001.png`` ... (lossless; an image-folder source).
    """
    size = (int(image_size[0]), int(image_size[1]))
    if num_frames < 1 or num_people < 1 or min(size) < 64 or not fps > 0:
        raise ValueError(f"need num_frames >= 1, num_people >= 1, image sides >= 64 and fps > 0; got "
                         f"{num_frames}, {num_people}, {size}, {fps}")
    rng = np.random.default_rng(seed)
    root = pathlib.Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ann_file = root / "annotations.json"
    ann_file.unlink(missing_ok=True)  # a half-rewritten folder must never look complete
    walkers = plan_walkers(rng, num_frames, size, num_people, fps)
    bg, pillar = background(rng, *size), (_pillar(rng, size) if occluder else None)
    video, frame_dir = (root / "video.mp4") if write_video else None, (root / "frames") if write_frames else None
    tmp_video = root / f"{TEMP_PREFIX}video.mp4"
    writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*FOURCC), fps, size) if video else None
    if frame_dir:
        frame_dir.mkdir(exist_ok=True)
    images, anns, frames = [], [], []
    try:
        for index in range(num_frames):
            img, people = render_frame(bg, walkers, index, pillar)
            name = f"{index + 1:06d}.png"
            if writer is not None:
                writer.write(img)
            if frame_dir:
                write_bytes(frame_dir / name, cv2.imencode(".png", img)[1].tobytes())
            images.append({"id": index + 1, "file_name": name, "width": size[0], "height": size[1], "video_id": 1,
                           "frame_index": index, "timestamp": round(index / fps, 6)})
            for p, joints, v, mask in people:
                kps = np.concatenate([np.where(v[:, None] > 0, np.rint(joints), 0), v[:, None]], 1)
                anns.append({"id": len(anns) + 1, "image_id": index + 1, "category_id": 1, "track_id": p.identity,
                             "iscrowd": 0, "num_keypoints": int((v > 0).sum()),
                             "keypoints": kps.astype(int).reshape(-1).tolist(), **_shape_fields(mask)})
            frames.append(FramePeople(np.array([p.identity for p, *_ in people], np.int64),
                                      np.array([np.concatenate([j, v[:, None]], 1) for _, j, v, _ in people],
                                               np.float32).reshape(-1, 17, 3)))
        if writer is not None:
            writer.release()
            os.replace(tmp_video, video)
    finally:
        if writer is not None:
            writer.release()
            tmp_video.unlink(missing_ok=True)
    info = {"description": "simplepose synthetic video", "seed": seed, "fps": fps, "num_people": num_people}
    dataset = {"info": info, "videos": [{"id": 1, "name": "video.mp4", "fps": fps, "num_frames": num_frames}],
               "images": images, "annotations": anns, "categories": _categories()}
    write_bytes(ann_file, json.dumps(dataset).encode())
    seen = {int(i) for f in frames for i in f.ids}
    return SyntheticVideo(video, frame_dir, ann_file, float(fps), size, tuple(frames), len(seen))
