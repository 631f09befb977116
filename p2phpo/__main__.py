"""``python -m p2phpo``: the same as the ``p2phpo`` command."""

from p2phpo.cli import main

main()
