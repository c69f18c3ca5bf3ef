"""Request body schemas for the OpenAPI document, in the dialect it declares (OpenAPI 3.0).

sanic-ext writes ``openapi: 3.0.3``; pydantic writes JSON Schema 2020-12. The differences that
matter to clients and to schema-driven tools: ``null`` is ``nullable: true``, not a type;
``exclusiveMinimum`` is a flag beside ``minimum``, not a number; ``$defs`` do not exist (so
references into them are inlined here).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

NULL = {"type": "null"}


def _convert(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return _convert(defs[ref.removeprefix("#/$defs/")], defs)
    out = {key: _convert(value, defs) for key, value in node.items() if key != "$defs"}
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out[bound], bool):
            out[flag], out[bound] = out[bound], True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    options = out.get("anyOf")
    if isinstance(options, list) and NULL in options:
        rest = [option for option in options if option != NULL]
        del out["anyOf"]
        if len(rest) == 1:
            out.update(rest[0])
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema as OpenAPI 3.0 describes schemas."""
    schema = model.model_json_schema()
    converted: dict[str, Any] = _convert(schema, schema.get("$defs", {}))
    return converted


def json_body(*models: type[BaseModel]) -> dict[str, Any]:
    """For ``@openapi.body``: a JSON body that is one of ``models``."""
    schemas = [openapi_schema(model) for model in models]
    return {"application/json": schemas[0] if len(schemas) == 1 else {"oneOf": schemas}}
