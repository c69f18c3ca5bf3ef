#!/bin/sh
# orc's agent launcher (orc/runs/agent_exec.py) by the Python that runs orc, without its
# site-packages: the launcher needs only the standard library, and it starts for every turn.
exec "${ORC_AGENT_PYTHON:?orc sets ORC_AGENT_PYTHON}" -I -S "${0%/*}/agent_exec.py" "$@"
