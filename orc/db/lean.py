"""Import a library without an optional dependency that it would load for nothing."""

from __future__ import annotations

import importlib
import sys


def import_without(module: str, optional: str) -> None:
    """Import ``module`` while ``optional`` cannot be imported (the library then does without
    it); a no-op once either one's package is imported."""
    if module.partition(".")[0] in sys.modules or optional in sys.modules:
        return
    sys.modules[optional] = None  # type: ignore[assignment]  # makes `import optional` fail
    try:
        importlib.import_module(module)
    finally:
        del sys.modules[optional]


def import_orm_without_pydantic() -> None:
    """Import Tortoise without pydantic.

    Tortoise imports pydantic (when installed) only to store pydantic models in JSON fields,
    which orc never does. The job worker is about 9 MiB lighter without it; the API needs
    pydantic for its request bodies anyway. Anything imported later may still import pydantic.
    """
    import_without("tortoise.fields.data", "pydantic")
