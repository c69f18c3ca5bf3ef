"""The event outbox: every change writes an event in its own transaction; API processes tail it."""
