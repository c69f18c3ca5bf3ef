"""``python -m orc`` runs the CLI (the launcher uses it to start its children, which skip the
command line: see orc.runtime.children)."""

import sys

from orc.runtime.children import CHILD_COMMANDS, run_child

if len(sys.argv) == 2 and sys.argv[1] in CHILD_COMMANDS:
    run_child(sys.argv[1])
else:
    from orc.cli.main import main

    main()
