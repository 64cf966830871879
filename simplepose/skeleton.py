"""Keypoints, limbs, flip permutations and OKS sigmas: the one source of channel counts and orders."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

#: COCO's 17 keypoint names, in COCO's order.
COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

#: COCO's OKS sigmas, in COCO's order (pycocotools' values).
COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)

#: COCO's own skeleton (drawing lines), 0-indexed, in COCO keypoint order.
COCO_SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)

#: A standing person facing the camera, COCO order, (x, y) in units of body height, y down, head top at 0.
#: The person's left side is at positive x (image right), as seen by a camera in front of them.
UPRIGHT_POSE = np.array([
    (0.000, 0.070), (0.025, 0.055), (-0.025, 0.055), (0.050, 0.065), (-0.050, 0.065),
    (0.110, 0.190), (-0.110, 0.190), (0.140, 0.350), (-0.140, 0.350),
    (0.150, 0.490), (-0.150, 0.490), (0.070, 0.520), (-0.070, 0.520),
    (0.075, 0.740), (-0.075, 0.740), (0.080, 0.950), (-0.080, 0.950),
], dtype=np.float32)

_SEED_ORDER = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
_SEED_LIMBS_24 = tuple(zip(
    (1, 1, 1, 1, 1, 0, 0, 14, 15, 1, 2, 3, 1, 5, 6, 1, 8, 9, 1, 11, 12, 8, 2, 5),
    (0, 14, 15, 16, 17, 14, 15, 16, 17, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 11, 16, 17),
))
_SEED_LIMBS_30 = tuple(zip(
    (1, 1, 1, 1, 1, 0, 0, 14, 15, 1, 2, 3, 1, 5, 6, 1, 8, 9, 1, 11, 12, 0, 0, 2, 8, 5, 11, 16, 17, 8),
    (0, 14, 15, 16, 17, 14, 15, 16, 17, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 2, 5, 8, 12, 11, 9, 2, 5, 11),
))

#: ``coco18_limbs30`` plus redundant links (shoulder-wrist, hip-ankle, shoulder-shoulder, elbow-hip,
#: ear-ear, eye-shoulder) so that people with unlabelled or undetected middle joints stay connected.
_SEED_LIMBS_40 = _SEED_LIMBS_30 + (
    (2, 4), (5, 7), (8, 10), (11, 13), (2, 5), (3, 8), (6, 11), (16, 17), (14, 2), (15, 5))


_ANATOMICAL = frozenset(frozenset(pair) for pair in (
    ("nose", "neck"), ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"),
    ("right_eye", "right_ear"), ("neck", "left_shoulder"), ("neck", "right_shoulder"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("right_shoulder", "right_elbow"),
    ("right_elbow", "right_wrist"), ("neck", "left_hip"), ("neck", "right_hip"), ("left_hip", "right_hip"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"),
    ("right_knee", "right_ankle"), ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("left_shoulder", "right_shoulder"), ("left_eye", "right_eye"), ("left_ear", "left_shoulder"),
    ("right_ear", "right_shoulder"),
))


def _flip_name(name: str) -> str:
    for a, b in (("left_", "right_"), ("right_", "left_")):
        if name.startswith(a):
            return b + name[len(a):]
    return name


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """Keypoint and limb layout of a model's channels.

    Args:
        name: registry name.
        keypoints: keypoint names; left/right partners are named ``left_*`` / ``right_*``.
        limbs: 0-indexed (from, to) keypoint pairs; the order is the limb channel order and the
            order in which the grouper processes limbs.
        midpoints: ``{keypoint name: (COCO name a, COCO name b)}`` for keypoints synthesised as the
            midpoint of two COCO keypoints (the neck). Every other name must be a COCO keypoint.

    Channel layout (design decision 3): the keypoint branch has ``num_keypoints + 1`` channels
    (keypoints, then one background), the limb branch ``num_limbs`` channels.
    """

    name: str
    keypoints: tuple[str, ...]
    limbs: tuple[tuple[int, int], ...]
    midpoints: tuple[tuple[str, tuple[str, str]], ...] = ()

    def __post_init__(self):
        derived = dict(self.midpoints)
        for kp in self.keypoints:
            if kp not in COCO_KEYPOINTS and kp not in derived:
                raise ValueError(f"skeleton {self.name!r}: keypoint {kp!r} is neither COCO nor derived")
            if _flip_name(kp) not in self.keypoints:
                raise ValueError(f"skeleton {self.name!r}: {kp!r} has no mirror partner")
        if len(set(self.keypoints)) != len(self.keypoints):
            raise ValueError(f"skeleton {self.name!r}: duplicate keypoint names")
        for a, b in self.limbs:
            if not (0 <= a < len(self.keypoints) and 0 <= b < len(self.keypoints)) or a == b:
                raise ValueError(f"skeleton {self.name!r}: bad limb {(a, b)}")
        if len(set(frozenset(limb) for limb in self.limbs)) != len(self.limbs):
            raise ValueError(f"skeleton {self.name!r}: duplicate limbs")
        self.limb_flip  # noqa: B018  (fails early if a limb has no mirror image)

    # === Counts ===
    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)

    @property
    def num_limbs(self) -> int:
        return len(self.limbs)

    @property
    def num_keypoint_channels(self) -> int:
        """Keypoints plus one background channel."""
        return len(self.keypoints) + 1

    @functools.cached_property
    def limb_array(self) -> np.ndarray:
        """``limbs`` as a read-only ``(L, 2)`` int64 array (what the decoder's kernels take)."""
        out = np.array(self.limbs, dtype=np.int64).reshape(-1, 2)
        out.flags.writeable = False
        return out

    # === Flip permutations (derived from names, never typed) ===
    @functools.cached_property
    def keypoint_flip(self) -> np.ndarray:
        """``flipped[..., i] = original[..., perm[i]]`` after a horizontal mirror. An involution."""
        return np.array([self.keypoints.index(_flip_name(k)) for k in self.keypoints], dtype=np.int64)

    @functools.cached_property
    def keypoint_channel_flip(self) -> np.ndarray:
        """Keypoint flip extended with the background channel, which maps to itself."""
        return np.append(self.keypoint_flip, self.num_keypoints)

    @functools.cached_property
    def limb_flip(self) -> np.ndarray:
        """Limb channel permutation under a horizontal mirror. Limb maps are undirected."""
        index = {frozenset(limb): k for k, limb in enumerate(self.limbs)}
        perm = []
        for a, b in self.limbs:
            mirrored = frozenset((int(self.keypoint_flip[a]), int(self.keypoint_flip[b])))
            if mirrored not in index:
                raise ValueError(f"skeleton {self.name!r}: limb {(a, b)} has no mirror limb")
            perm.append(index[mirrored])
        return np.array(perm, dtype=np.int64)

    # === COCO mapping ===
    @functools.cached_property
    def coco_index(self) -> np.ndarray:
        """For each internal keypoint its COCO index, or -1 for a synthesised one."""
        return np.array([COCO_KEYPOINTS.index(k) if k in COCO_KEYPOINTS else -1 for k in self.keypoints])

    @functools.cached_property
    def sigmas(self) -> np.ndarray:
        """OKS sigmas per internal keypoint; a midpoint keypoint takes the mean of its two ends."""
        derived = dict(self.midpoints)
        out = []
        for k in self.keypoints:
            if k in derived:
                a, b = derived[k]
                out.append(0.5 * (COCO_SIGMAS[COCO_KEYPOINTS.index(a)] + COCO_SIGMAS[COCO_KEYPOINTS.index(b)]))
            else:
                out.append(COCO_SIGMAS[COCO_KEYPOINTS.index(k)])
        return np.array(out, dtype=np.float32)

    @functools.cached_property
    def reach(self) -> np.ndarray:
        """How far apart every two keypoints can be, in body heights: the shortest chain of anatomical links
        (bones, ``_ANATOMICAL``) between them, each as long as in the upright figure ``UPRIGHT_POSE``.

        However a body bends, two of its keypoints are never farther apart than the bones that join them.

        Shapes: -> ``(K, K)`` float64, 0 on the diagonal, inf between keypoints no chain joins.
        """
        derived = dict(self.midpoints)

        def position(name):
            if name in derived:
                a, b = derived[name]
                return 0.5 * (UPRIGHT_POSE[COCO_KEYPOINTS.index(a)] + UPRIGHT_POSE[COCO_KEYPOINTS.index(b)])
            return UPRIGHT_POSE[COCO_KEYPOINTS.index(name)]

        k = self.num_keypoints
        xy = np.array([position(n) for n in self.keypoints], np.float64)
        out = np.full((k, k), np.inf)
        np.fill_diagonal(out, 0.0)
        for a in range(k):
            for b in range(k):
                if frozenset((self.keypoints[a], self.keypoints[b])) in _ANATOMICAL:
                    out[a, b] = np.hypot(*(xy[a] - xy[b]))
        for m in range(k):  # Floyd-Warshall
            out = np.minimum(out, out[:, m:m + 1] + out[m:m + 1, :])
        return out

    def from_coco(self, keypoints) -> np.ndarray:
        """COCO-order keypoints to internal order, synthesising midpoint keypoints.

        A midpoint keypoint exists only when both of its ends are labelled (v > 0); its
        visibility is the smaller of theirs (occluded if either end is occluded).

        Shapes: ``(..., 17, 3)`` -> ``(..., K, 3)`` float32, ``[x, y, v]`` with COCO's v coding.
        """
        kp = np.asarray(keypoints, dtype=np.float32)
        if kp.shape[-2:] != (len(COCO_KEYPOINTS), 3):
            raise ValueError(f"expected (..., 17, 3) COCO keypoints, got {kp.shape}")
        out = np.zeros(kp.shape[:-2] + (self.num_keypoints, 3), dtype=np.float32)
        derived = dict(self.midpoints)
        for i, name in enumerate(self.keypoints):
            if name not in derived:
                out[..., i, :] = kp[..., COCO_KEYPOINTS.index(name), :]
                continue
            a = kp[..., COCO_KEYPOINTS.index(derived[name][0]), :]
            b = kp[..., COCO_KEYPOINTS.index(derived[name][1]), :]
            both = (a[..., 2] > 0) & (b[..., 2] > 0)
            out[..., i, :2] = np.where(both[..., None], 0.5 * (a[..., :2] + b[..., :2]), 0.0)
            out[..., i, 2] = np.where(both, np.minimum(a[..., 2], b[..., 2]), 0.0)
        return out

    def to_coco(self, keypoints) -> np.ndarray:
        """Internal-order keypoints to COCO's 17; synthesised keypoints are dropped, absent COCO ones are 0.

        Shapes: ``(..., K, 3)`` -> ``(..., 17, 3)`` float32.
        """
        kp = np.asarray(keypoints, dtype=np.float32)
        if kp.shape[-2:] != (self.num_keypoints, 3):
            raise ValueError(f"expected (..., {self.num_keypoints}, 3) keypoints, got {kp.shape}")
        out = np.zeros(kp.shape[:-2] + (len(COCO_KEYPOINTS), 3), dtype=np.float32)
        for i, c in enumerate(self.coco_index):
            if c >= 0:
                out[..., c, :] = kp[..., i, :]
        return out

    # === Serialisation (stored in full in every model's head contract) ===
    def to_dict(self) -> dict:
        """A JSON-friendly description from which :meth:`from_dict` rebuilds an equal skeleton."""
        return {"name": self.name, "keypoints": list(self.keypoints), "limbs": [list(limb) for limb in self.limbs],
                "midpoints": [[name, list(ends)] for name, ends in self.midpoints]}

    @classmethod
    def from_dict(cls, data: dict) -> "Skeleton":
        """The skeleton described by :meth:`to_dict`'s output; a malformed description is a ``ValueError``."""
        try:
            return cls(name=str(data["name"]), keypoints=tuple(str(k) for k in data["keypoints"]),
                       limbs=tuple((int(a), int(b)) for a, b in data["limbs"]),
                       midpoints=tuple((str(n), (str(a), str(b))) for n, (a, b) in data.get("midpoints", ())))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a skeleton description ({type(e).__name__}: {e})") from None

    @functools.cached_property
    def drawing_limbs(self) -> tuple[tuple[int, int], ...]:
        """Limbs to draw: the anatomical ones (bones and the face), not the redundant links.

        Skeletons whose limbs include none of the anatomical pairs (e.g. a custom one) draw every limb.
        """
        keep = tuple((a, b) for a, b in self.limbs
                     if frozenset((self.keypoints[a], self.keypoints[b])) in _ANATOMICAL)
        return keep or self.limbs


def _seed_skeleton(name, limbs):
    return Skeleton(name=name, keypoints=_SEED_ORDER, limbs=limbs,
                    midpoints=(("neck", ("right_shoulder", "left_shoulder")),))


#: Registry of named skeletons. ``coco18_limbs24`` is the published Simple Pose layout (spec section 1).
SKELETONS = {
    "coco18_limbs24": _seed_skeleton("coco18_limbs24", _SEED_LIMBS_24),
    "coco18_limbs30": _seed_skeleton("coco18_limbs30", _SEED_LIMBS_30),
    "coco18_limbs40": _seed_skeleton("coco18_limbs40", _SEED_LIMBS_40),
    "coco17": Skeleton(name="coco17", keypoints=COCO_KEYPOINTS, limbs=COCO_SKELETON),
}


def register_skeleton(skeleton: Skeleton) -> Skeleton:
    """Add a custom skeleton to :data:`SKELETONS` (then configs can name it); returns the registered object.

    Registering a skeleton equal to the one already under its name returns that one; a different skeleton
    under a taken name is a ``ValueError`` (a name must mean one channel layout).
    """
    known = SKELETONS.get(skeleton.name)
    if known is None:
        SKELETONS[skeleton.name] = skeleton
        return skeleton
    if known != skeleton:
        raise ValueError(f"skeleton {skeleton.name!r} is already registered with other keypoints or limbs")
    return known


def get_skeleton(name: str) -> Skeleton:
    """Look a skeleton up by name; unknown names are an error listing the known ones."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise ValueError(f"unknown skeleton {name!r}; known: {', '.join(sorted(SKELETONS))}") from None
