"""Top-down training through train.fit and training/train_pose.py: run dir, falling loss, resume, evaluation."""
import csv
import os

import keras
import pytest

from simplepose import train
from simplepose.commands import evaluate as evaluation_cli
from simplepose.commands import train as train_pose
from simplepose.config import load_config
from simplepose.run_dir import CSV_FILE, resume_epoch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = os.path.join(REPO, "configs", "topdown_tiny.yaml")
BOTTOMUP_TINY = os.path.join(REPO, "configs", "bottomup_tiny.yaml")


def _log(run):
    with open(os.path.join(run, CSV_FILE)) as f:
        return list(csv.DictReader(f))


def test_cli_trains_resumes_and_evaluates(capsys, tmp_path, synthetic_coco, kill_at_epoch):
    ann, images, run = str(synthetic_coco.ann_file), str(synthetic_coco.image_dir), str(tmp_path / "run")
    argv = ["--config", TINY, "--train", ann, "--train-images", images, "--val", ann, "--val-images", images,
            "--run-dir", run, "--epochs", "2"]
    cfg = train_pose.resolve_config(train_pose.build_parser().parse_args(argv))
    samples = train.open_source(cfg, ann, images, training=True)
    steps = train.resolve_steps(cfg, samples)
    assert cfg.train.steps_per_epoch == 0 and steps == len(samples) // cfg.train.batch_size >= 2

    # a run killed after its first epoch, started again with the same command, continues with the second
    with pytest.raises(KeyboardInterrupt):
        train.fit(cfg, run, ann, ann, train_images=images, val_images=images, callbacks=[kill_at_epoch(1)], verbose=0)
    assert resume_epoch(run) == 1 and [r["epoch"] for r in _log(run)] == ["0"]
    assert train_pose.main(argv) == 0, capsys.readouterr().err
    assert "done: 1 epoch(s)" in capsys.readouterr().out
    assert sorted(p for p in os.listdir(run) if not p.startswith(".")) == [
        "backup", "config.yaml", "last.keras", "log.csv", "losses.png", "model.keras", "tensorboard"]
    assert load_config(os.path.join(run, "config.yaml")) == cfg
    rows = _log(run)
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert float(rows[1]["loss"]) < 0.8 * float(rows[0]["loss"])  # the loss falls
    assert all(float(r["val_loss"]) > 0 for r in rows)
    last = keras.saving.load_model(os.path.join(run, "last.keras"))
    assert int(last.optimizer.iterations) == 2 * steps  # the optimiser state was restored, not restarted
    assert type(last.optimizer).__name__ == "Adam" and tuple(last.outputs[0].shape[1:]) == (32, 24, 17)

    out = tmp_path / "eval"
    assert evaluation_cli.main(["--weights", os.path.join(run, "model.keras"), "--annotations", ann,
                                "--images", images, "--out", str(out)]) == 0, capsys.readouterr().err
    assert "AP" in capsys.readouterr().out and (out / "metrics.json").exists()


def _main_error(capsys, argv):
    assert train_pose.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_cli_wrong_data_for_architecture_is_one_line(capsys, tmp_path, synthetic_coco, tiny_hdf5):
    ann, images = str(synthetic_coco.ann_file), str(synthetic_coco.image_dir)
    topdown = ["--config", TINY, "--run-dir", str(tmp_path / "td")]
    assert "not an HDF5 file" in _main_error(capsys, topdown + ["--train", str(tiny_hdf5), "--train-images", images])
    assert "needs the image folder" in _main_error(capsys, topdown + ["--train", ann])
    assert "is not a folder" in _main_error(capsys, topdown + ["--train", ann, "--train-images", str(tmp_path / "x")])
    assert "annotation file not found" in _main_error(capsys, topdown + ["--train", str(tmp_path / "x.json"),
                                                                         "--train-images", images])
    assert "fewer than one batch of 64" in _main_error(capsys, topdown + ["--train", ann, "--train-images", images,
                                                                          "--batch-size", "64"])
    (tmp_path / "list.json").write_text("[1, 2]")
    assert "not a COCO keypoint file" in _main_error(capsys, topdown + ["--train", str(tmp_path / "list.json"),
                                                                        "--train-images", images])
    bottomup = ["--config", BOTTOMUP_TINY, "--run-dir", str(tmp_path / "bu"), "--train", str(tiny_hdf5)]
    assert "only read by top-down configs" in _main_error(capsys, bottomup + ["--train-images", images])
    assert "reads an HDF5 file" in _main_error(capsys, bottomup[:-1] + [ann])
    assert not os.path.exists(tmp_path / "td") and not os.path.exists(tmp_path / "bu")  # nothing written
