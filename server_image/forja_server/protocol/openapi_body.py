"""Declaring a JSON request body in OpenAPI while parsing it ourselves.

FastAPI parses bodies with the standard json module and validates afterwards;
we parse with pydantic's Rust JSON parser in one step (much faster for tensors)
and only need the schema in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError

from forja_server.errors import InvalidInput

__all__ = ["install_schemas", "json_body", "parse_json"]

_MODELS: dict[str, type[BaseModel]] = {}
M = TypeVar("M", bound=BaseModel)


def json_body(model: type[BaseModel], *, also: dict[str, Any] | None = None) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body is ``model`` (plus other media types)."""
    _MODELS[model.__name__] = model
    content: dict[str, Any] = {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
    }
    content.update(also or {})
    return {"requestBody": {"required": True, "content": content}}


def parse_json(model: type[M], body: bytes) -> M:
    if not body:
        raise InvalidInput("empty request body; expected JSON", field="body")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise InvalidInput(f"{loc}: {first.get('msg', 'invalid')}", field=loc) from None


def install_schemas(app: FastAPI) -> None:
    """Make app.openapi() include the schemas of bodies declared with json_body."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for name, model in _MODELS.items():
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for dname, d in schema.pop("$defs", {}).items():
                schemas.setdefault(dname, d)
            schemas[name] = schema
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
