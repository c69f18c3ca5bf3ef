"""``python -m orc`` runs the CLI (the launcher uses it to start its children)."""

from orc.cli.main import main

main()
