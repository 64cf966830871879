"""Bad inputs, kills and what a new user trips on (issue 14): one clear line and exit 2, or a counted skip;
never a traceback, a partial output or a stray temporary file."""
import csv
import errno
import json
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from simplepose import atomic, cli, evaluation
from simplepose.errors import DataError

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "bottomup_tiny.yaml")
FAST = ["model.num_stages=1", "loss.stage_weights=[1.0]", "train.batch_size=2", "data.skeleton=coco18_limbs40",
        "data.input_size=32", "data.workers=1", "train.steps_per_epoch=1"]


def one_line_error(capsys, rc, *names):
    """Exit 2 and one line on stderr that names every one of ``names``."""
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if "%|" not in line]  # progress bars may come first
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and all(str(n) in lines[0] for n in names), err
    return lines[0]


def leftovers(folder):
    """Hidden files (temporaries) under ``folder``."""
    return sorted(p.name for p in pathlib.Path(folder).rglob(".*"))


def dead_pid():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


@pytest.fixture()
def dataset(tmp_path, synthetic_coco):
    """A private copy of the synthetic dataset to break."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_coco.ann_file.parent, root)
    return root


def break_image(path, how):
    if how == "text":
        path.write_text("hello, I am not an image\n")
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()


def files_of(ann_file):
    return {img["id"]: img["file_name"] for img in json.loads(pathlib.Path(ann_file).read_text())["images"]}


# === Output paths: one mechanism (cli.run_main) for every command ===
def run_prepare(tmp, out, synthetic):
    from simplepose.commands import prepare

    return prepare.main(["--annotations", str(synthetic.ann_file), "--images", str(synthetic.image_dir),
                         "--out", out, "--no-progress"])


def run_train(tmp, out, synthetic, tiny_hdf5):
    from simplepose.commands import train

    return train.main(["--config", TINY, "--train", str(tiny_hdf5), "--run-dir", out, "--epochs", "1",
                       "--set", *FAST])


def run_show(tmp, out, synthetic, tiny_hdf5):
    from simplepose.commands import show

    return show.main([str(tiny_hdf5), "--out", out, "-n", "1", "--set", "data.input_size=64"])


def run_oracle(tmp, out, synthetic):
    from simplepose.commands import evaluate

    return evaluate.main(["--oracle", "--annotations", str(synthetic.ann_file), "--out", out, "--limit", "2",
                          "--set", "model.architecture=topdown", "data.skeleton=coco17", "data.stride=4"])


COMMANDS = {"prepare": run_prepare, "train": run_train, "show": run_show, "evaluate": run_oracle}
#: (command, output path relative to tmp_path, what happens): "made" (the output is created) or "error".
OUTPUT_CASES = [
    ("prepare", "missing/x.h5", "made"), ("prepare", "a_folder", "error"), ("prepare", "a_file/x.h5", "error"),
    ("train", "a_file", "error"), ("train", "a_file/run", "error"),
    ("show", "a_file", "error"), ("show", "a_file/pngs", "error"), ("show", "missing/pngs", "made"),
    ("evaluate", "a_file", "error"), ("evaluate", "a_file/eval", "error"), ("evaluate", "missing/eval", "made"),
]


@pytest.mark.parametrize("command,out,outcome", OUTPUT_CASES, ids=lambda v: str(v))
def test_output_paths(command, out, outcome, tmp_path, synthetic_coco, tiny_hdf5, capsys):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder").mkdir()
    before = sorted(os.listdir(tmp_path))
    runner = COMMANDS[command]
    args = (tmp_path, str(tmp_path / out), synthetic_coco) + ((tiny_hdf5,) if command in ("train", "show") else ())
    rc = runner(*args)
    if outcome == "made":
        assert rc == 0, capsys.readouterr().err
        assert (tmp_path / out).exists()
    else:
        one_line_error(capsys, rc, pathlib.Path(out).parts[0])
        assert sorted(os.listdir(tmp_path)) == before and (tmp_path / "a_file").read_text() == "x"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("command", ["prepare", "evaluate"])
def test_full_disk_is_one_line_and_leaves_nothing(command, tmp_path, synthetic_coco, monkeypatch, capsys):
    from simplepose.data import hdf5

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out"))

    monkeypatch.setattr(hdf5.HDF5Writer, "commit", full)
    monkeypatch.setattr(atomic, "write_bytes", full)
    out = str(tmp_path / "out" / ("x.h5" if command == "prepare" else "eval"))
    rc = COMMANDS[command](tmp_path, out, synthetic_coco)
    assert "No space left on device" in one_line_error(capsys, rc, tmp_path / "out")
    assert leftovers(tmp_path) == [] and not os.path.exists(out) or os.listdir(out) == []


def test_demo_json_in_a_missing_folder_writes_nothing(tmp_path, capsys):
    from simplepose.commands import demo

    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((40, 40, 3), np.uint8))
    rc = demo.main(["--weights", str(tmp_path / "m.keras"), "--image", str(image), "--out", str(tmp_path / "d.png"),
                    "--json", str(tmp_path / "missing" / "d.json")])
    one_line_error(capsys, rc, "missing")
    assert sorted(os.listdir(tmp_path)) == ["img.png"]


@pytest.mark.parametrize("command", ["prepare", "evaluate"])
def test_devices_and_pipes_are_never_replaced(command, tmp_path, synthetic_coco, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out = str(fifo if command == "prepare" else tmp_path)
    if command == "evaluate":  # its files are results.json and metrics.json in --out
        os.mkfifo(tmp_path / "results.json")
    rc = COMMANDS[command](tmp_path, out, synthetic_coco)
    assert "not a regular file" in one_line_error(capsys, rc, "fifo" if command == "prepare" else "results.json")
    assert fifo.is_fifo() and leftovers(tmp_path) == []


def test_demo_output_that_is_a_folder_fails_before_the_network(tmp_path, capsys, monkeypatch):
    from simplepose import jobs
    from simplepose.commands import demo

    monkeypatch.setattr(jobs, "load_predictor", lambda *a, **k: pytest.fail("the model was loaded"))
    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((40, 40, 3), np.uint8))
    (tmp_path / "d.json").mkdir()
    rc = demo.main(["--weights", "m.keras", "--image", str(image), "--out", str(tmp_path / "d.png"),
                    "--json", str(tmp_path / "d.json")])
    assert "a folder, not a file" in one_line_error(capsys, rc, "d.json")
    assert sorted(os.listdir(tmp_path)) == ["d.json", "img.png"]


def test_os_errors_are_one_line(capsys):
    @cli.run_main
    def main(argv=None):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.h5")

    assert one_line_error(capsys, main([]), "/data/out.h5") == \
        "error: /data/out.h5: No space left on device (free some space or write elsewhere)"


# === Temporary files: removed on any exit Python sees, stale ones of dead processes removed at start ===
def test_sigterm_removes_the_temporary_file(tmp_path, capsys):
    from simplepose.data.hdf5 import HDF5Writer

    seen = []

    @cli.run_main
    def main(argv=None):
        with HDF5Writer(tmp_path / "out.h5"):
            seen.append(leftovers(tmp_path))
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        return 0

    previous = signal.getsignal(signal.SIGTERM)
    assert main([]) == 143 and "terminated" in capsys.readouterr().err
    assert len(seen[0]) == 1 and seen[0][0].startswith(".tmp-")
    assert sorted(os.listdir(tmp_path)) == [] and signal.getsignal(signal.SIGTERM) == previous


@pytest.mark.parametrize("target", ["train.h5", "last.keras", "data"])
def test_stale_temporaries_of_dead_processes_are_removed(target, tmp_path):
    dead, alive = dead_pid(), os.getpid()
    stale = tmp_path / f".tmp-{dead}-w-{target}"
    stale.mkdir() if target == "data" else stale.write_bytes(b"x" * 100)
    live = tmp_path / f".tmp-{alive}-w-{target}"
    other = tmp_path / f".tmp-{dead}-w-other.h5"
    live.write_bytes(b"x")
    other.write_bytes(b"x")
    assert atomic.clean_stale(tmp_path / target) == [str(stale)]
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, other.name])


def test_prepare_rerun_removes_a_killed_runs_temporary(tmp_path, synthetic_coco, capsys):
    killed = tmp_path / f".tmp-{dead_pid()}-h5-x.h5"
    killed.write_bytes(b"\0" * 1000)
    assert run_prepare(tmp_path, str(tmp_path / "x.h5"), synthetic_coco) == 0
    assert sorted(os.listdir(tmp_path)) == ["x.h5"]


def test_checkpoint_removes_a_killed_runs_temporary_and_keeps_the_best_across_a_resume(tmp_path):
    import keras

    from simplepose.run_dir import CSV_FILE, make_callbacks

    run = tmp_path / "run"
    run.mkdir()
    with open(run / CSV_FILE, "w", newline="") as f:
        csv.writer(f).writerows([["epoch", "loss", "val_loss"], [0, 2.0, 1.5], [1, 1.0, 0.5]])
    (run / f".tmp-{dead_pid()}-ckpt-model.keras").write_bytes(b"partial")
    callbacks = make_callbacks(run, chief=True, validate=True)
    best = next(c for c in callbacks if getattr(c, "monitor", None) == "val_loss")
    assert best.best == 0.5  # from log.csv, not infinity
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    best.set_model(model)
    best.on_epoch_end(2, {"loss": 0.9, "val_loss": 0.7})  # worse than before the resume: not saved
    assert not (run / "model.keras").exists()
    best.on_epoch_end(3, {"loss": 0.8, "val_loss": 0.4})
    assert (run / "model.keras").exists() and best.best == 0.4
    assert [p for p in os.listdir(run) if p.startswith(".")] == []


# === Data preparation ===
def test_prepare_refuses_zero_samples_unless_asked(tmp_path, dataset, tiny_hdf5, capsys):
    from simplepose.commands import prepare, train

    ann = json.loads((dataset / "annotations.json").read_text())
    for a in ann["annotations"]:
        a["num_keypoints"] = min(a["num_keypoints"], 2)  # nobody is a main person
    (dataset / "annotations.json").write_text(json.dumps(ann))
    argv = ["--annotations", str(dataset / "annotations.json"), "--images", str(dataset / "images"),
            "--out", str(tmp_path / "zero.h5"), "--no-progress"]
    assert "0 samples" in one_line_error(capsys, prepare.main(argv), "zero.h5")
    assert not (tmp_path / "zero.h5").exists() and leftovers(tmp_path) == []
    assert prepare.main(argv + ["--allow-empty"]) == 0
    assert "0 samples" in capsys.readouterr().err
    rc = train.main(["--config", TINY, "--train", str(tmp_path / "zero.h5"), "--run-dir", str(tmp_path / "run"),
                     "--set", *FAST])
    assert "0 samples" in one_line_error(capsys, rc, "zero.h5")
    assert not (tmp_path / "run").exists()  # refused before anything was built or written


def test_prepare_counts_people_with_bad_boxes_and_images_with_foreign_segmentations(tmp_path, dataset, capsys):
    from pycocotools import mask as mask_utils

    from simplepose.commands import prepare

    ann = json.loads((dataset / "annotations.json").read_text())
    people = [a for a in ann["annotations"] if not a["iscrowd"] and a["num_keypoints"] >= 5 and a["area"] > 1024]
    people[0]["bbox"][2] = -people[0]["bbox"][2]
    crowd = next(a for a in ann["annotations"] if a["iscrowd"])
    rle = mask_utils.encode(np.asfortranarray(np.ones((24, 32), np.uint8)))  # sized for another image
    crowd["segmentation"] = {"size": [24, 32], "counts": rle["counts"].decode()}
    (dataset / "annotations.json").write_text(json.dumps(ann))
    rc = prepare.main(["--annotations", str(dataset / "annotations.json"), "--images", str(dataset / "images"),
                       "--out", str(tmp_path / "x.h5"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "bad_segmentation: 1" in out
    assert "people dropped for a bbox without positive width and height: 1" in out


# === Top-down data and evaluation: unreadable images are skipped and counted ===
@pytest.mark.parametrize("how", ["text", "empty", "missing"])
def test_topdown_training_data_skips_and_counts_bad_images(how, dataset, caplog):
    from simplepose.config import load_config
    from simplepose.topdown.method import TopDown

    cfg = load_config(REPO / "configs" / "topdown_tiny.yaml")
    good = TopDown().open_data(cfg, dataset / "annotations.json", dataset / "images", training=True).num_samples
    names = files_of(dataset / "annotations.json")
    for image_id in (2, 3):
        break_image(dataset / "images" / names[image_id], how)
    with caplog.at_level(logging.INFO):
        opened = TopDown().open_data(cfg, dataset / "annotations.json", dataset / "images", training=True)
    assert 0 < opened.num_samples < good
    assert all(inst.image_id not in (2, 3) for inst in opened.source.instances)
    reason = {"text": "not_an_image", "empty": "empty", "missing": "missing"}[how]
    assert f"images skipped: 2 ({reason}: 2)" in caplog.text


def test_topdown_sample_whose_image_vanished_gets_no_weight(dataset):
    from simplepose.config import load_config
    from simplepose.topdown.data import samples_from_config

    samples = samples_from_config(load_config(REPO / "configs" / "topdown_tiny.yaml"), dataset / "annotations.json",
                                  dataset / "images", training=False)
    os.remove(samples.instances[0].image_path)
    crop, targets = samples.get(0)
    assert crop.shape == (128, 96, 3) and not crop.any() and not targets["weights"].any()


class BoxPredictor:
    """Predicts nothing, records what it read."""

    skeleton = None
    last_timings = {"network": 1.0}

    def __init__(self, skeleton):
        self.skeleton, self.images = skeleton, 0

    def predict(self, image, boxes=None, box_scores=None):
        self.images += 1
        return []


@pytest.mark.parametrize("how", ["text", "empty", "missing"])
@pytest.mark.parametrize("with_boxes", [False, True], ids=["bottomup", "topdown"])
def test_evaluation_skips_and_counts_bad_images_and_writes_its_files(how, with_boxes, dataset, tmp_path):
    from simplepose.data.coco import load_coco
    from simplepose.skeleton import get_skeleton
    from simplepose.topdown.boxes import ground_truth_boxes

    coco = load_coco(dataset / "annotations.json")
    names = files_of(dataset / "annotations.json")
    last = max(i for i in names if i in ground_truth_boxes(coco))  # near the end, and with people
    break_image(dataset / "images" / names[last], how)
    predictor = BoxPredictor(get_skeleton("coco17"))
    metrics = evaluation.evaluate_predictor(predictor, coco, dataset / "images", out_dir=tmp_path / "eval",
                                            boxes=ground_truth_boxes(coco) if with_boxes else None)
    assert (metrics["images_skipped"], metrics["skipped_images"]) == (1, [names[last]])
    assert metrics["images"] == len(names) - 1
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["images_skipped"] == 1
    assert "1 unreadable image(s) skipped" in evaluation.format_summary(metrics)


@pytest.mark.parametrize("oracle", [False, True])
def test_evaluation_checks_annotations_before_the_network(oracle, dataset, tmp_path, monkeypatch, capsys):
    from simplepose import jobs
    from simplepose.commands import evaluate

    ann = json.loads((dataset / "annotations.json").read_text())
    ann["annotations"][-1]["keypoints"] = ann["annotations"][-1]["keypoints"][:-3]
    (dataset / "annotations.json").write_text(json.dumps(ann))
    monkeypatch.setattr(jobs, "load_predictor", lambda *a, **k: pytest.fail("the model was loaded"))
    argv = ["--annotations", str(dataset / "annotations.json")]
    argv += ["--oracle"] if oracle else ["--weights", str(tmp_path / "m.keras"), "--images", str(dataset / "images")]
    assert "keypoint numbers, expected 51" in one_line_error(capsys, evaluate.main(argv), "annotations.json")


# === Model files ===
@pytest.mark.parametrize("content,problem", [(None, "truncated"), (b"not a model\n", "starts with b'not a mo"),
                                             (b"", "empty"), (b"\x89HDF\r\n\x1a\n", "an HDF5 file")])
def test_broken_keras_files_say_what_is_wrong(content, problem, tmp_path, capsys):
    from simplepose.config import load_config
    from simplepose.methods import build_model
    from simplepose.models.loading import load_model
    from simplepose.errors import ModelFileError

    path = tmp_path / "broken.keras"
    if content is None:
        build_model(load_config(TINY, ["model.num_stages=1", "loss.stage_weights=[1]"])).save(tmp_path / "ok.keras")
        data = (tmp_path / "ok.keras").read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(ModelFileError) as e:
        load_model(path)
    assert problem in str(e.value) and "not found" not in str(e.value) and str(path) in str(e.value)


# === Training: run folder, messages ===
def test_print_config_needs_no_data_or_run_dir(capsys):
    from simplepose.commands import train

    assert train.main(["--config", TINY, "--epochs", "7", "--print-config"]) == 0
    assert "epochs: 7" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        train.main(["--config", TINY])
    assert e.value.code == 2 and "--train, --run-dir" in capsys.readouterr().err


def test_loss_plot_is_readable_for_one_epoch_and_written_every_epoch(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from simplepose.run_dir import LossPlot

    log = tmp_path / "log.csv"
    log.write_text("epoch,loss,val_loss\n0,1.30,1.25\n")
    figures = []
    original = plt.subplots

    def spy(*args, **kwargs):
        figures.append(original(*args, **kwargs))
        return figures[-1]

    plot = LossPlot(log, tmp_path / "losses.png")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(plt, "subplots", spy)
        plot.on_epoch_end(0)
    fig, ax = figures[0]
    assert (tmp_path / "losses.png").exists()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks == [0] and ax.get_yscale() == "linear" and ax.get_xlim() == (-0.5, 0.5)
    assert "log.csv" in ax.get_xlabel()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    label = ax.yaxis.label.get_window_extent(FigureCanvasAgg(fig).get_renderer())
    assert label.x0 >= 0  # the y label is not cut off


@pytest.mark.slow
def test_training_messages_resume_and_no_escape_codes(tmp_path, tiny_hdf5, capsys, caplog):
    from simplepose.commands import train

    argv = ["--config", TINY, "--train", str(tiny_hdf5), "--val", str(tiny_hdf5), "--run-dir", str(tmp_path / "r"),
            "--set", *FAST]
    with caplog.at_level(logging.INFO):
        assert train.main(argv + ["--epochs", "1"]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out  # stdout is not a terminal: plain progress lines
        last = out.strip().splitlines()[-1]
        assert "model.keras" in last and "val_loss" in last, last
        caplog.clear()
        assert train.main(argv + ["--epochs", "1"]) == 0
        assert "nothing to do" in capsys.readouterr().out and "epochs 2..1" not in caplog.text
        assert train.main(argv + ["--epochs", "2"]) == 0
        assert "resuming" in caplog.text and "after epoch 1 of 2" in caplog.text
        assert "epochs 2..2 of 2" in capsys.readouterr().out


# === Synthetic data ===
def test_synthetic_refuses_a_non_empty_folder_and_overwrite_replaces_it_whole(tmp_path, capsys):
    from simplepose.commands import synthetic

    out = tmp_path / "syn"
    assert synthetic.main([str(out), "--num-images", "5"]) == 0
    (out / "notes.txt").write_text("mine")
    one_line_error(capsys, synthetic.main([str(out), "--num-images", "2"]), out, "--overwrite")
    assert len(os.listdir(out / "images")) == 5
    assert synthetic.main([str(out), "--num-images", "2", "--overwrite"]) == 0
    assert sorted(os.listdir(out)) == ["annotations.json", "images"] and len(os.listdir(out / "images")) == 2
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == 2
    assert sorted(os.listdir(tmp_path)) == ["syn"]


# === Arguments and help ===
BAD_VALUES = [
    ("train", ["--batch-size", "-4"], "--batch-size", "'-4'"),
    ("train", ["--epochs", "0"], "--epochs", "'0'"),
    ("train", ["--steps-per-epoch", "x"], "--steps-per-epoch", "'x'"),
    ("evaluate", ["--scales", "-1", "0"], "--scales", "'-1'"),
    ("evaluate", ["--limit", "0"], "--limit", "'0'"),
    ("demo", ["--scales", "0"], "--scales", "'0'"),
    ("prepare", ["--workers", "0"], "--workers", "'0'"),
    ("show", ["-n", "0"], "-n/--num", "'0'"),
    ("synthetic", ["--num-images", "-2"], "--num-images", "'-2'"),
]
BASE_ARGS = {"train": ["--config", TINY, "--train", "x.h5", "--run-dir", "r"],
             "evaluate": ["--weights", "m.keras", "--annotations", "a.json", "--images", "i"],
             "demo": ["--weights", "m.keras", "--image", "i.png"],
             "prepare": ["--annotations", "a.json", "--images", "i", "--out", "o.h5"],
             "show": ["x.h5", "--out", "o"], "synthetic": ["out"]}


@pytest.mark.parametrize("command,args,option,value", BAD_VALUES, ids=lambda v: " ".join(v) if isinstance(v, list)
                         else None)
def test_bad_values_name_the_option_and_the_value(command, args, option, value, capsys):
    import importlib

    module = importlib.import_module(f"simplepose.commands.{command}")
    with pytest.raises(SystemExit) as e:
        module.main(BASE_ARGS[command] + args)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and f"argument {option}" in err and value in err and "--set" not in err, err


@pytest.mark.parametrize("command", ["synthetic", "prepare", "show", "train", "evaluate", "demo", "export"])
def test_help_has_no_empty_defaults_and_every_option_is_explained(command, capsys, monkeypatch):
    import importlib

    made, make_parser = [], cli.make_parser
    monkeypatch.setattr(cli, "make_parser", lambda *a, **k: made.append(make_parser(*a, **k)) or made[-1])
    module = importlib.import_module(f"simplepose.commands.{command}")
    with pytest.raises(SystemExit):
        module.main(["--help"])
    assert "(default: None)" not in capsys.readouterr().out
    assert [a.dest for a in made[0]._actions if not a.help] == []


# === Show ===
def test_show_does_not_repeat_samples_and_titles_its_panels(tiny_hdf5, tmp_path, caplog):
    from simplepose.commands import show
    from simplepose.data.hdf5 import HDF5Reader

    count = len(HDF5Reader(tiny_hdf5))
    with caplog.at_level(logging.WARNING):
        assert show.main([str(tiny_hdf5), "--out", str(tmp_path), "-n", str(count + 3), "--set",
                          "data.input_size=32"]) == 0
    assert len(list(tmp_path.glob("*.png"))) == count and f"holds {count} samples" in caplog.text
    image = cv2.imread(str(sorted(tmp_path.glob("*.png"))[0]))
    assert image.shape[1] == 4 * 32 and image.shape[0] > 32
    assert (image[: image.shape[0] - 32] > 150).any()  # bright title text on the black bands above the panels


# === Evaluation output ===
def test_evaluation_says_where_it_wrote_and_that_nothing_is_saved_without_out(synthetic_coco, tmp_path, capsys):
    rc = run_oracle(tmp_path, str(tmp_path / "eval"), synthetic_coco)
    out = capsys.readouterr().out
    assert rc == 0 and f"wrote {tmp_path / 'eval' / 'results.json'}" in out and "metrics.json" in out
    from simplepose.commands import evaluate

    assert evaluate.main(["--oracle", "--annotations", str(synthetic_coco.ann_file), "--limit", "2", "--set",
                          "model.architecture=topdown", "data.skeleton=coco17", "data.stride=4"]) == 0
    assert "nothing saved" in capsys.readouterr().out


def test_empty_size_ranges_are_explained():
    metrics = dict.fromkeys(evaluation.METRIC_NAMES, 0.5) | {"APl": -1.0, "ARl": -1.0}
    text = evaluation.format_summary(metrics)
    assert "-1.000" not in text and "n/a" in text and "no ground-truth person of that size" in text


def test_expected_retracing_warnings_are_dropped(caplog):
    import keras

    from simplepose.runtime import KerasRunner

    KerasRunner(keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(1, 1)]))
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        logging.getLogger("tensorflow").warning("5 out of the last 5 calls to <function> triggered tf.function "
                                                "retracing. Tracing is expensive")
        logging.getLogger("tensorflow").warning("something else")
    assert "retracing" not in caplog.text and "something else" in caplog.text


# === Person boxes from a detector ===
def test_dropped_detection_boxes_are_counted(synthetic_coco, tmp_path):
    from simplepose.data.coco import load_coco
    from simplepose.topdown.boxes import detection_boxes

    coco = load_coco(synthetic_coco.ann_file)
    dets = [{"image_id": 999, "category_id": 1, "bbox": [1, 1, 20, 40], "score": 0.9},
            {"image_id": 2, "category_id": 1, "bbox": [10, 10, -50, -100], "score": 0.9},
            {"image_id": 2, "category_id": 1, "bbox": [10, 10, 50, 100], "score": 0.8}]
    (tmp_path / "boxes.json").write_text(json.dumps(dets))
    dropped = {}
    assert list(detection_boxes(coco, tmp_path / "boxes.json", dropped)) == [2]
    assert dropped == {"unknown_image": 1, "empty_box": 1}
    (tmp_path / "boxes.json").write_text(json.dumps(dets[:2]))
    with pytest.raises(DataError, match=r"none of its 2 boxes is usable \(empty box: 1, unknown image: 1\)"):
        detection_boxes(coco, tmp_path / "boxes.json")


# === Demo drawing ===
def test_predictions_are_drawn_distinctly_with_their_score():
    from simplepose.pose import Pose
    from simplepose.skeleton import get_skeleton
    from simplepose.visualize import draw_poses, limb_colours

    skeleton = get_skeleton("coco17")
    image = np.full((200, 200, 3), 128, np.uint8)
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0], kp[:, 1], kp[:, 2] = np.linspace(40, 160, 17), np.linspace(60, 180, 17), 0.9
    drawn = draw_poses(image, [Pose(kp, 0.87)], skeleton)
    colours = {tuple(c) for c in limb_colours(len(skeleton.drawing_limbs))}
    assert (drawn == 0).all(axis=-1).sum() > 50  # black outlines and label
    assert any((drawn == c).all(axis=-1).any() for c in colours)
    assert (drawn[:60] == 255).all(axis=-1).any()  # the score's white text above the person


def test_reported_poses_stay_inside_the_image_with_non_negative_scores():
    from simplepose.pose import Pose

    kp = np.array([[-3.0, 5.0, 0.5], [120.4, 99.6, 0.2], [0.0, 0.0, 0.0]], np.float32)
    inside = Pose(kp, -0.25).inside(100, 80)
    assert inside.score == 0.0
    np.testing.assert_allclose(inside.keypoints, [[0, 5, 0.5], [99, 79, 0.2], [0, 0, 0]])


# === TensorFlow's C++ start-up lines ===
def test_native_log_lines_go_to_the_log_and_others_to_stderr(capfd, caplog):
    with caplog.at_level(logging.DEBUG, logger="simplepose.cli"):
        with cli._native_stderr_to_log():
            os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
            os.write(2, b"E0000 00:00:1796304847.354181   28427 cuda_platform.cc:52] failed call to cuInit: X\n")
            os.write(2, b"something TensorFlow printed\n")
    err = capfd.readouterr().err
    assert err == "something TensorFlow printed\n"
    assert "failed call to cuInit" in caplog.text


@pytest.mark.slow
def test_a_command_shows_no_tensorflow_start_up_lines():
    script = ("import sys\nfrom simplepose import cli\n@cli.run_main\ndef main(argv=None):\n"
              "    import tensorflow as tf\n    print(float(tf.constant(1.0) + 1))\n    return 0\nsys.exit(main())\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stdout == "2.0\n"
    assert not [line for line in done.stderr.splitlines() if cli.NATIVE_LOG_LINE.match(line)], done.stderr
