#!/usr/bin/env python
"""Find, track and draw the people of a video, image folder or webcam: ``simplepose video``; ``--help``: options."""
import sys

from simplepose.commands.video import main

if __name__ == "__main__":
    sys.exit(main())
