"""Decoding network maps into people: peaks, limb scoring, greedy grouping (numba kernels)."""
