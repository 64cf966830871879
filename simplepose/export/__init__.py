"""Exporting a trained model to SavedModel, ONNX, LiteRT or OpenVINO with its head contract (design decision 13).

Export goes through Keras' own exporter (``keras.Model.export``) on a flat inference network: a uint8 BGR
image batch in, the maps of the head contract out (``{"keypoints", "limbs"}`` of the last stage, or
``{"heatmaps"}``), batch, height and width dynamic where the model allows it. Every artifact carries the
contract (ONNX ``metadata_props``, LiteRT model metadata, a JSON file in the SavedModel's ``assets``, the
OpenVINO IR's ``rt_info``), so ``Predictor.from_file`` uses it like the ``.keras`` file. Files are written
under a temporary name and renamed into place: nothing partial is left under the final name.

Example:
    >>> export_model("runs/qs/model.keras", "onnx", "runs/qs/model.onnx")
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time

from simplepose import atomic
from simplepose.errors import ConfigError, ModelFileError, SimplePoseError
from simplepose.runtime import CONTRACT_KEY, SAVED_MODEL_CONTRACT

LOG = logging.getLogger(__name__)

#: Export formats and their reduced precisions (float32 is every format's default).
PRECISIONS = {"saved_model": ("float32",), "onnx": ("float32", "int8"), "litert": ("float32", "float16", "int8"),
              "openvino": ("float32", "bfloat16")}
FORMATS = tuple(PRECISIONS)
#: File extension of each format ("" = a folder; OpenVINO writes its weights beside, as ``.bin``).
EXTENSIONS = {"saved_model": "", "onnx": ".onnx", "litert": ".tflite", "openvino": ".xml"}
#: Keras' names of our formats.
_KERAS_FORMATS = {"saved_model": "tf_saved_model", "onnx": "onnx", "litert": "litert", "openvino": "openvino"}


class ExportError(SimplePoseError, RuntimeError):
    """A conversion failed; the message says which format and what the converter said."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote: ``path``, ``format``, ``precision``, ``bytes`` on disk, ``seconds``."""

    path: str
    format: str
    precision: str
    bytes: int
    seconds: float


def inference_model(model, meta):
    """The flat inference network of a trained model: uint8 BGR ``(B, H, W, 3)`` -> ``{name: maps}``.

    The maps are the contract's ``outputs`` (taken from ``meta.output_key``'s entry of the model's outputs
    when it has one); the uint8 input is cast to float32 in the graph, as training batches are.
    """
    import keras

    shape = (None, None, 3) if meta.input_size is None else tuple(meta.input_size) + (3,)
    image = keras.Input(shape, dtype="uint8", name="image")
    outputs = model(keras.ops.cast(image, "float32"), training=False)
    if meta.output_key is not None:
        outputs = outputs[meta.output_key]
    return keras.Model(image, {name: outputs[name] for name, _ in meta.outputs}, name=f"{model.name}_inference")


def export_model(model, fmt: str, out, *, precision: str = "float32", calibration=None) -> ExportResult:
    """Export a trained model (a ``.keras`` path or a Keras model carrying its contract) to ``fmt`` at ``out``.

    Args:
        fmt: ``saved_model`` (a folder), ``onnx``, ``litert`` (``.tflite``) or ``openvino`` (``.xml``, its
            weights in the ``.bin`` beside it).
        precision: ``float32``; ``float16`` or ``int8`` (dynamic-range: int8 weights) for LiteRT; ``int8``
            for ONNX (static QDQ quantisation of weights and activations, calibrated on ``calibration``);
            ``bfloat16`` for OpenVINO (float32 weights, bfloat16 arithmetic on CPUs that have it; float32
            exports ask OpenVINO for float32 arithmetic, which it would otherwise lower on such CPUs).
        calibration: for ONNX int8, network input batches (uint8 ``(1, H, W, 3)``) to calibrate activation
            ranges on; see :func:`calibration_batches`.

    Raises:
        ConfigError: unknown format or precision, int8 ONNX without calibration data.
        ModelFileError: the model cannot be loaded or carries no contract.
        ExportError: the converter failed (its message says where).
    """
    if fmt not in PRECISIONS:
        raise ConfigError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if precision not in PRECISIONS[fmt]:
        raise ConfigError(f"{fmt} export supports precision {', '.join(PRECISIONS[fmt])}, not {precision!r}")
    if fmt == "onnx" and precision == "int8" and not calibration:
        raise ConfigError("int8 ONNX export needs calibration images (--calibration DIR): activation ranges are "
                          "measured on inputs like those the model will see")
    model, meta = _load(model)
    out = os.fspath(out)
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise ConfigError(f"{out}: folder {folder} does not exist")
    start = time.perf_counter()
    atomic.clean_stale(out)
    tmp = tempfile.mkdtemp(dir=folder, prefix=f"{atomic.TEMP_PREFIX}{os.getpid()}-", suffix=f"-{os.path.basename(out)}")
    try:
        staged = os.path.join(tmp, "model" + EXTENSIONS[fmt])
        _convert(inference_model(model, meta), meta, fmt, staged, precision)
        if fmt == "onnx" and precision == "int8":
            staged = _quantize_onnx(staged, os.path.join(tmp, "int8.onnx"), calibration)
        staged = _attach_contract(fmt, staged, meta, precision)
        _move_into_place(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = _size(out)
    result = ExportResult(out, fmt, precision, size, time.perf_counter() - start)
    LOG.info("exported %s (%s, %s): %.1f MB in %.1f s", out, fmt, precision, size / 1e6, result.seconds)
    return result


def calibration_batches(model, image_paths, *, limit: int = 32, config=None, overrides=()):
    """The network inputs the model's predictor feeds for ``image_paths`` (its own resizing, padding, crops).

    Returns a list of uint8 batches of one image each, at most ``limit``.
    """
    import numpy as np

    from simplepose.data.codecs import read_image
    from simplepose.predictor import resolve_contract
    from simplepose.runtime import Runner

    model, meta = _load(model)
    batches = []

    class Capture(Runner):
        """Runs the Keras network and keeps each input image (as the exported network will receive it)."""

        output_names = tuple(name for name, _ in meta.outputs)

        def __call__(self, images):
            batches.extend(np.ascontiguousarray(images[i:i + 1]) for i in range(len(images)))
            out = model(images, training=False)  # eager: calibration images differ in size, no retracing
            out = out[meta.output_key] if meta.output_key is not None else out
            return {name: np.asarray(out[name]) for name in self.output_names}

    meta, cfg, method = resolve_contract(model, meta, config=config, overrides=overrides)
    predictor = method.make_predictor(Capture(), meta, cfg)
    for path in image_paths:
        if len(batches) >= limit:
            break
        predictor.predict(read_image(path))
    if not batches:
        raise ConfigError("no calibration inputs: give at least one readable image")
    return batches[:limit]


def _load(model):
    from simplepose.headmeta import HeadMeta

    if isinstance(model, (str, os.PathLike)):
        from simplepose.models.loading import load_model

        path, model = os.fspath(model), load_model(model)
    else:
        path = getattr(model, "name", "model")
    meta = HeadMeta.of_model(model)
    if meta is None:
        raise ModelFileError(f"{path}: carries no head contract (saved before simplepose 0.2): load it with its "
                             "config (Predictor.from_file(..., config=...)), save it again, then export")
    return model, meta


def _convert(flat, meta, fmt: str, path: str, precision: str) -> None:
    import keras

    shape = (None, None, None, 3) if meta.input_size is None else (None,) + tuple(meta.input_size) + (3,)
    spec = [keras.InputSpec(shape=shape, dtype="uint8")]
    kwargs = {}
    if fmt == "litert" and precision != "float32":
        import tensorflow as tf

        kwargs["optimizations"] = [tf.lite.Optimize.DEFAULT]  # int8 weights (dynamic range)
        if precision == "float16":
            kwargs["target_spec"] = {"supported_types": [tf.float16]}
    if fmt == "onnx":
        _require("tf2onnx", "onnx")
        _require("onnx", "onnx")
    if fmt == "openvino":
        _require("openvino", "openvino")
    try:
        with native_dilated_convolutions():
            flat.export(path, format=_KERAS_FORMATS[fmt], verbose=False, input_signature=spec, **kwargs)
    except Exception as e:  # converters raise anything: report it in one line
        raise ExportError(f"export to {fmt} failed: {type(e).__name__}: {_first_line(e)}") from None


@contextlib.contextmanager
def native_dilated_convolutions():
    """While tracing for export, 2-D dilated convolutions become one ``Conv2D`` op with ``dilations``.

    Keras' TensorFlow backend calls ``tf.nn.convolution``, which wraps a dilated convolution in
    ``SpaceToBatchND`` / ``BatchToSpaceND``; with dynamic height and width tf2onnx turns each of those into
    ~60 shape, slice and concat ops (3,277 nodes for model3, 44 dilated convs) that ONNX Runtime runs
    slowly. ``tf.nn.conv2d(..., dilations=d)`` computes the same (exactly, checked by the export parity
    tests) and converts to one ONNX ``Conv``. Other backends and other convolutions are left alone.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf
    from keras.src.backend.tensorflow import nn as tf_nn

    original = tf_nn.conv

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        rate = (dilation_rate,) * 2 if isinstance(dilation_rate, int) else tuple(dilation_rate)
        stride = (strides,) * 2 if isinstance(strides, int) else tuple(strides)
        plain = len(inputs.shape) == 4 and len(rate) == 2 and max(rate) > 1 and inputs.shape[-1] == kernel.shape[-2]
        plain = plain and (data_format or keras.config.image_data_format()) == "channels_last" and stride == (1, 1)
        if plain and padding.lower() == "valid":
            return tf.nn.conv2d(inputs, kernel, 1, "VALID", dilations=list(rate))
        if plain and padding.lower() == "same" and all(k % 2 for k in kernel.shape[:2]):
            # explicit symmetric pads: ONNX Runtime has no dilated convolution with auto_pad SAME
            pads = [[0, 0]] + [[(k - 1) * d // 2] * 2 for k, d in zip(kernel.shape[:2], rate)] + [[0, 0]]
            return tf.nn.conv2d(inputs, kernel, 1, pads, dilations=list(rate))
        return original(inputs, kernel, strides, padding, data_format, dilation_rate)

    tf_nn.conv = conv
    try:
        yield
    finally:
        tf_nn.conv = original


def _quantize_onnx(src: str, dst: str, batches) -> str:
    """Static QDQ int8 quantisation (per-channel int8 weights, int8 activations) calibrated on ``batches``."""
    _require("onnxruntime", "onnx")
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, name):
            self.items = iter([{name: b} for b in batches])

        def get_next(self):
            return next(self.items, None)

    import onnxruntime as ort

    name = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).get_inputs()[0].name
    prepared = os.path.splitext(src)[0] + "_prep.onnx"  # beside src (its folder name may hold ".onnx" too)
    try:
        quant_pre_process(src, prepared, skip_symbolic_shape=True)
        quantize_static(prepared, dst, Reader(name), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"int8 quantisation of the ONNX model failed: {type(e).__name__}: {_first_line(e)}") \
            from None
    return dst


def _attach_contract(fmt: str, path: str, meta, precision: str = "float32") -> str:
    """Store the head contract (and, for OpenVINO, the arithmetic precision) in the artifact; returns its path."""
    text = meta.to_json()
    if fmt == "openvino":
        import openvino as ov

        from simplepose.runtime import OPENVINO_KEYS

        model = ov.Core().read_model(path)
        model.set_rt_info(text, list(OPENVINO_KEYS["contract"]))
        model.set_rt_info(precision, list(OPENVINO_KEYS["precision"]))
        final = path[:-4] + "_contract.xml"  # a new file: the read model maps the old weights into memory
        ov.save_model(model, final, compress_to_fp16=False)
        del model
        return final
    if fmt == "saved_model":
        os.makedirs(os.path.join(path, "assets"), exist_ok=True)
        atomic.write_text(os.path.join(path, SAVED_MODEL_CONTRACT), text)
    elif fmt == "onnx":
        import onnx

        model = onnx.load(path)
        entry = model.metadata_props.add()
        entry.key, entry.value = CONTRACT_KEY, text
        onnx.save(model, path)
    else:
        with open(path, "rb") as f:
            data = f.read()
        atomic.write_bytes(path, add_litert_metadata(data, CONTRACT_KEY, text.encode()))
    return path


def add_litert_metadata(data: bytes, name: str, value: bytes) -> bytes:
    """A LiteRT flatbuffer with one more metadata entry ``name`` holding ``value``."""
    import flatbuffers

    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # TensorFlow ships the same schema
        from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    buffer = schema.BufferT()
    buffer.data = list(value)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    builder = flatbuffers.Builder(len(data) + len(value) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _move_into_place(staged: str, out: str) -> None:
    """Rename ``staged`` to ``out``; an existing ``out`` of the same kind is replaced, whole.

    An OpenVINO model is two files: the weights (``.bin``) are renamed first, the ``.xml`` that names them last.
    """
    if staged.endswith(".xml"):
        if not out.endswith(".xml"):
            raise ConfigError(f"{out}: an OpenVINO model is written as NAME.xml (its weights go to NAME.bin)")
        os.replace(staged[:-4] + ".bin", out[:-4] + ".bin")
    if os.path.isdir(staged):
        if os.path.exists(out) and not os.path.isdir(out):
            raise ConfigError(f"{out}: a file is in the way of the SavedModel folder")
        if os.path.isdir(out):
            old = staged + ".old"
            os.replace(out, old)
            os.replace(staged, out)
            shutil.rmtree(old, ignore_errors=True)
            return
    elif os.path.isdir(out):
        raise ConfigError(f"{out}: a folder is in the way of the exported file")
    os.replace(staged, out)


def _size(path: str) -> int:
    if path.endswith(".xml") and os.path.isfile(path[:-4] + ".bin"):
        return os.path.getsize(path) + os.path.getsize(path[:-4] + ".bin")
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def _require(module: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ExportError(f"exporting to {extra} needs {module}, which is not installed "
                          "(pip install 'simplepose[export]')")


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
