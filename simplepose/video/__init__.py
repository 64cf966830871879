"""Poses in videos, image folders and webcams, with track ids and smoothing; the network overlaps reading and writing.

``process_video(predictor, source, out)`` runs three threads joined by bounded queues: a reader decodes
frames ahead of the network, the calling thread runs the predictor and the tracker, and a writer draws and
encodes the annotated video and the JSON lines behind it. Every output is written under a temporary name
and renamed at the end, also after Ctrl-C or a broken input stream (the frames done so far are then in a
playable file and the JSON lines are complete); after an error both are deleted.

Example:
    >>> predictor = Predictor.from_file("runs/vgg19_368/model.keras")
    >>> tracker = PoseTracker(predictor.skeleton.sigmas)
    >>> summary = process_video(predictor, "walk.mp4", "walk_poses.mp4", json_path="walk.jsonl", tracker=tracker)
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time

from simplepose.evaluation import StageTimer
from simplepose.video.outputs import FOURCCS, JsonLinesOutput, VideoOutput, check_output_path
from simplepose.video.sources import Frame, FrameSource, open_source

LOG = logging.getLogger(__name__)
__all__ = ["FOURCCS", "Frame", "FrameSource", "VideoSummary", "check_output_path", "open_source", "process_video"]

_END = object()  # end of the frame stream


@dataclasses.dataclass
class VideoSummary:
    """What :func:`process_video` did: frames through the network (= frames written), poses, tracks, timing."""

    source: str
    frames: int
    people: int
    tracks: int | None
    seconds: float
    stage_ms: dict  # stage -> median ms per frame
    fps: float  # of the source, and of the written video
    size: tuple
    skipped: list
    ended_early: bool
    interrupted: bool
    out: str | None
    json: str | None
    fourcc: str | None

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def report(self) -> str:
        """A few lines for the end of a run: counts, frames/s overall and by stage, where the outputs are."""
        how = " (interrupted)" if self.interrupted else " (the stream ended early)" if self.ended_early else ""
        lines = [f"{self.frames} frames{how} in {self.seconds:.1f} s: {self.frames_per_second:.2f} frames/s; "
                 f"{self.people / max(self.frames, 1):.2f} people per frame"
                 + (f"; {self.tracks} tracks" if self.tracks is not None else "")
                 + (f"; {len(self.skipped)} images skipped" if self.skipped else "")]
        stages = ", ".join(f"{k} {v:.1f} ms ({1000 / v if v > 0 else float('inf'):.0f}/s)"
                           for k, v in self.stage_ms.items())
        lines.append(f"per frame (median): {stages}")
        outs = [f"{self.out} ({self.fourcc}, {self.fps:g} fps, {self.size[0]}x{self.size[1]})"] if self.out else []
        lines.append("outputs: " + (", ".join(outs + ([self.json] if self.json else [])) or "none"))
        return "\n".join(lines)


def process_video(predictor, source, out=None, *, json_path=None, tracker=None, limit: int | None = None,
                  fps: float | None = None, progress: bool = True, queue_size: int = 8) -> VideoSummary:
    """Find (and track) the people of every frame of ``source``; draw them into ``out``, list them in ``json_path``.

    Args:
        predictor: a ``Predictor`` (either method; a box-taking method gets the whole frame as its box).
        source: a ``FrameSource``, or what :func:`open_source` takes (video file, image folder or glob, webcam
            index).
        out: annotated video (``.mp4``: FourCC mp4v; ``.avi``: MJPG), same size and frame rate as the source.
        json_path: JSON lines, one per frame: ``{"frame", "time", "poses": [Pose.to_dict + "track_id"]}``
            (plus ``"image"`` for image folders).
        tracker: a ``PoseTracker`` (None: no track ids, raw keypoints).
        limit: stop after this many frames (webcams run until Ctrl-C otherwise).
        fps: frame rate of image folders. progress: show a progress bar. queue_size: frames read ahead.

    Raises:
        DataError: bad source or output (before any work starts).
    """
    src = source if isinstance(source, FrameSource) else open_source(source, fps=fps)
    try:
        video = VideoOutput(out, src.fps, src.size) if out else None
        try:
            lines = JsonLinesOutput(json_path) if json_path else None
        except BaseException:
            video and video.close(keep=False)
            raise
    except BaseException:
        src.close()
        raise
    run = _Run(predictor, src, video, lines, tracker, queue_size)
    return run.execute(limit, progress)


class _Run:
    """The threads and queues of one :func:`process_video` call."""

    def __init__(self, predictor, src, video, lines, tracker, queue_size):
        self.predictor, self.src, self.video, self.lines, self.tracker = predictor, src, video, lines, tracker
        self.frames_in, self.frames_out = queue.Queue(queue_size), queue.Queue(queue_size)
        self.stop, self.errors = threading.Event(), []
        self.timer, self.write_timer = StageTimer(), StageTimer()
        self.whole_frame = predictor.takes_boxes
        self.people = 0

    def execute(self, limit, progress) -> VideoSummary:
        from tqdm import tqdm

        reader = threading.Thread(target=self._read, args=(limit,), name="video-reader", daemon=True)
        writer = threading.Thread(target=self._write, name="video-writer", daemon=True)
        total = min(x for x in (self.src.num_frames, limit) if x is not None) \
            if (self.src.num_frames, limit) != (None, None) else None
        bar = tqdm(total=total, unit="frame", desc="video", disable=not progress)
        start, frames, interrupted, failed = time.perf_counter(), 0, False, True
        reader.start()
        writer.start()
        try:
            while True:
                item = self._take()
                if item is _END:
                    break
                self._put(self.frames_out, (item, self._predict(item)))
                frames += 1
                bar.update(1)
            failed = False
        except KeyboardInterrupt:
            interrupted, failed = True, False
            LOG.warning("interrupted: finishing the %d frames done", frames)
        finally:
            self.stop.set()
            self.frames_out.put(_END)  # the writer drains what is queued, then ends
            writer.join()
            reader.join(timeout=5)
            bar.close()
            self.src.close()
            failed = failed or bool(self.errors)
            for output in (self.video, self.lines):
                if output is not None:
                    output.close(keep=not failed and frames > 0)
        if self.errors:
            raise self.errors[0]
        return self._summary(frames, time.perf_counter() - start, interrupted)

    def _predict(self, frame: Frame):
        start = time.perf_counter()
        h, w = frame.image.shape[:2]
        poses = self.predictor.predict(frame.image, [[0, 0, w, h]] if self.whole_frame else None)
        mid = time.perf_counter()
        if self.tracker is not None:
            poses = self.tracker.update(poses, timestamp=frame.time, image_size=(w, h))
        self.timer.add(dict(read=frame.read_ms, **self.predictor.last_timings, predict=1000.0 * (mid - start),
                            track=1000.0 * (time.perf_counter() - mid)))
        self.people += len(poses)
        return poses

    def _take(self):
        """The next frame from the reader (or ``_END``); re-raises the reader's or writer's error."""
        while True:
            if self.errors:
                raise self.errors[0]
            try:
                item = self.frames_in.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, BaseException):
                raise item
            return item

    def _put(self, q, item) -> bool:
        """Put ``item`` unless the run stops first (a full queue never blocks a stopping thread)."""
        while not self.stop.is_set() or q is self.frames_out:
            if self.errors and q is self.frames_out:
                raise self.errors[0]
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self, limit) -> None:
        try:
            for n, frame in enumerate(self.src.frames()):
                if (limit is not None and n >= limit) or not self._put(self.frames_in, frame):
                    break
            self._put(self.frames_in, _END)
        except Exception as e:  # handed to the main thread, which raises it
            self._put(self.frames_in, e)

    def _write(self) -> None:
        from simplepose.visualize import draw_poses, draw_track_ids

        skeleton = self.predictor.skeleton
        while True:
            item = self.frames_out.get()
            if item is _END:
                return
            if self.errors:
                continue
            frame, poses = item
            try:
                start = time.perf_counter()
                if self.video is not None:
                    canvas = draw_track_ids(draw_poses(frame.image, poses, skeleton), poses)
                    mid = time.perf_counter()
                    self.video.write(canvas)
                else:
                    mid = start
                record = {"frame": frame.index, "time": round(frame.time, 4),
                          "poses": [p.to_dict(skeleton) for p in poses]}
                if self.lines is not None:
                    self.lines.write(dict(record, image=frame.name) if frame.name else record)
                self.write_timer.add({"draw": 1000.0 * (mid - start), "write": 1000.0 * (time.perf_counter() - mid)})
            except Exception as e:
                self.errors.append(e)

    def _summary(self, frames, seconds, interrupted) -> VideoSummary:
        stages = {k: v["median"] for k, v in {**self.timer.summary(), **self.write_timer.summary()}.items()}
        return VideoSummary(self.src.description, frames, self.people,
                            None if self.tracker is None else self.tracker.num_tracks, seconds, stages, self.src.fps,
                            self.src.size, list(self.src.skipped), self.src.ended_early, interrupted,
                            self.video and self.video.path, self.lines and self.lines.path,
                            self.video and self.video.fourcc)
