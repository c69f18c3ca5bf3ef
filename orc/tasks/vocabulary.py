"""The words of a task's life: its weights, statuses and the actions between them.

Declared once here; the API validates against them, the CLI offers them, and the dashboard
reads them from ``GET /api/vocabulary`` instead of keeping its own copy.
"""

from __future__ import annotations

from typing import Any

WEIGHTS = ("trivial", "small", "medium", "large")
DEFAULT_WEIGHT = "medium"
STATUSES = ("created", "planned", "running", "paused", "blocked", "completed", "failed")
ACTIVE_STATUS = "running"

# action: (statuses it may start from, status it leads to)
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "run": (("created", "planned", "blocked", "failed"), "running"),
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "complete": (("running", "paused"), "completed"),
    "fail": (("running", "paused", "blocked"), "failed"),
}
# Statuses a PATCH may set directly, and from where.
PATCHABLE_STATUSES: dict[str, tuple[str, ...]] = {
    "planned": ("created",),
    "blocked": ("running", "paused"),
}


def vocabulary_json() -> dict[str, Any]:
    """What a client needs to offer filters, weights and the actions a task's status allows."""
    return {
        "weights": list(WEIGHTS),
        "default_weight": DEFAULT_WEIGHT,
        "statuses": list(STATUSES),
        "actions": {
            action: {"from": list(starts), "to": target}
            for action, (starts, target) in ACTIONS.items()
        },
    }
