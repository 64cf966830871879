"""Atomic writes: the target is replaced whole or not at all, and no temporary file is left behind."""
import json
import os

import pytest

from simplepose import atomic


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    atomic.write_text(target, "one")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic.write_text(target, "two")
    assert target.read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_json_round_trip_and_permissions(tmp_path):
    target = tmp_path / "m.json"
    atomic.write_json(target, {"AP": 0.5, "x": [1, 2]}, indent=1)
    assert json.loads(target.read_text()) == {"AP": 0.5, "x": [1, 2]}
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
