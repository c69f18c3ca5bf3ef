"""Secrets never reach a transcript: known values and token-shaped strings are replaced."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
# Shapes of credentials an agent may print (its own API key, orc's personal access tokens).
TOKEN_SHAPES = re.compile(r"(sk-ant-[A-Za-z0-9_\-]{8,}|orc_pat_[A-Za-z0-9_\-]{8,})")
MIN_SECRET_LENGTH = 8


class Redactor:
    """Replaces each known secret (and anything token-shaped) with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        values = sorted(
            {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )
        self._pattern = (
            re.compile("|".join(re.escape(value) for value in values)) if values else None
        )

    def text(self, value: str) -> str:
        if self._pattern is not None:
            value = self._pattern.sub(REDACTED, value)
        return TOKEN_SHAPES.sub(REDACTED, value)

    def value(self, value: Any) -> Any:
        """Redact every string inside a JSON-like value (tool inputs, results)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        return value
