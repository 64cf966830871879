#!/usr/bin/env python
"""Draw the people a trained model finds in one image: ``simplepose demo``. ``--help`` lists the options."""
import sys

from simplepose.commands.demo import main

if __name__ == "__main__":
    sys.exit(main())
