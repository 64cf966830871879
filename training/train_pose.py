#!/usr/bin/env python
"""Train a pose network into a run directory: ``simplepose train``. ``--help`` lists the options."""
import sys

from simplepose.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
