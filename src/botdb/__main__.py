"""``python -m botdb`` runs the ``botdb`` command."""

from botdb.cli import main

main()
