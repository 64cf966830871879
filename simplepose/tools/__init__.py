"""Command-line tools that live in the package (``python -m simplepose.tools.NAME``)."""
