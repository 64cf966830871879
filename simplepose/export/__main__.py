"""``python -m simplepose.export ...``: the same as ``simplepose export``."""
import sys

from simplepose.commands.export import main

sys.exit(main())
