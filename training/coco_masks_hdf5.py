#!/usr/bin/env python
"""COCO person keypoints (json + images) -> one HDF5 file: ``simplepose prepare``. ``--help``: the options."""
import sys

from simplepose.commands.prepare import main

if __name__ == "__main__":
    sys.exit(main())
