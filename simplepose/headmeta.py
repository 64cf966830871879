"""The head contract: what a trained model needs to be used correctly, stored inside the model file.

Design decision 11 (OpenPifPaf's headmeta idea): a small frozen, JSON-serialisable object that training
writes into the model's ``get_config`` and every exported artifact, and that the Predictor, evaluation and
the demo read. A model file moved alone, or renamed, is then used exactly as in its run folder.
"""
from __future__ import annotations

import dataclasses
import json

from simplepose.skeleton import Skeleton

#: Version of the stored form; readers refuse newer versions they cannot interpret.
FORMAT_VERSION = 1

#: How images enter a network, by name (stored in the contract; exporters and foreign runtimes read it).
PREPROCESSING = {
    "bgr_0_255": "BGR channel order, values 0..255 as uint8 or float32; the network subtracts its mean in-graph",
}


@dataclasses.dataclass(frozen=True)
class HeadMeta:
    """What a trained model needs to be used correctly.

    Attributes:
        method: name of the method (``simplepose.methods``) that trains, predicts and evaluates it.
        architecture: the network layout (``model.architecture`` of its config).
        skeleton: keypoint and limb layout of the output channels, stored in full (custom skeletons survive).
        stride: input pixels per output map cell.
        input_size: fixed network input ``(height, width)``, or None when any size works whose sides are
            multiples of ``input_multiple`` (fully convolutional networks).
        input_multiple: input sides must be multiples of this.
        preprocessing: a key of :data:`PREPROCESSING`: how images are fed.
        outputs: the maps a predictor reads, in order, as ``(name, channels)``.
        output_key: the model output entry that holds them (``"stage_3"``); None: the top-level outputs.
        settings: the run's default inference settings as a partial config tree ``{section: {key: value}}``
            (scales, flip, decoder thresholds, ...); flags and ``--set`` override them.
        version: :data:`FORMAT_VERSION` of the stored form.
    """

    method: str
    architecture: str
    skeleton: Skeleton
    stride: int
    outputs: tuple
    input_multiple: int
    input_size: tuple | None = None
    output_key: str | None = None
    preprocessing: str = "bgr_0_255"
    settings: dict = dataclasses.field(default_factory=dict)
    version: int = FORMAT_VERSION

    def __post_init__(self):
        if self.preprocessing not in PREPROCESSING:
            raise ValueError(f"unknown preprocessing {self.preprocessing!r}; known: {', '.join(PREPROCESSING)}")
        if self.stride < 1 or self.input_multiple < 1:
            raise ValueError(f"stride {self.stride} and input_multiple {self.input_multiple} must be >= 1")

    # === Channels ===
    def channels(self, name: str) -> int:
        """Channel count of output map ``name``."""
        return dict(self.outputs)[name]

    # === Serialisation ===
    def to_dict(self) -> dict:
        """A JSON-friendly dict (what model files and exported artifacts store)."""
        return {"version": self.version, "method": self.method, "architecture": self.architecture,
                "skeleton": self.skeleton.to_dict(), "stride": self.stride,
                "input_size": None if self.input_size is None else list(self.input_size),
                "input_multiple": self.input_multiple, "preprocessing": self.preprocessing,
                "outputs": [[name, channels] for name, channels in self.outputs], "output_key": self.output_key,
                "settings": json.loads(json.dumps(self.settings))}

    @classmethod
    def from_dict(cls, data) -> "HeadMeta":
        """The contract stored by :meth:`to_dict`.

        Raises:
            ValueError: not a head contract, or one written by a newer simplepose (the message says which).
        """
        if not isinstance(data, dict):
            raise ValueError(f"a head contract is a JSON object, got {type(data).__name__}")
        version = data.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"head contract version {version!r} is not readable by this simplepose "
                             f"(reads up to {FORMAT_VERSION}); upgrade simplepose")
        try:
            size = data.get("input_size")
            return cls(method=str(data["method"]), architecture=str(data["architecture"]),
                       skeleton=Skeleton.from_dict(data["skeleton"]), stride=int(data["stride"]),
                       input_size=None if size is None else tuple(int(v) for v in size),
                       input_multiple=int(data["input_multiple"]), preprocessing=str(data["preprocessing"]),
                       outputs=tuple((str(n), int(c)) for n, c in data["outputs"]),
                       output_key=data.get("output_key"), settings=dict(data.get("settings") or {}),
                       version=version)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed head contract ({type(e).__name__}: {e})") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text) -> "HeadMeta":
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"head contract is not valid JSON ({e})") from None
        return cls.from_dict(data)

    @classmethod
    def coerce(cls, value) -> "HeadMeta | None":
        """A ``HeadMeta`` from itself, its dict or JSON form; None stays None."""
        if value is None or isinstance(value, cls):
            return value
        return cls.from_json(value) if isinstance(value, str) else cls.from_dict(dict(value))

    @classmethod
    def of_model(cls, model) -> "HeadMeta | None":
        """The contract a model carries (its ``head_meta`` attribute, as saved in its config), or None."""
        return cls.coerce(getattr(model, "head_meta", None))
