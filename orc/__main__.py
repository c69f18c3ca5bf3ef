"""``python -m orc`` runs the CLI (the launcher uses it to start its children, which skip the
command line: see orc.runtime.children)."""

import sys

if len(sys.argv) == 2 and sys.argv[1] in ("_api", "worker"):
    from orc.runtime.children import run_child

    run_child(sys.argv[1])
else:
    from orc.cli.main import main

    main()
