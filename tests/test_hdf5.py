"""HDF5 prep and reader: write -> read round trip, reduced-resolution geometry, atomicity, errors."""
import concurrent.futures
import json
import os
import pickle
import shutil

import cv2
import h5py
import numpy as np
import pytest

from simplepose.data import coco, codecs, hdf5, prepare
from simplepose.data.hdf5 import HDF5Reader
from simplepose.data.prepare import prepare_coco_hdf5

SIZES = {1: (99, 131), 2: (64, 80), 3: (50, 70)}  # image id: (height, width); 99 x 131 is not a multiple of 8
BLOBS = {1: [(90, 20)], 2: [(20, 20)], 3: []}  # person b's 5th keypoint; person 21's first keypoint


def blob_image(height, width, centers, sigma=6.0, seed=0):
    """Dark noisy background with one bright Gaussian blob per centre (x, y)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    img = rng.integers(0, 20, (height, width, 3)).astype(np.float64)
    for x, y in centers:
        img += 200.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def annotation(ann_id, image_id, bbox, keypoints, area=None, iscrowd=0, segmentation=None):
    kp = np.zeros((17, 3))
    for k, (x, y) in enumerate(keypoints):
        kp[k] = [x, y, 2 if k % 3 else 1]
    x, y, w, h = bbox
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": bbox, "iscrowd": iscrowd,
            "area": w * h if area is None else area, "num_keypoints": len(keypoints),
            "keypoints": kp.reshape(-1).tolist(),
            "segmentation": segmentation or [[x, y, x + w, y, x + w, y + h, x, y + h]]}


def crowd_rle(height, width, y0, y1, x0, x1):
    m = np.zeros((height, width), np.uint8)
    m[y0:y1, x0:x1] = 1
    rle = coco.mask_utils.encode(np.asfortranarray(m))
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def make_dataset(root):
    """Three images: a JPEG with two main people, another person and a crowd; a PNG with one main person;
    a JPEG with only a tiny person (no sample)."""
    (root / "images").mkdir(parents=True)
    kp_a = [(40 + 3 * k, 30 + 2 * k) for k in range(6)]
    kp_b = [(100, 60), (104, 66), (96, 70), (110, 80), (90, 20)]
    anns = [annotation(11, 1, [30, 20, 40, 60], kp_a),
            annotation(12, 1, [85, 15, 40, 70], kp_b),
            annotation(13, 1, [5, 80, 10, 10], [(8, 85), (9, 86)]),
            annotation(14, 1, [60, 0, 70, 15], [], iscrowd=1, segmentation=crowd_rle(99, 131, 0, 15, 60, 130)),
            annotation(21, 2, [10, 10, 40, 40], [(20, 20), (30, 30), (25, 40), (35, 12), (15, 33)]),
            annotation(31, 3, [10, 10, 10, 10], [(12, 12)] * 6)]
    images = []
    for image_id, (h, w) in SIZES.items():
        name = f"{image_id:04d}." + ("png" if image_id == 2 else "jpg")
        cv2.imwrite(str(root / "images" / name), blob_image(h, w, BLOBS[image_id], seed=image_id),
                    [cv2.IMWRITE_JPEG_QUALITY, 100])
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": []}))
    return root / "ann.json", root / "images", {"images": images, "annotations": anns}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("hand")
    ann, images, data = make_dataset(root)
    out = root / "out.h5"
    summary = prepare_coco_hdf5(ann, images, out, progress=False)
    return ann, images, data, out, summary


def test_summary_counts(dataset):
    *_, summary = dataset
    assert (summary.images_total, summary.images_read, summary.images_without_samples) == (3, 2, 1)
    assert (summary.samples_written, summary.people_written, summary.images_skipped) == (3, 4, {})
    assert summary.bytes_written > 0


def test_round_trip(dataset):
    ann, images, data, out, _ = dataset
    by_id = {i["id"]: i for i in data["images"]}
    expected = [(1, 11, [11, 12, 13]), (1, 12, [12, 11, 13]), (2, 21, [21])]  # image, main, people order
    anns = {a["id"]: a for a in data["annotations"]}
    with HDF5Reader(out) as reader:
        assert len(reader) == 3
        assert reader.attrs["schema_version"] == hdf5.SCHEMA_VERSION
        assert reader.attrs["source_annotations"] == str(ann.resolve())
        for i, (image_id, main, order) in enumerate(expected):
            s, raw = reader[i], reader.raw(i)
            path = images / by_id[image_id]["file_name"]
            assert raw.encoded == path.read_bytes()
            np.testing.assert_array_equal(s.image, cv2.imread(str(path), cv2.IMREAD_COLOR))
            img_anns = [a for a in data["annotations"] if a["image_id"] == image_id]
            np.testing.assert_array_equal(s.mask, coco.miss_mask(img_anns, *s.image.shape[:2]))
            kp = np.array([anns[a]["keypoints"] for a in order], np.float32).reshape(-1, 17, 3)
            np.testing.assert_array_equal(s.keypoints, kp)
            x, y, w, h = anns[main]["bbox"]
            np.testing.assert_allclose(s.center, [x + w / 2, y + h / 2])
            assert s.scale == h and s.image_id == image_id and s.index == i
            assert s.image.dtype == np.uint8 and s.mask.dtype == np.uint8 and s.keypoints.dtype == np.float32
    assert not reader.raw(0).mask == b""  # image 1 has a crowd
    assert reader.raw(2).mask == b""      # image 2 is fully supervised
    assert reader.raw(0).image_row == reader.raw(1).image_row == 0 and reader.raw(2).image_row == 1
    np.testing.assert_array_equal(reader.sample_images, [0, 0, 1])


def centroid(gray):
    yy, xx = np.mgrid[0:gray.shape[0], 0:gray.shape[1]]
    w = np.clip(gray.astype(np.float64) - 40, 0, None)
    return np.array([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])


@pytest.mark.parametrize("reduce", [2, 4, 8])
def test_reduced_read_geometry(dataset, reduce):
    """A blob drawn at a keypoint is found at the reduced keypoint, for JPEG (DCT scaling) and PNG."""
    *_, out, _ = dataset
    reader = HDF5Reader(out)
    for i, (h, w) in [(2, SIZES[2]), (1, SIZES[1])]:
        full, small = reader[i], reader.read(i, reduce=reduce)
        assert small.image.shape == (-(-h // reduce), -(-w // reduce), 3) and small.reduce == reduce
        assert small.mask.shape == small.image.shape[:2]
        np.testing.assert_allclose(small.keypoints[..., :2], np.where(
            full.keypoints[..., 2:] > 0, (full.keypoints[..., :2] + 0.5) / reduce - 0.5, 0), rtol=1e-6)
        np.testing.assert_array_equal(small.keypoints[..., 2], full.keypoints[..., 2])
        np.testing.assert_allclose(small.center, (full.center + 0.5) / reduce - 0.5, rtol=1e-6)
        assert small.scale == pytest.approx(full.scale / reduce)
        k = (0, 0) if i == 2 else (0, 4)  # the keypoints drawn as blobs (BLOBS)
        x, y = small.keypoints[k][:2]
        r = max(2, 12 // reduce)
        win = small.image[int(y) - r: int(y) + r + 1, int(x) - r: int(x) + r + 1, 1]
        cx, cy = centroid(win) + [int(x) - r, int(y) - r]
        assert abs(cx - x) < 0.08 and abs(cy - y) < 0.08, (i, reduce, cx, cy, x, y)


@pytest.mark.parametrize("reduce", [2, 4, 8])
def test_reduced_mask_is_block_majority(reduce):
    rng = np.random.default_rng(reduce)
    mask = (rng.random((37, 45)) > 0.3).astype(np.uint8)
    small = codecs.decode_mask(codecs.encode_mask(mask), 37, 45, reduce)
    padded = np.pad(mask, ((0, -37 % reduce), (0, -45 % reduce)), mode="edge")
    for r in range(small.shape[0]):
        for c in range(small.shape[1]):
            block = padded[r * reduce:(r + 1) * reduce, c * reduce:(c + 1) * reduce]
            assert small[r, c] == (block.mean() >= 0.5)
    assert codecs.decode_mask(b"", 37, 45, reduce).shape == small.shape


def test_mask_codec_round_trip_and_schema_1_png_masks():
    """Masks are stored as zlib'd bits (any shape, not only multiples of 8); schema-1 PNG masks still decode."""
    rng = np.random.default_rng(0)
    for h, w in [(37, 45), (1, 1), (480, 640)]:
        mask = (rng.random((h, w)) > 0.3).astype(np.uint8)
        encoded = codecs.encode_mask(mask)
        np.testing.assert_array_equal(codecs.decode_mask(encoded, h, w), mask)
        png = cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_BILEVEL, 1])[1].tobytes()
        np.testing.assert_array_equal(codecs.decode_mask(png, h, w), mask)
        np.testing.assert_array_equal(codecs.decode_mask(png, h, w, 2), codecs.decode_mask(encoded, h, w, 2))
    assert codecs.encode_mask(np.ones((5, 7), np.uint8)) == b""
    with pytest.raises(ValueError, match="mask of shape"):
        codecs.decode_mask(png, h + 1, w)


def test_reader_in_threads_processes_and_pickle(dataset):
    *_, out, _ = dataset
    reader = HDF5Reader(out)
    serial = [reader.read(i, reduce=2).image for i in range(len(reader))]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(lambda i: hdf5.decode_sample(reader.raw(i), 2).image, range(len(reader))))
    clone = pickle.loads(pickle.dumps(reader))
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(clone[1].keypoints, reader[1].keypoints)
    with pytest.raises(IndexError):
        reader.raw(3)
    with pytest.raises(ValueError, match="reduce"):
        reader.read(0, reduce=3)


def test_workers_give_identical_files(dataset, tmp_path):
    ann, images, _, out, _ = dataset
    prepare_coco_hdf5(ann, images, tmp_path / "w3.h5", workers=3, progress=False)
    with h5py.File(out, "r") as a, h5py.File(tmp_path / "w3.h5", "r") as b:
        for name in hdf5._DATASETS:
            np.testing.assert_array_equal(a[name][()], b[name][()], err_msg=name)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_mid_write_leaves_nothing(dataset, tmp_path, monkeypatch, error):
    ann, images, *_ = dataset
    (tmp_path / "keep.h5").write_bytes(b"old")
    calls, seen = [], []

    def add_then_fail(self, record):
        calls.append(record.image_id)
        if len(calls) == 2:
            self._flush()  # data really on disk in the temporary file
            seen.append(sorted(os.listdir(tmp_path)))
            raise error("boom")
        original(self, record)

    original = hdf5.HDF5Writer.add
    monkeypatch.setattr(hdf5.HDF5Writer, "add", add_then_fail)
    for name in ("new.h5", "keep.h5"):
        with pytest.raises(error):
            prepare_coco_hdf5(ann, images, tmp_path / name, progress=False, workers=2)
        calls.clear()
    assert [len(names) for names in seen] == [2, 2] and seen[0][0].startswith(".tmp-")
    assert sorted(os.listdir(tmp_path)) == ["keep.h5"]
    assert (tmp_path / "keep.h5").read_bytes() == b"old"


def test_schema_1_file_with_png_masks_is_read(dataset, tmp_path):
    *_, out, _ = dataset
    old = tmp_path / "v1.h5"
    shutil.copy(out, old)
    reader = HDF5Reader(out)
    with h5py.File(old, "a") as f:
        f.attrs["schema_version"] = 1
        sizes, pngs = f["images/size"][()], []
        for (start, length), (h, w) in zip(f["images/mask_range"][()], sizes):
            mask = codecs.decode_mask(f["images/masks"][start:start + length].tobytes(), int(h), int(w))
            pngs.append(b"" if not length else cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_BILEVEL, 1])[1].tobytes())
        del f["images/masks"], f["images/mask_range"]
        f["images/masks"] = np.frombuffer(b"".join(pngs), np.uint8)
        f["images/mask_range"] = np.array([(sum(map(len, pngs[:i])), len(p)) for i, p in enumerate(pngs)], np.int64)
    old_reader = HDF5Reader(old)
    assert old_reader.raw(0).mask[:4] == b"\x89PNG"
    for i in range(len(reader)):
        np.testing.assert_array_equal(old_reader[i].mask, reader[i].mask)


def test_reader_errors(dataset, tmp_path):
    *_, out, _ = dataset
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        HDF5Reader(tmp_path / "missing.h5")
    text = tmp_path / "text.h5"
    text.write_text("hello")
    with pytest.raises(ValueError, match="text.h5: not a readable HDF5 file"):
        HDF5Reader(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="other.h5: not a simplepose data file"):
        HDF5Reader(other)
    old = tmp_path / "old.h5"
    shutil.copy(out, old)
    with h5py.File(old, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(ValueError, match="old.h5: schema version 99, this simplepose reads versions 1, 2"):
        HDF5Reader(old)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(out.read_bytes()[: os.path.getsize(out) // 2])
    with pytest.raises(ValueError, match="cut.h5: not a readable HDF5 file"):
        HDF5Reader(cut)


def test_bad_images_are_skipped_and_counted(tmp_path):
    ann, images, data = make_dataset(tmp_path / "d")
    jpg = images / "0001.jpg"
    jpg.write_bytes(jpg.read_bytes()[:-200])                      # truncated JPEG
    (images / "0002.png").write_bytes(b"")                       # empty
    summary = prepare_coco_hdf5(ann, images, tmp_path / "o.h5", progress=False, allow_empty=True)
    assert summary.images_skipped == {"corrupt": 1, "empty": 1} and summary.samples_written == 0
    (images / "0002.png").unlink()                                # missing
    cv2.imwrite(str(jpg), np.zeros((10, 10, 3), np.uint8))         # wrong size
    summary = prepare_coco_hdf5(ann, images, tmp_path / "o.h5", progress=False, allow_empty=True)
    assert summary.images_skipped == {"missing": 1, "size_mismatch": 1}
    assert len(HDF5Reader(tmp_path / "o.h5")) == 0


def test_build_record_counts_keypoints_outside(tmp_path):
    ann, images, data = make_dataset(tmp_path / "d")
    anns = [dict(a) for a in data["annotations"] if a["image_id"] == 2]
    anns[0]["keypoints"] = list(anns[0]["keypoints"])
    anns[0]["keypoints"][3:6] = [500.0, 10.0, 2]
    record, outside = prepare.build_record(data["images"][1], anns, str(images), [0])
    assert outside == 1 and record.keypoints[0, 1].tolist() == [0, 0, 0]
    assert record.main == [0] and record.encoded == (images / "0002.png").read_bytes()


def test_synthetic_dataset_through_the_fixtures(synthetic_coco, tiny_hdf5):
    """The generator's awkward cases (two crowds, unlabelled people, border, tiny) survive prep unchanged."""
    data = coco.load_coco_keypoints(synthetic_coco.ann_file)
    expected = [(info, m) for info in data.images for m in coco.select_main_people(data.annotations[info["id"]])]
    reader = HDF5Reader(tiny_hdf5)
    assert len(reader) == len(expected) > 0
    masked = 0
    for k, (info, m) in enumerate(expected):
        s, anns = reader[k], data.annotations[info["id"]]
        assert s.image_id == info["id"] and s.keypoints[0].reshape(-1).tolist() == anns[m]["keypoints"]
        np.testing.assert_array_equal(s.image, cv2.imread(str(synthetic_coco.image_dir / info["file_name"])))
        np.testing.assert_array_equal(s.mask, coco.miss_mask(anns, info["height"], info["width"]))
        masked += not s.mask.all()
    assert masked > 0


def test_exif_orientation_is_ignored_and_trailing_bytes_accepted(tmp_path):
    """COCO sizes and annotations refer to the stored bitmap: an EXIF 'rotate 90' tag must not rotate it."""
    image_module = pytest.importorskip("PIL.Image")
    ann, images, data = make_dataset(tmp_path / "d")
    pixels = cv2.imread(str(images / "0001.jpg"))
    exif = image_module.Exif()
    exif[0x0112] = 6
    image_module.fromarray(pixels[..., ::-1]).save(images / "0001.jpg", quality=95, exif=exif.tobytes())
    with open(images / "0001.jpg", "ab") as f:
        f.write(b"\0" * 300)  # bytes after the end-of-image marker, as some cameras write
    summary = prepare_coco_hdf5(ann, images, tmp_path / "o.h5", progress=False)
    assert summary.images_skipped == {} and summary.samples_written == 3
    s = HDF5Reader(tmp_path / "o.h5").read(0, reduce=2)
    assert s.image.shape == (50, 66, 3)


def test_reader_reopens_after_close_and_in_a_forked_process(dataset):
    *_, out, _ = dataset
    reader = HDF5Reader(out)
    first = reader[0].keypoints
    reader.close()
    np.testing.assert_array_equal(reader[0].keypoints, first)
    global _INHERITED
    _INHERITED = reader  # with an open handle: the forked child must open its own
    ctx = __import__("multiprocessing").get_context("fork")
    with ctx.Pool(1) as pool:
        np.testing.assert_array_equal(pool.apply(_inherited_first_keypoints), first)
        np.testing.assert_array_equal(pool.apply(_first_keypoints, (reader,)), first)  # pickled


_INHERITED = None


def _inherited_first_keypoints():
    assert _INHERITED._pid != os.getpid()
    return _INHERITED[0].keypoints


def _first_keypoints(reader):
    return reader[0].keypoints
