"""Flip test-time augmentation: un-mirroring maps predicted on a horizontally mirrored input (both methods)."""
from __future__ import annotations

import numpy as np


def flip_back(maps, channel_perm, shift: int = 0) -> np.ndarray:
    """Un-flip maps predicted on a mirrored input: reverse the width axis, swap left/right channels, shift.

    With the pixel-centre convention of ``simplepose.pose`` the mirror of input pixel ``x`` is ``W - 1 - x``
    and the centre of cell ``j`` is ``s j + (s - 1) / 2``; its mirror ``s (w - 1 - j) + (s - 1) / 2`` is
    exactly the centre of cell ``w - 1 - j`` whenever ``W = s w``, so reversing the columns is exact and
    the right ``shift`` is 0. The published top-down code put cell ``j`` at pixel ``s j``, whose mirror is
    cell ``w - 1 - j + (s - 1) / s``, hence its one-column shift (``shift=1``: column ``j`` takes column
    ``j - 1``, column 0 keeps its value).

    Args:
        maps: channels-last maps, any leading axes.
        channel_perm: ``flipped[..., c] = maps[..., perm[c]]`` (``Skeleton.keypoint_flip``,
            ``keypoint_channel_flip`` or ``limb_flip``).
        shift: columns to move the result right (see above).

    Shapes: ``(..., h, w, C)`` -> ``(..., h, w, C)``.
    """
    out = np.asarray(maps)[..., ::-1, :][..., np.asarray(channel_perm)]
    if shift:
        out = out.copy()
        out[..., shift:, :] = out[..., :-shift, :].copy()
    return np.ascontiguousarray(out)
