"""sanic-ext, imported without its Jinja templating: orc renders no templates.

sanic-ext imports Jinja2 when it is installed (only to offer templates), about 1 MiB that the
API process would keep. Import sanic-ext's names from here, never from ``sanic_ext`` first.
"""

from __future__ import annotations

from orc.db.lean import import_without

import_without("sanic_ext", "jinja2")

from sanic_ext import Extend, openapi  # noqa: E402
from sanic_ext.extensions.openapi.extension import OpenAPIExtension  # noqa: E402

__all__ = ["Extend", "OpenAPIExtension", "openapi"]
