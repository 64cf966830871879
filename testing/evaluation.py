#!/usr/bin/env python
"""COCO keypoint AP of a model, or of the decoder on true maps: ``simplepose evaluate``. ``--help``: the options."""
import sys

from simplepose.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
