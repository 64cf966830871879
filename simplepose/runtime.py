"""Running a network in any of its saved forms: Keras, TensorFlow SavedModel, ONNX Runtime, LiteRT.

A :class:`Runner` maps a uint8 BGR batch ``(B, H, W, 3)`` to the maps of the model's head contract,
``{name: (B, h, w, C) float32}``. :func:`open_model` opens a model file of any format with the contract it
carries. ONNX and LiteRT files run with their runtime, numpy and OpenCV only: this module imports neither
TensorFlow nor Keras unless the file needs them.
"""
from __future__ import annotations

import abc
import logging
import os
import sys

import numpy as np

from simplepose.errors import ModelFileError
from simplepose.headmeta import HeadMeta

LOG = logging.getLogger(__name__)

#: Key of the head contract in ONNX ``metadata_props`` and in LiteRT model metadata.
CONTRACT_KEY = "simplepose.head_meta"
#: File of the head contract inside an exported SavedModel folder.
SAVED_MODEL_CONTRACT = os.path.join("assets", "simplepose_head_meta.json")
#: Where an OpenVINO model keeps the contract and the arithmetic precision chosen at export (``rt_info`` paths).
OPENVINO_KEYS = {"contract": ("simplepose", "head_meta"), "precision": ("simplepose", "inference_precision")}
#: Formats by what a path looks like; the extra that installs each runtime.
FORMATS = {"keras": ".keras", "saved_model": "folder", "onnx": ".onnx", "litert": ".tflite", "openvino": ".xml"}
EXTRAS = {"onnx": ("onnxruntime", "onnx"), "litert": ("ai_edge_litert", "litert"), "openvino": ("openvino", "openvino")}


class Runner(abc.ABC):
    """A network in one format: ``(B, H, W, 3)`` uint8 BGR -> ``{output name: (B, h, w, C) float32}``.

    Attributes:
        format: a key of :data:`FORMATS`.
        meta: the head contract the file carries (None when it has none).
        output_names: names of the maps it returns.
    """

    format = ""
    meta = None
    output_names: tuple = ()

    @abc.abstractmethod
    def __call__(self, images: np.ndarray) -> dict:
        """Run a batch."""


class KerasRunner(Runner):
    """A Keras model (or any callable with the same outputs), traced once per input shape under TensorFlow.

    Args:
        model: returns ``{name: maps}``, or a dict of such dicts (``output_key`` chooses one).
        output_key: the entry of the outputs that holds the maps (e.g. ``stage_3``); None: the outputs.
    """

    format = "keras"

    def __init__(self, model, output_key=None):
        self.model, self.output_key = model, output_key
        self.meta = HeadMeta.of_model(model) if hasattr(model, "head_meta") else None
        self._call = self._make_call(model)

    @staticmethod
    def _make_call(model):
        """``model(x, training=False)`` as a ``tf.function`` under TensorFlow, traced once per padded shape.

        Callers pad inputs to shape buckets, so varied image sizes trace a few times only.
        ``reduce_retracing`` (unknown sizes) is not used: TensorFlow's dilated convolutions
        (SpaceToBatchND) then fail on some sizes.
        """
        keras = sys.modules.get("keras")  # not a Keras model unless Keras is loaded already
        if keras is not None and isinstance(model, keras.Model):
            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                _quiet_expected_retracing()
                return tf.function(lambda x: model(x, training=False))
            return model.predict_on_batch  # compiled (jit) on the other backends
        return lambda x: model(x, training=False)

    def __call__(self, images):
        out = self._call(images)
        if self.output_key is not None:
            out = out[self.output_key]
        return {name: value for name, value in out.items()}


class _ExpectedRetracing(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls ... triggered tf.function retracing" warning: a Keras
    runner traces once per padded input shape by design (images of several sizes), which is what it reports."""

    def filter(self, record):
        return "triggered tf.function retracing" not in record.getMessage()


def _quiet_expected_retracing() -> None:
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _ExpectedRetracing) for f in logger.filters):
        logger.addFilter(_ExpectedRetracing())


class SavedModelRunner(Runner):
    """A SavedModel folder written by ``simplepose.export`` (its ``serve`` endpoint); needs TensorFlow."""

    format = "saved_model"

    def __init__(self, path):
        tf = _import("tensorflow", "saved_model", path)
        self.path = os.fspath(path)
        self.module = tf.saved_model.load(self.path)
        self.serve = getattr(self.module, "serve", None)
        if self.serve is None:
            raise ModelFileError(f"{path}: this SavedModel has no 'serve' endpoint (export it with simplepose export)")
        contract = os.path.join(self.path, SAVED_MODEL_CONTRACT)
        self.meta = None
        if os.path.isfile(contract):
            with open(contract) as f:
                self.meta = _meta(path, f.read())
        functions = getattr(self.serve, "concrete_functions", ())
        outputs = functions[0].structured_outputs if functions else {}
        self.output_names = tuple(outputs) if isinstance(outputs, dict) else ()

    def __call__(self, images):
        return {name: np.asarray(value) for name, value in self.serve(images).items()}


class OnnxRunner(Runner):
    """An ONNX file run by ONNX Runtime (CPU), with the contract from its ``metadata_props``.

    Args:
        threads: intra-op threads (0 = ONNX Runtime's default: one per physical core).
    """

    format = "onnx"

    def __init__(self, path, threads: int = 0):
        ort = _import("onnxruntime", "onnx", path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelFileError(f"{path}: not an ONNX model ONNX Runtime can load ({_first_line(e)})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        stored = self.session.get_modelmeta().custom_metadata_map.get(CONTRACT_KEY)
        self.meta = None if stored is None else _meta(path, stored)

    def __call__(self, images):
        return dict(zip(self.output_names, self.session.run(None, {self.input_name: images})))


class LiteRTRunner(Runner):
    """A LiteRT (``.tflite``) file run by the LiteRT interpreter, with the contract from its model metadata.

    Args:
        threads: interpreter threads (None: one per CPU core).
    """

    format = "litert"

    def __init__(self, path, threads=None):
        threads = threads or os.cpu_count() or 1
        _import("ai_edge_litert", "litert", path)
        from ai_edge_litert.interpreter import Interpreter

        with open(path, "rb") as f:
            data = f.read()
        try:
            self.interpreter = Interpreter(model_content=data, num_threads=threads)
            self.runner = self.interpreter.get_signature_runner()
        except Exception as e:  # the interpreter raises ValueError/RuntimeError on foreign files
            raise ModelFileError(f"{path}: not a LiteRT model the interpreter can load ({_first_line(e)})") from None
        (self.input_name,) = self.runner.get_input_details()
        self.output_names = tuple(self.runner.get_output_details())
        stored = litert_metadata(data).get(CONTRACT_KEY)
        self.meta = None if stored is None else _meta(path, stored.decode())

    def __call__(self, images):
        return self.runner(**{self.input_name: np.ascontiguousarray(images)})


class OpenVINORunner(Runner):
    """An OpenVINO model (``.xml`` + ``.bin``) compiled for the CPU, with the contract from its ``rt_info``.

    The arithmetic precision is the one chosen at export (``float32`` unless exported as ``bfloat16``):
    OpenVINO would otherwise pick bfloat16 by itself on CPUs that have it.
    """

    format = "openvino"

    def __init__(self, path):
        ov = _import("openvino", "openvino", path)
        core = ov.Core()
        try:
            model = core.read_model(os.fspath(path))
        except Exception as e:  # noqa: BLE001  (OpenVINO raises RuntimeError subclasses)
            raise ModelFileError(f"{path}: not an OpenVINO model ({_first_line(e)})") from None
        keys = {name: list(key) for name, key in OPENVINO_KEYS.items()}
        self.meta = _meta(path, model.get_rt_info(keys["contract"]).astype(str)) \
            if model.has_rt_info(keys["contract"]) else None
        precision = model.get_rt_info(keys["precision"]).astype(str) if model.has_rt_info(keys["precision"]) \
            else "float32"
        hint = {"float32": "f32", "bfloat16": "bf16"}.get(precision, "f32")
        self.compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint})
        self.request = self.compiled.create_infer_request()
        self.output_names = tuple(o.get_any_name() for o in self.compiled.outputs)

    def __call__(self, images):
        result = self.request.infer({0: np.ascontiguousarray(images)})
        return {o.get_any_name(): np.asarray(result[o]) for o in self.compiled.outputs}


def litert_metadata(data: bytes) -> dict:
    """``{name: bytes}`` of the metadata entries of a LiteRT flatbuffer."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    out = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buffer = model.Buffers(entry.Buffer())
        out[entry.Name().decode()] = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
    return out


def model_format(path) -> str:
    """The format of a model path, by its extension (a folder is a SavedModel); unknown ones are an error."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return "saved_model"
        raise ModelFileError(f"{path}: a folder, but not a SavedModel (no saved_model.pb)")
    for name, ending in FORMATS.items():
        if ending.startswith(".") and path.lower().endswith(ending):
            return name
    raise ModelFileError(f"{path}: unknown model format; expected a .keras, .onnx, .tflite or OpenVINO .xml file or "
                         "a SavedModel folder")


def open_model(path):
    """A model file of any format: ``(model, meta)``.

    ``model`` is a Keras model for ``.keras`` files and a :class:`Runner` otherwise; ``meta`` is the head
    contract it carries, or None.

    Raises:
        ModelFileError: missing or unreadable file, unknown format, runtime not installed.
    """
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: model file not found")
    fmt = model_format(path)
    if fmt == "keras":
        from simplepose.models.loading import load_model

        model = load_model(path)
        return model, _meta_of(path, model)
    runner = {"saved_model": SavedModelRunner, "onnx": OnnxRunner, "litert": LiteRTRunner,
              "openvino": OpenVINORunner}[fmt](path)
    return runner, runner.meta


def _meta_of(path, model):
    try:
        return HeadMeta.of_model(model)
    except ValueError as e:
        raise ModelFileError(f"{path}: {e}") from None


def _meta(path, text) -> HeadMeta:
    try:
        return HeadMeta.from_json(text)
    except ValueError as e:
        raise ModelFileError(f"{path}: {e}") from None


def _import(module: str, fmt: str, path):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS.get(fmt, (None, None))[1]
        hint = f"pip install 'simplepose[{extra}]'" if extra else f"install {module}"
        raise ModelFileError(f"{path}: running a {fmt} model needs {module}, which is not installed ({hint})") \
            from None


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
