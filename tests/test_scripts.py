"""Every user entry point answers --help and --version as a real subprocess, without a traceback."""
import os
import subprocess
import sys

import pytest

import simplepose

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY_POINTS = [
    ["training/coco_masks_hdf5.py"],
    ["training/train_pose.py"],
    ["testing/evaluation.py"],
    ["demo_image.py"],
    ["demo_video.py"],
    ["-m", "simplepose", "synthetic"],
    ["-m", "simplepose", "show"],
    ["-m", "simplepose", "export"],
    ["-m", "simplepose.export"],
    ["-m", "simplepose", "predict"],
    ["-m", "simplepose", "video"],
]


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda e: e[-1])
def test_help_and_version(entry):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for flag, expect in (("--help", "usage:"), ("--version", f"simplepose {simplepose.__version__}")):
        done = subprocess.run([sys.executable, *entry, flag], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert expect in done.stdout
        assert "Traceback" not in done.stderr
        if flag == "--help":
            assert "Example" in done.stdout and "simplepose " in done.stdout  # every command shows an example


def test_the_simplepose_command_lists_and_dispatches(capsys):
    from simplepose.commands import COMMANDS, main

    assert main([]) == 2 and "commands:" in capsys.readouterr().out
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in COMMANDS)
    assert main(["frobnicate"]) == 2 and "unknown command 'frobnicate'" in capsys.readouterr().err
    assert main(["--version"]) == 0 and simplepose.__version__ in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["predict", "--help"])
    assert e.value.code == 0 and "usage: simplepose predict" in capsys.readouterr().out
