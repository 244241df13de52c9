"""``python -m cardkeep``: the same as the ``cardkeep`` command."""

from cardkeep.cli import main

main()
