"""orc's blueprints: routes that say their error format instead of Sanic guessing it."""

from __future__ import annotations

from typing import Any

from sanic import Blueprint


class JsonBlueprint(Blueprint):
    """A Blueprint whose routes declare ``error_format="json"``.

    A route without one makes Sanic read its handler's source and parse it (``inspect``,
    ``ast``) to guess the format of the error pages Sanic renders itself: about 45 ms of CPU
    for the API's routes, at every start of the API. orc answers every error in JSON
    (orc.api.error_handler), so it says so.
    """

    def route(self, uri: str, *args: Any, **kwargs: Any) -> Any:
        kwargs["error_format"] = kwargs.get("error_format") or "json"
        return super().route(uri, *args, **kwargs)
