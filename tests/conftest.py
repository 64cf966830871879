"""Shared fixtures: synthetic COCO data, a prepared HDF5 file, CPU-only, quiet TensorFlow."""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
COCO_MINI = REPO.parent / "shared" / "data" / "coco-mini"
#: Inference settings that differ from the defaults, so a model used without them would predict otherwise.
BOTTOMUP_RUN = ["model.num_stages=1", "loss.stage_weights=[1.0]", "train.run_eagerly=true", "train.batch_size=2",
                "train.epochs=1", "train.steps_per_epoch=2", "data.input_size=64", "data.skeleton=coco18_limbs40",
                "inference.box_size=160", "inference.scales=[0.75, 1.0]", "inference.flip=true",
                "inference.peak_threshold=0.02", "inference.limb_threshold=0.02", "inference.min_mean_score=0.0",
                "inference.grouping=published"]
TOPDOWN_RUN = ["train.run_eagerly=true", "train.epochs=1", "train.steps_per_epoch=2", "topdown.flip_test=false",
               "topdown.rescore_threshold=0.0", "topdown.oks_nms_threshold=0.5", "topdown.box_scale=1.4"]


@pytest.fixture(scope="session")
def synthetic_coco(tmp_path_factory):
    """A small deterministic synthetic COCO dataset with every awkward case (session-wide, read-only)."""
    from simplepose.data.synthetic import make_synthetic_coco

    return make_synthetic_coco(tmp_path_factory.mktemp("synthetic"), num_images=12, seed=0)


@pytest.fixture(scope="session")
def tiny_hdf5(synthetic_coco, tmp_path_factory):
    """``synthetic_coco`` prepared into HDF5 with the library's prep function (session-wide, read-only)."""
    from simplepose.data.prepare import prepare_coco_hdf5

    out = tmp_path_factory.mktemp("hdf5") / "synthetic.h5"
    prepare_coco_hdf5(synthetic_coco.ann_file, synthetic_coco.image_dir, out, progress=False)
    return out


@pytest.fixture(scope="session")
def runs(synthetic_coco, tiny_hdf5, tmp_path_factory):
    """One tiny run per method, trained two steps on the synthetic data: ``{name: (config, run dir)}``."""
    from simplepose import train
    from simplepose.config import load_config

    root = tmp_path_factory.mktemp("runs")
    out = {}
    ann, images = str(synthetic_coco.ann_file), str(synthetic_coco.image_dir)
    for name, config, extra, data in (("bottomup", "bottomup_tiny.yaml", BOTTOMUP_RUN, (tiny_hdf5, None)),
                                      ("topdown", "topdown_tiny.yaml", TOPDOWN_RUN, (ann, images))):
        cfg = load_config(REPO / "configs" / config, extra)
        train.fit(cfg, root / name, data[0], train_images=data[1], verbose=0)
        out[name] = (cfg, root / name)
    return out


@pytest.fixture(scope="session")
def coco_mini():
    """Path to ../shared/data/coco-mini; tests using it skip cleanly when it is absent."""
    if not (COCO_MINI / "annotations" / "person_keypoints_val2017.json").exists():
        pytest.skip("../shared/data/coco-mini is not available")
    return COCO_MINI


@pytest.fixture
def kill_at_epoch():
    """Factory of a Keras callback that interrupts training when an epoch begins (a simulated kill)."""
    import keras

    class KillAtEpoch(keras.callbacks.Callback):
        def __init__(self, epoch):
            super().__init__()
            self.epoch = epoch

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == self.epoch:
                raise KeyboardInterrupt("simulated kill")

    return KillAtEpoch
