"""Import a library without work it would do for nothing."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
from collections.abc import Iterator
from typing import Any


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


@contextlib.contextmanager
def _no_source_of(module: str) -> Iterator[None]:
    """``inspect.getsource`` of a class defined in ``module`` fails (as for a class typed at
    the prompt) while this runs; other objects are looked up as usual."""
    original = inspect.getsource

    def getsource(obj: Any) -> str:
        if isinstance(obj, type) and obj.__module__ == module:
            raise OSError(f"source of {module} classes not read")
        return original(obj)

    inspect.getsource = getsource  # type: ignore[assignment]  # accepts what the original does
    try:
        yield
    finally:
        inspect.getsource = original


def import_orm(without_pydantic: bool = False) -> None:
    """Import Tortoise without reading the source of its ``Model`` class.

    Defining a model makes Tortoise search the class's source for ``#:`` field comments
    (orc/db/models.py switches that off for orc's models); for its own ``Model`` base, which
    has no fields, that is a tokenize of 1,700 lines: about 75 ms of CPU in every process that
    imports the ORM, on the path of ``orc serve``'s start-up. ``without_pydantic``: see
    import_orm_without_pydantic. A no-op once Tortoise is imported.
    """
    if "tortoise" in sys.modules:
        return
    with _no_source_of("tortoise.models"):
        if without_pydantic:
            import_without("tortoise.fields.data", "pydantic")
        else:
            importlib.import_module("tortoise")


def import_orm_without_pydantic() -> None:
    """Import Tortoise without pydantic.

    Tortoise imports pydantic (when installed) only to store pydantic models in JSON fields,
    which orc never does. The job worker is about 9 MiB lighter without it, and the process
    that migrates at start-up about 0.1 s of CPU faster; the API needs pydantic for its request
    bodies anyway. Anything imported later may still import pydantic.
    """
    import_orm(without_pydantic=True)
