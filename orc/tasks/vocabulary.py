"""The words of a task's life: its weights, statuses and the actions between them.

Declared once here; the API validates against them, the CLI offers them, and the dashboard
reads them from ``GET /api/vocabulary`` instead of keeping its own copy.
"""

from __future__ import annotations

from typing import Any

WEIGHTS = ("trivial", "small", "medium", "large")
DEFAULT_WEIGHT = "medium"
STATUSES = (
    "created",
    "planned",
    "queued",
    "running",
    "paused",
    "blocked",
    "completed",
    "failed",
)
ACTIVE_STATUS = "running"

# action: (statuses it may start from, status it leads to). A run is queued, then a job worker
# claims it (running); pause and cancel of a running task take effect when the worker sees
# them; complete and fail are admin overrides of a run's outcome.
ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "run": (("created", "planned", "failed", "completed"), "queued"),
    "pause": (("queued", "running"), "paused"),
    "resume": (("paused", "blocked"), "queued"),
    "cancel": (("queued", "running", "paused", "blocked"), "failed"),
    "complete": (("queued", "running", "paused", "blocked"), "completed"),
    "fail": (("queued", "running", "paused", "blocked"), "failed"),
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
