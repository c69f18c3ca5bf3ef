"""Roles and what each may do: viewer < member < admin < owner."""

from __future__ import annotations

ROLES = ("viewer", "member", "admin", "owner")
_RANK = {role: rank for rank, role in enumerate(ROLES)}


def at_least(role: str, minimum: str) -> bool:
    """True when ``role`` ranks at or above ``minimum``."""
    return _RANK.get(role, -1) >= _RANK[minimum]


def lower_of(first: str, second: str) -> str:
    """The weaker of two roles (a token never outranks the user who made it)."""
    return first if _RANK[first] <= _RANK[second] else second
