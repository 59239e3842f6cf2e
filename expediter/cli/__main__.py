"""``python -m expediter.cli``: the same as the ``expediter`` script."""

from expediter.cli import main

main()
