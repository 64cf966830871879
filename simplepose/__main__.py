"""``python -m simplepose COMMAND ...``: the ``simplepose`` command."""
import sys

from simplepose.commands import main

sys.exit(main())
