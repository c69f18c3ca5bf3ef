"""Tasks: identifiers, the state machine and phases, each change with its outbox event."""
