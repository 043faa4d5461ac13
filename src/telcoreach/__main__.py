"""``python -m telcoreach``: the same as the ``telcoreach`` command."""

from telcoreach.cli import main

main()
