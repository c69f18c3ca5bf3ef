"""How a phase ends: the JSON object at the end of the agent's last message."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

STATUSES = ("complete", "blocked")
FENCE = "```"


@dataclass(frozen=True)
class PhaseOutcome:
    """The agent's verdict on a phase, and the text that came before it (the artifact)."""

    status: Literal["complete", "blocked"]
    summary: str
    body: str
    findings: tuple[str, ...] = ()


def _findings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value.strip(),) if value.strip() else ()
    if isinstance(value, list):
        return tuple(str(item).strip() for item in value if str(item).strip())
    return ()


def _strip_fence(text: str) -> str:
    text = text.rstrip()
    return text[: -len(FENCE)].rstrip() if text.endswith(FENCE) else text


def parse_outcome(message: str) -> PhaseOutcome | None:
    """The outcome if ``message`` ends with ``{"status": "complete"|"blocked", ...}``, else None.

    A code fence around the object is allowed; anything else after it means the agent has not
    finished (it may be quoting the protocol), so None.
    """
    text = _strip_fence(message)
    decoder = json.JSONDecoder()
    start = text.rfind("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            end = -1
        if end == -1 or text[end:].strip():  # not the last object: perhaps one nested in it
            start = text.rfind("{", 0, start)
            continue
        if not isinstance(value, dict) or value.get("status") not in STATUSES:
            return None
        summary = value.get("summary")
        body = text[:start].rstrip()
        if body.endswith(FENCE + "json") or body.endswith(FENCE):
            body = body[: body.rfind(FENCE)].rstrip()
        return PhaseOutcome(
            status=value["status"],
            summary=summary.strip() if isinstance(summary, str) else "",
            body=body,
            findings=_findings(value.get("findings")),
        )
    return None
