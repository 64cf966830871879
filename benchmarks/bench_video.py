"""Video throughput: network-only frames/s against end-to-end frames/s (read + network + track + draw + write).

On a generated clip (walking stick people, ``simplepose.data.synthetic_video``), three ways, each repeated
and interleaved so a busy machine slows them alike:
- network only: ``predictor.predict`` on frames already decoded in memory (network, resizing, decoding);
- end to end: ``simplepose.video.process_video`` (reader and writer threads around the network, tracking,
  smoothing, drawing, MP4 + JSON lines);
- sequential: the same work in one thread (read, predict, track, draw, write), to show what overlap buys.
The target is end-to-end >= 0.9 x network-only. The last stdout line is the JSON summary (medians).

Example:
    python benchmarks/bench_video.py --weights quickstart/run/model.keras --frames 60
"""
import json
import os
import statistics
import tempfile
import time

import cv2

from simplepose import cli
from simplepose.data.synthetic_video import make_synthetic_video
from simplepose.predictor import load_predictor
from simplepose.tracking import PoseTracker
from simplepose.video import open_source, process_video
from simplepose.video.outputs import JsonLinesOutput, VideoOutput
from simplepose.visualize import draw_poses, draw_track_ids


def network_only(predictor, images) -> float:
    start = time.perf_counter()
    for image in images:
        predictor.predict(image)
    return len(images) / (time.perf_counter() - start)


def end_to_end(predictor, video, out_dir):
    tracker = PoseTracker(predictor.skeleton.sigmas)
    summary = process_video(predictor, video, os.path.join(out_dir, "e2e.mp4"),
                            json_path=os.path.join(out_dir, "e2e.jsonl"), tracker=tracker, progress=False)
    return summary.frames_per_second, summary


def sequential(predictor, video, out_dir) -> float:
    """Read, predict, track, draw and write one frame after the other in one thread."""
    tracker, src = PoseTracker(predictor.skeleton.sigmas), open_source(video)
    out = VideoOutput(os.path.join(out_dir, "seq.mp4"), src.fps, src.size)
    lines = JsonLinesOutput(os.path.join(out_dir, "seq.jsonl"))
    start, n = time.perf_counter(), 0
    for frame in src.frames():
        poses = tracker.update(predictor.predict(frame.image), frame.time, frame.image.shape[1::-1])
        out.write(draw_track_ids(draw_poses(frame.image, poses, predictor.skeleton), poses))
        lines.write({"frame": frame.index, "poses": [p.to_dict(predictor.skeleton) for p in poses]})
        n += 1
    out.close()
    lines.close()
    src.close()
    return n / (time.perf_counter() - start)


@cli.run_main
def main(argv=None) -> int:
    parser = cli.make_parser(__doc__)
    parser.add_argument("--weights", default="quickstart/run/model.keras", metavar="MODEL")
    parser.add_argument("--frames", type=int, default=60, help="frames of the generated clip")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    parser.add_argument("--repeats", type=int, default=2, help="runs of each way (median reported)")
    args = parser.parse_args(argv)
    cli.setup_logging(args.log_level)
    if not os.path.exists(args.weights):
        raise cli.UserError(f"{args.weights}: model not found (run `make quickstart`, or pass --weights)")
    predictor = load_predictor(args.weights)
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_synthetic_video(os.path.join(tmp, "clip"), num_frames=args.frames, image_size=tuple(args.size),
                                    num_people=4)
        images = [f.image for f in open_source(str(clip.video)).frames()]
        for image in images[:3]:  # warm-up: tracing, numba
            predictor.predict(image)
        rates = {"network_only": [], "end_to_end": [], "sequential": []}
        for r in range(args.repeats):
            rates["network_only"].append(network_only(predictor, images))
            fps, summary = end_to_end(predictor, str(clip.video), tmp)
            rates["end_to_end"].append(fps)
            rates["sequential"].append(sequential(predictor, str(clip.video), tmp))
            print(f"run {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} frames/s" for k, v in rates.items()))
        check = cv2.VideoCapture(os.path.join(tmp, "e2e.mp4"))
        written = int(check.get(cv2.CAP_PROP_FRAME_COUNT))
        check.release()
    print(summary.report())
    med = {k: statistics.median(v) for k, v in rates.items()}
    result = {"model": args.weights, "method": predictor.meta.method, "frames": args.frames,
              "size": list(args.size), "frames_written": written,
              "network_only_fps": round(med["network_only"], 3), "end_to_end_fps": round(med["end_to_end"], 3),
              "sequential_fps": round(med["sequential"], 3),
              "ratio_end_to_end": round(med["end_to_end"] / med["network_only"], 3),
              "ratio_sequential": round(med["sequential"] / med["network_only"], 3),
              "runs": {k: [round(x, 3) for x in v] for k, v in rates.items()},
              "stage_ms_last_end_to_end": {k: round(v, 2) for k, v in summary.stage_ms.items()},
              "target_met": med["end_to_end"] >= 0.9 * med["network_only"]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
