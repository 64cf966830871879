"""HDF5 storage of prepared COCO keypoint data: schema, streaming atomic writer, and ``HDF5Reader``.

Schema (``schema_version`` 2; version 1 files, whose masks are PNGs, are read too). Root attributes:
``format``, ``schema_version``, ``simplepose_version``, ``num_images``, ``num_people``, ``num_samples``, and
from the prep: ``source_annotations``, ``source_images``
(absolute paths), ``images_total``, ``images_without_samples``, ``images_skipped`` (JSON ``{reason: count}``).

- ``images/encoded`` uint8 (B,): the image files' bytes as read from disk, concatenated (no re-encoding);
  ``images/encoded_range`` int64 (I, 2): ``[start, length]`` of image i in it.
- ``images/masks`` uint8 (M,), ``images/mask_range`` int64 (I, 2): the miss mask of image i (1 = supervised),
  its rows bit-packed (``np.packbits``) and zlib-compressed (version 1: a 1-bit PNG); length 0 means
  "everything supervised" (most images). See :mod:`simplepose.data.codecs`.
- ``images/id`` int64 (I,), ``images/size`` int32 (I, 2) ``[height, width]``, ``images/file_name`` str (I,),
  ``images/people`` int64 (I, 2): ``[first, count]`` rows of the image's people in ``people/*``.
- ``people/keypoints`` float32 (P, 17, 3) COCO order and v coding; ``people/bbox`` float32 (P, 4);
  ``people/area`` float32 (P,); ``people/annotation_id`` int64 (P,). People are every non-crowd annotation
  with ``num_keypoints > 0``, in annotation order.
- ``samples/image`` int64 (S,) image row; ``samples/person`` int64 (S,) the main person's index among its
  image's people; ``samples/center`` float32 (S, 2); ``samples/scale`` float32 (S,) bbox height in px;
  ``samples/image_id`` int64 (S,).

Only images with at least one sample are stored, each once, shared by its samples.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading

import h5py
import numpy as np

from simplepose.atomic import check_replaceable, clean_stale, temp_path
from simplepose._version import __version__
from simplepose.data.codecs import REDUCTIONS, decode_image, decode_mask, reduce_points, reduced_size
from simplepose.skeleton import COCO_KEYPOINTS

LOG = logging.getLogger(__name__)

FORMAT = "simplepose.coco-keypoints"
SCHEMA_VERSION = 2
#: Versions this reader reads (1 differs only in its mask codec, recognised by the PNG signature).
READABLE_SCHEMA_VERSIONS = (1, 2)
#: Encoded images kept per reader, so the samples of one image read its bytes once (thread-safe LRU).
_IMAGE_BYTES_CACHE = 64
_BLOB_CHUNKS = {"images/encoded": 1 << 20,  # >= h5py's default chunk cache: random reads go straight to disk
                "images/masks": 1 << 16}  # masks are small (and mostly absent: all supervised)
_ROW_CHUNK = 1024
_DATASETS = {  # name: (row shape, dtype)
    "images/encoded": ((), np.uint8), "images/encoded_range": ((2,), np.int64),
    "images/masks": ((), np.uint8), "images/mask_range": ((2,), np.int64),
    "images/id": ((), np.int64), "images/size": ((2,), np.int32),
    "images/file_name": ((), h5py.string_dtype()), "images/people": ((2,), np.int64),
    "people/keypoints": ((len(COCO_KEYPOINTS), 3), np.float32), "people/bbox": ((4,), np.float32),
    "people/area": ((), np.float32), "people/annotation_id": ((), np.int64),
    "samples/image": ((), np.int64), "samples/person": ((), np.int64),
    "samples/center": ((2,), np.float32), "samples/scale": ((), np.float32),
    "samples/image_id": ((), np.int64),
}


@dataclasses.dataclass
class ImageRecord:
    """One image ready to store.

    Attributes:
        image_id, file_name, height, width: from the annotation file.
        encoded: the image file's bytes.
        mask: the encoded 0/1 miss mask, or ``b""`` when every pixel is supervised (``codecs.encode_mask``).
        keypoints: float32 ``(P, 17, 3)``; bbox float32 ``(P, 4)``; area float32 ``(P,)``;
            annotation_id int64 ``(P,)``: the image's people.
        main: indices into the people of the main people, one sample each.
    """

    image_id: int
    file_name: str
    height: int
    width: int
    encoded: bytes
    mask: bytes
    keypoints: np.ndarray
    bbox: np.ndarray
    area: np.ndarray
    annotation_id: np.ndarray
    main: list


class HDF5Writer:
    """Streaming, atomic writer: rows are appended in chunks to resizable datasets of a temporary file
    beside ``path``, which is renamed to ``path`` by :meth:`commit`; any failure removes it.

    Example:
        with HDF5Writer(out, {"source_annotations": ann}) as w:
            for record in records:
                w.add(record)
            w.commit()
    """

    def __init__(self, path, attrs: dict | None = None, *, flush_every: int = 64):
        self.path = os.fspath(path)
        self.attrs = dict(attrs or {})
        self.flush_every = flush_every
        check_replaceable(self.path)
        clean_stale(self.path)  # left by a killed writer of the same file
        self.tmp_path = temp_path(self.path, "h5")
        self._file = h5py.File(self.tmp_path, "w")
        try:
            for name, (shape, dtype) in _DATASETS.items():
                chunk = (_BLOB_CHUNKS[name],) if name in _BLOB_CHUNKS else (_ROW_CHUNK,) + shape
                self._file.create_dataset(name, shape=(0,) + shape, maxshape=(None,) + shape, dtype=dtype,
                                          chunks=chunk)
        except BaseException:
            self.abort()
            raise
        self._pending = {name: [] for name in _DATASETS}
        self._counts = {"images": 0, "people": 0, "samples": 0, "encoded": 0, "masks": 0}
        self._buffered = 0

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._file is not None or os.path.exists(self.tmp_path):
            self.abort()
        return False

    def add(self, rec: ImageRecord) -> None:
        """Queue one image with its people and samples (written every ``flush_every`` images)."""
        c, p = self._counts, self._pending
        n_people = len(rec.keypoints)
        p["images/encoded"].append(np.frombuffer(rec.encoded, np.uint8))
        p["images/encoded_range"].append([(c["encoded"], len(rec.encoded))])
        p["images/masks"].append(np.frombuffer(rec.mask, np.uint8))
        p["images/mask_range"].append([(c["masks"], len(rec.mask))])
        p["images/id"].append([rec.image_id])
        p["images/size"].append([(rec.height, rec.width)])
        p["images/file_name"].append([rec.file_name])
        p["images/people"].append([(c["people"], n_people)])
        for name in ("keypoints", "bbox", "area", "annotation_id"):
            p[f"people/{name}"].append(getattr(rec, name))
        for m in rec.main:
            bbox = rec.bbox[m]
            p["samples/image"].append([c["images"]])
            p["samples/person"].append([m])
            p["samples/center"].append([(bbox[0] + bbox[2] / 2.0, bbox[1] + bbox[3] / 2.0)])
            p["samples/scale"].append([bbox[3]])
            p["samples/image_id"].append([rec.image_id])
        c["images"] += 1
        c["people"] += n_people
        c["samples"] += len(rec.main)
        c["encoded"] += len(rec.encoded)
        c["masks"] += len(rec.mask)
        self._buffered += 1
        if self._buffered >= self.flush_every:
            self._flush()

    def _flush(self) -> None:
        for name, parts in self._pending.items():
            if not parts:
                continue
            shape, dtype = _DATASETS[name]
            rows = np.concatenate([np.asarray(x, dtype=dtype).reshape((-1,) + shape) for x in parts])
            ds = self._file[name]
            start = ds.shape[0]
            ds.resize(start + len(rows), axis=0)
            ds[start:] = rows
            parts.clear()
        self._buffered = 0

    def commit(self, attrs: dict | None = None) -> None:
        """Write what is queued and the attributes (``attrs`` added), close, and rename to ``path``."""
        self._flush()
        attrs = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "simplepose_version": __version__,
                 "num_images": self._counts["images"], "num_people": self._counts["people"],
                 "num_samples": self._counts["samples"], **self.attrs, **(attrs or {})}
        for key, value in attrs.items():
            self._file.attrs[key] = value
        self._file.close()
        self._file = None
        os.replace(self.tmp_path, self.path)
        LOG.info("wrote %s: %d images, %d samples", self.path, self._counts["images"], self._counts["samples"])

    def abort(self) -> None:
        """Close and delete the temporary file (nothing at ``path`` is touched)."""
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None
        if os.path.exists(self.tmp_path):
            os.remove(self.tmp_path)


@dataclasses.dataclass
class RawSample:
    """A sample as stored: encoded bytes and arrays, nothing decoded (see :meth:`HDF5Reader.raw`).

    Attributes:
        encoded: the image file's bytes; mask: the encoded 0/1 mask (:func:`decode_mask`), ``b""`` = all
        supervised. height, width: the full image size. image_row: the image's row in the file (samples of
        one image share it). Other fields as in :class:`Sample` at full resolution.
    """

    encoded: bytes
    mask: bytes
    height: int
    width: int
    keypoints: np.ndarray
    center: np.ndarray
    scale: float
    image_id: int
    index: int
    image_row: int


@dataclasses.dataclass
class Sample:
    """One training sample (one main person of one image).

    Attributes:
        image: uint8 ``(H, W, 3)`` BGR. mask: uint8 ``(H, W)``, 1 = supervised, 0 = ignored.
        keypoints: float32 ``(N, 17, 3)`` COCO order and v coding; row 0 is the main person, then every
            other person of the image with ``num_keypoints > 0``, in annotation order.
        center: float32 ``(2,)`` main person's bbox centre (x, y). scale: main person's bbox height, px.
        image_id: COCO image id. index: the sample's index in the file. reduce: the decoding factor.
    """

    image: np.ndarray
    mask: np.ndarray
    keypoints: np.ndarray
    center: np.ndarray
    scale: float
    image_id: int
    index: int
    reduce: int = 1


def decode_sample(raw: RawSample, reduce: int = 1) -> Sample:
    """Decode a :class:`RawSample` at 1/reduce; geometry is mapped with :func:`reduce_points`."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {sorted(REDUCTIONS)}, got {reduce}")
    image = decode_image(raw.encoded, reduce)
    if image.shape[:2] != reduced_size(raw.height, raw.width, reduce):
        raise ValueError(f"image {raw.image_id}: decoded size {image.shape[:2]} does not match the stored "
                         f"{raw.height}x{raw.width} at 1/{reduce}")
    keypoints, center, scale = raw.keypoints, raw.center, raw.scale
    if reduce > 1:
        keypoints = keypoints.copy()
        labelled = keypoints[..., 2] > 0
        keypoints[..., :2] = np.where(labelled[..., None], reduce_points(keypoints[..., :2], reduce), 0.0)
        center, scale = reduce_points(center, reduce), scale / reduce
    return Sample(image=image, mask=decode_mask(raw.mask, raw.height, raw.width, reduce),
                  keypoints=keypoints, center=center, scale=float(scale), image_id=raw.image_id,
                  index=raw.index, reduce=reduce)


class HDF5Reader:
    """Random access to the samples of a prepared HDF5 file.

    Opening checks the file and loads the small index tables; the data handle is opened lazily, and again
    after a fork or unpickling, so one reader per worker process is safe and cheap. Threads may share a
    reader: h5py serialises every call with one global lock, so a pipeline should call :meth:`raw` (bytes
    only, under that lock) and :func:`decode_sample` (cv2, outside it, GIL released) separately.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a readable HDF5 file (corrupt, truncated), not a simplepose file, or another
            schema version; the message names the file.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"HDF5 file not found: {self.path}")
        self._init_handles()
        try:
            with h5py.File(self.path, "r") as f:
                self._load_index(f)
        except (OSError, KeyError, RuntimeError) as e:
            raise ValueError(f"{self.path}: not a readable HDF5 file (corrupt or truncated?): {e}") from None

    def _init_handles(self) -> None:
        """Per-process state: the lazily opened file, its datasets, and the image-bytes cache."""
        self._file = self._pid = None
        self._ds = {}
        self._open_lock = threading.Lock()
        self._image_bytes = functools.lru_cache(_IMAGE_BYTES_CACHE)(self._read_image_bytes)

    def _load_index(self, f) -> None:
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT or "schema_version" not in attrs:
            raise ValueError(f"{self.path}: not a simplepose data file (no '{FORMAT}' format attribute); "
                             "prepare it with training/coco_masks_hdf5.py")
        if attrs["schema_version"] not in READABLE_SCHEMA_VERSIONS:
            raise ValueError(f"{self.path}: schema version {attrs['schema_version']}, this simplepose reads "
                             f"versions {', '.join(map(str, READABLE_SCHEMA_VERSIONS))}; prepare the file again")
        missing = [name for name in _DATASETS if name not in f]
        if missing:
            raise ValueError(f"{self.path}: incomplete file, missing {', '.join(missing)}")
        self.attrs = attrs
        index = {name: f[name][()] for name in _DATASETS if name.startswith("samples/")}
        index.update({name: f[name][()] for name in ("images/encoded_range", "images/mask_range",
                                                     "images/size", "images/people")})
        n = attrs["num_samples"]
        if any(len(index[k]) != n for k in index if k.startswith("samples/")):
            raise ValueError(f"{self.path}: sample tables disagree with num_samples={n}")
        self._index = index

    def __len__(self) -> int:
        return len(self._index["samples/image"])

    @property
    def sample_images(self) -> np.ndarray:
        """Image row of every sample, int64 ``(S,)``: samples with equal rows share one image."""
        return self._index["samples/image"]

    def __getitem__(self, i: int) -> Sample:
        return self.read(i)

    def _dataset(self, name):
        """An open dataset handle; the file is (re)opened on first use in each process."""
        datasets = self._ds
        if self._pid != os.getpid() or name not in datasets:
            with self._open_lock:
                if self._pid != os.getpid():
                    self._file, self._pid, self._ds = h5py.File(self.path, "r"), os.getpid(), {}
                datasets = self._ds
                datasets.setdefault(name, self._file[name])
        return datasets[name]

    def raw(self, i: int) -> RawSample:
        """Sample ``i`` as stored (encoded image, encoded mask, arrays), without decoding.

        The bytes of the most recently read images are cached, so the samples of one image read them once.
        """
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        i = int(i) % n
        idx = self._index
        img, person = int(idx["samples/image"][i]), idx["samples/person"][i]
        p0, pn = idx["images/people"][img]
        height, width = idx["images/size"][img]
        keypoints = self._dataset("people/keypoints")[p0:p0 + pn]
        order = [person] + [j for j in range(pn) if j != person]
        encoded, mask = self._image_bytes(img)
        return RawSample(
            encoded=encoded, mask=mask, height=int(height), width=int(width), keypoints=keypoints[order],
            center=idx["samples/center"][i].copy(), scale=float(idx["samples/scale"][i]),
            image_id=int(idx["samples/image_id"][i]), index=i, image_row=img)

    def _read_image_bytes(self, img: int) -> tuple:
        (e0, en), (m0, mn) = self._index["images/encoded_range"][img], self._index["images/mask_range"][img]
        return (self._dataset("images/encoded")[e0:e0 + en].tobytes(),
                self._dataset("images/masks")[m0:m0 + mn].tobytes() if mn else b"")

    def read(self, i: int, reduce: int = 1) -> Sample:
        """Sample ``i`` decoded at 1/reduce (1, 2, 4 or 8); see :func:`decode_sample`."""
        return decode_sample(self.raw(i), reduce)

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid, self._ds = None, None, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_file=None, _pid=None, _ds={}, _open_lock=None, _image_bytes=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_handles()
