"""Shared fixtures: synthetic COCO data, a prepared HDF5 file, CPU-only, quiet TensorFlow."""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
COCO_MINI = REPO.parent / "shared" / "data" / "coco-mini"


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
