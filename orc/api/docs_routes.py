"""The OpenAPI spec (built by sanic-ext) and its Swagger UI page, all assets served locally."""

from __future__ import annotations

from pathlib import Path

from sanic import Sanic

from orc import __version__
from orc.api.openapi_ext import Extend, OpenAPIExtension

WEB = Path(__file__).resolve().parent.parent / "web"


def install_docs(app: Sanic) -> None:
    """/docs (Swagger UI), /docs/openapi.json, and /docs/assets/* from the vendored copy."""
    Extend(
        app,
        built_in_extensions=False,
        extensions=[OpenAPIExtension],
        config={
            "oas_ui_default": "swagger",
            "oas_ui_redoc": False,
            "oas_path_to_swagger_html": str(WEB / "docs" / "swagger.html"),
            "oas_ui_swagger_html_title": "orc API",
            "oas_autodoc": True,
        },
    )
    app.ext.openapi.describe(
        "orc API",
        version=__version__,
        description=(
            "Tasks, token usage, cost and live events. Errors are always "
            '`{"error": code, "message": text}`. Live events: WebSocket `/api/ws`.'
        ),
    )
    app.static("/docs/assets", WEB / "vendor" / "swagger-ui", name="docs_assets")
